#pragma once
// Amazon SNS HTTP(S) subscription messages: parsing, the canonical string-to-sign, and the
// SigningCertURL / SubscribeURL checks. Pure; the certificate fetch lives in the receiver.
#include <string>
#include <string_view>

#include "common/expected.h"

namespace wafleet::receiver {

struct SnsMessage {
  std::string type;  // Notification | SubscriptionConfirmation | UnsubscribeConfirmation
  std::string message_id;
  std::string topic_arn;
  std::string subject;
  bool has_subject = false;
  std::string message;
  std::string timestamp;
  std::string signature_version;
  std::string signature;  // base64
  std::string signing_cert_url;
  std::string subscribe_url;
  std::string token;
};

Expected<SnsMessage, std::string> parse_sns(std::string_view body);

// "Key\nValue\n" for the documented keys in order (Notification vs. confirmations).
std::string sns_string_to_sign(const SnsMessage& m);

// "sha1" for SignatureVersion 1, "sha256" for 2, "" for anything else.
std::string sns_digest(const SnsMessage& m);

// https, path ending .pem, host matching the SNS pattern (sns.<region>.amazonaws.com[.cn]).
bool sns_url_allowed(std::string_view url, std::string_view host_regex, bool require_pem,
                     bool allow_http);

}  // namespace wafleet::receiver
