#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "tests/support/fixtures.h"
#include "workers/aggregator/turn.h"
#include "workers/aggregator/window.h"
#include "workers/receiver/webhook_parser.h"

namespace wafleet::aggregator {
namespace {

// An inbound event as the receiver would produce it, at event time t (ms).
WebhookEvent text(const std::string& who, const std::string& id, int64_t t,
                  const std::string& body) {
  WebhookEvent e;
  e.kind = EventKind::kMessage;
  e.phone_number_id = "106540352242922";
  e.identity = who;
  e.wa_id = who;
  e.conversation_key = e.phone_number_id + ":" + who;
  e.message_id = id;
  e.event_id = "m:" + e.phone_number_id + ":" + id;
  e.type = "text";
  e.received_at_ms = t;
  e.raw = {{"from", who}, {"id", id}, {"type", "text"}, {"text", {{"body", body}}}};
  return e;
}

WebhookEvent of_type(const std::string& who, const std::string& id, int64_t t,
                     const std::string& type, nlohmann::json object) {
  WebhookEvent e = text(who, id, t, "");
  e.type = type;
  e.raw = {{"from", who}, {"id", id}, {"type", type}, {type, std::move(object)}};
  return e;
}

std::vector<std::string> ids_of(const Window& w) {
  std::vector<std::string> out;
  for (const auto& b : w.messages) {
    out.push_back(b.event.message_id);
  }
  return out;
}

TEST(AggregatorWindow, DebounceKeepsABurstTogetherAndSplitsAfterSilence) {
  WindowSet ws(Config{});  // quiet 2 s, max 10 s
  EXPECT_TRUE(ws.add(text("a", "1", 1000, "Hi"), 10).empty());
  EXPECT_TRUE(ws.add(text("a", "2", 2500, "I need"), 11).empty());
  EXPECT_TRUE(ws.add(text("a", "3", 4000, "a refund"), 12).empty());
  EXPECT_EQ(ws.next_due(), 6000);
  EXPECT_TRUE(ws.close_due(5999).empty());
  auto closed = ws.close_due(6000);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(ids_of(closed[0]), (std::vector<std::string>{"1", "2", "3"}));
  // Silence of 2 s or more starts a new window.
  EXPECT_TRUE(ws.add(text("a", "4", 10000, "x"), 13).empty());
  auto next = ws.add(text("a", "5", 12000, "y"), 14);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(ids_of(next[0]), (std::vector<std::string>{"4"}));
  EXPECT_EQ(ws.open_windows(), 1u);
}

TEST(AggregatorWindow, DebounceNeverRunsPastMaxOrN) {
  Config c;
  c.max_messages = 4;
  WindowSet ws(c);
  // A message every second for 15 s: the cap of 10 s closes the window.
  std::vector<Window> closed;
  for (int i = 0; i < 3; ++i) {
    auto r = ws.add(text("a", std::to_string(i), 1000 * i, "m"), i);
    closed.insert(closed.end(), r.begin(), r.end());
  }
  EXPECT_TRUE(closed.empty());
  auto r = ws.add(text("a", "3", 3000, "m"), 3);  // 4th message: N reached
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].messages.size(), 4u);

  WindowSet capped(Config{});
  std::vector<Window> all;
  for (int i = 0; i <= 15; ++i) {
    auto got = capped.add(text("b", std::to_string(i), 1000 * i, "m"), i);
    all.insert(all.end(), got.begin(), got.end());
  }
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].messages.size(), 10u);  // 0..9 s; the one at 10 s opens the next
}

TEST(AggregatorWindow, TumblingClosesAtFirstPlusW) {
  Config c;
  c.mode = Config::Mode::kTumbling;
  c.tumbling_ms = 5000;
  WindowSet ws(c);
  ws.add(text("a", "1", 1000, "x"), 1);
  ws.add(text("a", "2", 5900, "y"), 2);
  EXPECT_EQ(ws.next_due(), 6000);
  auto r = ws.add(text("a", "3", 6000, "z"), 3);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(ids_of(r[0]), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(ws.next_due(), 11000);
}

TEST(AggregatorWindow, ConversationsAreIndependent) {
  WindowSet ws(Config{});
  ws.add(text("a", "a1", 0, "x"), 0);
  ws.add(text("b", "b1", 500, "x"), 1);
  ws.add(text("a", "a2", 1500, "x"), 2);
  EXPECT_EQ(ws.oldest_open_offset(), 0);
  auto closed = ws.close_due(2500);  // b is due at 2500, a at 3500
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].conversation_key, "106540352242922:b");
  EXPECT_EQ(ws.oldest_open_offset(), 0);
  closed = ws.close_due(3500);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_FALSE(ws.oldest_open_offset().has_value());
}

