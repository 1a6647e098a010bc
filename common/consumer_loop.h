#pragma once
// The one consumer loop every consuming worker runs (STYLE.md §3): poll one record, hand it to
// the worker's handler, and store its offset only once the handler's effects are durable.
//   ok                      -> offset stored
//   transient error         -> retried with capped exponential backoff, up to max_attempts,
//                              then dead-lettered
//   permanent/invalid input -> dead-lettered at once
//   fatal                   -> the loop stops and returns the error (exit, get restarted)
// A dead letter is the original key and value untouched, with the context in headers (topics/
// schemas/dead_letter.schema.json); its produce is acknowledged before the offset is stored.
// If the DLQ itself cannot be written the loop stops without storing: the record is re-read.
//
// Threading: run() blocks the calling thread; stop() may be called from any thread.
#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "common/kafka.h"

namespace wafleet::kafka {

struct LoopOptions {
  std::string worker;              // dlq.worker header
  std::string group_id;            // dlq.original.group header
  std::string dlq_topic = "wa.dlq";
  std::chrono::milliseconds poll_timeout{100};
  int max_attempts = 5;            // for transient errors, including the first try
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
};

using RecordHandler = std::function<Status(const Record&)>;
// Called once when the loop gives up on a record (permanent error, or transient errors past
// max_attempts), before its dead letter: a worker publishes its own failure outcome here
// (e.g. the media worker's `failed` record). An error from it is fatal: nothing is stored.
using GiveUpHandler = std::function<Status(const Record&, const Error&, int attempts)>;

// Produces one record and waits for its acknowledgement.
Status produce_and_wait(Producer& producer, const std::string& topic, const std::string& key,
                        const std::string& value, const Headers& headers = {});

// Writes r to the DLQ (original key and value, context in headers) and waits for the ack.
Status produce_dead_letter(Producer& producer, const LoopOptions& options, const Record& r,
                           const Error& e, int attempts, int64_t first_failure_ms,
                           const std::string& stage);

struct LoopStats {
  std::atomic<uint64_t> processed{0};
  std::atomic<uint64_t> retried{0};
  std::atomic<uint64_t> dead_lettered{0};
};

class ConsumerLoop {
 public:
  ConsumerLoop(Consumer& consumer, Producer& producer, LoopOptions options);
  // Runs until stop() or a fatal error; returns the fatal error, if any.
  Status run(const RecordHandler& handler, const GiveUpHandler& on_give_up = nullptr);
  void stop() { stop_ = true; }
  const LoopStats& stats() const { return stats_; }

 private:
  Status dead_letter(const Record& r, const Error& e, int attempts, int64_t first_ms,
                     const std::string& stage);

  Consumer& consumer_;
  Producer& producer_;
  LoopOptions options_;
  std::atomic<bool> stop_{false};
  LoopStats stats_;
};

}  // namespace wafleet::kafka
