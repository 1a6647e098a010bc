#pragma once
// The one skeleton every worker runs on (docs/ARCHITECTURE.md, "Adding a worker").
//
// A worker declares a Spec: its name, its own options, and a configure function that reads its
// typed config from the settings (appending every problem, never stopping at the first) and
// returns a Plan: what it consumes and produces, and how to build its Core. The skeleton owns
// everything around the core, once for every worker:
//   config load and the one-line-per-problem exit (code 2), the effective config echo with
//   secrets redacted, the Kafka producer (warmed up for what the worker produces) and consumer,
//   Redis, the Prometheus registry and the admin server (/metrics, /healthz, /readyz), the port
//   file, signals, a producer-fatal watchdog and a bounded shutdown.
// A worker's main.cpp is then one line: `return worker::run(argc, argv, media::spec());`.
//
// Lifecycle: configure -> connect (producer, Redis) -> build the core -> create the consumer
// (with the core's rebalance listener) -> admin server up -> core.run() until a signal or a
// fatal error -> consumer closed (committing what was stored) -> producer flushed -> admin
// down -> producer destroyed -> core destroyed.
// Threading: run() on the main thread; stop() from the signal thread; probes on the admin
// server's thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/registry.h>

#include "common/admin.h"
#include "common/config.h"
#include "common/consumer_loop.h"
#include "common/kafka.h"
#include "common/redis.h"

namespace wafleet::worker {

class Context;

// What a worker is, once built. run() blocks until ctx.stopping() (or its own fatal error).
class Core {
 public:
  virtual ~Core() = default;
  virtual Status run(Context& ctx) = 0;
  // From the signal thread: make run() return soon. Context::stopping() is already true.
  virtual void stop() {}
  // Extra readiness beyond the skeleton's (Redis answers, partitions assigned); cheap.
  virtual Probe ready() { return {}; }
  // Consumed topics' rebalances, e.g. to drop work of revoked partitions. Borrowed.
  virtual kafka::RebalanceListener* listener() { return nullptr; }
};

// What the skeleton sets up for a worker, decided from its config.
struct Wiring {
  std::vector<std::string> consumes;  // empty: no consumer (the receiver)
  std::vector<std::string> produces;  // warmed up before the first record
  kafka::ProducerOptions producer{};
  int fetch_wait_max_ms = 100;
  std::map<std::string, std::string> consumer_properties{};  // e.g. max.poll.interval.ms
  bool redis = true;
  // Liveness: the consumer polled within this long (a handler may legitimately block).
  std::chrono::milliseconds max_poll_gap{std::chrono::seconds(120)};
};

struct Plan {
  Wiring wiring;
  // Builds the core once the producer and Redis exist (the consumer comes after, in run()).
  std::function<Result<std::unique_ptr<Core>>(Context&)> build;
  nlohmann::json started = nlohmann::json::object();  // extra fields of worker.started
};

struct Spec {
  std::string name;           // "media": binary wafleet-media, log component, dlq.worker
  std::string default_group;  // the consumer group id unless WAFLEET_GROUP_ID says otherwise
  std::vector<config::Option> options;  // the worker's own, beside config::common_options()
  // Reads the typed config (pure: tests pass Settings built from a map) and returns the plan.
  std::function<Plan(const config::Settings&, std::vector<std::string>& errors)> configure;
};

// Every option of a spec: the common ones (with the worker's group default), the skeleton's
// (admin-port-file) and the worker's own.
std::vector<config::Option> all_options(const Spec& spec);

// What the skeleton hands the core. Owned by run(); lives as long as the core.
class Context {
 public:
  const std::string& name() const { return name_; }
  const config::Settings& settings() const { return settings_; }
  const std::string& group_id() const { return group_id_; }
  kafka::Producer& producer() { return *producer_; }
  // The main consumer: available in Core::run(), not yet in Plan::build.
  kafka::Consumer& consumer() { return *consumer_; }
  bool has_consumer() const { return consumer_ != nullptr; }
  // One Redis connection for the core's own thread; more from redis_options().
  redis::RedisClient& redis() { return *redis_; }
  const redis::Options& redis_options() const { return redis_options_; }
  prometheus::Registry& metrics() { return *registry_; }
  const kafka::ClientConfig& kafka_config() const { return kafka_config_; }
  // A further consumer (e.g. the sender's inbound side); the caller closes it.
  Result<std::unique_ptr<kafka::Consumer>> create_consumer(const kafka::ConsumerOptions& o) const;
  // The shared consumer loop's options with worker, group and DLQ filled in.
  kafka::LoopOptions loop_options() const;

  bool stopping() const { return stopping_.load(); }
  // Blocks until stop is requested (a signal, or request_stop()).
  void wait_for_stop();
  // The core asks to end (e.g. a second thread failed fatally).
  void request_stop();

 private:
  friend int run(int argc, char** argv, const Spec& spec);
  std::string name_;
  std::string group_id_;
  config::Settings settings_;
  kafka::ClientConfig kafka_config_;
  redis::Options redis_options_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<kafka::Consumer> consumer_;
  std::unique_ptr<redis::RedisClient> redis_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
};

// Runs the worker the spec declares; returns the process exit code (0 after a signal, 1 after a
// fatal error, 2 for invalid config).
int run(int argc, char** argv, const Spec& spec);

// A core that is the shared consumer loop (common/consumer_loop.h) over the main consumer:
// for workers whose work is one record at a time.
class LoopCore : public Core {
 public:
  LoopCore(kafka::RecordHandler handle, kafka::GiveUpHandler give_up = nullptr,
           std::function<void(kafka::LoopOptions&)> tune = nullptr)
      : handle_(std::move(handle)), give_up_(std::move(give_up)), tune_(std::move(tune)) {}
  Status run(Context& ctx) override;
  void stop() override;

 private:
  kafka::RecordHandler handle_;
  kafka::GiveUpHandler give_up_;
  std::function<void(kafka::LoopOptions&)> tune_;
  std::mutex mu_;
  kafka::ConsumerLoop* loop_ = nullptr;  // set while run() runs
  bool stopped_ = false;
};

// Plan::build for a core constructed as CoreT(ctx, config).
template <class CoreT, class Config>
std::function<Result<std::unique_ptr<Core>>(Context&)> build(Config config) {
  return [config = std::move(config)](Context& ctx) -> Result<std::unique_ptr<Core>> {
    return std::unique_ptr<Core>(std::make_unique<CoreT>(ctx, config));
  };
}

// The options of every worker that calls Meta's Graph API: access-token, graph-base,
// graph-version.
std::vector<config::Option> graph_api_options();

// "a, b,c" -> {"a","b","c"}: trimmed, empty items dropped. For list-valued options.
std::vector<std::string> split_list(const std::string& value);

}  // namespace wafleet::worker