TEST(AggregatorWindow, EventTimeOfOtherConversationsClosesDueWindows) {
  WindowSet ws(Config{});
  EXPECT_TRUE(ws.add(text("a", "a1", 1000, "x"), 0).empty());
  EXPECT_TRUE(ws.advance_event_time(1000, 50).empty());
  ws.add(text("b", "b1", 3000, "x"), 1);
  EXPECT_TRUE(ws.advance_event_time(3000, 50).empty());  // a is due at 3000, lateness 50
  ws.add(text("b", "b2", 3060, "x"), 2);
  auto closed = ws.advance_event_time(3060, 50);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].conversation_key, "106540352242922:a");
  EXPECT_EQ(ws.oldest_open_offset(), 1);
  EXPECT_EQ(ws.next_due(), 5060);
}

TEST(AggregatorWindow, RedeliveredMessageIsNotAddedTwice) {
  WindowSet ws(Config{});
  ws.add(text("a", "1", 0, "x"), 5);
  ws.add(text("a", "1", 0, "x"), 5);
  auto closed = ws.close_due(100000);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].messages.size(), 1u);
}

// Meta's resend of a webhook whose produce timed out on the receiver's side yet reached Kafka:
// a second record of a message whose turn is closed. It is dropped, not a message in two turns;
// a DLQ replay of it is not; and past the horizon the id is forgotten.
TEST(AggregatorWindow, ALateSecondRecordOfAMessageAlreadyInATurnIsDropped) {
  Config c;  // quiet 2 s
  c.duplicate_horizon_ms = 60000;
  WindowSet ws(c);
  ws.add(text("a", "m1", 1000, "x"), 0);
  ASSERT_EQ(ws.advance_event_time(3100, 0).size(), 1u);  // [m1] closed
  EXPECT_TRUE(ws.add(text("a", "m1", 5000, "x"), 1).empty());
  EXPECT_EQ(ws.open_windows(), 0u) << "the second copy opened a window";
  ws.add(text("a", "m2", 5100, "x"), 2);
  auto next = ws.advance_event_time(7200, 0);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(ids_of(next[0]), std::vector<std::string>{"m2"});
  ws.add(text("a", "m1", 8000, "x"), 3, /*replay=*/1);  // a replay from the DLQ: a turn again
  EXPECT_EQ(ws.open_windows(), 1u);
  ASSERT_EQ(ws.advance_event_time(10100, 0).size(), 1u);
  ws.add(text("b", "b1", 80000, "x"), 4);  // event time moves past the horizon
  ws.advance_event_time(80000, 0);
  ws.add(text("a", "m2", 80100, "x"), 5);  // forgotten: taken as a message again
  EXPECT_EQ(ws.open_windows(), 2u);
}

TEST(AggregatorWindow, MediaHoldsTheWindowUntilStoredOrTheWaitPasses) {
  Config c;
  c.media_wait_ms = 8000;
  c.join_media = true;
  WindowSet ws(c);
  ws.add(text("a", "1", 0, "look"), 0);
  ws.add(of_type("a", "2", 500, "image", {{"id", "media-1"}, {"mime_type", "image/jpeg"}}), 1);
  EXPECT_TRUE(ws.close_due(2500).empty());  // quiet passed, the photo is still downloading
  ws.media_result("106540352242922:a", "2", true, {{"uri", "file:///m/abc"}, {"sha256", "ab"}});
  auto closed = ws.close_due(2500);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].messages[1].media, MediaState::kStored);

  ws.add(of_type("a", "3", 20000, "audio", {{"id", "media-2"}, {"voice", true}}), 2);
  EXPECT_TRUE(ws.close_due(27999).empty());
  closed = ws.close_due(28000);  // opened + media wait
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].messages[0].media, MediaState::kFailed);
  EXPECT_EQ(closed[0].messages[0].media_record["status"], "failed");
}

