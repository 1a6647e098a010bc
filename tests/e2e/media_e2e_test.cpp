// Media end to end, binaries as processes: the Graph API emulator, the receiver, the media
// worker and the aggregator on the dev broker and a real redis-server. A burst of text, three
// photos and a voice note must become ONE turn with every item stored and the transcript there.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/http_client.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

const std::string kBin = WAFLEET_BIN_DIR;

class MediaE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("wafleet-media-e2e");
    broker_ = std::make_unique<test::Process>(
        kBin + "/wafleet-devbroker",
        std::vector<std::string>{"--bootstrap-file", dir_ + "/bootstrap"},
        std::map<std::string, std::string>{}, dir_ + "/devbroker.log");
    emulator_ = std::make_unique<test::Process>(
        kBin + "/wafleet-graph-emulator",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--port-file", dir_ + "/emu-port"},
        std::map<std::string, std::string>{{"WAFLEET_ACCESS_TOKEN", "e2e-token"}},
        dir_ + "/emulator.log");
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/bootstrap").empty(); }));
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/emu-port").empty(); }));
    brokers_ = test::read_trimmed(dir_ + "/bootstrap");
    graph_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/emu-port");
    env_ = {{"WAFLEET_KAFKA_BROKERS", brokers_},
            {"WAFLEET_REDIS_URL", redis_.url()},
            {"WAFLEET_APP_SECRET", "media-secret"},
            {"WAFLEET_ACCESS_TOKEN", "e2e-token"}};
    receiver_ = std::make_unique<test::Process>(
        kBin + "/wafleet-receiver",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--port-file", dir_ + "/port"}, env_,
        dir_ + "/receiver.log");
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/port").empty(); }));
    url_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/port") + "/webhook";
    start_media();
    aggregator_ = std::make_unique<test::Process>(
        kBin + "/wafleet-aggregator",
        std::vector<std::string>{"--quiet-ms", "500", "--max-ms", "5000", "--media-wait-ms",
                                 "20000", "--max-messages", "200", "--admin-port-file", dir_ + "/aggregator-admin"},
        env_, dir_ + "/aggregator.log");
    // Webhooks sent before both groups hold partitions would wait out the media wait.
    ASSERT_TRUE(test::wait_ready(dir_ + "/aggregator-admin")) << aggregator_->log();
    ASSERT_TRUE(test::wait_ready(dir_ + "/media-admin")) << media_->log();
  }

  void start_media() {
    std::filesystem::remove(dir_ + "/media-admin");  // a restart writes its own port
    media_ = std::make_unique<test::Process>(
        kBin + "/wafleet-media",
        std::vector<std::string>{"--graph-base", graph_, "--storage-dir", dir_ + "/store",
                                 "--transcribe-url", graph_ + "/v1/audio/transcriptions",
                                 "--backoff-ms", "200", "--admin-port-file", dir_ + "/media-admin"},
        env_, dir_ + "/media-" + std::to_string(media_starts_++) + ".log");
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "--- media worker\n" << media_->log() << "--- aggregator\n"
                << aggregator_->log();
    }
    aggregator_->stop();
    media_->stop();
    receiver_->stop();
    emulator_->stop();
    broker_->stop();
  }

  nlohmann::json admin(const std::string& what, const nlohmann::json& body) {
    auto r = http::fetch("POST", graph_ + "/_emulator/" + what,
                         {{"Content-Type", "application/json"}}, body.dump(),
                         std::chrono::seconds(10));
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
    return r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
  }

  void send(const std::string& pnid, const nlohmann::json& message) {
    nlohmann::json value = {
        {"messaging_product", "whatsapp"},
        {"metadata", {{"display_phone_number", "15550001111"}, {"phone_number_id", pnid}}},
        {"contacts", {{{"profile", {{"name", "Ana"}}}, {"wa_id", message["from"]}}}},
        {"messages", {message}}};
    nlohmann::json body = {
        {"object", "whatsapp_business_account"},
        {"entry", {{{"id", "1"}, {"changes", {{{"value", value}, {"field", "messages"}}}}}}}};
    const std::string raw = body.dump();
    auto r = http::fetch("POST", url_,
                         {{"Content-Type", "application/json"},
                          {"X-Hub-Signature-256",
                           "sha256=" + crypto::hmac_sha256_hex("media-secret", raw)}},
                         raw, std::chrono::seconds(10));
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
  }

  nlohmann::json media_message(const std::string& from, const std::string& id,
                               const std::string& type, const nlohmann::json& desc,
                               const std::string& mime) {
    nlohmann::json m = {{"id", desc["id"]}, {"mime_type", mime}, {"sha256", desc["sha256_base64"]}};
    if (type == "audio") {
      m["voice"] = true;
    } else {
      m["caption"] = "photo " + id;
    }
    return {{"from", from}, {"id", id}, {"timestamp", "1750000000"}, {"type", type}, {type, m}};
  }

  std::vector<nlohmann::json> turns_for(const std::string& pnid, size_t want) {
    std::vector<nlohmann::json> mine;
    test::consume_until(
        brokers_, {topics::kTurns},
        [&](const std::vector<kafka::Record>& rs) {
          mine.clear();
          for (const auto& r : rs) {
            auto v = nlohmann::json::parse(r.value, nullptr, false);
            if (!v.is_discarded() && v.value("phone_number_id", "") == pnid) {
              mine.push_back(v);
            }
          }
          return mine.size() >= want;
        },
        std::chrono::seconds(60));
    return mine;
  }

  // The burst: text, three photos, a voice note. Returns the message ids in order.
  std::vector<std::string> send_burst(const std::string& pnid, const std::string& from) {
    std::vector<std::string> ids;
    const std::string p = pnid + "." + from;
    send(pnid, {{"from", from}, {"id", "wamid.t." + p}, {"timestamp", "1750000000"},
                {"type", "text"}, {"text", {{"body", "I was charged twice"}}}});
    ids.push_back("wamid.t." + p);
    for (int i = 0; i < 3; ++i) {
      const std::string id = "wamid.p" + std::to_string(i) + "." + p;
      auto desc = admin("media", {{"id", "img-" + std::to_string(i) + "-" + p},
                                  {"mime_type", "image/jpeg"},
                                  {"size", 200000 + i},
                                  {"seed", i + 1}});
      send(pnid, media_message(from, id, "image", desc, "image/jpeg"));
      ids.push_back(id);
    }
    auto voice = admin("media", {{"id", "voice-" + p},
                                 {"mime_type", "audio/ogg"},
                                 {"size", 30000},
                                 {"seed", 42},
                                 {"transcript", "order 5521, please refund"}});
    send(pnid, media_message(from, "wamid.v." + p, "audio", voice, "audio/ogg; codecs=opus"));
    ids.push_back("wamid.v." + p);
    return ids;
  }

  void expect_one_complete_turn(const std::vector<nlohmann::json>& turns,
                                const std::vector<std::string>& ids) {
    std::set<std::string> distinct;
    for (const auto& t : turns) {
      distinct.insert(t["turn_id"].get<std::string>());
    }
    ASSERT_EQ(distinct.size(), 1u) << "the burst was split";
    const auto& t = turns.front();
    EXPECT_EQ(t["message_ids"].get<std::vector<std::string>>(), ids);
    const auto& items = t["items"];
    ASSERT_EQ(items.size(), 5u) << t.dump(2);
    EXPECT_EQ(items[0]["text"], "I was charged twice");
    for (int i = 1; i <= 4; ++i) {
      const auto& m = items[i]["media"];
      EXPECT_EQ(m["status"], "stored") << items[i].dump(2);
      const std::string uri = m.value("storage_uri", "");
      ASSERT_TRUE(uri.starts_with("file://")) << items[i].dump(2);
      EXPECT_TRUE(std::filesystem::exists(uri.substr(7))) << uri;
    }
    EXPECT_EQ(items[1]["caption"], "photo " + ids[1]);
    EXPECT_EQ(items[4]["media"]["transcript"], "order 5521, please refund");
    EXPECT_EQ(items[4]["voice"], true);
  }

  size_t stored_files() {
    size_t n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir_ + "/store/sha256")) {
      n += e.is_regular_file() ? 1 : 0;
    }
    return n;
  }

  std::string dir_;
  test::RedisServer redis_;
  std::unique_ptr<test::Process> broker_;
  std::unique_ptr<test::Process> emulator_;
  std::unique_ptr<test::Process> receiver_;
  std::unique_ptr<test::Process> media_;
  std::unique_ptr<test::Process> aggregator_;
  std::map<std::string, std::string> env_;
  std::string brokers_;
  std::string graph_;
  std::string url_;
  int media_starts_ = 0;
};

