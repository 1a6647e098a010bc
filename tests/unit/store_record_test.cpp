// What records become in the record (workers/store/record.cpp), from the project's copies of
// Meta's and pywa's example payloads.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/pg.h"
#include "tests/support/fixtures.h"
#include "topics/topics.h"
#include "workers/receiver/webhook_parser.h"
#include "workers/store/record.h"

namespace wafleet::store {
namespace {

using Json = nlohmann::json;

kafka::Record record(const std::string& topic, const std::string& key, const std::string& value,
                     int64_t ts = 0) {
  kafka::Record r;
  r.topic = topic;
  r.key = key;
  r.value = value;
  r.timestamp_ms = ts;
  return r;
}

std::vector<WebhookEvent> events_of(const std::string& fixture_name) {
  auto evs = receiver::parse_meta_webhook(test::fixture(fixture_name), receiver::ParseContext{"meta", 1700000000000, ""});
  EXPECT_TRUE(evs.has_value()) << fixture_name;
  return evs ? *evs : std::vector<WebhookEvent>{};
}

// Splits a table's COPY lines into rows of fields (no escapes in these fixtures' fields checked).
std::vector<std::vector<std::string>> rows_of(const Batch& b, Table t) {
  std::vector<std::vector<std::string>> out;
  auto it = b.tables.find(t);
  if (it == b.tables.end()) {
    return out;
  }
  std::string_view all = it->second.lines;
  while (!all.empty()) {
    auto nl = all.find('\n');
    std::string_view line = all.substr(0, nl);
    std::vector<std::string> fields;
    size_t start = 0;
    while (true) {
      auto tab = line.find('\t', start);
      fields.emplace_back(line.substr(start, tab == std::string_view::npos ? line.npos : tab - start));
      if (tab == std::string_view::npos) {
        break;
      }
      start = tab + 1;
    }
    out.push_back(std::move(fields));
    all.remove_prefix(nl == std::string_view::npos ? all.size() : nl + 1);
  }
  return out;
}

Rules no_retention() { return Rules{0, 0}; }

TEST(StoreRecord, CopyFieldsEscapeExactlyWhatCopyTextFormatNeeds) {
  std::string line;
  pg::copy_field(line, "plain text, with 'quotes' and \"double\" and é");
  EXPECT_EQ(line, "plain text, with 'quotes' and \"double\" and é");
  line.clear();
  pg::copy_field(line, "a\\b\tc\nd\re\\");
  EXPECT_EQ(line, "a\\\\b\\tc\\nd\\re\\\\");
  line.clear();
  pg::copy_field(line, "");
  pg::copy_field(line, "\n");
  EXPECT_EQ(line, "\\n");
}

TEST(StoreRecord, EveryInboundFixtureBecomesOneMessageRowWithItsWamid) {
  int messages = 0;
  Batch b;
  for (const auto& name : test::fixture_names("meta_inbound_")) {
    for (const auto& ev : events_of(name)) {
      if (ev.kind != EventKind::kMessage) {
        continue;
      }
      ASSERT_TRUE(add(record(topics::kInbound, ev.conversation_key, ev.encode()), no_retention(), b))
          << name;
      ++messages;
    }
  }
  ASSERT_GT(messages, 10);
  const auto rows = rows_of(b, Table::kMessages);
  ASSERT_EQ(rows.size(), static_cast<size_t>(messages));
  for (const auto& r : rows) {
    ASSERT_EQ(r.size(), 8u);
    EXPECT_EQ(r[3], "in");
    EXPECT_EQ(r[1].rfind("wamid.", 0), 0u) << r[1];
    EXPECT_TRUE(Json::parse(r[7], nullptr, false).is_object());
  }
  EXPECT_FALSE(b.conversations.empty());
  EXPECT_FALSE(b.contacts.empty());
}

TEST(StoreRecord, BodiesAreTheTextCaptionTitleOrEmoji) {
  struct Case {
    const char* fixture;
    const char* type;
  };
  for (const Case c : {Case{"meta_inbound_text.json", "text"}, Case{"meta_inbound_image.json", "image"},
                       Case{"meta_inbound_interactive_button_reply.json", "interactive"},
                       Case{"pywa_inbound_reaction.json", "reaction"},
                       Case{"pywa_inbound_location_named.json", "location"}}) {
    auto evs = events_of(c.fixture);
    ASSERT_FALSE(evs.empty()) << c.fixture;
    EXPECT_EQ(evs[0].type, c.type);
    const auto body = body_of(evs[0].raw, evs[0].type);
    EXPECT_FALSE(body.empty()) << c.fixture;
  }
  auto text = events_of("meta_inbound_text.json");
  EXPECT_EQ(body_of(text[0].raw, "text"), text[0].raw["text"]["body"].get<std::string>());
}

TEST(StoreRecord, StatusesKeepTheErrorCodeAndTitle) {
  Batch b;
  for (const auto& ev : events_of("meta_status_failed_131049.json")) {
    ASSERT_TRUE(add(record(topics::kStatus, ev.conversation_key, ev.encode()), no_retention(), b));
  }
  const auto rows = rows_of(b, Table::kStatuses);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][2], "failed");
  EXPECT_EQ(rows[0][4], "131049");
  EXPECT_NE(rows[0][5], "\\N");
  EXPECT_TRUE(b.conversations.empty());  // a status is no activity of the conversation
}

