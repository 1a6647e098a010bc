#include "common/crypto.h"

#include <gtest/gtest.h>

#include "workers/media/media.h"

namespace wafleet::crypto {
namespace {

TEST(Crypto, HmacSha256MatchesRfc4231) {
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, HubSignatureAcceptsAnyRotatedSecretAndUppercaseHex) {
  const std::string body = R"({"object":"whatsapp_business_account","entry":[]})";
  const std::string sig = "sha256=" + hmac_sha256_hex("new-secret", body);
  EXPECT_TRUE(verify_hub_signature(sig, {"old-secret", "new-secret"}, body));
  EXPECT_FALSE(verify_hub_signature(sig, {"old-secret"}, body));
  std::string upper = sig;
  for (size_t i = 7; i < upper.size(); ++i) {
    upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[i])));
  }
  EXPECT_TRUE(verify_hub_signature(upper, {"new-secret"}, body));
}

TEST(Crypto, HubSignatureRejectsMalformedHeadersAndChangedBytes) {
  const std::string body = "{\"a\":\"\\u00e4\"}";
  const std::string good = "sha256=" + hmac_sha256_hex("s", body);
  EXPECT_FALSE(verify_hub_signature(good, {"s"}, "{\"a\":\"ä\"}"));  // re-encoded bytes differ
  EXPECT_FALSE(verify_hub_signature("sha1=" + good.substr(7), {"s"}, body));
  EXPECT_FALSE(verify_hub_signature(good.substr(0, good.size() - 1), {"s"}, body));
  EXPECT_FALSE(verify_hub_signature("", {"s"}, body));
  EXPECT_FALSE(verify_hub_signature(good, {}, body));
}

TEST(Crypto, ConstantTimeEqualComparesContentAndLength) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
}

TEST(Crypto, Base64RoundTripsAndRejectsGarbage) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto back = base64_decode(base64_encode(s));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, s);
  }
  EXPECT_FALSE(base64_decode("abc").has_value());
  EXPECT_FALSE(base64_decode("@@@@").has_value());
}

TEST(Crypto, RandomHexHasTheAskedLength) {
  EXPECT_EQ(random_hex(16).size(), 32u);
  EXPECT_NE(random_hex(16), random_hex(16));
}

// AWS's own example of a presigned GET (S3 docs, "Authenticating Requests: Using Query
// Parameters"): the signature must come out as theirs.
TEST(Crypto, S3PresignedUrlMatchesAwsDocumentedExample) {
  const std::string url = media::presign_get(
      "https://examplebucket.s3.amazonaws.com", "examplebucket.s3.amazonaws.com", "/test.txt",
      "us-east-1", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
      "20130524T000000Z", 86400);
  EXPECT_EQ(url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

}  // namespace
}  // namespace wafleet::crypto
