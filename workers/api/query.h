#pragma once
// The read side of the record (workers/store/): conversations by last activity, a
// conversation's messages with their statuses, one message's history. Cursor paging by
// (time, id), newest first, so a page costs an index range, never an OFFSET.
//
// Lifecycle: a Reader borrows one pg::Connection (one per thread).
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/pg.h"

namespace wafleet::api {

struct Page {
  std::string cursor;  // "" for the first page; else a next_cursor given before
  int limit = 50;      // 1..200
};

struct ConversationFilter {
  std::string phone_number_id;  // "" : any
  std::string owner;            // "" : any (bot, human, paused)
  int64_t since_ms = 0;         // last activity at or after; 0: any
  int64_t until_ms = 0;         // last activity before; 0: any
};

// "<ms>:<id>" in base64url, and back; nullopt when it is not one of ours.
std::string encode_cursor(int64_t at_ms, const std::string& id);
std::optional<std::pair<int64_t, std::string>> decode_cursor(const std::string& cursor);

// A message's current status from its history: the highest of sent < delivered < read <
// played, or failed; for an outbound message with no status yet, the sender's outcome.
std::string current_status(const nlohmann::json& statuses, const nlohmann::json& results);

class Reader {
 public:
  explicit Reader(pg::Connection& db) : db_(db) {}
  // {"items": [...], "next_cursor": "..." | null}. invalid_input: a bad cursor.
  Result<nlohmann::json> conversations(const ConversationFilter& f, const Page& page);
  // nullopt: no such conversation.
  Result<std::optional<nlohmann::json>> messages(const std::string& key, const Page& page);
  // By wamid or request id; nullopt: neither is known.
  Result<std::optional<nlohmann::json>> message(const std::string& id);

 private:
  pg::Connection& db_;
};

}  // namespace wafleet::api
