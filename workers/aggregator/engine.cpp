#include "workers/aggregator/engine.h"

#include <algorithm>
#include <atomic>
#include <future>
#include <set>

#include "common/dead_letter.h"
#include "common/json_util.h"
#include "common/log.h"
#include "workers/aggregator/turn.h"

namespace wafleet::aggregator {

namespace {

// Raises a partition's emitted_through, never lowers it (an old owner's late write is harmless).
const redis::Script kRaise(R"lua(
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
local v = tonumber(ARGV[1])
if v > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return v
end
return cur
)lua");

constexpr int64_t kUnknown = -2;  // emitted_through not loaded yet

}  // namespace

Engine::Engine(EngineOptions options, kafka::Producer& producer, redis::RedisClient& redis,
               prometheus::Registry& registry, std::function<int64_t()> now_ms)
    : options_(std::move(options)), producer_(producer), redis_(redis), now_ms_(std::move(now_ms)) {
  auto& turns = prometheus::BuildCounter()
                    .Name("wafleet_aggregator_turns_total")
                    .Help("turns by result: emitted, or skipped as already emitted")
                    .Register(registry);
  turns_emitted_ = &turns.Add({{"result", "emitted"}});
  turns_skipped_ = &turns.Add({{"result", "already_emitted"}});
  replay_skipped_ = &prometheus::BuildCounter()
                         .Name("wafleet_aggregator_replay_skipped_total")
                         .Help("re-read records skipped because an emitted turn holds them")
                         .Register(registry)
                         .Add({});
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
  media_records_ = &prometheus::BuildCounter()
                        .Name("wafleet_aggregator_media_records_total")
                        .Help("wa.media records joined into windows")
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
    PartitionState st{WindowSet(options_.windows), -1, -1, 0, false, kUnknown, -1, false, {}};
    auto it = partitions_.insert_or_assign(tp.partition, std::move(st)).first;
    if (auto s = load(tp.partition, it->second); !s) {
      // Retried before the partition's first record is handled.
      log::warn("aggregator.partition_state_unavailable",
                {{"partition", tp.partition}, {"reason", s.error().message}});
    }
  }
}

