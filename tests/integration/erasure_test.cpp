// Erasure of one person against a real PostgreSQL and redis-server: their rows, their media
// files (not a file someone else sent too), their Redis state; another person's untouched; an
// opt-out kept only as a salted hash, which the sender still honours.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/pg.h"
#include "tests/support/services.h"
#include "topics/topics.h"
#include "workers/erasure/erasure.h"
#include "workers/sender/conversations.h"
#include "workers/sender/request.h"
#include "workers/store/db.h"
#include "workers/store/record.h"

namespace wafleet::erasure {
namespace {

using Json = nlohmann::json;

constexpr const char* kAna = "447700900001";
constexpr const char* kBen = "447700900002";
constexpr const char* kSalt = "erasure-test-salt";

test::PostgresServer& server() {
  static test::PostgresServer s;
  return s;
}

kafka::Record record(const std::string& topic, const std::string& key, const Json& value,
                     int64_t ts_ms) {
  kafka::Record r;
  r.topic = topic;
  r.key = key;
  r.value = value.dump();
  r.timestamp_ms = ts_ms;
  return r;
}

Json inbound(const std::string& who, const std::string& wamid, int64_t ts_s) {
  Json raw = {{"from", who}, {"id", wamid}, {"timestamp", std::to_string(ts_s)}, {"type", "text"},
              {"text", {{"body", "hello from " + who}}}};
  return {{"v", 1}, {"kind", "message"}, {"event_id", "m:111:" + wamid},
          {"conversation_key", "111:" + who}, {"identity", who}, {"phone_number_id", "111"},
          {"wa_id", who}, {"profile_name", "Name of " + who}, {"type", "text"}, {"message_id", wamid},
          {"timestamp", ts_s}, {"received_at_ms", ts_s * 1000}, {"source", "meta"}, {"raw", raw}};
}

Json media_of(const std::string& who, const std::string& wamid, const std::string& uri,
              const std::string& sha, int64_t at_ms) {
  return {{"message_id", wamid}, {"event_id", "m:111:" + wamid}, {"conversation_key", "111:" + who},
          {"type", "image"}, {"media_id", "9"}, {"status", "stored"}, {"attempts", 1},
          {"at_ms", at_ms}, {"storage_uri", uri}, {"sha256", sha}, {"size", 5}};
}

class Erasure : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = "t_erasure_";
    for (char c : std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()).substr(0, 20)) {
      name.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    url_ = server().fresh_database(name);
    auto c = pg::Connection::connect(pg::Options{url_});
    ASSERT_TRUE(c) << c.error().message;
    db_ = std::move(c).value();
    ASSERT_TRUE(store::migrate(*db_));
    dir_ = test::temp_dir("wafleet-erasure");
  }

  // A file in the media layout; its file:// URI.
  std::string stored_file(const std::string& sha) {
    const std::string path = dir_ + "/sha256/" + sha.substr(0, 2) + "/" + sha;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << "bytes";
    return "file://" + path;
  }

  void write(const std::vector<kafka::Record>& records) {
    store::Batch b;
    const store::Rules rules{wall_clock_ms(), 30LL * 86400000};
    for (const auto& r : records) {
      ASSERT_TRUE(store::add(r, rules, b)) << r.value;
    }
    store::Database database(*db_);
    ASSERT_TRUE(database.write(b));
  }

  int64_t count(const std::string& sql) {
    auto r = db_->exec(sql);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r && r->size() ? r->integer(0, 0) : -1;
  }

  bool exists(const std::string& key) {
    auto r = redis_client_.command({"EXISTS", key});
    return r && r->integer == 1;
  }

  test::RedisServer redis_;
  redis::RedisClient redis_client_{redis_.options()};
  std::string url_;
  std::string dir_;
  std::unique_ptr<pg::Connection> db_;
};

