#include "workers/receiver/webhook_parser.h"

#include "common/crypto.h"
#include "common/json_util.h"

namespace wafleet::receiver {
namespace {

using Json = nlohmann::json;

struct ValueContext {
  std::string waba_id;
  std::string field;
  std::string phone_number_id;
  std::string display_phone_number;
  const Json* contacts = nullptr;
};

// The contacts[] entry that describes this person: matched by BSUID, then by wa_id; a lone
// contact is taken as the sender (Meta sends one contact per message webhook).
const Json* find_contact(const ValueContext& v, const std::string& user_id,
                         const std::string& wa_id) {
  if (v.contacts == nullptr || !v.contacts->is_array() || v.contacts->empty()) {
    return nullptr;
  }
  for (const auto& c : *v.contacts) {
    if (!user_id.empty() && json::str(c, "user_id") == user_id) {
      return &c;
    }
  }
  for (const auto& c : *v.contacts) {
    if (!wa_id.empty() && json::str(c, "wa_id") == wa_id) {
      return &c;
    }
  }
  return v.contacts->size() == 1 ? &v.contacts->front() : nullptr;
}

WebhookEvent base_event(const ValueContext& v, const ParseContext& ctx) {
  WebhookEvent e;
  e.waba_id = v.waba_id;
  e.field = v.field;
  e.phone_number_id = v.phone_number_id;
  e.display_phone_number = v.display_phone_number;
  e.source = ctx.source;
  e.received_at_ms = ctx.received_at_ms;
  e.trace_id = ctx.trace_id;
  return e;
}

void fill_contact(WebhookEvent& e, const Json* contact) {
  if (contact == nullptr) {
    return;
  }
  if (e.user_id.empty()) {
    e.user_id = json::str(*contact, "user_id");
  }
  if (e.wa_id.empty()) {
    e.wa_id = json::str(*contact, "wa_id");
  }
  e.parent_user_id = json::str(*contact, "parent_user_id");
  const Json& profile = json::obj(*contact, "profile");
  e.profile_name = json::str(profile, "name");
  e.username = json::str(profile, "username");
}

// The conversation: the business number plus the person's most stable identity.
void set_key(WebhookEvent& e, const std::string& identity) {
  e.identity = identity;
  e.conversation_key = e.phone_number_id + ":" + (identity.empty() ? "unknown" : identity);
}

WebhookEvent message_event(Json& m, const ValueContext& v, const ParseContext& ctx) {
  WebhookEvent e = base_event(v, ctx);
  e.kind = EventKind::kMessage;
  e.message_id = json::str(m, "id");
  e.type = json::str(m, "type");
  if (e.type.empty()) {
    e.type = "unknown";
  }
  e.timestamp = json::int_or(m, "timestamp");
  e.user_id = json::str(m, "from_user_id");
  e.wa_id = json::str(m, "from");
  fill_contact(e, find_contact(v, e.user_id, e.wa_id));
  set_key(e, !e.user_id.empty() ? e.user_id : e.wa_id);
  const std::string id =
      e.message_id.empty() ? "sha256:" + crypto::sha256_hex(json::dump(m)) : e.message_id;
  e.event_id = "m:" + e.phone_number_id + ":" + id;
  e.dedupe_key = e.event_id;
  e.raw = std::move(m);  // last: the fields above were read from it
  return e;
}

WebhookEvent status_event(Json& s, const ValueContext& v, const ParseContext& ctx) {
  WebhookEvent e = base_event(v, ctx);
  e.kind = EventKind::kStatus;
  e.message_id = json::str(s, "id");
  e.type = json::str(s, "status");
  if (e.type.empty()) {
    e.type = "unknown";
  }
  e.timestamp = json::int_or(s, "timestamp");
  const std::string recipient = json::str(s, "recipient_id");
  if (json::str(s, "recipient_type") == "group") {
    // A group is its own conversation; the participant stays in raw.
    fill_contact(e, nullptr);
    set_key(e, recipient);
  } else {
    e.user_id = json::str(s, "recipient_user_id");
    e.wa_id = recipient;
    fill_contact(e, find_contact(v, e.user_id, e.wa_id));
    set_key(e, !e.user_id.empty() ? e.user_id : e.wa_id);
  }
  const std::string id =
      e.message_id.empty() ? "sha256:" + crypto::sha256_hex(json::dump(s)) : e.message_id;
  e.event_id = "s:" + e.phone_number_id + ":" + id + ":" + e.type;
  e.dedupe_key = e.event_id;
  e.raw = std::move(s);
  return e;
}

WebhookEvent error_event(const Json& err, size_t index, const std::string& value_hash,
                         const ValueContext& v, const ParseContext& ctx) {
  WebhookEvent e = base_event(v, ctx);
  e.kind = EventKind::kError;
  e.raw = err;
  e.type = "error";
  e.conversation_key = e.phone_number_id.empty() ? e.waba_id : e.phone_number_id;
  e.event_id = "e:" + e.conversation_key + ":" + value_hash + ":" + std::to_string(index);
  e.dedupe_key = e.event_id;
  return e;
}

}  // namespace

namespace {

// Consumes entry: message and status objects are moved into the events, not copied.
Expected<void, std::string> take_entry(Json& entry, const ParseContext& ctx,
                                       std::vector<WebhookEvent>& out) {
  if (!entry.is_object()) {
    return Unexpected(std::string("entry is not an object"));
  }
  Json* changes = entry.contains("changes") ? &entry["changes"] : nullptr;
  if (changes == nullptr || !changes->is_array()) {
    return Unexpected(std::string("entry has no changes[] array"));
  }
  // entry.id is a string in every documented payload; tolerate a number.
  std::string waba_id = json::str(entry, "id");
  if (waba_id.empty()) {
    if (const Json* id = json::field(entry, "id"); id != nullptr && id->is_number_integer()) {
      waba_id = std::to_string(id->get<int64_t>());
    }
  }
  for (auto& change : *changes) {
    ValueContext v;
    v.waba_id = waba_id;
    v.field = json::str(change, "field");
    const Json& value = json::obj(change, "value");
    const Json& metadata = json::obj(value, "metadata");
    v.phone_number_id = json::str(metadata, "phone_number_id");
    v.display_phone_number = json::str(metadata, "display_phone_number");
    v.contacts = json::field(value, "contacts");

    if (v.field != "messages") {
      // Other webhook fields (account_update, template status, ...) pass through whole.
      WebhookEvent e = base_event(v, ctx);
      e.kind = EventKind::kChange;
      e.raw = json::field(change, "value") != nullptr ? change["value"] : Json(nullptr);
      e.type = v.field.empty() ? "unknown" : v.field;
      e.conversation_key = !v.phone_number_id.empty() ? v.phone_number_id : waba_id;
      if (e.conversation_key.empty()) {
        e.conversation_key = "unknown";
      }
      e.event_id = "c:" + e.conversation_key + ":" + e.type + ":" +
                   crypto::sha256_hex(json::dump(change)).substr(0, 32);
      e.dedupe_key = e.event_id;
      e.timestamp = json::int_or(value, "timestamp");
      out.push_back(std::move(e));
      continue;
    }
    // Errors hash the value as it arrived, before its messages are moved out.
    const Json& errors = json::arr(value, "errors");
    const std::string errors_hash =
        errors.empty() ? std::string{} : crypto::sha256_hex(json::dump(value)).substr(0, 32);
    Json* mv = change.is_object() && change.contains("value") && change["value"].is_object()
                   ? &change["value"]
                   : nullptr;
    auto array_in = [mv](const char* key) -> Json* {
      if (mv == nullptr || !mv->contains(key)) {
        return nullptr;
      }
      Json* a = &(*mv)[key];
      return a->is_array() ? a : nullptr;
    };
    if (Json* ms = array_in("messages")) {
      for (auto& m : *ms) {
        out.push_back(message_event(m, v, ctx));
      }
    }
    if (Json* ss = array_in("statuses")) {
      for (auto& s : *ss) {
        out.push_back(status_event(s, v, ctx));
      }
    }
    for (size_t i = 0; i < errors.size(); ++i) {
      out.push_back(error_event(errors[i], i, errors_hash, v, ctx));
    }
  }
  return {};
}

}  // namespace

Expected<void, std::string> parse_entry(const Json& entry, const ParseContext& ctx,
                                        std::vector<WebhookEvent>& out) {
  Json copy = entry;
  return take_entry(copy, ctx, out);
}

Expected<std::vector<WebhookEvent>, std::string> parse_meta_webhook(std::string_view body,
                                                                    const ParseContext& ctx) {
  Json doc = json::parse(body);
  if (doc.is_discarded()) {
    return Unexpected(std::string("body is not valid JSON"));
  }
  if (!doc.is_object()) {
    return Unexpected(std::string("body is not a JSON object"));
  }
  const std::string object = json::str(doc, "object");
  if (object != "whatsapp_business_account") {
    return Unexpected("object is '" + object + "', expected 'whatsapp_business_account'");
  }
  if (!doc.contains("entry") || !doc["entry"].is_array()) {
    return Unexpected(std::string("entry[] is missing"));
  }
  std::vector<WebhookEvent> out;
  for (auto& entry : doc["entry"]) {
    if (auto r = take_entry(entry, ctx, out); !r) {
      return Unexpected(r.error());
    }
  }
  return out;
}

Expected<std::vector<WebhookEvent>, std::string> parse_eum_event(std::string_view eum_json,
                                                                 const ParseContext& ctx) {
  Json doc = json::parse(eum_json);
  if (doc.is_discarded() || !doc.is_object()) {
    return Unexpected(std::string("EUM event is not a JSON object"));
  }
  const Json* entry_field = json::field(doc, "whatsAppWebhookEntry");
  if (entry_field == nullptr) {
    return Unexpected(std::string("EUM event has no whatsAppWebhookEntry"));
  }
  // Documented as a JSON string holding the entry; accept an already-decoded object too.
  Json entry;
  if (entry_field->is_string()) {
    entry = json::parse(entry_field->get_ref<const std::string&>());
    if (entry.is_discarded()) {
      return Unexpected(std::string("whatsAppWebhookEntry is not valid JSON"));
    }
  } else {
    entry = *entry_field;
  }
  std::vector<WebhookEvent> out;
  if (auto r = take_entry(entry, ctx, out); !r) {
    return Unexpected(r.error());
  }
  return out;
}

}  // namespace wafleet::receiver
