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

// A job of these rows (a CSV with a `to` column), created in the store; its id.
std::string create_job(Store& store, const std::string& csv) {
  auto table = read_table(csv);
  EXPECT_TRUE(table);
  JobSpec spec;
  spec.id = new_job_id();
  spec.phone_number_id = "111";
  spec.template_name = "t";
  spec.language = "en";
  EXPECT_TRUE(store.create(spec, validate(table ? *table : Table{}, spec), 1000));
  return spec.id;
}

// A copy held by a pause waits in bulk:later; when another copy of the same recipient (released
// earlier, under the same key) is sent, the recipient must leave bulk:later, or the job waits for
// it for ever and never completes (seen at 1,000/s with a 2 s release window).
TEST(BulkStore, ARecipientSentWhileAHeldCopyWaitsLeavesTheLaterSet) {
  redis::RedisClient redis(server().options());
  Store store(redis);
  const std::string job = create_job(store, "to\n447700900001\n447700900002\n");
  auto applied = store.apply({{job, 0, Op::kRelease, 0, 1000, "", 0, "", 0},
                              {job, 0, Op::kDefer, 0, 1100, "", 0, "held by the pause", 5000},
                              {job, 0, Op::kSent, 0, 1200, "wamid.1", 0, "", 0},
                              {job, 0, Op::kDelivered, 0, 1300, "wamid.1", 0, "", 0}});
  ASSERT_TRUE(applied) << applied.error().message;
  auto waiting = store.waiting(job);
  ASSERT_TRUE(waiting);
  EXPECT_EQ(*waiting, 0);
  auto inflight = store.in_flight(job);
  ASSERT_TRUE(inflight);
  EXPECT_EQ(*inflight, 0);
  // One left behind by an older version is dropped when it falls due.
  ASSERT_TRUE(store.apply({{job, 1, Op::kDefer, 0, 1400, "", 0, "held by the pause", 1500}}));
  ASSERT_TRUE(redis.command({"HSET", "bulk:st:{" + job + "}", "1",
                             R"({"a":1,"s":"delivered","w":"wamid.2"})"}));
  auto due = store.due(job, 2000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 1u);
  ASSERT_TRUE(store.drop_waiting(job, *due));
  EXPECT_EQ(*store.waiting(job), 0);
}

// Erasure: the person's rows in every job become tombstones (only the line is left), their
// status loses the wamid, their rejected rows what was written; other people's rows stay.
TEST(BulkStore, ErasingAPersonLeavesOnlyTheirLinesInEveryJob) {
  server().flush_all();  // erasure looks through every job in Redis: only this test's
  redis::RedisClient redis(server().options());
  Store store(redis);
  std::vector<std::string> jobs;
  for (int n = 0; n < 2; ++n) {
    const std::string job = create_job(store, "to\n447700900001\n447700900002\n+44 7700 900001\nnot-a-number\n");
    ASSERT_TRUE(store.apply({{job, 0, Op::kRelease, 0, 1000, "", 0, "", 0},
                             {job, 0, Op::kSent, 0, 1200, "wamid.ana", 0, "", 0},
                             {job, 1, Op::kRelease, 0, 1000, "", 0, "", 0},
                             {job, 1, Op::kSent, 0, 1200, "wamid.ben", 0, "", 0}}));
    jobs.push_back(job);
  }
  auto erased = store.erase_people({"447700900001"});
  ASSERT_TRUE(erased) << erased.error().message;
  EXPECT_EQ(erased->jobs.size(), 2u);
  EXPECT_EQ(erased->rows, 4);  // in each job: the recipient and the duplicate row
  for (const auto& id : jobs) {
    auto rs = store.recipients(id, 0, 2);
    ASSERT_TRUE(rs) << rs.error().message;
    ASSERT_EQ(rs->size(), 2u);
    EXPECT_TRUE((*rs)[0].erased);
    EXPECT_TRUE((*rs)[0].identity().empty());
    EXPECT_EQ((*rs)[0].line, 2u);
    EXPECT_EQ((*rs)[1].identity(), "447700900002");
    auto sts = store.statuses(id, 0, 2);
    ASSERT_TRUE(sts);
    EXPECT_EQ(sts->at(0).status, Phase::kSent);
    EXPECT_TRUE(sts->at(0).wamid.empty());
    EXPECT_EQ(sts->at(1).wamid, "wamid.ben");
    auto job = store.job(id);
    ASSERT_TRUE(job && *job);
    std::vector<Store::ReportRow> rows;
    ASSERT_TRUE(store.each_report_row(**job, [&](const Store::ReportRow& r) { rows.push_back(r); }));
    ASSERT_EQ(rows.size(), 4u);
    std::string all;
    for (const auto& r : rows) {
      all += r.to + "|" + r.reason + "|" + r.wamid + ";";
    }
    EXPECT_EQ(all.find("900001"), std::string::npos) << all;
    EXPECT_NE(all.find("not-a-number"), std::string::npos) << all;  // not theirs: kept
    EXPECT_NE(all.find("duplicate: erased"), std::string::npos) << all;
  }
  // A second erasure finds nothing more.
  auto again = store.erase_people({"447700900001"});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->rows, 0);
}

}  // namespace
}  // namespace wafleet::bulk
