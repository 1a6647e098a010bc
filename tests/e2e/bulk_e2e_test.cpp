// Bulk campaigns end to end, binaries as processes: the receiver (status webhooks), the sender
// and wafleet-bulk on the dev broker and a real redis-server; the Graph API emulator as Meta,
// posting status webhooks back to the receiver as Meta does. Jobs are made and driven with the
// `wafleet bulk` CLI. What a person got is what the emulator's /messages accepted.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/http_client.h"
#include "common/pg.h"
#include "tests/support/services.h"
#include "workers/store/db.h"

namespace wafleet {
namespace {

using Json = nlohmann::json;
const std::string kBin = WAFLEET_BIN_DIR;

class BulkE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("wafleet-bulk-e2e");
    pnid_ = "6" + std::to_string(100000 + std::rand() % 800000);
    broker_ = std::make_unique<test::Process>(
        kBin + "/wafleet-devbroker", std::vector<std::string>{"--bootstrap-file", dir_ + "/bootstrap"},
        std::map<std::string, std::string>{}, dir_ + "/devbroker.log");
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/bootstrap").empty(); }));
    brokers_ = test::read_trimmed(dir_ + "/bootstrap");
    clock_file_ = dir_ + "/clock-offset";
    set_clock_offset(0);
    env_ = {{"WAFLEET_KAFKA_BROKERS", brokers_},
            {"WAFLEET_REDIS_URL", redis_.url()},
            {"WAFLEET_APP_SECRET", "bulk-secret"},
            {"WAFLEET_ACCESS_TOKEN", "e2e-token"}};
    start("receiver", {"--listen", "127.0.0.1:0", "--port-file", dir_ + "/port"});
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/port").empty(); }));
    url_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/port") + "/webhook";
    emulator_ = std::make_unique<test::Process>(
        kBin + "/wafleet-graph-emulator",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--port-file", dir_ + "/emu-port",
                                 "--status-url", url_, "--status-app-secret", "bulk-secret"},
        std::map<std::string, std::string>{{"WAFLEET_ACCESS_TOKEN", "e2e-token"}},
        dir_ + "/emulator.log");
    ASSERT_TRUE(test::eventually([&] { return !test::read_trimmed(dir_ + "/emu-port").empty(); }));
    graph_ = "http://127.0.0.1:" + test::read_trimmed(dir_ + "/emu-port");
  }

  // The sender and the bulk worker, with the job's pace.
  void start_workers(int rate, int64_t daily_limit = 0, std::vector<std::string> bulk_extra = {}) {
    rate_ = rate;
    daily_limit_ = daily_limit;
    start_sender();
    start_bulk(std::move(bulk_extra));
    ASSERT_TRUE(test::wait_ready(dir_ + "/sender-admin")) << processes_["sender"]->log();
    ASSERT_TRUE(test::wait_ready(dir_ + "/bulk-admin")) << processes_["bulk"]->log();
  }
  void start_sender() {
    start("sender", {"--graph-base", graph_, "--number-rate", std::to_string(rate_), "--number-burst",
                     "5", "--backoff-ms", "100"});
  }
  void start_bulk(std::vector<std::string> extra = {}, const std::string& name = "bulk") {
    bulk_extra_ = extra.empty() ? bulk_extra_ : extra;
    std::vector<std::string> args = {"--number-rate", std::to_string(rate_), "--portfolio-daily-limit",
                                     std::to_string(daily_limit_), "--storage-dir", dir_ + "/store",
                                     "--clock-offset-file", clock_file_, "--retry-ms", "500"};
    args.insert(args.end(), bulk_extra_.begin(), bulk_extra_.end());
    start(name, args);
  }

  // name: the process's name here (bulk2 is a second wafleet-bulk).
  void start(const std::string& name, std::vector<std::string> args) {
    std::filesystem::remove(dir_ + "/" + name + "-admin");
    args.push_back("--admin-port-file");
    args.push_back(dir_ + "/" + name + "-admin");
    const std::string binary = name == "bulk2" ? "bulk" : name;
    processes_[name] = std::make_unique<test::Process>(
        kBin + "/wafleet-" + binary, args, env_,
        dir_ + "/" + name + "-" + std::to_string(starts_[name]++) + ".log");
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const char* w : {"bulk", "bulk2", "sender"}) {
        if (processes_.count(w) != 0) {
          std::cerr << "--- " << w << "\n" << processes_[w]->log().substr(0, 20000);
        }
      }
    }
    for (const char* w : {"bulk", "bulk2", "sender", "receiver"}) {
      if (processes_.count(w) != 0) {
        processes_[w]->stop();
      }
    }
    emulator_->stop();
    broker_->stop();
  }

  void set_clock_offset(int64_t ms) { test::write_file(clock_file_, std::to_string(ms) + "\n"); }

  void fault(const Json& f) {
    auto r = http::fetch("POST", graph_ + "/_emulator/faults", {{"Content-Type", "application/json"}},
                         f.dump(), std::chrono::seconds(10));
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
  }

  // Accepted template sends, per recipient, with the time the emulator took each.
  struct Sends {
    std::map<std::string, int> per_person;
    std::vector<int64_t> times;
    std::set<std::string> keys;
    size_t total = 0;
  };
  Sends sends() {
    Sends s;
    auto calls = http::fetch("GET", graph_ + "/_emulator/calls", {}, "", std::chrono::seconds(10));
    if (!calls) {
      return s;
    }
    for (const auto& c : Json::parse(calls->body)) {
      if (c["path"] == "/v22.0/" + pnid_ + "/messages" && c["status"] == 200 &&
          c["body"].value("type", "") == "template") {
        ++s.per_person[c["body"].value("to", c["body"].value("recipient", ""))];
        s.times.push_back(c.value("at_ms", int64_t{0}));
        s.keys.insert(c["body"].value("biz_opaque_callback_data", ""));
        ++s.total;
      }
    }
    return s;
  }

  int cli(const std::string& args, std::string& out, const std::string& env = "") {
    return test::run_command(env + "WAFLEET_KAFKA_BROKERS=" + brokers_ + " WAFLEET_REDIS_URL=" + redis_.url() +
                                 " WAFLEET_PORTFOLIO_DAILY_LIMIT=" + std::to_string(daily_limit_) +
                                 " WAFLEET_NUMBER_RATE=" + std::to_string(rate_) + " " + kBin +
                                 "/wafleet " + args,
                             out);
  }

  // Writes a CSV of `people` valid recipients (447700<6 digits>) plus whatever extra lines.
  std::string list(int people, const std::vector<std::string>& extra = {}, int first = 0) {
    std::string csv = "to,body.1\n";
    for (int i = first; i < first + people; ++i) {
      csv += phone(i) + ",Person " + std::to_string(i) + "\n";
    }
    for (const auto& l : extra) {
      csv += l + "\n";
    }
    const std::string path = dir_ + "/list-" + std::to_string(lists_++) + ".csv";
    test::write_file(path, csv);
    return path;
  }
  static std::string phone(int i) {
    std::string n = std::to_string(i);
    return "447700" + std::string(6 - n.size(), '0') + n;
  }

  std::string create(const std::string& file, const std::string& extra = "") {
    std::string out;
    const int rc = cli("bulk create --file " + file + " --phone-number-id " + pnid_ +
                           " --template spring_sale --language en_US " + extra,
                       out);
    EXPECT_EQ(rc, 0) << out;
    // The id is stdout's last line; the summary went to stderr before it.
    std::string id = out.substr(out.rfind("bj_") == std::string::npos ? 0 : out.rfind("bj_"), 19);
    EXPECT_EQ(id.rfind("bj_", 0), 0u) << out;
    return id;
  }

  Json show(const std::string& job) {
    std::string out;
    if (cli("bulk show " + job, out) != 0) {
      return Json::object();
    }
    return Json::parse(out, nullptr, false);
  }
  std::string state(const std::string& job) { return show(job).value("state", ""); }
  bool wait_state(const std::string& job, const std::string& want,
                  std::chrono::seconds timeout = std::chrono::seconds(60)) {
    return test::eventually([&] { return state(job) == want; }, timeout);
  }
  Json report(const std::string& job) {
    std::string out;
    EXPECT_EQ(cli("bulk report " + job + " --format json", out), 0) << out;
    return Json::parse(out, nullptr, false);
  }

  std::string dir_;
  std::string pnid_;
  test::RedisServer redis_;
  std::unique_ptr<test::Process> broker_;
  std::unique_ptr<test::Process> emulator_;
  std::map<std::string, std::unique_ptr<test::Process>> processes_;
  std::map<std::string, int> starts_;
  std::map<std::string, std::string> env_;
  std::vector<std::string> bulk_extra_;
  std::string brokers_;
  std::string graph_;
  std::string url_;
  std::string clock_file_;
  int rate_ = 100;
  int64_t daily_limit_ = 0;
  int lists_ = 0;
};

