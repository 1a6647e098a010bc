// wafleet-api's routes over a real PostgreSQL seeded through the store's own writer: pages,
// cursors, statuses that never go back, message lookup by wamid or request id, sending, API
// keys, the rate limit and the one error format.
#include <gtest/gtest.h>

#include <set>

#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "tests/support/services.h"
#include "topics/topics.h"
#include "workers/api/api.h"
#include "workers/api/contacts.h"
#include "workers/sender/conversations.h"
#include "workers/sender/request.h"
#include "workers/store/db.h"
#include "workers/store/record.h"

namespace wafleet::api {
namespace {

using Json = nlohmann::json;
namespace bhttp = boost::beast::http;

test::PostgresServer& server() {
  static test::PostgresServer s;
  return s;
}

const std::string kKey = "test-key-123";
const int64_t kNow = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count() -
                     3600;

kafka::Record inbound(const std::string& who, int n) {
  const std::string wamid = "wamid.in." + who + "." + std::to_string(n);
  Json raw = {{"from", who}, {"id", wamid}, {"timestamp", std::to_string(kNow + n)}, {"type", "text"},
              {"text", {{"body", "hello " + std::to_string(n)}}}};
  Json ev = {{"v", 1}, {"kind", "message"}, {"event_id", "m:111:" + wamid},
             {"conversation_key", "111:" + who}, {"identity", who}, {"phone_number_id", "111"},
             {"wa_id", who}, {"profile_name", "Ana"}, {"type", "text"}, {"message_id", wamid},
             {"timestamp", kNow + n}, {"received_at_ms", (kNow + n) * 1000}, {"source", "meta"}, {"raw", raw}};
  kafka::Record r;
  r.topic = topics::kInbound;
  r.key = "111:" + who;
  r.value = ev.dump();
  return r;
}

kafka::Record status(const std::string& wamid, const std::string& st, int64_t at_s) {
  Json ev = {{"v", 1}, {"kind", "status"}, {"event_id", "s:111:" + wamid + ":" + st},
             {"conversation_key", "111:447700900001"}, {"phone_number_id", "111"}, {"type", st},
             {"message_id", wamid}, {"timestamp", at_s}, {"received_at_ms", at_s * 1000},
             {"source", "meta"}, {"raw", {{"id", wamid}, {"status", st}}}};
  kafka::Record r;
  r.topic = topics::kStatus;
  r.value = ev.dump();
  return r;
}

class ApiRoutes : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = std::string("api_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (auto& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    pg::Options o;
    o.url = server().fresh_database(name);
    auto c = pg::Connection::connect(o);
    ASSERT_TRUE(c) << c.error().message;
    conn_ = std::move(c).value();
    ASSERT_TRUE(store::migrate(*conn_));
    store::Database db(*conn_);
    store::Batch b;
    for (int n = 0; n < 120; ++n) {
      ASSERT_TRUE(store::add(inbound("447700900001", n), {}, b));
    }
    for (int p = 2; p < 7; ++p) {
      ASSERT_TRUE(store::add(inbound("4477009000" + std::to_string(10 + p), 200 + p), {}, b));
    }
    // Our reply to Ana, its result and Meta's statuses, the late delivered last.
    kafka::Record out;
    out.topic = topics::kOutbound;
    out.key = "111:447700900001";
    out.timestamp_ms = (kNow + 130) * 1000;
    out.value = Json{{"request_id", "req-1"}, {"phone_number_id", "111"}, {"to", "447700900001"},
                     {"type", "text"}, {"text", {{"body", "Sorry, Ana"}}}}
                    .dump();
    ASSERT_TRUE(store::add(out, {}, b));
    kafka::Record res;
    res.topic = topics::kOutboundResults;
    res.value = Json{{"request_id", "req-1"}, {"idempotency_key", "req-1"}, {"status", "sent"},
                     {"wamid", "wamid.out.1"}, {"attempts", 1}, {"at_ms", (kNow + 131) * 1000}}
                    .dump();
    ASSERT_TRUE(store::add(res, {}, b));
    ASSERT_TRUE(store::add(status("wamid.out.1", "sent", kNow + 132), {}, b));
    ASSERT_TRUE(store::add(status("wamid.out.1", "read", kNow + 140), {}, b));
    ASSERT_TRUE(db.write(b));
    store::Batch late;
    ASSERT_TRUE(store::add(status("wamid.out.1", "delivered", kNow + 135), {}, late));
    ASSERT_TRUE(db.write(late));
    reader_ = std::make_unique<Reader>(*conn_);
    api_ = std::make_unique<Api>(std::vector<ApiKey>{{"tests", crypto::sha256_hex(kKey)}}, Limits{5, 5, 4096},
                                 [this](const std::string& key, const std::string& value) -> Status {
                                   sent_.emplace_back(key, value);
                                   return {};
                                 },
                                 [this] { return clock_; });
  }

