// A real Redis Cluster (three redis-server masters in cluster mode): the client routes every
// command by its key's slot, one round trip per node, follows MOVED and ASK while a slot
// migrates, and loads scripts on every master.
#include <future>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "common/redis.h"
#include "tests/support/services.h"
#include "workers/bulk/store.h"
#include "workers/receiver/dedupe.h"
#include "workers/sender/conversations.h"
#include "workers/sender/request.h"

namespace wafleet {
namespace {

test::RedisCluster& cluster() {
  static test::RedisCluster c;
  return c;
}

redis::Options cluster_options() {
  auto o = redis::parse_url(cluster().url());
  EXPECT_TRUE(o.has_value());
  return *o;
}

TEST(RedisClusterUrl, ListsEverySeedAndRefusesADatabaseNumber) {
  auto o = redis::parse_url("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001,redis-3");
  ASSERT_TRUE(o.has_value()) << o.error().message;
  EXPECT_TRUE(o->cluster);
  ASSERT_EQ(o->seeds.size(), 3u);
  EXPECT_EQ(o->seeds[1].host, "10.0.0.2");
  EXPECT_EQ(o->seeds[1].port, 7001);
  EXPECT_EQ(o->seeds[2].port, 6379);
  EXPECT_EQ(o->password, "pw");
  EXPECT_FALSE(redis::parse_url("redis+cluster://10.0.0.1:7000/2").has_value());
  EXPECT_FALSE(redis::parse_url("redis://10.0.0.1:7000,10.0.0.2:7001").has_value());
  EXPECT_FALSE(redis::parse_url("rediss+cluster://10.0.0.1:7000").has_value());
}

TEST(RedisCluster, KeySlotIsTheServersSlotHashTagsIncluded) {
  redis::RedisClient node(cluster().node(0));
  for (const std::string key : {"", "a", "foo", "{user1000}.following", "{user1000}.followers", "foo{}{bar}",
                                "foo{{bar}}zap", "foo{bar}{zap}", "agg:{wa.inbound:7}:epoch",
                                "snd:win:{106540352242922}:15550001111", "{", "}{", "x{y"}) {
    auto r = node.command({"CLUSTER", "KEYSLOT", key});
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(redis::key_slot(key), r->integer) << key;
  }
}

TEST(RedisCluster, OnePipelineReadsAndWritesKeysOnEveryNodeInOrder) {
  redis::RedisClient c(cluster_options());
  std::vector<redis::Command> sets, gets;
  for (int i = 0; i < 300; ++i) {
    sets.push_back({"SET", "pipe:{" + std::to_string(i) + "}", "v" + std::to_string(i)});
    gets.push_back({"GET", "pipe:{" + std::to_string(i) + "}"});
  }
  ASSERT_TRUE(c.pipeline_ok(sets).has_value());
  auto r = c.pipeline(gets);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ((*r)[static_cast<size_t>(i)].str, "v" + std::to_string(i));
  }
  // Each key lives on the node owning its slot, and every node holds some.
  size_t total = 0;
  for (size_t n = 0; n < cluster().size(); ++n) {
    redis::RedisClient node(cluster().node(n));
    auto keys = node.command({"KEYS", "pipe:*"});
    ASSERT_TRUE(keys.has_value());
    EXPECT_GT(keys->elements.size(), 50u) << "node " << n;
    total += keys->elements.size();
  }
  EXPECT_EQ(total, 300u);
}

TEST(RedisCluster, ScriptsRunWhereTheirKeysLiveAndReloadOnEveryMasterAfterAFlush) {
  redis::RedisClient c(cluster_options());
  redis::Script incr("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  std::vector<redis::Command> cmds;
  for (int i = 0; i < 60; ++i) {
    cmds.push_back(incr.evalsha({"script:{" + std::to_string(i) + "}"}, {"2"}));
  }
  auto first = c.pipeline(cmds, {&incr});
  ASSERT_TRUE(first.has_value()) << first.error().message;
  for (const auto& r : *first) {
    EXPECT_EQ(r.integer, 2) << r.str;
  }
  for (size_t n = 0; n < cluster().size(); ++n) {
    redis::RedisClient node(cluster().node(n));
    ASSERT_TRUE(node.command({"SCRIPT", "FLUSH"}).has_value());
  }
  auto again = c.pipeline(cmds, {&incr});  // NOSCRIPT on every node: loaded on each, run again
  ASSERT_TRUE(again.has_value()) << again.error().message;
  for (const auto& r : *again) {
    EXPECT_EQ(r.integer, 4) << r.str;
  }
  // Keys of two slots in one script: Redis refuses it, and the refusal is the reply.
  redis::Script two("return redis.call('GET', KEYS[2])");
  auto cross = c.eval(two, {"a:{1}", "a:{2}"}, {});
  ASSERT_TRUE(cross.has_value());
  EXPECT_TRUE(cross->is_error());
  EXPECT_NE(cross->str.find("CROSSSLOT"), std::string::npos) << cross->str;
}

// A slot moved from one master to another by hand, as `redis-cli --cluster reshard` does: while
// it migrates, a key already moved is reached by ASK; once it belongs to the new node, MOVED
// updates the client's map. Nothing the client wrote is lost or answered wrongly.
TEST(RedisCluster, AKeyMidMigrationIsFoundByAskAndAfterItByMoved) {
  redis::RedisClient c(cluster_options());
  const std::string moved_key = "migrate:{slot-a}", stay_key = "migrate:{slot-a}:stays";
  const auto slot = redis::key_slot(moved_key);
  ASSERT_TRUE(c.pipeline_ok({{"SET", moved_key, "moved"}, {"SET", stay_key, "stays"}}).has_value());
  size_t from = cluster().size();
  for (size_t n = 0; n < cluster().size(); ++n) {
    redis::RedisClient node(cluster().node(n));
    auto r = node.command({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)});
    if (r && r->integer == 2) {
      from = n;
    }
  }
  ASSERT_LT(from, cluster().size());
  const size_t to = (from + 1) % cluster().size();
  redis::RedisClient src(cluster().node(from)), dst(cluster().node(to));
  const std::string s = std::to_string(slot);
  ASSERT_FALSE(dst.command({"CLUSTER", "SETSLOT", s, "IMPORTING", cluster().node_id(from)})->is_error());
  ASSERT_FALSE(src.command({"CLUSTER", "SETSLOT", s, "MIGRATING", cluster().node_id(to)})->is_error());
  auto migrated = src.command({"MIGRATE", "127.0.0.1", std::to_string(cluster().node(to).port), moved_key, "0",
                               "5000"});
  ASSERT_TRUE(migrated.has_value());
  ASSERT_EQ(migrated->str, "OK");
  // Mid-migration: the source answers ASK for the key it gave away, and serves the other.
  auto mid = c.pipeline({{"GET", moved_key}, {"GET", stay_key}});
  ASSERT_TRUE(mid.has_value()) << mid.error().message;
  EXPECT_EQ((*mid)[0].str, "moved");
  EXPECT_EQ((*mid)[1].str, "stays");
  ASSERT_EQ(src.command({"MIGRATE", "127.0.0.1", std::to_string(cluster().node(to).port), stay_key, "0",
                         "5000"})->str,
            "OK");
  for (size_t n = 0; n < cluster().size(); ++n) {
    redis::RedisClient node(cluster().node(n));
    ASSERT_FALSE(node.command({"CLUSTER", "SETSLOT", s, "NODE", cluster().node_id(to)})->is_error());
  }
  // After it: the client's map still says `from`; MOVED sends it to `to`, reads and writes.
  auto after = c.pipeline({{"GET", moved_key}, {"SET", stay_key, "written after"}, {"GET", stay_key}});
  ASSERT_TRUE(after.has_value()) << after.error().message;
  EXPECT_EQ((*after)[0].str, "moved");
  EXPECT_EQ((*after)[2].str, "written after");
  auto on_dst = dst.command({"CLUSTER", "COUNTKEYSINSLOT", s});
  EXPECT_EQ(on_dst->integer, 2);
}

TEST(RedisCluster, TheReceiversClaimsHaveOneWinnerPerKeyAcrossTheNodes) {
  receiver::RedisDedupStore store(cluster_options(), 30000, 60000);
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) {
    keys.push_back("wamid.cluster." + std::to_string(i));
  }
  auto claim = [&](const std::string& token) {
    std::promise<Result<std::vector<receiver::ClaimState>>> p;
    auto f = p.get_future();
    store.claim(keys, token, [&](Result<std::vector<receiver::ClaimState>> r) { p.set_value(std::move(r)); });
    return f.get();
  };
  auto first = claim("t1");
  ASSERT_TRUE(first.has_value()) << first.error().message;
  auto second = claim("t2");
  ASSERT_TRUE(second.has_value()) << second.error().message;
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ((*first)[i], receiver::ClaimState::kClaimed);
    EXPECT_NE((*second)[i], receiver::ClaimState::kClaimed);
  }
}

