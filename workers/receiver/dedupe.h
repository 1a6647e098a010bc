#pragma once
// DedupStore on Redis. A key's life: SET NX GET "<token>" with a short TTL when a request
// claims it (the old value, if any, says done or another request's); "done" with the dedupe
// TTL once Kafka acknowledged; deleted if the produce failed. The release checks the token, so
// a slow request never frees another's claim; "done" needs no check, because an acknowledged
// event is done whoever holds the mark.
// One command per key (keys are not hash-tagged together, so this works on Redis Cluster),
// all of a request's keys in one pipelined round trip, shared with concurrent requests.
#include <atomic>
#include <memory>

#include "common/redis.h"
#include "workers/receiver/receiver.h"

namespace wafleet::receiver {

class RedisDedupStore : public DedupStore {
 public:
  // lua_claim: claim with the Lua script from the start (chosen by itself on Redis < 7.0).
  RedisDedupStore(redis::Options options, int64_t pending_ttl_ms, int64_t done_ttl_ms,
                  bool lua_claim = false);

  void claim(std::vector<std::string> keys, std::string token,
             std::function<void(Result<std::vector<ClaimState>>)> done) override;
  void confirm(std::vector<std::string> keys, std::string token,
               std::function<void(Status)> done) override;
  void release(std::vector<std::string> keys, std::string token,
               std::function<void(Status)> done) override;
  bool healthy() const { return pipeline_->healthy(); }

 private:
  void run_each(const redis::Script& script, std::vector<std::string> keys,
                std::vector<std::string> args, std::function<void(Status)> done);
  std::atomic<bool> legacy_claim_{false};  // Redis < 7.0: the claim runs as a Lua script
  int64_t pending_ttl_ms_;
  int64_t done_ttl_ms_;
  redis::Script claim_;
  redis::Script release_;
  std::unique_ptr<redis::RedisPipeline> pipeline_;  // last: its thread uses the scripts
};

}  // namespace wafleet::receiver
