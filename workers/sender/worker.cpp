#include "workers/sender/worker.h"

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include <prometheus/counter.h>

#include "common/clock.h"
#include "common/dead_letter.h"
#include "common/json_util.h"
#include "common/log.h"
#include "topics/topics.h"
#include "workers/media/worker.h"
#include "workers/sender/scheduler.h"

namespace wafleet::sender {

namespace {

std::vector<config::Option> own_options() {
  std::vector<config::Option> opts = {
      {"number-rate", "70", "messages per second per business number, all replicas together"},
      {"number-burst", "10", "burst allowance per business number"},
      {"pair-interval-ms", "6000", "one message per this long to the same person (Meta: 6 s)"},
      {"pair-burst", "5", "burst allowance per person"},
      {"attempts", "6", "tries for transient failures (throttling, 5xx, timeouts)"},
      {"backoff-ms", "1000", "first retry delay, doubling per try up to 60 s"},
      {"request-timeout-ms", "30000", "Graph API call timeout"},
      {"enforce-window", "true", "refuse free-form messages outside the 24-hour window, and "
                                  "templates/bulk to people who opted out"},
      {"stop-keywords", "STOP,UNSUBSCRIBE,STOP ALL,CANCEL,END,QUIT,OPT OUT,OPTOUT",
       "inbound texts that opt a person out (case-insensitive, whole message)"},
      {"suppression-salt", "", "salt of the hashed opt-outs of forgotten people (the same as "
                               "wafleet forget's)", true, false},
      {"allowlist-mode", "false", "only allowlisted contacts receive anything (test numbers)"},
      {"require-opt-in", "off", "off, bulk (campaign messages) or templates (every template): "
                                "these need the contact's WhatsApp opt-in"},
      {"max-queued", "2000", "outbound requests read ahead into the per-person queues"},
      {"upload-timeout-ms", "120000", "longest one upload of stored media to Meta may take"},
      {"window-grace-ms", "30000", "after start, a free-form message to someone not seen writing "
                                   "yet is retried for this long (the inbound side catching up)"},
      {"upload-staging-dir", "/tmp/wafleet-sender-staging",
       "where s3:// objects are fetched to before their upload"},
  };
  auto s3 = media::s3_options();
  opts.insert(opts.end(), s3.begin(), s3.end());
  auto graph = worker::graph_api_options();
  opts.insert(opts.begin(), graph.begin(), graph.end());
  return opts;
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class SenderCore : public worker::Core, private kafka::RebalanceListener {
 public:
  SenderCore(worker::Context& ctx, const WorkerConfig& c)
      : c_(c),
        loop_options_(ctx.loop_options()),
        producer_(&ctx.producer()),
        limiter_(ctx.redis(), c.limits),
        policy_redis_(ctx.redis_options()),
        conversations_(ctx.redis(), c.policy),
        inbound_side_(policy_redis_, c.policy),
        core_(c.graph, ctx.redis(), limiter_, [&ctx] { return ctx.stopping(); },
              c.enforce_window || c.policy.allowlist_mode || c.policy.require_opt_in != "off"
                  ? &conversations_
                  : nullptr),
        outcomes_(prometheus::BuildCounter()
                      .Name("wafleet_sender_outcomes_total")
                      .Help("requests by outcome")
                      .Register(ctx.metrics())) {}

  kafka::RebalanceListener* listener() override { return this; }

  Status run(worker::Context& ctx) override {
    // The inbound side: windows, STOP keywords and delivery statuses, from wa.inbound and
    // wa.status, in a consumer group of its own (every sender replica shares it).
    kafka::ConsumerOptions ico;
    ico.group_id = ctx.group_id() + "-inbound";
    ico.topics = {topics::kInbound, topics::kStatus};
    auto inbound_consumer = ctx.create_consumer(ico);
    if (!inbound_consumer) {
      return Unexpected(Error::fatal("inbound consumer: " + inbound_consumer.error().message));
    }
    kafka::LoopOptions ilo = loop_options_;
    ilo.group_id = ico.group_id;
    ilo.backoff_initial = std::chrono::milliseconds(100);
    ilo.max_attempts = 20;
    kafka::ConsumerLoop inbound_loop(**inbound_consumer, ctx.producer(), ilo);
    Status inbound_result;
    std::thread inbound_thread([&] {
      inbound_result = inbound_loop.run([&](const kafka::Record& r) { return learn(r); });
      if (!inbound_result) {
        ctx.request_stop();
      }
    });
    Status result = send_loop(ctx);
    inbound_loop.stop();
    inbound_thread.join();
    (*inbound_consumer)->close(std::chrono::seconds(10));
    if (result && !inbound_result) {
      return Unexpected(Error::fatal("inbound side: " + inbound_result.error().message));
    }
    return result;
  }

 private:
  // Partitions that go take their queued records with them, unsent and uncommitted, for the
  // next owner.
  void on_assigned(const std::vector<kafka::TopicPartition>&) override {}
  void on_revoked(const std::vector<kafka::TopicPartition>& partitions) override {
    // Results still in flight are waited for, so the offsets committed right after this cover
    // exactly the requests whose results Kafka has.
    producer_->flush(std::chrono::seconds(10));
    if (Status st = drain_results(); !st) {
      results_failed_ = st.error().message;
    }
    for (const auto& tp : partitions) {
      scheduler_.drop_partition(tp.partition);
      unacked_.erase(tp.partition);
      scheduled_next_.erase(tp.partition);
      stored_.erase(tp.partition);
    }
  }

  Status learn(const kafka::Record& r) {
    auto doc = json::parse(r.value);
    if (doc.is_discarded()) {
      return {};  // the aggregator dead-letters poison inbound records; nothing to learn here
    }
    auto e = WebhookEvent::from_json(doc);
    if (!e) {
      return {};
    }
    return e->kind == EventKind::kStatus ? inbound_side_.on_status(*e)
                                         : inbound_side_.on_inbound(*e);
  }

  Status send_loop(worker::Context& ctx) {
    kafka::Consumer& consumer = ctx.consumer();
    consumer_ = &consumer;
    Status result;
    bool paused = false;
    while (!ctx.stopping() && result) {
      if (Status st = drain_results(); !st) {
        return st;
      }
      if (!results_failed_.empty()) {
        return Unexpected(Error::fatal(results_failed_));
      }
      // 1. Read what there is (without waiting while there is work), up to the queue bound.
      auto timeout = std::chrono::milliseconds(scheduler_.empty() ? 100 : 0);
      // Full: stop fetching but keep polling (rebalances, group liveness); a paused partition
      // returns nothing, and what was fetched ahead is fetched again on resume.
      const bool full = scheduler_.size() >= c_.max_queued;
      if (full != paused) {
        if (Status st = full ? consumer.pause_all() : consumer.resume_all(); !st) {
          log::warn("sender.pause_failed", {{"reason", st.error().message}});
        } else {
          paused = full;
        }
      }
      for (;;) {
        auto polled = consumer.poll(timeout);
        if (!polled) {
          return Unexpected(polled.error());
        }
        if (!*polled) {
          break;
        }
        timeout = std::chrono::milliseconds(0);
        enqueue(std::move(**polled));
        if (scheduler_.size() >= c_.max_queued) {
          break;
        }
      }
      // 2. Send what may go now, a bounded number per round (and at most 5 ms of it: a send may
      // sleep until its reserved slot) so reading keeps up and a reply never waits behind a
      // round of bulk.
      const int64_t round_start = now_us();
      for (int n = 0; n < 64 && result && !ctx.stopping(); ++n) {
        if (now_us() < number_blocked_until_ || (n > 0 && now_us() - round_start > 5000)) {
          break;
        }
        Item* item = scheduler_.pick(now_us());
        if (item == nullptr) {
          break;
        }
        result = work(ctx, item);
      }
      // 3. Nothing may go now: sleep exactly until the earliest moment something may (the
      // number's budget refills, a person's comes due), at most 50 ms, then read again.
      if (!scheduler_.empty() && result) {
        const int64_t now = now_us();
        int64_t wake = number_blocked_until_ > now ? number_blocked_until_ : 0;
        if (wake == 0 && scheduler_.pick(now) == nullptr) {
          wake = scheduler_.next_ready_us().value_or(now + 50000);
        }
        if (wake > now) {
          std::this_thread::sleep_for(
              std::chrono::microseconds(std::min<int64_t>(wake - now, 50000)));
        }
      }
    }
    // Whatever results are still in flight: acknowledged now, so their offsets are stored
    // before the skeleton closes the consumer.
    ctx.producer().flush(std::chrono::seconds(10));
    if (Status st = drain_results(); !st && result) {
      result = st;
    }
    return result;
  }

  // Results are produced without waiting for each (a send would otherwise pay a broker round
  // trip); a partition's offset moves only up to its lowest request whose result Kafka has not
  // acknowledged yet. Called on the loop thread.
  Status drain_results() {
    std::vector<std::tuple<int32_t, int64_t, std::string>> done;
    {
      std::lock_guard lock(acks_->mu);
      done.swap(acks_->done);
    }
    std::set<int32_t> touched;
    for (const auto& [partition, offset, error] : done) {
      if (!error.empty()) {
        return Unexpected(Error::fatal("cannot produce the result: " + error));
      }
      auto& pending = unacked_[partition];
      if (auto it = pending.find(offset); it != pending.end()) {
        pending.erase(it);
      }
      touched.insert(partition);
    }
    for (int32_t partition : touched) {
      store(partition);
    }
    return {};
  }

  void store(int32_t partition) {
    auto next = scheduled_next_.find(partition);
    if (next == scheduled_next_.end()) {
      return;
    }
    int64_t storable = next->second;
    if (auto it = unacked_.find(partition); it != unacked_.end() && !it->second.empty()) {
      storable = std::min(storable, *it->second.begin());
    }
    auto& last = stored_[partition];
    if (storable <= last) {
      return;
    }
    last = storable;
    if (Status st = consumer_->store_offset(topics::kOutbound, partition, storable); !st) {
      log::warn("consumer.offset_store_failed", {{"reason", st.error().message}});
    }
  }

  void enqueue(kafka::Record r) {
    if (r.offset < scheduler_.seen_through(r.partition)) {
      return;  // fetched before a pause and again after it: already queued or done
    }
    auto doc = json::parse(r.value);
    auto req = doc.is_discarded()
                   ? Expected<Request, std::string>(Unexpected(std::string("value is not JSON")))
                   : parse_request(doc);
    const bool replay = dlq::replay_count_of(r) > 0;
    if (req) {
      scheduler_.add(std::move(r), std::move(req).value(), replay);
    } else {
      scheduler_.add(std::move(r), Request{}, replay, req.error());
    }
  }

  // One try of a queued head, and its effects applied. An error only when the worker must stop.
  Status work(worker::Context& ctx, Item* item) {
    Effects fx;
    if (!item->invalid.empty()) {
      fx = decide_invalid(*item, wall_clock_ms());
    } else {
      auto out = core_.send(item->request, item->replay, /*wait_for_budget=*/false);
      if (!out) {
        log::warn("sender.attempt_failed", {{"request_id", item->request.request_id},
                                            {"attempt", item->attempts + 1},
                                            {"error_class", to_string(out.error().kind)},
                                            {"reason", out.error().message}});
        if (item->first_failure_ms == 0) {
          item->first_failure_ms = wall_clock_ms();
        }
      }
      fx = decide(*item, out, c_.retry, now_us(), wall_clock_ms());
    }
    if (fx.fatal) {
      return Unexpected(*fx.fatal);
    }
    number_blocked_until_ = std::max(number_blocked_until_, fx.number_blocked_until_us);
    if (fx.defer_until_us) {
      item->attempts = fx.attempts;
      scheduler_.defer(item, *fx.defer_until_us);
      return {};
    }
    if (fx.result) {
      const std::string status = fx.result->value("status", "");
      outcomes_.Add({{"status", status}}).Increment();
      const int32_t partition = item->record.partition;
      const int64_t offset = item->record.offset;
      unacked_[partition].insert(offset);
      ctx.producer().produce(topics::kOutboundResults, item->record.key, fx.result->dump(),
                             {{"request_id", fx.result->value("request_id", "")}},
                             [acks = acks_, partition, offset](const Status& st, int32_t, int64_t) {
                               std::lock_guard lock(acks->mu);
                               acks->done.emplace_back(partition, offset,
                                                       st ? std::string() : st.error().message);
                             });
      if (status == "sent" || status == "duplicate") {
        log::info("sender.sent", {{"request_id", item->request.request_id},
                                  {"status", status},
                                  {"wamid", fx.result->value("wamid", "")}});
      }
    }
    if (fx.dead_letter) {
      const int64_t first = item->first_failure_ms > 0 ? item->first_failure_ms : wall_clock_ms();
      if (Status d = kafka::produce_dead_letter(ctx.producer(), loop_options_, item->record,
                                                *fx.dead_letter, fx.attempts, first, "handle");
          !d) {
        return Unexpected(Error::fatal("cannot write the dead-letter topic: " + d.error().message));
      }
    }
    // Finished: the partition's offset moves up to the lowest record still queued (or whose
    // result is not acknowledged yet).
    const int32_t partition = item->record.partition;
    scheduled_next_[partition] = scheduler_.done(item);
    store(partition);
    return {};
  }

  struct Acks {
    std::mutex mu;
    std::vector<std::tuple<int32_t, int64_t, std::string>> done;  // partition, offset, error
  };

  WorkerConfig c_;
  kafka::LoopOptions loop_options_;
  kafka::Producer* producer_;
  kafka::Consumer* consumer_ = nullptr;  // the main consumer, once run() has it
  std::shared_ptr<Acks> acks_ = std::make_shared<Acks>();  // filled on the delivery thread
  std::map<int32_t, std::multiset<int64_t>> unacked_;      // offsets whose result is in flight
  std::map<int32_t, int64_t> scheduled_next_;              // the scheduler's next offset
  std::map<int32_t, int64_t> stored_;                      // last offset stored
  std::string results_failed_;
  Scheduler scheduler_;
  RateLimiter limiter_;
  redis::RedisClient policy_redis_;  // the inbound thread's own connection
  Conversations conversations_;
  Conversations inbound_side_;
  Sender core_;
  prometheus::Family<prometheus::Counter>& outcomes_;
  int64_t number_blocked_until_ = 0;  // the number's budget is short: nobody goes before this
};

}  // namespace

WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c;
  c.graph.graph_base = s.get("graph-base");
  c.graph.graph_version = s.get("graph-version");
  c.graph.access_token = s.get("access-token");
  c.graph.timeout = std::chrono::milliseconds(s.get_int("request-timeout-ms", errors));
  c.graph.upload_timeout = std::chrono::milliseconds(s.get_int("upload-timeout-ms", errors));
  c.graph.unknown_window_grace_ms = s.get_int("window-grace-ms", errors);
  if (!s.get("s3-bucket").empty()) {
    c.graph.s3 = media::parse_s3(s, s.get("upload-staging-dir"));
  }
  c.limits.number_per_second = static_cast<double>(s.get_int("number-rate", errors));
  c.limits.number_burst = static_cast<int>(s.get_int("number-burst", errors));
  const int64_t pair_ms = s.get_int("pair-interval-ms", errors);
  c.limits.pair_per_second = pair_ms > 0 ? 1000.0 / static_cast<double>(pair_ms) : 0;
  c.limits.pair_burst = static_cast<int>(s.get_int("pair-burst", errors));
  if (c.limits.number_per_second <= 0 || c.limits.pair_per_second <= 0 ||
      c.limits.number_burst < 1 || c.limits.pair_burst < 1) {
    errors.push_back("rate limits: number-rate, pair-interval-ms > 0; bursts >= 1");
  }
  c.enforce_window = s.get_bool("enforce-window", errors);
  c.policy.enforce_window = c.enforce_window;
  const int64_t max_queued = s.get_int("max-queued", errors);
  if (max_queued < 1) {
    errors.push_back("WAFLEET_MAX_QUEUED: must be at least 1");
  }
  c.max_queued = static_cast<size_t>(std::max<int64_t>(1, max_queued));
  c.policy.stop_keywords = worker::split_list(s.get("stop-keywords"));
  c.policy.suppression_salt = s.get("suppression-salt");
  c.policy.allowlist_mode = s.get_bool("allowlist-mode", errors);
  c.policy.require_opt_in = s.get("require-opt-in");
  if (c.policy.require_opt_in != "off" && c.policy.require_opt_in != "bulk" &&
      c.policy.require_opt_in != "templates") {
    errors.push_back("WAFLEET_REQUIRE_OPT_IN: off, bulk or templates");
  }
  c.retry.max_attempts = static_cast<int>(s.get_int("attempts", errors));
  if (c.retry.max_attempts < 1) {
    errors.push_back("WAFLEET_ATTEMPTS: must be at least 1");
  }
  c.retry.backoff_initial = std::chrono::milliseconds(s.get_int("backoff-ms", errors));
  c.retry.backoff_max = std::chrono::milliseconds(60000);
  return c;
}

static worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  const WorkerConfig c = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.consumes = {topics::kOutbound};
  plan.wiring.produces = {topics::kOutboundResults};
  plan.wiring.producer.linger_ms = 2;  // results are not awaited one by one: batch them a little
  plan.wiring.fetch_wait_max_ms = 10;  // a reply goes out the moment it lands, not 100 ms later
  plan.started = {{"graph", c.graph.graph_base}};
  plan.build = worker::build<SenderCore>(c);
  return plan;
}

worker::Spec spec() { return {"sender", "wafleet-sender", own_options(), make_plan}; }

}  // namespace wafleet::sender
