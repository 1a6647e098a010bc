// The sender's outcome rules (dispatch.h): what one try of a queued request leads to.
#include "workers/sender/dispatch.h"

#include <gtest/gtest.h>

namespace wafleet::sender {
namespace {

Item item_for(const std::string& id, int attempts = 0) {
  Item it;
  it.record.topic = "wa.outbound";
  it.record.key = "106540352242922:15550100001";
  it.request.request_id = id;
  it.request.idempotency_key = "key-" + id;
  it.request.phone_number_id = "106540352242922";
  it.request.to = "15550100001";
  it.request.type = "text";
  it.attempts = attempts;
  return it;
}

const RetryPolicy kPolicy{3, std::chrono::milliseconds(100), std::chrono::milliseconds(250)};

TEST(SenderDispatch, SentGivesItsResultAndFinishes) {
  const Item it = item_for("r1");
  Result<Outcome> out = Outcome{"sent", "wamid.X", 0, ""};
  const Effects fx = decide(it, out, kPolicy, 1000, 5);
  ASSERT_TRUE(fx.result);
  EXPECT_EQ((*fx.result)["status"], "sent");
  EXPECT_EQ((*fx.result)["wamid"], "wamid.X");
  EXPECT_EQ((*fx.result)["idempotency_key"], "key-r1");
  EXPECT_EQ((*fx.result)["attempts"], 1);
  EXPECT_FALSE(fx.dead_letter);
  EXPECT_TRUE(fx.finished());
}

TEST(SenderDispatch, AShortPairBudgetDefersOnlyThisPersonAndCountsNoAttempt) {
  const Item it = item_for("r1", 1);
  Outcome wait{"wait", "", 0, ""};
  wait.wait.pair = std::chrono::microseconds(6'000'000);
  const Effects fx = decide(it, Result<Outcome>(wait), kPolicy, 1000, 5);
  ASSERT_TRUE(fx.defer_until_us);
  EXPECT_EQ(*fx.defer_until_us, 6'001'000);
  EXPECT_EQ(fx.number_blocked_until_us, 0) << "the number's budget is fine: others may go";
  EXPECT_EQ(fx.attempts, 1) << "a wait is not a try";
  EXPECT_FALSE(fx.result);
  EXPECT_FALSE(fx.finished());
}

TEST(SenderDispatch, AShortNumberBudgetHoldsEveryone) {
  Outcome wait{"wait", "", 0, ""};
  wait.wait.number = std::chrono::microseconds(12'500);
  const Effects fx = decide(item_for("r1"), Result<Outcome>(wait), kPolicy, 1000, 5);
  EXPECT_EQ(fx.number_blocked_until_us, 13'500);
  EXPECT_EQ(*fx.defer_until_us, 13'500);
}

TEST(SenderDispatch, TransientErrorsBackOffDoublingThenFailWithResultAndDeadLetter) {
  Result<Outcome> err = Unexpected(Error::transient("(#130429) Rate limit hit"));
  const Effects first = decide(item_for("r1", 0), err, kPolicy, 0, 5);
  EXPECT_EQ(*first.defer_until_us, 100'000);
  EXPECT_EQ(first.attempts, 1);
  const Effects second = decide(item_for("r1", 1), err, kPolicy, 0, 5);
  EXPECT_EQ(*second.defer_until_us, 200'000);
  const Effects last = decide(item_for("r1", 2), err, kPolicy, 0, 5);
  EXPECT_FALSE(last.defer_until_us) << "three tries is the policy";
  ASSERT_TRUE(last.result);
  ASSERT_TRUE(last.dead_letter);
  EXPECT_EQ((*last.result)["status"], "failed");
  EXPECT_EQ((*last.result)["error"]["code"], 130429);
  EXPECT_EQ((*last.result)["error"]["class"], "transient");
  EXPECT_EQ((*last.result)["attempts"], 3);
  EXPECT_TRUE(last.finished());
  EXPECT_EQ(kPolicy.backoff(5).count(), 250) << "capped";
}

TEST(SenderDispatch, APermanentErrorFailsAtOnce) {
  Result<Outcome> err = Unexpected(Error::permanent("(#131026) Message undeliverable"));
  const Effects fx = decide(item_for("r1"), err, kPolicy, 0, 5);
  ASSERT_TRUE(fx.result);
  EXPECT_EQ((*fx.result)["error"]["code"], 131026);
  EXPECT_EQ((*fx.result)["error"]["class"], "permanent");
  EXPECT_EQ((*fx.result)["to"], "15550100001");
  EXPECT_TRUE(fx.dead_letter);
}

TEST(SenderDispatch, AFatalErrorStopsWithoutAResult) {
  Result<Outcome> err = Unexpected(Error::fatal("redis script missing"));
  const Effects fx = decide(item_for("r1"), err, kPolicy, 0, 5);
  EXPECT_TRUE(fx.fatal);
  EXPECT_FALSE(fx.result);
  EXPECT_FALSE(fx.dead_letter);
  EXPECT_FALSE(fx.finished());
}

TEST(SenderDispatch, UncertainIsPublishedAndKeptForAnOperator) {
  Result<Outcome> out = Outcome{"uncertain", "", 0, "claimed by another sender that crashed"};
  const Effects fx = decide(item_for("r1"), out, kPolicy, 0, 5);
  EXPECT_EQ((*fx.result)["status"], "uncertain");
  ASSERT_TRUE(fx.dead_letter);
  EXPECT_EQ(fx.dead_letter->kind, ErrorKind::kPermanent);
  EXPECT_TRUE(fx.dead_letter->message.starts_with("uncertain: "));
}

TEST(SenderDispatch, ARefusedRequestStillNamesItsKeyAndRecipient) {
  Item it;
  it.record.value =
      R"({"request_id":"r9","phone_number_id":"106540352242922","recipient":"US.13491208655302741918",)"
      R"("type":"text","text":{"body":""}})";
  it.invalid = "text.body: empty";
  const Effects fx = decide_invalid(it, 5);
  ASSERT_TRUE(fx.result);
  EXPECT_EQ((*fx.result)["status"], "failed");
  EXPECT_EQ((*fx.result)["request_id"], "r9");
  EXPECT_EQ((*fx.result)["idempotency_key"], "r9") << "defaults to the request id";
  EXPECT_EQ((*fx.result)["recipient"], "US.13491208655302741918");
  EXPECT_EQ((*fx.result)["phone_number_id"], "106540352242922");
  EXPECT_EQ((*fx.result)["error"]["class"], "invalid_input");
  EXPECT_EQ((*fx.result)["error"]["message"], "text.body: empty");
  ASSERT_TRUE(fx.dead_letter);
  EXPECT_EQ(fx.dead_letter->kind, ErrorKind::kInvalidInput);
}

TEST(SenderDispatch, ARecordThatIsNotJsonFailsByItsHeaderRequestId) {
  Item it;
  it.record.value = "not json";
  it.record.headers = {{"request_id", "r10"}};
  it.invalid = "value is not JSON";
  const Effects fx = decide_invalid(it, 5);
  EXPECT_EQ((*fx.result)["request_id"], "r10");
  EXPECT_EQ((*fx.result)["idempotency_key"], "r10");
}

}  // namespace
}  // namespace wafleet::sender