// The bulk budget's keys live in the portfolio's slot, a person's window in the number's: the
// budget still counts only people outside their window, each once.
TEST(RedisCluster, TheBulkBudgetChargesEachPersonOnceAndNobodyInsideTheirWindow) {
  redis::RedisClient c(cluster_options());
  bulk::Store store(c);
  const std::string pnid = "10654035224" + std::to_string(std::rand() % 1000);
  ASSERT_TRUE(c.command({"SET", "snd:win:{" + pnid + "}:447700900004", "1", "PX", "60000"}).has_value());
  const int64_t now = 1'000'000'000;
  auto r = store.charge_reach("portfolio-" + pnid, pnid,
                              {"447700900001", "447700900002", "447700900004", "447700900001", "447700900003"},
                              now, 86'400'000, 2);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(r->size(), 5u);
  EXPECT_TRUE((*r)[0].allowed);
  EXPECT_TRUE((*r)[1].allowed);
  EXPECT_TRUE((*r)[2].allowed) << "inside their own window: free";
  EXPECT_TRUE((*r)[3].allowed) << "reached already: free";
  EXPECT_FALSE((*r)[4].allowed) << "the budget of 2 is spent";
  EXPECT_EQ((*r)[4].retry_at_ms, now + 86'400'000);
  auto reached = store.reached("portfolio-" + pnid, now, 86'400'000);
  ASSERT_TRUE(reached.has_value());
  EXPECT_EQ(*reached, 2);
}

