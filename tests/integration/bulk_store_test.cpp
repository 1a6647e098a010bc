// The bulk job's per-recipient script against a real redis-server (workers/bulk/store.cpp).
#include <gtest/gtest.h>

#include "tests/support/services.h"
#include "workers/bulk/job.h"
#include "workers/bulk/store.h"

namespace wafleet::bulk {
namespace {

test::RedisServer& server() {
  static test::RedisServer s;
  return s;
}

// A copy held by a pause waits in bulk:later; when another copy of the same recipient (released
// earlier, under the same key) is sent, the recipient must leave bulk:later, or the job waits for
// it for ever and never completes (seen at 1,000/s with a 2 s release window).
TEST(BulkStore, ARecipientSentWhileAHeldCopyWaitsLeavesTheLaterSet) {
  redis::RedisClient redis(server().options());
  Store store(redis);
  auto table = read_table("to\n447700900001\n447700900002\n");
  ASSERT_TRUE(table);
  JobSpec spec;
  spec.id = new_job_id();
  spec.phone_number_id = "111";
  spec.template_name = "t";
  spec.language = "en";
  ASSERT_TRUE(store.create(spec, validate(*table, spec), 1000));
  auto applied = store.apply({{spec.id, 0, Op::kRelease, 0, 1000, "", 0, "", 0},
                              {spec.id, 0, Op::kDefer, 0, 1100, "", 0, "held by the pause", 5000},
                              {spec.id, 0, Op::kSent, 0, 1200, "wamid.1", 0, "", 0},
                              {spec.id, 0, Op::kDelivered, 0, 1300, "wamid.1", 0, "", 0}});
  ASSERT_TRUE(applied) << applied.error().message;
  auto waiting = store.waiting(spec.id);
  ASSERT_TRUE(waiting);
  EXPECT_EQ(*waiting, 0);
  auto inflight = store.in_flight(spec.id);
  ASSERT_TRUE(inflight);
  EXPECT_EQ(*inflight, 0);
  // One left behind by an older version is dropped when it falls due.
  ASSERT_TRUE(store.apply({{spec.id, 1, Op::kDefer, 0, 1400, "", 0, "held by the pause", 1500}}));
  ASSERT_TRUE(redis.command({"HSET", "bulk:st:{" + spec.id + "}", "1",
                             R"({"a":1,"s":"delivered","w":"wamid.2"})"}));
  auto due = store.due(spec.id, 2000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 1u);
  ASSERT_TRUE(store.drop_waiting(spec.id, *due));
  EXPECT_EQ(*store.waiting(spec.id), 0);
}

}  // namespace
}  // namespace wafleet::bulk
