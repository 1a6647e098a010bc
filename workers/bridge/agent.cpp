#include "workers/bridge/agent.h"

#include <algorithm>
#include <cctype>

#include "common/crypto.h"
#include "common/json_util.h"
#include "common/text.h"

namespace wafleet::bridge {
namespace {

using Json = nlohmann::json;

std::string str(const Json& j, const char* key) { return json::str(j, key); }

// Byte offset just past the first n characters of s (or s.size()).
size_t byte_offset_of_char(const std::string& s, size_t n) {
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == n) {
        return i;
      }
      ++chars;
    }
  }
  return s.size();
}

size_t char_count(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) {
    n += (c & 0xC0) != 0x80 ? 1 : 0;
  }
  return n;
}

// Lowercased (ASCII), surrounding spaces and punctuation removed: how keywords compare.
std::string normalized(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    out.push_back(c < 0x80 ? static_cast<char>(std::tolower(c)) : static_cast<char>(c));
  }
  const std::string edge = " \t\r\n.,;:!?\"'()-";
  const auto first = out.find_first_not_of(edge);
  if (first == std::string::npos) {
    return "";
  }
  std::string core = out.substr(first, out.find_last_not_of(edge) - first + 1);
  // Spanish opening marks (¡ ¿) are two bytes in UTF-8.
  for (const char* mark : {"\xc2\xa1", "\xc2\xbf"}) {
    while (core.starts_with(mark)) {
      core.erase(0, 2);
    }
  }
  return core;
}

const Json& last_message_id_of(const Json& turn) {
  static const Json empty = "";
  const Json* ids = json::field(turn, "message_ids");
  if (ids == nullptr || !ids->is_array() || ids->empty()) {
    return empty;
  }
  return ids->back();
}

// The envelope every request to the person shares.
Json envelope(const Json& turn, const std::string& request_id, const std::string& source) {
  Json r = {{"request_id", request_id},
            {"idempotency_key", request_id},
            {"phone_number_id", str(turn, "phone_number_id")},
            {"priority", "reply"},
            {"wafleet", {{"source", source}, {"turn_id", str(turn, "turn_id")}}}};
  const std::string wa_id = str(turn, "wa_id");
  if (!wa_id.empty()) {
    r["to"] = wa_id;
  } else {
    r["recipient"] = str(turn, "user_id").empty() ? str(turn, "identity") : str(turn, "user_id");
  }
  return r;
}

}  // namespace

