// The sender's core against the Graph API emulator (over HTTP) and a real redis-server: the exact
// JSON Meta receives for every documented send example, error classes, never twice, and the
// shared GCRA limits.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "common/crypto.h"
#include "common/http_server.h"
#include "tests/support/fixtures.h"
#include "tests/support/services.h"
#include "workers/graph-emulator/emulator.h"
#include "workers/sender/sender.h"

namespace wafleet::sender {
namespace {

// A request for one of Meta's documented send bodies: our envelope plus Meta's fields.
nlohmann::json request_for(nlohmann::json meta, const std::string& request_id) {
  nlohmann::json req = std::move(meta);
  req.erase("messaging_product");
  if (req.value("status", "") == "read") {
    req["type"] = req.contains("typing_indicator") ? "typing" : "read";
    req.erase("status");
    req.erase("typing_indicator");
  }
  req["request_id"] = request_id;
  req["phone_number_id"] = "106540352242922";
  return req;
}

class SenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<http::Server>(http::ServerOptions{}, [this](http::Request&& q,
                                                                           http::Responder r) {
      emulator_.handle(std::move(q), std::move(r));
    });
    ASSERT_TRUE(server_->start().has_value());
    options_.graph_base = "http://127.0.0.1:" + std::to_string(server_->port());
    options_.access_token = "emulator-token";
    options_.timeout = std::chrono::milliseconds(2000);
  }
  void TearDown() override { server_->stop(); }

  std::vector<nlohmann::json> sends() {
    std::vector<nlohmann::json> out;
    for (const auto& c : emulator_.calls()) {
      if (c["path"].get<std::string>().ends_with("/messages")) {
        out.push_back(c["body"]);
      }
    }
    return out;
  }

  test::RedisServer redis_server_;
  redis::RedisClient redis_{redis_server_.options()};
  emulator::GraphEmulator emulator_{emulator::Options{}};
  std::unique_ptr<http::Server> server_;
  Options options_;
  Limits fast_{1000, 1000, 1000, 1000};
};

TEST_F(SenderTest, MetaReceivesExactlyTheDocumentedBodyForEveryMessageType) {
  RateLimiter limiter(redis_, fast_);
  Sender sender(options_, redis_, limiter, nullptr);
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::fixture_path(""))) {
    const std::string name = entry.path().filename().string();
    if ((!name.starts_with("meta_send_") && !name.starts_with("wafleet_send_")) ||
        name.find("response") != std::string::npos) {
      continue;
    }
    const auto meta = nlohmann::json::parse(test::fixture(name));
    auto req = parse_request(request_for(meta, "req-" + name));
    ASSERT_TRUE(req.has_value()) << name << ": " << req.error();
    auto out = sender.send(*req);
    ASSERT_TRUE(out.has_value()) << name << ": " << out.error().message;
    EXPECT_EQ(out->status, "sent");
    auto got = sends();
    ASSERT_EQ(got.size(), static_cast<size_t>(n + 1));
    EXPECT_EQ(got.back(), meta) << name;  // byte-for-byte the documented JSON
    if (meta.value("status", "") != "read") {
      EXPECT_TRUE(out->wamid.starts_with("wamid.")) << name;
    }
    ++n;
  }
  EXPECT_EQ(n, 28) << "every documented type: 18 of Meta's examples and 10 of ours";
}

TEST_F(SenderTest, TheSameIdempotencyKeyIsSentOnce) {
  RateLimiter limiter(redis_, fast_);
  Sender sender(options_, redis_, limiter, nullptr);
  auto req = parse_request(request_for(
      nlohmann::json::parse(test::fixture("meta_send_text_preview_url.json")), "once"));
  ASSERT_TRUE(req.has_value());
  auto first = sender.send(*req);
  ASSERT_TRUE(first.has_value());
  // Redelivered (another replica, after a crash between Meta's 200 and the commit).
  Sender other(options_, redis_, limiter, nullptr);
  auto again = other.send(*req);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, "duplicate");
  EXPECT_EQ(again->wamid, first->wamid);
  EXPECT_EQ(sends().size(), 1u);
}

