#include "workers/replay/worker.h"

#include <unistd.h>

#include <algorithm>
#include <limits>
#include <thread>

#include <prometheus/counter.h>

#include "common/clock.h"
#include "common/log.h"
#include "topics/topics.h"

namespace wafleet::replay {

namespace {

std::vector<config::Option> own_options() {
  std::vector<config::Option> opts = {
      {"dlq-topic", topics::kDlq, "dead-letter topic to watch"},
      {"error-classes", "transient", "error classes replayed by themselves (comma-separated)"},
      {"workers", "", "only dead letters of these workers (comma-separated; empty: all)"},
      {"delay-ms", "30000", "a dead letter waits this long before its first replay"},
      {"max-delay-ms", "600000", "the delay doubles with every replay, up to this"},
      {"max-replays", "3", "a dead letter replayed this often is parked on wa.dlq.parked"},
      {"receiver-url", "", "receiver base URL, for webhook bodies the receiver dead-lettered"},
      {"app-secret", "", "signs those webhook bodies (first of a comma-separated list)", true},
  };
  return opts;
}

class ReplayCore : public worker::LoopCore {
 public:
  ReplayCore(worker::Context& ctx, WorkerConfig c)
      : LoopCore([this](const kafka::Record& r) { return handle(r); }, nullptr,
                 [](kafka::LoopOptions& lo) {
                   // Only Kafka or Redis being down fails a replay: retry until they are back,
                   // never dead-letter a dead letter.
                   lo.max_attempts = std::numeric_limits<int>::max();
                   lo.backoff_max = std::chrono::milliseconds(30000);
                 }),
        ctx_(ctx),
        c_(std::move(c)),
        replayer_(ctx.producer(), ctx.redis(), c_.replay),
        actions_(prometheus::BuildCounter()
                     .Name("wafleet_replay_dead_letters_total")
                     .Help("dead letters seen, by what was done")
                     .Register(ctx.metrics())) {}

 private:
  Status handle(const kafka::Record& r) {
    auto letter = dlq::from_headers(r.headers);
    if (!letter) {
      actions_.Add({{"action", "not_a_dead_letter"}}).Increment();
      log::warn("replay.not_a_dead_letter",
                {{"partition", r.partition}, {"offset", r.offset}, {"reason", letter.error()}});
      return {};
    }
    Entry e{r, std::move(letter).value()};
    if (!c_.filter.matches(e.letter)) {
      actions_.Add({{"action", "not_for_this_worker"}}).Increment();
      return {};  // left for a person: `wafleet dlq replay`
    }
    const int64_t due = due_ms(c_, e.letter.last_failure_ms, e.letter.replay_count);
    while (wall_clock_ms() < due) {
      if (ctx_.stopping()) {
        return Unexpected(Error::transient("stopping before the replay was due"));
      }
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::clamp<int64_t>(due - wall_clock_ms(), 1, 200)));
    }
    auto plan = replayer_.plan(e);
    if (!plan) {
      return Unexpected(Error::transient(plan.error().message));
    }
    if (Status st = replayer_.apply(e, *plan); !st) {
      return Unexpected(Error::transient(st.error().message));
    }
    actions_.Add({{"action", to_string(plan->action)}}).Increment();
    const std::string where = std::to_string(r.partition) + ":" + std::to_string(r.offset);
    log::info("replay.done", {{"dlq", where},
                              {"action", to_string(plan->action)},
                              {"target", plan->target},
                              {"original_topic", e.letter.original_topic},
                              {"replay_count", e.letter.replay_count + 1},
                              {"why", plan->why}});
    if (plan->action == Action::kReplay || plan->action == Action::kPark) {
      Counts counts;
      counts.matched = 1;
      (plan->action == Action::kPark ? counts.parked : counts.replayed) = 1;
      if (Status a = replayer_.audit(c_.filter.to_json(), counts, {where}, false); !a) {
        log::warn("replay.audit_failed", {{"reason", a.error().message}});
      }
    }
    return {};
  }

  worker::Context& ctx_;
  WorkerConfig c_;
  Replayer replayer_;
  prometheus::Family<prometheus::Counter>& actions_;
};

}  // namespace

WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c;
  for (const auto& cls : worker::split_list(s.get("error-classes"))) {
    if (cls != "transient" && cls != "permanent" && cls != "invalid_input") {
      errors.push_back("WAFLEET_ERROR_CLASSES: '" + cls +
                       "' is not one of transient, permanent, invalid_input");
    }
    c.filter.error_classes.insert(cls);
  }
  for (const auto& w : worker::split_list(s.get("workers"))) {
    c.filter.workers.insert(w);
  }
  c.delay_ms = s.get_int("delay-ms", errors);
  c.max_delay_ms = s.get_int("max-delay-ms", errors);
  if (c.delay_ms < 0 || c.max_delay_ms < c.delay_ms) {
    errors.push_back("WAFLEET_DELAY_MS / WAFLEET_MAX_DELAY_MS: 0 <= delay <= max delay");
  }
  c.replay.dlq_topic = s.get("dlq-topic");
  c.replay.max_replays = static_cast<int>(s.get_int("max-replays", errors));
  if (c.replay.max_replays < 1) {
    errors.push_back("WAFLEET_MAX_REPLAYS: must be at least 1");
  }
  c.replay.mode = "worker";
  c.replay.receiver_url = s.get("receiver-url");
  const auto secrets = worker::split_list(s.get("app-secret"));
  c.replay.app_secret = secrets.empty() ? "" : secrets.front();
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  c.replay.actor = "wafleet-replay@" + std::string(host);
  return c;
}

int64_t due_ms(const WorkerConfig& c, int64_t last_failure_ms, int replay_count) {
  int64_t wait = c.delay_ms;
  for (int i = 0; i < replay_count && wait < c.max_delay_ms; ++i) {
    wait *= 2;
  }
  return last_failure_ms + std::min(wait, c.max_delay_ms);
}

static worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  const WorkerConfig c = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.consumes = {c.replay.dlq_topic};
  plan.wiring.produces = {c.replay.audit_topic, c.replay.parking_topic};
  plan.wiring.producer.linger_ms = 0;
  // A dead letter waits in the handler for its delay: the poll interval must outlast it.
  const int64_t gap = c.max_delay_ms + 120000;
  plan.wiring.consumer_properties = {{"max.poll.interval.ms", std::to_string(gap)}};
  plan.wiring.max_poll_gap = std::chrono::milliseconds(gap);
  plan.started = {{"dlq", c.replay.dlq_topic},
                  {"classes", s.get("error-classes")},
                  {"delay_ms", c.delay_ms},
                  {"max_replays", c.replay.max_replays}};
  plan.build = worker::build<ReplayCore>(c);
  return plan;
}

worker::Spec spec() { return {"replay", "wafleet-replay", own_options(), make_plan}; }

}  // namespace wafleet::replay
