// The receiver core on its real adapters: Beast HTTP server, Redis dedupe, Kafka producer.
#include <future>

#include <thread>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/http_client.h"
#include "common/log.h"
#include "tests/support/fixtures.h"
#include "tests/support/services.h"
#include "topics/topics.h"
#include "workers/receiver/adapters.h"
#include "workers/receiver/dedupe.h"

namespace wafleet::receiver {
namespace {

test::RedisServer& redis_server() {
  static test::RedisServer s;
  return s;
}

int64_t now_ms() { return wall_clock_ms(); }

// One receiver stack in process, on the brokers given.
struct Stack {
  explicit Stack(const std::string& brokers, int produce_timeout_ms = 5000) {
    ReceiverOptions ro;
    ro.app_secrets = {"it-secret"};
    ro.verify_token = "vt";
    kafka::ProducerOptions po;
    po.message_timeout_ms = produce_timeout_ms;
    producer = std::move(kafka::Producer::create({brokers, "it", {}}, po).value());
    dedupe = std::make_unique<RedisDedupStore>(redis_server().options(), 30000, 3600000);
    sink = std::make_unique<KafkaSink>(*producer);
    core = std::make_unique<Receiver>(ro, *sink, *dedupe, nullptr, registry, now_ms);
    http::ServerOptions so;
    so.threads = 2;
    so.body_limit = 64 * 1024;
    server = std::make_unique<http::Server>(so, [this](http::Request&& r, http::Responder s) {
      core->handle(std::move(r), std::move(s));
    });
    EXPECT_TRUE(server->start().has_value());
  }
  ~Stack() { server->stop(std::chrono::milliseconds(8000)); }

  http::ClientResponse post(const std::string& body, const std::string& secret = "it-secret") {
    auto r = http::fetch(
        "POST", "http://127.0.0.1:" + std::to_string(server->port()) + "/webhook",
        {{"Content-Type", "application/json"},
         {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(secret, body)}},
        body, std::chrono::seconds(20));
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    return r ? *r : http::ClientResponse{};
  }

  prometheus::Registry registry;
  std::unique_ptr<kafka::Producer> producer;
  std::unique_ptr<RedisDedupStore> dedupe;
  std::unique_ptr<KafkaSink> sink;
  std::unique_ptr<Receiver> core;
  std::unique_ptr<http::Server> server;
};

// A text webhook from a unique person, so tests can find their own records.
std::string unique_text_webhook(const std::string& pnid, const std::string& from,
                                const std::string& wamid) {
  auto body = nlohmann::json::parse(test::fixture("meta_inbound_text.json"));
  auto& value = body["entry"][0]["changes"][0]["value"];
  value["metadata"]["phone_number_id"] = pnid;
  value["contacts"][0]["wa_id"] = from;
  value["messages"][0]["from"] = from;
  value["messages"][0]["id"] = wamid;
  return body.dump();
}

// The records of wa.inbound under key, read without a consumer group (no join to wait for):
// once `want` are there, or the timeout passes, plus one more second to see a duplicate.
std::vector<kafka::Record> records_with_key(const std::string& brokers, const std::string& key,
                                            size_t want, std::chrono::milliseconds timeout) {
  auto read = [&] {
    std::vector<kafka::Record> mine;
    auto s = kafka::read_topic(
        {brokers, "receiver-it", {}}, topics::kInbound,
        [&](const kafka::Record& r) {
          if (r.key == key) {
            mine.push_back(r);
          }
          return true;
        },
        std::chrono::seconds(10));
    EXPECT_TRUE(s) << s.error().message;
    return mine;
  };
  test::eventually([&] { return read().size() >= want && want > 0; }, timeout);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  return read();
}

TEST(ReceiverIntegration, SignedWebhookLandsOnceOnTheRightPartitionEvenWhenSentTwice) {
  const auto& env = test::kafka_env();
  Stack stack(env.brokers);
  const std::string pnid = "1065403522" + crypto::random_hex(3);
  const std::string from = "1555" + std::to_string(1000000 + std::rand() % 8999999);
  const std::string body = unique_text_webhook(pnid, from, "wamid.IT" + crypto::random_hex(8));
  EXPECT_EQ(stack.post(body).status, 200);
  EXPECT_EQ(stack.post(body).status, 200);  // Meta's duplicate
  const std::string key = pnid + ":" + from;
  auto mine = records_with_key(env.brokers, key, 1, std::chrono::seconds(8));
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].partition, kafka::Producer::partition_for_key(key, 12));
  auto value = nlohmann::json::parse(mine[0].value);
  EXPECT_EQ(value["kind"], "message");
  EXPECT_EQ(value["wa_id"], from);
  EXPECT_TRUE(mine[0].header("traceparent").has_value());
}

