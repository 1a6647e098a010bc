#include "workers/bulk/control.h"

#include "common/consumer_loop.h"
#include "topics/topics.h"

namespace wafleet::bulk {

using Json = nlohmann::json;

namespace {

// Meta's Graph ids are digits.
bool digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

std::vector<std::string> check_spec(JobSpec& spec, const std::string& schedule) {
  std::vector<std::string> problems;
  if (spec.id.empty()) {
    spec.id = new_job_id();
  }
  if (spec.name.empty()) {
    spec.name = spec.template_name;
  }
  if (!digits(spec.phone_number_id)) {
    problems.push_back("phone_number_id: expected Meta's phone number id (digits)");
  }
  if (spec.template_name.empty() || spec.template_name.size() > 512) {
    problems.push_back("template: the approved template's name");
  }
  if (spec.language.empty() || spec.language.size() > 15) {
    problems.push_back("language: a template language code such as en_US");
  }
  if (spec.category != "marketing" && spec.category != "utility" && spec.category != "authentication") {
    problems.push_back("category: marketing, utility or authentication");
  }
  if (!schedule.empty()) {
    auto at = parse_iso8601(schedule);
    if (!at) {
      problems.push_back("schedule: " + at.error());
    } else {
      spec.schedule_ms = *at;
    }
  }
  if (!spec.quiet_hours.empty()) {
    if (auto q = parse_quiet_hours(spec.quiet_hours); !q) {
      problems.push_back("quiet_hours: " + q.error());
    }
  }
  return problems;
}

Json Prepared::summary() const {
  return {{"rows", validated.rows},
          {"people", validated.recipients.size()},
          {"left_out", validated.rejected.size()},
          {"left_out_by_reason", validated.rejected_by_reason},
          {"time", estimate.text},
          {"seconds", estimate.seconds}};
}

Result<Prepared> prepare(Store& store, const JobSpec& spec, const std::string& table_text,
                         const Pacing& pacing, int64_t now_ms) {
  auto table = read_table(table_text);
  if (!table) {
    return Unexpected(Error::invalid(table.error()));
  }
  Prepared p;
  p.spec = spec;
  p.validated = validate(*table, spec);
  // People on the suppression list (STOP, 131050) are left out now, and checked again at send.
  Validated& v = p.validated;
  std::vector<Recipient> keep;
  constexpr size_t kBatch = 1000;
  for (size_t i = 0; i < v.recipients.size(); i += kBatch) {
    std::vector<std::string> who;
    for (size_t k = i; k < std::min(v.recipients.size(), i + kBatch); ++k) {
      who.push_back(v.recipients[k].identity());
    }
    auto opted = store.opted_out(spec.phone_number_id, who);
    if (!opted) {
      return Unexpected(opted.error());
    }
    for (size_t k = 0; k < who.size(); ++k) {
      auto& r = v.recipients[i + k];
      if ((*opted)[k]) {
        v.rejected.push_back({r.line, r.identity(), "opted_out", "the person asked to stop (STOP or 131050)"});
        ++v.rejected_by_reason["opted_out"];
      } else {
        keep.push_back(std::move(r));
      }
    }
  }
  v.recipients = std::move(keep);
  auto reached = store.reached(pacing.portfolio, now_ms, 24LL * 3600 * 1000);
  const int64_t left = pacing.daily_limit <= 0 ? 0 : pacing.daily_limit - (reached ? *reached : 0);
  p.estimate = estimate(v.recipients.size(), pacing.number_rate, pacing.daily_limit, left);
  return p;
}

Status launch(Store& store, kafka::Producer& producer, const Prepared& job, const std::string& by,
              int64_t now_ms) {
  if (job.validated.recipients.empty()) {
    return Unexpected(Error::invalid("nobody to send to; no job created"));
  }
  if (auto st = store.create(job.spec, job.validated, now_ms); !st) {
    return Unexpected(st.error());
  }
  const Json cmd = {{"command", "create"}, {"job_id", job.spec.id}, {"by", by}, {"at_ms", now_ms}};
  if (auto st = kafka::produce_and_wait(producer, topics::kBulkCommands, job.spec.id, cmd.dump()); !st) {
    return Unexpected(Error::transient(
        "the job is stored as PENDING but its create command did not reach wa.bulk.commands (" +
        st.error().message + "); resume " + job.spec.id + " once Kafka answers"));
  }
  return {};
}

std::string refusal(const JobInfo& job, const std::string& verb) {
  const State state = job.state;
  if (verb == "pause" && state != State::kPending && state != State::kScheduled &&
      state != State::kInProgress) {
    return "only a pending, scheduled or running job can be paused";
  }
  if (verb == "resume" && state != State::kPaused && state != State::kPending) {
    return "only a paused job can be resumed";
  }
  if (verb == "cancel" && terminal(state)) {
    return "the job has ended already";
  }
  if (verb == "retry-failed" && job.count(Phase::kFailed) == 0) {
    return "no recipient has failed";
  }
  if (verb == "retry-failed" && state == State::kCancelled) {
    return "a cancelled job does not send again";
  }
  return "";
}

Status send_command(Store& store, kafka::Producer& producer, const std::string& job_id,
                    const std::string& verb, const std::string& by, int64_t now_ms) {
  if (verb == "pause" || verb == "cancel") {
    // The sender's gate now; the worker applies the state when the command reaches it.
    if (auto st = store.hold(job_id, verb == "pause" ? "PAUSED" : "CANCELLED",
                             verb == "pause" ? 0 : 8LL * 24 * 3600 * 1000);
        !st) {
      return Unexpected(st.error());
    }
  }
  const Json cmd = {{"command", verb}, {"job_id", job_id}, {"by", by}, {"at_ms", now_ms}};
  return kafka::produce_and_wait(producer, topics::kBulkCommands, job_id, cmd.dump());
}

}  // namespace wafleet::bulk
