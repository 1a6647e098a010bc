// Dead letters end to end, binaries as processes on the dev broker and a real redis-server:
// poison and media failures reach wa.dlq with the one format while the partitions move on;
// `wafleet dlq` lists, shows, counts, dry-runs, replays exactly what a filter selects (once,
// audited) and parks what passed the cap; `wafleet-replay` heals a transient failure by itself.
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/consumer_loop.h"
#include "common/crypto.h"
#include "common/dead_letter.h"
#include "common/http_client.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

const std::string kBin = WAFLEET_BIN_DIR;
const std::string kSecret = "dlq-secret";

class DlqE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("wafleet-dlq-e2e");
    broker_ = start("wafleet-devbroker", {"--bootstrap-file", dir_ + "/bootstrap"}, {});
    emulator_ = start("wafleet-graph-emulator",
                      {"--listen", "127.0.0.1:0", "--port-file", dir_ + "/emu-port"},
                      {{"WAFLEET_ACCESS_TOKEN", "e2e-token"}});
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/bootstrap").empty(); }));
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/emu-port").empty(); }));
    brokers_ = test::read_trimmed(dir_ + "/bootstrap");
    graph_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/emu-port");
    env_ = {{"WAFLEET_KAFKA_BROKERS", brokers_},
            {"WAFLEET_REDIS_URL", redis_.url()},
            {"WAFLEET_APP_SECRET", kSecret},
            {"WAFLEET_ACCESS_TOKEN", "e2e-token"}};
    receiver_ = start("wafleet-receiver",
                      {"--listen", "127.0.0.1:0", "--port-file", dir_ + "/port"}, env_);
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/port").empty(); }));
    url_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/port") + "/webhook";
    media_ = start("wafleet-media",
                   {"--graph-base", graph_, "--storage-dir", dir_ + "/store", "--attempts", "2",
                    "--backoff-ms", "100", "--admin-port-file", dir_ + "/media-admin"},
                   env_);
    aggregator_ = start("wafleet-aggregator",
                        {"--quiet-ms", "500", "--max-ms", "5000", "--media-wait-ms", "20000",
                         "--admin-port-file", dir_ + "/aggregator-admin"},
                        env_);
    for (const char* w : {"media-admin", "aggregator-admin"}) {
      ASSERT_TRUE(test::wait_ready(dir_ + "/" + w)) << w << " never got partitions";
    }
  }

  void TearDown() override {
    for (auto* p : {&replay_, &aggregator_, &media_, &receiver_, &emulator_, &broker_}) {
      if (*p) {
        (*p)->stop();
      }
    }
  }

  std::unique_ptr<test::Process> start(const std::string& bin, std::vector<std::string> args,
                                       const std::map<std::string, std::string>& env) {
    return std::make_unique<test::Process>(kBin + "/" + bin, std::move(args), env,
                                           dir_ + "/" + bin + ".log");
  }

  // The CLI, as an operator runs it.
  int cli(const std::string& args, std::string& out) {
    return test::run_command("WAFLEET_KAFKA_BROKERS=" + brokers_ + " WAFLEET_REDIS_URL=" +
                                 redis_.url() + " WAFLEET_APP_SECRET=" + kSecret + " " + kBin +
                                 "/wafleet " + args + " </dev/null",
                             out);
  }

  nlohmann::json emulator(const std::string& method, const std::string& what,
                          const nlohmann::json& body) {
    auto r = http::fetch(method, graph_ + "/_emulator/" + what,
                         {{"Content-Type", "application/json"}}, body.dump(),
                         std::chrono::seconds(10));
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
    return r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
  }

  void send(const nlohmann::json& message) {
    nlohmann::json value = {
        {"messaging_product", "whatsapp"},
        {"metadata", {{"display_phone_number", "15550001111"}, {"phone_number_id", pnid_}}},
        {"contacts", {{{"profile", {{"name", "Ana"}}}, {"wa_id", message["from"]}}}},
        {"messages", {message}}};
    nlohmann::json body = {
        {"object", "whatsapp_business_account"},
        {"entry", {{{"id", "1"}, {"changes", {{{"value", value}, {"field", "messages"}}}}}}}};
    const std::string raw = body.dump();
    auto r = http::fetch("POST", url_,
                         {{"Content-Type", "application/json"},
                          {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(kSecret, raw)}},
                         raw, std::chrono::seconds(10));
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
  }

  // A photo the emulator holds; a fault can make its lookup fail.
  std::string send_photo(const std::string& from, const std::string& id) {
    const std::string media_id = "img-" + id;
    auto desc = emulator("POST", "media",
                         {{"id", media_id}, {"mime_type", "image/jpeg"}, {"size", 120000},
                          {"seed", static_cast<int>(id.size())}});
    send({{"from", from}, {"id", id}, {"timestamp", "1750000000"}, {"type", "image"},
          {"image", {{"id", media_id}, {"mime_type", "image/jpeg"},
                     {"sha256", desc["sha256_base64"]}}}});
    return media_id;
  }

  std::string key_of(const std::string& from) const { return pnid_ + ":" + from; }

  std::vector<kafka::Record> dead_letters(size_t want) {
    return test::consume_until(
        brokers_, {topics::kDlq}, [&](const auto& rs) { return rs.size() >= want; },
        std::chrono::seconds(45));
  }

  // Every record of a topic as it stands (no group).
  std::vector<kafka::Record> all_of(const std::string& topic) {
    std::vector<kafka::Record> out;
    auto s = kafka::read_topic(
        {brokers_, "dlq-e2e", {}}, topic,
        [&](const kafka::Record& r) {
          out.push_back(r);
          return true;
        },
        std::chrono::seconds(15));
    EXPECT_TRUE(s) << s.error().message;
    return out;
  }

  std::vector<nlohmann::json> turns_of(const std::string& key) {
    std::vector<nlohmann::json> out;
    for (const auto& r : all_of(topics::kTurns)) {
      if (r.key == key) {
        out.push_back(nlohmann::json::parse(r.value));
      }
    }
    return out;
  }

  std::string dir_;
  test::RedisServer redis_;
  std::unique_ptr<test::Process> broker_, emulator_, receiver_, media_, aggregator_, replay_;
  std::map<std::string, std::string> env_;
  std::string brokers_, graph_, url_;
  std::string pnid_ = "5" + std::to_string(100000 + std::rand() % 800000);
};

