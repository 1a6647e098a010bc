#include "common/worker.h"

#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <sstream>
#include <thread>

#include "common/log.h"
#include "common/runtime.h"
#include "topics/topics.h"

namespace wafleet::worker {

std::vector<config::Option> all_options(const Spec& spec) {
  auto opts = config::common_options();
  for (auto& o : opts) {
    if (o.name == "group-id") {
      o.default_value = spec.default_group;
    }
  }
  opts.push_back({"admin-port-file", "", "write the bound admin port here once listening"});
  opts.insert(opts.end(), spec.options.begin(), spec.options.end());
  return opts;
}

std::vector<config::Option> graph_api_options() {
  return {
      {"access-token", "", "Graph API access token (Bearer)", true, true},
      {"graph-base", "https://graph.facebook.com", "Graph API base URL (the emulator in tests)"},
      {"graph-version", "v22.0", "Graph API version in request paths"},
  };
}

std::vector<std::string> split_list(const std::string& value) {
  std::vector<std::string> out;
  std::stringstream ss(value);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto first = item.find_first_not_of(" \t");
    if (first == std::string::npos) {
      continue;
    }
    const auto last = item.find_last_not_of(" \t");
    out.push_back(item.substr(first, last - first + 1));
  }
  return out;
}

Result<std::unique_ptr<kafka::Consumer>> Context::create_consumer(
    const kafka::ConsumerOptions& o) const {
  return kafka::Consumer::create(kafka_config_, o);
}

kafka::LoopOptions Context::loop_options() const {
  kafka::LoopOptions lo;
  lo.worker = name_;
  lo.group_id = group_id_;
  return lo;
}

void Context::wait_for_stop() {
  std::unique_lock lock(stop_mu_);
  stop_cv_.wait(lock, [&] { return stopping_.load(); });
}

void Context::request_stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
}

Status LoopCore::run(Context& ctx) {
  kafka::LoopOptions lo = ctx.loop_options();
  if (tune_) {
    tune_(lo);
  }
  kafka::ConsumerLoop loop(ctx.consumer(), ctx.producer(), lo);
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      return {};
    }
    loop_ = &loop;
  }
  Status result = loop.run(handle_, give_up_);
  std::lock_guard lock(mu_);
  loop_ = nullptr;
  return result;
}

void LoopCore::stop() {
  std::lock_guard lock(mu_);
  stopped_ = true;
  if (loop_ != nullptr) {
    loop_->stop();
  }
}

namespace {

nlohmann::json effective_config(const config::Settings& s) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, v] : s.redacted()) {
    out[k] = v;
  }
  return out;
}

}  // namespace

