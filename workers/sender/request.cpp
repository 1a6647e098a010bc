#include "workers/sender/request.h"

#include <map>
#include <set>

namespace wafleet::sender {
namespace {

using Json = nlohmann::json;
using Result = Expected<Request, std::string>;

std::string str(const Json& j, const char* key) {
  if (j.is_object()) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) {
      return it->get<std::string>();
    }
  }
  return "";
}

// Checks a string field's length; `required` means it must be present and non-empty.
std::optional<std::string> check_text(const Json& obj, const char* key, const std::string& where,
                                      size_t max, bool required) {
  if (!obj.is_object() || !obj.contains(key)) {
    if (required) {
      return where + "." + key + ": required";
    }
    return std::nullopt;
  }
  if (!obj[key].is_string()) {
    return where + "." + key + ": must be a string";
  }
  const size_t n = utf8_length(obj[key].get<std::string>());
  if (required && n == 0) {
    return where + "." + key + ": must not be empty";
  }
  if (n > max) {
    return where + "." + key + ": " + std::to_string(n) + " characters, Meta's limit is " +
           std::to_string(max);
  }
  return std::nullopt;
}

// The MIME types Meta accepts per media kind (contract section 3).
std::optional<std::string> check_upload_mime(const std::string& type, const std::string& mime) {
  static const std::map<std::string, std::set<std::string>> allowed = {
      {"image", {"image/jpeg", "image/png"}},
      {"audio", {"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}},
      {"video", {"video/3gpp", "video/mp4"}},
      {"sticker", {"image/webp"}},
      {"document",
       {"text/plain", "application/pdf", "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"}}};
  if (mime.empty()) {
    return type + ".mime_type: required with storage_uri (the upload names it)";
  }
  const std::string base = mime.substr(0, mime.find(';'));
  auto it = allowed.find(type);
  if (it == allowed.end() || it->second.count(base) == 0) {
    return type + ".mime_type: '" + mime + "' is not a type Meta accepts for " + type;
  }
  return std::nullopt;
}

std::optional<std::string> check_media(const std::string& type, const Json& m) {
  if (!m.is_object()) {
    return type + ": must be an object";
  }
  const int sources = (m.contains("id") ? 1 : 0) + (m.contains("link") ? 1 : 0) +
                      (m.contains("storage_uri") ? 1 : 0);
  const bool link = m.contains("link");
  if (sources != 1) {
    return type + ": exactly one of id (uploaded media), link, or storage_uri (a stored object "
                  "the sender uploads)";
  }
  if (m.contains("storage_uri")) {
    const std::string uri = str(m, "storage_uri");
    if (!uri.starts_with("file://") && !uri.starts_with("s3://") && !uri.starts_with("/")) {
      return type + ".storage_uri: expected file:///path, /path or s3://bucket/key";
    }
    if (auto e = check_upload_mime(type, str(m, "mime_type"))) {
      return e;
    }
  } else if (m.contains("mime_type")) {
    return type + ".mime_type: only with storage_uri (Meta's message object has none)";
  }
  if (m.contains("voice") && (type != "audio" || !m["voice"].is_boolean())) {
    return type + ".voice: a boolean, on audio only";
  }
  if (link) {
    const std::string l = str(m, "link");
    if (!l.starts_with("https://") && !l.starts_with("http://")) {
      return type + ".link: must be an http(s) URL";
    }
  }
  if (m.contains("caption")) {
    if (type == "audio" || type == "sticker") {
      return type + ".caption: Meta does not allow captions on " + type;
    }
    if (auto e = check_text(m, "caption", type, 1024, false)) {
      return e;
    }
  }
  if (m.contains("filename") && type != "document") {
    return type + ".filename: only documents have a filename";
  }
  return std::nullopt;
}

std::optional<std::string> check_interactive(const Json& in) {
  if (!in.is_object()) {
    return "interactive: must be an object";
  }
  const std::string kind = str(in, "type");
  const Json& action = in.contains("action") ? in["action"] : Json();
  if (in.contains("footer")) {
    if (auto e = check_text(in["footer"], "text", "interactive.footer", 60, true)) {
      return e;
    }
  }
  if (kind == "button") {
    if (auto e = check_text(in.value("body", Json::object()), "text", "interactive.body", 1024, true)) {
      return e;
    }
    if (!action.is_object() || !action.contains("buttons") || !action["buttons"].is_array()) {
      return "interactive.action.buttons: required";
    }
    const auto& buttons = action["buttons"];
    if (buttons.empty() || buttons.size() > 3) {
      return "interactive.action.buttons: " + std::to_string(buttons.size()) +
             " buttons, Meta allows 1 to 3";
    }
    std::set<std::string> titles;
    std::set<std::string> ids;
    for (const auto& b : buttons) {
      const Json& reply = b.value("reply", Json::object());
      if (auto e = check_text(reply, "id", "interactive.action.buttons[].reply", 256, true)) {
        return e;
      }
      if (auto e = check_text(reply, "title", "interactive.action.buttons[].reply", 20, true)) {
        return e;
      }
      if (!titles.insert(str(reply, "title")).second || !ids.insert(str(reply, "id")).second) {
        return "interactive.action.buttons: titles and ids must be unique";
      }
    }
    return std::nullopt;
  }
  if (kind == "list") {
    if (auto e = check_text(in.value("body", Json::object()), "text", "interactive.body", 4096, true)) {
      return e;
    }
    if (in.contains("header")) {
      if (auto e = check_text(in["header"], "text", "interactive.header", 60, false)) {
        return e;
      }
    }
    if (auto e = check_text(action, "button", "interactive.action", 20, true)) {
      return e;
    }
    if (!action.contains("sections") || !action["sections"].is_array() ||
        action["sections"].empty() || action["sections"].size() > 10) {
      return "interactive.action.sections: 1 to 10 sections";
    }
    size_t rows = 0;
    for (const auto& s : action["sections"]) {
      if (auto e = check_text(s, "title", "interactive.action.sections[]", 24,
                              action["sections"].size() > 1)) {
        return e;
      }
      if (!s.contains("rows") || !s["rows"].is_array() || s["rows"].empty()) {
        return "interactive.action.sections[].rows: at least one row";
      }
      for (const auto& r : s["rows"]) {
        ++rows;
        if (auto e = check_text(r, "id", "interactive.action.sections[].rows[]", 200, true)) {
          return e;
        }
        if (auto e = check_text(r, "title", "interactive.action.sections[].rows[]", 24, true)) {
          return e;
        }
        if (auto e = check_text(r, "description", "interactive.action.sections[].rows[]", 72,
                                false)) {
          return e;
        }
      }
    }
    if (rows > 10) {
      return "interactive.action.sections: " + std::to_string(rows) +
             " rows in all, Meta allows 10";
    }
    return std::nullopt;
  }
  if (kind == "cta_url") {
    if (auto e = check_text(in.value("body", Json::object()), "text", "interactive.body", 1024, true)) {
      return e;
    }
    const Json& p = action.value("parameters", Json::object());
    if (str(action, "name") != "cta_url") {
      return "interactive.action.name: must be cta_url";
    }
    if (auto e = check_text(p, "display_text", "interactive.action.parameters", 20, true)) {
      return e;
    }
    const std::string url = str(p, "url");
    if (!url.starts_with("https://") && !url.starts_with("http://")) {
      return "interactive.action.parameters.url: must be an http(s) URL";
    }
    return std::nullopt;
  }
  auto body_text = [&](bool required, size_t max) {
    if (!in.contains("body")) {
      return required ? std::optional<std::string>("interactive.body: required for " + kind)
                      : std::nullopt;
    }
    return check_text(in["body"], "text", "interactive.body", max, true);
  };
  auto named_action = [&](const char* name) -> std::optional<std::string> {
    if (!action.is_object()) {
      return "interactive.action: required";
    }
    if (str(action, "name") != name) {
      return "interactive.action.name: must be " + std::string(name);
    }
    if (action.contains("parameters") && !action["parameters"].is_object()) {
      return "interactive.action.parameters: must be an object";
    }
    return std::nullopt;
  };
  if (kind == "flow") {
    if (auto e = body_text(true, 1024)) {
      return e;
    }
    if (auto e = named_action("flow")) {
      return e;
    }
    const Json& p = action.value("parameters", Json::object());
    if (!p.contains("flow_id") && !p.contains("flow_name")) {
      return "interactive.action.parameters: flow_id or flow_name is required";
    }
    if (auto e = check_text(p, "flow_cta", "interactive.action.parameters", 30, true)) {
      return e;
    }
    if (str(p, "flow_message_version").empty()) {
      return "interactive.action.parameters.flow_message_version: required (e.g. \"3\")";
    }
    return std::nullopt;
  }
  if (kind == "location_request_message") {
    if (auto e = body_text(true, 1024)) {
      return e;
    }
    return named_action("send_location");
  }
  if (kind == "voice_call") {
    if (auto e = body_text(true, 1024)) {
      return e;
    }
    if (auto e = named_action("voice_call")) {
      return e;
    }
    return check_text(action.value("parameters", Json::object()), "display_text",
                      "interactive.action.parameters", 20, false);
  }
  if (kind == "call_permission_request") {
    if (auto e = body_text(true, 1024)) {
      return e;
    }
    return named_action("call_permission_request");
  }
  if (kind == "catalog_message") {
    if (auto e = body_text(true, 1024)) {
      return e;
    }
    return named_action("catalog_message");
  }
  if (kind == "product") {
    if (auto e = body_text(false, 1024)) {
      return e;
    }
    if (str(action, "catalog_id").empty() || str(action, "product_retailer_id").empty()) {
      return "interactive.action: catalog_id and product_retailer_id are required";
    }
    return std::nullopt;
  }
  if (kind == "product_list") {
    if (!in.contains("header") || str(in["header"], "type") != "text") {
      return "interactive.header: a text header is required for product_list";
    }
    if (auto e = check_text(in["header"], "text", "interactive.header", 60, true)) {
      return e;
    }
    if (auto e = body_text(true, 1024)) {
      return e;
    }
    if (str(action, "catalog_id").empty()) {
      return "interactive.action.catalog_id: required";
    }
    if (!action.contains("sections") || !action["sections"].is_array() ||
        action["sections"].empty() || action["sections"].size() > 10) {
      return "interactive.action.sections: 1 to 10 sections";
    }
    size_t products = 0;
    for (const auto& sec : action["sections"]) {
      if (auto e = check_text(sec, "title", "interactive.action.sections[]", 24, true)) {
        return e;
      }
      if (!sec.contains("product_items") || !sec["product_items"].is_array() ||
          sec["product_items"].empty()) {
        return "interactive.action.sections[].product_items: at least one product";
      }
      for (const auto& item : sec["product_items"]) {
        ++products;
        if (str(item, "product_retailer_id").empty()) {
          return "interactive.action.sections[].product_items[].product_retailer_id: required";
        }
      }
    }
    if (products > 30) {
      return "interactive.action.sections: " + std::to_string(products) +
             " products in all, Meta allows 30";
    }
    return std::nullopt;
  }
  if (kind == "carousel") {
    if (auto e = body_text(true, 1024)) {
      return e;
    }
    if (!action.is_object() || !action.contains("cards") || !action["cards"].is_array()) {
      return "interactive.action.cards: required";
    }
    const auto& cards = action["cards"];
    if (cards.size() < 2 || cards.size() > 10) {
      return "interactive.action.cards: " + std::to_string(cards.size()) +
             " cards, Meta allows 2 to 10";
    }
    for (const auto& card : cards) {
      if (!card.is_object() || !card.contains("card_index") || !card.contains("header") ||
          !card.contains("action")) {
        return "interactive.action.cards[]: card_index, header and action are required";
      }
      const std::string h = str(card["header"], "type");
      if (h != "image" && h != "video") {
        return "interactive.action.cards[].header.type: image or video";
      }
    }
    return std::nullopt;
  }
  return "interactive.type: '" + kind +
         "' is not one Meta documents (button, list, cta_url, flow, location_request_message, "
         "voice_call, call_permission_request, product, product_list, catalog_message, carousel)";
}

std::optional<std::string> check_type(const std::string& type, const Json& obj) {
  if (type == "text") {
    return check_text(obj, "body", "text", 4096, true);
  }
  if (type == "image" || type == "audio" || type == "video" || type == "document" ||
      type == "sticker") {
    return check_media(type, obj);
  }
  if (type == "template") {
    if (auto e = check_text(obj, "name", "template", 512, true)) {
      return e;
    }
    if (!obj.contains("language") || str(obj["language"], "code").empty()) {
      return "template.language.code: required";
    }
    if (obj.contains("components") && !obj["components"].is_array()) {
      return "template.components: must be an array";
    }
    return std::nullopt;
  }
  if (type == "interactive") {
    return check_interactive(obj);
  }
  if (type == "reaction") {
    if (str(obj, "message_id").empty()) {
      return "reaction.message_id: required";
    }
    if (!obj.contains("emoji") || !obj["emoji"].is_string()) {
      return "reaction.emoji: required (\"\" removes a reaction)";
    }
    return std::nullopt;
  }
  if (type == "location") {
    if (!obj.is_object() || !obj.contains("latitude") || !obj.contains("longitude")) {
      return "location: latitude and longitude are required";
    }
    return std::nullopt;
  }
  if (type == "contacts") {
    if (!obj.is_array() || obj.empty()) {
      return "contacts: a non-empty array";
    }
    return std::nullopt;
  }
  return "type: '" + type + "' is not one wafleet sends";
}

}  // namespace

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) {
    n += (c & 0xC0) != 0x80 ? 1 : 0;
  }
  return n;
}

