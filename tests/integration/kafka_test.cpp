// Kafka over TCP: Apache Kafka when WAFLEET_TEST_KAFKA_BROKERS is set (scripts/test, CI),
// otherwise librdkafka's mock cluster. Producer, consumer loop pieces, partitioner.
#include <future>

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/kafka.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

Status produce_sync(kafka::Producer& p, const std::string& topic, const std::string& key,
                    const std::string& value, const kafka::Headers& headers,
                    int32_t* partition = nullptr) {
  std::promise<Status> done;
  p.produce(topic, key, value, headers, [&](const Status& s, int32_t part, int64_t) {
    if (partition != nullptr) {
      *partition = part;
    }
    done.set_value(s);
  });
  return done.get_future().get();
}

TEST(Kafka, ProducedRecordComesBackWithKeyHeadersAndJavaCompatiblePartition) {
  const auto& env = test::kafka_env();
  auto producer = kafka::Producer::create({env.brokers, "t", {}});
  ASSERT_TRUE(producer.has_value()) << producer.error().message;
  const std::string key = "106540352242922:" + crypto::random_hex(6);
  const std::string value = "{\"n\":" + crypto::random_hex(4) + "}";
  int32_t partition = -1;
  auto s = produce_sync(**producer, topics::kTurns, key, value, {{"traceparent", "00-x"}},
                        &partition);
  ASSERT_TRUE(s.has_value()) << s.error().message;
  EXPECT_EQ(partition, kafka::Producer::partition_for_key(key, 12));
  auto records = test::consume_until(env.brokers, {topics::kTurns}, [&](const auto& rs) {
    for (const auto& r : rs) {
      if (r.key == key) {
        return true;
      }
    }
    return false;
  });
  const kafka::Record* found = nullptr;
  for (const auto& r : records) {
    if (r.key == key) {
      found = &r;
    }
  }
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->value, value);
  EXPECT_EQ(found->partition, partition);
  EXPECT_EQ(found->header("traceparent").value_or(""), "00-x");
}

TEST(Kafka, StoredOffsetsAreWhereTheGroupResumes) {
  const auto& env = test::kafka_env();
  auto producer = kafka::Producer::create({env.brokers, "t", {}});
  ASSERT_TRUE(producer.has_value());
  const std::string key = "resume:" + crypto::random_hex(6);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(produce_sync(**producer, topics::kOutboundResults, key, std::to_string(i), {}));
  }
  const std::string group = "g-" + crypto::random_hex(6);
  auto read_mine = [&](int want, bool store_first_two) {
    kafka::ConsumerOptions co;
    co.group_id = group;
    co.topics = {topics::kOutboundResults};
    auto c = kafka::Consumer::create({env.brokers, "t", {}}, co);
    EXPECT_TRUE(c.has_value());
    std::vector<std::string> seen;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (static_cast<int>(seen.size()) < want && std::chrono::steady_clock::now() < deadline) {
      auto r = (*c)->poll(std::chrono::milliseconds(100));
      if (!r || !*r || (*r)->key != key) {
        continue;
      }
      seen.push_back((*r)->value);
      if (store_first_two && seen.size() <= 2) {
        EXPECT_TRUE((*c)->store_offset((*r)->topic, (*r)->partition, (*r)->offset + 1));
      }
    }
    EXPECT_TRUE((*c)->commit_sync().has_value());
    (*c)->close(std::chrono::seconds(5));
    return seen;
  };
  auto first = read_mine(4, true);
  ASSERT_EQ(first.size(), 4u);
  // Only the first two offsets were stored (work "durable"); the rest come again.
  auto second = read_mine(2, false);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0], "2");
  EXPECT_EQ(second[1], "3");
}

TEST(Kafka, RebalanceListenerSeesAssignmentAndRevocation) {
  const auto& env = test::kafka_env();
  struct Listener : kafka::RebalanceListener {
    std::atomic<int> assigned{0};
    std::atomic<int> revoked{0};
    void on_assigned(const std::vector<kafka::TopicPartition>& p) override {
      assigned += static_cast<int>(p.size());
    }
    void on_revoked(const std::vector<kafka::TopicPartition>& p) override {
      revoked += static_cast<int>(p.size());
    }
  } listener;
  kafka::ConsumerOptions co;
  co.group_id = "rb-" + crypto::random_hex(6);
  co.topics = {topics::kMedia};
  co.listener = &listener;
  auto c = kafka::Consumer::create({env.brokers, "t", {}}, co);
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE(test::eventually([&] {
    (void)(*c)->poll(std::chrono::milliseconds(100));
    return listener.assigned.load() == 12;
  }, std::chrono::seconds(30)));
  EXPECT_EQ((*c)->assignment().size(), 12u);
  (*c)->close(std::chrono::seconds(10));
  EXPECT_EQ(listener.revoked.load(), 12);
}

TEST(Kafka, ProduceToADownBrokerFailsWithinTheMessageTimeout) {
  // A cluster of its own, so taking it down disturbs no other test.
  auto mock = kafka::MockCluster::create(1);
  ASSERT_TRUE(mock.has_value());
  ASSERT_TRUE((*mock)->create_topic("down.test", 1));
  kafka::ProducerOptions po;
  po.message_timeout_ms = 1500;
  auto producer = kafka::Producer::create({(*mock)->bootstraps(), "t", {}}, po);
  ASSERT_TRUE(producer.has_value());
  ASSERT_TRUE(produce_sync(**producer, "down.test", "k", "before", {}).has_value());
  (*mock)->set_broker_down(1);
  const auto start = std::chrono::steady_clock::now();
  auto s = produce_sync(**producer, "down.test", "k", "during", {});
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind, ErrorKind::kTransient);
  EXPECT_LT(took, std::chrono::milliseconds(4000));
  (*mock)->set_broker_up(1);
  // Reconnecting takes librdkafka a moment; within a few seconds produces succeed again.
  EXPECT_TRUE(test::eventually(
      [&] { return produce_sync(**producer, "down.test", "k", "after", {}).has_value(); },
      std::chrono::seconds(15)));
}

TEST(Kafka, InjectedProduceErrorsAreRetriedByTheIdempotentProducer) {
  auto mock = kafka::MockCluster::create(1);
  ASSERT_TRUE(mock.has_value());
  ASSERT_TRUE((*mock)->create_topic("errs.test", 1));
  auto producer = kafka::Producer::create({(*mock)->bootstraps(), "t", {}});
  ASSERT_TRUE(producer.has_value());
  ASSERT_TRUE(produce_sync(**producer, "errs.test", "k", "warm", {}).has_value());
  // Produce (api key 0) answered NOT_ENOUGH_REPLICAS twice: retriable, so delivered once.
  (*mock)->push_request_errors(0, {19, 19});
  EXPECT_TRUE(produce_sync(**producer, "errs.test", "k", "v", {}).has_value());
  auto records = test::consume_until((*mock)->bootstraps(), {"errs.test"},
                                     [](const auto& rs) { return rs.size() > 2; },
                                     std::chrono::seconds(8));
  ASSERT_EQ(records.size(), 2u);  // no duplicate from the retries
  EXPECT_EQ(records[1].value, "v");
}

}  // namespace
}  // namespace wafleet