// Found by the fault suite: a window held for a slow photo used to take the person's next burst
// too, so whether a burst joined it depended on whether the photo's wa.media record had been
// read before the burst's wa.inbound records. Those two topics are fetched independently, so a
// new owner rebuilding the windows could decide otherwise than the old one: the same messages
// in two turns. Now media holds a window's turn back, never its membership.
TEST(AggregatorWindow, APendingPhotoHoldsItsTurnBackButNeverTakesTheNextBurst) {
  Config c;  // quiet 2 s, max 10 s
  c.media_wait_ms = 30000;
  c.join_media = true;
  WindowSet ws(c);
  ws.add(text("a", "1", 0, "look"), 0);
  ws.add(of_type("a", "p", 500, "image", {{"id", "media-1"}}), 1);
  EXPECT_TRUE(ws.add(text("a", "b1", 6500, "and then"), 2).empty()) << "held: nothing closes";
  EXPECT_TRUE(ws.add(text("a", "b2", 7000, "this"), 3).empty());
  EXPECT_EQ(ws.open_windows(), 2u);
  EXPECT_EQ(ws.oldest_open_offset(), 0);
  EXPECT_TRUE(ws.close_due(9500).empty()) << "the second burst is due, but waits for the first";
  ws.media_result("106540352242922:a", "p", true, {{"uri", "file:///m/p"}}, 4, 9600);
  auto closed = ws.close_due(9600);
  ASSERT_EQ(closed.size(), 2u);
  EXPECT_EQ(ids_of(closed[0]), (std::vector<std::string>{"1", "p"}));
  EXPECT_EQ(closed[0].messages[1].media, MediaState::kStored);
  EXPECT_EQ(ids_of(closed[1]), (std::vector<std::string>{"b1", "b2"}));
  EXPECT_EQ(ws.open_windows(), 0u);
  EXPECT_FALSE(ws.oldest_media_offset().has_value());
}

// The property behind it: however the wa.media records fall among the wa.inbound records (as a
// live consumer or a rebuild after a rebalance reads them), the turns hold the same messages.
TEST(AggregatorWindow, TurnsDoNotDependOnWhereTheMediaRecordsFallAmongTheMessages) {
  Config c;
  c.quiet_ms = 1500;
  c.max_ms = 20000;
  c.max_messages = 8;
  c.media_wait_ms = 20000;
  c.join_media = true;
  struct In {
    WebhookEvent e;
    int64_t offset;
  };
  std::vector<In> inbound;
  std::vector<std::pair<std::string, std::string>> media;  // key, message id
  std::mt19937 rng(7);
  int64_t offset = 0;
  for (int person = 0; person < 12; ++person) {
    const std::string who = "p" + std::to_string(person);
    int64_t t = std::uniform_int_distribution<int>(0, 3000)(rng);
    for (int burst = 0; burst < 4; ++burst, t += 6500) {
      for (int k = 0; k < 4; ++k) {
        const std::string id = who + "b" + std::to_string(burst) + "m" + std::to_string(k);
        if (k == 1) {
          inbound.push_back({of_type(who, id, t + k * 300, "image", {{"id", "media-" + id}}), 0});
          media.emplace_back("106540352242922:" + who, id);
        } else {
          inbound.push_back({text(who, id, t + k * 300, id), 0});
        }
      }
    }
  }
  std::stable_sort(inbound.begin(), inbound.end(), [](const In& a, const In& b) {
    return a.e.received_at_ms < b.e.received_at_ms;
  });
  for (auto& in : inbound) {
    in.offset = offset++;
  }
  // One reading: the media records come `lag` inbound records after their message (lag < 0:
  // all of them at the end, after the media wait).
  auto read = [&](int lag) {
    WindowSet ws(c);
    std::set<std::vector<std::string>> turns;
    std::map<std::string, size_t> at;  // message id -> position in inbound
    for (size_t i = 0; i < inbound.size(); ++i) {
      at[inbound[i].e.message_id] = i;
    }
    auto keep = [&](std::vector<Window> ws_closed) {
      for (auto& w : ws_closed) {
        turns.insert(ids_of(w));
      }
    };
    for (size_t i = 0; i < inbound.size(); ++i) {
      keep(ws.add(inbound[i].e, inbound[i].offset));
      keep(ws.advance_event_time(inbound[i].e.received_at_ms, 30));
      for (size_t m = 0; lag >= 0 && m < media.size(); ++m) {
        if (at[media[m].second] + static_cast<size_t>(lag) == i) {
          ws.media_result(media[m].first, media[m].second, true, {{"status", "stored"}},
                          static_cast<int64_t>(m));
        }
      }
    }
    for (size_t m = 0; lag < 0 && m < media.size(); ++m) {
      ws.media_result(media[m].first, media[m].second, true, {{"status", "stored"}},
                      static_cast<int64_t>(m));
    }
    keep(ws.close_due(INT64_MAX));
    return turns;
  };
  const auto first = read(0);
  EXPECT_EQ(first.size(), 12u * 4) << "one turn per burst";
  for (int lag : {1, 3, 9, 40, -1}) {
    EXPECT_EQ(read(lag), first) << "media records " << lag << " inbound records late";
  }
}

