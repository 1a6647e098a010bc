// wafleet-api end to end: the binary as a process over HTTP, the dev broker, a real
// redis-server and a real PostgreSQL filled by wafleet-store from Kafka. What was written is read
// back through the API; what is sent through the API reaches wa.outbound once acknowledged; a
// bulk job is created over HTTP; the operator page shows it all in headless Chromium
// (tests/page/operator_page.cjs, a screenshot kept in <build>/artifacts/); a person erased by
// `wafleet forget` or DELETE /v1/people is gone and the erasure is audited.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <set>

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

// The last non-empty line of a command's output (the scripts print what they installed last).
std::string last_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) {
    s.pop_back();
  }
  return s.substr(s.find_last_of('\n') == std::string::npos ? 0 : s.find_last_of('\n') + 1);
}

Json inbound_event(const std::string& who, const std::string& wamid, int64_t now_s) {
  Json raw = {{"from", who}, {"id", wamid}, {"timestamp", std::to_string(now_s)},
              {"type", "text"}, {"text", {{"body", "Where is my order?"}}}};
  return {{"v", 1}, {"kind", "message"}, {"event_id", "m:111:" + wamid},
          {"conversation_key", "111:" + who}, {"identity", who},
          {"phone_number_id", "111"}, {"wa_id", who}, {"profile_name", "Ana"},
          {"type", "text"}, {"message_id", wamid}, {"timestamp", now_s},
          {"received_at_ms", now_s * 1000}, {"source", "meta"}, {"raw", raw}};
}

// The record's side of the fleet: the dev broker, redis-server, PostgreSQL, wafleet-store and
// wafleet-api as processes.
class ApiE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("wafleet-api-e2e");
    broker_ = std::make_unique<test::Process>(kBin + "/wafleet-devbroker",
                                              std::vector<std::string>{"--bootstrap-file", dir_ + "/bootstrap"},
                                              std::map<std::string, std::string>{}, dir_ + "/devbroker.log");
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/bootstrap").empty(); }));
    brokers_ = test::read_trimmed(dir_ + "/bootstrap");
    const std::string db = pg_.fresh_database("api_e2e");
    test::write_file(dir_ + "/keys", "e2e " + crypto::sha256_hex(kKey) + "\n");
    env_ = {{"WAFLEET_KAFKA_BROKERS", brokers_}, {"WAFLEET_DATABASE_URL", db},
            {"WAFLEET_REDIS_URL", redis_.url()}, {"WAFLEET_SUPPRESSION_SALT", "e2e-salt"}};
    store_ = std::make_unique<test::Process>(
        kBin + "/wafleet-store", std::vector<std::string>{"--admin-port-file", dir_ + "/store-admin"}, env_,
        dir_ + "/store.log");
    auto api_env = env_;
    api_env["WAFLEET_API_KEYS_FILE"] = dir_ + "/keys";
    api_env["WAFLEET_RATE"] = "100000";  // schemathesis asks fast
    api_env["WAFLEET_BURST"] = "100000";
    api_ = std::make_unique<test::Process>(
        kBin + "/wafleet-api",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--port-file", dir_ + "/api-port"}, api_env,
        dir_ + "/api.log");
    ASSERT_TRUE(test::wait_ready(dir_ + "/store-admin")) << store_->log();
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/api-port").empty(); })) << api_->log();
    base_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/api-port");
  }

  test::PostgresServer pg_;
  test::RedisServer redis_;
  std::string dir_;
  std::string brokers_;
  std::string base_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<test::Process> broker_;
  std::unique_ptr<test::Process> store_;
  std::unique_ptr<test::Process> api_;
};

