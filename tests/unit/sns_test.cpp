#include "workers/receiver/sns.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "tests/support/fixtures.h"
#include "tests/support/sns_signer.h"

namespace wafleet::receiver {
namespace {

TEST(Sns, ParsesTheDocumentedNotification) {
  auto m = parse_sns(test::fixture("sns_http_notification_awsdocs.json"));
  ASSERT_TRUE(m.has_value()) << m.error();
  EXPECT_EQ(m->type, "Notification");
  EXPECT_EQ(m->message_id, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324");
  EXPECT_TRUE(m->has_subject);
  EXPECT_EQ(m->message, "Hello world!");
  EXPECT_EQ(sns_digest(*m), "sha1");
  EXPECT_EQ(sns_string_to_sign(*m),
            "Message\nHello world!\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
            "Subject\nMy First Message\nTimestamp\n2012-05-02T00:54:06.655Z\n"
            "TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nNotification\n");
}

TEST(Sns, SubscriptionConfirmationSignsTokenAndSubscribeUrlWithDecodedNewlines) {
  auto m = parse_sns(test::fixture("sns_http_subscription_confirmation_awsdocs.json"));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->type, "SubscriptionConfirmation");
  const std::string s = sns_string_to_sign(*m);
  EXPECT_EQ(s.rfind("Message\nYou have chosen to subscribe to the topic "
                    "arn:aws:sns:us-west-2:123456789012:MyTopic.\nTo confirm",
                    0),
            0u);
  EXPECT_NE(s.find("\nSubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action="), std::string::npos);
  EXPECT_NE(s.find("\nToken\n2336412f37fb"), std::string::npos);
  EXPECT_EQ(s.substr(s.size() - 31), "\nType\nSubscriptionConfirmation\n");
}

TEST(Sns, RejectsBodiesThatAreNotSns) {
  EXPECT_FALSE(parse_sns("nope").has_value());
  EXPECT_FALSE(parse_sns(R"({"Type":"Notification"})").has_value());
  EXPECT_FALSE(parse_sns(R"({"Type":"Weird","MessageId":"1"})").has_value());
}

TEST(Sns, CertificateUrlMustBeHttpsPemOnAnSnsHost) {
  const std::string re = R"(^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$)";
  EXPECT_TRUE(sns_url_allowed(
      "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
      re, true, false));
  EXPECT_TRUE(sns_url_allowed("https://sns.cn-north-1.amazonaws.com.cn/x.pem", re, true, false));
  EXPECT_FALSE(sns_url_allowed("http://sns.us-west-2.amazonaws.com/x.pem", re, true, false));
  EXPECT_FALSE(sns_url_allowed("https://sns.us-west-2.amazonaws.com.evil.com/x.pem", re, true, false));
  EXPECT_FALSE(sns_url_allowed("https://evil.com/sns.us-west-2.amazonaws.com/x.pem", re, true, false));
  EXPECT_FALSE(sns_url_allowed("https://sns.us-west-2.amazonaws.com@evil.com/x.pem", re, true, false));
  EXPECT_FALSE(sns_url_allowed("https://sns.us-west-2.amazonaws.com/x.txt", re, true, false));
  EXPECT_TRUE(sns_url_allowed("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription", re,
                              false, false));
}

TEST(Sns, SignatureVerifiesForBothVersionsAndFailsWhenTampered) {
  auto cert = test::make_test_cert();
  for (const std::string version : {"1", "2"}) {
    auto body = test::signed_sns_body(cert, "Notification", "{\"a\":1}\nline2",
                                      "https://sns.eu-west-1.amazonaws.com/c.pem", "", version);
    auto m = parse_sns(body);
    ASSERT_TRUE(m.has_value());
    auto sig = crypto::base64_decode(m->signature);
    ASSERT_TRUE(sig.has_value());
    EXPECT_TRUE(crypto::verify_x509_signature(cert.cert_pem, sns_digest(*m), sns_string_to_sign(*m),
                                              *sig))
        << version;
    m->message += "x";
    EXPECT_FALSE(crypto::verify_x509_signature(cert.cert_pem, sns_digest(*m),
                                               sns_string_to_sign(*m), *sig));
  }
}

}  // namespace
}  // namespace wafleet::receiver

namespace wafleet::receiver {
namespace {

TEST(Sns, LambdaRecordSpellingOfCertUrlIsUnderstood) {
  auto records = nlohmann::json::parse(test::fixture("aws_lambda_sns_event_records.json"));
  auto m = parse_sns(records["Records"][0]["Sns"].dump());
  ASSERT_TRUE(m.has_value()) << m.error();
  EXPECT_EQ(m->type, "Notification");
  EXPECT_EQ(m->message, "Hello from SNS!");
  EXPECT_EQ(m->signing_cert_url, "EXAMPLE");
  EXPECT_TRUE(m->has_subject);
  EXPECT_EQ(m->subject, "TestInvoke");
}

}  // namespace
}  // namespace wafleet::receiver
