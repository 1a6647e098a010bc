// wafleet-replay: replays dead letters of the error classes configured as transient, after a
// delay that doubles with each replay, up to a cap after which they are parked. The policy is
// `wafleet dlq replay`'s (replay.cpp); see README.md here.
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <limits>
#include <mutex>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "common/admin.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/consumer_loop.h"
#include "common/kafka.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/runtime.h"
#include "common/worker.h"
#include "topics/topics.h"
#include "workers/replay/replay.h"

using namespace wafleet;

namespace {

std::set<std::string> csv(const std::string& all) {
  std::set<std::string> out;
  size_t pos = 0;
  while (pos <= all.size()) {
    size_t comma = all.find(',', pos);
    if (comma == std::string::npos) {
      comma = all.size();
    }
    if (comma > pos) {
      out.insert(all.substr(pos, comma - pos));
    }
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  runtime::block_shutdown_signals();
  auto opts = config::common_options();
  for (auto& o : opts) {
    if (o.name == "group-id") {
      o.default_value = "wafleet-replay";
    }
  }
  const std::vector<config::Option> mine = {
      {"dlq-topic", topics::kDlq, "dead-letter topic to watch"},
      {"error-classes", "transient", "error classes replayed by themselves (comma-separated)"},
      {"workers", "", "only dead letters of these workers (comma-separated; empty: all)"},
      {"delay-ms", "30000", "a dead letter waits this long before its first replay"},
      {"max-delay-ms", "600000", "the delay doubles with every replay, up to this"},
      {"max-replays", "3", "a dead letter replayed this often is parked on wa.dlq.parked"},
      {"receiver-url", "", "receiver base URL, for webhook bodies the receiver dead-lettered"},
      {"app-secret", "", "signs those webhook bodies (first of a comma-separated list)", true},
      {"admin-port-file", "", "write the bound admin port here"},
  };
  opts.insert(opts.end(), mine.begin(), mine.end());
  std::vector<std::string> errors;
  auto s = config::load_args("wafleet-replay", opts, argc, argv, errors);
  const auto classes = csv(s.get("error-classes"));
  for (const auto& c : classes) {
    if (c != "transient" && c != "permanent" && c != "invalid_input") {
      errors.push_back("WAFLEET_ERROR_CLASSES: '" + c +
                       "' is not one of transient, permanent, invalid_input");
    }
  }
  const int64_t delay_ms = s.get_int("delay-ms", errors);
  const int64_t max_delay_ms = s.get_int("max-delay-ms", errors);
  if (delay_ms < 0 || max_delay_ms < delay_ms) {
    errors.push_back("WAFLEET_DELAY_MS / WAFLEET_MAX_DELAY_MS: 0 <= delay <= max delay");
  }
  replay::Options ro;
  ro.dlq_topic = s.get("dlq-topic");
  ro.max_replays = static_cast<int>(s.get_int("max-replays", errors));
  if (ro.max_replays < 1) {
    errors.push_back("WAFLEET_MAX_REPLAYS: must be at least 1");
  }
  ro.mode = "worker";
  ro.receiver_url = s.get("receiver-url");
  ro.app_secret = s.get("app-secret");
  if (auto comma = ro.app_secret.find(','); comma != std::string::npos) {
    ro.app_secret.resize(comma);
  }
  replay::Filter filter;
  filter.error_classes = classes;
  filter.workers = csv(s.get("workers"));
  auto admin = config::parse_host_port(s.get("admin-listen"), "admin-listen", errors);
  auto redis_opts = redis::parse_url(s.get("redis-url"));
  if (!redis_opts) {
    errors.push_back("WAFLEET_REDIS_URL: " + redis_opts.error().message);
  }
  const bool clear_phones = s.get_bool("log-phone-numbers", errors);
  config::exit_if_invalid("wafleet-replay", errors);
  log::init("replay", s.get("log-level"), clear_phones);
  nlohmann::json effective;
  for (const auto& [k, v] : s.redacted()) {
    effective[k] = v;
  }
  log::info("worker.starting", {{"config", effective}});
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  ro.actor = "wafleet-replay@" + std::string(host);

  kafka::ClientConfig kc{s.get("kafka-brokers"), "wafleet-replay", s.kafka_properties()};
  kafka::ProducerOptions po;
  po.linger_ms = 0;
  auto producer = kafka::Producer::create(kc, po);
  if (!producer) {
    std::cerr << "wafleet-replay: " << producer.error().message << "\n";
    return 1;
  }
  for (const auto& topic : {ro.audit_topic, ro.parking_topic}) {
    if (auto w = (*producer)->warm_up(topic, std::chrono::seconds(5)); !w) {
      log::warn("replay.warm_up_failed", {{"topic", topic}, {"reason", w.error().message}});
    }
  }
  kafka::ConsumerOptions co;
  co.group_id = s.get("group-id");
  co.topics = {ro.dlq_topic};
  // A dead letter waits in the handler for its delay: the poll interval must outlast it.
  kafka::ClientConfig consumer_kc = kc;
  consumer_kc.properties.emplace("max.poll.interval.ms", std::to_string(max_delay_ms + 120000));
  auto consumer = kafka::Consumer::create(consumer_kc, co);
  if (!consumer) {
    std::cerr << "wafleet-replay: " << consumer.error().message << "\n";
    return 1;
  }
  redis::RedisClient redis(*redis_opts);
  redis::RedisClient probe_redis(*redis_opts);
  std::mutex probe_mu;
  auto registry = std::make_shared<prometheus::Registry>();
  auto& actions = prometheus::BuildCounter()
                      .Name("wafleet_replay_dead_letters_total")
                      .Help("dead letters seen, by what was done")
                      .Register(*registry);
  AdminServer admin_server(
      admin->host, admin->port, registry,
      [&] {
        const auto idle = std::chrono::steady_clock::now() - (*consumer)->last_poll();
        return Probe{idle < std::chrono::milliseconds(max_delay_ms + 120000),
                     "consumer loop stalled"};
      },
      [&] { return worker::consumer_ready(probe_redis, probe_mu, **consumer); });
  if (auto st = admin_server.start(); !st) {
    std::cerr << "wafleet-replay: admin: " << st.error().message << "\n";
    return 1;
  }
  config::write_port_file(s.get("admin-port-file"), admin_server.port());

  kafka::LoopOptions lo;
  lo.worker = "replay";
  lo.group_id = co.group_id;
  // Only Kafka or Redis being down fails a replay: retry until they are back, never dead-letter
  // a dead letter.
  lo.max_attempts = std::numeric_limits<int>::max();
  lo.backoff_max = std::chrono::milliseconds(30000);
  kafka::ConsumerLoop loop(**consumer, **producer, lo);
  std::atomic<bool> stopping{false};
  std::atomic<bool> signalled{false};
  std::thread signals([&] {
    runtime::wait_for_shutdown_signal();
    signalled = true;
    stopping = true;
    loop.stop();
  });
  replay::Replayer replayer(**producer, redis, ro);
  log::info("worker.started", {{"group", co.group_id},
                               {"dlq", ro.dlq_topic},
                               {"classes", s.get("error-classes")},
                               {"delay_ms", delay_ms},
                               {"max_replays", ro.max_replays}});

  auto handle = [&](const kafka::Record& r) -> Status {
    auto letter = dlq::from_headers(r.headers);
    if (!letter) {
      actions.Add({{"action", "not_a_dead_letter"}}).Increment();
      log::warn("replay.not_a_dead_letter",
                {{"partition", r.partition}, {"offset", r.offset}, {"reason", letter.error()}});
      return {};
    }
    replay::Entry e{r, std::move(letter).value()};
    if (!filter.matches(e.letter)) {
      actions.Add({{"action", "not_for_this_worker"}}).Increment();
      return {};  // left for a person: `wafleet dlq replay`
    }
    // Wait out the delay, doubled per earlier replay.
    int64_t wait = delay_ms;
    for (int i = 0; i < e.letter.replay_count && wait < max_delay_ms; ++i) {
      wait *= 2;
    }
    const int64_t due = e.letter.last_failure_ms + std::min(wait, max_delay_ms);
    while (wall_clock_ms() < due) {
      if (stopping.load()) {
        return Unexpected(Error::transient("stopping before the replay was due"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(
          std::clamp<int64_t>(due - wall_clock_ms(), 1, 200)));
    }
    auto plan = replayer.plan(e);
    if (!plan) {
      return Unexpected(Error::transient(plan.error().message));
    }
    if (Status st = replayer.apply(e, *plan); !st) {
      return Unexpected(Error::transient(st.error().message));
    }
    actions.Add({{"action", replay::to_string(plan->action)}}).Increment();
    const std::string where = std::to_string(r.partition) + ":" + std::to_string(r.offset);
    log::info("replay.done", {{"dlq", where},
                              {"action", replay::to_string(plan->action)},
                              {"target", plan->target},
                              {"original_topic", e.letter.original_topic},
                              {"replay_count", e.letter.replay_count + 1},
                              {"why", plan->why}});
    if (plan->action == replay::Action::kReplay || plan->action == replay::Action::kPark) {
      replay::Counts counts;
      counts.matched = 1;
      (plan->action == replay::Action::kPark ? counts.parked : counts.replayed) = 1;
      if (Status a = replayer.audit(filter.to_json(), counts, {where}, false); !a) {
        log::warn("replay.audit_failed", {{"reason", a.error().message}});
      }
    }
    return {};
  };
  Status result = loop.run(handle);
  return worker::finish(result, **consumer, **producer, admin_server, signalled, signals);
}