TEST_F(ApiE2E, WhatTheStoreKeptIsServedSentShownOnTheOperatorPageAndErased) {
  const std::string& brokers = brokers_;
  const std::string& base = base_;
  const auto& env = env_;
  test::Process& store = *store_;
  test::Process& api = *api_;

  // A person writes (through Kafka, as the receiver would put it).
  auto producer = kafka::Producer::create({brokers, "api-e2e", {}});
  ASSERT_TRUE(producer);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  ASSERT_TRUE(kafka::produce_and_wait(**producer, topics::kInbound, "111:447700900001",
                                      inbound_event("447700900001", "wamid.e2e.1", now).dump()));
  ASSERT_TRUE(kafka::produce_and_wait(**producer, topics::kInbound, "111:447700900002",
                                      inbound_event("447700900002", "wamid.e2e.2", now).dump()));

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
    return j.is_object() && j["items"].size() == 2 && j["items"][0]["last_message"]["id"] == "e2e-reply-1";
  }));
  auto unauthorized = http::fetch("GET", base + "/v1/conversations", {}, "", std::chrono::seconds(5));
  ASSERT_TRUE(unauthorized);
  EXPECT_EQ(unauthorized->status, 401);
  EXPECT_EQ(Json::parse(unauthorized->body)["error"]["code"], "unauthorized");

  // Dead-letter counts, read from the broker: none yet.
  auto dlq = http::fetch("GET", base + "/v1/dlq/stats", auth, "", std::chrono::seconds(15));
  ASSERT_TRUE(dlq);
  ASSERT_EQ(dlq->status, 200) << dlq->body;
  EXPECT_EQ(Json::parse(dlq->body)["wa.dlq"]["total"], 0);

  // Our reply was sent and read (the sender's result and Meta's status, as they would arrive).
  const int64_t now_ms = now * 1000 + 500;
  ASSERT_TRUE(kafka::produce_and_wait(
      **producer, topics::kOutboundResults, "111:447700900001",
      Json{{"request_id", "e2e-reply-1"}, {"idempotency_key", "e2e-reply-1"}, {"status", "sent"},
           {"attempts", 1}, {"at_ms", now_ms}, {"wamid", "wamid.e2e.out.1"}}.dump()));
  ASSERT_TRUE(kafka::produce_and_wait(
      **producer, topics::kStatus, "111:447700900001",
      Json{{"v", 1}, {"kind", "status"}, {"event_id", "s:111:wamid.e2e.out.1:read"},
           {"conversation_key", "111:447700900001"}, {"phone_number_id", "111"}, {"type", "read"},
           {"message_id", "wamid.e2e.out.1"}, {"timestamp", now}, {"received_at_ms", now_ms},
           {"source", "meta"}, {"raw", {{"id", "wamid.e2e.out.1"}, {"status", "read"}}}}.dump()));
  ASSERT_TRUE(test::eventually([&] {
    auto r = http::fetch("GET", base + "/v1/messages/e2e-reply-1", auth, "", std::chrono::seconds(5));
    return r && r->status == 200 && Json::parse(r->body, nullptr, false).value("status", "") == "read";
  })) << store.log();
  // A campaign, created over HTTP (no bulk worker here: it stays PENDING).
  auto job = http::fetch("POST", base + "/v1/bulk/jobs", auth,
                         Json{{"phone_number_id", "111"}, {"template", "spring_sale"}, {"language", "en_US"},
                              {"recipients", {{{"to", "+44 7700 900003"}}, {{"to", "+44 7700 900004"}}}}}.dump(),
                         std::chrono::seconds(10));
  ASSERT_TRUE(job);
  ASSERT_EQ(job->status, 201) << job->body;
  // The operator page, in headless Chromium.
  std::string installed;
  ASSERT_EQ(test::run_command(std::string(WAFLEET_SOURCE_DIR) + "/scripts/playwright", installed), 0) << installed;
  const std::string modules = last_line(installed);  // npm's own lines come before it
  const std::string artifacts = kBin + "/../artifacts";
  std::filesystem::create_directories(artifacts);
  std::string browser;
  const int browser_rc = test::run_command(
      "node " + std::string(WAFLEET_SOURCE_DIR) + "/tests/page/operator_page.cjs '" + modules + "' " + base +
          "/ " + kKey + " 111:447700900001 'It ships today.' " + artifacts + "/operator-page.png 2>&1",
      browser);
  ASSERT_EQ(browser_rc, 0) << browser << api.log();
  EXPECT_TRUE(std::filesystem::file_size(artifacts + "/operator-page.png") > 10000) << browser;
  std::cout << browser;

  // Ana asks to be forgotten, by the CLI; the other person, over the API.
  std::string cmd;
  for (const auto& [k, v] : env) {
    cmd += k + "='" + v + "' ";
  }
  std::string printed;
  ASSERT_EQ(test::run_command(cmd + kBin + "/wafleet forget '+44 7700 900001' --actor e2e-operator", printed), 0)
      << printed;
  auto erased = Json::parse(printed.substr(std::min(printed.size(), printed.find("{\n"))), nullptr, false);
  ASSERT_TRUE(erased.is_object()) << printed;
  EXPECT_EQ(erased["removed"]["messages"], 2) << printed;  // hers and our reply
  auto gone = http::fetch("GET", base + "/v1/conversations/111:447700900001/messages", auth, "",
                          std::chrono::seconds(5));
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 404);
  auto by_api = http::fetch("DELETE", base + "/v1/people/447700900002", auth, "", std::chrono::seconds(10));
  ASSERT_TRUE(by_api);
  ASSERT_EQ(by_api->status, 200) << by_api->body;
  EXPECT_EQ(Json::parse(by_api->body)["removed"]["messages"], 1);
  auto left = http::fetch("GET", base + "/v1/conversations", auth, "", std::chrono::seconds(5));
  ASSERT_TRUE(left);
  EXPECT_EQ(Json::parse(left->body)["items"].size(), 0u);
  auto audits = test::consume_until(brokers, {topics::kPrivacyAudit}, [](const auto& rs) { return rs.size() >= 2; });
  ASSERT_EQ(audits.size(), 2u);
  std::set<std::string> via;
  for (const auto& a : audits) {
    EXPECT_EQ(a.value.find("447700900001"), std::string::npos);
    EXPECT_EQ(a.value.find("447700900002"), std::string::npos);
    via.insert(Json::parse(a.value)["via"].get<std::string>() + ":" + Json::parse(a.value)["actor"].get<std::string>());
  }
  EXPECT_EQ(via, (std::set<std::string>{"cli:e2e-operator", "api:e2e"}));
}

