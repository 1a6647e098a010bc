#include "workers/sender/scheduler.h"

namespace wafleet::sender {

std::string Scheduler::person_of(const kafka::Record& r) {
  // The key is the conversation; the partition keeps two keys that collide apart.
  return std::to_string(r.partition) + "|" + r.key;
}

void Scheduler::index_head(const std::string& person, Queue& q) {
  if (q.items.empty()) {
    return;
  }
  const Item& head = q.items.front();
  if (q.not_before_us > 0) {
    deferred_.emplace(q.not_before_us, person);
  } else {
    ready_.insert({head.request.priority == Priority::kBulk ? 1 : 0, head.seq, person});
  }
}

void Scheduler::unindex_head(const std::string& person, const Queue& q) {
  if (q.items.empty()) {
    return;
  }
  const Item& head = q.items.front();
  if (q.not_before_us > 0) {
    auto [lo, hi] = deferred_.equal_range(q.not_before_us);
    for (auto it = lo; it != hi; ++it) {
      if (it->second == person) {
        deferred_.erase(it);
        break;
      }
    }
  } else {
    ready_.erase({head.request.priority == Priority::kBulk ? 1 : 0, head.seq, person});
  }
}

void Scheduler::add(kafka::Record record, Request request, bool replay, std::string invalid) {
  const std::string person = person_of(record);
  const int32_t partition = record.partition;
  const int64_t offset = record.offset;
  Queue& q = queues_[person];
  const bool was_empty = q.items.empty();
  Item item;
  item.record = std::move(record);
  item.request = std::move(request);
  item.replay = replay;
  item.invalid = std::move(invalid);
  item.seq = next_seq_++;
  q.items.push_back(std::move(item));
  if (was_empty) {
    q.not_before_us = 0;
    index_head(person, q);
  }
  queued_offsets_[partition].insert(offset);
  high_[partition] = std::max(high_[partition], offset + 1);
  ++size_;
}

Item* Scheduler::pick(int64_t now_us) {
  // Deferred heads whose time has come are ready again.
  while (!deferred_.empty() && deferred_.begin()->first <= now_us) {
    const std::string person = deferred_.begin()->second;
    deferred_.erase(deferred_.begin());
    Queue& q = queues_[person];
    q.not_before_us = 0;
    index_head(person, q);
  }
  if (ready_.empty()) {
    return nullptr;
  }
  return &queues_[ready_.begin()->person].items.front();
}

void Scheduler::defer(const Item* head, int64_t until_us) {
  const std::string person = person_of(head->record);
  Queue& q = queues_[person];
  unindex_head(person, q);
  q.not_before_us = std::max<int64_t>(until_us, 1);
  index_head(person, q);
}

int64_t Scheduler::done(const Item* head) {
  const std::string person = person_of(head->record);
  const int32_t partition = head->record.partition;
  const int64_t offset = head->record.offset;
  auto it = queues_.find(person);
  unindex_head(person, it->second);
  it->second.items.pop_front();
  it->second.not_before_us = 0;
  if (it->second.items.empty()) {
    queues_.erase(it);
  } else {
    index_head(person, it->second);
  }
  auto& offsets = queued_offsets_[partition];
  offsets.erase(offsets.find(offset));
  --size_;
  return *committable(partition);
}

std::optional<int64_t> Scheduler::next_ready_us() const {
  if (deferred_.empty()) {
    return std::nullopt;
  }
  return deferred_.begin()->first;
}

std::optional<int64_t> Scheduler::committable(int32_t partition) const {
  auto q = queued_offsets_.find(partition);
  if (q != queued_offsets_.end() && !q->second.empty()) {
    return *q->second.begin();
  }
  auto h = high_.find(partition);
  if (h == high_.end()) {
    return std::nullopt;
  }
  return h->second;
}

void Scheduler::drop_partition(int32_t partition) {
  for (auto it = queues_.begin(); it != queues_.end();) {
    if (!it->second.items.empty() && it->second.items.front().record.partition == partition) {
      unindex_head(it->first, it->second);
      size_ -= it->second.items.size();
      it = queues_.erase(it);
    } else {
      ++it;
    }
  }
  queued_offsets_.erase(partition);
  high_.erase(partition);
}

}  // namespace wafleet::sender
