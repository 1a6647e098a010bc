// Against a 3-node Apache Kafka cluster (KRaft, each node broker+controller; scripts/test starts
// it with `scripts/kafka start-cluster`, ctest label 'cluster'): the catalogue replicated three
// times with min.insync.replicas=2, and what the producers of every worker rely on (idempotent,
// acks=all) holding while brokers are killed with kill -9.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <filesystem>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/http_client.h"
#include "common/kafka.h"
#include "common/text.h"
#include "tests/support/fixtures.h"
#include "tests/support/services.h"
#include "tests/support/sns_signer.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kBin = WAFLEET_BIN_DIR;
const std::string kScripts = std::string(WAFLEET_SOURCE_DIR) + "/scripts";

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

class ReplicatedCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* d = std::getenv("WAFLEET_TEST_KAFKA_CLUSTER");
    const char* cp = std::getenv("WAFLEET_TEST_KAFKA_CLASSPATH");
    ASSERT_TRUE(d != nullptr && *d != '\0' && cp != nullptr && *cp != '\0')
        << "needs the 3-node cluster: run through scripts/test (label 'cluster')";
    dir_ = d;
    classpath_ = cp;
    brokers_ = test::read_trimmed(dir_ + "/bootstrap");
    ASSERT_FALSE(brokers_.empty());
    // Every node up and every partition fully in sync before a test begins (a test before
    // this one may have killed a broker).
    for (int n = 1; n <= 3; ++n) {
      start_node(n);
    }
    ASSERT_TRUE(test::eventually([&] { return all_in_sync(); }, 90s)) << "cluster did not heal";
  }

  std::string node(int n) const { return dir_ + "/node" + std::to_string(n); }
  bool node_running(int n) const { return !test::read_trimmed(node(n) + "/pid").empty(); }
  void kill_node(int n) {
    std::string out;
    ASSERT_EQ(test::run_command(kScripts + "/kafka kill '" + node(n) + "'", out), 0) << out;
  }
  void start_node(int n) {
    if (node_running(n)) {
      return;
    }
    std::string out;
    ASSERT_EQ(test::run_command(kScripts + "/kafka restart '" + node(n) + "'", out), 0) << out;
  }

  kafka::ClusterState state() {
    auto s = kafka::describe_cluster({brokers_, "cluster-test", {}}, 5s);
    return s ? *s : kafka::ClusterState{};
  }
  bool all_in_sync(const std::string& only_topic = "") {
    auto s = state();
    if (s.brokers.size() != 3) {
      return false;
    }
    for (const auto& [name, parts] : s.topics) {
      if (!only_topic.empty() && name != only_topic) {
        continue;
      }
      for (const auto& p : parts) {
        if (p.leader < 0 || p.in_sync.size() < p.replicas.size()) {
          return false;
        }
      }
    }
    return true;
  }

  // A topic of the test's own, as the catalogue's are made: RF 3, min.insync.replicas=2.
  std::string make_topic(int32_t partitions) {
    const std::string name = "cluster.test." + crypto::random_hex(4);
    auto res = kafka::create_topics({brokers_, "cluster-test", {}},
                                    {{name, partitions, 3, {{"min.insync.replicas", "2"}}}}, 30s);
    EXPECT_TRUE(res.has_value() && res->size() == 1 && (*res)[0].created)
        << (res ? (*res)[0].error : res.error().message);
    EXPECT_TRUE(test::eventually([&] { return all_in_sync(name) && state().topics.count(name); }));
    return name;
  }

  std::string dir_;
  std::string classpath_;
  std::string brokers_;
};

TEST_F(ReplicatedCluster, TopicsApplyReplicatesTheCatalogueThreeTimesWithMinInsyncTwo) {
  std::string out;
  ASSERT_EQ(test::run_command(kBin + "/wafleet --kafka-brokers " + brokers_ + " topics apply", out), 0)
      << out;
  EXPECT_NE(out.find("# brokers=3 replication=3 min.insync.replicas=2"), std::string::npos) << out;
  ASSERT_EQ(test::run_command(kBin + "/wafleet --kafka-brokers " + brokers_ + " topics list", out), 0)
      << out;
  for (const auto& t : topics::catalogue()) {
    EXPECT_NE(out.find(t.name + "\tcatalogue=" + std::to_string(t.partitions) + "\tcluster=" +
                       std::to_string(t.partitions) + "\treplication=3\tunder_replicated=0"),
              std::string::npos)
        << t.name << "\n" << out;
  }
  // Kafka's own tool says the same of every catalogue topic.
  ASSERT_EQ(test::run_command("java -cp '" + classpath_ +
                                  "' org.apache.kafka.tools.TopicCommand --bootstrap-server " +
                                  brokers_ + " --describe --topic 'wa\\..*'",
                              out),
            0)
      << out;
  for (const auto& t : topics::catalogue()) {
    const auto at = out.find("Topic: " + t.name + "\t");
    ASSERT_NE(at, std::string::npos) << t.name << "\n" << out.substr(0, 3000);
    const auto line = out.substr(at, out.find('\n', at) - at);
    EXPECT_NE(line.find("ReplicationFactor: 3"), std::string::npos) << line;
    EXPECT_NE(line.find("min.insync.replicas=2"), std::string::npos) << line;
  }
  // Asking for more replicas than there are brokers is refused before the cluster is asked.
  EXPECT_NE(test::run_command(kBin + "/wafleet --kafka-brokers " + brokers_ +
                                  " topics apply --replication 4",
                              out),
            0);
  EXPECT_NE(out.find("replication 4 needs 4 brokers, the cluster has 3"), std::string::npos) << out;
}

