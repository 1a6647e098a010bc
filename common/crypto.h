#pragma once
// Thin, allocation-light wrappers over OpenSSL for what the webhook path needs.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wafleet::crypto {

// HMAC-SHA256(key, data) as 64 lowercase hex characters.
std::string hmac_sha256_hex(std::string_view key, std::string_view data);
// The raw 32 bytes (key derivation chains such as AWS SigV4's).
std::string hmac_sha256_raw(std::string_view key, std::string_view data);

// Constant-time equality for equal-length inputs; different lengths compare unequal (the
// length of a signature is public).
bool constant_time_equal(std::string_view a, std::string_view b);

// Checks a "sha256=<hex>" header value against every secret (rotation); hex case-insensitive.
bool verify_hub_signature(std::string_view header_value, const std::vector<std::string>& secrets,
                          std::string_view body);

std::string sha256_hex(std::string_view data);
// Raw 32-byte digest.
std::string sha256_raw(std::string_view data);
// Lowercase hex <-> bytes; nullopt on odd length or a non-hex character.
std::string hex_encode(std::string_view bytes);
std::optional<std::string> hex_decode(std::string_view hex);

// SHA-256 fed in pieces (streamed downloads).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data);
  std::string final_raw();  // once

 private:
  void* ctx_;  // EVP_MD_CTX
};
std::string sha1_hex(std::string_view data);
std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);
std::string hex_encode(std::string_view bytes);

// Random bytes as lowercase hex from OpenSSL's CSPRNG (secrets, tokens that must not be guessed).
std::string random_hex(size_t bytes);
// Random lowercase hex from a per-thread PRNG seeded once from the OS: for ids that must be
// unique but need not be unpredictable (trace and span ids). Far cheaper than random_hex.
std::string fast_random_hex(size_t bytes);

// Verifies an RSA PKCS#1 v1.5 signature made with the key of a PEM X.509 certificate.
// digest: "sha1" or "sha256". Returns false on any error (bad PEM, bad signature).
bool verify_x509_signature(const std::string& cert_pem, std::string_view digest,
                           std::string_view data, std::string_view signature);

}  // namespace wafleet::crypto
