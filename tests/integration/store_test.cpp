// The record against a real PostgreSQL (scripts/postgres): migrations, batches written once
// whatever is redelivered, statuses that never go back, partitions dropped, a server restart.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/pg.h"
#include "tests/support/services.h"
#include "topics/topics.h"
#include "workers/store/db.h"
#include "workers/store/record.h"

namespace wafleet::store {
namespace {

using Json = nlohmann::json;

test::PostgresServer& server() {
  static test::PostgresServer s;
  return s;
}

class StoreDb : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = std::string("t_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::string lower;
    for (char c : name) {
      lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    url_ = server().fresh_database(lower);
    pg::Options o;
    o.url = url_;
    auto c = pg::Connection::connect(o);
    ASSERT_TRUE(c) << c.error().message;
    conn_ = std::move(c).value();
    auto applied = migrate(*conn_);
    ASSERT_TRUE(applied) << applied.error().message;
    ASSERT_EQ(applied->size(), migrations().size());
  }

  int64_t count(const std::string& sql) {
    auto r = conn_->exec(sql);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r && r->size() ? r->integer(0, 0) : -1;
  }

  std::string text(const std::string& sql) {
    auto r = conn_->exec(sql);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r && r->size() ? std::string(r->text(0, 0)) : "";
  }

  static kafka::Record inbound(const std::string& wamid, int64_t ts_s, const std::string& body,
                               const std::string& who = "447700900001") {
    Json raw = {{"from", who}, {"id", wamid}, {"timestamp", std::to_string(ts_s)}, {"type", "text"},
                {"text", {{"body", body}}}};
    Json ev = {{"v", 1}, {"kind", "message"}, {"event_id", "m:111:" + wamid},
               {"conversation_key", "111:" + who}, {"identity", who}, {"phone_number_id", "111"},
               {"wa_id", who}, {"profile_name", "Ana"}, {"type", "text"}, {"message_id", wamid},
               {"timestamp", ts_s}, {"received_at_ms", ts_s * 1000}, {"source", "meta"}, {"raw", raw}};
    kafka::Record r;
    r.topic = topics::kInbound;
    r.key = "111:" + who;
    r.value = ev.dump();
    return r;
  }

  static kafka::Record status(const std::string& wamid, const std::string& st, int64_t ts_s) {
    Json raw = {{"id", wamid}, {"status", st}, {"timestamp", std::to_string(ts_s)}, {"recipient_id", "447700900001"}};
    Json ev = {{"v", 1}, {"kind", "status"}, {"event_id", "s:111:" + wamid + ":" + st},
               {"conversation_key", "111:447700900001"}, {"phone_number_id", "111"}, {"type", st},
               {"message_id", wamid}, {"timestamp", ts_s}, {"received_at_ms", ts_s * 1000},
               {"source", "meta"}, {"raw", raw}};
    kafka::Record r;
    r.topic = topics::kStatus;
    r.key = "111:447700900001";
    r.value = ev.dump();
    return r;
  }

  Batch batch_of(const std::vector<kafka::Record>& records) {
    Batch b;
    for (const auto& r : records) {
      EXPECT_TRUE(add(r, Rules{}, b));
    }
    return b;
  }

  std::string url_;
  std::unique_ptr<pg::Connection> conn_;
};

const int64_t kNow = 1796000000;  // 2026-11-30

TEST_F(StoreDb, MigrationsApplyOnceAndAreRecorded) {
  auto again = migrate(*conn_);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty());
  EXPECT_EQ(count("SELECT max(version) FROM schema_migrations"), migrations().back().version);
}

TEST_F(StoreDb, ARedeliveredBatchAddsNothingAndAMixedOneAddsOnlyTheNew) {
  Database db(*conn_);
  std::vector<kafka::Record> first;
  for (int i = 0; i < 100; ++i) {
    first.push_back(inbound("wamid.a" + std::to_string(i), kNow + i, "hello " + std::to_string(i)));
  }
  ASSERT_TRUE(db.write(batch_of(first)));
  ASSERT_TRUE(db.write(batch_of(first)));  // a crash before the offsets were committed
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 100);
  EXPECT_EQ(db.conflicts(), 1);
  std::vector<kafka::Record> mixed(first.begin() + 50, first.end());
  for (int i = 100; i < 150; ++i) {
    mixed.push_back(inbound("wamid.a" + std::to_string(i), kNow + i, "hello " + std::to_string(i)));
  }
  ASSERT_TRUE(db.write(batch_of(mixed)));
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 150);
  EXPECT_EQ(count("SELECT count(*) FROM conversations"), 1);
  EXPECT_EQ(text("SELECT last_body FROM conversations"), "hello 149");
  EXPECT_EQ(text("SELECT profile_name FROM contacts WHERE id = '447700900001'"), "Ana");
}

