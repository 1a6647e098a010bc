#pragma once
// The sender's order of work inside the partitions it owns.
//
// Records wait in one queue per person (the record key: phone_number_id:person), in offset
// order: a person's messages go out in the order they were produced, and only the head of a
// queue is ever tried. Across people nothing waits for anyone: a head that must wait (its
// person's pair budget, a retry's backoff) is deferred and the next ready head goes instead, so
// one busy recipient no longer holds the partition. Among ready heads, replies go before bulk,
// then the oldest first.
//
// Offsets: a partition's committable offset is its lowest offset still queued (everything below
// is done), or one past the highest seen when nothing is queued: a crash re-reads from there, and
// the idempotency keys make the re-read harmless.
//
// Not thread-safe: the sender's one loop thread owns it (rebalance callbacks run inside poll on
// that same thread).
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/kafka.h"
#include "workers/sender/request.h"

namespace wafleet::sender {

struct Item {
  kafka::Record record;
  Request request;
  bool replay = false;     // came back from the DLQ
  std::string invalid;     // why the request cannot be sent (dead-lettered when its turn comes)
  int attempts = 0;        // transient failures so far
  int64_t first_failure_ms = 0;
  uint64_t seq = 0;        // arrival order
};

class Scheduler {
 public:
  // Queues a record behind its person's earlier ones. An invalid one queues too (with the
  // reason), so no offset passes it before it is dead-lettered.
  void add(kafka::Record record, Request request, bool replay, std::string invalid = {});

  // The head to try now: ready (not deferred past now_us), replies before bulk, oldest first.
  // Stays at its queue's head until done() or defer().
  Item* pick(int64_t now_us);
  // Its head waits until until_us (pair budget, backoff); the others go meanwhile.
  void defer(const Item* head, int64_t until_us);
  // Its head is finished (sent, failed, dead-lettered): the next one of that person moves up.
  // Returns the partition's committable offset afterwards.
  int64_t done(const Item* head);

  // When the earliest deferred head becomes ready (none: nullopt).
  std::optional<int64_t> next_ready_us() const;
  // Lowest queued offset of the partition, or one past the highest seen.
  std::optional<int64_t> committable(int32_t partition) const;
  // One past the highest offset queued so far on the partition (0: none): a record below it was
  // seen already.
  int64_t seen_through(int32_t partition) const {
    auto h = high_.find(partition);
    return h == high_.end() ? 0 : h->second;
  }
  // Partitions revoked: their queued records are dropped unsent (the next owner re-reads them).
  void drop_partition(int32_t partition);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct Queue {
    std::deque<Item> items;
    int64_t not_before_us = 0;
  };
  struct Ready {  // ordering of ready heads
    int priority;  // 0 reply, 1 bulk
    uint64_t seq;
    std::string person;
    bool operator<(const Ready& o) const {
      return priority != o.priority ? priority < o.priority : seq < o.seq;
    }
  };
  void index_head(const std::string& person, Queue& q);
  void unindex_head(const std::string& person, const Queue& q);
  static std::string person_of(const kafka::Record& r);

  std::unordered_map<std::string, Queue> queues_;
  std::set<Ready> ready_;                                  // heads that may go now
  std::multimap<int64_t, std::string> deferred_;           // not_before -> person
  std::map<int32_t, std::multiset<int64_t>> queued_offsets_;
  std::map<int32_t, int64_t> high_;                        // one past the highest seen
  uint64_t next_seq_ = 0;
  size_t size_ = 0;
};

}  // namespace wafleet::sender