  http::Response call(bhttp::verb method, const std::string& target, const std::string& body = "",
                      const std::string& key = kKey) {
    http::Request req{method, target, 11};
    if (!key.empty()) {
      req.set(bhttp::field::authorization, "Bearer " + key);
    }
    req.body() = body;
    req.prepare_payload();
    clock_ += std::chrono::seconds(1);  // one request a second: under the limit
    Session session{*reader_, *conn_};
    return api_->handle(req, session);
  }

  static Json body_of(const http::Response& r) { return Json::parse(r.body(), nullptr, false); }

  std::unique_ptr<pg::Connection> conn_;
  std::unique_ptr<Reader> reader_;
  std::unique_ptr<Api> api_;
  std::vector<std::pair<std::string, std::string>> sent_;
  std::chrono::steady_clock::time_point clock_{};
};

TEST_F(ApiRoutes, ConversationsComeNewestFirstAndPageByCursor) {
  auto r = call(bhttp::verb::get, "/v1/conversations?limit=4");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  auto j = body_of(r);
  ASSERT_EQ(j["items"].size(), 4u);
  EXPECT_EQ(j["items"][0]["key"], "111:447700900016");
  ASSERT_TRUE(j["next_cursor"].is_string());
  auto r2 = call(bhttp::verb::get, "/v1/conversations?limit=4&cursor=" + j["next_cursor"].get<std::string>());
  auto j2 = body_of(r2);
  ASSERT_EQ(j2["items"].size(), 2u);  // 6 conversations in all
  EXPECT_EQ(j2["items"][1]["key"], "111:447700900001");
  EXPECT_EQ(j2["items"][1]["last_message"]["body"], "Sorry, Ana");
  EXPECT_EQ(j2["items"][1]["profile_name"], "Ana");
  EXPECT_TRUE(j2["next_cursor"].is_null());
  auto filtered = body_of(call(bhttp::verb::get, "/v1/conversations?phone_number_id=999"));
  EXPECT_TRUE(filtered["items"].empty());
}

TEST_F(ApiRoutes, AConversationsMessagesPageThroughBothDirectionsWithTheirStatus) {
  auto r = call(bhttp::verb::get, "/v1/conversations/111%3A447700900001/messages?limit=50");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  auto j = body_of(r);
  ASSERT_EQ(j["items"].size(), 50u);
  EXPECT_EQ(j["items"][0]["direction"], "out");
  EXPECT_EQ(j["items"][0]["status"], "read");  // a late delivered never hides read
  EXPECT_EQ(j["items"][0]["wamid"], "wamid.out.1");
  EXPECT_EQ(j["items"][0]["statuses"].size(), 3u);
  size_t total = j["items"].size();
  std::set<std::string> ids;
  for (const auto& m : j["items"]) {
    ids.insert(m["id"]);
  }
  while (j["next_cursor"].is_string()) {
    j = body_of(call(bhttp::verb::get, "/v1/conversations/111:447700900001/messages?limit=50&cursor=" +
                                           j["next_cursor"].get<std::string>()));
    total += j["items"].size();
    for (const auto& m : j["items"]) {
      ids.insert(m["id"]);
    }
  }
  EXPECT_EQ(total, 121u);
  EXPECT_EQ(ids.size(), 121u);
  EXPECT_EQ(call(bhttp::verb::get, "/v1/conversations/111:nobody/messages").result_int(), 404u);
}

TEST_F(ApiRoutes, AMessageIsFoundByWamidOrRequestId) {
  auto by_wamid = body_of(call(bhttp::verb::get, "/v1/messages/wamid.out.1"));
  auto by_request = body_of(call(bhttp::verb::get, "/v1/messages/req-1"));
  EXPECT_EQ(by_wamid["id"], "req-1");
  EXPECT_EQ(by_request["status"], "read");
  EXPECT_EQ(by_request["results"][0]["status"], "sent");
  auto inbound_one = body_of(call(bhttp::verb::get, "/v1/messages/wamid.in.447700900001.7"));
  EXPECT_EQ(inbound_one["body"], "hello 7");
  EXPECT_EQ(inbound_one["message"]["text"]["body"], "hello 7");
  auto missing = call(bhttp::verb::get, "/v1/messages/wamid.nope");
  EXPECT_EQ(missing.result_int(), 404u);
  EXPECT_EQ(body_of(missing)["error"]["code"], "not_found");
}

TEST_F(ApiRoutes, SendingValidatesLikeTheSenderAndAnswers202WithTheRequestId) {
  auto ok = call(bhttp::verb::post, "/v1/messages",
                 R"({"request_id":"api-1","phone_number_id":"111","to":"447700900001","type":"text","text":{"body":"hi"}})");
  ASSERT_EQ(ok.result_int(), 202u) << ok.body();
  EXPECT_EQ(body_of(ok)["request_id"], "api-1");
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].first, "111:447700900001");
  EXPECT_EQ(Json::parse(sent_[0].second)["wafleet"]["api_key"], "tests");
  auto too_long = call(bhttp::verb::post, "/v1/messages",
                       Json{{"phone_number_id", "111"}, {"to", "447700900001"}, {"type", "text"},
                            {"text", {{"body", std::string(4097, 'a')}}}}
                           .dump());
  EXPECT_EQ(too_long.result_int(), 413u);  // over this test's 4 KiB limit
  auto bad = call(bhttp::verb::post, "/v1/messages", R"({"phone_number_id":"111","type":"text"})");
  EXPECT_EQ(bad.result_int(), 422u);
  EXPECT_EQ(body_of(bad)["error"]["code"], "invalid_request");
  EXPECT_EQ(call(bhttp::verb::post, "/v1/messages", "{nope").result_int(), 400u);
  // Checked against wa.outbound's own schema first: the error names the field.
  auto wrong_type = call(bhttp::verb::post, "/v1/messages",
                         R"({"phone_number_id":"111","to":447700900001,"type":"text","text":{"body":"hi"}})");
  EXPECT_EQ(wrong_type.result_int(), 422u);
  EXPECT_NE(body_of(wrong_type)["error"].value("message", "").find("/to: must be a string"), std::string::npos)
      << wrong_type.body();
  auto unknown = call(bhttp::verb::post, "/v1/messages", R"({"phone_number_id":"111","to":"1","type":"fax"})");
  EXPECT_EQ(unknown.result_int(), 422u);
  EXPECT_NE(body_of(unknown)["error"].value("message", "").find("/type: must be one of"), std::string::npos)
      << unknown.body();
  EXPECT_EQ(sent_.size(), 1u);
}