// max-ms and max-messages cut a window with media exactly as one without: the next messages
// open the next window, which closes after the held one, in order.
TEST(AggregatorWindow, AWindowWithMediaIsCutByMaxMsAndMaxMessagesLikeAnyOther) {
  Config c;  // quiet 2 s, max 10 s
  c.media_wait_ms = 12000;
  c.join_media = true;
  {
    WindowSet ws(c);
    ws.add(of_type("a", "p", 0, "image", {{"id", "media-1"}}), 0);
    for (int64_t t = 1000; t <= 11000; t += 1000) {  // typing every second, past max_ms
      EXPECT_TRUE(ws.add(text("a", "t" + std::to_string(t), t, "x"), t).empty()) << t;
    }
    EXPECT_EQ(ws.open_windows(), 2u) << "cut at max_ms (10 s), held by the photo";
    ws.media_result("106540352242922:a", "p", true, {{"uri", "file:///m/p"}}, 3, 11100);
    auto closed = ws.close_due(11100);
    ASSERT_EQ(closed.size(), 1u);
    EXPECT_EQ(closed[0].messages.size(), 10u) << "the photo and 9 texts, up to 9 s";
    closed = ws.close_due(13000);  // the second: quiet since 11 s
    ASSERT_EQ(closed.size(), 1u);
    EXPECT_EQ(ids_of(closed[0]), (std::vector<std::string>{"t10000", "t11000"}));
  }
  {
    c.max_messages = 5;
    WindowSet ws(c);
    ws.add(of_type("b", "p", 0, "image", {{"id", "media-2"}}), 0);
    for (int64_t t = 1000; t <= 5000; t += 1000) {
      EXPECT_TRUE(ws.add(text("b", "t" + std::to_string(t), t, "x"), t).empty());
    }
    EXPECT_TRUE(ws.close_due(5000).empty()) << "five messages and the photo still pending";
    EXPECT_EQ(ws.open_windows(), 2u) << "the sixth message opened the next window";
    ws.media_result("106540352242922:b", "p", true, {{"uri", "file:///m/p"}}, 3, 5500);
    auto closed = ws.close_due(5500);
    ASSERT_EQ(closed.size(), 1u) << "full: nothing left to wait for";
    EXPECT_EQ(closed[0].messages.size(), 5u);
    EXPECT_EQ(ids_of(ws.close_due(7000).at(0)), (std::vector<std::string>{"t5000"}));
  }
}