TEST_F(ReplicatedCluster, ABrokerKilledMidLoadMovesLeadershipAndLosesNothingAcknowledged) {
  const std::string topic = make_topic(6);
  kafka::ProducerOptions po;
  po.message_timeout_ms = 60000;  // longer than an election: the producer rides it out
  auto producer = kafka::Producer::create({brokers_, "cluster-load", {}}, po);
  ASSERT_TRUE(producer.has_value());

  std::mutex mu;
  std::set<std::string> acked;
  std::atomic<int> failed{0};
  std::atomic<int> produced{0};
  std::atomic<bool> stop{false};
  std::thread load([&] {
    // ~1,000 records a second, each a distinct value, keyed like conversations.
    while (!stop.load()) {
      for (int i = 0; i < 20; ++i) {
        const int n = produced.fetch_add(1);
        const std::string value = "r" + std::to_string(n);
        (*producer)->produce(topic, "conv-" + std::to_string(n % 97), value, {},
                             [&, value](const Status& s, int32_t, int64_t) {
                               if (s) {
                                 std::lock_guard<std::mutex> lock(mu);
                                 acked.insert(value);
                               } else {
                                 failed.fetch_add(1);
                               }
                             });
      }
      std::this_thread::sleep_for(20ms);
    }
  });

  std::this_thread::sleep_for(3s);
  auto before = state();
  ASSERT_EQ(before.topics[topic].size(), 6u);
  const int victim = before.topics[topic][0].leader;
  ASSERT_GE(victim, 1);
  std::vector<int32_t> led;
  for (const auto& p : before.topics[topic]) {
    if (p.leader == victim) {
      led.push_back(p.partition);
    }
  }
  const auto killed_at = Clock::now();
  kill_node(victim);
  // The controller fences the dead broker (broker.session.timeout.ms) and elects new leaders
  // from the in-sync replicas.
  ASSERT_TRUE(test::eventually(
      [&] {
        auto s = state();
        for (const auto& p : s.topics[topic]) {
          if (p.leader < 0 || p.leader == victim) {
            return false;
          }
        }
        return !s.topics[topic].empty();
      },
      60s))
      << "leadership never moved off broker " << victim;
  const double moved_s = seconds_since(killed_at);
  std::this_thread::sleep_for(2s);  // load goes on with the broker down
  start_node(victim);
  ASSERT_TRUE(test::eventually([&] { return all_in_sync(topic); }, 90s));
  const double healed_s = seconds_since(killed_at);
  std::this_thread::sleep_for(2s);
  stop.store(true);
  load.join();
  ASSERT_TRUE((*producer)->flush(90s));

  // A second broker dies: everything acknowledged is still read back from the two left.
  const int second = victim % 3 + 1;
  kill_node(second);
  std::multiset<std::string> read;
  std::set<std::string> distinct;
  size_t acked_count = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    acked_count = acked.size();
  }
  size_t counted = 0;  // the predicate sees the whole list each time: count only what is new
  test::consume_until(brokers_, {topic},
                      [&](const std::vector<kafka::Record>& recs) {
                        for (; counted < recs.size(); ++counted) {
                          read.insert(recs[counted].value);
                          distinct.insert(recs[counted].value);
                        }
                        return distinct.size() >= acked_count;
                      },
                      90s);
  start_node(second);
  size_t missing = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& v : acked) {
      missing += distinct.count(v) == 0 ? 1 : 0;
    }
  }
  std::printf("cluster: %d produced, %zu acknowledged, %d failed; broker %d (leader of %zu of 6 "
              "partitions) killed: leadership moved in %.1f s, back in sync %.1f s after the kill; "
              "%zu acknowledged missing, %zu duplicates, read with broker %d also down\n",
              produced.load(), acked_count, failed.load(), victim, led.size(), moved_s, healed_s,
              missing, read.size() - distinct.size(), second);
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(read.size(), distinct.size()) << "the idempotent producer wrote a record twice";
  EXPECT_EQ(failed.load(), 0) << "a produce gave up although the cluster kept a quorum";
  EXPECT_EQ(acked_count, static_cast<size_t>(produced.load()));
  EXPECT_GE(acked_count, 5000u);
}

