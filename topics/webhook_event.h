#pragma once
// The normalized webhook event (schema: topics/schemas/webhook_event.schema.json). One per
// message, status, value-level error and non-message change of a webhook.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/expected.h"

namespace wafleet {

enum class EventKind { kMessage, kStatus, kError, kChange };
const char* to_string(EventKind k);

struct WebhookEvent {
  EventKind kind = EventKind::kMessage;
  std::string event_id;          // deterministic, see schema
  std::string dedupe_key;        // Redis key suffix for the receiver's claim
  std::string conversation_key;  // the Kafka key
  std::string identity;          // BSUID or wa_id (or group id) the key was built from
  std::string phone_number_id;
  std::string display_phone_number;
  std::string waba_id;
  std::string field;
  std::string user_id;
  std::string parent_user_id;
  std::string wa_id;
  std::string profile_name;
  std::string username;
  std::string type;
  std::string message_id;
  int64_t timestamp = 0;
  int64_t received_at_ms = 0;
  std::string source;  // "meta" | "eum"
  std::string trace_id;
  nlohmann::json raw;  // the original object, unchanged

  // The topic this event belongs on (catalogue names).
  const char* topic() const;
  nlohmann::json to_json() const;
  // The same document as to_json().dump(), written directly (no intermediate DOM): this is the
  // receiver's hot path.
  std::string encode() const;
  static Expected<WebhookEvent, std::string> from_json(const nlohmann::json& j);
  // The same, taking the raw object out of j instead of copying it (the store's hot path).
  static Expected<WebhookEvent, std::string> from_json(nlohmann::json&& j);
};

}  // namespace wafleet
