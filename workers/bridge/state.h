#pragma once
// The bridge's state per conversation, in Redis (keys hash-tagged by conversation):
//   br:owner:{key}    who answers: absent = the bot; {"owner": human|paused, "by", "reason",
//                     "since_ms", "until_ms"} with a TTL (WAFLEET_HANDOFF_TTL_HOURS)
//   br:mem:{key}      the memory: a list of {"role","content"}, the last 2 x N entries, TTL
//   br:session:{key}  the backend's own session id, TTL as the memory
//   br:fail:{key}     failed agent calls in a row (reset by an answer)
//   br:done:{turn_id} this turn was answered (or deliberately not): a redelivery is skipped
// Used from the bridge's one loop thread (and by `wafleet conversation`); not thread-safe.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/redis.h"
#include "workers/bridge/agent.h"

namespace wafleet::bridge {

struct Owner {
  std::string owner = "bot";  // bot | human | paused
  std::string by;             // tool | webhook | keyword | failures | human_message | operator
  std::string reason;
  int64_t since_ms = 0;
  int64_t until_ms = 0;
  bool bot() const { return owner == "bot"; }
  nlohmann::json to_json() const;
};

class State {
 public:
  State(redis::RedisClient& redis, int64_t memory_ttl_ms, size_t memory_turns)
      : redis_(redis), memory_ttl_ms_(memory_ttl_ms), memory_turns_(memory_turns) {}

  Result<Owner> owner(const std::string& key);
  Status hand_over(const std::string& key, const Owner& o, int64_t ttl_ms);
  Status release(const std::string& key);

  Result<std::vector<MemoryEntry>> memory(const std::string& key);
  // Appends what the person said and what the bot answered; keeps the last N turns.
  Status remember(const std::string& key, const std::vector<MemoryEntry>& entries);
  Status forget(const std::string& key);
  Result<std::string> session(const std::string& key);
  Status set_session(const std::string& key, const std::string& id);

  Result<bool> answered(const std::string& turn_id);
  Status mark_answered(const std::vector<std::string>& turn_ids);

  // Failed calls in a row, after counting this one; succeeded() resets.
  Result<int64_t> failed(const std::string& key);
  Status succeeded(const std::string& key);

 private:
  redis::RedisClient& redis_;
  int64_t memory_ttl_ms_;
  size_t memory_turns_;
};

}  // namespace wafleet::bridge