TEST_F(ReplicatedCluster, WithOneBrokerOfThreeLeftNothingIsAcknowledged) {
  const std::string topic = make_topic(1);
  kafka::ProducerOptions po;
  po.message_timeout_ms = 8000;
  auto producer = kafka::Producer::create({brokers_, "cluster-isr", {}}, po);
  ASSERT_TRUE(producer.has_value());
  auto produce_one = [&](const std::string& value) {
    std::promise<Status> done;
    (*producer)->produce(topic, "k", value, {}, [&](const Status& s, int32_t, int64_t) {
      done.set_value(s);
    });
    return done.get_future().get();
  };
  ASSERT_TRUE(produce_one("before").has_value());
  const int leader = state().topics[topic][0].leader;
  ASSERT_GE(leader, 1);
  // Both followers die: one copy could be written, but min.insync.replicas=2 and acks=all mean
  // the producer is never told it is safe.
  const int f1 = leader % 3 + 1;
  const int f2 = f1 % 3 + 1;
  kill_node(f1);
  kill_node(f2);
  auto alone = produce_one("alone");
  EXPECT_FALSE(alone.has_value()) << "acknowledged with a single copy";
  if (!alone) {
    std::printf("cluster: with brokers %d and %d down, the produce failed: %s\n", f1, f2,
                alone.error().message.c_str());
  }
  start_node(f1);
  start_node(f2);
  ASSERT_TRUE(test::eventually([&] { return all_in_sync(topic); }, 90s));
  po.message_timeout_ms = 30000;
  producer = kafka::Producer::create({brokers_, "cluster-isr-2", {}}, po);
  ASSERT_TRUE(producer.has_value());
  EXPECT_TRUE(produce_one("after").has_value());
  auto recs = test::consume_until(
      brokers_, {topic},
      [](const std::vector<kafka::Record>& rs) {
        return std::any_of(rs.begin(), rs.end(), [](const auto& r) { return r.value == "after"; });
      },
      60s);
  std::set<std::string> values;
  for (const auto& r : recs) {
    values.insert(r.value);
  }
  EXPECT_TRUE(values.count("before") && values.count("after"));
}


// ---------------------------------------------------------------------------------------------
// The fault suite: the whole fleet on the 3-node cluster while every part of it is made to fail.
// Short here (WAFLEET_FAULT_PEOPLE, WAFLEET_FAULT_BURSTS make it long: bench/run_fault_suite.sh).

using Json = nlohmann::json;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

class FaultSuite : public ReplicatedCluster {
 protected:
  static constexpr const char* kSecret = "fault-secret";
  // Per run: the cluster outlives a run, and wa.turns keeps earlier runs' turns.
  const std::string pnid_ =
      "1065403522" + std::to_string(10000 + std::stoi(crypto::random_hex(3), nullptr, 16) % 89999);
  static constexpr int kQuietMs = 1500;
  static constexpr int kRate = 40;
  static constexpr int kBurst = 5;

