#include "common/dead_letter.h"

#include <set>

#include <gtest/gtest.h>

#include "workers/replay/replay.h"

namespace wafleet {
namespace {

kafka::Record inbound_record() {
  kafka::Record r;
  r.topic = "wa.inbound";
  r.partition = 7;
  r.offset = 4211;
  r.key = "106540352242922:15551230001";
  r.value = R"({"kind":"message"})";
  r.timestamp_ms = 1795340000000;
  r.headers = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
               {"source", "meta"},
               {dlq::kReplayCountHeader, "2"}};
  return r;
}

TEST(DeadLetter, EveryHeaderOfTheFormatIsWrittenAndReadBack) {
  const auto d = dlq::describe(inbound_record(), "wafleet-media", "media", "handle",
                               Error::transient("graph: HTTP 503"), 5, 1795340001000,
                               1795340009000);
  const auto headers = dlq::to_headers(d);
  std::set<std::string> names;
  for (const auto& [k, v] : headers) {
    names.insert(k);
  }
  for (const char* required :
       {"dlq.original.topic", "dlq.original.partition", "dlq.original.offset",
        "dlq.original.timestamp.ms", "dlq.original.key", "dlq.original.group", "dlq.worker",
        "dlq.stage", "dlq.error.class", "dlq.error.message", "dlq.attempts",
        "dlq.first.failure.ms", "dlq.last.failure.ms", "dlq.trace.id", "dlq.replay.count",
        "traceparent", "dlq.original.header.source", "dlq.original.header.traceparent"}) {
    EXPECT_TRUE(names.count(required)) << required;
  }
  auto back = dlq::from_headers(headers);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->original_topic, "wa.inbound");
  EXPECT_EQ(back->original_partition, 7);
  EXPECT_EQ(back->original_offset, 4211);
  EXPECT_EQ(back->original_timestamp_ms, 1795340000000);
  EXPECT_EQ(back->original_key, "106540352242922:15551230001");
  EXPECT_EQ(back->group, "wafleet-media");
  EXPECT_EQ(back->worker, "media");
  EXPECT_EQ(back->stage, "handle");
  EXPECT_EQ(back->error_class, "transient");
  EXPECT_EQ(back->error_message, "graph: HTTP 503");
  EXPECT_EQ(back->attempts, 5);
  EXPECT_EQ(back->first_failure_ms, 1795340001000);
  EXPECT_EQ(back->last_failure_ms, 1795340009000);
  EXPECT_EQ(back->trace_id, "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(back->replay_count, 2);  // carried on from the replayed record
  ASSERT_EQ(back->original_headers.size(), 3u);
  EXPECT_EQ(back->original_headers[1], (std::pair<std::string, std::string>{"source", "meta"}));
}

TEST(DeadLetter, AReplayRestoresTheOriginalHeadersAndCountsOneMore) {
  const auto d = dlq::describe(inbound_record(), "g", "aggregator", "decode",
                               Error::invalid("value is not JSON"), 1, 1, 2);
  replay::Entry e{kafka::Record{}, d};
  e.record.topic = "wa.dlq";
  e.record.partition = 1;
  e.record.offset = 99;
  const auto h = replay::Replayer::replay_headers(e, "wa.dlq");
  std::map<std::string, std::string> m(h.begin(), h.end());
  EXPECT_EQ(m.size(), h.size()) << "no header twice";
  EXPECT_EQ(m["source"], "meta");
  EXPECT_EQ(m["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(m[dlq::kReplayCountHeader], "3");
  EXPECT_EQ(m[dlq::kReplayOfHeader], "wa.dlq:1:99");
  for (const auto& [k, v] : h) {
    EXPECT_NE(k.rfind("dlq.", 0), 0u) << "a replayed record carries no dead-letter context: " << k;
  }
}

TEST(DeadLetter, RecordsWithoutContextOrWithBadNumbersAreNamed) {
  auto none = dlq::from_headers({{"traceparent", "x"}});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().find("dlq.original.topic"), std::string::npos);
  auto d = dlq::to_headers(dlq::describe(inbound_record(), "g", "media", "handle",
                                         Error::permanent("x"), 1, 1, 2));
  for (auto& [k, v] : d) {
    if (k == "dlq.original.offset") {
      v = "12a";
    }
  }
  auto bad = dlq::from_headers(d);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("dlq.original.offset"), std::string::npos) << bad.error();
}

TEST(ReplayFilter, EveryFilterNarrowsAndTheyCompose) {
  dlq::DeadLetter d;
  d.original_topic = "wa.inbound";
  d.original_offset = 50;
  d.original_key = "k1";
  d.worker = "media";
  d.error_class = "transient";
  d.last_failure_ms = 1000;
  replay::Filter f;
  EXPECT_TRUE(f.empty());
  EXPECT_TRUE(f.matches(d));
  f.workers = {"media", "sender"};
  f.error_classes = {"transient"};
  f.topics = {"wa.inbound"};
  f.key = "k1";
  f.from_offset = 50;
  f.to_offset = 50;
  f.since_ms = 1000;
  f.until_ms = 1001;
  EXPECT_FALSE(f.empty());
  EXPECT_TRUE(f.matches(d));
  auto miss = [&](auto change) {
    replay::Filter g = f;
    change(g);
    return !g.matches(d);
  };
  EXPECT_TRUE(miss([](replay::Filter& g) { g.workers = {"aggregator"}; }));
  EXPECT_TRUE(miss([](replay::Filter& g) { g.error_classes = {"invalid_input"}; }));
  EXPECT_TRUE(miss([](replay::Filter& g) { g.topics = {"wa.outbound"}; }));
  EXPECT_TRUE(miss([](replay::Filter& g) { g.key = "k2"; }));
  EXPECT_TRUE(miss([](replay::Filter& g) { g.from_offset = 51; }));
  EXPECT_TRUE(miss([](replay::Filter& g) { g.to_offset = 49; }));
  EXPECT_TRUE(miss([](replay::Filter& g) { g.since_ms = 1001; }));
  EXPECT_TRUE(miss([](replay::Filter& g) { g.until_ms = 1000; }));
  EXPECT_EQ(f.to_json()["worker"], nlohmann::json({"media", "sender"}));
}

TEST(ReplayFilter, TimesAreDurationsAgoEpochMillisecondsOrIsoUtc) {
  const int64_t now = 1795340000000;
  EXPECT_EQ(*replay::parse_time("90s", now), now - 90000);
  EXPECT_EQ(*replay::parse_time("30m", now), now - 1800000);
  EXPECT_EQ(*replay::parse_time("2h", now), now - 7200000);
  EXPECT_EQ(*replay::parse_time("7d", now), now - 7 * 86400000LL);
  EXPECT_EQ(*replay::parse_time("1795339000000", now), 1795339000000);
  EXPECT_EQ(*replay::parse_time("2026-11-22T10:00:00Z", now), 1795341600000);
  auto bad = replay::parse_time("yesterday", now);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("30m/2h/7d"), std::string::npos);
}

}  // namespace
}  // namespace wafleet