TEST_F(ApiRoutes, KeysAreCheckedAndEveryErrorHasTheOneShape) {
  auto none = call(bhttp::verb::get, "/v1/conversations", "", "");
  EXPECT_EQ(none.result_int(), 401u);
  EXPECT_EQ(call(bhttp::verb::get, "/v1/conversations", "", "wrong").result_int(), 401u);
  EXPECT_EQ(call(bhttp::verb::get, "/v1/openapi.json", "", "").result_int(), 200u);
  for (const auto& r : {none, call(bhttp::verb::get, "/v1/nothing"), call(bhttp::verb::delete_, "/v1/conversations"),
                        call(bhttp::verb::get, "/v1/conversations?limit=0"),
                        call(bhttp::verb::get, "/v1/conversations?cursor=zzz"),
                        call(bhttp::verb::get, "/v1/conversations?owner=robot")}) {
    auto j = body_of(r);
    EXPECT_GE(r.result_int(), 400u);
    ASSERT_TRUE(j.is_object()) << r.body();
    EXPECT_TRUE(j["error"]["code"].is_string()) << r.body();
    EXPECT_TRUE(j["error"]["message"].is_string()) << r.body();
  }
}

TEST_F(ApiRoutes, AKeyPastItsRateIsAnswered429) {
  http::Request req{bhttp::verb::get, "/v1/conversations", 11};
  req.set(bhttp::field::authorization, "Bearer " + kKey);
  int limited = 0;
  for (int i = 0; i < 10; ++i) {  // ten at once against a burst of 5
    Session session{*reader_, *conn_};
    limited += api_->handle(req, session).result_int() == 429 ? 1 : 0;
  }
  EXPECT_EQ(limited, 5);
}