TEST_F(BulkE2E, TwoThousandRowsReachEachValidPersonExactlyOnceAndTheReportListsEveryRow) {
  start_workers(400);
  // 1,900 people, 50 of them twice (written differently), 30 invalid rows, 20 opted out.
  std::vector<std::string> extra;
  for (int i = 0; i < 50; ++i) {
    extra.push_back("+44 7700 " + phone(i).substr(6, 6) + ",again");
  }
  for (int i = 0; i < 30; ++i) {
    extra.push_back("call-me-" + std::to_string(i) + ",x");
  }
  for (int i = 1900; i < 1920; ++i) {
    extra.push_back(phone(i) + ",opted out");
    redis::RedisClient r(redis_.options());
    ASSERT_TRUE(r.command({"SET", "snd:optout:{" + pnid_ + "}:" + phone(i), "{\"why\":\"STOP\"}"}));
  }
  const std::string file = list(1900, extra);
  std::string dry;
  ASSERT_EQ(cli("bulk create --dry-run --file " + file + " --phone-number-id " + pnid_ +
                    " --template spring_sale --language en_US",
                dry),
            0)
      << dry;
  EXPECT_NE(dry.find("rows            2000"), std::string::npos) << dry;
  EXPECT_NE(dry.find("people to reach 1900"), std::string::npos) << dry;
  EXPECT_NE(dry.find("duplicate         50"), std::string::npos) << dry;
  EXPECT_NE(dry.find("invalid_recipient 30"), std::string::npos) << dry;
  EXPECT_NE(dry.find("opted_out         20"), std::string::npos) << dry;

  const std::string job = create(file, "--name spring");
  ASSERT_TRUE(wait_state(job, "COMPLETED", std::chrono::seconds(90))) << show(job).dump(2);
  // Delivered statuses come back through the receiver.
  ASSERT_TRUE(test::eventually([&] { return show(job)["counts"].value("delivered", 0) == 1900; },
                               std::chrono::seconds(30)))
      << show(job).dump(2);
  auto s = sends();
  EXPECT_EQ(s.total, 1900u);
  EXPECT_EQ(s.per_person.size(), 1900u);
  for (const auto& [who, n] : s.per_person) {
    EXPECT_EQ(n, 1) << who;
  }
  for (int i = 1900; i < 1920; ++i) {
    EXPECT_EQ(s.per_person.count(phone(i)), 0u) << "opted out, but sent: " << phone(i);
  }
  Json rep = report(job);
  ASSERT_TRUE(rep.is_object());
  EXPECT_EQ(rep["recipients"].size(), 2000u);
  std::map<std::string, int> by_status;
  for (const auto& r : rep["recipients"]) {
    ++by_status[r.value("status", "")];
  }
  EXPECT_EQ(by_status["delivered"], 1900);
  EXPECT_EQ(by_status["skipped"], 100);
  EXPECT_EQ(rep["state"], "COMPLETED");
  // The report files were written to the storage when the job ended.
  const std::string uri = show(job).value("report_uri", "");
  ASSERT_EQ(uri.rfind("file://", 0), 0u) << uri;
  EXPECT_TRUE(std::filesystem::exists(uri.substr(7)));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/store/reports/bulk/" + job + ".csv"));
  std::string ls;
  ASSERT_EQ(cli("bulk ls", ls), 0) << ls;
  EXPECT_NE(ls.find(job), std::string::npos) << ls;
}

