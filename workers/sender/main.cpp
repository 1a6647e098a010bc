// wafleet-sender: wiring only. Logic in request.cpp (validation, Graph bodies) and sender.cpp
// (limits, never twice, outcomes); see README.md here.
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "common/admin.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/consumer_loop.h"
#include "common/dead_letter.h"
#include "common/json_util.h"
#include "common/kafka.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/runtime.h"
#include "common/worker.h"
#include "topics/topics.h"
#include "workers/sender/scheduler.h"
#include "workers/sender/sender.h"

using namespace wafleet;

int main(int argc, char** argv) {
  runtime::block_shutdown_signals();
  auto opts = config::common_options();
  for (auto& o : opts) {
    if (o.name == "group-id") {
      o.default_value = "wafleet-sender";
    }
  }
  const std::vector<config::Option> mine = {
      {"access-token", "", "Graph API access token (Bearer)", true, true},
      {"graph-base", "https://graph.facebook.com", "Graph API base URL (the emulator in tests)"},
      {"graph-version", "v22.0", "Graph API version in request paths"},
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
      {"admin-port-file", "", "write the bound admin port here"},
      {"max-queued", "2000", "outbound requests read ahead into the per-person queues"},
  };
  opts.insert(opts.end(), mine.begin(), mine.end());
  std::vector<std::string> errors;
  auto s = config::load_args("wafleet-sender", opts, argc, argv, errors);
  sender::Options so;
  so.graph_base = s.get("graph-base");
  so.graph_version = s.get("graph-version");
  so.access_token = s.get("access-token");
  so.timeout = std::chrono::milliseconds(s.get_int("request-timeout-ms", errors));
  sender::Limits limits;
  limits.number_per_second = static_cast<double>(s.get_int("number-rate", errors));
  limits.number_burst = static_cast<int>(s.get_int("number-burst", errors));
  const int64_t pair_ms = s.get_int("pair-interval-ms", errors);
  limits.pair_per_second = pair_ms > 0 ? 1000.0 / static_cast<double>(pair_ms) : 0;
  limits.pair_burst = static_cast<int>(s.get_int("pair-burst", errors));
  if (limits.number_per_second <= 0 || limits.pair_per_second <= 0 || limits.number_burst < 1 ||
      limits.pair_burst < 1) {
    errors.push_back("rate limits: number-rate, pair-interval-ms > 0; bursts >= 1");
  }
  const bool enforce = s.get_bool("enforce-window", errors);
  const int64_t max_queued_setting = s.get_int("max-queued", errors);
  if (max_queued_setting < 1) {
    errors.push_back("WAFLEET_MAX_QUEUED: must be at least 1");
  }
  const auto max_queued = static_cast<size_t>(std::max<int64_t>(1, max_queued_setting));
  sender::PolicyOptions po;
  po.stop_keywords.clear();
  {
    std::string all = s.get("stop-keywords");
    size_t pos = 0;
    while (pos <= all.size()) {
      size_t comma = all.find(',', pos);
      if (comma == std::string::npos) {
        comma = all.size();
      }
      if (comma > pos) {
        po.stop_keywords.push_back(all.substr(pos, comma - pos));
      }
      pos = comma + 1;
    }
  }
  kafka::LoopOptions lo;
  lo.worker = "sender";
  lo.group_id = s.get("group-id");
  lo.max_attempts = static_cast<int>(s.get_int("attempts", errors));
  lo.backoff_initial = std::chrono::milliseconds(s.get_int("backoff-ms", errors));
  lo.backoff_max = std::chrono::milliseconds(60000);
  auto admin = config::parse_host_port(s.get("admin-listen"), "admin-listen", errors);
  auto redis_opts = redis::parse_url(s.get("redis-url"));
  if (!redis_opts) {
    errors.push_back("WAFLEET_REDIS_URL: " + redis_opts.error().message);
  }
  const bool clear_phones = s.get_bool("log-phone-numbers", errors);
  config::exit_if_invalid("wafleet-sender", errors);
  log::init("sender", s.get("log-level"), clear_phones);
  nlohmann::json effective;
  for (const auto& [k, v] : s.redacted()) {
    effective[k] = v;
  }
  log::info("worker.starting", {{"config", effective}});

  kafka::ClientConfig kc{s.get("kafka-brokers"), "wafleet-sender", s.kafka_properties()};
  kafka::ProducerOptions producer_options;
  producer_options.linger_ms = 0;  // one result at a time, each awaited: do not wait to batch
  auto producer = kafka::Producer::create(kc, producer_options);
  if (!producer) {
    std::cerr << "wafleet-sender: " << producer.error().message << "\n";
    return 1;
  }
  (void)(*producer)->warm_up(topics::kOutboundResults, std::chrono::seconds(5));
  // Work waits in per-person queues (scheduler.h); partitions that go take their queued records
  // with them, unsent and uncommitted, for the next owner.
  sender::Scheduler scheduler;
  struct DropRevoked : kafka::RebalanceListener {
    sender::Scheduler* scheduler = nullptr;
    void on_assigned(const std::vector<kafka::TopicPartition>&) override {}
    void on_revoked(const std::vector<kafka::TopicPartition>& partitions) override {
      for (const auto& tp : partitions) {
        scheduler->drop_partition(tp.partition);
      }
    }
  } drop_revoked;
  drop_revoked.scheduler = &scheduler;
  kafka::ConsumerOptions co;
  co.group_id = lo.group_id;
  co.topics = {topics::kOutbound};
  co.listener = &drop_revoked;
  auto consumer = kafka::Consumer::create(kc, co);
  if (!consumer) {
    std::cerr << "wafleet-sender: " << consumer.error().message << "\n";
    return 1;
  }
  redis::RedisClient redis(*redis_opts);
  redis::RedisClient probe_redis(*redis_opts);
  std::mutex probe_mu;
  auto registry = std::make_shared<prometheus::Registry>();
  auto& outcomes = prometheus::BuildCounter()
                       .Name("wafleet_sender_outcomes_total")
                       .Help("requests by outcome")
                       .Register(*registry);
  AdminServer admin_server(
      admin->host, admin->port, registry,
      [&] {
        const auto idle = std::chrono::steady_clock::now() - (*consumer)->last_poll();
        return Probe{idle < std::chrono::seconds(120), "consumer loop stalled"};
      },
      [&] { return worker::consumer_ready(probe_redis, probe_mu, **consumer); });
  if (auto st = admin_server.start(); !st) {
    std::cerr << "wafleet-sender: admin: " << st.error().message << "\n";
    return 1;
  }
  config::write_port_file(s.get("admin-port-file"), admin_server.port());

  std::atomic<bool> stopping{false};
  std::atomic<bool> signalled{false};
  std::thread signals([&] {
    runtime::wait_for_shutdown_signal();
    signalled = true;
    stopping = true;
  });
  sender::RateLimiter limiter(redis, limits);
  redis::RedisClient policy_redis(*redis_opts);
  sender::Conversations conversations(redis, po);
  sender::Conversations inbound_side(policy_redis, po);
  sender::Sender core(so, redis, limiter, [&] { return stopping.load(); },
                      enforce ? &conversations : nullptr);

  // The inbound side: windows, STOP keywords and delivery statuses, from wa.inbound and
  // wa.status, in a consumer group of its own (every sender replica shares it).
  kafka::ConsumerOptions ico;
  ico.group_id = lo.group_id + "-inbound";
  ico.topics = {topics::kInbound, topics::kStatus};
  auto inbound_consumer = kafka::Consumer::create(kc, ico);
  if (!inbound_consumer) {
    std::cerr << "wafleet-sender: " << inbound_consumer.error().message << "\n";
    return 1;
  }
  kafka::LoopOptions ilo = lo;
  ilo.group_id = ico.group_id;
  ilo.backoff_initial = std::chrono::milliseconds(100);
  ilo.max_attempts = 20;
  kafka::ConsumerLoop inbound_loop(**inbound_consumer, **producer, ilo);
  std::thread inbound_thread([&] {
    Status st = inbound_loop.run([&](const kafka::Record& r) -> Status {
      auto doc = json::parse(r.value);
      auto e = doc.is_discarded() ? Expected<WebhookEvent, std::string>(
                                        Unexpected(std::string("value is not JSON")))
                                  : WebhookEvent::from_json(doc);
      if (!e) {
        return {};  // the aggregator dead-letters poison inbound records; nothing to learn here
      }
      return e->kind == EventKind::kStatus ? inbound_side.on_status(*e) : inbound_side.on_inbound(*e);
    });
    if (!st) {
      log::error("sender.inbound_fatal", {{"reason", st.error().message}});
      stopping = true;
    }
  });
  log::info("worker.started", {{"group", lo.group_id}, {"graph", so.graph_base}});

  auto publish = [&](const kafka::Record& r, const nlohmann::json& result) -> Status {
    outcomes.Add({{"status", result.value("status", "")}}).Increment();
    return kafka::produce_and_wait(**producer, topics::kOutboundResults, r.key, result.dump(),
                                   {{"request_id", result.value("request_id", "")}});
  };
  // The last word on a request that will not be sent: a `failed` result (the `uncertain` one
  // was published already), then the loop's dead letter.
  auto give_up = [&](const kafka::Record& r, const Error& e, int n) -> Status {
    if (e.message.starts_with("uncertain: ")) {
      return {};
    }
    auto doc = json::parse(r.value);
    sender::Request req;
    if (auto parsed = sender::parse_request(doc); parsed) {
      req = *parsed;
    } else {
      req.request_id = doc.is_object() ? json::str(doc, "request_id") : "";
      req.idempotency_key = doc.is_object() ? json::str(doc, "idempotency_key") : "";
      req.phone_number_id = doc.is_object() ? json::str(doc, "phone_number_id") : "";
      req.type = doc.is_object() ? json::str(doc, "type") : "";
    }
    sender::Outcome o{"failed", "", 0, e.message};
    if (e.message.starts_with("(#")) {
      try {
        o.error_code = std::stoi(e.message.substr(2));
      } catch (const std::exception&) {
      }
    }
    auto result = o.to_result(req, n, wall_clock_ms());
    result["error"]["class"] = to_string(e.kind);
    return publish(r, result);
  };

  // One record is finished: its outcome is published (and its dead letter written); the
  // partition's offset moves up to the lowest record still queued.
  auto finish = [&](const sender::Item* item) {
    const int32_t partition = item->record.partition;
    const int64_t next = scheduler.done(item);
    if (Status st = (*consumer)->store_offset(topics::kOutbound, partition, next); !st) {
      log::warn("consumer.offset_store_failed", {{"reason", st.error().message}});
    }
  };
  auto dead_letter = [&](const sender::Item* item, const Error& e, int attempts) -> Status {
    if (Status g = give_up(item->record, e, attempts); !g) {
      return Unexpected(Error::fatal("cannot publish the failure outcome: " + g.error().message));
    }
    const int64_t first = item->first_failure_ms > 0 ? item->first_failure_ms : wall_clock_ms();
    if (Status d = kafka::produce_dead_letter(**producer, lo, item->record, e, attempts, first,
                                              "handle");
        !d) {
      return Unexpected(Error::fatal("cannot write the dead-letter topic: " + d.error().message));
    }
    return {};
  };
  auto now_us = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  // One try of a queued head. Returns an error only when the worker must stop.
  int64_t number_blocked_until = 0;  // the number's budget is short: nobody goes before this
  auto work = [&](sender::Item* item) -> Status {
    if (!item->invalid.empty()) {
      if (Status d = dead_letter(item, Error::invalid(item->invalid), 1); !d) {
        return d;
      }
      finish(item);
      return {};
    }
    const int attempt = item->attempts + 1;
    auto out = core.send(item->request, item->replay, /*wait_for_budget=*/false);
    if (out && out->status == "wait") {
      const int64_t now = now_us();
      if (out->wait.number.count() > 0) {
        number_blocked_until = now + out->wait.number.count();
      }
      scheduler.defer(item, now + std::max(out->wait.number, out->wait.pair).count());
      return {};
    }
    if (!out) {
      const Error& e = out.error();
      log::warn("sender.attempt_failed", {{"request_id", item->request.request_id},
                                          {"attempt", attempt},
                                          {"error_class", to_string(e.kind)},
                                          {"reason", e.message}});
      if (item->first_failure_ms == 0) {
        item->first_failure_ms = wall_clock_ms();
      }
      if (e.kind == ErrorKind::kFatal) {
        return Unexpected(e);
      }
      if (e.kind == ErrorKind::kTransient && attempt < lo.max_attempts) {
        // Only this person's messages wait for the retry; everyone else's go meanwhile.
        item->attempts = attempt;
        auto backoff = lo.backoff_initial;
        for (int i = 1; i < attempt && backoff < lo.backoff_max; ++i) {
          backoff *= 2;
        }
        backoff = std::min(backoff, lo.backoff_max);
        scheduler.defer(item, now_us() + std::chrono::duration_cast<std::chrono::microseconds>(
                                              backoff).count());
        return {};
      }
      if (Status d = dead_letter(item, e, attempt); !d) {
        return d;
      }
      finish(item);
      return {};
    }
    if (auto p = publish(item->record, out->to_result(item->request, attempt, wall_clock_ms()));
        !p) {
      return Unexpected(Error::fatal("cannot produce the result: " + p.error().message));
    }
    if (out->status == "uncertain") {
      // Published as `uncertain`; the dead letter keeps it for a person to decide.
      if (Status d = kafka::produce_dead_letter(**producer, lo, item->record,
                                                Error::permanent("uncertain: " +
                                                                 out->error_message),
                                                attempt, wall_clock_ms(), "handle");
          !d) {
        return Unexpected(Error::fatal("cannot write the dead-letter topic: " + d.error().message));
      }
    } else {
      log::info("sender.sent", {{"request_id", item->request.request_id},
                                {"status", out->status},
                                {"wamid", out->wamid}});
    }
    finish(item);
    return {};
  };
  Status result;
  bool paused = false;
  while (!stopping.load() && result) {
    // 1. Read what there is (without waiting while there is work), up to the queue bound.
    auto timeout = std::chrono::milliseconds(scheduler.empty() ? 100 : 0);
    // Full: stop fetching but keep polling (rebalances, group liveness); a paused partition
    // returns nothing, and what was fetched ahead is fetched again on resume.
    const bool full = scheduler.size() >= max_queued;
    if (full != paused) {
      if (Status st = full ? (*consumer)->pause_all() : (*consumer)->resume_all(); !st) {
        log::warn("sender.pause_failed", {{"reason", st.error().message}});
      } else {
        paused = full;
      }
    }
    for (;;) {
      auto polled = (*consumer)->poll(timeout);
      if (!polled) {
        result = Unexpected(polled.error());
        break;
      }
      if (!*polled) {
        break;
      }
      timeout = std::chrono::milliseconds(0);
      kafka::Record r = std::move(**polled);
      if (r.offset < scheduler.seen_through(r.partition)) {
        continue;  // fetched before a pause and again after it: already queued or done
      }
      auto doc = json::parse(r.value);
      auto req = doc.is_discarded() ? Expected<sender::Request, std::string>(
                                          Unexpected(std::string("value is not JSON")))
                                    : sender::parse_request(doc);
      const bool replay = dlq::replay_count_of(r) > 0;
      if (req) {
        scheduler.add(std::move(r), std::move(req).value(), replay);
      } else {
        scheduler.add(std::move(r), sender::Request{}, replay, req.error());
      }
      if (scheduler.size() >= max_queued) {
        break;
      }
    }
    // 2. Send what may go now, a bounded number per round so reading keeps up.
    for (int n = 0; n < 64 && result && !stopping.load(); ++n) {
      if (now_us() < number_blocked_until) {
        break;
      }
      sender::Item* item = scheduler.pick(now_us());
      if (item == nullptr) {
        break;
      }
      result = work(item);
    }
    // 3. Nothing may go now: sleep exactly until the earliest moment something may (the
    // number's budget refills, a person's comes due), at most 50 ms, then read again.
    if (!scheduler.empty() && result) {
      const int64_t now = now_us();
      int64_t wake = number_blocked_until > now ? number_blocked_until : 0;
      if (wake == 0 && scheduler.pick(now) == nullptr) {
        wake = scheduler.next_ready_us().value_or(now + 50000);
      }
      if (wake > now) {
        std::this_thread::sleep_for(std::chrono::microseconds(std::min<int64_t>(wake - now, 50000)));
      }
    }
  }
  inbound_loop.stop();
  inbound_thread.join();
  (*inbound_consumer)->close(std::chrono::seconds(10));
  return worker::finish(result, **consumer, **producer, admin_server, signalled, signals);
}
