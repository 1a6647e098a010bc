#pragma once
// A throwaway RSA key and self-signed certificate, to sign SNS messages the way AWS does.
#include <string>

#include "workers/receiver/sns.h"

namespace wafleet::test {

struct TestCert {
  std::string key_pem;
  std::string cert_pem;
};
TestCert make_test_cert();
// Base64 RSA PKCS#1 v1.5 signature of data with digest "sha1" or "sha256".
std::string sign_base64(const std::string& key_pem, const std::string& digest,
                        const std::string& data);
// A signed SNS message body. type: Notification | SubscriptionConfirmation.
std::string signed_sns_body(const TestCert& cert, const std::string& type,
                            const std::string& message, const std::string& cert_url,
                            const std::string& subscribe_url = "",
                            const std::string& signature_version = "1");

}  // namespace wafleet::test
