// wafleet-api end to end: the binary as a process over HTTP, the dev broker and a real
// PostgreSQL filled by wafleet-store from Kafka. What was written is read back through the API;
// what is sent through the API reaches wa.outbound once acknowledged.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/consumer_loop.h"
#include "common/crypto.h"
#include "common/http_client.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

using Json = nlohmann::json;
const std::string kBin = WAFLEET_BIN_DIR;
const std::string kKey = "e2e-api-key";

TEST(ApiE2E, WhatTheStoreKeptIsServedAndWhatIsSentReachesWaOutbound) {
  test::PostgresServer pg;
  const std::string dir = test::temp_dir("wafleet-api-e2e");
  test::Process broker(kBin + "/wafleet-devbroker", {"--bootstrap-file", dir + "/bootstrap"}, {},
                       dir + "/devbroker.log");
  ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir + "/bootstrap").empty(); }));
  const std::string brokers = test::read_trimmed(dir + "/bootstrap");
  const std::string db = pg.fresh_database("api_e2e");
  test::write_file(dir + "/keys", "e2e " + crypto::sha256_hex(kKey) + "\n");
  const std::map<std::string, std::string> env = {{"WAFLEET_KAFKA_BROKERS", brokers}, {"WAFLEET_DATABASE_URL", db}};
  test::Process store(kBin + "/wafleet-store", {"--admin-port-file", dir + "/store-admin"}, env, dir + "/store.log");
  auto api_env = env;
  api_env["WAFLEET_API_KEYS_FILE"] = dir + "/keys";
  test::Process api(kBin + "/wafleet-api", {"--listen", "127.0.0.1:0", "--port-file", dir + "/api-port"}, api_env,
                    dir + "/api.log");
  ASSERT_TRUE(test::wait_ready(dir + "/store-admin")) << store.log();
  ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir + "/api-port").empty(); })) << api.log();
  const std::string base = "http://127.0.0.1:" + test::read_trimmed(dir + "/api-port");

  // A person writes (through Kafka, as the receiver would put it).
  auto producer = kafka::Producer::create({brokers, "api-e2e", {}});
  ASSERT_TRUE(producer);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  Json raw = {{"from", "447700900001"}, {"id", "wamid.e2e.1"}, {"timestamp", std::to_string(now)},
              {"type", "text"}, {"text", {{"body", "Where is my order?"}}}};
  Json ev = {{"v", 1}, {"kind", "message"}, {"event_id", "m:111:wamid.e2e.1"},
             {"conversation_key", "111:447700900001"}, {"identity", "447700900001"},
             {"phone_number_id", "111"}, {"wa_id", "447700900001"}, {"profile_name", "Ana"},
             {"type", "text"}, {"message_id", "wamid.e2e.1"}, {"timestamp", now},
             {"received_at_ms", now * 1000}, {"source", "meta"}, {"raw", raw}};
  ASSERT_TRUE(kafka::produce_and_wait(**producer, topics::kInbound, "111:447700900001", ev.dump()));

  const std::vector<std::pair<std::string, std::string>> auth = {{"Authorization", "Bearer " + kKey}, {"Content-Type", "application/json"}};
  Json page;
  ASSERT_TRUE(test::eventually([&] {
    auto r = http::fetch("GET", base + "/v1/conversations/111:447700900001/messages", auth, "",
                         std::chrono::seconds(5));
    if (!r || r->status != 200) {
      return false;
    }
    page = Json::parse(r->body, nullptr, false);
    return page.is_object() && page["items"].size() == 1;
  })) << api.log() << store.log();
  EXPECT_EQ(page["items"][0]["body"], "Where is my order?");

  auto sent = http::fetch("POST", base + "/v1/messages", auth,
                          R"({"request_id":"e2e-reply-1","phone_number_id":"111","to":"447700900001",)"
                          R"("type":"text","text":{"body":"It ships today."}})",
                          std::chrono::seconds(10));
  ASSERT_TRUE(sent);
  ASSERT_EQ(sent->status, 202) << sent->body;
  auto out = test::consume_until(brokers, {topics::kOutbound}, [](const auto& rs) { return !rs.empty(); });
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].key, "111:447700900001");
  EXPECT_EQ(Json::parse(out[0].value)["request_id"], "e2e-reply-1");
  // The store keeps our request too: the conversation now ends with it.
  ASSERT_TRUE(test::eventually([&] {
    auto r = http::fetch("GET", base + "/v1/conversations", auth, "", std::chrono::seconds(5));
    auto j = r ? Json::parse(r->body, nullptr, false) : Json();
    return j.is_object() && j["items"].size() == 1 && j["items"][0]["last_message"]["id"] == "e2e-reply-1";
  }));
  auto unauthorized = http::fetch("GET", base + "/v1/conversations", {}, "", std::chrono::seconds(5));
  ASSERT_TRUE(unauthorized);
  EXPECT_EQ(unauthorized->status, 401);
  EXPECT_EQ(Json::parse(unauthorized->body)["error"]["code"], "unauthorized");
}

}  // namespace
}  // namespace wafleet