TEST_F(ApiRoutes, AContactIsReadSetAndDeletedByAnyOfItsIds) {
  // Ana is known from her messages: WhatsApp's profile name, no operator fields yet.
  auto got = call(bhttp::verb::get, "/v1/contacts/%2B447700900001");
  ASSERT_EQ(got.result_int(), 200u) << got.body();
  EXPECT_EQ(body_of(got)["profile_name"], "Ana");
  EXPECT_FALSE(body_of(got)["opt_in"].get<bool>());
  EXPECT_TRUE(body_of(got)["name"].is_null());
  auto put = call(bhttp::verb::put, "/v1/contacts/447700900001",
                  R"({"name":"Ana Lima","opt_in":true,"allowlisted":true})");
  ASSERT_EQ(put.result_int(), 200u) << put.body();
  EXPECT_EQ(body_of(put)["name"], "Ana Lima");
  EXPECT_TRUE(body_of(put)["opt_in"].get<bool>());
  EXPECT_TRUE(body_of(put)["opt_in_at_ms"].is_number());
  EXPECT_EQ(body_of(put)["profile_name"], "Ana");  // WhatsApp's name is kept beside ours
  // A partial change leaves the rest; a null name clears it; opting out clears the time.
  auto partial = call(bhttp::verb::put, "/v1/contacts/447700900001", R"({"opt_in":false,"name":null})");
  ASSERT_EQ(partial.result_int(), 200u) << partial.body();
  EXPECT_FALSE(body_of(partial)["opt_in"].get<bool>());
  EXPECT_TRUE(body_of(partial)["opt_in_at_ms"].is_null());
  EXPECT_TRUE(body_of(partial)["name"].is_null());
  EXPECT_TRUE(body_of(partial)["allowlisted"].get<bool>());
  // Someone the record has not seen yet can be allowlisted ahead of their first message.
  auto fresh = call(bhttp::verb::put, "/v1/contacts/15550100009", R"({"allowlisted":true})");
  ASSERT_EQ(fresh.result_int(), 200u) << fresh.body();
  EXPECT_EQ(body_of(fresh)["wa_id"], "15550100009");
  for (const char* bad : {R"({"opt_in":"yes"})", R"({"phone":"1"})", R"([1])"}) {
    auto r = call(bhttp::verb::put, "/v1/contacts/447700900001", bad);
    EXPECT_EQ(r.result_int(), 422u) << bad;
    EXPECT_EQ(body_of(r)["error"]["code"], "invalid_request");
  }
  EXPECT_EQ(call(bhttp::verb::put, "/v1/contacts/447700900001", "{oops").result_int(), 400u);
  EXPECT_EQ(call(bhttp::verb::delete_, "/v1/contacts/15550100009").result_int(), 204u);
  EXPECT_EQ(call(bhttp::verb::get, "/v1/contacts/15550100009").result_int(), 404u);
  EXPECT_EQ(call(bhttp::verb::delete_, "/v1/contacts/15550100009").result_int(), 404u);
  EXPECT_EQ(call(bhttp::verb::post, "/v1/contacts/447700900001").result_int(), 405u);
}

