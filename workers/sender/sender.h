#pragma once
// The sender's core: one wa.outbound request -> rate limit -> Graph API -> outcome, never sent
// twice. Kafka stays outside (main.cpp runs the consumer loop and produces the results).
//
// Never twice (Redis key snd:idem:{<idempotency_key>}):
//   absent          -> claimed as "pending:<token>" (SET NX) before calling Meta
//   Meta answered an error -> the claim is released (transient: a retry may claim it again) or
//                     turned into "failed:<code>" (permanent)
//   Meta answered 200 -> "sent:<wamid>" at once, before the result is produced and the offset
//                     committed; a redelivery finds it and republishes the same outcome
//   "pending:<other token>" (a sender crashed between calling Meta and recording the answer):
//                     the outcome is unknown, so the request is NOT sent again: outcome
//                     `uncertain`, dead-lettered for an operator (replay with a new key to send)
// Keep Redis persistent (AOF) for this guarantee.
//
// Rate limits: one Lua GCRA script (Redis TIME, microseconds) checks the business number's
// budget and the (number, recipient) pair's budget together and takes from both only when both
// allow; otherwise it answers how long to wait. Every replica shares the same keys.
#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/redis.h"
#include "workers/media/media.h"
#include "workers/sender/conversations.h"
#include "workers/sender/request.h"

namespace wafleet::sender {

struct Limits {
  double number_per_second = 70;  // Meta: 80/s per number, inbound included: stay below
  int number_burst = 10;
  double pair_per_second = 1.0 / 6;  // Meta: 1 message per 6 s to the same person...
  int pair_burst = 5;                // ...with a small burst
};

class RateLimiter {
 public:
  RateLimiter(redis::RedisClient& redis, Limits limits);
  // 0: taken from both budgets; otherwise how long to wait before asking again.
  Result<std::chrono::microseconds> acquire(const std::string& phone_number_id,
                                            const std::string& recipient);
  // The same, saying which budget is short: the number's (everyone waits) or the person's
  // (only their messages wait). Both zero: taken.
  struct Wait {
    std::chrono::microseconds number{0};
    std::chrono::microseconds pair{0};
    std::chrono::microseconds reserved{0};  // granted: the slot is this far away; send then
    bool granted() const { return number.count() <= 0 && pair.count() <= 0; }
  };
  Result<Wait> try_acquire(const std::string& phone_number_id, const std::string& recipient);

 private:
  redis::RedisClient& redis_;
  Limits limits_;
};

struct Options {
  std::string graph_base = "https://graph.facebook.com";
  std::string graph_version = "v22.0";
  std::string access_token;
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds upload_timeout{120000};  // POST /{phone-number-id}/media
  std::optional<media::S3Options> s3;  // for storage_uri s3://...; file:// needs nothing
  // For this long after start, "no inbound message from this person" is not final: the inbound
  // side (a second consumer group) may not have caught up yet, so the request is retried as
  // transient instead of refused. 0: refused at once.
  int64_t unknown_window_grace_ms = 0;
  int64_t idempotency_ttl_ms = 7LL * 24 * 3600 * 1000;
};

struct Outcome {
  Outcome() = default;
  Outcome(std::string s, std::string id, int code, std::string message)
      : status(std::move(s)), wamid(std::move(id)), error_code(code),
        error_message(std::move(message)) {}
  std::string status;  // sent | duplicate | failed | uncertain | held (a paused bulk job's) |
                      // wait (budget short, not sent)
  std::string wamid;
  int error_code = 0;
  std::string error_message;
  RateLimiter::Wait wait;  // for `wait`
  nlohmann::json to_result(const Request& r, int attempts, int64_t now_ms) const;
};

class Sender {
 public:
  // conversations: the 24-hour window and opt-out policy; nullptr = not enforced.
  Sender(Options options, redis::RedisClient& redis, RateLimiter& limiter,
         std::function<bool()> stopping, Conversations* conversations = nullptr,
         std::function<int64_t()> now_ms = nullptr);
  ~Sender();
  // One attempt. Ok: the outcome to publish (sent, duplicate, uncertain). Error: transient
  // (retry later, nothing was sent), permanent (Meta refused; the outcome is in the message)
  // or invalid input (refused before Meta: outside the window, opted out).
  // replay: the request came back from the DLQ (`wafleet dlq replay`). One that failed before
  // is tried again (Meta did not send it); one that was sent stays a duplicate.
  // wait_for_budget=false: when a rate budget is short, return `wait` at once (nothing sent,
  // nothing claimed) instead of sleeping, so the caller can send someone else's meanwhile.
  Result<Outcome> send(const Request& r, bool replay = false, bool wait_for_budget = true);

 private:
  Result<Outcome> call_graph(const Request& r, const std::string& claim_key);
  // The Graph media id of r's stored object for r's number: from Redis, or uploaded now.
  Result<std::string> uploaded_media_id(const Request& r);
  Options options_;
  redis::RedisClient& redis_;
  RateLimiter& limiter_;
  std::function<bool()> stopping_;
  Conversations* conversations_;
  std::function<int64_t()> now_ms_;
  std::string token_;  // this process's claims
  int64_t started_ms_ = 0;
  void* curl_ = nullptr;
};

// Graph error codes retried with backoff (contract 5.2, class T).
bool retriable_code(int code);

}  // namespace wafleet::sender