TEST_F(Erasure, APersonIsForgottenEverywhereAndNobodyElseIs) {
  const int64_t now_ms = wall_clock_ms();
  const int64_t now_s = now_ms / 1000;
  const std::string own_sha = crypto::sha256_hex("ana's photo");
  const std::string shared_sha = crypto::sha256_hex("a photo both sent");
  const std::string own_file = stored_file(own_sha);
  const std::string shared_file = stored_file(shared_sha);
  std::vector<kafka::Record> records;
  for (int i = 0; i < 50; ++i) {
    records.push_back(record(topics::kInbound, std::string("111:") + kAna,
                             inbound(kAna, "wamid.ana" + std::to_string(i), now_s - 50 + i), now_ms));
  }
  for (int i = 0; i < 5; ++i) {
    records.push_back(record(topics::kInbound, std::string("111:") + kBen,
                             inbound(kBen, "wamid.ben" + std::to_string(i), now_s - 5 + i), now_ms));
  }
  records.push_back(record(topics::kMedia, std::string("111:") + kAna,
                           media_of(kAna, "wamid.ana0", own_file, own_sha, now_ms), now_ms));
  records.push_back(record(topics::kMedia, std::string("111:") + kAna,
                           media_of(kAna, "wamid.ana1", shared_file, shared_sha, now_ms), now_ms));
  records.push_back(record(topics::kMedia, std::string("111:") + kBen,
                           media_of(kBen, "wamid.ben0", shared_file, shared_sha, now_ms), now_ms));
  records.push_back(record(topics::kOutbound, std::string("111:") + kAna,
                           {{"request_id", "r.ana"}, {"phone_number_id", "111"}, {"to", kAna},
                            {"type", "text"}, {"text", {{"body", "our answer"}}}}, now_ms));
  records.push_back(record(topics::kOutboundResults, std::string("111:") + kAna,
                           {{"request_id", "r.ana"}, {"idempotency_key", "r.ana"}, {"status", "sent"},
                            {"attempts", 1}, {"at_ms", now_ms}, {"wamid", "wamid.out.ana"}}, now_ms));
  Json st = inbound(kAna, "wamid.out.ana", now_s);
  st["kind"] = "status";
  st["type"] = "read";
  st["event_id"] = "s:111:wamid.out.ana:read";
  st["raw"] = {{"id", "wamid.out.ana"}, {"status", "read"}, {"timestamp", std::to_string(now_s)},
               {"recipient_id", kAna}};
  records.push_back(record(topics::kStatus, std::string("111:") + kAna, st, now_ms));
  records.push_back(record(topics::kTurns, std::string("111:") + kAna,
                           {{"v", 1}, {"turn_id", "t.ana"}, {"conversation_key", std::string("111:") + kAna},
                            {"items", Json::array()}, {"message_ids", {"wamid.ana0", "wamid.ana1"}},
                            {"messages", Json::array()}, {"window", Json::object()}}, now_ms));
  records.push_back(record(topics::kHandoffs, std::string("111:") + kAna,
                           {{"conversation_key", std::string("111:") + kAna}, {"event", "handed_off"},
                            {"owner", "human"}, {"by", "keyword"}, {"at_ms", now_ms}}, now_ms));
  write(records);
  ASSERT_EQ(count("SELECT count(*) FROM messages"), 56);
  ASSERT_EQ(count("SELECT count(*) FROM contacts"), 2);

  const std::string ana_key = std::string("111:") + kAna;
  for (const redis::Command& c : std::vector<redis::Command>{
           {"SET", std::string("snd:win:{111}:") + kAna, "1"},
           {"SET", std::string("snd:win:{111}:") + kBen, "1"},
           {"SET", std::string("snd:optout:{111}:") + kAna, R"({"at_ms":1,"reason":"STOP keyword"})"},
           {"RPUSH", "br:mem:{" + ana_key + "}", "{}"},
           {"SET", "br:owner:{" + ana_key + "}", "{}"},
           {"SET", "agg:{wa.inbound:7}:conv:" + ana_key, "12"},
           {"HSET", "snd:st:{wamid.out.ana}", "status", "read"},
           {"ZADD", "bulk:reach:{default}", "1", kAna},
           {"ZADD", "bulk:reach:{default}", "1", kBen}}) {
    ASSERT_TRUE(redis_client_.command(c));
  }

  Options o;
  o.salt = kSalt;
  Eraser eraser(*db_, redis_client_, o);
  auto report = eraser.forget("+44 7700 900001", now_ms);
  ASSERT_TRUE(report) << report.error().message;
  const Json r = report->to_json();

  // The record: nothing of Ana's, all of Ben's.
  EXPECT_EQ(count("SELECT count(*) FROM messages WHERE conversation_key = '111:447700900001'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 5);
  EXPECT_EQ(count("SELECT count(*) FROM statuses"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM results"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM turn_messages"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM handoffs"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM media"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM conversations"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM contacts WHERE id = '447700900001'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM contacts"), 1);
  EXPECT_EQ(r["removed"]["messages"], 51);
  EXPECT_EQ(r["removed"]["media_rows"], 2);
  // Her own photo is gone; the one Ben sent too stays.
  EXPECT_FALSE(std::filesystem::exists(own_file.substr(7)));
  EXPECT_TRUE(std::filesystem::exists(shared_file.substr(7)));
  EXPECT_EQ(r["removed"]["media_files"], 1);

  // Redis: her state gone, Ben's kept, the opt-out only as a hash.
  const std::string hash = suppression_hash(kSalt, kAna);
  EXPECT_FALSE(exists(std::string("snd:win:{111}:") + kAna));
  EXPECT_TRUE(exists(std::string("snd:win:{111}:") + kBen));
  EXPECT_FALSE(exists(std::string("snd:optout:{111}:") + kAna));
  EXPECT_TRUE(exists("snd:optout:{111}:#" + hash));
  EXPECT_FALSE(exists("br:mem:{" + ana_key + "}"));
  EXPECT_FALSE(exists("br:owner:{" + ana_key + "}"));
  EXPECT_FALSE(exists("agg:{wa.inbound:7}:conv:" + ana_key));
  EXPECT_FALSE(exists("snd:st:{wamid.out.ana}"));
  auto reach = redis_client_.command({"ZRANGE", "bulk:reach:{default}", "0", "-1"});
  ASSERT_TRUE(reach);
  ASSERT_EQ(reach->elements.size(), 1u);
  EXPECT_EQ(reach->elements[0].str, kBen);
  EXPECT_EQ(count("SELECT count(*) FROM suppressed WHERE identity_hash = '" + hash + "'"), 1);
  EXPECT_TRUE(r["opt_out_kept_as_hash"].get<bool>());
  EXPECT_EQ(r["identity_hash"], hash);
  EXPECT_EQ(r.dump().find(kAna), std::string::npos) << "the report names her in clear";

  // What cannot go yet is listed with its date: wa.inbound keeps records 7 days.
  bool inbound_listed = false;
  for (const auto& left : r["remaining"]) {
    inbound_listed |= left["where"] == "kafka wa.inbound" && left["until"].get<std::string>().size() == 20;
  }
  EXPECT_TRUE(inbound_listed) << r["remaining"].dump();

  // The sender, knowing the salt, still refuses her a template.
  sender::PolicyOptions po;
  po.suppression_salt = kSalt;
  sender::Conversations conversations(redis_client_, po);
  auto req = sender::parse_request({{"request_id", "promo"}, {"phone_number_id", "111"}, {"to", kAna},
                                    {"type", "template"},
                                    {"template", {{"name", "spring_sale"}, {"language", {{"code", "en"}}}}}});
  ASSERT_TRUE(req) << req.error();
  auto refusal = conversations.refusal(*req, now_ms);
  ASSERT_TRUE(refusal);
  ASSERT_TRUE(refusal->has_value());
  EXPECT_NE((*refusal)->find("opted out"), std::string::npos) << **refusal;

  // A second forget finds nothing more and keeps the suppression.
  auto again = eraser.forget(kAna, now_ms);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->to_json()["removed"]["messages"], 0);
  EXPECT_EQ(count("SELECT count(*) FROM suppressed"), 1);
}

TEST_F(Erasure, NoSaltOrNoIdentityIsRefusedAndRemovesNothing) {
  write({record(topics::kInbound, std::string("111:") + kAna,
                inbound(kAna, "wamid.keep", wall_clock_ms() / 1000), wall_clock_ms())});
  Eraser unsalted(*db_, redis_client_, Options{});
  auto r = unsalted.forget(kAna, wall_clock_ms());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kInvalidInput);
  Options o;
  o.salt = kSalt;
  Eraser eraser(*db_, redis_client_, o);
  auto blank = eraser.forget("  ", wall_clock_ms());
  ASSERT_FALSE(blank);
  EXPECT_EQ(blank.error().kind, ErrorKind::kInvalidInput);
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 1);
}

}  // namespace
}  // namespace wafleet::erasure