TEST_F(BulkE2E, PauseHoldsMetaSilentWithinASecondAndResumeGoesOn) {
  start_workers(40);
  const std::string job = create(list(300));
  ASSERT_TRUE(test::eventually([&] { return sends().total >= 60; }, std::chrono::seconds(30)));
  std::string out;
  ASSERT_EQ(cli("bulk pause " + job, out), 0) << out;
  const int64_t paused_at = wall_clock_ms();
  EXPECT_NE(out.find("PAUSED"), std::string::npos) << out;
  std::this_thread::sleep_for(std::chrono::seconds(3));
  auto s = sends();
  int64_t last = 0;
  for (int64_t t : s.times) {
    last = std::max(last, t);
  }
  EXPECT_LT(last - paused_at, 1000) << "Meta still got requests " << last - paused_at << " ms after the pause";
  EXPECT_LT(s.total, 300u);
  const size_t held = s.total;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(sends().total, held) << "sends went on while paused";
  ASSERT_EQ(cli("bulk resume " + job, out), 0) << out;
  ASSERT_TRUE(wait_state(job, "COMPLETED", std::chrono::seconds(60))) << show(job).dump(2);
  s = sends();
  EXPECT_EQ(s.total, 300u);
  EXPECT_EQ(s.per_person.size(), 300u);
}