TEST(AggregatorWindow, AMediaRecordBeforeItsMessageIsKeptAndItsOffsetHeld) {
  Config c;
  c.media_wait_ms = 8000;
  c.join_media = true;
  WindowSet ws(c);
  // The media worker was faster than this consumer: the record comes first (wa.media @7).
  ws.media_result("106540352242922:a", "2", true, {{"status", "stored"}}, 7);
  EXPECT_EQ(ws.oldest_media_offset(), 7);
  ws.add(text("a", "1", 0, "look"), 0);
  ws.add(of_type("a", "2", 100, "image", {{"id", "media-1"}}), 1);
  EXPECT_EQ(ws.oldest_media_offset(), 7);  // now held by the open window
  auto closed = ws.close_due(2100);         // no media wait: the photo is there already
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].messages[1].media, MediaState::kStored);
  EXPECT_EQ(closed[0].messages[1].media_offset, 7);
  EXPECT_FALSE(ws.oldest_media_offset().has_value());  // released with the window
  // A redelivered failed record does not overwrite a stored one.
  ws.add(of_type("a", "3", 5000, "image", {{"id", "media-3"}}), 2);
  ws.media_result("106540352242922:a", "3", true, {{"status", "stored"}}, 8);
  ws.media_result("106540352242922:a", "3", false, {{"status", "failed"}}, 9);
  closed = ws.close_due(7100);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].messages[0].media, MediaState::kStored);
  // A record whose message never comes is forgotten after 2 x media wait of event time.
  ws.media_result("106540352242922:b", "gone", true, {{"status", "stored"}}, 10);
  EXPECT_EQ(ws.oldest_media_offset(), 10);
  ws.advance_event_time(5000 + 2 * 8000 + 1, 0);
  EXPECT_FALSE(ws.oldest_media_offset().has_value());
}

// Found in CI: after a (re)start the media worker had already stored the photo, and this
// consumer read the wa.media record before any wa.inbound record of the partition. Kept "at
// event time 0", the record was forgotten by the first inbound record's event time and the
// photo waited out the media wait as failed.
TEST(AggregatorWindow, AMediaRecordReadFirstOnAFreshPartitionIsKeptFromItsOwnTime) {
  Config c;
  c.media_wait_ms = 20000;
  c.join_media = true;
  WindowSet ws(c);
  const int64_t now = 1763800000000;  // wall-clock times, as the receiver stamps them
  ws.media_result("106540352242922:a", "2", true, {{"status", "stored"}}, 0, now + 100);
  ws.add(text("a", "1", now, "look"), 0);
  EXPECT_TRUE(ws.advance_event_time(now, 0).empty());
  ws.add(of_type("a", "2", now + 50, "image", {{"id", "media-1"}}), 1);
  EXPECT_TRUE(ws.advance_event_time(now + 50, 0).empty());
  auto closed = ws.close_due(now + 50 + 2000);  // quiet passed: nothing left to wait for
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].messages[1].media, MediaState::kStored);
  EXPECT_FALSE(ws.oldest_media_offset().has_value());
}

TEST(AggregatorTurn, JoinsConsecutiveTextsKeepsMediaAndRepliesInPlace) {
  Config joined;
  joined.join_media = true;
  WindowSet ws(joined);
  ws.add(text("a", "1", 0, "Hi"), 10);
  ws.add(text("a", "2", 100, "I was charged twice"), 11);
  ws.add(of_type("a", "3", 200, "image",
                 {{"id", "m1"}, {"mime_type", "image/jpeg"}, {"caption", "the receipt"}}),
         12);
  auto reply = text("a", "4", 300, "this one");
  reply.raw["context"] = {{"from", "15550783881"}, {"id", "wamid.earlier"}};
  ws.add(reply, 13);
  ws.add(text("a", "5", 400, "order 5521"), 14);
  ws.add(of_type("a", "6", 500, "location", {{"latitude", 38.7}, {"longitude", -9.1}}), 15);
  ws.media_result("106540352242922:a", "3", true, {{"uri", "file:///x"}});
  auto closed = ws.close_due(10000);
  ASSERT_EQ(closed.size(), 1u);
  auto turn = build_turn(closed[0], ws.config(), 7, 10000);
  const auto& items = turn["items"];
  ASSERT_EQ(items.size(), 5u);
  EXPECT_EQ(items[0]["kind"], "text");
  EXPECT_EQ(items[0]["text"], "Hi\nI was charged twice");
  EXPECT_EQ(items[0]["message_ids"], nlohmann::json({"1", "2"}));
  EXPECT_EQ(items[1]["kind"], "image");
  EXPECT_EQ(items[1]["caption"], "the receipt");
  EXPECT_EQ(items[1]["media"]["status"], "stored");
  EXPECT_EQ(items[1]["media"]["uri"], "file:///x");
  EXPECT_EQ(items[2]["text"], "this one");
  EXPECT_EQ(items[2]["context"]["id"], "wamid.earlier");
  EXPECT_EQ(items[3]["text"], "order 5521");  // not merged into a reply
  EXPECT_EQ(items[4]["kind"], "location");
  EXPECT_EQ(turn["message_ids"], nlohmann::json({"1", "2", "3", "4", "5", "6"}));
  EXPECT_EQ(turn["messages"].size(), 6u);
  EXPECT_EQ(turn["partition"], 7);
  EXPECT_EQ(turn["first_offset"], 10);
  EXPECT_EQ(turn["last_offset"], 15);
  EXPECT_EQ(turn["turn_id"].get<std::string>().size(), 32u);
}

