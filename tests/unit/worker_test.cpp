// The worker skeleton's pure parts (common/worker.h) and every worker's typed config: options
// declared once, every problem reported at once.
#include "common/worker.h"

#include <gtest/gtest.h>

#include "workers/aggregator/worker.h"
#include "workers/media/worker.h"
#include "workers/receiver/worker.h"
#include "workers/replay/worker.h"
#include "workers/sender/worker.h"

namespace wafleet {
namespace {

struct Loaded {
  worker::Plan plan;
  std::vector<std::string> errors;
};

Loaded configure(const worker::Spec& spec, const config::EnvMap& env) {
  Loaded out;
  auto s = config::load_partial(worker::all_options(spec), env, {}, out.errors);
  out.plan = spec.configure(s, out.errors);
  return out;
}

bool has_error(const Loaded& l, const std::string& part) {
  for (const auto& e : l.errors) {
    if (e.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

const config::EnvMap kBase = {{"WAFLEET_KAFKA_BROKERS", "127.0.0.1:9092"},
                              {"WAFLEET_ACCESS_TOKEN", "t"},
                              {"WAFLEET_APP_SECRET", "s"}};

TEST(WorkerSkeleton, EveryWorkerDeclaresTheCommonOptionsOnceWithItsGroup) {
  for (const auto& spec : {media::spec(), replay::spec(), aggregator::spec(), sender::spec(),
                           receiver::spec()}) {
    std::map<std::string, int> seen;
    std::string group;
    for (const auto& o : worker::all_options(spec)) {
      ++seen[o.name];
      if (o.name == "group-id") {
        group = o.default_value;
      }
    }
    for (const auto& [name, n] : seen) {
      EXPECT_EQ(n, 1) << spec.name << " declares --" << name << " " << n << " times";
    }
    EXPECT_EQ(seen.count("admin-port-file"), 1u) << spec.name;
    EXPECT_EQ(group, spec.default_group) << spec.name;
    const Loaded l = configure(spec, kBase);
    EXPECT_TRUE(l.errors.empty()) << spec.name << ": " << (l.errors.empty() ? "" : l.errors[0]);
    EXPECT_TRUE(l.plan.build) << spec.name;
    if (!spec.default_group.empty()) {
      EXPECT_FALSE(l.plan.wiring.consumes.empty()) << spec.name;
    }
  }
}

TEST(WorkerSkeleton, TheMediaWorkerReportsEveryBadSettingAtOnce) {
  auto env = kBase;
  env["WAFLEET_STORAGE"] = "s3";
  env["WAFLEET_ATTEMPTS"] = "0";
  env["WAFLEET_MAX_IMAGE_BYTES"] = "five";
  const Loaded l = configure(media::spec(), env);
  EXPECT_TRUE(has_error(l, "WAFLEET_ATTEMPTS"));
  EXPECT_TRUE(has_error(l, "WAFLEET_MAX_IMAGE_BYTES"));
  EXPECT_TRUE(has_error(l, "WAFLEET_S3_ENDPOINT"));
  EXPECT_TRUE(has_error(l, "WAFLEET_S3_BUCKET"));
  EXPECT_GE(l.errors.size(), 5u);
  EXPECT_FALSE(l.plan.wiring.redis) << "the media worker needs no Redis";
  EXPECT_EQ(l.plan.wiring.produces, std::vector<std::string>{"wa.media"});
}

TEST(WorkerSkeleton, TheAggregatorConsumesMediaOnlyWhenItJoinsIt) {
  auto env = kBase;
  EXPECT_EQ(configure(aggregator::spec(), env).plan.wiring.consumes.size(), 2u);
  env["WAFLEET_JOIN_MEDIA"] = "false";
  EXPECT_EQ(configure(aggregator::spec(), env).plan.wiring.consumes,
            std::vector<std::string>{"wa.inbound"});
  env["WAFLEET_MODE"] = "sliding";
  env["WAFLEET_QUIET_MS"] = "0";
  const Loaded bad = configure(aggregator::spec(), env);
  EXPECT_TRUE(has_error(bad, "WAFLEET_MODE"));
  EXPECT_TRUE(has_error(bad, "window settings"));
}

TEST(WorkerSkeleton, TheReceiverNeedsASecretAndConsumesNothing) {
  config::EnvMap env = {{"WAFLEET_KAFKA_BROKERS", "127.0.0.1:9092"},
                        {"WAFLEET_HTTP_THREADS", "0"},
                        {"WAFLEET_RECEIPTS", "always"}};
  const Loaded l = configure(receiver::spec(), env);
  EXPECT_TRUE(has_error(l, "WAFLEET_APP_SECRET"));
  EXPECT_TRUE(has_error(l, "WAFLEET_HTTP_THREADS"));
  EXPECT_TRUE(has_error(l, "WAFLEET_RECEIPTS"));
  EXPECT_TRUE(l.plan.wiring.consumes.empty());
}

TEST(WorkerSkeleton, TheSenderAndReplayReadTheirPolicies) {
  auto env = kBase;
  env["WAFLEET_STOP_KEYWORDS"] = "STOP, PARAR ,,BAJA";
  env["WAFLEET_ATTEMPTS"] = "4";
  std::vector<std::string> errors;
  auto s = config::load_partial(worker::all_options(sender::spec()), env, {}, errors);
  const auto c = sender::parse_config(s, errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(c.policy.stop_keywords, (std::vector<std::string>{"STOP", "PARAR", "BAJA"}));
  EXPECT_EQ(c.retry.max_attempts, 4);

  env["WAFLEET_ERROR_CLASSES"] = "transient,flaky";
  env["WAFLEET_DELAY_MS"] = "1000";
  env["WAFLEET_MAX_DELAY_MS"] = "5000";
  errors.clear();
  auto rs = config::load_partial(worker::all_options(replay::spec()), env, {}, errors);
  const auto rc = replay::parse_config(rs, errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("'flaky'"), std::string::npos);
  EXPECT_EQ(replay::due_ms(rc, 100, 0), 1100);
  EXPECT_EQ(replay::due_ms(rc, 100, 2), 4100);
  EXPECT_EQ(replay::due_ms(rc, 100, 9), 5100) << "capped at the max delay";
}

TEST(WorkerSkeleton, SplitListTrimsAndDropsEmptyItems) {
  EXPECT_EQ(worker::split_list(" a, b ,,c,"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(worker::split_list("").empty());
  EXPECT_EQ(worker::split_list("STOP ALL"), std::vector<std::string>{"STOP ALL"});
}

}  // namespace
}  // namespace wafleet