const kafka::Record* find_dead(const std::vector<kafka::Record>& rs, const std::string& worker,
                               const std::string& needle) {
  for (const auto& r : rs) {
    if (r.header("dlq.worker") == worker && r.value.find(needle) != std::string::npos) {
      return &r;
    }
  }
  return nullptr;
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

TEST_F(DlqE2E, FailuresAreDeadLetteredAndAFilteredReplayBringsBackExactlyThoseOnce) {
  const std::string ana = "15550103001", ben = "15550103002", chen = "15550103003";
  // Meta's media lookup is down (503) for Ana's and Ben's photos.
  emulator("POST", "faults", {{"endpoint", "media"}, {"match", "img-wamid.A." + pnid_},
                              {"times", -1}, {"http_status", 503}, {"error_code", 2}});
  emulator("POST", "faults", {{"endpoint", "media"}, {"match", "img-wamid.B." + pnid_},
                              {"times", -1}, {"http_status", 503}, {"error_code", 2}});
  // A poison record on Chen's partition, then Chen's text: the partition must move on.
  kafka::ClientConfig kc{brokers_, "dlq-e2e", {}};
  auto producer = kafka::Producer::create(kc);
  ASSERT_TRUE(producer);
  ASSERT_TRUE(kafka::produce_and_wait(**producer, topics::kInbound, key_of(chen), "{not json",
                                      {{"traceparent",
                                        "00-11112222333344445555666677778888-0000000000000001-01"}}));
  send_photo(ana, "wamid.A." + pnid_);
  send_photo(ben, "wamid.B." + pnid_);
  send({{"from", chen}, {"id", "wamid.C." + pnid_}, {"timestamp", "1750000000"},
        {"type", "text"}, {"text", {{"body", "still there?"}}}});

  auto dlq = dead_letters(3);
  ASSERT_EQ(dlq.size(), 3u) << "one dead letter per failure, no more";
  const auto* poison = find_dead(dlq, "aggregator", "{not json");
  const auto* photo_a = find_dead(dlq, "media", "wamid.A." + pnid_);
  ASSERT_NE(poison, nullptr);
  ASSERT_NE(photo_a, nullptr);
  ASSERT_NE(find_dead(dlq, "media", "wamid.B." + pnid_), nullptr);
  // The format: original key and value untouched, the whole context in headers.
  auto a = dlq::from_headers(photo_a->headers);
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(photo_a->key, key_of(ana));
  EXPECT_EQ(a->original_topic, topics::kInbound);
  EXPECT_EQ(a->original_partition, kafka::Producer::partition_for_key(key_of(ana), 12));
  EXPECT_GE(a->original_offset, 0);
  EXPECT_GT(a->original_timestamp_ms, 0);
  EXPECT_EQ(a->original_key, key_of(ana));
  EXPECT_EQ(a->group, "wafleet-media");
  EXPECT_EQ(a->stage, "handle");
  EXPECT_EQ(a->error_class, "transient");
  EXPECT_NE(a->error_message.find("503"), std::string::npos) << a->error_message;
  EXPECT_EQ(a->attempts, 2);
  EXPECT_LE(a->first_failure_ms, a->last_failure_ms);
  EXPECT_EQ(a->trace_id.size(), 32u);
  EXPECT_EQ(a->replay_count, 0);
  auto p = dlq::from_headers(poison->headers);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(poison->value, "{not json");
  EXPECT_EQ(p->error_class, "invalid_input");
  EXPECT_EQ(p->stage, "decode");
  EXPECT_EQ(p->trace_id, "11112222333344445555666677778888");
  // The partitions moved on: Chen's text became a turn; Ana's photo is in one, marked failed.
  ASSERT_TRUE(test::eventually([&] { return turns_of(key_of(chen)).size() == 1; },
                               std::chrono::seconds(30)));
  ASSERT_TRUE(test::eventually([&] { return turns_of(key_of(ana)).size() == 1; },
                               std::chrono::seconds(30)));
  EXPECT_EQ(turns_of(key_of(ana))[0]["items"][0]["media"]["status"], "failed");

  // Inspection.
  std::string out;
  ASSERT_EQ(cli("dlq stats", out), 0) << out;
  EXPECT_NE(out.find("3 dead letter(s)"), std::string::npos) << out;
  EXPECT_NE(out.find("media/handle\t2"), std::string::npos) << out;
  EXPECT_NE(out.find("aggregator/decode\t1"), std::string::npos) << out;
  EXPECT_NE(out.find("transient\t2"), std::string::npos) << out;
  EXPECT_NE(out.find("wa.inbound\t3"), std::string::npos) << out;
  ASSERT_EQ(cli("dlq ls --worker media", out), 0) << out;
  EXPECT_EQ(count_of(out, "media/handle"), 2u) << out;
  EXPECT_EQ(out.find(ana), std::string::npos) << "phone numbers are redacted in ls: " << out;
  const std::string where = std::to_string(photo_a->partition) + ":" +
                            std::to_string(photo_a->offset);
  ASSERT_EQ(cli("dlq show " + where, out), 0) << out;
  EXPECT_NE(out.find("dlq.error.class: transient"), std::string::npos) << out;
  EXPECT_NE(out.find("\"message_id\": \"wamid.A." + pnid_ + "\""), std::string::npos) << out;

  // A dry run says what it would do and writes nothing.
  const size_t inbound_before = all_of(topics::kInbound).size();
  const std::string filter = "--worker media --key " + key_of(ana);
  ASSERT_EQ(cli("dlq replay --dry-run " + filter, out), 0) << out;
  EXPECT_NE(out.find(where + "  would replay to wa.inbound"), std::string::npos) << out;
  EXPECT_NE(out.find("\"matched\":1"), std::string::npos) << out;
  EXPECT_EQ(all_of(topics::kInbound).size(), inbound_before);
  EXPECT_TRUE(all_of(topics::kDlqAudit).empty());

  // A whole-DLQ replay needs a confirmation.
  EXPECT_EQ(cli("dlq replay", out), 2) << out;
  EXPECT_NE(out.find("--yes"), std::string::npos) << out;
  EXPECT_EQ(all_of(topics::kInbound).size(), inbound_before);

  // The cause is removed; the filtered replay brings back Ana's photo alone, once.
  emulator("DELETE", "faults", nlohmann::json::object());
  ASSERT_EQ(cli("dlq replay --actor e2e-operator " + filter, out), 0) << out;
  EXPECT_NE(out.find("\"replayed\":1"), std::string::npos) << out;
  auto inbound = all_of(topics::kInbound);
  ASSERT_EQ(inbound.size(), inbound_before + 1);
  size_t replays = 0;
  for (const auto& r : inbound) {
    if (r.header(dlq::kReplayCountHeader)) {
      ++replays;
      EXPECT_EQ(r.key, key_of(ana));
      EXPECT_EQ(r.value, photo_a->value) << "the original value, untouched";
      EXPECT_EQ(r.header(dlq::kReplayCountHeader), "1");
      EXPECT_EQ(r.header(dlq::kReplayOfHeader), "wa.dlq:" + where);
      EXPECT_TRUE(r.header("traceparent")) << "original headers restored";
    }
  }
  EXPECT_EQ(replays, 1u);
  // The pipeline processes it: a turn of its own with the photo stored.
  ASSERT_TRUE(test::eventually([&] { return turns_of(key_of(ana)).size() == 2; },
                               std::chrono::seconds(40)))
      << "no turn for the replayed photo";
  const auto turn = turns_of(key_of(ana))[1];
  EXPECT_EQ(turn["items"][0]["media"]["status"], "stored") << turn.dump(2);
  EXPECT_EQ(turn["replayed_message_ids"], nlohmann::json({"wamid.A." + pnid_}));
  EXPECT_NE(turn["turn_id"], turns_of(key_of(ana))[0]["turn_id"]);
  // Audited: who, the filter, the counts, the dead letter taken.
  auto audit = all_of(topics::kDlqAudit);
  ASSERT_EQ(audit.size(), 1u);
  auto rec = nlohmann::json::parse(audit[0].value);
  EXPECT_EQ(rec["actor"], "e2e-operator");
  EXPECT_EQ(rec["filter"]["key"], key_of(ana));
  EXPECT_EQ(rec["counts"]["replayed"], 1);
  EXPECT_EQ(rec["dead_letters"], nlohmann::json({where}));
  // Once: the same replay again takes nothing.
  ASSERT_EQ(cli("dlq replay " + filter, out), 0) << out;
  EXPECT_NE(out.find("\"already_replayed\":1"), std::string::npos) << out;
  EXPECT_NE(out.find("\"replayed\":0"), std::string::npos) << out;
  EXPECT_EQ(all_of(topics::kInbound).size(), inbound_before + 1);
  // Ben's photo was not selected: no second turn for him.
  EXPECT_EQ(turns_of(key_of(ben)).size(), 1u);

  // Parking: the poison comes back to the DLQ after its replay; past the cap it is parked.
  ASSERT_EQ(cli("dlq replay --worker aggregator --max-replays 1", out), 0) << out;
  EXPECT_NE(out.find("\"replayed\":1"), std::string::npos) << out;
  auto again = dead_letters(4);
  ASSERT_EQ(again.size(), 4u);
  EXPECT_EQ(again.back().header("dlq.replay.count"), "1");
  ASSERT_EQ(cli("dlq replay --worker aggregator --max-replays 1", out), 0) << out;
  EXPECT_NE(out.find("\"parked\":1"), std::string::npos) << out;
  EXPECT_NE(out.find("\"already_replayed\":1"), std::string::npos) << out;
  auto parked = all_of(topics::kDlqParked);
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_EQ(parked[0].value, "{not json");
  EXPECT_EQ(parked[0].header("dlq.parked.reason"), "replayed 1 times (cap 1)");
  ASSERT_EQ(cli("dlq ls --topic wa.dlq.parked", out), 0) << out;
  EXPECT_EQ(count_of(out, "aggregator/decode"), 1u) << out;
}

TEST_F(DlqE2E, TheReplayWorkerHealsATransientFailureByItselfAndLeavesTheRestAlone) {
  const std::string ana = "15550104001", ben = "15550104002";
  // Two failed lookups: both of the media worker's attempts fail, then Meta is back.
  emulator("POST", "faults", {{"endpoint", "media"}, {"match", "img-wamid.W." + pnid_},
                              {"times", 2}, {"http_status", 500}, {"error_code", 1}});
  kafka::ClientConfig kc{brokers_, "dlq-e2e", {}};
  auto producer = kafka::Producer::create(kc);
  ASSERT_TRUE(producer);
  ASSERT_TRUE(kafka::produce_and_wait(**producer, topics::kInbound, key_of(ben), "{not json"));
  send_photo(ana, "wamid.W." + pnid_);
  auto dlq = dead_letters(2);
  ASSERT_NE(find_dead(dlq, "media", "wamid.W." + pnid_), nullptr);
  replay_ = start("wafleet-replay", {"--delay-ms", "1000"}, env_);
  ASSERT_TRUE(test::eventually([&] { return turns_of(key_of(ana)).size() == 2; },
                               std::chrono::seconds(60)))
      << "the transient failure did not heal";
  const auto turns = turns_of(key_of(ana));
  EXPECT_EQ(turns[0]["items"][0]["media"]["status"], "failed");
  EXPECT_EQ(turns[1]["items"][0]["media"]["status"], "stored") << turns[1].dump(2);
  // Only the transient one was replayed: the poison (invalid input) waits for a person.
  size_t replays = 0;
  for (const auto& r : all_of(topics::kInbound)) {
    replays += r.header(dlq::kReplayCountHeader) ? 1 : 0;
  }
  EXPECT_EQ(replays, 1u);
  std::vector<kafka::Record> audit;
  ASSERT_TRUE(test::eventually([&] {
    audit = all_of(topics::kDlqAudit);
    return !audit.empty();
  }));
  ASSERT_EQ(audit.size(), 1u);
  auto rec = nlohmann::json::parse(audit[0].value);
  EXPECT_EQ(rec["mode"], "worker");
  EXPECT_EQ(rec["counts"]["replayed"], 1);
  std::string out;
  ASSERT_EQ(cli("dlq ls", out), 0) << out;
  EXPECT_NE(out.find("media/handle  transient"), std::string::npos) << out;
  EXPECT_NE(out.find("replayed:wa.inbound"), std::string::npos) << out;
  EXPECT_NE(out.find("waiting"), std::string::npos) << "the poison is still waiting: " << out;
}

TEST_F(DlqE2E, AWebhookTheReceiverCouldNotParseIsPostedAgainSignedOnReplay) {
  const std::string body = R"({"object":"whatsapp_business_account","entry":"not a list"})";
  auto r = http::fetch("POST", url_,
                       {{"Content-Type", "application/json"},
                        {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(kSecret, body)}},
                       body, std::chrono::seconds(10));
  ASSERT_TRUE(r && r->status == 200) << "signed but unparseable: kept, and Meta gets its 200";
  auto dlq = dead_letters(1);
  ASSERT_EQ(dlq.size(), 1u);
  auto d = dlq::from_headers(dlq[0].headers);
  ASSERT_TRUE(d) << d.error();
  EXPECT_EQ(dlq[0].value, body);
  EXPECT_EQ(d->original_topic, "http:/webhook");
  EXPECT_EQ(d->worker, "receiver");
  EXPECT_EQ(d->error_class, "invalid_input");
  EXPECT_GT(d->original_timestamp_ms, 0);
  std::string out;
  // Without a receiver to post to, it is named, not dropped.
  ASSERT_EQ(cli("dlq replay --worker receiver --dry-run", out), 0) << out;
  EXPECT_NE(out.find("needs --receiver-url"), std::string::npos) << out;
  EXPECT_NE(out.find("\"unreplayable\":1"), std::string::npos) << out;
  // Posted again, signed with the app secret: the receiver takes it (and, still unparseable,
  // dead-letters it once more, counting the replay).
  const std::string base = url_.substr(0, url_.size() - std::string("/webhook").size());
  ASSERT_EQ(cli("dlq replay --worker receiver --receiver-url " + base, out), 0) << out;
  EXPECT_NE(out.find("\"replayed\":1"), std::string::npos) << out;
  auto again = dead_letters(2);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[1].value, body);
  EXPECT_EQ(again[1].header("dlq.replay.count"), "1");
}

}  // namespace
}  // namespace wafleet
