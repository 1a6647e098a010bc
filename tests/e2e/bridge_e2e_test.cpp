// The agent bridge end to end, binaries as processes: receiver, aggregator, media worker, sender
// and bridge on the dev broker and a real redis-server, the Graph API emulator as Meta and as an
// OpenAI-compatible agent. What a person gets on WhatsApp is what the emulator's /messages saw.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <filesystem>
#include <iostream>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "common/kafka.h"
#include "common/consumer_loop.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

using Json = nlohmann::json;
const std::string kBin = WAFLEET_BIN_DIR;

// Meta's message timestamp: the sender's 24-hour window runs from it.
std::string now_s() { return std::to_string(wall_clock_ms() / 1000); }

class BridgeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("wafleet-bridge-e2e");
    broker_ = std::make_unique<test::Process>(
        kBin + "/wafleet-devbroker", std::vector<std::string>{"--bootstrap-file", dir_ + "/bootstrap"},
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
            {"WAFLEET_APP_SECRET", "bridge-secret"},
            {"WAFLEET_ACCESS_TOKEN", "e2e-token"}};
    start("receiver", {"--listen", "127.0.0.1:0", "--port-file", dir_ + "/port"});
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/port").empty(); }));
    url_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/port") + "/webhook";
    start("aggregator", {"--quiet-ms", "600", "--max-ms", "5000", "--media-wait-ms", "15000"});
    start("media", {"--graph-base", graph_, "--storage-dir", dir_ + "/store", "--transcribe-url",
                    graph_ + "/v1/audio/transcriptions", "--backoff-ms", "200"});
    // Limits well above the test's traffic: what is measured here is the bridge, not pacing.
    start("sender", {"--graph-base", graph_, "--number-rate", "1000", "--number-burst", "1000",
                     "--pair-interval-ms", "10", "--pair-burst", "100"});
    start_bridge();
    for (const char* w : {"aggregator", "media", "sender"}) {
      ASSERT_TRUE(test::wait_ready(dir_ + "/" + w + "-admin")) << processes_[w]->log();
    }
    ASSERT_TRUE(test::wait_ready(dir_ + "/bridge-admin")) << processes_["bridge"]->log();
    // The sender's second group (24-hour windows from wa.inbound) joins alongside its first; a
    // reply it sees before then is refused as outside the window.
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }

  void start(const std::string& name, std::vector<std::string> args,
             std::map<std::string, std::string> extra = {}) {
    std::filesystem::remove(dir_ + "/" + name + "-admin");
    args.push_back("--admin-port-file");
    args.push_back(dir_ + "/" + name + "-admin");
    auto env = env_;
    for (auto& [k, v] : extra) {
      env[k] = v;
    }
    processes_[name] = std::make_unique<test::Process>(
        kBin + "/wafleet-" + name, args, env,
        dir_ + "/" + name + "-" + std::to_string(starts_[name]++) + ".log");
  }

  void start_bridge() {
    start("bridge", {"--agent", "openai", "--agent-url", graph_ + "/v1", "--agent-model", "emu",
                     "--agent-timeout-ms", "4000", "--agent-backoff-ms", "100",
                     "--handoff-after-failures", "2", "--ack-reaction", "\xf0\x9f\x91\x8d"});
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const char* w : {"bridge", "sender", "aggregator"}) {
        std::cerr << "--- " << w << "\n" << processes_[w]->log().substr(0, 20000);
      }
    }
    for (const char* w : {"bridge", "sender", "media", "aggregator", "receiver"}) {
      processes_[w]->stop();
    }
    emulator_->stop();
    broker_->stop();
  }

  Json admin(const std::string& what, const Json& body) {
    auto r = http::fetch("POST", graph_ + "/_emulator/" + what, {{"Content-Type", "application/json"}},
                         body.dump(), std::chrono::seconds(10));
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
    return r ? Json::parse(r->body, nullptr, false) : Json();
  }

  void send(const std::string& pnid, const Json& message) {
    Json value = {{"messaging_product", "whatsapp"},
                  {"metadata", {{"display_phone_number", "15550001111"}, {"phone_number_id", pnid}}},
                  {"contacts", {{{"profile", {{"name", "Ana"}}}, {"wa_id", message["from"]}}}},
                  {"messages", {message}}};
    Json body = {{"object", "whatsapp_business_account"},
                 {"entry", {{{"id", "1"}, {"changes", {{{"value", value}, {"field", "messages"}}}}}}}};
    const std::string raw = body.dump();
    auto r = http::fetch("POST", url_,
                         {{"Content-Type", "application/json"},
                          {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("bridge-secret", raw)}},
                         raw, std::chrono::seconds(10));
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
  }
  void text(const std::string& pnid, const std::string& from, const std::string& id,
            const std::string& body) {
    send(pnid, {{"from", from}, {"id", id}, {"timestamp", now_s()}, {"type", "text"},
                {"text", {{"body", body}}}});
  }

  // What Meta (the emulator) was asked to deliver to this number, in order.
  std::vector<Json> delivered(const std::string& pnid, const std::string& type = "text") {
    std::vector<Json> out;
    auto calls = http::fetch("GET", graph_ + "/_emulator/calls", {}, "", std::chrono::seconds(10));
    if (!calls) {
      return out;
    }
    for (const auto& c : Json::parse(calls->body)) {
      if (c["path"] == "/v22.0/" + pnid + "/messages" && c["status"] == 200 &&
          c["body"].value("type", "") == type) {
        out.push_back(c["body"]);
      }
    }
    return out;
  }
  std::vector<Json> chat_calls() {
    std::vector<Json> out;
    auto calls = http::fetch("GET", graph_ + "/_emulator/calls", {}, "", std::chrono::seconds(10));
    for (const auto& c : Json::parse(calls->body)) {
      if (c["path"] == "/v1/chat/completions") {
        out.push_back(c);
      }
    }
    return out;
  }
  std::vector<Json> topic(const std::string& name, const std::function<bool(const std::vector<Json>&)>& enough,
                          std::chrono::seconds timeout = std::chrono::seconds(30)) {
    std::vector<Json> out;
    test::consume_until(
        brokers_, {name},
        [&](const std::vector<kafka::Record>& rs) {
          out.clear();
          for (const auto& r : rs) {
            out.push_back(Json::parse(r.value, nullptr, false));
          }
          return enough(out);
        },
        timeout);
    return out;
  }
  int run_cli(const std::string& args, std::string& out) {
    return test::run_command("WAFLEET_KAFKA_BROKERS=" + brokers_ + " WAFLEET_REDIS_URL=" + redis_.url() +
                                 " " + kBin + "/wafleet " + args,
                             out);
  }

  std::string dir_;
  test::RedisServer redis_;
  std::unique_ptr<test::Process> broker_;
  std::unique_ptr<test::Process> emulator_;
  std::map<std::string, std::unique_ptr<test::Process>> processes_;
  std::map<std::string, int> starts_;
  std::map<std::string, std::string> env_;
  std::string brokers_;
  std::string graph_;
  std::string url_;
};