TEST(ReceiverIntegration, BadSignatureIs401AndNothingReachesKafka) {
  const auto& env = test::kafka_env();
  Stack stack(env.brokers);
  const std::string pnid = "2065403522" + crypto::random_hex(3);
  const std::string body = unique_text_webhook(pnid, "15550001", "wamid.BAD" + crypto::random_hex(6));
  EXPECT_EQ(stack.post(body, "forged").status, 401);
  auto mine = records_with_key(env.brokers, pnid + ":15550001", 0, std::chrono::seconds(6));
  EXPECT_TRUE(mine.empty());
  redis::RedisClient c(redis_server().options());
  auto keys = c.command({"KEYS", "rcv:dedupe:m:" + pnid + ":*"});
  ASSERT_TRUE(keys.has_value());
  EXPECT_TRUE(keys->elements.empty());
}

TEST(ReceiverIntegration, OversizeBodyIs413) {
  const auto& env = test::kafka_env();
  Stack stack(env.brokers);
  EXPECT_EQ(stack.post(std::string(100 * 1024, 'x')).status, 413);
}

TEST(ReceiverIntegration, BrokerDownIs503ThenTheRetryIsAcceptedOnce) {
  // Its own mock cluster: set_down must not disturb the other tests.
  auto mock = kafka::MockCluster::create(1);
  ASSERT_TRUE(mock.has_value());
  for (const auto& t : topics::catalogue()) {
    ASSERT_TRUE((*mock)->create_topic(t.name, t.partitions));
  }
  const std::string brokers = (*mock)->bootstraps();
  Stack stack(brokers, 1500);
  const std::string pnid = "3065403522" + crypto::random_hex(3);
  const std::string wamid = "wamid.DOWN" + crypto::random_hex(6);
  const std::string body = unique_text_webhook(pnid, "15550002", wamid);
  ASSERT_EQ(stack.post(unique_text_webhook(pnid, "15550009", "wamid.warm" + crypto::random_hex(4)))
                .status,
            200);
  (*mock)->set_broker_down(1);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(stack.post(body).status, 503);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // The claim was released: Redis holds nothing that would turn the retry into a "duplicate".
  redis::RedisClient c(redis_server().options());
  auto v = c.command({"GET", Receiver::dedupe_redis_key("m:" + pnid + ":" + wamid)});
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(v->is_nil());
  (*mock)->set_broker_up(1);
  http::ClientResponse retry;
  ASSERT_TRUE(test::eventually([&] {
    retry = stack.post(body);
    return retry.status == 200;
  }, std::chrono::seconds(20)));
  auto mine = records_with_key(brokers, pnid + ":15550002", 1, std::chrono::seconds(8));
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(mine[0].value)["message_id"], wamid);
}

TEST(ReceiverIntegration, RedisDownIs503) {
  const auto& env = test::kafka_env();
  ReceiverOptions ro;
  ro.app_secrets = {"s"};
  prometheus::Registry registry;
  auto producer = kafka::Producer::create({env.brokers, "it", {}});
  ASSERT_TRUE(producer.has_value());
  redis::Options dead;
  dead.port = test::free_port();
  dead.connect_timeout = std::chrono::milliseconds(100);
  RedisDedupStore dedupe(dead, 1000, 1000);
  KafkaSink sink(**producer);
  Receiver core(ro, sink, dedupe, nullptr, registry, now_ms);
  const std::string body = test::fixture("meta_inbound_text.json");
  http::Request req{boost::beast::http::verb::post, "/webhook", 11};
  req.set("Content-Type", "application/json");
  req.set("X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("s", body));
  req.body() = body;
  std::promise<unsigned> status;
  core.handle(std::move(req), [&](http::Response r) { status.set_value(r.result_int()); });
  EXPECT_EQ(status.get_future().get(), 503u);
}

}  // namespace
}  // namespace wafleet::receiver
