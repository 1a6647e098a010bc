#include "workers/sender/request.h"

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

std::optional<std::string> check_media(const std::string& type, const Json& m) {
  if (!m.is_object()) {
    return type + ": must be an object";
  }
  const bool id = m.contains("id");
  const bool link = m.contains("link");
  if (id == link) {
    return type + ": exactly one of id (uploaded media) or link";
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
  return "interactive.type: expected button, list or cta_url, got '" + kind + "'";
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
  } else if (priority != "reply") {
    return Unexpected("priority: expected reply or bulk, got '" + priority + "'");
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
  Json body = {{"messaging_product", "whatsapp"}};
  if (j.contains("recipient_type")) {
    body["recipient_type"] = j["recipient_type"];  // Meta's default is "individual"
  }
  if (!r.to.empty()) {
    body["to"] = r.to;  // Meta: with both, the phone number wins
  } else {
    body["recipient"] = r.recipient;
  }
  body["type"] = r.type;
  body[r.type] = j[r.type];
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
  r.graph_body = std::move(body);
  return r;
}

}  // namespace wafleet::sender