TEST_F(SenderTest, AClaimLeftByACrashedSenderIsNeverSentAgain) {
  RateLimiter limiter(redis_, fast_);
  Sender sender(options_, redis_, limiter, nullptr);
  auto req = parse_request(request_for(
      nlohmann::json::parse(test::fixture("meta_send_text_preview_url.json")), "crashed"));
  ASSERT_TRUE(req.has_value());
  // Another process claimed the key, called Meta, and died before recording the answer.
  ASSERT_TRUE(redis_.command({"SET", "snd:idem:{crashed}", "pending:deadbeef"}).has_value());
  auto out = sender.send(*req);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status, "uncertain");
  EXPECT_EQ(sends().size(), 0u);
}

TEST_F(SenderTest, AReplayFromTheDlqRetriesWhatFailedAndNeverWhatWasSent) {
  RateLimiter limiter(redis_, fast_);
  Sender sender(options_, redis_, limiter, nullptr);
  auto text = [&](const std::string& id, const std::string& to) {
    auto j = request_for(nlohmann::json::parse(test::fixture("meta_send_text_preview_url.json")), id);
    j["to"] = to;
    return parse_request(j).value();
  };
  // Meta refused it (the person was unreachable then): failed, dead-lettered.
  emulator::Fault f;
  f.endpoint = "messages";
  f.match = "+15557770001";
  f.error_code = 131026;
  emulator_.add_fault(f);
  const auto failed = text("replay-failed", "+15557770001");
  ASSERT_FALSE(sender.send(failed).has_value());
  ASSERT_EQ(sends().size(), 1u);
  // Redelivered (not a replay): the same failure, Meta not asked again.
  ASSERT_FALSE(sender.send(failed).has_value());
  ASSERT_EQ(sends().size(), 1u);
  // Replayed once the cause is gone: sent.
  auto replayed = sender.send(failed, /*replay=*/true);
  ASSERT_TRUE(replayed.has_value()) << replayed.error().message;
  EXPECT_EQ(replayed->status, "sent");
  EXPECT_EQ(sends().size(), 2u);
  // A replay of a request that was sent: a duplicate, never a second message.
  auto twice = sender.send(failed, /*replay=*/true);
  ASSERT_TRUE(twice.has_value());
  EXPECT_EQ(twice->status, "duplicate");
  EXPECT_EQ(twice->wamid, replayed->wamid);
  EXPECT_EQ(sends().size(), 2u);
  // A replay of an uncertain outcome (a crash after the call): still not sent again.
  ASSERT_TRUE(redis_.command({"SET", "snd:idem:{replay-uncertain}", "pending:deadbeef"}));
  auto uncertain = sender.send(text("replay-uncertain", "+15557770002"), /*replay=*/true);
  ASSERT_TRUE(uncertain.has_value());
  EXPECT_EQ(uncertain->status, "uncertain");
  EXPECT_EQ(sends().size(), 2u);
}

TEST_F(SenderTest, ReceiptsAreNotHeldByThePairLimit) {
  // One message per 6 s to a person; read receipts are not messages to anyone.
  RateLimiter limiter(redis_, Limits{1000, 1000, 1.0 / 6, 1});
  Sender sender(options_, redis_, limiter, nullptr);
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    auto req = parse_request({{"request_id", "r" + std::to_string(i)},
                              {"phone_number_id", "106540352242922"},
                              {"type", i % 2 ? "typing" : "read"},
                              {"message_id", "wamid.R" + std::to_string(i)}});
    ASSERT_TRUE(req.has_value()) << req.error();
    auto out = sender.send(*req);
    ASSERT_TRUE(out.has_value()) << out.error().message;
    EXPECT_EQ(out->status, "sent");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
  EXPECT_EQ(sends().size(), 5u);
}

