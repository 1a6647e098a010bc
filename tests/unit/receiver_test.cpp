#include "workers/receiver/receiver.h"

#include <map>
#include <optional>

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include "common/crypto.h"
#include "tests/support/fixtures.h"
#include "tests/support/sns_signer.h"
#include "topics/topics.h"
#include "workers/sender/request.h"

namespace wafleet::receiver {
namespace {

namespace bhttp = boost::beast::http;

class FakeSink : public EventSink {
 public:
  void publish(std::vector<OutRecord> records, std::function<void(Status)> done) override {
    ++calls;
    if (fail) {
      return done(Unexpected(Error::transient("broker down")));
    }
    for (auto& r : records) {
      published.push_back(std::move(r));
    }
    done(Status{});
  }
  std::vector<OutRecord> published;
  bool fail = false;
  int calls = 0;
};

// The same contract as the Redis store, in memory: unit tests only.
class FakeDedup : public DedupStore {
 public:
  void claim(std::vector<std::string> keys, std::string token,
             std::function<void(Result<std::vector<ClaimState>>)> done) override {
    if (down) {
      return done(Unexpected(Error::transient("redis down")));
    }
    std::vector<ClaimState> out;
    for (const auto& k : keys) {
      auto it = values.find(k);
      if (it == values.end()) {
        values[k] = token;
        out.push_back(ClaimState::kClaimed);
      } else if (it->second == "done") {
        out.push_back(ClaimState::kAlreadyDone);
      } else {
        out.push_back(it->second == token ? ClaimState::kClaimed : ClaimState::kInFlightElsewhere);
      }
    }
    done(std::move(out));
  }
  void confirm(std::vector<std::string> keys, std::string token,
               std::function<void(Status)> done) override {
    auto mark = [this, keys = std::move(keys), token = std::move(token), done = std::move(done)] {
      if (confirm_fails) {
        return done(Unexpected(Error::transient("redis went away")));
      }
      for (const auto& k : keys) {
        if (values[k] == token) {
          values[k] = "done";
        }
      }
      done(Status{});
    };
    if (hold_confirm) {
      held_confirm = std::move(mark);
      return;
    }
    mark();
  }
  void release(std::vector<std::string> keys, std::string token,
               std::function<void(Status)> done) override {
    for (const auto& k : keys) {
      if (values[k] == token) {
        values.erase(k);
        ++released;
      }
    }
    done(Status{});
  }
  std::map<std::string, std::string> values;
  bool down = false;
  bool hold_confirm = false;   // keep the "done" mark back until the test runs held_confirm
  bool confirm_fails = false;
  std::function<void()> held_confirm;
  int released = 0;
};

class FakeCerts : public CertStore {
 public:
  explicit FakeCerts(std::string pem) : pem_(std::move(pem)) {}
  Result<std::string> certificate(const std::string& url) override {
    fetched.push_back(url);
    return pem_;
  }
  Status confirm_subscription(const std::string& url) override {
    confirmed.push_back(url);
    return {};
  }
  std::vector<std::string> fetched;
  std::vector<std::string> confirmed;

 private:
  std::string pem_;
};

class ReceiverTest : public ::testing::Test {
 protected:
  ReceiverTest()
      : cert_(test::make_test_cert()),
        certs_(cert_.cert_pem),
        receiver_(make_options(), sink_, dedupe_, &certs_, registry_, [] { return 1700000000000; }) {}

  static ReceiverOptions make_options() {
    ReceiverOptions o;
    o.app_secrets = {"old-secret", "app-secret"};
    o.verify_token = "verify-me";
    return o;
  }

