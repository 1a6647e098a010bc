#pragma once
// wafleet-receiver as a worker on the skeleton (common/worker.h): its options, its typed config
// and its core, the HTTP server in front of receiver.cpp. It consumes nothing.
#include <string>
#include <vector>

#include "common/config.h"
#include "common/http_server.h"
#include "common/worker.h"
#include "workers/receiver/receiver.h"

namespace wafleet::receiver {

struct WorkerConfig {
  ReceiverOptions receiver;
  config::HostPort listen;
  int http_threads = 2;
  uint64_t body_limit = 4194304;
  int produce_timeout_ms = 5000;
  std::string sns_cert_file;
};

// Pure: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::receiver
