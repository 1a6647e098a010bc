#pragma once
// wafleet-bulk as a worker on the skeleton (common/worker.h). Two threads:
// - the consumer (main thread) reads wa.bulk.commands (create, pause, resume, cancel,
//   retry-failed), wa.outbound.results and wa.status (each recipient's outcome, found by its
//   idempotency key or the biz_opaque_callback_data Meta echoes) and wa.account.events (a paused
//   or disabled template pauses the jobs using it), and applies them to the jobs in Redis; every
//   replica may apply any record. Offsets are stored after Redis has the effect.
// - the driver walks the active jobs; for each it holds a short Redis lease (one driver per job
//   across replicas) and releases requests to wa.outbound a small window ahead of the send rate
//   (at most number-rate x release-ahead-ms without a result), never the whole list, checking
//   opt-outs, quiet hours and the portfolio's 24-hour budget of people first.
// Each recipient's request carries the idempotency key bulk:<job>:<index> (a retry after a
// definite failure: :r<attempt>), so a restart, a redelivery or two drivers never send twice:
// the sender answers a repeated key from Redis without calling Meta.
#include <string>
#include <vector>

#include "common/config.h"
#include "common/worker.h"
#include "workers/media/media.h"

namespace wafleet::bulk {

struct WorkerConfig {
  std::string portfolio = "default";
  int64_t daily_limit = 250;  // people per rolling 24 h outside their window; <= 0: unlimited
  int64_t budget_window_ms = 24LL * 3600 * 1000;
  double number_rate = 70;  // the sender's WAFLEET_NUMBER_RATE: the pace never goes beyond it
  int64_t release_ahead_ms = 500;
  int64_t min_window = 4;
  int64_t retry_ms = 60000;  // retry later: doubled per attempt
  int64_t retry_131049_ms = 6LL * 3600 * 1000;
  int max_attempts = 5;
  int64_t backoff_ms = 30000;  // the job's back-off on 4/80007/131057: doubled to max
  int64_t backoff_max_ms = 600000;
  double breaker_rate = 0.5;
  int breaker_min = 20;
  int64_t stale_ms = 600000;  // released, no result this long: released again (same key)
  int64_t lease_ms = 5000;
  int64_t tick_ms = 20;
  std::string storage = "local";
  std::string storage_dir = "./wafleet-media";
  media::S3Options s3;
  std::string clock_offset_file;  // tests and drills: milliseconds added to the wall clock
  // The release window: requests out without a result.
  int64_t window() const;
};

// Pure: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::bulk
