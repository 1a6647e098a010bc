// The binaries as processes: dev broker, redis-server, receiver, CLI, and clients nobody here
// wrote (kcat; Kafka's own Java console consumer when Apache Kafka is present).
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/http_client.h"
#include "tests/support/fixtures.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

const std::string kBin = WAFLEET_BIN_DIR;

class Fleet : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("wafleet-e2e");
    broker_ = std::make_unique<test::Process>(
        kBin + "/wafleet-devbroker", std::vector<std::string>{"--bootstrap-file", dir_ + "/bootstrap"},
        std::map<std::string, std::string>{}, dir_ + "/devbroker.log");
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/bootstrap").empty(); }))
        << broker_->log();
    brokers_ = test::read_trimmed(dir_ + "/bootstrap");
    receiver_ = std::make_unique<test::Process>(
        kBin + "/wafleet-receiver",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--port-file", dir_ + "/port",
                                 "--admin-port-file", dir_ + "/admin-port"},
        std::map<std::string, std::string>{{"WAFLEET_KAFKA_BROKERS", brokers_},
                                           {"WAFLEET_REDIS_URL", redis_.url()},
                                           {"WAFLEET_APP_SECRET", "e2e-secret"},
                                           {"WAFLEET_VERIFY_TOKEN", "e2e-token"}},
        dir_ + "/receiver.log");
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/admin-port").empty() &&
                                              !test::read_trimmed(dir_ + "/port").empty(); }))
        << receiver_->log();
    port_ = test::read_trimmed(dir_ + "/port");
    admin_ = test::read_trimmed(dir_ + "/admin-port");
  }

  void TearDown() override {
    if (receiver_) {
      receiver_->stop();
    }
    if (broker_) {
      broker_->stop();
    }
  }

  std::string dir_;
  test::RedisServer redis_;
  std::unique_ptr<test::Process> broker_;
  std::unique_ptr<test::Process> receiver_;
  std::string brokers_;
  std::string port_;
  std::string admin_;
};

TEST_F(Fleet, SendWebhookThenKcatReadsTheEventUnderTheConversationKey) {
  std::string out;
  const std::string wamid = "wamid.E2E" + crypto::random_hex(6);
  int rc = test::run_command(kBin + "/wafleet send-webhook --url http://127.0.0.1:" + port_ +
                   "/webhook --secret e2e-secret --from 15557654321 --text hello --message-id " +
                   wamid,
               out);
  ASSERT_EQ(rc, 0) << out << receiver_->log();
  EXPECT_NE(out.find("200"), std::string::npos);
  rc = test::run_command("kcat -b " + brokers_ + " -C -t wa.inbound -o beginning -e -q -f '%k|%p|%s\\n'", out);
  ASSERT_EQ(rc, 0) << out;
  const std::string key = "106540352242922:15557654321";
  auto line_start = out.find(key + "|");
  ASSERT_NE(line_start, std::string::npos) << out;
  auto line = out.substr(line_start, out.find('\n', line_start) - line_start);
  EXPECT_NE(line.find(wamid), std::string::npos);
  // kcat's own partitioner view agrees with ours (murmur2_random).
  EXPECT_EQ(line.substr(key.size() + 1, line.find('|', key.size() + 1) - key.size() - 1),
            std::to_string(kafka::Producer::partition_for_key(key, 12)));
}

TEST_F(Fleet, KcatProducesAndOurConsumerReads) {
  std::string out;
  const std::string key = "kcat-" + crypto::random_hex(4);
  int rc = test::run_command("printf '" + key + ":from-kcat\\n' | kcat -b " + brokers_ +
                   " -P -t wa.turns -K: -z none",
               out);
  ASSERT_EQ(rc, 0) << out;
  auto records = test::consume_until(brokers_, {topics::kTurns}, [&](const auto& rs) {
    for (const auto& r : rs) {
      if (r.key == key) {
        return true;
      }
    }
    return false;
  });
  bool found = false;
  for (const auto& r : records) {
    found = found || (r.key == key && r.value == "from-kcat");
  }
  EXPECT_TRUE(found);
}