std::string describe_item(const Json& item) {
  const std::string kind = str(item, "kind");
  std::string prefix;
  if (const Json* ctx = json::field(item, "context"); ctx != nullptr && ctx->is_object()) {
    const std::string id = str(*ctx, "id");
    if (!id.empty()) {
      prefix = "(replying to message " + id + ") ";
    }
  }
  const Json& media = json::obj(item, "media");
  const std::string status = str(media, "status");
  auto with_caption = [&](std::string what) {
    const std::string caption = str(item, "caption");
    if (status == "failed") {
      what += " that could not be downloaded";
    }
    return "[" + what + (caption.empty() ? "" : ": " + caption) + "]";
  };
  std::string text;
  if (kind == "text") {
    text = str(item, "text");
  } else if (kind == "image") {
    text = with_caption("image");
  } else if (kind == "video") {
    text = with_caption("video");
  } else if (kind == "sticker") {
    text = with_caption("sticker");
  } else if (kind == "document") {
    const std::string name = str(item, "filename");
    text = with_caption("document" + (name.empty() ? "" : " " + name));
  } else if (kind == "audio") {
    const bool voice = item.value("voice", false);
    const std::string transcript = str(media, "transcript");
    if (!transcript.empty()) {
      text = std::string(voice ? "[voice note] " : "[audio] ") + transcript;
    } else {
      text = with_caption(std::string(voice ? "voice note" : "audio") +
                          (status == "stored" ? " (no transcript)" : ""));
    }
  } else if (kind == "location") {
    const Json& l = json::obj(item, "location");
    std::string where = str(l, "name");
    const std::string address = str(l, "address");
    if (!address.empty()) {
      where += (where.empty() ? "" : ", ") + address;
    }
    std::string coords;
    if (l.contains("latitude") && l.contains("longitude")) {
      coords = l["latitude"].dump() + ", " + l["longitude"].dump();
    }
    text = "[location: " + where + (where.empty() || coords.empty() ? "" : " ") +
           (coords.empty() ? "" : "(" + coords + ")") + "]";
  } else if (kind == "contacts") {
    std::vector<std::string> people;
    for (const auto& c : json::arr(item, "contacts")) {
      std::string who = str(json::obj(c, "name"), "formatted_name");
      const Json& phones = json::arr(c, "phones");
      if (!phones.empty()) {
        who += (who.empty() ? "" : " ") + str(phones[0], "phone");
      }
      people.push_back(who);
    }
    text = "[shared contact";
    for (size_t i = 0; i < people.size(); ++i) {
      text += (i == 0 ? ": " : "; ") + people[i];
    }
    text += "]";
  } else if (kind == "interactive") {
    const Json& reply = json::obj(item, "reply");
    const std::string title = str(reply, "title");
    text = "[chose: " + (title.empty() ? str(reply, "id") : title) + "]";
    if (str(item, "reply_type") == "nfm_reply") {
      text = "[completed a form: " + str(reply, "response_json") + "]";
    }
  } else if (kind == "button") {
    text = "[pressed: " + str(json::obj(item, "button"), "text") + "]";
  } else if (kind == "reaction") {
    const std::string emoji = str(item, "emoji");
    text = emoji.empty() ? "[removed a reaction]"
                         : "[reacted " + emoji + " to message " + str(item, "target_message_id") + "]";
  } else {
    text = "[" + (kind.empty() ? std::string("unknown") : kind) + " message]";
  }
  return prefix + text;
}

std::string turn_text(const Json& turn) {
  std::string out;
  for (const auto& item : json::arr(turn, "items")) {
    out += (out.empty() ? "" : "\n") + describe_item(item);
  }
  return out;
}

Json user_content(const std::vector<Json>& turns, const PromptOptions& o) {
  Json parts = Json::array();
  std::string pending;  // consecutive text, one part
  auto flush = [&] {
    if (!pending.empty()) {
      parts.push_back({{"type", "text"}, {"text", pending}});
      pending.clear();
    }
  };
  bool images = false;
  for (const auto& turn : turns) {
    for (const auto& item : json::arr(turn, "items")) {
      pending += (pending.empty() ? "" : "\n") + describe_item(item);
      const Json& media = json::obj(item, "media");
      if (str(item, "kind") != "image" || str(media, "status") != "stored" ||
          o.images == Images::kOff) {
        continue;
      }
      const std::string uri = str(media, "storage_uri");
      std::string url;
      if (o.images == Images::kLink && o.link_for) {
        url = o.link_for(uri);
      } else if (o.images == Images::kData && o.read_media) {
        const auto size = media.value("size", int64_t{0});
        if (size > 0 && static_cast<size_t>(size) > o.max_image_bytes) {
          pending += " (too large to attach)";
          continue;
        }
        if (auto bytes = o.read_media(uri); bytes && bytes->size() <= o.max_image_bytes) {
          std::string mime = str(media, "mime_type");
          if (mime.empty()) {
            mime = str(item, "mime_type");
          }
          url = "data:" + (mime.empty() ? std::string("image/jpeg") : mime) + ";base64," +
                crypto::base64_encode(*bytes);
        }
      }
      if (url.empty()) {
        pending += " (not attached)";
        continue;
      }
      flush();
      parts.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
      images = true;
    }
  }
  flush();
  if (!images) {
    // Text only: a plain string, which every OpenAI-compatible server takes.
    std::string text;
    for (const auto& p : parts) {
      text += (text.empty() ? "" : "\n") + p["text"].get<std::string>();
    }
    return text;
  }
  return parts;
}