  void SetUp() override {
    ReplicatedCluster::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    std::string out;
    ASSERT_EQ(test::run_command(kBin + "/wafleet --kafka-brokers " + brokers_ + " topics apply", out), 0)
        << out;
    if (on_redis_cluster_) {
      redis_cluster_ = std::make_unique<test::RedisCluster>(true);
      if (HasFatalFailure() || HasFailure()) {
        return;
      }
    }
    // Every consumer group starts at the end of every topic: what an earlier run on this
    // cluster left unconsumed (requests for its number, its bulk job) is not this run's work.
    // The groups are empty now (the workers of a run before this one have left them).
    ASSERT_EQ(test::run_command("java -cp '" + classpath_ + "' kafka.admin.ConsumerGroupCommand --bootstrap-server " +
                                    brokers_ + " --all-groups --reset-offsets --to-latest --all-topics --execute 2>&1",
                                out),
              0)
        << out;
    dir_ = test::temp_dir("wafleet-fault");
    cert_ = test::make_test_cert();
    test::write_file(dir_ + "/sns.pem", cert_.cert_pem);
    receiver_port_ = test::free_port();
    url_ = "http://127.0.0.1:" + std::to_string(receiver_port_);
    emulator_ = std::make_unique<test::Process>(
        kBin + "/wafleet-graph-emulator",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--port-file", dir_ + "/emu-port",
                                 "--status-url", url_ + "/webhook", "--status-app-secret", kSecret,
                                 "--statuses", "sent,delivered"},
        std::map<std::string, std::string>{{"WAFLEET_ACCESS_TOKEN", "fault-token"}},
        dir_ + "/emulator.log");
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/emu-port").empty(); }));
    graph_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/emu-port");
    env_ = {{"WAFLEET_KAFKA_BROKERS", brokers_},
            {"WAFLEET_REDIS_URL", redis_url()},
            {"WAFLEET_APP_SECRET", kSecret},
            {"WAFLEET_ACCESS_TOKEN", "fault-token"},
            {"WAFLEET_LOG_LEVEL", std::getenv("WAFLEET_FAULT_LOG_LEVEL") ? std::getenv("WAFLEET_FAULT_LOG_LEVEL") : "warn"}};
    for (const auto& w : workers()) {
      start(w);
    }
    for (const auto& w : workers()) {
      if (w != "receiver") {
        ASSERT_TRUE(test::wait_ready(dir_ + "/" + w + "-admin", 60s)) << w << "\n" << procs_[w]->log();
      }
    }
    ASSERT_TRUE(test::eventually([&] { return http_get(url_ + "/healthz") == 200; }, 30s));
    std::this_thread::sleep_for(2s);  // the sender's second group (windows) joins too
  }

  void TearDown() override {
    if (HasFailure() && !dir_.empty()) {
      for (const auto& w : workers()) {
        if (procs_[w]) {
          std::cerr << "--- " << w << " (last 4000 bytes)\n"
                    << procs_[w]->log().substr(procs_[w]->log().size() > 4000 ? procs_[w]->log().size() - 4000 : 0);
        }
      }
    }
    for (const auto& w : workers()) {
      if (procs_[w]) {
        procs_[w]->stop();
      }
    }
    if (emulator_) {
      emulator_->stop();
    }
  }

  static std::vector<std::string> workers() {
    return {"receiver", "aggregator-1", "aggregator-2", "media", "bridge", "sender-1", "sender-2", "bulk"};
  }

  void start(const std::string& w) {
    const std::string kind = w.substr(0, w.find('-'));
    std::vector<std::string> args;
    if (kind == "receiver") {
      args = {"--listen", "127.0.0.1:" + std::to_string(receiver_port_), "--eum-sns-cert-file",
              dir_ + "/sns.pem", "--body-limit", "262144"};
    } else if (kind == "aggregator") {
      args = {"--quiet-ms", std::to_string(kQuietMs), "--max-ms", "20000", "--max-messages", "8",
              "--media-wait-ms", "20000"};
    } else if (kind == "media") {
      args = {"--graph-base", graph_, "--storage-dir", dir_ + "/media", "--transcribe-url",
              graph_ + "/v1/audio/transcriptions", "--backoff-ms", "200"};
    } else if (kind == "bridge") {
      args = {"--agent", "openai", "--agent-url", graph_ + "/v1", "--agent-model", "emu",
              "--agent-timeout-ms", "5000", "--agent-backoff-ms", "200"};
    } else if (kind == "sender") {
      args = {"--graph-base", graph_, "--number-rate", std::to_string(kRate), "--number-burst",
              std::to_string(kBurst), "--pair-interval-ms", "10", "--pair-burst", "100",
              "--backoff-ms", "200"};
    } else if (kind == "bulk") {
      args = {"--number-rate", std::to_string(kRate), "--storage-dir", dir_ + "/media", "--retry-ms", "500",
              "--portfolio-daily-limit", "10000"};  // the long run's job is past the 250 tier
    }
    std::filesystem::remove(dir_ + "/" + w + "-admin");
    args.push_back("--admin-port-file");
    args.push_back(dir_ + "/" + w + "-admin");
    procs_[w] = std::make_unique<test::Process>(kBin + "/wafleet-" + kind, args, env_,
                                                dir_ + "/" + w + "-" + std::to_string(starts_[w]++) + ".log");
  }

  static int http_get(const std::string& url) {
    auto r = http::fetch("GET", url, {}, "", 3s);
    return r ? static_cast<int>(r->status) : 0;
  }

  // POSTs a body as Meta does: signed, retried on anything but 200 (Meta retries for a day).
  // Returns the status of the first answer; arrived_at: when the accepted attempt was sent (the
  // receiver stamps the event then), not when its 200 came back.
  int post_as_meta(const std::string& raw, Clock::time_point* arrived_at = nullptr,
                   int* tries = nullptr) {
    int first = -1;
    for (int attempt = 0; attempt < 600; ++attempt) {
      const auto sent_at = Clock::now();
      auto r = http::fetch("POST", url_ + "/webhook",
                           {{"Content-Type", "application/json"},
                            {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(kSecret, raw)}},
                           raw, 15s);
      const int status = r ? static_cast<int>(r->status) : 0;
      if (first < 0) {
        first = status;
      }
      if (status == 200) {
        if (arrived_at) {
          *arrived_at = sent_at;
        }
        if (tries) {
          *tries = attempt + 1;
        }
        return first;
      }
      std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << "a webhook was never accepted";
    return first;
  }

  std::string envelope(const std::string& from, const Json& message) const {
    Json value = {{"messaging_product", "whatsapp"},
                  {"metadata", {{"display_phone_number", "15550001111"}, {"phone_number_id", pnid_}}},
                  {"contacts", {{{"profile", {{"name", "Person"}}}, {"wa_id", from}}}},
                  {"messages", {message}}};
    Json body = {{"object", "whatsapp_business_account"},
                 {"entry", {{{"id", "1"}, {"changes", {{{"value", value}, {"field", "messages"}}}}}}}};
    return body.dump();
  }

  Json emu(const std::string& method, const std::string& what, const Json& body = Json()) {
    auto r = http::fetch(method, graph_ + "/_emulator/" + what, {{"Content-Type", "application/json"}},
                         body.is_null() ? "" : body.dump(), 30s);
    EXPECT_TRUE(r && r->status == 200) << what << ": " << (r ? r->body : r.error().message);
    return r ? Json::parse(r->body, nullptr, false) : Json();
  }

  std::string dir_;
  test::TestCert cert_;
  std::string redis_url() const { return redis_cluster_ ? redis_cluster_->url() : redis_.url(); }
  void run();

  bool on_redis_cluster_ = false;  // set by FaultSuiteOnRedisCluster
  test::RedisServer redis_{true};
  std::unique_ptr<test::RedisCluster> redis_cluster_;
  std::unique_ptr<test::Process> emulator_;
  std::map<std::string, std::unique_ptr<test::Process>> procs_;
  std::map<std::string, int> starts_;
  std::map<std::string, std::string> env_;
  uint16_t receiver_port_ = 0;
  std::string url_;
  std::string graph_;
};