TEST_F(SenderTest, ThrottlingAndServerErrorsRetryPermanentErrorsDoNot) {
  RateLimiter limiter(redis_, fast_);
  Sender sender(options_, redis_, limiter, nullptr);
  auto text = [&](const std::string& id, const std::string& to) {
    auto j = request_for(nlohmann::json::parse(test::fixture("meta_send_text_preview_url.json")), id);
    j["to"] = to;
    return parse_request(j).value();
  };
  for (int code : {130429, 131056, 131000}) {
    emulator::Fault f;
    f.endpoint = "messages";
    f.match = "+1555000" + std::to_string(code % 1000);
    f.error_code = code;
    emulator_.add_fault(f);
    const auto req = text("t-" + std::to_string(code), f.match);
    auto first = sender.send(req);
    ASSERT_FALSE(first.has_value());
    EXPECT_EQ(first.error().kind, ErrorKind::kTransient) << code;
    auto retry = sender.send(req);  // the claim was released: the retry sends
    ASSERT_TRUE(retry.has_value()) << code << ": " << retry.error().message;
    EXPECT_EQ(retry->status, "sent");
  }
  emulator::Fault down;
  down.endpoint = "messages";
  down.http_status = 502;
  emulator_.add_fault(down);
  auto five = sender.send(text("t-502", "+15550000502"));
  ASSERT_FALSE(five.has_value());
  EXPECT_EQ(five.error().kind, ErrorKind::kTransient);
  for (int code : {131026, 131047, 131050, 132001}) {
    emulator::Fault f;
    f.endpoint = "messages";
    f.match = "+1666" + std::to_string(code);
    f.error_code = code;
    emulator_.add_fault(f);
    const auto req = text("p-" + std::to_string(code), f.match);
    auto out = sender.send(req);
    ASSERT_FALSE(out.has_value());
    EXPECT_EQ(out.error().kind, ErrorKind::kPermanent) << code;
    EXPECT_TRUE(out.error().message.starts_with("(#" + std::to_string(code) + ")"));
    const size_t calls = sends().size();
    auto again = sender.send(req);  // redelivered: the same failure, Meta not asked again
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().kind, ErrorKind::kPermanent);
    EXPECT_EQ(sends().size(), calls);
  }
  // A Graph API that does not answer in time: transient.
  emulator::Fault slow;
  slow.endpoint = "messages";
  slow.latency_ms = 2500;
  emulator_.add_fault(slow);
  auto timed_out = sender.send(text("t-slow", "+15550009999"));
  ASSERT_FALSE(timed_out.has_value());
  EXPECT_EQ(timed_out.error().kind, ErrorKind::kTransient);
}

TEST_F(SenderTest, ThePairLimitSpacesMessagesToOnePerson) {
  RateLimiter limiter(redis_, Limits{1000, 1000, 5.0, 1});  // one per 200 ms to a person
  Sender sender(options_, redis_, limiter, nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    auto j = request_for(nlohmann::json::parse(test::fixture("meta_send_text_preview_url.json")),
                         "pair-" + std::to_string(i));
    ASSERT_TRUE(sender.send(parse_request(j).value()).has_value());
  }
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(elapsed, std::chrono::milliseconds(4 * 200 - 20));
  auto calls = emulator_.calls();
  for (size_t i = 1; i < calls.size(); ++i) {
    EXPECT_GE(calls[i]["at_ms"].get<int64_t>() - calls[i - 1]["at_ms"].get<int64_t>(), 180);
  }
}

TEST_F(SenderTest, ThreeLimitersSharingANumberNeverExceedItsRate) {
  // Three replicas (own connections), one number limited to 40/s (burst 1), 2 s of backlog.
  std::atomic<int> granted{0};
  std::vector<int64_t> at_us;
  std::mutex mu;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> replicas;
  for (int r = 0; r < 3; ++r) {
    replicas.emplace_back([&, r] {
      redis::RedisClient own(redis_server_.options());
      RateLimiter limiter(own, Limits{40, 1, 1000, 1000});
      int i = 0;
      while (std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
        auto wait = limiter.acquire("pnid-shared", "person-" + std::to_string(r) + "-" +
                                                       std::to_string(i++));
        ASSERT_TRUE(wait.has_value());
        if (wait->count() == 0) {
          ++granted;
          std::lock_guard lock(mu);
          at_us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count());
        } else {
          std::this_thread::sleep_for(*wait);
        }
      }
    });
  }
  for (auto& t : replicas) {
    t.join();
  }
  // 2 s at 40/s: 80 grants (+1 for the first), and no 1-second span holds more than 41.
  EXPECT_LE(granted.load(), 82);
  EXPECT_GE(granted.load(), 72) << "the limiter left capacity unused";
  std::sort(at_us.begin(), at_us.end());
  for (size_t i = 0; i < at_us.size(); ++i) {
    size_t j = i;
    while (j < at_us.size() && at_us[j] - at_us[i] < 1000000) {
      ++j;
    }
    EXPECT_LE(j - i, 42u) << "more than the limit within one second";
  }
}

