// The shared consumer loop over real Kafka: offsets stored only after success, bounded retries,
// dead letters with their headers, acknowledged before the offset moves on.
#include <gtest/gtest.h>

#include <future>

#include "common/consumer_loop.h"
#include "common/crypto.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet::kafka {
namespace {

void produce_sync(Producer& p, const std::string& topic, const std::string& key,
                  const std::string& value, const Headers& h = {}) {
  std::promise<Status> done;
  p.produce(topic, key, value, h, [&](const Status& s, int32_t, int64_t) { done.set_value(s); });
  ASSERT_TRUE(done.get_future().get().has_value());
}

TEST(ConsumerLoop, RetriesTransientErrorsDeadLettersPoisonAndMovesOn) {
  const auto& env = test::kafka_env();
  auto producer = Producer::create({env.brokers, "t", {}});
  ASSERT_TRUE(producer.has_value());
  const std::string key = "loop:" + crypto::random_hex(6);
  produce_sync(**producer, topics::kOutbound, key, "flaky", {{"traceparent", "00-abc"}});
  produce_sync(**producer, topics::kOutbound, key, "poison");
  produce_sync(**producer, topics::kOutbound, key, "good");

  const std::string group = "loop-" + crypto::random_hex(6);
  ConsumerOptions co;
  co.group_id = group;
  co.topics = {topics::kOutbound};
  auto consumer = Consumer::create({env.brokers, "t", {}}, co);
  ASSERT_TRUE(consumer.has_value());
  LoopOptions lo;
  lo.worker = "test-worker";
  lo.group_id = group;
  lo.backoff_initial = std::chrono::milliseconds(10);
  lo.max_attempts = 3;
  ConsumerLoop loop(**consumer, **producer, lo);
  int flaky_calls = 0;
  std::vector<std::string> handled;
  std::thread runner([&] {
    Status s = loop.run([&](const Record& r) -> Status {
      if (r.key != key) {
        return {};
      }
      if (r.value == "flaky" && ++flaky_calls < 3) {
        return Unexpected(Error::transient("dependency down"));
      }
      if (r.value == "poison") {
        return Unexpected(Error::invalid("cannot decode"));
      }
      handled.push_back(r.value);
      if (r.value == "good") {
        loop.stop();
      }
      return {};
    });
    EXPECT_TRUE(s.has_value());
  });
  runner.join();
  EXPECT_EQ(flaky_calls, 3);
  EXPECT_EQ(handled, (std::vector<std::string>{"flaky", "good"}));
  EXPECT_EQ(loop.stats().dead_lettered.load(), 1u);
  EXPECT_GE(loop.stats().retried.load(), 2u);

  auto dlq = test::consume_until(env.brokers, {topics::kDlq}, [&](const auto& rs) {
    for (const auto& r : rs) {
      if (r.key == key) {
        return true;
      }
    }
    return false;
  });
  const Record* dead = nullptr;
  for (const auto& r : dlq) {
    if (r.key == key) {
      dead = &r;
    }
  }
  ASSERT_NE(dead, nullptr);
  EXPECT_EQ(dead->value, "poison");
  EXPECT_EQ(dead->header("dlq.original.topic").value_or(""), topics::kOutbound);
  EXPECT_EQ(dead->header("dlq.worker").value_or(""), "test-worker");
  EXPECT_EQ(dead->header("dlq.original.group").value_or(""), group);
  EXPECT_EQ(dead->header("dlq.error.class").value_or(""), "invalid_input");
  EXPECT_EQ(dead->header("dlq.error.message").value_or(""), "cannot decode");
  EXPECT_EQ(dead->header("dlq.attempts").value_or(""), "1");
  EXPECT_FALSE(dead->header("dlq.original.offset").value_or("").empty());

  // Everything was handled, so the group's committed position is past "good".
  ASSERT_TRUE((*consumer)->commit_sync().has_value());
  (*consumer)->close(std::chrono::seconds(5));
  ConsumerOptions again = co;
  auto second = Consumer::create({env.brokers, "t", {}}, again);
  ASSERT_TRUE(second.has_value());
  bool saw_mine = false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(8);
  while (std::chrono::steady_clock::now() < until) {
    auto r = (*second)->poll(std::chrono::milliseconds(100));
    if (r && *r && (*r)->key == key) {
      saw_mine = true;
    }
  }
  EXPECT_FALSE(saw_mine);
  (*second)->close(std::chrono::seconds(5));
}

}  // namespace
}  // namespace wafleet::kafka