TEST_F(BridgeE2E, EveryBurstOfAHundredPeopleIsAnsweredOnceWithAllOfIt) {
  const std::string pnid = "5" + std::to_string(100000 + std::rand() % 800000);
  const int people = 100;
  for (int p = 0; p < people; ++p) {
    const std::string from = "1555020" + std::to_string(1000 + p);
    text(pnid, from, "wamid.a." + from, "Hi");
    text(pnid, from, "wamid.b." + from, "I was charged twice");
    text(pnid, from, "wamid.c." + from, "order " + std::to_string(p));
  }
  ASSERT_TRUE(test::eventually([&] { return delivered(pnid).size() >= static_cast<size_t>(people); },
                               std::chrono::seconds(60)));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // anything extra would show by now
  const auto answers = delivered(pnid);
  ASSERT_EQ(answers.size(), static_cast<size_t>(people)) << "one answer per burst";
  std::set<std::string> to;
  for (const auto& a : answers) {
    to.insert(a["to"]);
    const std::string body = a["text"]["body"];
    EXPECT_TRUE(body.starts_with("You said: Hi\nI was charged twice\norder ")) << body;
  }
  EXPECT_EQ(to.size(), static_cast<size_t>(people)) << "everyone, once";
  size_t typing = 0;
  auto calls = http::fetch("GET", graph_ + "/_emulator/calls", {}, "", std::chrono::seconds(10));
  for (const auto& c : Json::parse(calls->body)) {
    typing += c["path"] == "/v22.0/" + pnid + "/messages" && c["body"].contains("typing_indicator") ? 1 : 0;
  }
  EXPECT_GE(typing, static_cast<size_t>(people)) << "a typing indicator per turn";
  const auto acks = delivered(pnid, "reaction");
  ASSERT_EQ(acks.size(), static_cast<size_t>(people)) << "one acknowledgement per turn";
  EXPECT_EQ(acks[0]["reaction"]["emoji"], "\xf0\x9f\x91\x8d");
  EXPECT_TRUE(acks[0]["reaction"]["message_id"].get<std::string>().starts_with("wamid.c."))
      << "the reaction is to the person's last message";
}