WebhookEvent inbound_text(const std::string& wa_id, const std::string& body, int64_t at_ms,
                          const std::string& user_id = "") {
  WebhookEvent e;
  e.kind = EventKind::kMessage;
  e.phone_number_id = "106540352242922";
  e.wa_id = wa_id;
  e.user_id = user_id;
  e.type = "text";
  e.message_id = "wamid.in." + body;
  e.timestamp = at_ms / 1000;
  e.raw = {{"type", "text"}, {"text", {{"body", body}}}};
  return e;
}

WebhookEvent status(const std::string& wamid, const std::string& value, int64_t ts) {
  WebhookEvent e;
  e.kind = EventKind::kStatus;
  e.phone_number_id = "106540352242922";
  e.type = value;
  e.message_id = wamid;
  e.timestamp = ts;
  e.raw = {{"id", wamid}, {"status", value}, {"timestamp", std::to_string(ts)}};
  return e;
}

TEST_F(SenderTest, FreeFormNeedsTheWindowOpenedByThePersonTemplatesDoNot) {
  Conversations conv(redis_, PolicyOptions{});
  RateLimiter limiter(redis_, fast_);
  int64_t now = 1'800'000'000'000;
  Sender sender(options_, redis_, limiter, nullptr, &conv, [&] { return now; });
  auto text = [&](const std::string& id, const std::string& to) {
    return parse_request({{"request_id", id}, {"phone_number_id", "106540352242922"}, {"to", to},
                          {"type", "text"}, {"text", {{"body", "hi"}}}})
        .value();
  };
  auto tpl = [&](const std::string& id, const std::string& to) {
    return parse_request({{"request_id", id}, {"phone_number_id", "106540352242922"}, {"to", to},
                          {"type", "template"},
                          {"template", {{"name", "hello_world"}, {"language", {{"code", "en_US"}}}}}})
        .value();
  };
  auto never = sender.send(text("w1", "+1 650 555 1234"));
  ASSERT_FALSE(never.has_value());
  EXPECT_EQ(never.error().kind, ErrorKind::kInvalidInput);
  EXPECT_NE(never.error().message.find("24-hour"), std::string::npos);
  ASSERT_TRUE(sender.send(tpl("w2", "+16505551234")).has_value()) << "templates pass";
  // The person writes: the window opens for 24 hours of their message time.
  ASSERT_TRUE(conv.on_inbound(inbound_text("16505551234", "hello?", now - 3600 * 1000)).has_value());
  ASSERT_TRUE(sender.send(text("w3", "+1 650 555 1234")).has_value());
  now += 23LL * 3600 * 1000;  // 24 h after their message
  auto late = sender.send(text("w4", "+16505551234"));
  ASSERT_FALSE(late.has_value());
  EXPECT_NE(late.error().message.find("minutes ago"), std::string::npos);
  EXPECT_EQ(sends().size(), 2u);
}

