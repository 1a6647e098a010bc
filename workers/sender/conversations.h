#pragma once
// What the sender must know about each person before writing to them, kept in Redis from the
// inbound traffic (the sender's own consumer of wa.inbound and wa.status):
//   snd:win:{<phone_number_id>}:<id>     last inbound message time: the 24-hour customer-service
//                                        window (free-form messages only inside it)
//   snd:optout:{<phone_number_id>}:<id>  the person opted out (a STOP keyword, or Meta's 131050)
//   snd:st:{<wamid>}                     delivery status, applied monotonically
// <id> is the phone's digits and, when the person has one, their business-scoped user id, so
// a request addressed either way finds them. Keep Redis persistent (AOF): opt-outs must outlive
// restarts.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/redis.h"
#include "topics/webhook_event.h"
#include "workers/sender/request.h"

namespace wafleet::sender {

struct PolicyOptions {
  std::vector<std::string> stop_keywords = {"STOP", "UNSUBSCRIBE", "STOP ALL", "CANCEL",
                                            "END", "QUIT", "OPT OUT", "OPTOUT"};
  int64_t window_ms = 24LL * 3600 * 1000;
  // WAFLEET_SUPPRESSION_SALT: a forgotten person's opt-out is kept as
  // snd:optout:{number}:#<HMAC-SHA256(salt, id)> (workers/erasure/); "" checks clear keys only.
  std::string suppression_salt;
  // The contacts' flags, mirrored by wafleet-api into snd:contact:<id> (allowlisted, opt_in).
  // Allowlist mode: only allowlisted people receive anything (test numbers). Opt-in: "bulk"
  // (campaign messages) or "templates" (every template) need WhatsApp opt-in; "off" neither.
  bool allowlist_mode = false;
  bool enforce_window = true;  // the 24-hour window and opt-outs (WAFLEET_ENFORCE_WINDOW)
  std::string require_opt_in = "off";
  int64_t status_ttl_ms = 30LL * 24 * 3600 * 1000;
};

class Conversations {
 public:
  // In the refusal of a free-form message to someone never seen writing.
  static constexpr const char* kNeverWrote = "no inbound message from this person";
  Conversations(redis::RedisClient& redis, PolicyOptions options);

  // A message from a person: opens (extends) their window; a STOP keyword opts them out.
  Status on_inbound(const WebhookEvent& e);
  // A status about one of our messages: applied only if it moves forward
  // (sent < delivered < failed < read < played; a late "delivered" never overwrites "read").
  Status on_status(const WebhookEvent& e);
  // Meta answered 131050 (the person stopped marketing messages).
  Status opt_out(const std::string& phone_number_id, const std::string& who,
                 const std::string& reason, int64_t now_ms);

  // Before a send: nullopt = allowed, else why not.
  //   opted out: templates and bulk are refused; replies inside a window they opened pass
  //   free-form (not a template or receipt) outside the 24-hour window: refused (Meta: 131047)
  Result<std::optional<std::string>> refusal(const Request& r, int64_t now_ms);

  // The stored status of a wamid ({} if unknown), for `wafleet status`.
  static Result<nlohmann::json> status_of(redis::RedisClient& redis, const std::string& wamid);

  bool is_stop(const std::string& text) const;

 private:
  redis::RedisClient& redis_;
  PolicyOptions options_;
};

// Digits of a phone number ("+1 (650) 555-1234" -> "16505551234").
std::string phone_digits(const std::string& phone);

}  // namespace wafleet::sender
