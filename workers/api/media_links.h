#pragma once
// Links to stored media that expire (1 hour by default) and need no API key: the operator page
// shows thumbnails with them, and a link can be handed to an agent or a contact centre.
//   /v1/media/{message_id}?expires=<unix s>&sig=<HMAC-SHA256(secret, message_id "\n" expires)>
// The API answers a valid link with the file (local storage) or a 302 to a presigned S3 URL
// valid for what is left of the hour.
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "workers/media/media.h"

namespace wafleet::api {

struct MediaLinks {
  std::string secret;           // WAFLEET_MEDIA_LINK_SECRET (shared by replicas)
  int64_t ttl_s = 3600;
  std::optional<media::S3Options> s3;  // for s3:// objects
};

std::string media_link(const MediaLinks& links, const std::string& message_id, int64_t now_s);
// True if sig is the link's and it has not expired.
bool media_link_valid(const MediaLinks& links, const std::string& message_id,
                      const std::string& expires, const std::string& sig, int64_t now_s);
// Adds "url" to every stored media object of a message or a page of messages.
void add_media_links(const MediaLinks& links, nlohmann::json& message_or_page, int64_t now_s);

}  // namespace wafleet::api
