#pragma once
// wafleet-replay as a worker on the skeleton (common/worker.h): the shared consumer loop over
// wa.dlq, replaying the dead letters its filter matches after their delay (replay.cpp).
#include <string>
#include <vector>

#include "common/config.h"
#include "common/worker.h"
#include "workers/replay/replay.h"

namespace wafleet::replay {

struct WorkerConfig {
  Options replay;
  Filter filter;
  int64_t delay_ms = 30000;
  int64_t max_delay_ms = 600000;
};

// Pure: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
// When a dead letter replayed `replay_count` times before falls due: its last failure plus the
// delay, doubled per earlier replay, capped.
int64_t due_ms(const WorkerConfig& c, int64_t last_failure_ms, int replay_count);
worker::Spec spec();

}  // namespace wafleet::replay
