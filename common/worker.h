#pragma once
// What every consuming worker's main.cpp shares around its own loop: the readiness probe and
// the way it stops.
#include <atomic>
#include <mutex>
#include <thread>

#include "common/admin.h"
#include "common/kafka.h"
#include "common/redis.h"

namespace wafleet::worker {

// Ready when Redis answers (on the probe's own connection) and the group gave it partitions.
Probe consumer_ready(redis::RedisClient& probe_redis, std::mutex& mu,
                     const kafka::Consumer& consumer);

// The end: logs a fatal result, closes the consumer (bounded, committing what was stored),
// flushes the producer, stops the admin port, wakes the signal thread when the worker stopped
// on its own, and returns the exit code.
int finish(const Status& result, kafka::Consumer& consumer, kafka::Producer& producer,
           AdminServer& admin, const std::atomic<bool>& signalled, std::thread& signals);

}  // namespace wafleet::worker
