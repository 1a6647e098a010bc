#pragma once
// What one try of a queued request leads to: the sender's outcome logic, pure (no Kafka, no
// Redis, no clock of its own), so every rule is a unit test. The worker (worker.cpp) applies
// the effects in order: publish the result, write the dead letter, then finish or defer.
//
//   invalid request            -> `failed` result (class invalid_input) + dead letter
//   budget short (`wait`)      -> deferred until it refills; the number's wait holds everyone
//   transient error, tries left -> deferred by a doubling backoff (only this person waits)
//   transient past the tries, permanent, invalid -> `failed` result + dead letter
//   fatal                      -> the worker stops (nothing stored: the record is re-read)
//   sent / duplicate           -> its result
//   uncertain                  -> its result + a dead letter for an operator to decide
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "workers/sender/scheduler.h"
#include "workers/sender/sender.h"

namespace wafleet::sender {

struct RetryPolicy {
  int max_attempts = 6;  // including the first try
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{60000};
  // The delay before try `attempt + 1` after `attempt` failed: initial, doubled per try, capped.
  std::chrono::milliseconds backoff(int attempt) const;
};

struct Effects {
  std::optional<nlohmann::json> result;  // to wa.outbound.results, first
  std::optional<Error> dead_letter;      // then to wa.dlq
  int attempts = 0;                      // tries so far, for both and for the item
  std::optional<int64_t> defer_until_us;  // stays queued (not finished) until then
  int64_t number_blocked_until_us = 0;    // the number's budget is short: nobody goes before
  std::optional<Error> fatal;             // the worker stops
  bool finished() const { return !defer_until_us && !fatal; }
};

// A request that could not be parsed or validated (item.invalid says why).
Effects decide_invalid(const Item& item, int64_t now_ms);
// One try's answer from Sender::send.
Effects decide(const Item& item, const Result<Outcome>& out, const RetryPolicy& policy,
               int64_t now_us, int64_t now_ms);

// The `failed` result of a request that will not be sent. It names the request as far as the
// record tells: request id, idempotency key (default: the request id), number, recipient, type,
// even when the request itself did not validate.
nlohmann::json failure_result(const Item& item, const Error& e, int attempts, int64_t now_ms);

}  // namespace wafleet::sender