TEST_F(BulkE2E, CancelStopsForGoodAndLeavesTheUnsentCancelled) {
  start_workers(40);
  const std::string job = create(list(400));
  ASSERT_TRUE(test::eventually([&] { return sends().total >= 40; }, std::chrono::seconds(30)));
  std::string out;
  ASSERT_EQ(cli("bulk cancel " + job, out), 0) << out;
  EXPECT_NE(out.find("CANCELLED"), std::string::npos) << out;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const size_t sent = sends().total;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(sends().total, sent);
  ASSERT_TRUE(test::eventually([&] { return !show(job).value("report_uri", "").empty(); }));
  Json rep = report(job);
  std::map<std::string, int> by_status;
  for (const auto& r : rep["recipients"]) {
    ++by_status[r.value("status", "")];
  }
  EXPECT_EQ(rep["recipients"].size(), 400u);
  EXPECT_EQ(by_status["cancelled"] + by_status["sent"] + by_status["delivered"], 400) << rep["counts"].dump();
  EXPECT_GT(by_status["cancelled"], 200);
  EXPECT_EQ(static_cast<size_t>(by_status["sent"] + by_status["delivered"]), sent);
  // A cancelled job does not come back.
  EXPECT_NE(cli("bulk resume " + job + " --wait 2", out), 0);
  EXPECT_EQ(state(job), "CANCELLED");
}