// The same fleet and faults with Redis as a Redis Cluster of three masters (AOF): every
// worker's keys spread over the nodes by their hash tags, and the Redis restart is a master's.
class FaultSuiteOnRedisCluster : public FaultSuite {
 protected:
  FaultSuiteOnRedisCluster() { on_redis_cluster_ = true; }
};

TEST_F(FaultSuite, TheWholeFleetUnderKillsRestartsBrokerLossAndBadInputLosesAndDoublesNothing) { run(); }

TEST_F(FaultSuiteOnRedisCluster, TheWholeFleetOnThreeRedisMastersLosesAndDoublesNothing) { run(); }

void FaultSuite::run() {
  const int people = env_int("WAFLEET_FAULT_PEOPLE", 24);
  const int bursts = env_int("WAFLEET_FAULT_BURSTS", 4);
  const int bulk_people = env_int("WAFLEET_FAULT_BULK", 200);
  // A person's bursts start this far apart (the long run spreads thousands of people thinly).
  const auto burst_every =
      std::chrono::milliseconds(std::max(kQuietMs * 3 + 2000, env_int("WAFLEET_FAULT_BURST_EVERY_MS", 0)));
  const auto started = Clock::now();

  // The bulk job, started first: it runs through everything below.
  std::string csv = "to,body.1\n";
  for (int i = 0; i < bulk_people; ++i) {
    csv += "4477009" + std::to_string(10000 + i) + ",Person " + std::to_string(i) + "\n";
  }
  test::write_file(dir_ + "/bulk.csv", csv);
  std::string out;
  ASSERT_EQ(test::run_command("WAFLEET_KAFKA_BROKERS=" + brokers_ + " WAFLEET_REDIS_URL=" + redis_url() +
                                  " WAFLEET_NUMBER_RATE=" + std::to_string(kRate) + " " + kBin +
                                  "/wafleet bulk create --file " + dir_ + "/bulk.csv --phone-number-id " +
                                  pnid_ + " --template spring_sale --language en_US 2>/dev/null",
                              out),
            0)
      << out;
  const std::string job = trim(out.substr(out.rfind("bj_") == std::string::npos ? 0 : out.rfind("bj_")));
  ASSERT_EQ(job.rfind("bj_", 0), 0u) << out;

  // Graph API faults: 5xx and throttling on some sends, slow media downloads (again each round).
  auto graph_faults = [&] {
    emu("POST", "faults", {{"endpoint", "messages"}, {"times", 6}, {"http_status", 503}});
    emu("POST", "faults", {{"endpoint", "messages"}, {"times", 6}, {"error_code", 130429}});
    emu("POST", "faults", {{"endpoint", "download"}, {"times", 8}, {"latency_ms", 3000}});
  };
  graph_faults();

  // People: bursts of texts, a photo every third burst, a voice note every fourth.
  struct Sent {
    std::string id;
    std::string person;
    int burst = 0;
    Clock::time_point arrived;
    int tries = 1;
  };
  std::mutex mu;
  std::vector<Sent> sent;
  std::atomic<bool> traffic_done{false};
  std::atomic<int> people_done{0};
  auto person_phone = [](int i) { return "4477001" + std::to_string(10000 + i); };
  auto run_person = [&](int i) {
    const std::string from = person_phone(i);
    for (int b = 0; b < bursts; ++b) {
      const auto burst_start = Clock::now();
      const int texts = 2 + (i + b) % 2;
      std::vector<Json> msgs;
      for (int t = 0; t < texts; ++t) {
        const std::string id = "wamid.f." + from + "." + std::to_string(b) + "." + std::to_string(t);
        msgs.push_back({{"from", from}, {"id", id}, {"timestamp", std::to_string(wall_clock_ms() / 1000)},
                        {"type", "text"}, {"text", {{"body", "burst " + std::to_string(b) + " part " +
                                                                 std::to_string(t) + " from " + from}}}});
      }
      if ((i + b) % 3 == 0 || (i + b) % 4 == 0) {
        const bool voice = (i + b) % 4 == 0;
        const std::string mid = (voice ? "voice-" : "img-") + from + "-" + std::to_string(b);
        auto desc = emu("POST", "media", {{"id", mid}, {"mime_type", voice ? "audio/ogg" : "image/jpeg"},
                                          {"size", voice ? 20000 : 120000}, {"seed", i * 10 + b},
                                          {"transcript", "voice " + mid}});
        Json m = {{"id", mid}, {"mime_type", voice ? "audio/ogg; codecs=opus" : "image/jpeg"},
                  {"sha256", desc.value("sha256_base64", "")}};
        const std::string type = voice ? "audio" : "image";
        if (voice) {
          m["voice"] = true;
        }
        const std::string id = "wamid.f." + from + "." + std::to_string(b) + ".m";
        msgs.push_back({{"from", from}, {"id", id}, {"timestamp", std::to_string(wall_clock_ms() / 1000)},
                        {"type", type}, {type, m}});
      }
      for (const auto& m : msgs) {
        Sent s{m["id"], from, b, {}, 1};
        post_as_meta(envelope(from, m), &s.arrived, &s.tries);
        {
          std::lock_guard<std::mutex> lock(mu);
          sent.push_back(s);
        }
        std::this_thread::sleep_for(150ms);
      }
      // Quiet long enough for the turn to close (and be answered) before the next burst.
      std::this_thread::sleep_until(burst_start + burst_every);
    }
    ++people_done;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < people; ++i) {
    threads.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(37 * i));
      run_person(i);
    });
  }

  // Faults, one after the other, while the traffic runs.
  std::vector<std::string> log;
  auto note = [&](const std::string& what) {
    log.push_back(fmt::format("{:5.1f} s  {}", seconds_since(started), what));
  };
  auto kill_restart = [&](const std::string& w) {
    procs_[w]->kill9();
    std::this_thread::sleep_for(1s);
    start(w);
    note("kill -9 " + w + ", restarted");
    std::this_thread::sleep_for(2s);
  };
  std::this_thread::sleep_for(3s);
  const char* skip_env = std::getenv("WAFLEET_FAULT_SKIP");
  const std::string skipped = skip_env ? skip_env : "";
  // One round of faults, again and again while people are still sending (the long run).
  std::map<std::string, std::string> bad;
  for (int round = 0; round == 0 || people_done < people; ++round) {
    if (round > 0) {
      graph_faults();
      note("round " + std::to_string(round + 1) + ": Graph 503 x6, 130429 x6, 8 slow downloads");
    }
    for (const auto& w : {"aggregator-1", "sender-1", "media", "bridge", "bulk", "receiver", "aggregator-2",
                          "sender-2"}) {
      if (skipped.find("workers") == std::string::npos) {
        kill_restart(w);
      }
    }
    if (skipped.find("redis") == std::string::npos) {
      if (redis_cluster_) {
        const size_t node = static_cast<size_t>(round) % redis_cluster_->size();
        redis_cluster_->restart(node);
        note("Redis Cluster master " + std::to_string(node + 1) + " of 3 restarted (AOF kept)");
      } else {
        redis_.restart();
        note("redis-server restarted (AOF kept)");
      }
    }
    std::this_thread::sleep_for(3s);
    if (round == 0) {
      // Bad input, each answered as designed and nothing of it reaching a turn.
      const std::string body = envelope(person_phone(0), {{"from", person_phone(0)}, {"id", "wamid.bad.forged"},
                                                          {"timestamp", "1750000000"}, {"type", "text"},
                                                          {"text", {{"body", "forged"}}}});
      auto r = http::fetch("POST", url_ + "/webhook",
                           {{"Content-Type", "application/json"},
                            {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("not-the-secret", body)}},
                           body, 10s);
      bad["forged signature"] = r ? std::to_string(r->status) : "no answer";
      const std::string truncated = body.substr(0, body.size() / 2);
      bad["truncated body (signed)"] = std::to_string(post_as_meta(truncated));
      const std::string huge = envelope(person_phone(0), {{"from", person_phone(0)}, {"id", "wamid.bad.huge"},
                                                          {"timestamp", "1750000000"}, {"type", "text"},
                                                          {"text", {{"body", std::string(300000, 'x')}}}});
      auto h = http::fetch("POST", url_ + "/webhook",
                           {{"Content-Type", "application/json"},
                            {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(kSecret, huge)}},
                           huge, 10s);
      bad["oversized body"] = h ? std::to_string(h->status) : "no answer";
      const std::string unknown = envelope(person_phone(1), {{"from", person_phone(1)}, {"id", "wamid.bad.unknown"},
                                                             {"timestamp", std::to_string(wall_clock_ms() / 1000)},
                                                             {"type", "hologram"}, {"hologram", {{"x", 1}}}});
      bad["unknown message type"] = std::to_string(post_as_meta(unknown));
      auto other = test::make_test_cert();
      const std::string sns = test::signed_sns_body(
          other, "Notification", test::fixture("aws_eum_sns_message_inbound_text_redacted.json"),
          "https://sns.eu-west-1.amazonaws.com/c.pem");
      auto e = http::fetch("POST", url_ + "/eum",
                           {{"Content-Type", "text/plain; charset=UTF-8"}, {"x-amz-sns-message-type", "Notification"}},
                           sns, 10s);
      bad["SNS envelope, bad signature"] = e ? std::to_string(e->status) : "no answer";
      note("bad input sent");
    }
    // Brokers: one killed and back, then another.
    // WAFLEET_FAULT_SKIP=brokers|workers|redis leaves that fault out (to tell causes apart).
    for (int n : {1, 2}) {
      if (skipped.find("brokers") != std::string::npos) {
        break;
      }
      kill_node(n);
      note("kill -9 Kafka broker " + std::to_string(n));
      std::this_thread::sleep_for(8s);
      start_node(n);
      note("broker " + std::to_string(n) + " restarted");
      ASSERT_TRUE(test::eventually([&] { return all_in_sync(); }, 90s));
    }
  }
  for (auto& t : threads) {
    t.join();
  }
  traffic_done = true;
  note("traffic done");

  // Everything settles: every message in a turn, the job done.
  std::map<std::string, std::string> turn_of;  // message id -> turn id
  std::map<std::string, std::set<std::string>> turns_with;  // message id -> every turn id holding it
  std::map<std::string, Json> turns;
  size_t counted = 0;
  test::consume_until(
      brokers_, {topics::kTurns},
      [&](const std::vector<kafka::Record>& rs) {
        for (; counted < rs.size(); ++counted) {
          auto v = Json::parse(rs[counted].value, nullptr, false);
          if (v.is_discarded() || v.value("phone_number_id", "") != pnid_) {
            continue;
          }
          turns[v["turn_id"]] = v;
          for (const auto& id : v["message_ids"]) {
            turns_with[id.get<std::string>()].insert(v["turn_id"].get<std::string>());
          }
        }
        std::lock_guard<std::mutex> lock(mu);
        return turns_with.count("wamid.bad.unknown") > 0 &&
               std::all_of(sent.begin(), sent.end(), [&](const Sent& s) { return turns_with.count(s.id) > 0; });
      },
      180s);
  std::string state;  // not an ASSERT: the figures below say what went wrong
  EXPECT_TRUE(test::eventually(
      [&] {
        std::string o;
        test::run_command("WAFLEET_REDIS_URL='" + redis_url() + "' WAFLEET_KAFKA_BROKERS=" + brokers_ + " " + kBin +
                              "/wafleet bulk show " + job,
                          o);
        auto j = Json::parse(o, nullptr, false);
        state = j.is_object() ? j.value("state", "") : o;
        return state == "COMPLETED";
      },
      180s))
      << state;
  // Replies: every turn answered (an answer may cover two turns that came during one call).
  std::this_thread::sleep_for(5s);
  auto calls = emu("GET", "calls");

  // Figures and checks.
  size_t lost = 0, in_two = 0, split = 0, retried_bursts = 0;
  std::map<std::pair<std::string, int>, std::vector<const Sent*>> by_burst;
  for (const auto& s : sent) {
    lost += turns_with.count(s.id) == 0 ? 1 : 0;
    in_two += turns_with.count(s.id) && turns_with[s.id].size() > 1 ? 1 : 0;
    by_burst[{s.person, s.burst}].push_back(&s);
  }
  for (const auto& [key, ms] : by_burst) {
    bool retried = false;
    std::set<std::string> ids;
    for (const auto* s : ms) {
      retried |= s->tries > 1;
      if (turns_with.count(s->id)) {
        ids.insert(*turns_with[s->id].begin());
      }
    }
    // A burst whose messages all arrived close together must be one turn; bursts here never
    // reach the caps (8 messages, 20 s). Not one that Meta-like resends, or a slow 200 (a
    // person here sends their next message after the last one's answer, during a broker's
    // election seconds later), spread past half the quiet time: the receiver saw two bursts.
    for (size_t k = 1; k < ms.size() && !retried; ++k) {
      retried |= ms[k]->arrived - ms[k - 1]->arrived > std::chrono::milliseconds(kQuietMs / 2);
    }
    if (retried) {
      ++retried_bursts;
    } else if (ids.size() > 1) {
      ++split;
    }
  }
  std::map<std::string, std::map<std::string, int>> replies;  // person -> reply text -> times
  std::map<std::string, int> bulk_sends;
  std::vector<std::string> bulk_doubles;
  std::vector<int64_t> send_times;
  size_t bad_at_meta = 0;
  for (const auto& c : calls) {
    if (c.value("path", "") != "/v22.0/" + pnid_ + "/messages" || c.value("status", 0) != 200) {
      continue;
    }
    const auto& b = c["body"];
    const std::string type = b.value("type", "");
    if (type == "text") {
      ++replies[b.value("to", "")][b["text"].value("body", "")];
      bad_at_meta += b["text"].value("body", "").find("forged") != std::string::npos ? 1 : 0;
    } else if (type == "template") {
      if (++bulk_sends[b.value("to", "")] == 2 && bulk_doubles.size() < 3) {
        bulk_doubles.push_back(b.value("to", ""));
      }
    } else {
      continue;  // read receipts and typing indicators are not rate-limited sends
    }
    send_times.push_back(c.value("at_ms", int64_t{0}));
  }
  // The bridge's fallback (the agent failed) is the same text every time: not a double.
  const std::string fallback = "Sorry, I can't answer right now. Please try again in a moment.";
  size_t reply_count = 0, double_replies = 0, people_answered = 0, fallbacks = 0;
  for (const auto& [who, texts] : replies) {
    people_answered += 1;
    for (const auto& [text, n] : texts) {
      reply_count += n;
      if (text == fallback) {
        fallbacks += n;
        continue;
      }
      double_replies += n > 1 ? n - 1 : 0;
      if (n > 1 && double_replies <= 3) {
        std::printf("fault suite: %s got %d times: %s\n", who.c_str(), n, text.substr(0, 160).c_str());
      }
    }
  }
  size_t double_bulk = 0;
  for (const auto& [who, n] : bulk_sends) {
    double_bulk += n > 1 ? n - 1 : 0;
  }
  // Seconds over the number's limit: any 1-second span holding more than rate + burst sends.
  std::sort(send_times.begin(), send_times.end());
  std::set<int64_t> over_seconds;
  for (size_t a = 0, z = 0; z < send_times.size(); ++z) {
    while (send_times[z] - send_times[a] >= 1000) {
      ++a;
    }
    if (z - a + 1 > static_cast<size_t>(kRate + kBurst)) {
      over_seconds.insert(send_times[z] / 1000);
    }
  }
  std::printf("fault suite (%.0f s): %d people x %d bursts, %zu messages sent (%zu bursts spread "
              "by resends or slow answers), %zu turns, %zu replies at Meta to %zu people, %zu bulk "
              "sends to %zu of %d recipients\n",
              seconds_since(started), people, bursts, sent.size(), retried_bursts, turns.size(),
              reply_count, people_answered, bulk_sends.size() + 0, bulk_sends.size(), bulk_people);
  std::printf("fault suite: lost %zu, in two turns %zu, bursts split below the caps %zu, double "
              "replies %zu (fallback answers %zu), double bulk sends %zu, seconds over the rate "
              "limit %zu\n",
              lost, in_two, split, double_replies, fallbacks, double_bulk, over_seconds.size());
  for (const auto& [what, answer] : bad) {
    std::printf("fault suite: bad input: %-28s -> %s\n", what.c_str(), answer.c_str());
  }
  for (const auto& l : log) {
    std::printf("fault suite: %s\n", l.c_str());
  }
  for (const auto& who : bulk_doubles) {
    std::printf("fault suite: bulk recipient %s was sent to more than once:\n", who.c_str());
    for (const auto& c : calls) {
      if (c["body"].is_object() && c["body"].value("to", "") == who) {
        std::printf("    at %lld status %d %s\n", static_cast<long long>(c.value("at_ms", int64_t{0})),
                    c.value("status", 0), c["body"].value("biz_opaque_callback_data", "").c_str());
      }
    }
  }
  int shown = 0;
  for (const auto& [id, ts] : turns_with) {
    if (ts.size() > 1 && shown++ < 4) {
      std::printf("fault suite: %s is in %zu turns:\n", id.c_str(), ts.size());
      for (const auto& t : ts) {
        std::printf("    %s %s\n", t.c_str(), turns[t]["message_ids"].dump().c_str());
      }
    }
  }
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(in_two, 0u);
  EXPECT_EQ(split, 0u);
  EXPECT_EQ(double_replies, 0u);
  EXPECT_EQ(double_bulk, 0u);
  EXPECT_EQ(over_seconds.size(), 0u);
  EXPECT_EQ(bulk_sends.size(), static_cast<size_t>(bulk_people));
  EXPECT_EQ(people_answered, static_cast<size_t>(people));
  EXPECT_EQ(bad["forged signature"], "401");
  EXPECT_EQ(bad["truncated body (signed)"], "200");  // dead-lettered with the reason, then 200
  EXPECT_EQ(bad["oversized body"], "413");
  EXPECT_EQ(bad["unknown message type"], "200");
  EXPECT_EQ(bad["SNS envelope, bad signature"], "401");
  EXPECT_EQ(bad_at_meta, 0u);
  EXPECT_TRUE(turns_with.count("wamid.bad.unknown")) << "an unknown type is still the person's message";
  EXPECT_FALSE(turns_with.count("wamid.bad.forged"));
  EXPECT_FALSE(turns_with.count("wamid.bad.huge"));
}

}  // namespace
}  // namespace wafleet
