#pragma once
// wafleet-sender as a worker on the skeleton (common/worker.h): its options, its typed config
// and its core. The core reads wa.outbound ahead into the per-person queues (scheduler.h),
// tries one head at a time without blocking on a rate limit, applies what dispatch.h decides,
// and sleeps exactly until the number's budget refills or the next person comes due. A second
// consumer group on wa.inbound and wa.status feeds the 24-hour windows, opt-outs and statuses.
#include <string>
#include <vector>

#include "common/config.h"
#include "common/worker.h"
#include "workers/sender/conversations.h"
#include "workers/sender/dispatch.h"
#include "workers/sender/sender.h"

namespace wafleet::sender {

struct WorkerConfig {
  Options graph;
  Limits limits;
  PolicyOptions policy;
  RetryPolicy retry;
  bool enforce_window = true;
  size_t max_queued = 2000;
};

// Pure: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::sender