// The sender's inbound side writes a person's window; its send side, on another connection,
// finds it and lets a free-form reply through.
TEST(RedisCluster, TheWindowThePersonOpenedLetsTheSendersReplyThrough) {
  redis::RedisClient inbound(cluster_options()), sending(cluster_options());
  sender::Conversations learn(inbound, sender::PolicyOptions{}), judge(sending, sender::PolicyOptions{});
  const int64_t now = 1'800'000'000'000;
  WebhookEvent e;
  e.kind = EventKind::kMessage;
  e.phone_number_id = "106540352242922";
  e.wa_id = "447700900123";
  e.type = "text";
  e.message_id = "wamid.cluster.window";
  e.timestamp = (now - 60'000) / 1000;
  e.raw = {{"type", "text"}, {"text", {{"body", "hello"}}}};
  auto reply = sender::parse_request({{"request_id", "r1"}, {"phone_number_id", "106540352242922"},
                                      {"to", "+447700900123"}, {"type", "text"}, {"text", {{"body", "hi"}}}});
  ASSERT_TRUE(reply.has_value());
  auto before = judge.refusal(*reply, now);
  ASSERT_TRUE(before.has_value()) << before.error().message;
  EXPECT_TRUE(before->has_value()) << "nobody wrote yet: refused";
  ASSERT_TRUE(learn.on_inbound(e).has_value());
  auto after = judge.refusal(*reply, now);
  ASSERT_TRUE(after.has_value()) << after.error().message;
  EXPECT_FALSE(after->has_value()) << **after;
}

// A master away: the other masters answer CLUSTERDOWN once they see it gone, and the client
// fails the call as transient (never hands the error text over as a value); back, it serves.
TEST(RedisCluster, AMasterAwayFailsCallsAsTransientAndItsReturnHealsThem) {
  redis::RedisClient c(cluster_options());
  std::string key;
  for (int i = 0; key.empty(); ++i) {  // a key of the first node's slots
    const std::string k = "away:{" + std::to_string(i) + "}";
    key = redis::key_slot(k) < 16384 / 3 ? k : "";
  }
  ASSERT_TRUE(c.command({"SET", key, "kept"}).has_value());
  cluster().stop(2);
  redis::RedisClient first(cluster().node(0));
  ASSERT_TRUE(test::eventually(
      [&] {
        auto info = first.command({"CLUSTER", "INFO"});
        return info && info->str.find("cluster_state:fail") != std::string::npos;
      },
      std::chrono::seconds(20)));
  auto down = c.command({"GET", key});
  ASSERT_FALSE(down.has_value()) << down->str;
  EXPECT_EQ(down.error().kind, ErrorKind::kTransient);
  EXPECT_NE(down.error().message.find("CLUSTERDOWN"), std::string::npos) << down.error().message;
  cluster().start(2);
  ASSERT_TRUE(test::eventually(
      [&] {
        auto back = c.command({"GET", key});
        return back && back->str == "kept";
      },
      std::chrono::seconds(20)));
}

TEST(RedisCluster, PingAsksEveryMaster) {
  redis::RedisClient c(cluster_options());
  EXPECT_TRUE(c.ping().has_value());
  redis::Options gone = cluster_options();
  gone.seeds = {{"127.0.0.1", test::free_port()}};
  redis::RedisClient nobody(gone);
  auto r = nobody.ping();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("slot map"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace wafleet