int run(int argc, char** argv, const Spec& spec) {
  runtime::block_shutdown_signals();
  const std::string program = "wafleet-" + spec.name;
  const auto opts = all_options(spec);
  std::vector<std::string> errors;
  Context ctx;
  ctx.name_ = spec.name;
  ctx.settings_ = config::load_args(program, opts, argc, argv, errors);
  const config::Settings& s = ctx.settings_;
  Plan plan = spec.configure(s, errors);
  const Wiring& wiring = plan.wiring;
  auto admin = config::parse_host_port(s.get("admin-listen"), "admin-listen", errors);
  if (wiring.redis) {
    if (auto r = redis::parse_url(s.get("redis-url")); r) {
      ctx.redis_options_ = *r;
    } else {
      errors.push_back("WAFLEET_REDIS_URL: " + r.error().message);
    }
  }
  if (!wiring.consumes.empty() && s.get("group-id").empty()) {
    errors.push_back("WAFLEET_GROUP_ID: required (this worker consumes " + wiring.consumes[0] + ")");
  }
  const bool clear_phones = s.get_bool("log-phone-numbers", errors);
  config::exit_if_invalid(program, errors);
  log::init(spec.name, s.get("log-level"), clear_phones);
  log::info("worker.starting", {{"config", effective_config(s)}});

  ctx.group_id_ = s.get("group-id");
  ctx.kafka_config_ = kafka::ClientConfig{s.get("kafka-brokers"), program, s.kafka_properties()};
  auto producer = kafka::Producer::create(ctx.kafka_config_, wiring.producer);
  if (!producer) {
    std::cerr << program << ": " << producer.error().message << "\n";
    return 1;
  }
  ctx.producer_ = std::move(producer).value();
  // A consuming worker dead-letters through the same producer: its first dead letter must not
  // stall the loop for a metadata fetch (half a second on a fresh producer).
  std::vector<std::string> warm = wiring.produces;
  if (!wiring.consumes.empty()) {
    warm.push_back(topics::kDlq);
  }
  for (const auto& topic : warm) {
    if (auto w = ctx.producer_->warm_up(topic, std::chrono::seconds(5)); !w) {
      log::warn("worker.warm_up_failed", {{"topic", topic}, {"reason", w.error().message}});
    }
  }
  if (wiring.redis) {
    ctx.redis_ = std::make_unique<redis::RedisClient>(ctx.redis_options_);
  }
  ctx.registry_ = std::make_shared<prometheus::Registry>();

  auto built = plan.build(ctx);
  if (!built) {
    std::cerr << program << ": " << built.error().message << "\n";
    return 1;
  }
  std::unique_ptr<Core> core = std::move(built).value();

  if (!wiring.consumes.empty()) {
    kafka::ConsumerOptions co;
    co.group_id = ctx.group_id_;
    co.topics = wiring.consumes;
    co.fetch_wait_max_ms = wiring.fetch_wait_max_ms;
    co.listener = core->listener();
    kafka::ClientConfig kc = ctx.kafka_config_;
    for (const auto& [k, v] : wiring.consumer_properties) {
      kc.properties[k] = v;
    }
    auto consumer = kafka::Consumer::create(kc, co);
    if (!consumer) {
      std::cerr << program << ": " << consumer.error().message << "\n";
      return 1;
    }
    ctx.consumer_ = std::move(consumer).value();
  }

  // Readiness asks Redis on a connection of its own with short timeouts, so a worker is not
  // "ready" while Redis is down, and a probe never waits behind the core's commands.
  std::mutex probe_mu;
  std::unique_ptr<redis::RedisClient> probe_redis;
  if (wiring.redis) {
    redis::Options po = ctx.redis_options_;
    po.connect_timeout = std::chrono::milliseconds(300);
    po.command_timeout = std::chrono::milliseconds(300);
    probe_redis = std::make_unique<redis::RedisClient>(po);
  }
  const auto started_at = std::chrono::steady_clock::now();
  AdminServer admin_server(
      admin->host, admin->port, ctx.registry_,
      [&]() -> Probe {
        if (ctx.producer_->fatal()) {
          return {false, "kafka producer fatal error"};
        }
        if (ctx.consumer_) {
          const auto last = std::max(ctx.consumer_->last_poll(), started_at);
          if (std::chrono::steady_clock::now() - last > wiring.max_poll_gap) {
            return {false, "consumer loop stalled"};
          }
        }
        return {};
      },
      [&]() -> Probe {
        if (ctx.producer_->fatal()) {
          return {false, "kafka producer fatal error"};
        }
        if (probe_redis) {
          std::lock_guard lock(probe_mu);
          if (auto p = probe_redis->ping(); !p) {
            return {false, "redis: " + p.error().message};
          }
        }
        if (ctx.consumer_ && ctx.consumer_->assignment().empty()) {
          return {false, "no partitions assigned"};
        }
        return core->ready();
      });
  if (auto st = admin_server.start(); !st) {
    std::cerr << program << ": admin: " << st.error().message << "\n";
    return 1;
  }
  config::write_port_file(s.get("admin-port-file"), admin_server.port());

  std::atomic<bool> signalled{false};
  std::thread signals([&] {
    const int sig = runtime::wait_for_shutdown_signal();
    signalled = true;
    if (!ctx.stopping()) {
      log::info("worker.stopping", {{"signal", sig}});
    }
    ctx.request_stop();
    core->stop();
  });
  // librdkafka's fatal errors (idempotence broken) need a new producer: stop and let the
  // orchestrator restart the process; whatever was not acknowledged is redelivered.
  std::atomic<bool> producer_fatal{false};
  std::thread watchdog([&] {
    while (!ctx.stopping()) {
      if (ctx.producer_->fatal()) {
        producer_fatal = true;
        log::error("worker.fatal", {{"reason", "kafka producer fatal error"}});
        ctx.request_stop();
        core->stop();
        return;
      }
      std::unique_lock lock(ctx.stop_mu_);
      ctx.stop_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return ctx.stopping(); });
    }
  });
  nlohmann::json started = plan.started;
  started["admin"] = admin->host + ":" + std::to_string(admin_server.port());
  if (ctx.consumer_) {
    started["group"] = ctx.group_id_;
    started["consumes"] = wiring.consumes;
  }
  log::info("worker.started", started);

  Status result = core->run(ctx);
  int exit_code = producer_fatal.load() ? 1 : 0;
  if (!result) {
    log::error("worker.fatal", {{"reason", result.error().message}});
    exit_code = 1;
  }
  ctx.request_stop();
  if (ctx.consumer_) {
    ctx.consumer_->close(std::chrono::seconds(10));
  }
  ctx.producer_->flush(std::chrono::milliseconds(wiring.producer.message_timeout_ms + 1000));
  admin_server.stop();
  if (!signalled.load()) {
    kill(getpid(), SIGTERM);  // we stopped on our own: wake the signal thread
  }
  signals.join();
  watchdog.join();
  // The producer goes before the core: a delivery report still pending would otherwise call
  // into a core that is gone.
  ctx.producer_.reset();
  ctx.consumer_.reset();
  core.reset();
  log::info("worker.stopped");
  return exit_code;
}

}  // namespace wafleet::worker
