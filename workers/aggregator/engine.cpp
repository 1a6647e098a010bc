#include "workers/aggregator/engine.h"

#include <algorithm>
#include <atomic>
#include <future>

#include "common/json_util.h"
#include "common/log.h"
#include "workers/aggregator/turn.h"

namespace wafleet::aggregator {

Engine::Engine(EngineOptions options, kafka::Producer& producer, redis::RedisClient& redis,
               prometheus::Registry& registry, std::function<int64_t()> now_ms)
    : options_(std::move(options)), producer_(producer), redis_(redis), now_ms_(std::move(now_ms)) {
  auto& turns = prometheus::BuildCounter()
                    .Name("wafleet_aggregator_turns_total")
                    .Help("turns by result: emitted, or skipped as already emitted")
                    .Register(registry);
  turns_emitted_ = &turns.Add({{"result", "emitted"}});
  turns_skipped_ = &turns.Add({{"result", "already_emitted"}});
  messages_ = &prometheus::BuildCounter()
                   .Name("wafleet_aggregator_messages_total")
                   .Help("inbound messages buffered")
                   .Register(registry)
                   .Add({});
  dead_lettered_ = &prometheus::BuildCounter()
                        .Name("wafleet_aggregator_dead_lettered_total")
                        .Help("records sent to the DLQ")
                        .Register(registry)
                        .Add({});
  close_latency_ = &prometheus::BuildHistogram()
                        .Name("wafleet_aggregator_close_lag_seconds")
                        .Help("from a window's due time to its turn being acknowledged")
                        .Register(registry)
                        .Add({}, prometheus::Histogram::BucketBoundaries{
                                     0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
}

std::string Engine::key_prefix(int32_t partition) const {
  return "agg:{" + options_.inbound_topic + ":" + std::to_string(partition) + "}:";
}

void Engine::on_assigned(const std::vector<kafka::TopicPartition>& partitions) {
  for (const auto& tp : partitions) {
    if (tp.topic != options_.inbound_topic) {
      continue;
    }
    PartitionState st{WindowSet(options_.windows), -1, -1, false};
    auto r = redis_.command({"INCR", key_prefix(tp.partition) + "epoch"});
    if (r && r->type == redis::Reply::Type::kInteger) {
      st.epoch = r->integer;
    } else {
      log::warn("aggregator.epoch_unavailable", {{"partition", tp.partition}});
    }
    partitions_.insert_or_assign(tp.partition, std::move(st));
  }
}

void Engine::on_revoked(const std::vector<kafka::TopicPartition>& partitions) {
  for (const auto& tp : partitions) {
    if (tp.topic != options_.inbound_topic) {
      continue;
    }
    // Open windows are simply dropped: their records are at or after the stored offset, so
    // the next owner rebuilds them from Kafka.
    partitions_.erase(tp.partition);
    closed_.erase(std::remove_if(closed_.begin(), closed_.end(),
                                 [&](const Closed& c) { return c.partition == tp.partition; }),
                  closed_.end());
  }
}

void Engine::close(int32_t partition, std::vector<Window> windows) {
  for (auto& w : windows) {
    closed_.push_back({partition, std::move(w)});
  }
}

Status Engine::handle(const kafka::Record& r) {
  auto it = partitions_.find(r.partition);
  if (r.topic != options_.inbound_topic || it == partitions_.end()) {
    return {};
  }
  PartitionState& st = it->second;
  auto doc = json::parse(r.value);
  auto event = doc.is_discarded() ? Expected<WebhookEvent, std::string>(
                                        Unexpected(std::string("value is not JSON")))
                                  : WebhookEvent::from_json(doc);
  if (event && event->kind != EventKind::kMessage) {
    event = Unexpected("kind '" + std::string(to_string(event->kind)) + "' on the inbound topic");
  }
  if (!event) {
    kafka::LoopOptions lo;
    lo.worker = "aggregator";
    lo.group_id = options_.group_id;
    const int64_t now = now_ms_();
    if (Status s = kafka::produce_dead_letter(producer_, lo, r, Error::invalid(event.error()), 1,
                                              now, "decode");
        !s) {
      return Unexpected(Error::fatal("cannot write the DLQ: " + s.error().message));
    }
    dead_lettered_->Increment();
  } else {
    if (event->received_at_ms == 0) {
      event->received_at_ms = r.timestamp_ms;
    }
    messages_->Increment();
    const int64_t t = event->received_at_ms;
    close(r.partition, st.windows.add(std::move(event).value(), r.offset));
    close(r.partition, st.windows.advance_event_time(t, options_.timer_grace_ms));
  }
  st.next_offset = r.offset + 1;
  st.last_record_wall_ms = now_ms_();
  st.dirty = true;
  return {};
}

void Engine::tick(kafka::Consumer& consumer) {
  const int64_t now = now_ms_();
  for (auto& [partition, st] : partitions_) {
    auto due = st.windows.next_due();
    if (!due || *due > now - options_.timer_grace_ms) {
      continue;
    }
    // Only an idle partition closes by the clock: while records are still waiting, reading
    // them moves event time forward and closes windows exactly as a replay would. The high
    // watermark comes with every fetch response, and the broker answers a waiting fetch as
    // soon as a record arrives, so a record acknowledged before (due + grace) is seen here.
    // (Asking the leader instead, rd_kafka_query_watermark_offsets, took up to its whole
    // timeout on the dev broker and stalled consumption.)
    if (now - st.last_record_wall_ms < options_.idle_ms) {
      continue;
    }
    auto hw = consumer.high_watermark(options_.inbound_topic, partition);
    if (!hw || st.next_offset < *hw) {
      if (log::enabled(log::Level::kDebug)) {
        log::debug("aggregator.not_caught_up", {{"partition", partition},
                                                {"next_offset", st.next_offset},
                                                {"high_watermark", hw ? *hw : -1}});
      }
      continue;
    }
    close(partition, st.windows.close_due(now - options_.timer_grace_ms));
  }
}

Status Engine::flush(kafka::Consumer& consumer) {
  if (!closed_.empty()) {
    // 1. Fencing: each partition's epoch must still be ours.
    std::vector<int32_t> parts;
    for (const auto& c : closed_) {
      if (std::find(parts.begin(), parts.end(), c.partition) == parts.end()) {
        parts.push_back(c.partition);
      }
    }
    std::vector<redis::Command> cmds;
    for (int32_t p : parts) {
      cmds.push_back({"GET", key_prefix(p) + "epoch"});
    }
    auto epochs = redis_.pipeline(cmds);
    if (!epochs) {
      return Unexpected(epochs.error());
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      auto st = partitions_.find(parts[i]);
      auto rep = (*epochs)[i];
      if (rep.is_nil() && st != partitions_.end() && st->second.epoch >= 0) {
        // Redis lost its data (restart without persistence): claim the epoch again. Only a
        // different value means another owner.
        const std::string key = key_prefix(parts[i]) + "epoch";
        const std::string mine = std::to_string(st->second.epoch);
        auto set = redis_.command({"SET", key, mine, "NX"});
        auto now_value = redis_.command({"GET", key});
        if (!set || !now_value) {
          return Unexpected(Error::transient("redis unavailable for the epoch check"));
        }
        log::warn("aggregator.epoch_restored", {{"partition", parts[i]}});
        rep = *now_value;
      }
      const bool ours = st != partitions_.end() && rep.type == redis::Reply::Type::kString &&
                        rep.str == std::to_string(st->second.epoch);
      if (!ours) {
        if (st != partitions_.end() && st->second.epoch < 0) {
          return Unexpected(Error::transient("epoch of partition " + std::to_string(parts[i]) +
                                             " not known yet"));
        }
        log::warn("aggregator.fenced", {{"partition", parts[i]}});
        std::vector<kafka::TopicPartition> lost = {{options_.inbound_topic, parts[i]}};
        on_revoked(lost);
      }
    }
    if (closed_.empty()) {
      return {};
    }
    // 2. Skip turns a previous owner (or an earlier run) already emitted.
    const int64_t now = now_ms_();
    std::vector<nlohmann::json> turns;
    cmds.clear();
    for (const auto& c : closed_) {
      turns.push_back(build_turn(c.window, options_.windows, c.partition, now));
      cmds.push_back({"EXISTS", key_prefix(c.partition) + "turn:" +
                                    turns.back()["turn_id"].get<std::string>()});
    }
    auto seen = redis_.pipeline(cmds);
    if (!seen) {
      return Unexpected(seen.error());
    }
    // 3. Produce and wait for every ack.
    struct Wait {
      std::atomic<size_t> left{0};
      std::promise<void> done;
      std::vector<char> ok;
    };
    auto wait = std::make_shared<Wait>();
    wait->ok.assign(closed_.size(), 0);
    std::vector<size_t> to_send;
    for (size_t i = 0; i < closed_.size(); ++i) {
      if ((*seen)[i].integer == 1) {
        turns_skipped_->Increment();
        wait->ok[i] = 1;
      } else {
        to_send.push_back(i);
      }
    }
    wait->left = to_send.size();
    if (to_send.empty()) {
      wait->done.set_value();
    }
    for (size_t i : to_send) {
      const auto& c = closed_[i];
      kafka::Headers headers = {{"turn_id", turns[i]["turn_id"].get<std::string>()}};
      if (!c.window.messages.empty()) {
        headers.emplace_back("traceparent",
                             "00-" + (c.window.messages.front().event.trace_id.size() == 32
                                          ? c.window.messages.front().event.trace_id
                                          : std::string(32, '0')) +
                                 "-0000000000000001-01");
      }
      producer_.produce(options_.turns_topic, c.window.conversation_key, json::dump(turns[i]),
                        headers, [wait, i](const Status& s, int32_t, int64_t) {
                          wait->ok[i] = s ? 1 : 0;
                          if (wait->left.fetch_sub(1) == 1) {
                            wait->done.set_value();
                          }
                        });
    }
    wait->done.get_future().wait();
    // 4. Mark what is acknowledged; keep the rest for the next flush.
    cmds.clear();
    std::vector<Closed> retry;
    const int64_t acked_at = now_ms_();
    for (size_t i = 0; i < closed_.size(); ++i) {
      if (!wait->ok[i]) {
        retry.push_back(std::move(closed_[i]));
        continue;
      }
      if ((*seen)[i].integer != 1) {
        turns_emitted_->Increment();
        const int64_t due = due_at(closed_[i].window, options_.windows);
        close_latency_->Observe(static_cast<double>(std::max<int64_t>(0, acked_at - due)) / 1000.0);
        cmds.push_back({"SET", key_prefix(closed_[i].partition) + "turn:" +
                                   turns[i]["turn_id"].get<std::string>(),
                        "1", "PX", std::to_string(options_.emitted_ttl_ms)});
      }
    }
    if (!cmds.empty()) {
      if (auto marked = redis_.pipeline(cmds); !marked) {
        // Not fatal: without the mark a replay may emit the same turn_id again.
        log::warn("aggregator.mark_failed", {{"reason", marked.error().message}});
      }
    }
    closed_ = std::move(retry);
  }
  // 5. Offsets: never past the oldest window still open or still unsent.
  for (auto& [partition, st] : partitions_) {
    if (!st.dirty || st.next_offset < 0) {
      continue;
    }
    int64_t allowed = st.next_offset;
    if (auto oldest = st.windows.oldest_open_offset()) {
      allowed = std::min(allowed, *oldest);
    }
    for (const auto& c : closed_) {
      if (c.partition == partition) {
        allowed = std::min(allowed, c.window.first_offset);
      }
    }
    if (auto s = consumer.store_offset(options_.inbound_topic, partition, allowed); s) {
      st.dirty = false;
    }
  }
  if (!closed_.empty()) {
    return Unexpected(Error::transient(std::to_string(closed_.size()) + " turns not acknowledged"));
  }
  return {};
}

size_t Engine::open_windows() const {
  size_t n = 0;
  for (const auto& [p, st] : partitions_) {
    n += st.windows.open_windows();
  }
  return n;
}

std::optional<int64_t> Engine::next_due() const {
  std::optional<int64_t> out;
  for (const auto& [p, st] : partitions_) {
    if (auto d = st.windows.next_due(); d && (!out || *d < *out)) {
      out = d;
    }
  }
  return out;
}

}  // namespace wafleet::aggregator
