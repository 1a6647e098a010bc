#pragma once
// Contacts in the record: what an operator sets about a person (a name, WhatsApp opt-in for
// marketing, the allowlist for test numbers) beside what WhatsApp told us (profile name, ids).
// GET|PUT|DELETE /v1/contacts/{id}; the id is the phone number (any format) or the BSUID.
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <vector>

#include "common/error.h"
#include "common/pg.h"
#include "common/redis.h"

namespace wafleet::api {

// A PUT body: each field optional; a null name clears it.
struct ContactChange {
  bool set_name = false;
  std::optional<std::string> name;
  std::optional<bool> opt_in;
  std::optional<bool> allowlisted;
};

// invalid_input names the offending field (unknown fields, wrong types, a name over 256 chars).
Expected<ContactChange, std::string> parse_contact_change(const nlohmann::json& body);

class Contacts {
 public:
  explicit Contacts(pg::Connection& db) : db_(db) {}
  // nullopt: nobody by that id.
  Result<std::optional<nlohmann::json>> get(const std::string& id);
  // Creates the contact when it is new; returns it as GET would.
  Result<nlohmann::json> put(const std::string& id, const ContactChange& change);
  // Every id the removed contact had (phone digits, BSUID); empty: nobody by that id.
  Result<std::vector<std::string>> remove(const std::string& id);

 private:
  pg::Connection& db_;
};

// The sender reads a contact's flags from Redis (snd:contact:<id>: allowlisted, opt_in "1"/"0"),
// one hash per id it may be addressed by. The API writes them with every change and all of
// them at start (a Redis that lost them is refilled by a restart of the API).
Status mirror(redis::RedisClient& redis, const nlohmann::json& contact);
Status unmirror(redis::RedisClient& redis, const std::vector<std::string>& ids);
// Every contact with a flag set; returns how many.
Result<int64_t> mirror_all(pg::Connection& db, redis::RedisClient& redis);

}  // namespace wafleet::api