TEST(AggregatorTurn, OrderIsKafkaOffsetNotTheOneSecondTimestamp) {
  WindowSet ws(Config{});
  // Same WhatsApp second, same event-time millisecond: the offset decides.
  ws.add(text("a", "second", 0, "B"), 21);
  ws.add(text("a", "first", 0, "A"), 20);
  auto closed = ws.close_due(5000);
  auto turn = build_turn(closed[0], ws.config(), 0, 5000);
  EXPECT_EQ(turn["items"][0]["text"], "A\nB");
}

TEST(AggregatorTurn, ReactionsAndStickersCanBeDroppedButTheirIdsStay) {
  Config c;
  c.keep_reactions = false;
  c.keep_stickers = false;
  WindowSet ws(c);
  ws.add(text("a", "1", 0, "hi"), 0);
  ws.add(of_type("a", "2", 10, "reaction", {{"message_id", "wamid.x"}, {"emoji", "👍"}}), 1);
  ws.add(of_type("a", "3", 20, "sticker", {{"id", "s1"}, {"mime_type", "image/webp"}}), 2);
  ws.media_result("106540352242922:a", "3", true, {});
  auto closed = ws.close_due(10000);
  auto turn = build_turn(closed[0], c, 0, 10000);
  ASSERT_EQ(turn["items"].size(), 1u);
  EXPECT_EQ(turn["message_ids"].size(), 3u);
  EXPECT_EQ(turn["dropped_message_ids"], nlohmann::json({"2", "3"}));

  WindowSet keep(Config{});
  keep.add(of_type("a", "9", 0, "reaction", {{"message_id", "wamid.x"}, {"emoji", "👍"}}), 0);
  auto kept = build_turn(keep.close_due(10000)[0], Config{}, 0, 10000);
  EXPECT_EQ(kept["items"][0]["kind"], "reaction");
  EXPECT_EQ(kept["items"][0]["target_message_id"], "wamid.x");
}

TEST(AggregatorTurn, EveryFixtureMessageBecomesAnItemWithNothingLost) {
  auto names = test::fixture_names("pywa_inbound_");
  auto meta = test::fixture_names("meta_inbound_");
  names.insert(names.end(), meta.begin(), meta.end());
  WindowSet ws(Config{});
  int64_t offset = 0;
  size_t messages = 0;
  for (const auto& name : names) {
    auto events = receiver::parse_meta_webhook(test::fixture(name), {"meta", 0, "t"});
    ASSERT_TRUE(events.has_value()) << name;
    for (auto& e : *events) {
      if (e.kind != EventKind::kMessage) {
        continue;
      }
      e.conversation_key = "one:conversation";  // all into one window, for the test
      e.event_id += ":" + std::to_string(offset);
      ws.add(e, offset++);
      ++messages;
    }
  }
  auto closed = ws.close_due(1000000);
  ASSERT_GE(closed.size(), 1u);
  size_t seen = 0;
  for (const auto& w : closed) {
    auto turn = build_turn(w, Config{}, 0, 1000000);
    seen += turn["messages"].size();
    for (const auto& item : turn["items"]) {
      EXPECT_TRUE(item.contains("kind"));
    }
  }
  EXPECT_EQ(seen, messages);
}