Result parse_request(const Json& j) {
  if (!j.is_object()) {
    return Unexpected(std::string("request: must be a JSON object"));
  }
  Request r;
  r.original = j;
  r.request_id = str(j, "request_id");
  r.idempotency_key = str(j, "idempotency_key");
  r.phone_number_id = str(j, "phone_number_id");
  r.to = str(j, "to");
  r.recipient = str(j, "recipient");
  r.type = str(j, "type");
  // Meta's own mark-as-read body, as a client library sends it: a receipt.
  if (r.type.empty() && str(j, "status") == "read") {
    r.type = j.contains("typing_indicator") ? "typing" : "read";
  }
  for (const char* key : {"request_id", "idempotency_key", "phone_number_id", "to", "recipient",
                          "type", "recipient_type", "recipient_identity_key_hash",
                          "biz_opaque_callback_data", "messaging_product", "priority",
                          "message_id"}) {
    if (j.contains(key) && !j[key].is_string()) {
      return Unexpected(std::string(key) + ": must be a string");
    }
  }
  if (j.contains("messaging_product") && str(j, "messaging_product") != "whatsapp") {
    return Unexpected(std::string("messaging_product: must be \"whatsapp\""));
  }
  if (j.contains("wafleet") && !j["wafleet"].is_object()) {
    return Unexpected(std::string("wafleet: the producer's metadata must be an object"));
  }
  if (j.contains("wafleet") && j["wafleet"].contains("bulk_job") && j["wafleet"]["bulk_job"].is_string()) {
    r.bulk_job = j["wafleet"]["bulk_job"].get<std::string>();
  }
  const bool receipt = r.type == "read" || r.type == "typing";
  for (const auto& [key, value] : j.items()) {
    static const std::set<std::string> envelope = {
        "request_id", "idempotency_key", "phone_number_id", "priority", "wafleet",
        "messaging_product", "recipient_type", "to", "recipient", "type", "context",
        "biz_opaque_callback_data", "recipient_identity_key_hash"};
    if (envelope.count(key) || key == r.type) {
      continue;
    }
    if (receipt && (key == "message_id" || key == "status" || key == "typing_indicator")) {
      continue;
    }
    return Unexpected("'" + key + "': not a field of Meta's /messages request (for type '" +
                      r.type + "') nor of wafleet's envelope; refused rather than dropped");
  }
  if (r.request_id.empty()) {
    return Unexpected(std::string("request_id: required"));
  }
  if (r.idempotency_key.empty()) {
    r.idempotency_key = r.request_id;
  }
  if (r.phone_number_id.empty()) {
    return Unexpected(std::string("phone_number_id: required (the business number that sends)"));
  }
  const std::string priority = j.value("priority", "reply");
  if (priority == "bulk") {
    r.priority = Priority::kBulk;
  } else if (priority != "reply" && priority != "human") {
    // human: a person's message (a contact centre); sent like a reply, and the bridge steps back.
    return Unexpected("priority: expected reply, human or bulk, got '" + priority + "'");
  }
  // Receipts: mark as read, optionally with a typing indicator.
  if (r.type == "read" || r.type == "typing") {
    const std::string message_id = str(j, "message_id");
    if (message_id.empty()) {
      return Unexpected(r.type + ": message_id (the inbound wamid) is required");
    }
    r.free_form = false;
    r.graph_body = {{"messaging_product", "whatsapp"}, {"status", "read"}, {"message_id", message_id}};
    if (r.type == "typing") {
      r.graph_body["typing_indicator"] = {{"type", "text"}};
    }
    return r;
  }
  if (r.to.empty() && r.recipient.empty()) {
    return Unexpected(std::string("to (phone) or recipient (business-scoped user id): required"));
  }
  if (!j.contains(r.type)) {
    return Unexpected(r.type.empty() ? std::string("type: required")
                                     : r.type + ": the '" + r.type + "' object is required");
  }
  if (auto e = check_type(r.type, j[r.type])) {
    return Unexpected(*e);
  }
  r.free_form = r.type != "template";
  const std::string recipient_type = str(j, "recipient_type");
  if (!recipient_type.empty() && recipient_type != "individual" && recipient_type != "group") {
    return Unexpected("recipient_type: expected individual or group, got '" + recipient_type + "'");
  }
  r.group = recipient_type == "group";
  if (r.group && (r.to.empty() || !r.recipient.empty())) {
    return Unexpected(std::string("recipient_type group: `to` is the group id (no recipient)"));
  }
  Json body = {{"messaging_product", "whatsapp"}};
  if (!recipient_type.empty()) {
    body["recipient_type"] = recipient_type;  // Meta's default is "individual"
  }
  if (!r.to.empty()) {
    body["to"] = r.to;  // Meta: with both, the phone number wins
  } else {
    body["recipient"] = r.recipient;
  }
  body["type"] = r.type;
  body[r.type] = j[r.type];
  if (j[r.type].is_object() && j[r.type].contains("storage_uri")) {
    r.upload_uri = str(j[r.type], "storage_uri");
    r.upload_mime = str(j[r.type], "mime_type");
    body[r.type].erase("storage_uri");  // replaced by the uploaded media's id before the call
    body[r.type].erase("mime_type");
  }
  if (j.contains("context")) {
    if (str(j["context"], "message_id").empty()) {
      return Unexpected(std::string("context.message_id: required for a reply"));
    }
    body["context"] = j["context"];
  }
  if (j.contains("biz_opaque_callback_data")) {
    if (auto e = check_text(j, "biz_opaque_callback_data", "request", 512, false)) {
      return Unexpected(*e);
    }
    body["biz_opaque_callback_data"] = j["biz_opaque_callback_data"];
  }
  if (j.contains("recipient_identity_key_hash")) {
    // Meta refuses the send if the person's identity key changed since this hash.
    if (str(j, "recipient_identity_key_hash").empty()) {
      return Unexpected(std::string("recipient_identity_key_hash: must not be empty"));
    }
    body["recipient_identity_key_hash"] = j["recipient_identity_key_hash"];
  }
  r.graph_body = std::move(body);
  return r;
}

}  // namespace wafleet::sender
