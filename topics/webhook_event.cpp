#include "topics/webhook_event.h"

#include "common/json_util.h"
#include "topics/topics.h"

namespace wafleet {

const char* to_string(EventKind k) {
  switch (k) {
    case EventKind::kMessage:
      return "message";
    case EventKind::kStatus:
      return "status";
    case EventKind::kError:
      return "error";
    case EventKind::kChange:
      return "change";
  }
  return "message";
}

const char* WebhookEvent::topic() const {
  switch (kind) {
    case EventKind::kMessage:
      return topics::kInbound;
    case EventKind::kStatus:
    case EventKind::kError:
      return topics::kStatus;
    case EventKind::kChange:
      return topics::kAccountEvents;
  }
  return topics::kInbound;
}

nlohmann::json WebhookEvent::to_json() const {
  nlohmann::json j;
  j["v"] = 1;
  j["kind"] = to_string(kind);
  j["event_id"] = event_id;
  j["conversation_key"] = conversation_key;
  j["identity"] = identity;
  j["phone_number_id"] = phone_number_id;
  j["display_phone_number"] = display_phone_number;
  j["waba_id"] = waba_id;
  j["field"] = field;
  j["user_id"] = user_id;
  j["parent_user_id"] = parent_user_id;
  j["wa_id"] = wa_id;
  j["profile_name"] = profile_name;
  j["username"] = username;
  j["type"] = type;
  j["message_id"] = message_id;
  j["timestamp"] = timestamp;
  j["received_at_ms"] = received_at_ms;
  j["source"] = source;
  j["trace_id"] = trace_id;
  j["raw"] = raw;
  return j;
}

Expected<WebhookEvent, std::string> WebhookEvent::from_json(const nlohmann::json& j) {
  if (!j.is_object() || json::int_or(j, "v") != 1) {
    return Unexpected(std::string("not a v1 webhook event"));
  }
  WebhookEvent e;
  const std::string kind = json::str(j, "kind");
  if (kind == "message") {
    e.kind = EventKind::kMessage;
  } else if (kind == "status") {
    e.kind = EventKind::kStatus;
  } else if (kind == "error") {
    e.kind = EventKind::kError;
  } else if (kind == "change") {
    e.kind = EventKind::kChange;
  } else {
    return Unexpected("unknown event kind '" + kind + "'");
  }
  e.event_id = json::str(j, "event_id");
  e.conversation_key = json::str(j, "conversation_key");
  if (e.event_id.empty() || e.conversation_key.empty()) {
    return Unexpected(std::string("event_id and conversation_key are required"));
  }
  e.identity = json::str(j, "identity");
  e.phone_number_id = json::str(j, "phone_number_id");
  e.display_phone_number = json::str(j, "display_phone_number");
  e.waba_id = json::str(j, "waba_id");
  e.field = json::str(j, "field");
  e.user_id = json::str(j, "user_id");
  e.parent_user_id = json::str(j, "parent_user_id");
  e.wa_id = json::str(j, "wa_id");
  e.profile_name = json::str(j, "profile_name");
  e.username = json::str(j, "username");
  e.type = json::str(j, "type");
  e.message_id = json::str(j, "message_id");
  e.timestamp = json::int_or(j, "timestamp");
  e.received_at_ms = json::int_or(j, "received_at_ms");
  e.source = json::str(j, "source");
  e.trace_id = json::str(j, "trace_id");
  if (const auto* raw = json::field(j, "raw")) {
    e.raw = *raw;
  }
  return e;
}

}  // namespace wafleet