TEST(StoreRecord, OutboundRequestsAreMessagesOutReceiptsAreNot) {
  Batch b;
  Json text = {{"request_id", "r1"}, {"phone_number_id", "111"}, {"to", "447700900001"},
               {"type", "text"}, {"text", {{"body", "Hello\tthere\nfriend"}}}};
  Json read = {{"request_id", "r2"}, {"phone_number_id", "111"}, {"type", "read"},
               {"message_id", "wamid.x"}};
  Json tmpl = {{"request_id", "r3"}, {"phone_number_id", "111"}, {"to", "447700900001"},
               {"type", "template"}, {"template", {{"name", "spring_sale"}}}};
  ASSERT_TRUE(add(record(topics::kOutbound, "111:447700900001", text.dump(), 1700000000000), no_retention(), b));
  ASSERT_TRUE(add(record(topics::kOutbound, "111:447700900001", read.dump(), 1700000000001), no_retention(), b));
  ASSERT_TRUE(add(record(topics::kOutbound, "111:447700900001", tmpl.dump(), 1700000000002), no_retention(), b));
  auto it = b.tables.find(Table::kMessages);
  ASSERT_NE(it, b.tables.end());
  EXPECT_EQ(it->second.count, 2u);
  EXPECT_EQ(b.ignored, 1);
  // Tab and newline of the body are escaped for COPY.
  EXPECT_NE(it->second.lines.find("Hello\\tthere\\nfriend"), std::string::npos);
  const auto& c = b.conversations.at("111:447700900001");
  EXPECT_EQ(c.last_id, "r3");
  EXPECT_EQ(c.body, "spring_sale");
  EXPECT_EQ(c.direction, "out");
}

TEST(StoreRecord, ResultsMediaTurnsAndHandoffs) {
  Batch b;
  Json result = {{"request_id", "r1"}, {"idempotency_key", "r1"}, {"status", "failed"},
                 {"attempts", 2}, {"at_ms", 1700000000000},
                 {"error", {{"code", 131026}, {"message", "undeliverable"}}}};
  Json media = {{"message_id", "wamid.m"}, {"event_id", "e"}, {"conversation_key", "111:4477"},
                {"type", "image"}, {"media_id", "9"}, {"status", "stored"}, {"attempts", 1},
                {"at_ms", 1700000000000}, {"storage_uri", "file:///x"}, {"sha256", "ab"}, {"size", 5}};
  Json turn = {{"v", 1}, {"turn_id", "t1"}, {"conversation_key", "111:4477"}, {"items", Json::array()},
               {"message_ids", {"wamid.a", "wamid.b"}}, {"messages", Json::array()}, {"window", Json::object()}};
  Json handoff = {{"conversation_key", "111:4477"}, {"event", "handed_off"}, {"owner", "human"},
                  {"by", "keyword"}, {"at_ms", 1700000000000}};
  ASSERT_TRUE(add(record(topics::kOutboundResults, "111:4477", result.dump()), no_retention(), b));
  ASSERT_TRUE(add(record(topics::kMedia, "111:4477", media.dump()), no_retention(), b));
  ASSERT_TRUE(add(record(topics::kTurns, "111:4477", turn.dump(), 1700000000000), no_retention(), b));
  ASSERT_TRUE(add(record(topics::kHandoffs, "111:4477", handoff.dump()), no_retention(), b));
  EXPECT_EQ(rows_of(b, Table::kResults).at(0).at(5), "131026");
  EXPECT_EQ(rows_of(b, Table::kMedia).at(0).at(7), "5");
  EXPECT_EQ(rows_of(b, Table::kTurnMessages).size(), 2u);
  EXPECT_EQ(b.conversations.at("111:4477").owner, "human");
  EXPECT_FALSE(b.conversations.at("111:4477").has_message);
}

TEST(StoreRecord, BadRecordsAreInvalidInputAndLeaveNothing) {
  Batch b;
  auto st = add(record(topics::kInbound, "k", "{not json"), no_retention(), b);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, ErrorKind::kInvalidInput);
  st = add(record(topics::kOutboundResults, "k", R"({"request_id":"r"})"), no_retention(), b);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, ErrorKind::kInvalidInput);
  EXPECT_TRUE(b.empty());
}

TEST(StoreRecord, RowsOlderThanTheRetentionAreNotStored) {
  Batch b;
  Rules rules{1700000000000 + 31LL * 86400000, 30LL * 86400000};
  for (const auto& ev : events_of("meta_inbound_text.json")) {
    auto copy = ev;
    copy.timestamp = 1700000000;  // 31 days before "now"
    ASSERT_TRUE(add(record(topics::kInbound, copy.conversation_key, copy.encode()), rules, b));
  }
  EXPECT_EQ(b.expired, 1);
  EXPECT_TRUE(b.empty());
}

TEST(StoreRecord, DaysAndTimestampsAreUtc) {
  EXPECT_EQ(day_of(1700000000000), "2023-11-14");
  EXPECT_EQ(timestamp_of(1700000000123), "2023-11-14T22:13:20.123Z");
}

}  // namespace
}  // namespace wafleet::store