TEST_F(Fleet, AdminPortServesMetricsHealthAndReadiness) {
  std::string out;
  ASSERT_EQ(test::run_command(kBin + "/wafleet send-webhook --url http://127.0.0.1:" + port_ +
                    "/webhook --secret wrong-secret",
                out),
            1);
  auto metrics = http::fetch("GET", "http://127.0.0.1:" + admin_ + "/metrics", {}, "",
                             std::chrono::seconds(5));
  ASSERT_TRUE(metrics.has_value());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("wafleet_receiver_requests_total{outcome=\"signature_invalid\",path=\"/webhook\"} 1"),
            std::string::npos)
      << metrics->body;
  auto health = http::fetch("GET", "http://127.0.0.1:" + admin_ + "/healthz", {}, "",
                            std::chrono::seconds(5));
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 200);
  auto ready = http::fetch("GET", "http://127.0.0.1:" + admin_ + "/readyz", {}, "",
                           std::chrono::seconds(5));
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->status, 200);
}

TEST_F(Fleet, VerificationHandshakeOverTheWire) {
  auto r = http::fetch("GET",
                       "http://127.0.0.1:" + port_ +
                           "/webhook?hub.mode=subscribe&hub.challenge=987654&hub.verify_token=e2e-token",
                       {}, "", std::chrono::seconds(5));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "987654");
}

TEST_F(Fleet, LogsCarryNoSecretsAndNoClearPhoneNumbers) {
  std::string out;
  ASSERT_EQ(test::run_command(kBin + "/wafleet send-webhook --url http://127.0.0.1:" + port_ +
                    "/webhook --secret e2e-secret --from 15559876543",
                out),
            0)
      << out;
  ASSERT_EQ(test::run_command(kBin + "/wafleet send-webhook --url http://127.0.0.1:" + port_ +
                    "/webhook --secret not-the-secret --from 15559876543",
                out),
            1);
  receiver_->stop();
  const std::string log = receiver_->log();
  EXPECT_NE(log.find("worker.started"), std::string::npos);
  EXPECT_NE(log.find("webhook.signature_invalid"), std::string::npos);
  EXPECT_EQ(log.find("e2e-secret"), std::string::npos);
  EXPECT_EQ(log.find("e2e-token"), std::string::npos);
  EXPECT_EQ(log.find("15559876543"), std::string::npos);
}

TEST_F(Fleet, RedisDownMakesItUnreadyAndWebhooksGet503NotA200) {
  redis_.stop();
  auto ready = http::fetch("GET", "http://127.0.0.1:" + admin_ + "/readyz", {}, "",
                           std::chrono::seconds(5));
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->status, 503);
  EXPECT_NE(ready->body.find("redis"), std::string::npos);
  std::string out;
  EXPECT_EQ(test::run_command(kBin + "/wafleet send-webhook --url http://127.0.0.1:" + port_ +
                    "/webhook --secret e2e-secret --from 15550000042",
                out),
            1);
  EXPECT_NE(out.find("503"), std::string::npos) << out;
}

TEST_F(Fleet, SigtermStopsTheReceiverCleanly) {
  EXPECT_EQ(receiver_->stop(), 0) << receiver_->log();
  EXPECT_NE(receiver_->log().find("worker.stopped"), std::string::npos);
}

TEST(FleetConfig, InvalidConfigFailsAtStartWithOneLineReasons) {
  std::string out;
  int rc = test::run_command("env -i PATH=/usr/bin:/bin WAFLEET_HTTP_THREADS=zero WAFLEET_REDIS_URL=http://x " +
                   kBin + "/wafleet-receiver",
               out);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("WAFLEET_KAFKA_BROKERS"), std::string::npos) << out;
  EXPECT_NE(out.find("WAFLEET_APP_SECRET"), std::string::npos) << out;
  int rc2 = test::run_command("env -i PATH=/usr/bin:/bin WAFLEET_KAFKA_BROKERS=x:1 WAFLEET_APP_SECRET=s "
                "WAFLEET_HTTP_THREADS=zero WAFLEET_REDIS_URL=http://x " +
                    kBin + "/wafleet-receiver",
                out);
  EXPECT_EQ(rc2, 2);
  EXPECT_NE(out.find("WAFLEET_HTTP_THREADS"), std::string::npos) << out;
  EXPECT_NE(out.find("WAFLEET_REDIS_URL"), std::string::npos) << out;
}

}  // namespace
}  // namespace wafleet