TEST_F(BulkE2E, KillNineOfTheBulkWorkerAndOfTheSenderMidJobStillSendsEachPersonOnce) {
  start_workers(80);
  // Two bulk workers: one drives the job (the lease), both apply outcomes.
  start_bulk({}, "bulk2");
  ASSERT_TRUE(test::wait_ready(dir_ + "/bulk2-admin")) << processes_["bulk2"]->log();
  const std::string job = create(list(800));
  ASSERT_TRUE(test::eventually([&] { return sends().total >= 150; }, std::chrono::seconds(30)));
  processes_["bulk"]->kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  start_bulk();
  ASSERT_TRUE(test::eventually([&] { return sends().total >= 400; }, std::chrono::seconds(60)));
  processes_["sender"]->kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  start_sender();
  ASSERT_TRUE(wait_state(job, "COMPLETED", std::chrono::seconds(120))) << show(job).dump(2);
  auto s = sends();
  Json rep = report(job);
  int uncertain = 0;
  for (const auto& r : rep["recipients"]) {
    if (r.value("status", "") == "failed") {
      EXPECT_EQ(r.value("error", "").rfind("uncertain", 0), 0u) << r.dump();
      ++uncertain;
    }
  }
  for (const auto& [who, n] : s.per_person) {
    EXPECT_EQ(n, 1) << who << " got it " << n << " times";
  }
  // A sender killed between calling Meta and recording the answer leaves that one uncertain
  // (never sent again); everyone else got it exactly once.
  EXPECT_GE(s.per_person.size() + static_cast<size_t>(uncertain), 800u);
  EXPECT_LE(uncertain, 5);
  std::cout << "kill -9: " << s.total << " sends to " << s.per_person.size() << " people, "
            << uncertain << " uncertain\n";
}

