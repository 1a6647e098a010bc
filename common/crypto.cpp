#include "common/crypto.h"

#include <cctype>
#include <memory>
#include <random>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

namespace wafleet::crypto {

namespace {
constexpr char kHex[] = "0123456789abcdef";

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PKeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
}  // namespace

std::string hex_encode(std::string_view bytes) {
  std::string out;
  out.resize(bytes.size() * 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kHex[b >> 4];
    out[2 * i + 1] = kHex[b & 0xf];
  }
  return out;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  return hex_encode(hmac_sha256_raw(key, data));
}

std::string hmac_sha256_raw(std::string_view key, std::string_view data) {
  // OpenSSL 3's one-shot HMAC() looks the algorithm up on every call; fetch it once per thread.
  struct MacDeleter {
    void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
  };
  thread_local std::unique_ptr<EVP_MAC, MacDeleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  if (mac) {
    std::unique_ptr<EVP_MAC_CTX, Deleter<EVP_MAC_CTX, EVP_MAC_CTX_free>> ctx(
        EVP_MAC_CTX_new(mac.get()));
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    if (ctx &&
        EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     params) == 1 &&
        EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()),
                       data.size()) == 1 &&
        EVP_MAC_final(ctx.get(), out, &len, sizeof out) == 1) {
      return std::string(reinterpret_cast<const char*>(out), len);
    }
  }
  unsigned int ulen = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &ulen);
  return std::string(reinterpret_cast<const char*>(out), ulen);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool verify_hub_signature(std::string_view header_value, const std::vector<std::string>& secrets,
                          std::string_view body) {
  constexpr std::string_view kPrefix = "sha256=";
  if (header_value.size() != kPrefix.size() + 64 ||
      header_value.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  std::string given(header_value.substr(kPrefix.size()));
  for (char& c : given) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  bool ok = false;
  for (const auto& secret : secrets) {
    // No early exit: every secret is tried, so timing does not tell which one matched.
    ok = constant_time_equal(hmac_sha256_hex(secret, body), given) || ok;
  }
  return ok;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
}

std::string sha256_raw(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof md);
}

std::optional<std::string> hex_decode(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(std::string_view data) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size());
}

std::string Sha256::final_raw() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &n);
  return std::string(reinterpret_cast<const char*>(md), n);
}

std::string sha1_hex(std::string_view data) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
}

std::optional<std::string> base64_decode(std::string_view in) {
  std::string clean;
  clean.reserve(in.size());
  for (char c : in) {
    if (c != '\n' && c != '\r' && c != ' ') {
      clean += c;
    }
  }
  if (clean.size() % 4 != 0) {
    return std::nullopt;
  }
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) {
    return std::nullopt;
  }
  size_t len = static_cast<size_t>(n);
  if (!clean.empty() && clean.back() == '=') {
    --len;
    if (clean.size() >= 2 && clean[clean.size() - 2] == '=') {
      --len;
    }
  }
  out.resize(len);
  return out;
}

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  return hex_encode(raw);
}

std::string fast_random_hex(size_t bytes) {
  thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }()};
  std::string out(bytes * 2, '0');
  for (size_t i = 0; i < bytes; i += 8) {
    uint64_t v = rng();
    for (size_t k = 0; k < 8 && i + k < bytes; ++k) {
      const auto b = static_cast<unsigned char>(v >> (8 * k));
      out[2 * (i + k)] = kHex[b >> 4];
      out[2 * (i + k) + 1] = kHex[b & 0xf];
    }
  }
  return out;
}

bool verify_x509_signature(const std::string& cert_pem, std::string_view digest,
                           std::string_view data, std::string_view signature) {
  BioPtr bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  if (!bio) {
    return false;
  }
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return false;
  }
  PKeyPtr key(X509_get_pubkey(cert.get()));
  if (!key) {
    return false;
  }
  const EVP_MD* md = digest == "sha1" ? EVP_sha1() : digest == "sha256" ? EVP_sha256() : nullptr;
  if (md == nullptr) {
    return false;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                          data.size()) == 1;
}

}  // namespace wafleet::crypto
