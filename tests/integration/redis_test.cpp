// Real redis-server: the client, the pipeline thread, scripts, and the receiver's dedupe store.
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "common/redis.h"
#include "tests/support/services.h"
#include "workers/receiver/dedupe.h"

namespace wafleet {
namespace {

test::RedisServer& server() {
  static test::RedisServer s;
  return s;
}

TEST(RedisClient, PipelinesCommandsInOneRoundTrip) {
  redis::RedisClient c(server().options());
  auto r = c.pipeline({{"SET", "k1", "v1"}, {"INCR", "n"}, {"GET", "k1"}, {"GET", "missing"},
                       {"HSET", "h", "a", std::string("\0b", 2)}, {"HGET", "h", "a"}});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(r->size(), 6u);
  EXPECT_EQ((*r)[0].str, "OK");
  EXPECT_EQ((*r)[1].type, redis::Reply::Type::kInteger);
  EXPECT_EQ((*r)[2].str, "v1");
  EXPECT_TRUE((*r)[3].is_nil());
  EXPECT_EQ((*r)[5].str, std::string("\0b", 2));  // binary-safe
}

TEST(RedisClient, ReloadsScriptsAfterScriptFlush) {
  redis::RedisClient c(server().options());
  redis::Script s("return tonumber(ARGV[1]) + 1");
  auto first = c.eval(s, {}, {"41"});
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->integer, 42);
  ASSERT_TRUE(c.command({"SCRIPT", "FLUSH"}).has_value());
  auto again = c.eval(s, {}, {"1"});  // NOSCRIPT inside, loaded and retried
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->is_error()) << again->str;
  EXPECT_EQ(again->integer, 2);
}

TEST(RedisClient, ReconnectsAfterTheConnectionIsKilled) {
  redis::RedisClient c(server().options());
  ASSERT_TRUE(c.ping().has_value());
  redis::RedisClient killer(server().options());
  ASSERT_TRUE(killer.command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}).has_value());
  // The first call may see the dead socket; the next one reconnects.
  auto first = c.ping();
  if (!first) {
    EXPECT_EQ(first.error().kind, ErrorKind::kTransient);
  }
  EXPECT_TRUE(c.ping().has_value());
}

TEST(RedisClient, UnreachableServerIsATransientError) {
  redis::Options o;
  o.port = test::free_port();
  o.connect_timeout = std::chrono::milliseconds(200);
  redis::RedisClient c(o);
  auto r = c.ping();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
}

TEST(RedisPipeline, ConcurrentJobsAllGetTheirOwnReplies) {
  redis::RedisPipeline p(server().options(), {});
  constexpr int kJobs = 400;
  std::vector<std::promise<std::string>> promises(kJobs);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kJobs; i += 4) {
        const std::string key = "pipe:" + std::to_string(i);
        p.submit({{"SET", key, std::to_string(i * 7)}, {"GET", key}},
                 [&promises, i](Result<std::vector<redis::Reply>> r) {
                   promises[static_cast<size_t>(i)].set_value(r && r->size() == 2 ? (*r)[1].str
                                                                                  : "error");
                 });
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (int i = 0; i < kJobs; ++i) {
    EXPECT_EQ(promises[static_cast<size_t>(i)].get_future().get(), std::to_string(i * 7));
  }
}

template <typename T>
T wait(std::function<void(std::function<void(T)>)> call) {
  std::promise<T> p;
  call([&](T v) { p.set_value(std::move(v)); });
  return p.get_future().get();
}

// Both claim forms: SET NX GET (Redis >= 7.0) and the Lua script (older Redis).
class RedisDedupStoreClaim : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Forms, RedisDedupStoreClaim, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "LuaScript" : "SetNxGet"; });

TEST_P(RedisDedupStoreClaim, ClaimConfirmReleaseFollowTheTokenRules) {
  server().flush_all();
  receiver::RedisDedupStore store(server().options(), 30000, 172800000, GetParam());
  using States = Result<std::vector<receiver::ClaimState>>;
  const std::vector<std::string> keys = {"t:dedupe:a", "t:dedupe:b"};
  auto first = wait<States>([&](auto cb) { store.claim(keys, "tok1", cb); });
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ((*first)[0], receiver::ClaimState::kClaimed);
  auto other = wait<States>([&](auto cb) { store.claim(keys, "tok2", cb); });
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ((*other)[0], receiver::ClaimState::kInFlightElsewhere);
  EXPECT_EQ((*other)[1], receiver::ClaimState::kInFlightElsewhere);
  auto again = wait<States>([&](auto cb) { store.claim({keys[0]}, "tok1", cb); });
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ((*again)[0], receiver::ClaimState::kClaimed);  // our own mark is still ours
  // Another token cannot release or confirm our claim.
  wait<Status>([&](auto cb) { store.release(keys, "tok2", cb); });
  wait<Status>([&](auto cb) { store.confirm({keys[0]}, "tok1", cb); });
  wait<Status>([&](auto cb) { store.release({keys[1]}, "tok1", cb); });
  auto after = wait<States>([&](auto cb) { store.claim(keys, "tok3", cb); });
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ((*after)[0], receiver::ClaimState::kAlreadyDone);
  EXPECT_EQ((*after)[1], receiver::ClaimState::kClaimed);  // released, so free again
  redis::RedisClient c(server().options());
  auto ttl = c.command({"PTTL", keys[0]});
  ASSERT_TRUE(ttl.has_value());
  EXPECT_GT(ttl->integer, 172000000);  // ~48 h once done
  auto pending_ttl = c.command({"PTTL", keys[1]});
  EXPECT_LE(pending_ttl->integer, 30000);  // a pending claim expires by itself
  EXPECT_GT(pending_ttl->integer, 0);
}

TEST_P(RedisDedupStoreClaim, ConcurrentClaimsOfOneKeyHaveExactlyOneWinner) {
  server().flush_all();
  receiver::RedisDedupStore store(server().options(), 30000, 60000, GetParam());
  std::atomic<int> winners{0};
  std::vector<std::thread> threads;
  std::atomic<int> done{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      store.claim({"t:race"}, "tok" + std::to_string(t),
                  [&](Result<std::vector<receiver::ClaimState>> r) {
                    if (r && (*r)[0] == receiver::ClaimState::kClaimed) {
                      ++winners;
                    }
                    ++done;
                  });
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_TRUE(test::eventually([&] { return done.load() == 16; }));
  EXPECT_EQ(winners.load(), 1);
}

TEST(RedisDedupStore, RedisDownFailsTheClaimInsteadOfPassingIt) {
  redis::Options o;
  o.port = test::free_port();
  o.connect_timeout = std::chrono::milliseconds(100);
  receiver::RedisDedupStore store(o, 1000, 1000);
  auto r = wait<Result<std::vector<receiver::ClaimState>>>(
      [&](auto cb) { store.claim({"x"}, "t", cb); });
  EXPECT_FALSE(r.has_value());
  EXPECT_FALSE(store.healthy());
}

}  // namespace
}  // namespace wafleet
