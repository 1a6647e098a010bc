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
#include "topics/topics.h"
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
  kafka::ConsumerOptions co;
  co.group_id = lo.group_id;
  co.topics = {topics::kOutbound};
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
      [&] {
        std::lock_guard lock(probe_mu);
        if (auto p = probe_redis.ping(); !p) {
          return Probe{false, "redis: " + p.error().message};
        }
        return Probe{!(*consumer)->assignment().empty(), "no partitions assigned"};
      });
  if (auto st = admin_server.start(); !st) {
    std::cerr << "wafleet-sender: admin: " << st.error().message << "\n";
    return 1;
  }
  config::write_port_file(s.get("admin-port-file"), admin_server.port());

  kafka::ConsumerLoop loop(**consumer, **producer, lo);
  std::atomic<bool> stopping{false};
  std::atomic<bool> signalled{false};
  std::thread signals([&] {
    runtime::wait_for_shutdown_signal();
    signalled = true;
    stopping = true;
    loop.stop();
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
      loop.stop();
    }
  });
  log::info("worker.started", {{"group", lo.group_id}, {"graph", so.graph_base}});

  auto publish = [&](const kafka::Record& r, const nlohmann::json& result) -> Status {
    outcomes.Add({{"status", result.value("status", "")}}).Increment();
    return kafka::produce_and_wait(**producer, topics::kOutboundResults, r.key, result.dump(),
                                   {{"request_id", result.value("request_id", "")}});
  };
  std::map<std::pair<int32_t, int64_t>, int> attempts;  // of the record being retried
  auto handle = [&](const kafka::Record& r) -> Status {
    auto doc = json::parse(r.value);
    auto req = doc.is_discarded() ? Expected<sender::Request, std::string>(
                                        Unexpected(std::string("value is not JSON")))
                                  : sender::parse_request(doc);
    if (!req) {
      return Unexpected(Error::invalid(req.error()));
    }
    const int attempt = ++attempts[{r.partition, r.offset}];
    auto out = core.send(*req, dlq::replay_count_of(r) > 0);
    if (!out) {
      log::warn("sender.attempt_failed", {{"request_id", req->request_id},
                                          {"attempt", attempt},
                                          {"error_class", to_string(out.error().kind)},
                                          {"reason", out.error().message}});
      return Unexpected(out.error());
    }
    attempts.erase({r.partition, r.offset});
    if (auto p = publish(r, out->to_result(*req, attempt, wall_clock_ms())); !p) {
      return Unexpected(Error::fatal("cannot produce the result: " + p.error().message));
    }
    if (out->status == "uncertain") {
      return Unexpected(Error::permanent("uncertain: " + out->error_message));  // to the DLQ
    }
    log::info("sender.sent", {{"request_id", req->request_id}, {"status", out->status},
                              {"wamid", out->wamid}});
    return {};
  };
  // The last word on a request that will not be sent: a `failed` result (the `uncertain` one
  // was published already), then the loop's dead letter.
  auto give_up = [&](const kafka::Record& r, const Error& e, int n) -> Status {
    attempts.erase({r.partition, r.offset});
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
  Status result = loop.run(handle, give_up);
  inbound_loop.stop();
  inbound_thread.join();
  (*inbound_consumer)->close(std::chrono::seconds(10));
  int exit_code = 0;
  if (!result) {
    log::error("worker.fatal", {{"reason", result.error().message}});
    exit_code = 1;
  }
  (*consumer)->close(std::chrono::seconds(10));
  (*producer)->flush(std::chrono::seconds(5));
  admin_server.stop();
  if (!signalled.load()) {
    kill(getpid(), SIGTERM);
  }
  signals.join();
  log::info("worker.stopped");
  return exit_code;
}