TEST_F(ApiRoutes, TheSenderFollowsTheContactsAllowlistAndOptInAsTheApiSetsThem) {
  test::RedisServer redis_server;
  redis::RedisClient redis(redis_server.options());
  auto as_api = [&](bhttp::verb method, const std::string& target, const std::string& body) {
    http::Request req{method, target, 11};
    req.set(bhttp::field::authorization, "Bearer " + kKey);
    req.body() = body;
    req.prepare_payload();
    Session session{*reader_, *conn_, &redis};
    return api_->handle(req, session);
  };
  auto promo = [](const std::string& to, bool bulk) {
    Json j = {{"request_id", "promo-" + to}, {"phone_number_id", "111"}, {"to", to}, {"type", "template"},
              {"template", {{"name", "spring_sale"}, {"language", {{"code", "en"}}}}}};
    if (bulk) {
      j["priority"] = "bulk";
    }
    auto r = sender::parse_request(j);
    EXPECT_TRUE(r) << r.error();
    return *r;
  };
  sender::PolicyOptions allowlist;
  allowlist.allowlist_mode = true;
  sender::Conversations test_numbers(redis, allowlist);
  sender::PolicyOptions opt_in;
  opt_in.require_opt_in = "bulk";
  sender::Conversations campaigns(redis, opt_in);
  auto refused = [](sender::Conversations& c, const sender::Request& r) {
    auto no = c.refusal(r, 1);
    EXPECT_TRUE(no) << no.error().message;
    return no && no->has_value() ? **no : std::string();
  };
  EXPECT_NE(refused(test_numbers, promo("447700900001", false)).find("allowlist mode"), std::string::npos);
  ASSERT_EQ(as_api(bhttp::verb::put, "/v1/contacts/447700900001", R"({"allowlisted":true})").result_int(), 200u);
  EXPECT_EQ(refused(test_numbers, promo("447700900001", false)), "");
  EXPECT_NE(refused(test_numbers, promo("447700900012", false)).find("allowlist mode"), std::string::npos);
  // Campaign messages need opt-in; a template outside a campaign does not (require_opt_in=bulk).
  EXPECT_NE(refused(campaigns, promo("447700900001", true)).find("opt-in"), std::string::npos);
  EXPECT_EQ(refused(campaigns, promo("447700900001", false)), "");
  ASSERT_EQ(as_api(bhttp::verb::put, "/v1/contacts/447700900001", R"({"opt_in":true})").result_int(), 200u);
  EXPECT_EQ(refused(campaigns, promo("447700900001", true)), "");
  // Deleting the contact takes the flags away from the sender too.
  ASSERT_EQ(as_api(bhttp::verb::delete_, "/v1/contacts/447700900001", "").result_int(), 204u);
  EXPECT_NE(refused(test_numbers, promo("447700900001", false)).find("allowlist mode"), std::string::npos);
  EXPECT_NE(refused(campaigns, promo("447700900001", true)).find("opt-in"), std::string::npos);
  // A Redis that lost them gets them back from the record (the API does this at start).
  ASSERT_EQ(as_api(bhttp::verb::put, "/v1/contacts/447700900012", R"({"allowlisted":true})").result_int(), 200u);
  ASSERT_TRUE(redis.command({"FLUSHALL"}));
  EXPECT_NE(refused(test_numbers, promo("447700900012", false)).find("allowlist mode"), std::string::npos);
  auto n = mirror_all(*conn_, redis);
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(refused(test_numbers, promo("447700900012", false)), "");
}

TEST_F(ApiRoutes, APersonIsErasedOverTheApiAndTheErasureIsAudited) {
  test::RedisServer redis_server;
  redis::RedisClient redis(redis_server.options());
  EXPECT_EQ(call(bhttp::verb::delete_, "/v1/people/447700900001").result_int(), 501u);  // no salt
  std::vector<std::pair<std::string, std::string>> audits;
  Erasure e;
  e.options.salt = "api-test-salt";
  e.audit = [&](const std::string& key, const std::string& value) -> Status {
    audits.emplace_back(key, value);
    return {};
  };
  api_->enable_erasure(e);
  http::Request req{bhttp::verb::delete_, "/v1/people/%2B44%207700%20900001", 11};
  req.set(bhttp::field::authorization, "Bearer " + kKey);
  Session session{*reader_, *conn_, &redis};
  auto r = api_->handle(req, session);
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(body_of(r)["removed"]["messages"], 121);  // 120 in, 1 out
  EXPECT_EQ(body_of(r)["actor"], "tests");
  ASSERT_EQ(audits.size(), 1u);
  EXPECT_EQ(audits[0].first, erasure::suppression_hash("api-test-salt", "447700900001"));
  EXPECT_EQ(audits[0].second.find("447700900001"), std::string::npos);
  EXPECT_EQ(call(bhttp::verb::get, "/v1/conversations/111:447700900001/messages").result_int(), 404u);
  EXPECT_EQ(call(bhttp::verb::get, "/v1/contacts/447700900001").result_int(), 404u);
  auto others = body_of(call(bhttp::verb::get, "/v1/conversations"));
  EXPECT_EQ(others["items"].size(), 5u);
  EXPECT_EQ(call(bhttp::verb::get, "/v1/people/447700900001").result_int(), 405u);
}

