#include "workers/aggregator/turn.h"

#include <algorithm>

#include "common/crypto.h"
#include "common/json_util.h"

namespace wafleet::aggregator {
namespace {

using Json = nlohmann::json;

const char* media_state_name(MediaState s) {
  switch (s) {
    case MediaState::kNone:
      return "none";
    case MediaState::kPending:
      return "pending";
    case MediaState::kStored:
      return "stored";
    case MediaState::kFailed:
      return "failed";
  }
  return "none";
}

bool plain_text(const Buffered& b) {
  const Json& raw = b.event.raw;
  return b.event.type == "text" && json::field(raw, "context") == nullptr &&
         json::field(raw, "referral") == nullptr;
}

Json item_for(const Buffered& b) {
  const WebhookEvent& e = b.event;
  const Json& raw = e.raw;
  Json item = {{"kind", e.type}, {"message_id", e.message_id}, {"offset", b.offset}};
  if (const Json* ctx = json::field(raw, "context")) {
    item["context"] = *ctx;  // the message this one replies to
  }
  if (const Json* ref = json::field(raw, "referral")) {
    item["referral"] = *ref;
  }
  if (e.type == "text") {
    item["text"] = json::str(json::obj(raw, "text"), "body");
  } else if (is_media_type(e.type)) {
    const Json& m = json::obj(raw, e.type);
    item["media_id"] = json::str(m, "id");
    item["mime_type"] = json::str(m, "mime_type");
    if (const Json* cap = json::field(m, "caption"); cap != nullptr && cap->is_string()) {
      item["caption"] = *cap;
    }
    if (const Json* f = json::field(m, "filename"); f != nullptr && f->is_string()) {
      item["filename"] = *f;
    }
    if (e.type == "audio") {
      const Json* voice = json::field(m, "voice");
      item["voice"] = voice != nullptr && voice->is_boolean() && voice->get<bool>();
    }
    Json media = b.media_record.is_object() ? b.media_record : Json::object();
    media["status"] = media_state_name(b.media);
    item["media"] = media;
  } else if (e.type == "location") {
    item["location"] = json::obj(raw, "location");
  } else if (e.type == "contacts") {
    item["contacts"] = json::arr(raw, "contacts");
  } else if (e.type == "interactive") {
    const Json& in = json::obj(raw, "interactive");
    const std::string kind = json::str(in, "type");
    item["reply_type"] = kind;
    item["reply"] = json::obj(in, kind);
  } else if (e.type == "button") {
    item["button"] = json::obj(raw, "button");
  } else if (e.type == "reaction") {
    const Json& r = json::obj(raw, "reaction");
    item["target_message_id"] = json::str(r, "message_id");
    item["emoji"] = json::str(r, "emoji");  // "" or absent: the reaction was removed
  } else {
    item["raw"] = raw;  // order, system, unsupported, edit, revoke, unknown types: whole
  }
  return item;
}

}  // namespace

std::string turn_id(const Window& w) {
  if (w.messages.empty()) {
    return crypto::sha256_hex(w.conversation_key + "\n").substr(0, 32);
  }
  // The first record's offset, not its message id: a second record of one message (Meta's
  // resend of a webhook whose first produce timed out on our side yet reached Kafka), first in
  // a later window, must not make that window look like the turn already emitted; and a
  // replayed dead letter, a new record, opens a turn of its own.
  int64_t first = w.messages.front().offset;
  for (const auto& b : w.messages) {
    first = std::min(first, b.offset);
  }
  return crypto::sha256_hex(w.conversation_key + "\n@" + std::to_string(first)).substr(0, 32);
}

nlohmann::json build_turn(const Window& w, const Config& c, int32_t partition,
                          int64_t closed_at_ms) {
  std::vector<const Buffered*> ordered;
  for (const auto& b : w.messages) {
    ordered.push_back(&b);
  }
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const Buffered* a, const Buffered* b) { return a->offset < b->offset; });

  Json items = Json::array();
  Json ids = Json::array();
  Json raws = Json::array();
  Json dropped = Json::array();
  Json replayed = Json::array();
  for (const Buffered* b : ordered) {
    ids.push_back(b->event.message_id);
    if (b->replay > 0) {
      replayed.push_back(b->event.message_id);
    }
    raws.push_back(b->event.raw);
    const std::string& type = b->event.type;
    if ((type == "reaction" && !c.keep_reactions) || (type == "sticker" && !c.keep_stickers)) {
      dropped.push_back(b->event.message_id);
      continue;
    }
    if (plain_text(*b) && !items.empty() && items.back().value("kind", "") == "text" &&
        !items.back().contains("context") && !items.back().contains("referral")) {
      Json& last = items.back();
      last["text"] = last["text"].get<std::string>() + "\n" +
                     json::str(json::obj(b->event.raw, "text"), "body");
      last["message_ids"].push_back(b->event.message_id);
      continue;
    }
    Json item = item_for(*b);
    if (type == "text") {
      item["message_ids"] = Json::array({b->event.message_id});
    }
    items.push_back(std::move(item));
  }

  const WebhookEvent& first = ordered.front()->event;
  // Profile details can change mid-burst: the latest message's win.
  const WebhookEvent& latest = ordered.back()->event;
  Json turn = {
      {"v", 1},
      {"turn_id", turn_id(w)},
      {"conversation_key", w.conversation_key},
      {"phone_number_id", first.phone_number_id},
      {"display_phone_number", first.display_phone_number},
      {"waba_id", first.waba_id},
      {"identity", first.identity},
      {"user_id", latest.user_id.empty() ? first.user_id : latest.user_id},
      {"wa_id", latest.wa_id.empty() ? first.wa_id : latest.wa_id},
      {"profile_name", latest.profile_name},
      {"username", latest.username},
      {"partition", partition},
      {"first_offset", ordered.front()->offset},
      {"last_offset", ordered.back()->offset},
      {"window",
       {{"mode", c.mode == Config::Mode::kDebounce ? "debounce" : "tumbling"},
        {"opened_at_ms", w.opened_ms},
        {"last_message_at_ms", w.last_ms},
        {"due_at_ms", due_at(w, c)},
        {"closed_at_ms", closed_at_ms}}},
      {"items", items},
      {"message_ids", ids},
      {"dropped_message_ids", dropped},
      {"messages", raws},
      {"trace_id", first.trace_id},
  };
  if (!replayed.empty()) {
    turn["replayed_message_ids"] = std::move(replayed);  // sent back from the DLQ
  }
  return turn;
}

}  // namespace wafleet::aggregator