TEST_F(MediaE2E, TextThreePhotosAndAVoiceNoteBecomeOneTurnWithEverythingStored) {
  const std::string pnid = "9" + std::to_string(100000 + std::rand() % 800000);
  auto ids = send_burst(pnid, "15550102001");
  expect_one_complete_turn(turns_for(pnid, 1), ids);
  EXPECT_EQ(stored_files(), 4u);
}

TEST_F(MediaE2E, MediaWorkerKilledMidDownloadStoresEverythingOnce) {
  const std::string pnid = "8" + std::to_string(100000 + std::rand() % 800000);
  // Every download answers after 1.5 s: the worker is killed while one is in flight.
  admin("faults", {{"endpoint", "download"}, {"times", 2}, {"latency_ms", 1500}});
  auto ids = send_burst(pnid, "15550102002");
  ASSERT_TRUE(test::eventually([&] {
    for (const auto& c : nlohmann::json::parse(
             http::fetch("GET", graph_ + "/_emulator/calls", {}, "", std::chrono::seconds(5))
                 ->body)) {
      if (c["path"].get<std::string>().starts_with("/media/")) {
        return true;
      }
    }
    return false;
  }));
  media_->kill9();
  start_media();
  ASSERT_TRUE(test::wait_ready(dir_ + "/media-admin")) << media_->log();
  expect_one_complete_turn(turns_for(pnid, 1), ids);
  EXPECT_EQ(stored_files(), 4u) << "a file was stored twice";
}

