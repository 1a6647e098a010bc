#include "workers/aggregator/worker.h"

#include <algorithm>
#include <thread>

#include "common/clock.h"
#include "common/log.h"
#include "topics/topics.h"

namespace wafleet::aggregator {

namespace {

std::vector<config::Option> own_options() {
  std::vector<config::Option> opts = {
      {"mode", "debounce", "debounce | tumbling"},
      {"quiet-ms", "2000", "debounce: close after this much silence"},
      {"max-ms", "10000", "debounce: never later than first message + this"},
      {"max-messages", "50", "debounce: never more messages than this"},
      {"tumbling-ms", "20000", "tumbling: close at first message + this"},
      {"keep-reactions", "true", "reactions become turn items (ids are always kept)"},
      {"keep-stickers", "true", "stickers become turn items (ids are always kept)"},
      {"join-media", "true", "hold media messages for their wa.media record (run wafleet-media)"},
      {"media-wait-ms", "30000", "longest a window waits for media, from its first message"},
      {"timer-grace-ms", "30", "an idle conversation's window closes this long after its due time"},
  };
  return opts;
}

int64_t now_ms() { return wall_clock_ms(); }

class AggregatorCore : public worker::Core {
 public:
  AggregatorCore(worker::Context& ctx, const EngineOptions& eo)
      : eo_(eo), engine_(eo, ctx.producer(), ctx.redis(), ctx.metrics(), now_ms) {}

  kafka::RebalanceListener* listener() override { return &engine_; }

  Status run(worker::Context& ctx) override {
    kafka::Consumer& consumer = ctx.consumer();
    Status result;
    auto backoff = std::chrono::milliseconds(50);
    std::vector<kafka::Record> batch;  // kept until handled: a Redis outage retries it
    while (!ctx.stopping()) {
      const auto batch_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
      // Sleep in poll no longer than until the next window falls due (plus its grace).
      int64_t wait_ms = 20;
      if (auto due = engine_.next_due()) {
        wait_ms = std::clamp<int64_t>(*due + eo_.timer_grace_ms - now_ms(), 0, 20);
      }
      const bool refill = batch.empty();
      while (refill && batch.size() < 1000 && std::chrono::steady_clock::now() < batch_end) {
        auto r = consumer.poll(std::chrono::milliseconds(batch.empty() ? wait_ms : 0));
        if (!r) {
          return Unexpected(r.error());
        }
        if (!*r) {
          break;
        }
        batch.push_back(std::move(**r));
      }
      Status step = engine_.handle_batch(batch);  // removes what it handled
      if (step) {
        engine_.tick(consumer);
        step = engine_.flush(consumer);
      }
      if (!step) {
        if (step.error().kind == ErrorKind::kFatal) {
          return step;
        }
        log::warn("aggregator.retry", {{"reason", step.error().message}});
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      } else {
        backoff = std::chrono::milliseconds(50);
      }
    }
    log::info("worker.stopping", {{"open_windows", engine_.open_windows()}});
    (void)engine_.flush(consumer);
    return result;
  }

 private:
  EngineOptions eo_;
  Engine engine_;
};

}  // namespace

EngineOptions parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  EngineOptions eo;
  const std::string mode = s.get("mode");
  if (mode == "debounce") {
    eo.windows.mode = Config::Mode::kDebounce;
  } else if (mode == "tumbling") {
    eo.windows.mode = Config::Mode::kTumbling;
  } else {
    errors.push_back("WAFLEET_MODE: expected debounce or tumbling, got '" + mode + "'");
  }
  eo.windows.quiet_ms = s.get_int("quiet-ms", errors);
  eo.windows.max_ms = s.get_int("max-ms", errors);
  eo.windows.max_messages = static_cast<size_t>(std::max<int64_t>(0, s.get_int("max-messages", errors)));
  eo.windows.tumbling_ms = s.get_int("tumbling-ms", errors);
  eo.windows.keep_reactions = s.get_bool("keep-reactions", errors);
  eo.windows.keep_stickers = s.get_bool("keep-stickers", errors);
  eo.windows.join_media = s.get_bool("join-media", errors);
  eo.windows.media_wait_ms = s.get_int("media-wait-ms", errors);
  eo.group_id = s.get("group-id");
  eo.timer_grace_ms = s.get_int("timer-grace-ms", errors);
  if (eo.windows.quiet_ms <= 0 || eo.windows.max_ms < eo.windows.quiet_ms ||
      eo.windows.max_messages < 1 || eo.windows.tumbling_ms <= 0) {
    errors.push_back("window settings: need quiet-ms > 0, max-ms >= quiet-ms, max-messages >= 1, "
                     "tumbling-ms > 0");
  }
  return eo;
}

static worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  const EngineOptions eo = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.consumes = {topics::kInbound};
  if (eo.windows.join_media) {
    plan.wiring.consumes.push_back(topics::kMedia);  // co-partitioned: P of both to one instance
  }
  plan.wiring.produces = {topics::kTurns};
  plan.wiring.fetch_wait_max_ms = 20;  // fresh watermarks: idle conversations close on time
  plan.wiring.max_poll_gap = std::chrono::seconds(30);
  plan.started = {{"mode", s.get("mode")}};
  plan.build = worker::build<AggregatorCore>(eo);
  return plan;
}

worker::Spec spec() { return {"aggregator", "wafleet-aggregator", own_options(), make_plan}; }

}  // namespace wafleet::aggregator
