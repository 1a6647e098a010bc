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

namespace {

void append_string(std::string& out, const std::string& s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void put(std::string& out, const char* key, const std::string& value) {
  out += '"';
  out += key;
  out += "\":";
  append_string(out, value);
  out += ',';
}

void put(std::string& out, const char* key, int64_t value) {
  out += '"';
  out += key;
  out += "\":";
  out += std::to_string(value);
  out += ',';
}

}  // namespace

std::string WebhookEvent::encode() const {
  // Strings here come from a parsed JSON document (valid UTF-8) or from us; raw is dumped with
  // the replace handler like everything else we write.
  std::string out;
  out.reserve(512);
  out += "{\"v\":1,";
  put(out, "kind", std::string(to_string(kind)));
  put(out, "event_id", event_id);
  put(out, "conversation_key", conversation_key);
  put(out, "identity", identity);
  put(out, "phone_number_id", phone_number_id);
  put(out, "display_phone_number", display_phone_number);
  put(out, "waba_id", waba_id);
  put(out, "field", this->field);
  put(out, "user_id", user_id);
  put(out, "parent_user_id", parent_user_id);
  put(out, "wa_id", wa_id);
  put(out, "profile_name", profile_name);
  put(out, "username", username);
  put(out, "type", type);
  put(out, "message_id", message_id);
  put(out, "timestamp", timestamp);
  put(out, "received_at_ms", received_at_ms);
  put(out, "source", source);
  put(out, "trace_id", trace_id);
  out += "\"raw\":";
  out += json::dump(raw);
  out += '}';
  return out;
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

Expected<WebhookEvent, std::string> WebhookEvent::from_json(nlohmann::json&& j) {
  nlohmann::json raw;
  bool had_raw = false;
  if (j.is_object()) {
    if (auto it = j.find("raw"); it != j.end()) {
      raw = std::move(*it);
      j.erase(it);
      had_raw = true;
    }
  }
  auto e = from_json(static_cast<const nlohmann::json&>(j));
  if (e && had_raw) {
    e->raw = std::move(raw);
  }
  return e;
}

}  // namespace wafleet
