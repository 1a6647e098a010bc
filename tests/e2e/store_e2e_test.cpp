// wafleet-store end to end: the binary as a process on the dev broker and a real PostgreSQL.
// Every message of a stream is stored once, whatever kills the worker or restarts the database;
// a record that is not what its topic says goes to wa.dlq and the rest moves on.
#include <atomic>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/consumer_loop.h"
#include "common/pg.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

using Json = nlohmann::json;
const std::string kBin = WAFLEET_BIN_DIR;

test::PostgresServer& postgres() {
  static test::PostgresServer s;
  return s;
}

class StoreE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("wafleet-store-e2e");
    broker_ = start("wafleet-devbroker", {"--bootstrap-file", dir_ + "/bootstrap"}, {});
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/bootstrap").empty(); }));
    brokers_ = test::read_trimmed(dir_ + "/bootstrap");
    db_url_ = postgres().fresh_database(
        std::string("e2e_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    for (auto& c : db_url_) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    auto p = kafka::Producer::create({brokers_, "store-e2e", {}});
    ASSERT_TRUE(p);
    producer_ = std::move(p).value();
  }

  void TearDown() override {
    if (store_) {
      store_->stop();
    }
    broker_->stop();
  }

  std::unique_ptr<test::Process> start(const std::string& bin, std::vector<std::string> args,
                                       const std::map<std::string, std::string>& env) {
    return std::make_unique<test::Process>(kBin + "/" + bin, std::move(args), env,
                                           dir_ + "/" + bin + ".log");
  }

  void start_store() {
    store_ = start("wafleet-store", {"--admin-port-file", dir_ + "/store-admin", "--batch-max", "200"},
                   {{"WAFLEET_KAFKA_BROKERS", brokers_}, {"WAFLEET_DATABASE_URL", db_url_}});
  }

  int64_t count(const std::string& sql) {
    pg::Options o;
    o.url = db_url_;
    auto c = pg::Connection::connect(o);
    if (!c) {
      return -1;
    }
    auto r = (*c)->exec(sql);
    return r && r->size() ? r->integer(0, 0) : -1;
  }

  void produce(const std::string& topic, const std::string& key, const std::string& value) {
    producer_->produce(topic, key, value, {}, [this](const Status& st, int32_t, int64_t) {
      if (!st) {
        ++produce_failures_;
      }
    });
  }

  static std::string inbound(int person, int n) {
    const std::string who = "4477009" + std::to_string(10000 + person);
    const std::string wamid = "wamid.p" + std::to_string(person) + "n" + std::to_string(n);
    // Current times: rows older than the retention (30 days) are not stored.
    static const int64_t start = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::system_clock::now().time_since_epoch()).count() - 3600;
    const int64_t ts = start + n;
    Json raw = {{"from", who}, {"id", wamid}, {"timestamp", std::to_string(ts)}, {"type", "text"},
                {"text", {{"body", "message " + std::to_string(n)}}}};
    Json ev = {{"v", 1}, {"kind", "message"}, {"event_id", "m:111:" + wamid},
               {"conversation_key", "111:" + who}, {"identity", who}, {"phone_number_id", "111"},
               {"wa_id", who}, {"profile_name", "Person"}, {"type", "text"}, {"message_id", wamid},
               {"timestamp", ts}, {"received_at_ms", ts * 1000}, {"source", "meta"}, {"raw", raw}};
    return ev.dump();
  }

  static std::string key_of(int person) { return "111:4477009" + std::to_string(10000 + person); }

  std::string dir_;
  std::string brokers_;
  std::string db_url_;
  std::unique_ptr<test::Process> broker_;
  std::unique_ptr<test::Process> store_;
  std::unique_ptr<kafka::Producer> producer_;
  std::atomic<int> produce_failures_{0};
};

TEST_F(StoreE2E, KilledMidStreamEveryMessageIsStoredOnceAndAPoisonRecordIsDeadLettered) {
  start_store();
  ASSERT_TRUE(test::wait_ready(dir_ + "/store-admin")) << store_->log();
  constexpr int kPeople = 50;
  constexpr int kEach = 60;  // 3,000 messages
  std::thread writer([&] {
    for (int n = 0; n < kEach; ++n) {
      for (int p = 0; p < kPeople; ++p) {
        produce(topics::kInbound, key_of(p), inbound(p, n));
      }
      if (n == 10) {
        produce(topics::kInbound, key_of(0), "{not json");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    producer_->flush(std::chrono::seconds(10));
  });
  ASSERT_TRUE(test::eventually([&] { return count("SELECT count(*) FROM messages") > 500; },
                               std::chrono::seconds(30)));
  store_->kill9();
  start_store();
  writer.join();
  ASSERT_TRUE(test::eventually(
      [&] { return count("SELECT count(*) FROM messages") >= kPeople * kEach; }, std::chrono::seconds(60)))
      << store_->log();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_EQ(produce_failures_.load(), 0);
  EXPECT_EQ(count("SELECT count(*) FROM messages"), kPeople * kEach);
  EXPECT_EQ(count("SELECT count(DISTINCT id) FROM messages"), kPeople * kEach);
  EXPECT_EQ(count("SELECT count(*) FROM conversations"), kPeople);
  EXPECT_EQ(count("SELECT count(*) FROM conversations WHERE last_body = 'message 59'"), kPeople);
  auto dlq = test::consume_until(brokers_, {topics::kDlq}, [](const auto& rs) { return !rs.empty(); });
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].value, "{not json");
  EXPECT_EQ(dlq[0].header("dlq.worker").value_or(""), "store");
  EXPECT_EQ(dlq[0].header("dlq.error.class").value_or(""), "invalid_input");
}

TEST_F(StoreE2E, ADatabaseRestartLosesNothing) {
  start_store();
  ASSERT_TRUE(test::wait_ready(dir_ + "/store-admin")) << store_->log();
  for (int n = 0; n < 20; ++n) {
    produce(topics::kInbound, key_of(1), inbound(1, n));
  }
  ASSERT_TRUE(test::eventually([&] { return count("SELECT count(*) FROM messages") == 20; }));
  postgres().stop();
  for (int n = 20; n < 40; ++n) {
    produce(topics::kInbound, key_of(1), inbound(1, n));
  }
  producer_->flush(std::chrono::seconds(10));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the worker meets the outage
  postgres().start();
  ASSERT_TRUE(test::eventually([&] { return count("SELECT count(*) FROM messages") == 40; },
                               std::chrono::seconds(30)))
      << store_->log();
  EXPECT_TRUE(store_->running());
}

}  // namespace
}  // namespace wafleet