Json chat_request(const std::vector<Json>& turns, const std::vector<MemoryEntry>& memory,
                  const PromptOptions& o) {
  Json messages = Json::array();
  if (!o.system_prompt.empty()) {
    messages.push_back({{"role", "system"}, {"content", o.system_prompt}});
  }
  for (const auto& m : memory) {
    messages.push_back({{"role", m.role}, {"content", m.content}});
  }
  messages.push_back({{"role", "user"}, {"content", user_content(turns, o)}});
  Json tool = {
      {"type", "function"},
      {"function",
       {{"name", "handoff_to_human"},
        {"description",
         "Hand the conversation to a human agent when the person asks for one, is upset, or "
         "needs something you cannot do. The bot stays silent afterwards."},
        {"parameters",
         {{"type", "object"},
          {"properties", {{"reason", {{"type", "string"}, {"description", "why, in a sentence"}}}}},
          {"required", {"reason"}}}}}}};
  Json body = {{"messages", messages}, {"tools", Json::array({tool})}};
  if (!o.model.empty()) {
    body["model"] = o.model;
  }
  return body;
}

Expected<Answer, std::string> parse_chat_completion(const Json& response) {
  if (!response.is_object()) {
    return Unexpected(std::string("the answer is not a JSON object"));
  }
  const Json& choices = json::arr(response, "choices");
  if (choices.empty()) {
    return Unexpected(std::string("the answer has no choices"));
  }
  const Json& message = json::obj(choices[0], "message");
  Answer a;
  a.session_id = str(response, "session_id");
  std::string content;
  if (const Json* c = json::field(message, "content"); c != nullptr) {
    if (c->is_string()) {
      content = c->get<std::string>();
    } else if (c->is_array()) {
      for (const auto& part : *c) {
        if (str(part, "type") == "text") {
          content += str(part, "text");
        }
      }
    }
  }
  for (const auto& call : json::arr(message, "tool_calls")) {
    const Json& fn = json::obj(call, "function");
    if (str(fn, "name") != "handoff_to_human") {
      continue;
    }
    Handoff h;
    auto args = json::parse(str(fn, "arguments"));
    h.reason = args.is_object() ? str(args, "reason") : "";
    if (h.reason.empty()) {
      h.reason = "the agent handed the conversation over";
    }
    a.handoff = h;
  }
  content = trim(content);
  if (content.empty() && !a.handoff) {
    return Unexpected(std::string("choices[0].message has neither content nor a tool call (finish_reason ") +
                      str(choices[0], "finish_reason") + ")");
  }
  if (!content.empty()) {
    a.text = content;
    a.replies.push_back({{"type", "text"}, {"text", {{"body", content}}}});
  }
  return a;
}

