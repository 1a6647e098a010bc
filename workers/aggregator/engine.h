#pragma once
// The aggregator worker's engine: WindowSets per assigned partition, fed by the consumer,
// emitting turns to wa.turns, fenced and deduplicated through Redis, and telling the consumer
// how far it may commit.
//
// Crash safety comes from Kafka, not Redis: per partition the stored offset never passes the
// first offset of the oldest window still open, so re-reading rebuilds every open window, and
// windows are a function of the records (event time), so a rebuilt window gives the same
// turn_id. Redis holds two small things per partition (keys hash-tagged by partition):
//   agg:{wa.inbound:P}:epoch            bumped on every assignment; an emit needs the epoch it
//                                       started with, so an instance that lost P cannot emit
//   agg:{wa.inbound:P}:turn:<turn_id>   set after a turn is acknowledged on wa.turns; a replay
//                                       skips turns already emitted
// Threading: one thread (the consumer's) calls everything, rebalance callbacks included.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/consumer_loop.h"
#include "common/kafka.h"
#include "common/redis.h"
#include "workers/aggregator/window.h"

namespace wafleet::aggregator {

struct EngineOptions {
  Config windows;
  std::string inbound_topic = "wa.inbound";
  std::string turns_topic = "wa.turns";
  std::string group_id = "wafleet-aggregator";
  int64_t timer_grace_ms = 30;  // closes by the clock wait this long past the due time
  // ...and only after the partition has delivered nothing for this long: a fetch answers at
  // once when data is there, so a quiet spell this long means nothing is waiting. Replays
  // (a new owner re-reading) never close by the clock in the middle of their backlog.
  int64_t idle_ms = 100;
  int64_t emitted_ttl_ms = 8LL * 24 * 3600 * 1000;  // longer than wa.inbound's retention
};

class Engine : public kafka::RebalanceListener {
 public:
  Engine(EngineOptions options, kafka::Producer& producer, redis::RedisClient& redis,
         prometheus::Registry& registry, std::function<int64_t()> now_ms);

  void on_assigned(const std::vector<kafka::TopicPartition>& partitions) override;
  void on_revoked(const std::vector<kafka::TopicPartition>& partitions) override;

  // Buffers one consumed record (poison records go to the DLQ). Fatal errors only.
  Status handle(const kafka::Record& r);
  // Closes windows whose due time passed on partitions with nothing left to read.
  void tick(kafka::Consumer& consumer);
  // Emits every closed turn, waits for the acks, marks them emitted, stores offsets.
  Status flush(kafka::Consumer& consumer);

  size_t open_windows() const;
  std::optional<int64_t> next_due() const;

 private:
  struct PartitionState {
    WindowSet windows;
    int64_t epoch = 0;
    int64_t next_offset = -1;  // after the last consumed record
    int64_t last_record_wall_ms = 0;  // when a record of this partition was last consumed
    bool dirty = false;        // offsets to store
  };
  struct Closed {
    int32_t partition;
    Window window;
  };
  void close(int32_t partition, std::vector<Window> windows);
  std::string key_prefix(int32_t partition) const;

  EngineOptions options_;
  kafka::Producer& producer_;
  redis::RedisClient& redis_;
  std::function<int64_t()> now_ms_;
  std::map<int32_t, PartitionState> partitions_;
  std::vector<Closed> closed_;
  prometheus::Counter* turns_emitted_;
  prometheus::Counter* turns_skipped_;
  prometheus::Counter* messages_;
  prometheus::Counter* dead_lettered_;
  prometheus::Histogram* close_latency_;
};

}  // namespace wafleet::aggregator