TEST_F(StoreDb, ALateDeliveredNeverHidesRead) {
  Database db(*conn_);
  ASSERT_TRUE(db.write(batch_of({status("wamid.o1", "sent", kNow), status("wamid.o1", "read", kNow + 5)})));
  ASSERT_TRUE(db.write(batch_of({status("wamid.o1", "delivered", kNow + 2)})));
  const std::string current =
      "SELECT status FROM statuses WHERE wamid = 'wamid.o1' ORDER BY CASE status WHEN 'sent' THEN 1 "
      "WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'played' THEN 4 ELSE 0 END DESC LIMIT 1";
  EXPECT_EQ(text(current), "read");
  EXPECT_EQ(count("SELECT count(*) FROM statuses WHERE wamid = 'wamid.o1'"), 3);
}

TEST_F(StoreDb, AnOlderBatchNeverMovesTheConversationBack) {
  Database db(*conn_);
  ASSERT_TRUE(db.write(batch_of({inbound("wamid.new", kNow + 100, "newer")})));
  ASSERT_TRUE(db.write(batch_of({inbound("wamid.old", kNow, "older")})));
  EXPECT_EQ(text("SELECT last_id FROM conversations"), "wamid.new");
  Json handoff = {{"conversation_key", "111:447700900001"}, {"event", "handed_off"}, {"owner", "human"},
                  {"by", "keyword"}, {"at_ms", (kNow + 200) * 1000}};
  kafka::Record h;
  h.topic = topics::kHandoffs;
  h.value = handoff.dump();
  ASSERT_TRUE(db.write(batch_of({h})));
  EXPECT_EQ(text("SELECT owner FROM conversations"), "human");
  EXPECT_EQ(text("SELECT last_id FROM conversations"), "wamid.new");
}

TEST_F(StoreDb, DaysGetPartitionsAndOldDaysAreDropped) {
  Database db(*conn_);
  ASSERT_TRUE(db.write(batch_of({inbound("wamid.d1", kNow - 2 * 86400, "two days ago"),
                                 inbound("wamid.d2", kNow, "today", "447700900002")})));
  EXPECT_EQ(count("SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
                  "WHERE p.relname = 'messages'"),
            2);
  auto dropped = db.drop_before(day_of((kNow - 86400) * 1000));
  ASSERT_TRUE(dropped) << dropped.error().message;
  EXPECT_EQ(dropped->size(), partitioned_tables().size());
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM conversations"), 1);  // the idle one went with its day
}

TEST_F(StoreDb, TheSweepFindsTheFilesOnlyExpiredDaysNameAndKeepsOnesSentSince) {
  Database db(*conn_);
  auto media = [](const std::string& wamid, int64_t at_s, const std::string& sha) {
    kafka::Record r;
    r.topic = topics::kMedia;
    r.value = Json{{"message_id", wamid}, {"event_id", "e:" + wamid}, {"conversation_key", "111:447700900001"},
                   {"type", "image"}, {"media_id", "9"}, {"status", "stored"}, {"attempts", 1},
                   {"at_ms", at_s * 1000}, {"storage_uri", "file:///media/sha256/" + sha}, {"sha256", sha}, {"size", 5}}
                  .dump();
    return r;
  };
  // Forty days ago: two photos; one of them was sent again yesterday.
  ASSERT_TRUE(db.write(batch_of({media("wamid.old1", kNow - 40 * 86400, "aa"),
                                 media("wamid.old2", kNow - 40 * 86400, "bb"),
                                 media("wamid.new", kNow - 86400, "bb")})));
  auto files = db.files_only_before(day_of((kNow - 30 * 86400) * 1000));
  ASSERT_TRUE(files) << files.error().message;
  EXPECT_EQ(*files, std::vector<std::string>{"file:///media/sha256/aa"});
  ASSERT_TRUE(db.drop_before(day_of((kNow - 30 * 86400) * 1000)));
  EXPECT_EQ(count("SELECT count(*) FROM media"), 1);
  auto none = db.files_only_before(day_of((kNow - 30 * 86400) * 1000));
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST_F(StoreDb, ARecordTheDatabaseRefusesIsAnInvalidInputNotATransientError) {
  Database db(*conn_);
  // A NUL escaped in JSON is valid JSON but jsonb refuses it.
  auto r = inbound("wamid.nul", kNow, "x");
  auto j = Json::parse(r.value);
  j["raw"]["text"]["body"] = std::string("a\0b", 3);
  r.value = j.dump();
  auto st = db.write(batch_of({r}));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().kind, ErrorKind::kTransient) << st.error().message;
  ASSERT_TRUE(db.write(batch_of({inbound("wamid.ok", kNow, "fine")})));
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 1);
}

TEST_F(StoreDb, AServerRestartIsATransientErrorThenTheConnectionComesBack) {
  Database db(*conn_);
  ASSERT_TRUE(db.write(batch_of({inbound("wamid.r1", kNow, "before")})));
  server().stop();
  auto st = db.write(batch_of({inbound("wamid.r2", kNow, "during")}));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, ErrorKind::kTransient) << st.error().message;
  server().start();
  ASSERT_TRUE(conn_->reset());
  ASSERT_TRUE(db.write(batch_of({inbound("wamid.r2", kNow, "during")})));
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 2);
}

}  // namespace
}  // namespace wafleet::store
