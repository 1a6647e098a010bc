#include "common/worker.h"

#include <signal.h>
#include <unistd.h>

#include "common/log.h"

namespace wafleet::worker {

Probe consumer_ready(redis::RedisClient& probe_redis, std::mutex& mu,
                     const kafka::Consumer& consumer) {
  std::lock_guard lock(mu);
  if (auto p = probe_redis.ping(); !p) {
    return Probe{false, "redis: " + p.error().message};
  }
  return Probe{!consumer.assignment().empty(), "no partitions assigned"};
}

int finish(const Status& result, kafka::Consumer& consumer, kafka::Producer& producer,
           AdminServer& admin, const std::atomic<bool>& signalled, std::thread& signals) {
  int exit_code = 0;
  if (!result) {
    log::error("worker.fatal", {{"reason", result.error().message}});
    exit_code = 1;
  }
  consumer.close(std::chrono::seconds(10));
  producer.flush(std::chrono::seconds(5));
  admin.stop();
  if (!signalled.load()) {
    kill(getpid(), SIGTERM);  // we stopped on our own: wake the signal thread
  }
  signals.join();
  log::info("worker.stopped");
  return exit_code;
}

}  // namespace wafleet::worker
