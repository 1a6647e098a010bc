#pragma once
// wafleet-api as a worker on the skeleton (common/worker.h): the HTTP JSON API (api.cpp) over
// the record in PostgreSQL (query.cpp), sending through wa.outbound; Redis for erasure
// (DELETE /v1/people), the dead-letter topics read for GET /v1/dlq/stats. No consumer.
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/worker.h"
#include "workers/api/api.h"

namespace wafleet::api {

struct WorkerConfig {
  config::HostPort listen{"127.0.0.1", 8081};
  std::string database_url;
  std::vector<ApiKey> keys;
  Limits limits;
  int http_threads = 2;
  int db_connections = 4;  // requests answered at once; the rest wait in a queue
  int queue_max = 1000;    // beyond it: 503 at once
  std::string suppression_salt;  // "" : no erasure over the API
  std::string portfolio_id = "default";
  bulk::Pacing pacing;  // a bulk job's estimate
  MediaLinks links;
  int64_t dlq_stats_cache_ms = 10000;
};

// Pure but for reading the keys file: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::api