// A client nobody here wrote: schemathesis (PyPI) generates requests from /v1/openapi.json and
// checks every answer against it: no server error, no status, content type, header or body the
// description does not declare. (Its check that every schema-valid request is accepted is left
// out: an opaque cursor of random characters is refused with 400, as it should be.)
TEST_F(ApiE2E, SchemathesisFindsNoServerErrorAndNothingOutsideTheDescription) {
  // Something to read: a conversation and a bulk job.
  auto producer = kafka::Producer::create({brokers_, "api-e2e", {}});
  ASSERT_TRUE(producer);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  ASSERT_TRUE(kafka::produce_and_wait(**producer, topics::kInbound, "111:447700900001",
                                      inbound_event("447700900001", "wamid.st.1", now).dump()));
  std::string installed;
  ASSERT_EQ(test::run_command(std::string(WAFLEET_SOURCE_DIR) + "/scripts/schemathesis", installed), 0) << installed;
  const std::string bin = last_line(installed);  // pip's own lines come before it
  std::string out;
  const int rc = test::run_command(
      bin + " run " + base_ + "/v1/openapi.json --url " + base_ + " -H 'Authorization: Bearer " + kKey +
          "' --checks all --exclude-checks positive_data_acceptance --max-examples 25 --seed 7"
          " --exclude-method DELETE --no-color 2>&1",
      out);
  EXPECT_EQ(rc, 0) << out.substr(out.size() > 20000 ? out.size() - 20000 : 0) << api_->log();
  EXPECT_NE(out.find("API Operations"), std::string::npos) << out;
}

}  // namespace
}  // namespace wafleet
