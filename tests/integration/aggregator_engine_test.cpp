// The aggregator engine in process on a mock cluster of its own, with injected broker errors:
// produce errors on wa.turns and on the flush must not lose or split a turn.
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>
#include <set>
#include <thread>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/kafka.h"
#include "common/redis.h"
#include "tests/support/services.h"
#include "topics/topics.h"
#include "workers/aggregator/engine.h"

namespace wafleet::aggregator {
namespace {

int64_t now_ms() { return wall_clock_ms(); }

WebhookEvent text(const std::string& who, const std::string& id, int64_t t) {
  WebhookEvent e;
  e.kind = EventKind::kMessage;
  e.phone_number_id = "106540352242922";
  e.identity = who;
  e.conversation_key = e.phone_number_id + ":" + who;
  e.message_id = id;
  e.event_id = "m:" + e.phone_number_id + ":" + id;
  e.type = "text";
  e.received_at_ms = t;
  e.raw = {{"id", id}, {"type", "text"}, {"text", {{"body", id}}}};
  return e;
}

TEST(AggregatorEngine, InjectedProduceErrorsDelayTurnsButLoseAndSplitNothing) {
  test::RedisServer redis_server;
  auto mock = kafka::MockCluster::create(1);
  ASSERT_TRUE(mock.has_value());
  for (const auto& t : topics::catalogue()) {
    ASSERT_TRUE((*mock)->create_topic(t.name, t.partitions));
  }
  const std::string brokers = (*mock)->bootstraps();
  kafka::ClientConfig kc{brokers, "engine-test", {}};
  kafka::ProducerOptions po;
  po.message_timeout_ms = 1000;  // so injected errors surface as failed deliveries quickly
  auto producer = kafka::Producer::create(kc, po);
  ASSERT_TRUE(producer.has_value());
  redis::RedisClient redis(redis_server.options());
  prometheus::Registry registry;
  EngineOptions eo;
  eo.windows.quiet_ms = 300;
  eo.timer_grace_ms = 20;
  Engine engine(eo, **producer, redis, registry, now_ms);
  kafka::ConsumerOptions co;
  co.group_id = "engine-" + crypto::random_hex(4);
  co.topics = {topics::kInbound};
  co.listener = &engine;
  co.fetch_wait_max_ms = 20;
  auto consumer = kafka::Consumer::create(kc, co);
  ASSERT_TRUE(consumer.has_value());

  // 30 people, 3 messages each in one burst.
  std::set<std::string> all_ids;
  auto feeder = kafka::Producer::create(kc);
  ASSERT_TRUE(feeder.has_value());
  std::atomic<int> acked{0};
  for (int p = 0; p < 30; ++p) {
    for (int k = 0; k < 3; ++k) {
      auto e = text("p" + std::to_string(p), "id." + std::to_string(p) + "." + std::to_string(k),
                    now_ms());
      all_ids.insert(e.message_id);
      (*feeder)->produce(topics::kInbound, e.conversation_key, e.encode(), {},
                         [&](const Status&, int32_t, int64_t) { ++acked; });
    }
  }
  ASSERT_TRUE(test::eventually([&] { return acked.load() == 90; }));
  // Produce requests (api key 0) now fail with a retriable error, more often than the producer
  // can retry within its 1 s delivery timeout (one error is used per request, about a dozen
  // requests per 100 ms retry round): deliveries fail and the engine must retry its flush.
  std::vector<int> errors(400, 7);  // REQUEST_TIMED_OUT
  (*mock)->push_request_errors(0, errors);

  int flush_failures = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = (*consumer)->poll(std::chrono::milliseconds(20));
    ASSERT_TRUE(r.has_value());
    if (*r) {
      std::vector<kafka::Record> one = {std::move(**r)};
      ASSERT_TRUE(engine.handle_batch(one).has_value());
    }
    engine.tick(**consumer);
    if (auto f = engine.flush(**consumer); !f) {
      ++flush_failures;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    double emitted = 0;
    for (const auto& fam : registry.Collect()) {
      if (fam.name == "wafleet_aggregator_turns_total") {
        for (const auto& m : fam.metric) {
          emitted += m.counter.value;
        }
      }
    }
    if (emitted >= 30 && engine.open_windows() == 0) {
      break;
    }
  }
  EXPECT_GT(flush_failures, 0) << "the injected errors never reached the engine";
  auto turns = test::consume_until(brokers, {topics::kTurns}, [](const auto& rs) {
    return rs.size() >= 30;
  }, std::chrono::seconds(20));
  std::map<std::string, std::vector<std::string>> by_turn;
  for (const auto& t : turns) {
    auto v = nlohmann::json::parse(t.value);
    by_turn[v["turn_id"]] = v["message_ids"].get<std::vector<std::string>>();
  }
  ASSERT_EQ(by_turn.size(), 30u);
  std::set<std::string> seen;
  for (const auto& [id, ids] : by_turn) {
    EXPECT_EQ(ids.size(), 3u) << "a burst was split";
    seen.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(seen, all_ids);
  (*consumer)->close(std::chrono::seconds(5));
}

// A new owner re-reads from the first offset of the oldest window that was still open. Between
// there and where the old owner stopped lies the tail of a window it had already emitted (it
// opened earlier): the new owner must skip that tail, not emit it as a turn of its own.
// A mock Kafka cluster with the catalogue, a producer, a real redis-server, and a consumer
// that is never polled (only the offset calls need one): what an Engine runs against here.
struct EngineRig {
  test::RedisServer redis_server;
  std::unique_ptr<kafka::MockCluster> mock;
  std::string brokers;
  std::unique_ptr<kafka::Producer> producer;
  std::unique_ptr<redis::RedisClient> redis;
  std::unique_ptr<kafka::Consumer> consumer;
  EngineOptions eo;
};

void start(EngineRig& rig, const std::string& group) {
  auto mock = kafka::MockCluster::create(1);
  ASSERT_TRUE(mock.has_value());
  rig.mock = std::move(*mock);
  for (const auto& t : topics::catalogue()) {
    ASSERT_TRUE(rig.mock->create_topic(t.name, t.partitions));
  }
  rig.brokers = rig.mock->bootstraps();
  kafka::ClientConfig kc{rig.brokers, "engine-test", {}};
  auto producer = kafka::Producer::create(kc);
  ASSERT_TRUE(producer.has_value());
  rig.producer = std::move(*producer);
  rig.redis = std::make_unique<redis::RedisClient>(rig.redis_server.options());
  kafka::ConsumerOptions co;
  co.group_id = group + "-" + crypto::random_hex(4);
  co.topics = {topics::kDlq};
  auto consumer = kafka::Consumer::create(kc, co);
  ASSERT_TRUE(consumer.has_value());
  rig.consumer = std::move(*consumer);
  rig.eo.windows.quiet_ms = 300;
  rig.eo.timer_grace_ms = 20;
}

// A text message of `who` as its wa.inbound record on partition 0.
kafka::Record inbound_record(int64_t offset, const std::string& who, const std::string& id, int64_t t) {
  const auto e = text(who, id, t);
  kafka::Record r;
  r.topic = topics::kInbound;
  r.partition = 0;
  r.offset = offset;
  r.key = e.conversation_key;
  r.value = e.encode();
  r.timestamp_ms = t;
  return r;
}

// Meta's resend of a message whose first delivery the receiver took for failed (its produce
// timed out, yet Kafka had it) lands again after that message's turn was emitted: a second
// record of the same message, ahead of the person's next message. The copy is dropped, and the
// next message is a turn of its own (turn ids come from the first record's offset, so even a
// window the copy opened would not look like the turn already emitted).
TEST(AggregatorEngine, AResentFirstMessageAfterItsTurnLosesNothingOfTheBurstBehindIt) {
  EngineRig rig;
  start(rig, "resent");
  ASSERT_FALSE(HasFatalFailure());
  auto record = inbound_record;
  prometheus::Registry registry;
  Engine engine(rig.eo, *rig.producer, *rig.redis, registry, now_ms);
  engine.on_assigned({{topics::kInbound, 0}});
  std::vector<kafka::Record> first = {record(0, "x", "x.first", 1000), record(1, "z", "z.1", 1400)};
  ASSERT_TRUE(engine.handle_batch(first).has_value());
  ASSERT_TRUE(engine.flush(*rig.consumer).has_value());  // x's turn: [x.first]
  std::vector<kafka::Record> then = {record(2, "x", "x.first", 1500), record(3, "x", "x.second", 1600),
                                     record(4, "w", "w.1", 3000)};
  ASSERT_TRUE(engine.handle_batch(then).has_value());
  ASSERT_TRUE(engine.flush(*rig.consumer).has_value());
  auto turns = test::consume_until(rig.brokers, {topics::kTurns}, [](const auto& rs) {
    for (const auto& r : rs) {
      if (r.value.find("x.second") != std::string::npos) {
        return true;
      }
    }
    return false;
  }, std::chrono::seconds(10));
  std::multiset<std::vector<std::string>> got;
  std::set<std::string> ids;
  for (const auto& t : turns) {
    auto j = nlohmann::json::parse(t.value);
    got.insert(j["message_ids"].get<std::vector<std::string>>());
    ids.insert(j["turn_id"].get<std::string>());
  }
  EXPECT_EQ(got.count({"x.first"}), 1u);
  EXPECT_EQ(got.count({"x.second"}), 1u) << "the burst behind the resent message was lost";
  EXPECT_EQ(got.count({"x.first", "x.second"}), 0u) << "the resent copy is in a second turn";
  EXPECT_EQ(ids.size(), turns.size()) << "two turns share an id";
}

TEST(AggregatorEngine, NewOwnerReplayingSkipsTheTailOfAnAlreadyEmittedTurn) {
  EngineRig rig;
  start(rig, "replay");
  ASSERT_FALSE(HasFatalFailure());
  auto record = [](int64_t offset, const std::string& who, int64_t t) {
    return inbound_record(offset, who, "tail." + who + "." + std::to_string(offset), t);
  };
  // x: offsets 0 and 2 (due at 1500); y: 1 and 3 (due at 1550); z at 1530 closes x only.
  std::vector<kafka::Record> log = {record(0, "x", 1000), record(1, "y", 1100),
                                    record(2, "x", 1200), record(3, "y", 1250),
                                    record(4, "z", 1530), record(5, "w", 3000)};
  const std::vector<kafka::TopicPartition> p0 = {{topics::kInbound, 0}};
  {
    prometheus::Registry registry;
    Engine old_owner(rig.eo, *rig.producer, *rig.redis, registry, now_ms);
    old_owner.on_assigned(p0);
    std::vector<kafka::Record> first(log.begin(), log.begin() + 5);
    ASSERT_TRUE(old_owner.handle_batch(first).has_value());
    ASSERT_TRUE(old_owner.flush(*rig.consumer).has_value());
    EXPECT_EQ(old_owner.open_windows(), 2u);  // y and z: the stored offset stays at y's 1
  }
  // The new owner re-reads from offset 1, then one more record closes everything.
  prometheus::Registry registry;
  Engine new_owner(rig.eo, *rig.producer, *rig.redis, registry, now_ms);
  new_owner.on_assigned(p0);
  std::vector<kafka::Record> replay(log.begin() + 1, log.end());
  ASSERT_TRUE(new_owner.handle_batch(replay).has_value());
  EXPECT_TRUE(replay.empty());
  ASSERT_TRUE(new_owner.flush(*rig.consumer).has_value());
  double skipped = 0;
  for (const auto& fam : registry.Collect()) {
    if (fam.name == "wafleet_aggregator_replay_skipped_total") {
      skipped = fam.metric.at(0).counter.value;
    }
  }
  EXPECT_EQ(skipped, 1);
  auto turns = test::consume_until(rig.brokers, {topics::kTurns}, [](const auto& rs) {
    return rs.size() >= 3;
  }, std::chrono::seconds(10));
  std::multiset<std::vector<std::string>> got;
  for (const auto& t : turns) {
    got.insert(nlohmann::json::parse(t.value)["message_ids"].get<std::vector<std::string>>());
  }
  const std::multiset<std::vector<std::string>> want = {
      {"tail.x.0", "tail.x.2"}, {"tail.y.1", "tail.y.3"}, {"tail.z.4"}};
  EXPECT_EQ(got, want);
  rig.consumer->close(std::chrono::seconds(5));
}

}  // namespace
}  // namespace wafleet::aggregator