TEST_F(BulkE2E, TheDailyBudgetStopsTheJobAtTheBudgetAndItGoesOnInTheNextWindow) {
  start_workers(100, 30);
  const std::string job = create(list(50));
  ASSERT_TRUE(test::eventually([&] { return sends().total >= 30; }, std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(sends().total, 30u);
  Json j = show(job);
  EXPECT_EQ(j["state"], "IN_PROGRESS");
  EXPECT_NE(j.value("waiting_for", "").find("daily budget"), std::string::npos) << j.dump(2);
  // A day later the first 30 have left the rolling window.
  set_clock_offset(24LL * 3600 * 1000 + 60000);
  ASSERT_TRUE(wait_state(job, "COMPLETED", std::chrono::seconds(30))) << show(job).dump(2);
  auto s = sends();
  EXPECT_EQ(s.total, 50u);
  EXPECT_EQ(s.per_person.size(), 50u);
}

TEST_F(BulkE2E, Error131048PausesTheJobAndResumeSendsTheRest) {
  start_workers(100);
  fault({{"endpoint", "messages"}, {"match", phone(20)}, {"error_code", 131048}});
  const std::string job = create(list(100));
  ASSERT_TRUE(wait_state(job, "PAUSED", std::chrono::seconds(30))) << show(job).dump(2);
  Json j = show(job);
  EXPECT_NE(j.value("reason", "").find("131048"), std::string::npos) << j.dump(2);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // what was already released drains
  const size_t at_pause = sends().total;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(sends().total, at_pause) << "sends went on while paused";
  EXPECT_LT(at_pause, 100u);
  std::string out;
  ASSERT_EQ(cli("bulk resume " + job, out), 0) << out;
  ASSERT_TRUE(wait_state(job, "COMPLETED", std::chrono::seconds(30))) << show(job).dump(2);
  auto s = sends();
  EXPECT_EQ(s.per_person.size(), 100u);
  EXPECT_EQ(s.per_person[phone(20)], 1) << "sent after the resume, once";
  EXPECT_EQ(s.total, 100u);
}

TEST_F(BulkE2E, Error131049IsTriedAgainOnlyHoursLater) {
  start_workers(100);
  fault({{"endpoint", "messages"}, {"match", phone(7)}, {"status_error_code", 131049}});
  const std::string job = create(list(20));
  ASSERT_TRUE(test::eventually([&] { return show(job)["counts"].value("waiting", 0) == 1; },
                               std::chrono::seconds(30)))
      << show(job).dump(2);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(state(job), "IN_PROGRESS");
  EXPECT_EQ(sends().per_person[phone(7)], 1);
  set_clock_offset(6LL * 3600 * 1000 + 1000);
  ASSERT_TRUE(wait_state(job, "COMPLETED", std::chrono::seconds(30))) << show(job).dump(2);
  auto s = sends();
  EXPECT_EQ(s.per_person[phone(7)], 2);
  EXPECT_TRUE(s.keys.count("wafleet-bulk:" + job + ":7:r2") == 1) << "the retry has its own key";
  Json rep = report(job);
  for (const auto& r : rep["recipients"]) {
    if (r.value("to", "") == phone(7)) {
      EXPECT_EQ(r.value("attempts", 0), 2);
    }
  }
}

TEST_F(BulkE2E, APausedTemplatePausesTheJob) {
  start_workers(20);
  const std::string job = create(list(200));
  ASSERT_TRUE(test::eventually([&] { return sends().total >= 20; }, std::chrono::seconds(30)));
  Json value = {{"event", "PAUSED"},
                {"message_template_id", 1689556908129832},
                {"message_template_name", "spring_sale"},
                {"message_template_language", "en_US"},
                {"reason", "NONE"},
                {"other_info", {{"title", "FIRST_PAUSE"}, {"description", "low quality"}}}};
  Json body = {{"object", "whatsapp_business_account"},
               {"entry", {{{"id", "100000000000001"},
                           {"time", wall_clock_ms() / 1000},
                           {"changes", {{{"value", value}, {"field", "message_template_status_update"}}}}}}}};
  const std::string raw = body.dump();
  auto r = http::fetch("POST", url_,
                       {{"Content-Type", "application/json"},
                        {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("bulk-secret", raw)}},
                       raw, std::chrono::seconds(10));
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
  ASSERT_TRUE(wait_state(job, "PAUSED", std::chrono::seconds(15))) << show(job).dump(2);
  EXPECT_NE(show(job).value("reason", "").find("FIRST_PAUSE"), std::string::npos);
  EXPECT_LT(sends().total, 200u);
}

TEST_F(BulkE2E, TheCircuitBreakerPausesAJobWhoseRecipientsKeepFailingAndSaysWhy) {
  start_workers(100);
  // Every send refused as undeliverable (131026: skipped, so no single error pauses the job).
  fault({{"endpoint", "messages"}, {"times", -1}, {"error_code", 131026}});
  const std::string job = create(list(300));
  ASSERT_TRUE(wait_state(job, "PAUSED", std::chrono::seconds(30))) << show(job).dump(2);
  Json j = show(job);
  EXPECT_NE(j.value("reason", "").find("circuit breaker"), std::string::npos) << j.dump(2);
  EXPECT_NE(j.value("reason", "").find("131026"), std::string::npos) << j.dump(2);
  // It paused early, not after trying everyone.
  EXPECT_LT(j["counts"].value("skipped", 0), 150) << j.dump(2);
}

TEST_F(BulkE2E, QuietHoursInTheRecipientsZoneHoldTheirMessagesUntilTheyEnd) {
  start_workers(100);
  // Quiet from now (UTC) for two hours: the rows with tz UTC wait, the others go.
  const int64_t now_min = wall_clock_ms() / 60000;
  auto hm = [](int64_t m) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02d:%02d", static_cast<int>(m / 60 % 24), static_cast<int>(m % 60));
    return std::string(buf);
  };
  const std::string quiet = hm(now_min) + "-" + hm(now_min + 120);
  std::string csv = "to,body.1,tz\n";
  for (int i = 0; i < 20; ++i) {
    csv += phone(i) + ",P" + std::to_string(i) + "," + (i < 5 ? "UTC" : "") + "\n";
  }
  test::write_file(dir_ + "/quiet.csv", csv);
  const std::string job = create(dir_ + "/quiet.csv", "--quiet-hours " + quiet);
  ASSERT_TRUE(test::eventually([&] { return sends().total >= 15; }, std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto s = sends();
  EXPECT_EQ(s.total, 15u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(s.per_person.count(phone(i)), 0u) << "sent during its quiet hours: " << phone(i);
  }
  EXPECT_EQ(show(job)["counts"].value("waiting", 0), 5);
  set_clock_offset(121LL * 60 * 1000);
  ASSERT_TRUE(wait_state(job, "COMPLETED", std::chrono::seconds(30))) << show(job).dump(2);
  EXPECT_EQ(sends().per_person.size(), 20u);
}

// Erasure and bulk jobs: a person forgotten before their job runs is never sent to, and one
// forgotten after it ended leaves the stored report; each keeps only their line in the report.
TEST_F(BulkE2E, AForgottenPersonIsNeverSentToAndTheStoredReportNoLongerNamesThem) {
  start_workers(100);
  test::PostgresServer pg;
  const std::string db_url = pg.fresh_database("bulk_forget");
  {
    auto db = pg::Connection::connect(pg::Options{db_url});
    ASSERT_TRUE(db) << db.error().message;
    ASSERT_TRUE(store::migrate(**db));
  }
  auto forget = [&](const std::string& who) {
    std::string out;
    const int rc = cli("forget '" + who + "' --actor e2e", out, "WAFLEET_DATABASE_URL=" + db_url +
                                                              " WAFLEET_SUPPRESSION_SALT=bulk-salt ");
    EXPECT_EQ(rc, 0) << out;
    return out;
  };
  // 40 people; person 3 is also written twice (a duplicate row, left out before launch).
  const std::string job = create(list(40, {"+44 7700 000003,again"}),
                                 "--schedule " + format_iso8601(wall_clock_ms() + 4000));
  EXPECT_EQ(state(job), "SCHEDULED");
  const std::string out = forget("+44 7700 000003");
  EXPECT_NE(out.find("\"bulk_rows\": 2"), std::string::npos) << out;
  ASSERT_TRUE(wait_state(job, "COMPLETED", std::chrono::seconds(60))) << show(job).dump(2);
  auto s = sends();
  EXPECT_EQ(s.per_person.count(phone(3)), 0u) << "a forgotten person was sent to";
  EXPECT_EQ(s.total, 39u);
  EXPECT_EQ(s.per_person.size(), 39u);
  EXPECT_EQ(show(job)["counts"].value("skipped", 0), 1) << show(job).dump(2);  // person 3
  EXPECT_EQ(show(job).value("rejected", 0), 1) << show(job).dump(2);            // the duplicate

  // After the job: the report already stored is written again without person 7.
  const std::string uri = show(job).value("report_uri", "");
  ASSERT_EQ(uri.rfind("file://", 0), 0u) << uri;
  ASSERT_NE(test::read_trimmed(uri.substr(7)).find(phone(7)), std::string::npos);
  const std::string out7 = forget(phone(7));
  EXPECT_NE(out7.find("\"bulk_reports_rewritten\": 1"), std::string::npos) << out7;
  for (const char* kind : {".json", ".csv"}) {
    const std::string file = dir_ + "/store/reports/bulk/" + job + kind;
    const std::string text = test::read_trimmed(file);
    EXPECT_FALSE(text.empty()) << file;
    EXPECT_EQ(text.find(phone(7)), std::string::npos) << file;
    EXPECT_EQ(text.find(phone(3)), std::string::npos) << file;
    EXPECT_NE(text.find(phone(8)), std::string::npos) << file;
  }
  Json rep = report(job);
  ASSERT_EQ(rep["recipients"].size(), 41u);
  int blank = 0;
  for (const auto& r : rep["recipients"]) {
    if (r.value("to", "").empty()) {
      ++blank;
      EXPECT_TRUE(r.value("wamid", "").empty()) << r.dump();
    }
  }
  EXPECT_EQ(blank, 3) << rep.dump(1);
}

}  // namespace
}  // namespace wafleet