TEST_F(ApiRoutes, DeadLetterCountsComeFromTheirSource) {
  EXPECT_EQ(call(bhttp::verb::get, "/v1/dlq/stats").result_int(), 501u);
  api_->enable_dlq_stats([]() -> Result<Json> { return Json{{"wa.dlq", {{"total", 3}}}}; });
  auto r = call(bhttp::verb::get, "/v1/dlq/stats");
  ASSERT_EQ(r.result_int(), 200u);
  EXPECT_EQ(body_of(r)["wa.dlq"]["total"], 3);
  api_->enable_dlq_stats([]() -> Result<Json> { return Unexpected(Error::transient("broker down")); });
  EXPECT_EQ(call(bhttp::verb::get, "/v1/dlq/stats").result_int(), 503u);
}

TEST_F(ApiRoutes, BulkJobsAreCheckedEstimatedCreatedCommandedAndReported) {
  test::RedisServer redis_server;
  redis::RedisClient redis(redis_server.options());
  auto mock = kafka::MockCluster::create(1);
  ASSERT_TRUE(mock.has_value());
  ASSERT_TRUE((*mock)->create_topic(topics::kBulkCommands, 3));
  const std::string brokers = (*mock)->bootstraps();
  auto producer = kafka::Producer::create({brokers, "api-test", {}});
  ASSERT_TRUE(producer);
  auto as_api = [&](bhttp::verb method, const std::string& target, const std::string& body = "") {
    http::Request req{method, target, 11};
    req.set(bhttp::field::authorization, "Bearer " + kKey);
    req.body() = body;
    req.prepare_payload();
    clock_ += std::chrono::seconds(1);
    Session session{*reader_, *conn_, &redis};
    return api_->handle(req, session);
  };
  EXPECT_EQ(as_api(bhttp::verb::get, "/v1/bulk/jobs").result_int(), 501u);
  api_->enable_bulk(BulkJobs{bulk::Pacing{80, 1000, "default"}, producer->get()});
  const Json job = {{"phone_number_id", "106540352242922"}, {"template", "spring_sale"}, {"language", "en_US"},
                    {"name", "Spring"},
                    {"recipients", {{{"to", "+44 7700 900001"}, {"body.1", "Ana"}},
                                    {{"to", "447700900001"}, {"body.1", "Ana again"}},
                                    {{"to", "not a number"}, {"body.1", "x"}},
                                    {{"to", "+44 7700 900002"}, {"body.1", "Ben"}}}}};
  Json dry = job;
  dry["dry_run"] = true;
  auto estimate = as_api(bhttp::verb::post, "/v1/bulk/jobs", dry.dump());
  ASSERT_EQ(estimate.result_int(), 200u) << estimate.body();
  EXPECT_EQ(body_of(estimate)["summary"]["people"], 2);
  EXPECT_EQ(body_of(estimate)["summary"]["left_out_by_reason"]["duplicate"], 1);
  EXPECT_EQ(body_of(estimate)["summary"]["left_out_by_reason"]["invalid_recipient"], 1);
  EXPECT_EQ(body_of(as_api(bhttp::verb::get, "/v1/bulk/jobs"))["items"].size(), 0u);  // nothing created

  auto created = as_api(bhttp::verb::post, "/v1/bulk/jobs", job.dump());
  ASSERT_EQ(created.result_int(), 201u) << created.body();
  const std::string id = body_of(created)["job"]["job_id"];
  EXPECT_EQ(body_of(created)["job"]["state"], "PENDING");
  EXPECT_EQ(body_of(created)["job"]["total"], 2);
  auto got = as_api(bhttp::verb::get, "/v1/bulk/jobs/" + id);
  ASSERT_EQ(got.result_int(), 200u);
  EXPECT_EQ(body_of(got)["name"], "Spring");
  EXPECT_EQ(as_api(bhttp::verb::post, "/v1/bulk/jobs/" + id + "/pause").result_int(), 202u);
  EXPECT_EQ(as_api(bhttp::verb::post, "/v1/bulk/jobs/" + id + "/cancel").result_int(), 202u);
  auto commands = test::consume_until(brokers, {topics::kBulkCommands}, [](const auto& rs) { return rs.size() >= 3; });
  ASSERT_EQ(commands.size(), 3u);
  std::multiset<std::string> verbs;
  for (const auto& c : commands) {
    EXPECT_EQ(c.key, id);
    verbs.insert(Json::parse(c.value)["command"].get<std::string>());
    EXPECT_EQ(Json::parse(c.value)["by"], "api:tests");
  }
  EXPECT_EQ(verbs, (std::multiset<std::string>{"create", "pause", "cancel"}));
  auto report = as_api(bhttp::verb::get, "/v1/bulk/jobs/" + id + "/report?format=csv");
  ASSERT_EQ(report.result_int(), 200u) << report.body();
  EXPECT_NE(report.body().find("447700900002"), std::string::npos) << report.body();
  EXPECT_NE(report.body().find("duplicate"), std::string::npos) << report.body();
  EXPECT_EQ(as_api(bhttp::verb::get, "/v1/bulk/jobs/" + id + "/report").result_int(), 200u);

  // Every mistake is named, and creates nothing.
  Json both = job;
  both["csv"] = "to\n447700900003\n";
  Json unknown = job;
  unknown["speed"] = "fast";
  Json bad_number = job;
  bad_number["phone_number_id"] = "my number";
  for (const auto& bad : {both, unknown, bad_number}) {
    auto r = as_api(bhttp::verb::post, "/v1/bulk/jobs", bad.dump());
    EXPECT_EQ(r.result_int(), 422u) << bad.dump();
    EXPECT_EQ(body_of(r)["error"]["code"], "invalid_request");
  }
  EXPECT_EQ(as_api(bhttp::verb::get, "/v1/bulk/jobs/bj_0000000000000000").result_int(), 404u);
  EXPECT_EQ(as_api(bhttp::verb::get, "/v1/bulk/jobs/nope").result_int(), 404u);
  EXPECT_EQ(as_api(bhttp::verb::post, "/v1/bulk/jobs/" + id + "/explode").result_int(), 404u);
  EXPECT_EQ(as_api(bhttp::verb::get, "/v1/bulk/jobs/" + id + "/pause").result_int(), 405u);
  EXPECT_EQ(body_of(as_api(bhttp::verb::get, "/v1/bulk/jobs"))["items"].size(), 1u);
}

