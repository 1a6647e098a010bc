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

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/kafka.h"
#include "tests/support/services.h"
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

}  // namespace
}  // namespace wafleet