TEST_F(SenderTest, StopOptsOutOnlyRepliesTheyStartReachThem) {
  Conversations conv(redis_, PolicyOptions{});
  RateLimiter limiter(redis_, fast_);
  int64_t now = 1'800'000'000'000;
  Sender sender(options_, redis_, limiter, nullptr, &conv, [&] { return now; });
  auto req = [&](const std::string& id, nlohmann::json extra) {
    nlohmann::json j = {{"request_id", id}, {"phone_number_id", "106540352242922"},
                        {"recipient", "US.777"}};
    j.update(extra);
    return parse_request(j).value();
  };
  const nlohmann::json tpl = {{"type", "template"},
                              {"template", {{"name", "promo"}, {"language", {{"code", "en"}}}}}};
  const nlohmann::json text = {{"type", "text"}, {"text", {{"body", "ok"}}}};
  EXPECT_TRUE(conv.is_stop("  stop. "));
  EXPECT_FALSE(conv.is_stop("please don't stop"));
  ASSERT_TRUE(conv.on_inbound(inbound_text("", "Stop", now - 1000, "US.777")).has_value());
  auto promo = sender.send(req("s1", tpl));
  ASSERT_FALSE(promo.has_value());
  EXPECT_NE(promo.error().message.find("opted out"), std::string::npos);
  auto bulk = text;
  bulk["priority"] = "bulk";
  EXPECT_FALSE(sender.send(req("s2", bulk)).has_value());
  // A reply inside the conversation the person started (their STOP opened it) passes.
  EXPECT_TRUE(sender.send(req("s3", text)).has_value());
  EXPECT_EQ(sends().size(), 1u);
  // Meta's 131050 marks a person too.
  emulator::Fault f;
  f.endpoint = "messages";
  f.match = "+15550131050";
  f.error_code = 131050;
  emulator_.add_fault(f);
  auto tpl_to = [&](const std::string& id) {
    auto j = tpl;
    j["request_id"] = id;
    j["phone_number_id"] = "106540352242922";
    j["to"] = "+15550131050";
    return parse_request(j).value();
  };
  EXPECT_EQ(sender.send(tpl_to("m1")).error().kind, ErrorKind::kPermanent);
  auto after = sender.send(tpl_to("m2"));
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error().kind, ErrorKind::kInvalidInput) << after.error().message;
  EXPECT_EQ(sends().size(), 2u) << "the second template reached Meta";
}

TEST_F(SenderTest, DeliveryStatusesOnlyMoveForward) {
  Conversations conv(redis_, PolicyOptions{});
  ASSERT_TRUE(conv.on_status(status("wamid.S", "sent", 100)).has_value());
  ASSERT_TRUE(conv.on_status(status("wamid.S", "read", 102)).has_value());
  ASSERT_TRUE(conv.on_status(status("wamid.S", "delivered", 101)).has_value());  // late
  auto st = Conversations::status_of(redis_, "wamid.S");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ((*st)["status"], "read");
  EXPECT_EQ((*st)["at_ms"], 102000);
  EXPECT_EQ((*st)["seen:delivered"], 101000);  // every status is still remembered
  ASSERT_TRUE(conv.on_status(status("wamid.S", "played", 103)).has_value());
  EXPECT_EQ(Conversations::status_of(redis_, "wamid.S")->at("status"), "played");
  ASSERT_TRUE(conv.on_status(status("wamid.F", "sent", 100)).has_value());
  ASSERT_TRUE(conv.on_status(status("wamid.F", "failed", 101)).has_value());
  ASSERT_TRUE(conv.on_status(status("wamid.F", "delivered", 102)).has_value());
  EXPECT_EQ(Conversations::status_of(redis_, "wamid.F")->at("status"), "failed");
  EXPECT_TRUE(Conversations::status_of(redis_, "wamid.unknown")->empty());
}

