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
//   agg:{wa.inbound:P}:conv:<key>       offset of the last record of the conversation's last
//                                       emitted turn
//   agg:{wa.inbound:P}:emitted_through  highest such offset in the partition
// The last two stop a split on rebalance: a new owner re-reads from the oldest window that was
// still open, and between there and where the old owner stopped lie the tails of other
// conversations' windows that were already emitted (they opened earlier). Records at or below
// emitted_through are looked up (one pipelined GET per batch, per conversation) and skipped
// when an emitted turn already holds them.
// Threading: one thread (the consumer's) calls everything, rebalance callbacks included.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
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
  std::string media_topic = "wa.media";  // joined when windows.join_media
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

  // Buffers consumed records (poison records go to the DLQ) and removes them from `records`.
  // After a transient error (Redis down while replaying) `records` holds what is left to
  // handle: call again with it.
  Status handle_batch(std::vector<kafka::Record>& records);
  // One record; looks up the replay marker itself when handle_batch did not.
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
    // Replay guard: records at or below emitted_through may already be in an emitted turn.
    int64_t emitted_through = -1;
    int64_t media_next_offset = -1;  // after the last consumed wa.media record
    bool media_dirty = false;
    std::unordered_map<std::string, int64_t> conv_emitted;  // key -> last emitted offset
  };
  struct Closed {
    int32_t partition;
    Window window;
  };
  void close(int32_t partition, std::vector<Window> windows);
  Status handle_media(const kafka::Record& r);
  // Claims the partition's epoch and reads its emitted_through, once per assignment.
  Status load(int32_t partition, PartitionState& st);
  std::string key_prefix(int32_t partition) const;

  EngineOptions options_;
  kafka::Producer& producer_;
  redis::RedisClient& redis_;
  std::function<int64_t()> now_ms_;
  std::map<int32_t, PartitionState> partitions_;
  std::vector<Closed> closed_;
  prometheus::Counter* turns_emitted_;
  prometheus::Counter* turns_skipped_;
  prometheus::Counter* replay_skipped_;
  prometheus::Counter* messages_;
  prometheus::Counter* dead_lettered_;
  prometheus::Counter* media_records_;
  prometheus::Histogram* close_latency_;
};

}  // namespace wafleet::aggregator
