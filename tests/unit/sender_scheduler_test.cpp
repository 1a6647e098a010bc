#include "workers/sender/scheduler.h"

#include <gtest/gtest.h>

namespace wafleet::sender {
namespace {

kafka::Record rec(int32_t partition, int64_t offset, const std::string& person) {
  kafka::Record r;
  r.topic = "wa.outbound";
  r.partition = partition;
  r.offset = offset;
  r.key = "106540352242922:" + person;
  return r;
}

Request req(const std::string& id, Priority p = Priority::kReply) {
  Request r;
  r.request_id = id;
  r.priority = p;
  return r;
}

TEST(SenderScheduler, APersonWaitingHoldsOnlyTheirOwnMessages) {
  Scheduler s;
  s.add(rec(0, 10, "ana"), req("a1"), false);
  s.add(rec(0, 11, "ana"), req("a2"), false);
  s.add(rec(0, 12, "ben"), req("b1"), false);
  Item* first = s.pick(0);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->request.request_id, "a1");
  s.defer(first, 6'000'000);  // Ana's pair budget: 6 s
  Item* next = s.pick(1);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->request.request_id, "b1") << "Ben goes; Ana's second message stays behind her first";
  EXPECT_EQ(s.done(next), 10) << "offset 10 is still queued: nothing past it is committed";
  EXPECT_EQ(s.pick(2), nullptr);
  EXPECT_EQ(s.next_ready_us(), 6'000'000);
  Item* again = s.pick(6'000'000);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->request.request_id, "a1");
  EXPECT_EQ(s.done(again), 11);
  Item* last = s.pick(6'000'001);
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->request.request_id, "a2");
  EXPECT_EQ(s.done(last), 13);
  EXPECT_TRUE(s.empty());
}

TEST(SenderScheduler, RepliesGoBeforeBulkThenTheOldestFirst) {
  Scheduler s;
  s.add(rec(0, 1, "p1"), req("bulk-1", Priority::kBulk), false);
  s.add(rec(1, 1, "p2"), req("bulk-2", Priority::kBulk), false);
  s.add(rec(0, 2, "p3"), req("reply-1"), false);
  s.add(rec(2, 7, "p4"), req("reply-2"), false);
  std::vector<std::string> order;
  while (Item* i = s.pick(0)) {
    order.push_back(i->request.request_id);
    s.done(i);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"reply-1", "reply-2", "bulk-1", "bulk-2"}));
}

TEST(SenderScheduler, ARevokedPartitionTakesItsQueuedRecordsAlong) {
  Scheduler s;
  s.add(rec(3, 5, "ana"), req("a"), false);
  s.add(rec(4, 9, "ben"), req("b"), false);
  s.drop_partition(3);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_FALSE(s.committable(3).has_value());
  Item* i = s.pick(0);
  ASSERT_NE(i, nullptr);
  EXPECT_EQ(i->request.request_id, "b");
  EXPECT_EQ(s.done(i), 10);
}

TEST(SenderScheduler, InvalidRequestsKeepTheirPlaceAndTheirReason) {
  Scheduler s;
  s.add(rec(0, 1, "ana"), Request{}, false, "text.body: required");
  s.add(rec(0, 2, "ana"), req("ok"), true);
  Item* i = s.pick(0);
  ASSERT_NE(i, nullptr);
  EXPECT_EQ(i->invalid, "text.body: required");
  EXPECT_EQ(s.done(i), 2);
  Item* j = s.pick(0);
  ASSERT_NE(j, nullptr);
  EXPECT_TRUE(j->replay);
}

}  // namespace
}  // namespace wafleet::sender
