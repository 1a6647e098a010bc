#pragma once
// Erasure of one person (`wafleet forget`, DELETE /v1/people/{id}): their rows in the record,
// their stored media, their Redis state (24-hour windows, bridge memory, ownership, failure
// counts, the aggregator's window offsets, statuses of our messages to them, the portfolio's
// reach), and an account of what cannot be removed yet: records in Kafka segments, until
// their topic's retention ends. An opt-out survives as a salted hash only (the `suppressed`
// table and a hashed `snd:optout` key the sender still honours), so a forgotten person who
// said STOP is never messaged again.
//
// Lifecycle: an Eraser borrows a pg::Connection and a RedisClient for one call at a time.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/pg.h"
#include "common/redis.h"
#include "workers/media/media.h"

namespace wafleet::erasure {

struct Options {
  std::string salt;                // WAFLEET_SUPPRESSION_SALT; required
  int inbound_partitions = 12;     // the aggregator's keys are per wa.inbound partition
  const media::S3Options* s3 = nullptr;  // for s3:// media
  std::vector<std::string> portfolios = {"default"};  // whose 24-hour reach to take them out of
};

// HMAC-SHA256(salt, identity) in hex: how a forgotten opt-out is kept.
std::string suppression_hash(const std::string& salt, const std::string& identity);

// "+1 555-010-0001" -> "15550100001"; a business-scoped user id is kept as given. Empty when
// it is neither.
std::string normalize_identity(const std::string& raw);

// What one erasure did, for the caller's output and the audit record (no identity in clear).
struct Report {
  std::string identity_hash;
  std::vector<std::pair<std::string, int64_t>> removed;  // what, how many
  bool suppressed = false;                                // an opt-out was kept as a hash
  // Places the person may still be, each with when it goes: {"where", "until", "why"}.
  nlohmann::json remaining = nlohmann::json::array();
  nlohmann::json to_json() const;
};

class Eraser {
 public:
  Eraser(pg::Connection& db, redis::RedisClient& redis, Options options);
  // invalid_input: no identity, or no salt configured. The database part is one transaction;
  // Redis and media follow it (a failure there is reported and a second call finishes it).
  Result<Report> forget(const std::string& identity, int64_t now_ms);

 private:
  pg::Connection& db_;
  redis::RedisClient& redis_;
  Options options_;
};

}  // namespace wafleet::erasure
