// wafleet-aggregator: wiring only. Logic: window.cpp (windows), turn.cpp (turns), engine.cpp
// (partitions, Redis fencing, emits, offsets). See README.md here.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <mutex>
#include <unistd.h>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/clock.h"
#include "common/admin.h"
#include "common/config.h"
#include "common/kafka.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/runtime.h"
#include "topics/topics.h"
#include "workers/aggregator/engine.h"

using namespace wafleet;

namespace {

int64_t now_ms() { return wall_clock_ms(); }

}  // namespace

int main(int argc, char** argv) {
  runtime::block_shutdown_signals();
  auto opts = config::common_options();
  for (auto& o : opts) {
    if (o.name == "group-id") {
      o.default_value = "wafleet-aggregator";
    }
  }
  std::vector<config::Option> mine = {
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
      {"admin-port-file", "", "write the bound admin port here"},
  };
  opts.insert(opts.end(), mine.begin(), mine.end());
  std::vector<std::string> errors;
  auto s = config::load_args("wafleet-aggregator", opts, argc, argv, errors);
  aggregator::EngineOptions eo;
  const std::string mode = s.get("mode");
  if (mode == "debounce") {
    eo.windows.mode = aggregator::Config::Mode::kDebounce;
  } else if (mode == "tumbling") {
    eo.windows.mode = aggregator::Config::Mode::kTumbling;
  } else {
    errors.push_back("WAFLEET_MODE: expected debounce or tumbling, got '" + mode + "'");
  }
  eo.windows.quiet_ms = s.get_int("quiet-ms", errors);
  eo.windows.max_ms = s.get_int("max-ms", errors);
  eo.windows.max_messages = static_cast<size_t>(s.get_int("max-messages", errors));
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
  auto admin = config::parse_host_port(s.get("admin-listen"), "admin-listen", errors);
  auto redis_opts = redis::parse_url(s.get("redis-url"));
  if (!redis_opts) {
    errors.push_back("WAFLEET_REDIS_URL: " + redis_opts.error().message);
  }
  const bool clear_phones = s.get_bool("log-phone-numbers", errors);
  config::exit_if_invalid("wafleet-aggregator", errors);
  log::init("aggregator", s.get("log-level"), clear_phones);
  nlohmann::json effective;
  for (const auto& [k, v] : s.redacted()) {
    effective[k] = v;
  }
  log::info("worker.starting", {{"config", effective}});

  kafka::ClientConfig kc{s.get("kafka-brokers"), "wafleet-aggregator", s.kafka_properties()};
  auto producer = kafka::Producer::create(kc);
  if (!producer) {
    std::cerr << "wafleet-aggregator: " << producer.error().message << "\n";
    return 1;
  }
  if (auto w = (*producer)->warm_up(topics::kTurns, std::chrono::seconds(5)); !w) {
    log::warn("aggregator.warm_up_failed", {{"reason", w.error().message}});
  }
  redis::RedisClient redis(*redis_opts);
  auto registry = std::make_shared<prometheus::Registry>();
  aggregator::Engine engine(eo, **producer, redis, *registry, now_ms);
  kafka::ConsumerOptions co;
  co.group_id = eo.group_id;
  co.topics = {topics::kInbound};
  if (eo.windows.join_media) {
    co.topics.push_back(topics::kMedia);  // co-partitioned: P of both comes to one instance
  }
  co.listener = &engine;
  co.fetch_wait_max_ms = 20;  // fresh watermarks: idle conversations close on time
  auto consumer = kafka::Consumer::create(kc, co);
  if (!consumer) {
    std::cerr << "wafleet-aggregator: " << consumer.error().message << "\n";
    return 1;
  }
  std::atomic<bool> stop{false};
  std::mutex probe_mu;
  redis::RedisClient probe_redis(*redis_opts);
  AdminServer admin_server(
      admin->host, admin->port, registry,
      [&] {
        const auto idle = std::chrono::steady_clock::now() - (*consumer)->last_poll();
        return Probe{idle < std::chrono::seconds(30), "consumer loop stalled"};
      },
      [&] {
        std::lock_guard lock(probe_mu);
        if (auto p = probe_redis.ping(); !p) {
          return Probe{false, "redis: " + p.error().message};
        }
        if ((*consumer)->assignment().empty()) {
          return Probe{false, "no partitions assigned"};
        }
        return Probe{true, ""};
      });
  if (auto st = admin_server.start(); !st) {
    std::cerr << "wafleet-aggregator: admin: " << st.error().message << "\n";
    return 1;
  }
  config::write_port_file(s.get("admin-port-file"), admin_server.port());
  std::atomic<bool> signalled{false};
  std::thread signals([&] {
    runtime::wait_for_shutdown_signal();
    signalled = true;
    stop = true;
  });
  log::info("worker.started", {{"group", eo.group_id}, {"mode", mode},
                               {"admin", admin->host + ":" + std::to_string(admin_server.port())}});

  int exit_code = 0;
  auto backoff = std::chrono::milliseconds(50);
  std::vector<kafka::Record> batch;  // kept until handled: a Redis outage retries it
  while (!stop.load()) {
    const auto batch_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
    // Sleep in poll no longer than until the next window falls due (plus its grace).
    int64_t wait_ms = 20;
    if (auto due = engine.next_due()) {
      wait_ms = std::clamp<int64_t>(*due + eo.timer_grace_ms - now_ms(), 0, 20);
    }
    const bool refill = batch.empty();
    while (refill && batch.size() < 1000 && std::chrono::steady_clock::now() < batch_end) {
      auto r = (*consumer)->poll(std::chrono::milliseconds(batch.empty() ? wait_ms : 0));
      if (!r) {
        log::error("worker.fatal", {{"reason", r.error().message}});
        exit_code = 1;
        stop = true;
        break;
      }
      if (!*r) {
        break;
      }
      batch.push_back(std::move(**r));
    }
    Status step = engine.handle_batch(batch);  // removes what it handled
    if (step) {
      engine.tick(**consumer);
      step = engine.flush(**consumer);
    }
    if (!step) {
      if (step.error().kind == ErrorKind::kFatal) {
        log::error("worker.fatal", {{"reason", step.error().message}});
        exit_code = 1;
        break;
      }
      log::warn("aggregator.retry", {{"reason", step.error().message}});
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    } else {
      backoff = std::chrono::milliseconds(50);
    }
  }
  log::info("worker.stopping", {{"open_windows", engine.open_windows()}});
  (void)engine.flush(**consumer);
  (*consumer)->close(std::chrono::seconds(10));
  (*producer)->flush(std::chrono::seconds(5));
  admin_server.stop();
  if (!signalled.load()) {
    kill(getpid(), SIGTERM);  // we stopped on our own: wake the signal thread
  }
  signals.join();
  log::info("worker.stopped");
  return exit_code;
}