TEST_F(ApiRoutes, StoredMediaHaveLinksThatExpireAndNeedNoKey) {
  const std::string dir = test::temp_dir("wafleet-api-media");
  test::write_file(dir + "/photo.jpg", "jpeg bytes");
  store::Database db(*conn_);
  store::Batch b;
  kafka::Record media;
  media.topic = topics::kMedia;
  media.value = Json{{"message_id", "wamid.in.447700900001.119"}, {"event_id", "e"},
                     {"conversation_key", "111:447700900001"}, {"type", "image"}, {"media_id", "9"},
                     {"status", "stored"}, {"attempts", 1}, {"at_ms", (kNow + 119) * 1000},
                     {"storage_uri", "file://" + dir + "/photo.jpg"}, {"sha256", "ab"}, {"size", 10},
                     {"mime_type", "image/jpeg"}}
                    .dump();
  ASSERT_TRUE(store::add(media, {}, b));
  media.value = Json{{"message_id", "wamid.in.447700900001.118"}, {"event_id", "f"},
                     {"conversation_key", "111:447700900001"}, {"type", "image"}, {"media_id", "8"},
                     {"status", "stored"}, {"attempts", 1}, {"at_ms", (kNow + 118) * 1000},
                     {"storage_uri", "s3://wafleet-media/media/sha256/cd/cd"}, {"sha256", "cd"}, {"size", 10},
                     {"mime_type", "image/jpeg"}}
                    .dump();
  ASSERT_TRUE(store::add(media, {}, b));
  ASSERT_TRUE(db.write(b));
  MediaLinks links;
  links.secret = "link-secret";
  links.s3 = media::S3Options{};
  links.s3->endpoint = "http://127.0.0.1:4569";
  links.s3->bucket = "wafleet-media";
  links.s3->access_key = "AK";
  links.s3->secret_key = "SK";
  api_->set_media_links(links);
  auto page = body_of(call(bhttp::verb::get, "/v1/conversations/111:447700900001/messages?limit=5"));
  std::map<std::string, std::string> url_of;
  for (const auto& m : page["items"]) {
    if (m["media"].is_object()) {
      url_of[m["id"]] = m["media"].value("url", "");
    }
  }
  ASSERT_EQ(url_of.size(), 2u) << page.dump();
  const std::string url = url_of["wamid.in.447700900001.119"];
  const std::string s3_url = url_of["wamid.in.447700900001.118"];
  ASSERT_EQ(url.rfind("/v1/media/wamid.in.447700900001.119?expires=", 0), 0u) << url;
  // No key needed: the signature is the key.
  auto file = call(bhttp::verb::get, url, "", "");
  ASSERT_EQ(file.result_int(), 200u) << file.body();
  EXPECT_EQ(file.body(), "jpeg bytes");
  EXPECT_EQ(file[bhttp::field::content_type], "image/jpeg");
  auto s3 = call(bhttp::verb::get, s3_url, "", "");
  ASSERT_EQ(s3.result_int(), 302u) << s3.body();
  const std::string location(s3[bhttp::field::location]);
  EXPECT_EQ(location.rfind("http://127.0.0.1:4569/wafleet-media/media/sha256/cd/cd?X-Amz-Algorithm=AWS4-HMAC-SHA256", 0), 0u)
      << location;
  EXPECT_NE(location.find("&X-Amz-Signature="), std::string::npos);
  // A changed byte, another message's signature, an expired or far-future link: 403.
  std::string tampered = url;
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  const std::string sig = url.substr(url.find("&sig="));
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
  for (const auto& bad : {tampered, "/v1/media/wamid.in.447700900001.118" + url.substr(url.find('?')),
                          "/v1/media/wamid.in.447700900001.119?expires=" + std::to_string(now_s - 10) + sig,
                          "/v1/media/wamid.in.447700900001.119?expires=" + std::to_string(now_s + 7200) + sig,
                          std::string("/v1/media/wamid.in.447700900001.119")}) {
    auto r = call(bhttp::verb::get, bad, "", "");
    EXPECT_EQ(r.result_int(), 403u) << bad;
    EXPECT_EQ(body_of(r)["error"]["code"], "forbidden");
  }
  // Valid for a message without stored media: 404.
  EXPECT_EQ(call(bhttp::verb::get, media_link(links, "wamid.in.447700900001.5", now_s), "", "").result_int(), 404u);
}