// Property: for random interleaved bursts, every message is in exactly one turn, turns keep
// offset order, a burst (gaps < Q, span < MAX) is exactly one turn, and a replay of the same
// records gives the same turns.
TEST(AggregatorProperty, RandomBurstsBecomeExactlyTheirTurns) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 20; ++round) {
    Config c;  // Q = 2 s, MAX = 10 s
    struct Msg {
      WebhookEvent e;
      int burst;
    };
    std::vector<Msg> msgs;
    int burst_id = 0;
    for (int person = 0; person < 30; ++person) {
      int64_t t = std::uniform_int_distribution<int>(0, 5000)(rng);
      const int bursts = std::uniform_int_distribution<int>(1, 4)(rng);
      for (int b = 0; b < bursts; ++b, ++burst_id) {
        const int n = std::uniform_int_distribution<int>(1, 6)(rng);
        for (int k = 0; k < n; ++k) {
          const std::string id = "p" + std::to_string(person) + "b" + std::to_string(b) + "m" +
                                 std::to_string(k);
          msgs.push_back({text("p" + std::to_string(person), id, t, id), burst_id});
          t += std::uniform_int_distribution<int>(0, 1500)(rng);  // < Q inside a burst
        }
        t += 2000 + std::uniform_int_distribution<int>(0, 8000)(rng);  // >= Q between bursts
      }
    }
    std::stable_sort(msgs.begin(), msgs.end(), [](const Msg& a, const Msg& b) {
      return a.e.received_at_ms < b.e.received_at_ms;
    });
    auto run = [&] {
      WindowSet ws(c);
      std::vector<nlohmann::json> turns;
      int64_t offset = 0;
      for (const auto& m : msgs) {
        for (auto& w : ws.close_due(m.e.received_at_ms - 1)) {  // the timer, as time passes
          turns.push_back(build_turn(w, c, 0, m.e.received_at_ms));
        }
        for (auto& w : ws.add(m.e, offset++)) {
          turns.push_back(build_turn(w, c, 0, m.e.received_at_ms));
        }
      }
      for (auto& w : ws.close_due(INT64_MAX)) {
        turns.push_back(build_turn(w, c, 0, 0));
      }
      return turns;
    };
    auto turns = run();
    // The worker's way: no clock at all, event time of the records closes windows.
    auto by_event_time = [&] {
      WindowSet ws(c);
      std::vector<nlohmann::json> out;
      int64_t offset = 0;
      for (const auto& m : msgs) {
        for (auto& w : ws.add(m.e, offset++)) {
          out.push_back(build_turn(w, c, 0, 0));
        }
        for (auto& w : ws.advance_event_time(m.e.received_at_ms, 50)) {
          out.push_back(build_turn(w, c, 0, 0));
        }
      }
      for (auto& w : ws.close_due(INT64_MAX)) {
        out.push_back(build_turn(w, c, 0, 0));
      }
      return out;
    }();
    std::set<std::string> clock_ids;
    std::set<std::string> event_ids;
    for (const auto& t : turns) {
      clock_ids.insert(t["turn_id"]);
    }
    for (const auto& t : by_event_time) {
      event_ids.insert(t["turn_id"]);
    }
    EXPECT_EQ(clock_ids, event_ids);
    std::map<std::string, int> burst_of;
    for (const auto& m : msgs) {
      burst_of[m.e.message_id] = m.burst;
    }
    std::set<std::string> seen;
    std::set<std::string> turn_ids;
    for (const auto& t : turns) {
      EXPECT_TRUE(turn_ids.insert(t["turn_id"]).second);
      const auto& ids = t["message_ids"];
      ASSERT_FALSE(ids.empty());
      const int burst = burst_of[ids[0]];
      for (const auto& id : ids) {
        EXPECT_TRUE(seen.insert(id).second) << "message in two turns: " << id;
        EXPECT_EQ(burst_of[id], burst) << "turn mixes bursts";
      }
    }
    EXPECT_EQ(seen.size(), msgs.size());
    EXPECT_EQ(static_cast<int>(turns.size()), burst_id);  // one turn per burst, exactly
    auto again = run();
    ASSERT_EQ(again.size(), turns.size());
    for (size_t i = 0; i < turns.size(); ++i) {
      EXPECT_EQ(again[i]["turn_id"], turns[i]["turn_id"]);
      EXPECT_EQ(again[i]["items"], turns[i]["items"]);
    }
  }
}

}  // namespace
}  // namespace wafleet::aggregator
