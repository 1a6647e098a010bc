#include "tests/support/sns_signer.h"

#include <memory>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/crypto.h"

namespace wafleet::test {
namespace {

std::string bio_to_string(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

TestCert make_test_cert() {
  EVP_PKEY* pkey = EVP_RSA_gen(2048);
  X509* x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("sns.test"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, pkey, EVP_sha256());
  TestCert out;
  BIO* kb = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(kb, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  out.key_pem = bio_to_string(kb);
  BIO_free(kb);
  BIO* cb = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cb, x);
  out.cert_pem = bio_to_string(cb);
  BIO_free(cb);
  X509_free(x);
  EVP_PKEY_free(pkey);
  return out;
}

std::string sign_base64(const std::string& key_pem, const std::string& digest,
                        const std::string& data) {
  BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestSignInit(ctx, nullptr, digest == "sha1" ? EVP_sha1() : EVP_sha256(), nullptr, pkey);
  size_t len = 0;
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                 data.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(data.data()), data.size());
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return crypto::base64_encode(sig);
}

std::string signed_sns_body(const TestCert& cert, const std::string& type,
                            const std::string& message, const std::string& cert_url,
                            const std::string& subscribe_url,
                            const std::string& signature_version) {
  receiver::SnsMessage m;
  m.type = type;
  m.message_id = "msg-" + crypto::random_hex(8);
  m.topic_arn = "arn:aws:sns:eu-west-1:123456789012:wa-events";
  m.message = message;
  m.timestamp = "2026-11-22T10:00:00.000Z";
  m.signature_version = signature_version;
  m.signing_cert_url = cert_url;
  m.subscribe_url = subscribe_url;
  if (type != "Notification") {
    m.token = "token-" + crypto::random_hex(8);
  }
  const std::string digest = signature_version == "1" ? "sha1" : "sha256";
  nlohmann::json j = {{"Type", m.type},
                      {"MessageId", m.message_id},
                      {"TopicArn", m.topic_arn},
                      {"Message", m.message},
                      {"Timestamp", m.timestamp},
                      {"SignatureVersion", m.signature_version},
                      {"Signature", sign_base64(cert.key_pem, digest,
                                                receiver::sns_string_to_sign(m))},
                      {"SigningCertURL", m.signing_cert_url}};
  if (type != "Notification") {
    j["SubscribeURL"] = m.subscribe_url;
    j["Token"] = m.token;
  } else {
    j["UnsubscribeURL"] = "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe";
  }
  return j.dump();
}

}  // namespace wafleet::test
