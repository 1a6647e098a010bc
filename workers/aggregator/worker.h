#pragma once
// wafleet-aggregator as a worker on the skeleton (common/worker.h): its options, its typed
// config and its core, the batch loop around engine.cpp (poll up to 1,000 records or 10 ms,
// close due windows, flush turns, store offsets).
#include <string>
#include <vector>

#include "common/config.h"
#include "common/worker.h"
#include "workers/aggregator/engine.h"

namespace wafleet::aggregator {

// Pure: every problem appended to errors. group_id is left to the skeleton.
EngineOptions parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::aggregator