Expected<Answer, std::string> parse_webhook_answer(const Json& response) {
  if (!response.is_object()) {
    return Unexpected(std::string("the answer is not a JSON object"));
  }
  if (!response.contains("replies") || !response["replies"].is_array()) {
    return Unexpected(std::string("replies: required, an array (it may be empty)"));
  }
  Answer a;
  a.session_id = str(response, "session_id");
  if (const Json* end = json::field(response, "end_session"); end != nullptr) {
    if (!end->is_boolean()) {
      return Unexpected(std::string("end_session: must be true or false"));
    }
    a.end_session = end->get<bool>();
  }
  if (const Json* h = json::field(response, "handoff"); h != nullptr && !h->is_null()) {
    if (!h->is_object()) {
      return Unexpected(std::string("handoff: an object {reason, queue} or null"));
    }
    a.handoff = Handoff{str(*h, "reason"), str(*h, "queue")};
    if (a.handoff->reason.empty()) {
      a.handoff->reason = "the agent handed the conversation over";
    }
  }
  size_t n = 0;
  for (const auto& r : response["replies"]) {
    const std::string where = "replies[" + std::to_string(n++) + "]";
    if (!r.is_object()) {
      return Unexpected(where + ": must be an object");
    }
    const std::string type = str(r, "type");
    if (type == "text") {
      const std::string body = r.contains("text") && r["text"].is_object()
                                   ? str(r["text"], "body")
                                   : str(r, "text");
      if (trim(body).empty()) {
        return Unexpected(where + ".text: required, not empty");
      }
      a.text += (a.text.empty() ? "" : "\n") + body;
      a.replies.push_back({{"type", "text"}, {"text", {{"body", body}}}});
    } else if (type == "image" || type == "video" || type == "document" || type == "audio") {
      const Json& inner = json::obj(r, type.c_str());
      const std::string link = str(r, "link").empty() ? str(inner, "link") : str(r, "link");
      if (!link.starts_with("https://") && !link.starts_with("http://")) {
        return Unexpected(where + ".link: an http(s) URL is required for " + type);
      }
      Json media = {{"link", link}};
      const std::string caption = str(r, "caption").empty() ? str(inner, "caption") : str(r, "caption");
      if (!caption.empty() && type != "audio") {
        media["caption"] = caption;
      }
      if (type == "document" && !str(r, "filename").empty()) {
        media["filename"] = str(r, "filename");
      }
      a.text += (a.text.empty() ? "" : "\n") + std::string("[") + type + "]";
      a.replies.push_back({{"type", type}, {type, media}});
    } else if (type == "buttons") {
      const Json& buttons = json::arr(r, "buttons");
      if (buttons.empty() || buttons.size() > 3 || str(r, "text").empty()) {
        return Unexpected(where + ": buttons need a text and 1 to 3 buttons {id, title}");
      }
      Json out = Json::array();
      for (const auto& b : buttons) {
        const std::string title = str(b, "title");
        const std::string id = str(b, "id").empty() ? title : str(b, "id");
        if (title.empty()) {
          return Unexpected(where + ".buttons[].title: required");
        }
        out.push_back({{"type", "reply"}, {"reply", {{"id", id}, {"title", title}}}});
      }
      a.text += (a.text.empty() ? "" : "\n") + str(r, "text");
      a.replies.push_back({{"type", "interactive"},
                           {"interactive",
                            {{"type", "button"},
                             {"body", {{"text", str(r, "text")}}},
                             {"action", {{"buttons", out}}}}}});
    } else if (type == "list") {
      if (str(r, "text").empty() || str(r, "button").empty() || json::arr(r, "sections").empty()) {
        return Unexpected(where + ": a list needs text, button and sections");
      }
      a.text += (a.text.empty() ? "" : "\n") + str(r, "text");
      a.replies.push_back({{"type", "interactive"},
                           {"interactive",
                            {{"type", "list"},
                             {"body", {{"text", str(r, "text")}}},
                             {"action", {{"button", str(r, "button")}, {"sections", r["sections"]}}}}}});
    } else if (type == "reaction") {
      if (!r.contains("emoji") || !r["emoji"].is_string()) {
        return Unexpected(where + ".emoji: required");
      }
      a.replies.push_back(
          {{"type", "reaction"},
           {"reaction", {{"emoji", r["emoji"]}, {"message_id", str(r, "message_id")}}}});
    } else {
      return Unexpected(where + ".type: expected text, image, video, document, audio, buttons, "
                                "list or reaction, got '" + type + "'");
    }
  }
  if (a.replies.empty() && !a.handoff && !a.end_session) {
    return Unexpected(std::string("no replies, no handoff and no end_session: nothing to do"));
  }
  return a;
}