TEST_F(BridgeE2E, ASecondTurnDuringASlowCallGivesOneAnswerMadeWithBoth) {
  const std::string pnid = "4" + std::to_string(100000 + std::rand() % 800000);
  admin("faults", {{"endpoint", "chat"}, {"times", 1}, {"latency_ms", 2500}});
  text(pnid, "15550203001", "wamid.slow.1", "first question");
  ASSERT_TRUE(test::eventually([&] { return !chat_calls().empty(); }, std::chrono::seconds(20)));
  text(pnid, "15550203001", "wamid.slow.2", "and a second one");
  ASSERT_TRUE(test::eventually([&] { return !delivered(pnid).empty(); }, std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::seconds(4));  // the stale call's answer has come by now
  const auto answers = delivered(pnid);
  ASSERT_EQ(answers.size(), 1u) << "the stale answer was dropped";
  EXPECT_EQ(answers[0]["text"]["body"], "You said: first question\nand a second one");
  EXPECT_EQ(chat_calls().size(), 2u) << "the stale call, then one with both turns";
}

TEST_F(BridgeE2E, AKeywordHandsOverThenTheBotIsSilentUntilReleased) {
  const std::string pnid = "3" + std::to_string(100000 + std::rand() % 800000);
  const std::string from = "15550203002";
  const std::string key = pnid + ":" + from;
  text(pnid, from, "wamid.h.1", "Human");
  ASSERT_TRUE(test::eventually([&] { return !delivered(pnid).empty(); }, std::chrono::seconds(20)));
  EXPECT_EQ(delivered(pnid)[0]["text"]["body"],
            "I'm passing you to a person. They will answer here shortly.");
  auto handoffs = topic(topics::kHandoffs, [&](const std::vector<Json>& hs) {
    return std::any_of(hs.begin(), hs.end(), [&](const Json& h) { return h.value("conversation_key", "") == key; });
  });
  auto mine = std::find_if(handoffs.begin(), handoffs.end(),
                           [&](const Json& h) { return h.value("conversation_key", "") == key; });
  ASSERT_NE(mine, handoffs.end());
  EXPECT_EQ((*mine)["by"], "keyword");
  EXPECT_EQ((*mine)["owner"], "human");
  EXPECT_TRUE(chat_calls().empty()) << "the agent was never asked";
  // Silence while a person has it.
  text(pnid, from, "wamid.h.2", "hello? anyone?");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(delivered(pnid).size(), 1u) << "the bot stayed silent";
  std::string out;
  ASSERT_EQ(run_cli("conversation show " + key, out), 0) << out;
  EXPECT_NE(out.find("\"owner\": \"human\""), std::string::npos) << out;
  EXPECT_NE(out.find("hello? anyone?"), std::string::npos) << "what was said is remembered: " << out;
  ASSERT_EQ(run_cli("conversation release " + key, out), 0) << out;
  text(pnid, from, "wamid.h.3", "ok thanks");
  ASSERT_TRUE(test::eventually([&] { return delivered(pnid).size() >= 2; }, std::chrono::seconds(20)));
  EXPECT_EQ(delivered(pnid)[1]["text"]["body"], "You said: ok thanks");
  const Json sent = chat_calls().back()["body"]["messages"];
  EXPECT_NE(sent.dump().find("hello? anyone?"), std::string::npos)
      << "the memory carries what was said during the handoff: " << sent.dump();
}

TEST_F(BridgeE2E, TheAgentsHandoffToolHandsOverAndAPersonsMessageMakesTheBotStepBack) {
  const std::string pnid = "2" + std::to_string(100000 + std::rand() % 800000);
  admin("faults", {{"endpoint", "chat"}, {"times", 1}, {"handoff", true}});
  text(pnid, "15550203003", "wamid.t.1", "I want to cancel everything");
  auto handoffs = topic(topics::kHandoffs, [&](const std::vector<Json>& hs) {
    return std::any_of(hs.begin(), hs.end(), [&](const Json& h) { return h.value("by", "") == "tool"; });
  });
  ASSERT_TRUE(std::any_of(handoffs.begin(), handoffs.end(), [&](const Json& h) {
    return h.value("by", "") == "tool" && h.value("reason", "") == "emulated: the person needs a human";
  }));
  // Another conversation: a person answers through their own tool; the bot steps back.
  const std::string key = pnid + ":15550203004";
  auto producer = kafka::Producer::create(kafka::ClientConfig{brokers_, "e2e", {}});
  ASSERT_TRUE(producer.has_value());
  const Json human = {{"request_id", "agent-desk-1"}, {"phone_number_id", pnid}, {"to", "15550203004"},
                      {"type", "text"}, {"text", {{"body", "Hi, Maria from support here"}}},
                      {"priority", "human"}};
  ASSERT_TRUE(kafka::produce_and_wait(**producer, topics::kOutbound, key, human.dump()).has_value());
  handoffs = topic(topics::kHandoffs, [&](const std::vector<Json>& hs) {
    return std::any_of(hs.begin(), hs.end(), [&](const Json& h) { return h.value("conversation_key", "") == key; });
  });
  ASSERT_TRUE(std::any_of(handoffs.begin(), handoffs.end(), [&](const Json& h) {
    return h.value("conversation_key", "") == key && h.value("by", "") == "human_message";
  }));
}

TEST_F(BridgeE2E, FailingCallsGetTheFallbackADeadLetterAndThenAHandoff) {
  const std::string pnid = "6" + std::to_string(100000 + std::rand() % 800000);
  admin("faults", {{"endpoint", "chat"}, {"times", 6}, {"http_status", 503}});
  text(pnid, "15550203005", "wamid.f.1", "are you there?");
  ASSERT_TRUE(test::eventually([&] { return !delivered(pnid).empty(); }, std::chrono::seconds(20)));
  EXPECT_EQ(delivered(pnid)[0]["text"]["body"],
            "Sorry, I can't answer right now. Please try again in a moment.");
  EXPECT_EQ(chat_calls().size(), 3u) << "three tries";
  auto letters = topic(topics::kDlq, [](const std::vector<Json>& ls) { return !ls.empty(); });
  ASSERT_FALSE(letters.empty());
  EXPECT_EQ(letters[0]["turn_id"].is_string(), true) << "the turn itself is kept";
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  text(pnid, "15550203005", "wamid.f.2", "hello??");
  ASSERT_TRUE(test::eventually([&] { return delivered(pnid).size() >= 3; }, std::chrono::seconds(20)))
      << "a second fallback, then the handoff message";
  EXPECT_EQ(delivered(pnid)[2]["text"]["body"],
            "I'm passing you to a person. They will answer here shortly.");
}

TEST_F(BridgeE2E, ATenThousandCharacterAnswerArrivesSplitAndInOrder) {
  const std::string pnid = "7" + std::to_string(100000 + std::rand() % 800000);
  admin("faults", {{"endpoint", "chat"}, {"times", 1}, {"answer_chars", 10000}});
  text(pnid, "15550203006", "wamid.l.1", "tell me everything");
  ASSERT_TRUE(test::eventually([&] { return delivered(pnid).size() >= 3; }, std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto parts = delivered(pnid);
  ASSERT_EQ(parts.size(), 3u);
  std::string all;
  int last_sentence = 0;
  for (const auto& p : parts) {
    const std::string body = p["text"]["body"];
    EXPECT_LE(body.size(), 4096u);
    const int first = std::stoi(body.substr(body.find("Sentence ") + 9));
    EXPECT_GT(first, last_sentence) << "in order";
    last_sentence = std::stoi(body.substr(body.rfind("Sentence ") + 9));
    all += body;
  }
  EXPECT_GE(all.size(), 9900u) << "nothing lost but the spaces at the cuts";
}

TEST_F(BridgeE2E, ImagesReachTheModelAsContentPartsAndVoiceNotesAsTranscripts) {
  const std::string pnid = "8" + std::to_string(100000 + std::rand() % 800000);
  const std::string from = "15550203007";
  auto photo = admin("media", {{"id", "img-b-" + pnid}, {"mime_type", "image/jpeg"}, {"size", 2048}, {"seed", 3}});
  auto voice = admin("media", {{"id", "voice-b-" + pnid}, {"mime_type", "audio/ogg"}, {"size", 3000},
                               {"seed", 4}, {"transcript", "where is my parcel"}});
  text(pnid, from, "wamid.i.1", "look at this");
  send(pnid, {{"from", from}, {"id", "wamid.i.2"}, {"timestamp", now_s()}, {"type", "image"},
              {"image", {{"id", photo["id"]}, {"mime_type", "image/jpeg"}, {"sha256", photo["sha256_base64"]},
                         {"caption", "the label"}}}});
  send(pnid, {{"from", from}, {"id", "wamid.i.3"}, {"timestamp", now_s()}, {"type", "audio"},
              {"audio", {{"id", voice["id"]}, {"mime_type", "audio/ogg; codecs=opus"},
                         {"sha256", voice["sha256_base64"]}, {"voice", true}}}});
  ASSERT_TRUE(test::eventually([&] { return !delivered(pnid).empty(); }, std::chrono::seconds(40)));
  const auto calls = chat_calls();
  ASSERT_EQ(calls.size(), 1u);
  const Json& content = calls[0]["body"]["messages"].back()["content"];
  ASSERT_TRUE(content.is_array()) << content.dump();
  ASSERT_EQ(content.size(), 3u) << content.dump();
  EXPECT_EQ(content[0]["text"], "look at this\n[image: the label]");
  EXPECT_TRUE(content[1]["image_url"]["url"].get<std::string>().starts_with("data:image/jpeg;base64,"));
  EXPECT_EQ(content[2]["text"], "[voice note] where is my parcel");
  EXPECT_EQ(calls[0]["body"]["images"], 1);
  EXPECT_NE(delivered(pnid)[0]["text"]["body"].get<std::string>().find("(1 image received)"),
            std::string::npos);
}

TEST_F(BridgeE2E, KilledMidCallTheBridgeStillAnswersOnce) {
  const std::string pnid = "9" + std::to_string(100000 + std::rand() % 800000);
  admin("faults", {{"endpoint", "chat"}, {"times", 1}, {"latency_ms", 3000}});
  text(pnid, "15550203008", "wamid.k.1", "still there?");
  ASSERT_TRUE(test::eventually([&] { return !chat_calls().empty(); }, std::chrono::seconds(20)));
  processes_["bridge"]->kill9();
  start_bridge();
  ASSERT_TRUE(test::eventually([&] { return !delivered(pnid).empty(); }, std::chrono::seconds(40)));
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_EQ(delivered(pnid).size(), 1u) << "one answer";
  EXPECT_EQ(delivered(pnid)[0]["text"]["body"], "You said: still there?");
}

TEST_F(BridgeE2E, AnAnswerThatWouldLandAfterTheWindowClosedIsNotSentFreeForm) {
  const std::string pnid = "1" + std::to_string(100000 + std::rand() % 800000);
  const std::string key = pnid + ":15550203009";
  const int64_t long_ago = wall_clock_ms() - 25LL * 3600 * 1000;
  const Json turn = {{"v", 1}, {"turn_id", "late-" + pnid}, {"conversation_key", key},
                     {"phone_number_id", pnid}, {"wa_id", "15550203009"}, {"identity", "15550203009"},
                     {"items", {{{"kind", "text"}, {"message_id", "wamid.late"}, {"text", "hello?"}}}},
                     {"message_ids", {"wamid.late"}}, {"messages", Json::array()},
                     {"window", {{"opened_at_ms", long_ago}, {"last_message_at_ms", long_ago}}}};
  auto producer = kafka::Producer::create(kafka::ClientConfig{brokers_, "e2e", {}});
  ASSERT_TRUE(producer.has_value());
  ASSERT_TRUE(kafka::produce_and_wait(**producer, topics::kTurns, key, turn.dump()).has_value());
  auto results = topic(topics::kOutboundResults, [&](const std::vector<Json>& rs) {
    return std::any_of(rs.begin(), rs.end(), [&](const Json& r) {
      return r.value("request_id", "") == "bridge:late-" + pnid + ":0";
    });
  });
  auto failed = std::find_if(results.begin(), results.end(), [&](const Json& r) {
    return r.value("request_id", "") == "bridge:late-" + pnid + ":0";
  });
  ASSERT_NE(failed, results.end());
  EXPECT_EQ((*failed)["status"], "failed");
  EXPECT_NE((*failed)["error"]["message"].get<std::string>().find("24-hour"), std::string::npos);
  EXPECT_TRUE(delivered(pnid).empty()) << "nothing free-form reached Meta";
}

TEST_F(BridgeE2E, AWebhookAgentAnswersWithRepliesAndAHandoffAndABadBodyIsAFailure) {
  const std::string pnid = "5" + std::to_string(100000 + std::rand() % 800000);
  std::atomic<int> posts{0};
  std::mutex mu;
  Json first_post;
  http::Server agent(http::ServerOptions{}, [&](http::Request&& req, http::Responder respond) {
    const int n = ++posts;
    if (n == 1) {
      std::lock_guard lock(mu);
      first_post = Json::parse(req.body(), nullptr, false);
      respond(http::make_json_response(req, 200, R"({
        "replies": [{"type": "text", "text": "Let me get billing for you."},
                    {"type": "buttons", "text": "Meanwhile?", "buttons": [{"id": "wait", "title": "I'll wait"}]}],
        "handoff": {"reason": "billing question", "queue": "tier2"}, "end_session": false})"));
    } else {
      respond(http::make_json_response(req, 200, R"({"answer": "not the contract"})"));
    }
  });
  ASSERT_TRUE(agent.start().has_value());
  processes_["bridge"]->stop();
  start("bridge", {"--agent", "webhook", "--agent-url", "http://127.0.0.1:" + std::to_string(agent.port()) + "/agent",
                   "--agent-attempts", "1"});
  ASSERT_TRUE(test::wait_ready(dir_ + "/bridge-admin")) << processes_["bridge"]->log();
  text(pnid, "15550203010", "wamid.w.1", "my invoice is wrong");
  ASSERT_TRUE(test::eventually([&] { return delivered(pnid).size() >= 2; }, std::chrono::seconds(20)));
  EXPECT_EQ(delivered(pnid)[0]["text"]["body"], "Let me get billing for you.");
  EXPECT_EQ(delivered(pnid, "interactive").size(), 1u);
  EXPECT_EQ(delivered(pnid)[1]["text"]["body"], "I'm passing you to a person. They will answer here shortly.");
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(first_post["turn"]["items"][0]["text"], "my invoice is wrong");
    EXPECT_TRUE(first_post["memory"].is_array());
    EXPECT_GT(first_post["window_closes_at_ms"].get<int64_t>(), wall_clock_ms());
  }
  const std::string key = pnid + ":15550203010";
  auto handoffs = topic(topics::kHandoffs, [&](const std::vector<Json>& hs) {
    return std::any_of(hs.begin(), hs.end(), [&](const Json& h) { return h.value("conversation_key", "") == key; });
  });
  ASSERT_TRUE(std::any_of(handoffs.begin(), handoffs.end(), [&](const Json& h) {
    return h.value("conversation_key", "") == key && h.value("by", "") == "webhook" &&
           h.value("queue", "") == "tier2";
  }));
  // Another person; the agent now answers 2xx with a body off the contract: a failure, the fallback.
  text(pnid, "15550203011", "wamid.w.2", "hello");
  ASSERT_TRUE(test::eventually([&] { return delivered(pnid).size() >= 3; }, std::chrono::seconds(20)));
  EXPECT_EQ(delivered(pnid)[2]["text"]["body"], "Sorry, I can't answer right now. Please try again in a moment.");
  EXPECT_NE(processes_["bridge"]->log().find("replies: required"), std::string::npos)
      << "the reason is logged";
  agent.stop();
}

TEST_F(BridgeE2E, AnAgentThatTimesOutGetsRetriedThenTheFallback) {
  const std::string pnid = "6" + std::to_string(100000 + std::rand() % 800000);
  // Every try answers after 4.5 s; the bridge gives up on each after 4 s.
  admin("faults", {{"endpoint", "chat"}, {"times", 3}, {"latency_ms", 4500}});
  text(pnid, "15550203012", "wamid.to.1", "hello?");
  ASSERT_TRUE(test::eventually([&] { return !delivered(pnid).empty(); }, std::chrono::seconds(30)));
  EXPECT_EQ(delivered(pnid)[0]["text"]["body"],
            "Sorry, I can't answer right now. Please try again in a moment.");
  EXPECT_EQ(chat_calls().size(), 3u) << "three tries, each timed out";
  EXPECT_NE(processes_["bridge"]->log().find("Timeout"), std::string::npos)
      << "the reason names the timeout";
}

}  // namespace
}  // namespace wafleet