TEST(ApiKeys, TheKeysFileNamesItsBadLine) {
  auto ok = parse_keys("# ops\nops " + crypto::sha256_hex("k") + "\n\n");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->size(), 1u);
  auto bad = parse_keys("ops " + crypto::sha256_hex("k") + "\ncrm not-a-hash\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("line 2"), std::string::npos);
}

TEST(ApiDescription, IsOpenApi31WithEveryRouteThisApiServes) {
  auto doc = Json::parse(openapi_json(), nullptr, false);
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["openapi"], "3.1.0");
  for (const char* p : {"/v1/messages", "/v1/messages/{id}", "/v1/conversations", "/v1/conversations/{key}/messages",
                        "/v1/contacts/{id}", "/v1/people/{id}", "/v1/dlq/stats", "/v1/bulk/jobs",
                        "/v1/bulk/jobs/{id}", "/v1/bulk/jobs/{id}/pause", "/v1/bulk/jobs/{id}/resume",
                        "/v1/bulk/jobs/{id}/cancel", "/v1/bulk/jobs/{id}/report", "/v1/media/{message_id}"}) {
    EXPECT_TRUE(doc["paths"].contains(p)) << p;
  }
  // The body of POST /v1/messages is described by the topic's schema itself.
  Json topic = topics::schema("outbound_request");
  topic.erase("$schema");
  topic.erase("$id");
  EXPECT_EQ(doc["components"]["schemas"]["OutboundRequest"], topic);
}

}  // namespace
}  // namespace wafleet::api