  http::Response call(bhttp::verb method, const std::string& target, const std::string& body = "",
                      std::map<std::string, std::string> headers = {}) {
    http::Request req{method, target, 11};
    for (const auto& [k, v] : headers) {
      req.set(k, v);
    }
    req.body() = body;
    req.prepare_payload();
    std::optional<http::Response> out;
    receiver_.handle(std::move(req), [&](http::Response r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value()) << "the receiver never answered";
    return out ? *out : http::Response{};
  }

  http::Response post_signed(const std::string& body, const std::string& secret = "app-secret") {
    return call(bhttp::verb::post, "/webhook", body,
                {{"Content-Type", "application/json"},
                 {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(secret, body)}});
  }

  double counter(const std::string& outcome) {
    for (const auto& fam : registry_.Collect()) {
      if (fam.name != "wafleet_receiver_requests_total") {
        continue;
      }
      for (const auto& m : fam.metric) {
        for (const auto& l : m.label) {
          if (l.name == "outcome" && l.value == outcome) {
            return m.counter.value;
          }
        }
      }
    }
    return 0;
  }

  test::TestCert cert_;
  FakeSink sink_;
  FakeDedup dedupe_;
  FakeCerts certs_;
  prometheus::Registry registry_;
  Receiver receiver_;
};

TEST_F(ReceiverTest, VerificationHandshakeEchoesTheChallenge) {
  auto r = call(bhttp::verb::get,
                "/webhook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(r.body(), "1158201444");
  EXPECT_EQ(r[bhttp::field::content_type], "text/plain");
}

TEST_F(ReceiverTest, VerificationDecodesPercentEncodingAndRefusesWrongTokens) {
  auto ok = call(bhttp::verb::get,
                 "/webhook?hub.verify_token=verify%2Dme&hub.challenge=a%20b&hub.mode=subscribe");
  EXPECT_EQ(ok.result_int(), 200u);
  EXPECT_EQ(ok.body(), "a b");
  EXPECT_EQ(call(bhttp::verb::get,
                 "/webhook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong")
                .result_int(),
            403u);
  EXPECT_EQ(call(bhttp::verb::get,
                 "/webhook?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-me")
                .result_int(),
            403u);
  EXPECT_EQ(call(bhttp::verb::get,
                 "/webhook?hub_mode=subscribe&hub_challenge=1&hub_verify_token=verify-me")
                .result_int(),
            403u);
}

TEST_F(ReceiverTest, SignedWebhookProducesKeyedEventsAndAnswers200) {
  auto r = post_signed(test::fixture("pywa_inbound_text.json"));
  EXPECT_EQ(r.result_int(), 200u);
  ASSERT_EQ(sink_.published.size(), 1u);
  const auto& rec = sink_.published[0];
  EXPECT_EQ(rec.topic, topics::kInbound);
  EXPECT_EQ(rec.key, "1122334455667:US.13491208655302741918");
  auto value = nlohmann::json::parse(rec.value);
  EXPECT_EQ(value["message_id"], "wamid.xyzxyz");
  EXPECT_EQ(value["raw"]["text"]["body"], "Body Text");
  bool has_traceparent = false;
  for (const auto& [k, v] : rec.headers) {
    has_traceparent = has_traceparent || (k == "traceparent" && v.size() == 55);
  }
  EXPECT_TRUE(has_traceparent);
  EXPECT_EQ(dedupe_.values.begin()->second, "done");
  EXPECT_EQ(counter("accepted"), 1);
}

TEST_F(ReceiverTest, IncomingTraceparentIsCarriedIntoTheEvent) {
  const std::string body = test::fixture("meta_inbound_text.json");
  auto r = call(bhttp::verb::post, "/webhook", body,
                {{"Content-Type", "application/json"},
                 {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                 {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("app-secret", body)}});
  EXPECT_EQ(r.result_int(), 200u);
  ASSERT_EQ(sink_.published.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(sink_.published[0].value)["trace_id"],
            "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST_F(ReceiverTest, RotatedSecretIsAccepted) {
  EXPECT_EQ(post_signed(test::fixture("meta_inbound_text.json"), "old-secret").result_int(), 200u);
}

TEST_F(ReceiverTest, BadOrMissingSignatureIs401AndProducesNothing) {
  const std::string body = test::fixture("meta_inbound_text.json");
  EXPECT_EQ(post_signed(body, "someone-else").result_int(), 401u);
  EXPECT_EQ(call(bhttp::verb::post, "/webhook", body, {{"Content-Type", "application/json"}})
                .result_int(),
            401u);
  EXPECT_EQ(sink_.calls, 0);
  EXPECT_TRUE(dedupe_.values.empty());
  EXPECT_EQ(counter("signature_invalid"), 1);
  EXPECT_EQ(counter("signature_missing"), 1);
}

TEST_F(ReceiverTest, SameWebhookTwiceProducesOnce) {
  const std::string body = test::fixture("meta_inbound_image.json");
  EXPECT_EQ(post_signed(body).result_int(), 200u);
  EXPECT_EQ(post_signed(body).result_int(), 200u);
  EXPECT_EQ(sink_.published.size(), 1u);
  EXPECT_EQ(counter("duplicate"), 1);
}

TEST_F(ReceiverTest, The200WaitsForTheDoneMarkSoAnImmediateDuplicateIsNot503) {
  const std::string body = test::fixture("meta_inbound_text.json");
  http::Request req{bhttp::verb::post, "/webhook", 11};
  req.set("Content-Type", "application/json");
  req.set("X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("app-secret", body));
  req.body() = body;
  req.prepare_payload();
  dedupe_.hold_confirm = true;
  std::optional<http::Response> out;
  receiver_.handle(std::move(req), [&](http::Response r) { out = std::move(r); });
  EXPECT_EQ(sink_.published.size(), 1u);
  EXPECT_FALSE(out.has_value()) << "answered while the claim was still pending";
  ASSERT_TRUE(dedupe_.held_confirm);
  dedupe_.held_confirm();
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->result_int(), 200u);
  dedupe_.hold_confirm = false;
  EXPECT_EQ(post_signed(body).result_int(), 200u);  // Meta's duplicate, right after our 200
  EXPECT_EQ(sink_.published.size(), 1u);
}

TEST_F(ReceiverTest, AFailedDoneMarkStillAnswers200ForWhatKafkaAcknowledged) {
  dedupe_.confirm_fails = true;
  EXPECT_EQ(post_signed(test::fixture("meta_inbound_text.json")).result_int(), 200u);
  EXPECT_EQ(sink_.published.size(), 1u);
}

TEST_F(ReceiverTest, TheSameMessageTwiceInOneBodyIsProducedOnce) {
  auto body = nlohmann::json::parse(test::fixture("pywa_inbound_text.json"));
  auto& messages = body["entry"][0]["changes"][0]["value"]["messages"];
  messages.push_back(messages[0]);
  auto second = body["entry"][0];
  body["entry"].push_back(second);  // and once more in another entry
  EXPECT_EQ(post_signed(body.dump()).result_int(), 200u);
  EXPECT_EQ(sink_.published.size(), 1u);
  EXPECT_EQ(dedupe_.values.size(), 1u);
  EXPECT_EQ(dedupe_.values.begin()->second, "done");
}

TEST_F(ReceiverTest, FailedProduceReleasesTheClaimSoTheRetryIsAccepted) {
  const std::string body = test::fixture("meta_inbound_text.json");
  sink_.fail = true;
  EXPECT_EQ(post_signed(body).result_int(), 503u);
  EXPECT_EQ(dedupe_.released, 1);
  EXPECT_TRUE(dedupe_.values.empty());  // nothing left to mistake the retry for a duplicate
  sink_.fail = false;
  EXPECT_EQ(post_signed(body).result_int(), 200u);
  EXPECT_EQ(sink_.published.size(), 1u);
}

TEST_F(ReceiverTest, RedisDownIs503AndProducesNothing) {
  dedupe_.down = true;
  EXPECT_EQ(post_signed(test::fixture("meta_inbound_text.json")).result_int(), 503u);
  EXPECT_EQ(sink_.calls, 0);
}

TEST_F(ReceiverTest, EventInFlightElsewhereIsNotAcknowledged) {
  const std::string body = test::fixture("meta_inbound_text.json");
  auto events = nlohmann::json::parse(body);
  const std::string wamid = events["entry"][0]["changes"][0]["value"]["messages"][0]["id"];
  const std::string pnid =
      events["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"];
  dedupe_.values[Receiver::dedupe_redis_key("m:" + pnid + ":" + wamid)] = "other-token";
  EXPECT_EQ(post_signed(body).result_int(), 503u);
  EXPECT_EQ(sink_.calls, 0);
}

TEST_F(ReceiverTest, SignedButUnparseableBodyGoesToTheDlqWith200) {
  const std::string body = R"({"object":"whatsapp_business_account","entry":"oops"})";
  auto r = post_signed(body);
  EXPECT_EQ(r.result_int(), 200u);
  ASSERT_EQ(sink_.published.size(), 1u);
  const auto& rec = sink_.published[0];
  EXPECT_EQ(rec.topic, topics::kDlq);
  EXPECT_EQ(rec.value, body);  // raw bytes, untouched
  std::map<std::string, std::string> h(rec.headers.begin(), rec.headers.end());
  EXPECT_EQ(h["dlq.original.topic"], "http:/webhook");
  EXPECT_EQ(h["dlq.worker"], "receiver");
  EXPECT_EQ(h["dlq.error.class"], "invalid_input");
  EXPECT_EQ(h["dlq.error.message"], "entry[] is missing");
  EXPECT_EQ(h["dlq.attempts"], "1");
  EXPECT_EQ(counter("dead_lettered"), 1);
}

TEST_F(ReceiverTest, DlqProduceFailureIs503SoMetaRetries) {
  sink_.fail = true;
  EXPECT_EQ(post_signed("garbage").result_int(), 503u);
}

TEST_F(ReceiverTest, SignedBodyWithWrongContentTypeIsDeadLetteredNotLost) {
  const std::string body = test::fixture("meta_inbound_text.json");
  auto r = call(bhttp::verb::post, "/webhook", body,
                {{"Content-Type", "text/plain"},
                 {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("app-secret", body)}});
  EXPECT_EQ(r.result_int(), 200u);
  ASSERT_EQ(sink_.published.size(), 1u);
  EXPECT_EQ(sink_.published[0].topic, topics::kDlq);
}

TEST_F(ReceiverTest, ContentTypeWithCharsetIsJson) {
  const std::string body = test::fixture("meta_inbound_text.json");
  auto r = call(bhttp::verb::post, "/webhook", body,
                {{"Content-Type", "application/json; charset=UTF-8"},
                 {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("app-secret", body)}});
  EXPECT_EQ(r.result_int(), 200u);
  ASSERT_EQ(sink_.published.size(), 1u);
  EXPECT_EQ(sink_.published[0].topic, topics::kInbound);
}

TEST_F(ReceiverTest, UnknownPathsAndMethods) {
  EXPECT_EQ(call(bhttp::verb::get, "/nope").result_int(), 404u);
  EXPECT_EQ(call(bhttp::verb::put, "/webhook").result_int(), 405u);
  EXPECT_EQ(call(bhttp::verb::get, "/eum").result_int(), 405u);
}

TEST_F(ReceiverTest, EumNotificationWithValidSnsSignatureIsIngested) {
  const std::string eum = test::fixture("aws_eum_sns_message_inbound_text_redacted.json");
  const std::string url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem";
  auto r = call(bhttp::verb::post, "/eum", test::signed_sns_body(cert_, "Notification", eum, url),
                {{"Content-Type", "text/plain; charset=UTF-8"},
                 {"x-amz-sns-message-type", "Notification"}});
  EXPECT_EQ(r.result_int(), 200u) << r.body();
  ASSERT_EQ(sink_.published.size(), 1u);
  EXPECT_EQ(sink_.published[0].key, "503650672828631:14157470265");
  EXPECT_EQ(nlohmann::json::parse(sink_.published[0].value)["source"], "eum");
  ASSERT_EQ(certs_.fetched.size(), 1u);
  EXPECT_EQ(certs_.fetched[0], url);
}

TEST_F(ReceiverTest, EumWithBadSignatureOrForeignCertUrlIs401) {
  const std::string eum = test::fixture("aws_eum_sns_message_inbound_text_redacted.json");
  auto other = test::make_test_cert();
  auto forged = test::signed_sns_body(other, "Notification", eum,
                                      "https://sns.eu-west-1.amazonaws.com/c.pem");
  EXPECT_EQ(call(bhttp::verb::post, "/eum", forged).result_int(), 401u);
  auto foreign = test::signed_sns_body(cert_, "Notification", eum, "https://evil.example/c.pem");
  EXPECT_EQ(call(bhttp::verb::post, "/eum", foreign).result_int(), 401u);
  EXPECT_TRUE(certs_.fetched.size() <= 1u);  // the foreign URL was never fetched
  EXPECT_EQ(sink_.calls, 0);
}

TEST_F(ReceiverTest, EumSubscriptionConfirmationVisitsSubscribeUrl) {
  const std::string sub = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t";
  auto body = test::signed_sns_body(cert_, "SubscriptionConfirmation", "confirm me",
                                    "https://sns.eu-west-1.amazonaws.com/c.pem", sub);
  auto r = call(bhttp::verb::post, "/eum", body);
  EXPECT_EQ(r.result_int(), 200u);
  ASSERT_EQ(certs_.confirmed.size(), 1u);
  EXPECT_EQ(certs_.confirmed[0], sub);
  EXPECT_EQ(sink_.calls, 0);
}

TEST_F(ReceiverTest, EumRawDeliveryIsRefusedUnlessEnabled) {
  const std::string eum = test::fixture("aws_eum_sns_message_inbound_text_redacted.json");
  EXPECT_EQ(call(bhttp::verb::post, "/eum", eum, {{"x-amz-sns-rawdelivery", "true"}}).result_int(),
            401u);
  EXPECT_EQ(sink_.calls, 0);
}

TEST_F(ReceiverTest, EumSignedNotificationWithBadEntryIsDeadLettered) {
  auto body = test::signed_sns_body(cert_, "Notification", R"({"whatsAppWebhookEntry":"{"})",
                                    "https://sns.eu-west-1.amazonaws.com/c.pem");
  auto r = call(bhttp::verb::post, "/eum", body);
  EXPECT_EQ(r.result_int(), 200u);
  ASSERT_EQ(sink_.published.size(), 1u);
  EXPECT_EQ(sink_.published[0].topic, topics::kDlq);
  EXPECT_EQ(sink_.published[0].value, body);
}

TEST_F(ReceiverTest, EumGarbageIs400) {
  EXPECT_EQ(call(bhttp::verb::post, "/eum", "not json").result_int(), 400u);
}

}  // namespace
}  // namespace wafleet::receiver

namespace wafleet::receiver {
namespace {

TEST(ReceiverReceipts, EachNewMessageAsksTheSenderForAReadReceiptWithItsEvent) {
  FakeSink sink;
  FakeDedup dedupe;
  prometheus::Registry registry;
  ReceiverOptions o;
  o.app_secrets = {"app-secret"};
  o.receipts = "typing";
  Receiver receiver(o, sink, dedupe, nullptr, registry, [] { return 1700000000000; });
  auto post = [&](const std::string& body) {
    http::Request req{bhttp::verb::post, "/webhook", 11};
    req.set("Content-Type", "application/json");
    req.set("X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex("app-secret", body));
    req.body() = body;
    req.prepare_payload();
    unsigned status = 0;
    receiver.handle(std::move(req), [&](http::Response r) { status = r.result_int(); });
    return status;
  };
  ASSERT_EQ(post(test::fixture("meta_inbound_text.json")), 200u);
  ASSERT_EQ(sink.published.size(), 2u);
  const auto& event = sink.published[0];
  const auto& receipt = sink.published[1];
  EXPECT_EQ(event.topic, topics::kInbound);
  EXPECT_EQ(receipt.topic, topics::kOutbound);
  EXPECT_EQ(receipt.key, event.key) << "the person's partition";
  auto request = nlohmann::json::parse(receipt.value);
  const std::string wamid = nlohmann::json::parse(event.value)["message_id"];
  EXPECT_EQ(request["type"], "typing");
  EXPECT_EQ(request["message_id"], wamid);
  EXPECT_EQ(request["idempotency_key"], "receipt:" + wamid);
  // What the sender will send Meta: exactly the documented typing-indicator body.
  auto parsed = sender::parse_request(request);
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  auto expected = nlohmann::json::parse(test::fixture("meta_send_typing_indicator.json"));
  expected["message_id"] = wamid;
  EXPECT_EQ(parsed->graph_body, expected);
  // Meta's retry of the same webhook: no second event, no second receipt.
  ASSERT_EQ(post(test::fixture("meta_inbound_text.json")), 200u);
  EXPECT_EQ(sink.published.size(), 2u);
  // Statuses are not messages: no receipt.
  ASSERT_EQ(post(test::fixture("meta_status_failed_131049.json")), 200u);
  ASSERT_EQ(sink.published.size(), 3u);
  EXPECT_EQ(sink.published[2].topic, topics::kStatus);
}

}  // namespace
}  // namespace wafleet::receiver