// A slow photo (the media worker restarted mid-download, stored past max-ms) while the person
// keeps typing: the photo holds its turn back but moves no message. The burst is cut where it
// would be without the photo (max-ms, or a quiet gap), the held turn comes out first once the
// photo is stored, and the turns after it follow in order.
TEST_F(MediaE2E, APhotoStoredMidBurstAfterARestartMovesNoMessageBetweenTurns) {
  const std::string pnid = "6" + std::to_string(100000 + std::rand() % 800000);
  const std::string from = "15550102004";
  admin("faults", {{"endpoint", "download"}, {"times", 2}, {"latency_ms", 2500}});
  auto desc = admin("media", {{"id", "img-slow-" + pnid}, {"mime_type", "image/jpeg"},
                              {"size", 120000}, {"seed", 5}});
  std::vector<std::string> ids = {"wamid.p.slow." + pnid};
  const int64_t photo_sent_ms = wall_clock_ms();
  send(pnid, media_message(from, ids[0], "image", desc, "image/jpeg"));
  auto download_started = [&] {
    auto calls = http::fetch("GET", graph_ + "/_emulator/calls", {}, "", std::chrono::seconds(5));
    for (const auto& c : nlohmann::json::parse(calls->body)) {
      if (c["path"].get<std::string>().starts_with("/media/")) {
        return true;
      }
    }
    return false;
  };
  bool restarted = false;
  int64_t stored_seen_ms = 0;
  // Typing every 300 ms until 2 s after the photo is stored: longer than max-ms (5 s), and
  // shorter than the media wait (20 s).
  for (int i = 0; wall_clock_ms() - photo_sent_ms < 18000; ++i) {
    if (!restarted && download_started()) {
      media_->kill9();  // mid-download: the record is redelivered to the restarted worker
      start_media();
      restarted = true;
    }
    if (stored_seen_ms == 0 && std::filesystem::exists(dir_ + "/store/sha256") &&
        stored_files() > 0) {
      stored_seen_ms = wall_clock_ms();
    }
    if (stored_seen_ms > 0 && wall_clock_ms() - stored_seen_ms > 2000) {
      break;
    }
    const std::string id = "wamid.t" + std::to_string(i) + "." + pnid;
    send(pnid, {{"from", from}, {"id", id}, {"timestamp", "1750000000"}, {"type", "text"},
                {"text", {{"body", "line " + std::to_string(i)}}}});
    ids.push_back(id);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  ASSERT_GT(stored_seen_ms, 0) << "the photo was not stored within the burst";
  ASSERT_TRUE(restarted) << "the download never started";
  // Wait for the turn holding the last message; then every turn of this person is known.
  std::vector<nlohmann::json> turns;
  test::consume_until(
      brokers_, {topics::kTurns},
      [&](const std::vector<kafka::Record>& rs) {
        turns.clear();
        bool last_seen = false;
        for (const auto& r : rs) {
          auto v = nlohmann::json::parse(r.value, nullptr, false);
          if (!v.is_discarded() && v.value("phone_number_id", "") == pnid) {
            turns.push_back(v);
            const auto m = v["message_ids"].get<std::vector<std::string>>();
            last_seen = last_seen || std::find(m.begin(), m.end(), ids.back()) != m.end();
          }
        }
        return last_seen;
      },
      std::chrono::seconds(60));
  // Every message once, in the order sent, across turns in the order they were emitted.
  std::vector<std::string> emitted;
  for (const auto& t : turns) {
    for (const auto& id : t["message_ids"]) {
      emitted.push_back(id.get<std::string>());
    }
  }
  ASSERT_EQ(emitted, ids);
  ASSERT_GE(turns.size(), 2u) << "18 s of typing with max-ms 5 s is more than one turn";
  for (size_t i = 0; i + 1 < turns.size(); ++i) {
    const auto& w = turns[i]["window"];
    const auto& next = turns[i + 1]["window"];
    EXPECT_LE(w["due_at_ms"].get<int64_t>() - w["opened_at_ms"].get<int64_t>(), 5000)
        << "turn " << i << " ran past max-ms";
    EXPECT_GE(next["opened_at_ms"].get<int64_t>(), w["due_at_ms"].get<int64_t>())
        << "turn " << i + 1 << " began before turn " << i << " was due: a cut not at the caps";
  }
  const auto& photo = turns[0]["items"][0]["media"];
  EXPECT_EQ(photo["status"], "stored") << photo.dump();
  const int64_t stored_at = photo.value("at_ms", int64_t{0});
  EXPECT_GT(stored_at - photo_sent_ms, 5000) << "stored before max-ms: the hold was not exercised";
  EXPECT_GE(turns[0]["window"]["closed_at_ms"].get<int64_t>(), stored_at)
      << "the photo's turn was emitted before the photo was stored";
}

TEST_F(MediaE2E, MediaThatCannotBeFetchedIsMarkedFailedInTheTurnAndDeadLettered) {
  const std::string pnid = "7" + std::to_string(100000 + std::rand() % 800000);
  const std::string from = "15550102003";
  send(pnid, {{"from", from}, {"id", "wamid.t.gone." + pnid}, {"timestamp", "1750000000"},
              {"type", "text"}, {"text", {{"body", "here is the receipt"}}}});
  // Meta no longer has this media id (they expire after 7 days): a permanent Graph error 100.
  nlohmann::json gone = {{"id", "no-such-media-" + pnid}, {"sha256_base64", ""}};
  send(pnid, media_message(from, "wamid.p.gone." + pnid, "image", gone, "image/jpeg"));
  auto turns = turns_for(pnid, 1);
  ASSERT_EQ(turns.size(), 1u);
  const auto& items = turns[0]["items"];
  ASSERT_EQ(items.size(), 2u) << turns[0].dump(2);
  EXPECT_EQ(items[1]["media"]["status"], "failed");
  EXPECT_NE(items[1]["media"].value("reason", "").find("Graph error 100"), std::string::npos)
      << items[1].dump(2);
  // The message itself is in the DLQ for a replay, with the media worker's headers.
  auto dlq = test::consume_until(brokers_, {topics::kDlq}, [&](const auto& rs) {
    for (const auto& r : rs) {
      if (r.value.find("wamid.p.gone." + pnid) != std::string::npos) {
        return true;
      }
    }
    return false;
  });
  const kafka::Record* dead = nullptr;
  for (const auto& r : dlq) {
    if (r.value.find("wamid.p.gone." + pnid) != std::string::npos) {
      dead = &r;
    }
  }
  ASSERT_NE(dead, nullptr);
  EXPECT_EQ(dead->header("dlq.worker"), "media");
  EXPECT_EQ(dead->header("dlq.original.topic"), topics::kInbound);
  EXPECT_EQ(dead->header("dlq.error.class"), "permanent");
}

}  // namespace
}  // namespace wafleet
