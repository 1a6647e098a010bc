#include "workers/api/media_links.h"

#include <charconv>

#include "common/crypto.h"
#include "common/http_server.h"

namespace wafleet::api {

using Json = nlohmann::json;

namespace {

std::string signature(const MediaLinks& links, const std::string& message_id, int64_t expires) {
  return crypto::hmac_sha256_hex(links.secret, message_id + "\n" + std::to_string(expires));
}

void link_one(const MediaLinks& links, Json& message, int64_t now_s) {
  if (!message.is_object() || !message.contains("media") || !message["media"].is_object()) {
    return;
  }
  Json& m = message["media"];
  if (m.value("status", "") == "stored" && m.contains("storage_uri") && m["storage_uri"].is_string() &&
      message.contains("id") && message["id"].is_string()) {
    m["url"] = media_link(links, message["id"].get<std::string>(), now_s);
    m["url_expires_at_ms"] = (now_s + links.ttl_s) * 1000;
  }
}

}  // namespace

std::string media_link(const MediaLinks& links, const std::string& message_id, int64_t now_s) {
  const int64_t expires = now_s + links.ttl_s;
  return "/v1/media/" + http::percent_encode(message_id) + "?expires=" + std::to_string(expires) +
         "&sig=" + signature(links, message_id, expires);
}

bool media_link_valid(const MediaLinks& links, const std::string& message_id,
                      const std::string& expires, const std::string& sig, int64_t now_s) {
  int64_t at = 0;
  auto [p, ec] = std::from_chars(expires.data(), expires.data() + expires.size(), at);
  if (ec != std::errc{} || p != expires.data() + expires.size() || at < now_s ||
      at > now_s + links.ttl_s) {
    return false;
  }
  return crypto::constant_time_equal(signature(links, message_id, at), sig);
}

void add_media_links(const MediaLinks& links, Json& message_or_page, int64_t now_s) {
  if (message_or_page.contains("items") && message_or_page["items"].is_array()) {
    for (auto& m : message_or_page["items"]) {
      link_one(links, m, now_s);
    }
    return;
  }
  link_one(links, message_or_page, now_s);
}

}  // namespace wafleet::api