Status Engine::load(int32_t partition, PartitionState& st) {
  if (st.epoch >= 0 && st.emitted_through != kUnknown) {
    return {};
  }
  auto r = redis_.pipeline({{"INCR", key_prefix(partition) + "epoch"},
                            {"GET", key_prefix(partition) + "emitted_through"}});
  if (!r) {
    return Unexpected(r.error());
  }
  if ((*r)[0].type != redis::Reply::Type::kInteger || (*r)[1].is_error()) {
    return Unexpected(Error::transient("redis refused the partition state: " + (*r)[0].str +
                                       (*r)[1].str));
  }
  st.epoch = (*r)[0].integer;
  st.emitted_through = (*r)[1].is_nil() ? -1 : std::stoll((*r)[1].str);
  log::info("aggregator.partition_claimed", {{"partition", partition},
                                             {"epoch", st.epoch},
                                             {"emitted_through", st.emitted_through}});
  return {};
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

Status Engine::handle_batch(std::vector<kafka::Record>& records) {
  // Replay guard: one round trip for every conversation whose records may already be in an
  // emitted turn (only while re-reading what a previous owner consumed).
  std::vector<redis::Command> cmds;
  std::vector<std::pair<PartitionState*, std::string>> asked;
  std::set<std::pair<int32_t, std::string>> wanted;
  for (const auto& r : records) {
    auto it = partitions_.find(r.partition);
    if (r.topic != options_.inbound_topic || it == partitions_.end()) {
      continue;
    }
    PartitionState& st = it->second;
    if (auto s = load(r.partition, st); !s) {
      return s;
    }
    if (r.offset <= st.emitted_through && !st.conv_emitted.contains(r.key) &&
        wanted.emplace(r.partition, r.key).second) {
      cmds.push_back({"GET", key_prefix(r.partition) + "conv:" + r.key});
      asked.emplace_back(&st, r.key);
    }
  }
  if (!cmds.empty()) {
    auto got = redis_.pipeline(cmds);
    if (!got) {
      return Unexpected(got.error());
    }
    for (size_t i = 0; i < asked.size(); ++i) {
      const auto& rep = (*got)[i];
      if (rep.is_error()) {
        return Unexpected(Error::transient("redis: " + rep.str));
      }
      asked[i].first->conv_emitted[asked[i].second] = rep.is_nil() ? -1 : std::stoll(rep.str);
    }
  }
  for (size_t i = 0; i < records.size(); ++i) {
    if (auto s = handle(records[i]); !s) {
      records.erase(records.begin(), records.begin() + static_cast<std::ptrdiff_t>(i));
      return s;
    }
  }
  records.clear();
  return {};
}

Status Engine::handle_media(const kafka::Record& r) {
  auto it = partitions_.find(r.partition);
  if (it == partitions_.end()) {
    return {};  // wa.media P without wa.inbound P: the assignor keeps them together
  }
  PartitionState& st = it->second;
  auto doc = json::parse(r.value);
  const std::string message_id = doc.is_object() ? json::str(doc, "message_id") : "";
  const std::string status = doc.is_object() ? json::str(doc, "status") : "";
  if (message_id.empty() || (status != "stored" && status != "failed")) {
    kafka::LoopOptions lo;
    lo.worker = "aggregator";
    lo.group_id = options_.group_id;
    if (Status s = kafka::produce_dead_letter(
            producer_, lo, r, Error::invalid("not a wa.media record (message_id, status)"), 1,
            now_ms_(), "decode");
        !s) {
      return Unexpected(Error::fatal("cannot write the DLQ: " + s.error().message));
    }
    dead_lettered_->Increment();
  } else {
    media_records_->Increment();
    st.windows.media_result(r.key, message_id, status == "stored", std::move(doc), r.offset,
                            r.timestamp_ms);
  }
  st.media_next_offset = r.offset + 1;
  st.media_dirty = true;
  st.last_record_wall_ms = now_ms_();
  return {};
}

Status Engine::handle(const kafka::Record& r) {
  if (r.topic == options_.media_topic) {
    return handle_media(r);
  }
  auto it = partitions_.find(r.partition);
  if (r.topic != options_.inbound_topic || it == partitions_.end()) {
    return {};
  }
  PartitionState& st = it->second;
  if (auto s = load(r.partition, st); !s) {
    return s;
  }
  int64_t emitted = -1;  // last offset of this conversation already in an emitted turn
  if (r.offset <= st.emitted_through) {
    auto known = st.conv_emitted.find(r.key);
    if (known == st.conv_emitted.end()) {
      auto got = redis_.command({"GET", key_prefix(r.partition) + "conv:" + r.key});
      if (!got || got->is_error()) {
        return Unexpected(Error::transient("redis unavailable for the replay guard"));
      }
      known = st.conv_emitted.emplace(r.key, got->is_nil() ? -1 : std::stoll(got->str)).first;
    }
    emitted = known->second;
  } else if (!st.conv_emitted.empty()) {
    st.conv_emitted.clear();  // past the replay: the guard is no longer needed
  }
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
    const int64_t t = event->received_at_ms;
    if (r.offset <= emitted) {
      replay_skipped_->Increment();  // an emitted turn holds it: rebuilding would split it
    } else {
      messages_->Increment();
      close(r.partition, st.windows.add(std::move(event).value(), r.offset, dlq::replay_count_of(r)));
    }
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
      if (rep.is_error()) {
        // Not an answer about the epoch (LOADING after a restart, CLUSTERDOWN while a master
        // is away): retried, never taken for another owner's epoch.
        return Unexpected(Error::transient("redis: epoch of partition " + std::to_string(parts[i]) + ": " +
                                           rep.str));
      }
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
    // 4. Mark what is acknowledged (the turn, the conversation's last emitted offset, the
    // partition's emitted_through); keep the rest for the next flush. Until the marks are
    // written the windows stay in closed_, so the offset cannot pass them: a crash here
    // re-emits the same turn_id, never a tail.
    cmds.clear();
    std::vector<Closed> retry;
    std::map<int32_t, int64_t> through;
    const std::string ttl = std::to_string(options_.emitted_ttl_ms);
    const int64_t acked_at = now_ms_();
    for (size_t i = 0; i < closed_.size(); ++i) {
      if (!wait->ok[i]) {
        continue;
      }
      const Closed& c = closed_[i];
      const std::string prefix = key_prefix(c.partition);
      const int64_t last = c.window.messages.back().offset;
      if ((*seen)[i].integer != 1) {
        cmds.push_back({"SET", prefix + "turn:" + turns[i]["turn_id"].get<std::string>(), "1",
                        "PX", ttl});
      }
      cmds.push_back({"SET", prefix + "conv:" + c.window.conversation_key, std::to_string(last),
                      "PX", ttl});
      through[c.partition] = std::max(through[c.partition], last);
    }
    for (const auto& [p, last] : through) {
      cmds.push_back(kRaise.evalsha({key_prefix(p) + "emitted_through"},
                                    {std::to_string(last), ttl}));
    }
    bool marked_ok = true;
    if (!cmds.empty()) {
      auto marked = redis_.pipeline(cmds, {&kRaise});
      marked_ok = marked.has_value() &&
                  std::none_of(marked->begin(), marked->end(),
                               [](const redis::Reply& r) { return r.is_error(); });
      if (!marked_ok) {
        log::warn("aggregator.mark_failed",
                  {{"reason", marked ? std::string("redis error reply") : marked.error().message}});
      }
    }
    for (size_t i = 0; i < closed_.size(); ++i) {
      if (!wait->ok[i] || !marked_ok) {
        retry.push_back(std::move(closed_[i]));
        continue;
      }
      if ((*seen)[i].integer != 1) {
        turns_emitted_->Increment();
        const int64_t due = due_at(closed_[i].window, options_.windows);
        close_latency_->Observe(static_cast<double>(std::max<int64_t>(0, acked_at - due)) / 1000.0);
      }
    }
    for (const auto& [p, last] : through) {
      if (auto st = partitions_.find(p); marked_ok && st != partitions_.end()) {
        st->second.emitted_through = std::max(st->second.emitted_through, last);
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
  // wa.media: never past a record an open window (or a message still to come) holds.
  for (auto& [partition, st] : partitions_) {
    if (!st.media_dirty || st.media_next_offset < 0) {
      continue;
    }
    int64_t allowed = st.media_next_offset;
    if (auto oldest = st.windows.oldest_media_offset()) {
      allowed = std::min(allowed, *oldest);
    }
    for (const auto& c : closed_) {
      if (c.partition == partition) {
        for (const auto& b : c.window.messages) {
          if (b.media_offset >= 0) {
            allowed = std::min(allowed, b.media_offset);
          }
        }
      }
    }
    if (auto s = consumer.store_offset(options_.media_topic, partition, allowed); s) {
      st.media_dirty = false;
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