TEST_F(SenderTest, StoredMediaIsUploadedOnceAndSentByTheIdMetaGave) {
  RateLimiter limiter(redis_, fast_);
  Sender sender(options_, redis_, limiter, nullptr);
  const std::string dir = test::temp_dir("wafleet-upload");
  const std::string bytes = "\xff\xd8\xff\xe0 a stored receipt photo";
  test::write_file(dir + "/receipt.jpg", bytes);
  auto request = [&](const std::string& id) {
    return parse_request({{"request_id", id}, {"phone_number_id", "106540352242922"},
                          {"to", "16505551234"}, {"type", "image"},
                          {"image", {{"storage_uri", "file://" + dir + "/receipt.jpg"},
                                     {"mime_type", "image/jpeg"},
                                     {"caption", "your receipt"}}}})
        .value();
  };
  auto first = sender.send(request("u1"));
  ASSERT_TRUE(first.has_value()) << first.error().message;
  auto second = sender.send(request("u2"));
  ASSERT_TRUE(second.has_value()) << second.error().message;
  std::vector<nlohmann::json> uploads;
  for (const auto& c : emulator_.calls()) {
    if (c["path"] == "/v22.0/106540352242922/media") {
      uploads.push_back(c["body"]);
    }
  }
  ASSERT_EQ(uploads.size(), 1u) << "the same object is uploaded once per number";
  EXPECT_EQ(uploads[0]["sha256_hex"], crypto::sha256_hex(bytes));
  EXPECT_EQ(uploads[0]["mime_type"], "image/jpeg");
  const std::string media_id = uploads[0]["uploaded"];
  auto got = sends();
  ASSERT_EQ(got.size(), 2u);
  for (const auto& body : got) {
    EXPECT_EQ(body, (nlohmann::json{{"messaging_product", "whatsapp"},
                                    {"to", "16505551234"},
                                    {"type", "image"},
                                    {"image", {{"caption", "your receipt"}, {"id", media_id}}}}));
  }
  // A stored object that is gone: refused as invalid input, nothing reaches Meta.
  auto missing = sender.send(parse_request({{"request_id", "u3"}, {"phone_number_id", "106540352242922"},
                                            {"to", "16505551234"}, {"type", "document"},
                                            {"document", {{"storage_uri", dir + "/nope.pdf"},
                                                          {"mime_type", "application/pdf"}}}})
                                 .value());
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, ErrorKind::kInvalidInput) << missing.error().message;
  EXPECT_EQ(sends().size(), 2u);
}

TEST_F(SenderTest, AGroupIsNotJudgedByAPersonsWindowKeyedOnDigitsOfItsId) {
  Conversations conv(redis_, PolicyOptions{});
  RateLimiter limiter(redis_, fast_);
  Sender sender(options_, redis_, limiter, nullptr, &conv);
  auto j = nlohmann::json::parse(test::fixture("wafleet_send_text_group.json"));
  j["request_id"] = "grp1";
  j["phone_number_id"] = "106540352242922";
  auto out = sender.send(parse_request(j).value());
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_EQ(out->status, "sent");
  ASSERT_EQ(sends().size(), 1u);
  EXPECT_EQ(sends()[0]["recipient_type"], "group");
}

TEST_F(SenderTest, RightAfterStartANeverSeenPersonIsRetriedNotRefused) {
  Conversations conv(redis_, PolicyOptions{});
  RateLimiter limiter(redis_, fast_);
  int64_t now = 1'800'000'000'000;
  Options o = options_;
  o.unknown_window_grace_ms = 30000;  // the inbound side may still be catching up
  Sender sender(o, redis_, limiter, nullptr, &conv, [&] { return now; });
  auto req = parse_request({{"request_id", "g1"}, {"phone_number_id", "106540352242922"},
                            {"to", "16505551299"}, {"type", "text"}, {"text", {{"body", "hi"}}}})
                 .value();
  auto early = sender.send(req);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().kind, ErrorKind::kTransient) << early.error().message;
  // The inbound side catches up: the person did write; the retry goes out.
  ASSERT_TRUE(conv.on_inbound(inbound_text("16505551299", "hello", now - 1000)).has_value());
  ASSERT_TRUE(sender.send(req).has_value());
  // Past the grace, someone never seen is refused for good.
  now += 31000;
  auto late = sender.send(parse_request({{"request_id", "g2"}, {"phone_number_id", "106540352242922"},
                                         {"to", "16505551300"}, {"type", "text"},
                                         {"text", {{"body", "hi"}}}})
                              .value());
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().kind, ErrorKind::kInvalidInput);
}

}  // namespace
}  // namespace wafleet::sender
