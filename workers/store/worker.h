#pragma once
// wafleet-store as a worker on the skeleton (common/worker.h): batches of wa.inbound, wa.status,
// wa.media, wa.turns, wa.outbound, wa.outbound.results and wa.handoffs written to PostgreSQL
// (record.cpp decides the rows, db.cpp writes them), offsets stored after the commit.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/worker.h"
#include "workers/media/media.h"

namespace wafleet::store {

struct WorkerConfig {
  std::string database_url;
  int batch_max = 5000;         // records per transaction
  int64_t batch_ms = 100;       // the longest a record waits for its batch to fill
  int64_t retention_days = 30;  // messages, statuses, media rows, turns, handoffs
  int64_t sweep_interval_s = 3600;
  std::vector<std::string> topics;
  std::optional<media::S3Options> s3;  // to remove expired s3:// media; file:// needs nothing
};

// Pure: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::store
