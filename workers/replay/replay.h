#pragma once
// Dead-letter replay: the policy `wafleet dlq replay` and `wafleet-replay` share.
//
// A dead letter goes back to its original topic with its original key, value and headers, plus
// `wafleet.replay.count` (one more than it had) and `wafleet.replay.of` (where in the DLQ it
// came from). The receiver's dead letters (original topic "http:<path>") are posted to the
// receiver again, signed. A dead letter already replayed `max_replays` times is parked on
// `wa.dlq.parked` instead. Each dead letter is taken once: a ledger in Redis
// (`dlq:done:{<dlq topic>}:<partition>:<offset>`) is written after the produce is acknowledged,
// so a crash in between can replay one record twice, which the consumers' own dedupe absorbs
// (the sender's idempotency keys, the aggregator's turn ids, the media store's content
// addresses), and nothing is ever skipped. Every run that changes anything leaves one audit
// record on `wa.dlq.audit`.
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/dead_letter.h"
#include "common/kafka.h"
#include "common/redis.h"

namespace wafleet::replay {

// Every set field must match (an empty set matches anything).
struct Filter {
  std::optional<int64_t> since_ms;  // dead-lettered at or after (dlq.last.failure.ms)
  std::optional<int64_t> until_ms;  // dead-lettered before
  std::set<std::string> error_classes;
  std::set<std::string> workers;
  std::set<std::string> topics;  // original topics
  std::optional<std::string> key;
  std::optional<int64_t> from_offset;  // original offset, inclusive
  std::optional<int64_t> to_offset;    // original offset, inclusive

  bool empty() const;
  bool matches(const dlq::DeadLetter& d) const;
  nlohmann::json to_json() const;
};

// A record read from a dead-letter topic, with its context.
struct Entry {
  kafka::Record record;
  dlq::DeadLetter letter;
};

// Reads a dead-letter topic as it stands. Records that are not dead letters (no dlq.* context)
// are returned in `malformed` with the reason, never silently left out.
struct Scan {
  std::vector<Entry> entries;
  std::vector<std::pair<kafka::Record, std::string>> malformed;
};
Result<Scan> scan(const kafka::ClientConfig& config, const std::string& topic,
                  std::chrono::milliseconds timeout);

// Counts of a scan's dead letters that match the filter: total, oldest_ms, newest_ms,
// failed_again (replayed before), by_error_class, by_worker (worker/stage), by_original_topic,
// by_age (<1h, 1h-24h, 1d-7d, >7d), not_dead_letters. `wafleet dlq stats`, GET /v1/dlq/stats.
nlohmann::json stats(const Scan& scan, const Filter& filter, int64_t now_ms);

struct Options {
  std::string dlq_topic = "wa.dlq";
  std::string parking_topic = "wa.dlq.parked";
  std::string audit_topic = "wa.dlq.audit";
  int max_replays = 3;       // a dead letter already replayed this often is parked
  std::string actor;         // who, for the audit record (user@host, or the worker)
  std::string mode = "cli";  // cli | worker
  std::string receiver_url;  // base URL of a receiver, for "http:" dead letters
  std::string app_secret;    // signs those posts (X-Hub-Signature-256)
  int64_t ledger_ttl_ms = 35LL * 24 * 3600 * 1000;  // beyond wa.dlq's 30-day retention
};

enum class Action {
  kReplay,        // back to the original topic (or the receiver)
  kPark,          // past the cap: to the parking topic
  kAlreadyDone,   // an earlier run took it
  kUnreplayable,  // nowhere to send it (reason in `why`)
};
const char* to_string(Action a);

struct Plan {
  Action action = Action::kReplay;
  std::string target;  // topic, receiver URL, or parking topic
  std::string why;
};

struct Counts {
  int64_t matched = 0;
  int64_t replayed = 0;
  int64_t parked = 0;
  int64_t already_replayed = 0;
  int64_t unreplayable = 0;
  int64_t failed = 0;
  nlohmann::json to_json() const;
};

class Replayer {
 public:
  Replayer(kafka::Producer& producer, redis::RedisClient& redis, Options options);

  // What would happen to the entry; reads the ledger, changes nothing.
  Result<Plan> plan(const Entry& e);
  // Does what the plan says and records it in the ledger. kAlreadyDone/kUnreplayable: nothing.
  Status apply(const Entry& e, const Plan& p);
  // One audit record (acknowledged) for a run: who, when, the filter, the counts, and the
  // dead letters taken ("<partition>:<offset>", at most 10000 listed).
  Status audit(const nlohmann::json& filter, const Counts& counts,
               const std::vector<std::string>& taken, bool dry_run);

  // The record a replay produces (original key/value/headers, replay count + 1, provenance).
  static kafka::Headers replay_headers(const Entry& e, const std::string& dlq_topic);

 private:
  std::string ledger_key(const kafka::Record& dlq_record) const;
  Status replay_http(const Entry& e);

  kafka::Producer& producer_;
  redis::RedisClient& redis_;
  Options options_;
};

// "2h", "30m", "7d", "90s" ago, an epoch in milliseconds, or an ISO-8601 UTC time
// ("2026-11-22T10:00:00Z"), as epoch milliseconds.
Expected<int64_t, std::string> parse_time(const std::string& text, int64_t now_ms);

}  // namespace wafleet::replay
