#pragma once
// What `wafleet bulk` and wafleet-api (/v1/bulk/jobs) both do to jobs: check and prepare a job
// from a recipient table (validation, opted-out people left out, the estimate at today's
// limits), launch it (stored in Redis, then its create command on wa.bulk.commands), and the
// commands pause, resume, cancel and retry-failed (refused when the job's state does not allow
// them; pause and cancel close the sender's gate at once).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/kafka.h"
#include "workers/bulk/job.h"
#include "workers/bulk/store.h"

namespace wafleet::bulk {

// The limits the estimate is made at (the bulk worker's: WAFLEET_NUMBER_RATE,
// WAFLEET_PORTFOLIO_DAILY_LIMIT, WAFLEET_PORTFOLIO_ID).
struct Pacing {
  double number_rate = 70;
  int64_t daily_limit = 250;  // 0: unlimited
  std::string portfolio = "default";
};

// Fills in the id (when empty) and the name (the template's, when empty); every problem of the
// spec itself as one line (schedule is ISO-8601 or empty).
std::vector<std::string> check_spec(JobSpec& spec, const std::string& schedule);

struct Prepared {
  JobSpec spec;
  Validated validated;  // opted-out people moved to rejected ("opted_out")
  Estimate estimate;
  // {"rows", "people", "left_out", "left_out_by_reason", "time", "seconds"}
  nlohmann::json summary() const;
};

// invalid_input: the table cannot be read (the message names where).
Result<Prepared> prepare(Store& store, const JobSpec& spec, const std::string& table_text,
                         const Pacing& pacing, int64_t now_ms);

// invalid_input when nobody is left to send to. A job stored but whose create command was not
// acknowledged is PENDING: the error says to resume it.
Status launch(Store& store, kafka::Producer& producer, const Prepared& job, const std::string& by,
              int64_t now_ms);

// "" when the verb (pause, resume, cancel, retry-failed) applies to the job as it is; else why not.
std::string refusal(const JobInfo& job, const std::string& verb);

// The verb onto wa.bulk.commands (after the sender's gate, for pause and cancel); the worker
// applies it.
Status send_command(Store& store, kafka::Producer& producer, const std::string& job_id,
                    const std::string& verb, const std::string& by, int64_t now_ms);

}  // namespace wafleet::bulk