std::vector<std::string> split_text(const std::string& text, size_t max_chars) {
  std::vector<std::string> parts;
  std::string rest = trim(text);
  while (!rest.empty()) {
    if (char_count(rest) <= max_chars) {
      parts.push_back(rest);
      break;
    }
    const size_t limit = byte_offset_of_char(rest, max_chars);  // first byte beyond the limit
    const std::string head = rest.substr(0, limit);
    size_t cut = std::string::npos;
    for (const char* sep : {"\n\n", "\n"}) {
      const size_t at = head.rfind(sep);
      if (at != std::string::npos && at > 0) {
        cut = at + std::char_traits<char>::length(sep);
        break;
      }
    }
    if (cut == std::string::npos) {
      for (size_t i = head.size(); i-- > 1;) {
        const char c = head[i - 1];
        if ((c == '.' || c == '!' || c == '?') && (head[i] == ' ' || head[i] == '\n')) {
          cut = i;
          break;
        }
      }
    }
    if (cut == std::string::npos) {
      const size_t at = head.rfind(' ');
      cut = at != std::string::npos && at > 0 ? at + 1 : limit;
    }
    const std::string part = trim(rest.substr(0, cut));
    if (!part.empty()) {
      parts.push_back(part);
    }
    rest = trim(rest.substr(cut));
  }
  return parts;
}

bool asks_for_human(const Json& turn, const std::vector<std::string>& keywords) {
  for (const auto& item : json::arr(turn, "items")) {
    if (str(item, "kind") != "text") {
      continue;
    }
    // A text item may join several messages with "\n": each line counts on its own.
    const std::string all = str(item, "text");
    size_t pos = 0;
    while (pos <= all.size()) {
      size_t nl = all.find('\n', pos);
      if (nl == std::string::npos) {
        nl = all.size();
      }
      const std::string line = normalized(all.substr(pos, nl - pos));
      for (const auto& k : keywords) {
        if (!line.empty() && line == normalized(k)) {
          return true;
        }
      }
      pos = nl + 1;
    }
  }
  return false;
}

std::vector<Json> outbound_requests(const Json& turn, const Answer& answer,
                                    const std::string& source) {
  std::vector<Json> out;
  const std::string turn_id = str(turn, "turn_id");
  int n = 0;
  for (const auto& reply : answer.replies) {
    const std::string type = str(reply, "type");
    std::vector<Json> objects;
    if (type == "text") {
      for (const auto& part : split_text(str(json::obj(reply, "text"), "body"))) {
        objects.push_back({{"body", part}});
      }
    } else if (type == "reaction") {
      Json r = reply["reaction"];
      if (str(r, "message_id").empty()) {
        r["message_id"] = last_message_id_of(turn);
      }
      objects.push_back(r);
    } else {
      objects.push_back(reply[type]);
    }
    for (auto& object : objects) {
      Json req = envelope(turn, source + ":" + turn_id + ":" + std::to_string(n), source);
      req["wafleet"]["part"] = n;
      req["type"] = type;
      req[type] = std::move(object);
      out.push_back(std::move(req));
      ++n;
    }
  }
  return out;
}

Json typing_request(const Json& turn, int n) {
  Json r = envelope(turn, "bridge-typing:" + str(turn, "turn_id") + ":" + std::to_string(n),
                    "bridge");
  r.erase("to");
  r.erase("recipient");
  r["type"] = "typing";
  r["message_id"] = last_message_id_of(turn);
  return r;
}

Json reaction_request(const Json& turn, const std::string& emoji) {
  Json r = envelope(turn, "bridge-ack:" + str(turn, "turn_id"), "bridge");
  r["type"] = "reaction";
  r["reaction"] = {{"message_id", last_message_id_of(turn)}, {"emoji", emoji}};
  return r;
}

std::vector<std::string> default_handoff_keywords() {
  return {"human",    "agent",     "operator",  "representative", "real person",
          "talk to a human", "speak to a human", "humano", "atendente", "atendimento humano",
          "agente",   "persona",   "mensch",    "mitarbeiter",    "humain",
          "conseiller", "operatore", "umano"};
}

}  // namespace wafleet::bridge
