#include "workers/store/record.h"

#include <ctime>

#include <fmt/format.h>

#include "common/json_util.h"
#include "common/pg.h"
#include "topics/topics.h"
#include "topics/webhook_event.h"

namespace wafleet::store {

using Json = nlohmann::json;

const char* table_name(Table t) {
  switch (t) {
    case Table::kMessages: return "messages";
    case Table::kStatuses: return "statuses";
    case Table::kResults: return "results";
    case Table::kMedia: return "media";
    case Table::kTurnMessages: return "turn_messages";
    case Table::kHandoffs: return "handoffs";
  }
  return "";
}

const char* table_columns(Table t) {
  switch (t) {
    case Table::kMessages: return "day,id,conversation_key,direction,type,body,at,raw";
    case Table::kStatuses: return "day,wamid,status,at,error_code,error_title,raw";
    case Table::kResults:
      return "day,request_id,status,at,wamid,error_code,error_message,attempts";
    case Table::kMedia:
      return "day,message_id,conversation_key,type,status,storage_uri,sha256,size,mime_type,"
             "transcript,at";
    case Table::kTurnMessages: return "day,message_id,turn_id";
    case Table::kHandoffs: return "day,conversation_key,event,owner,by_what,reason,at";
  }
  return "";
}

bool Batch::empty() const {
  for (const auto& [t, rows] : tables) {
    if (rows.count) {
      return false;
    }
  }
  return conversations.empty() && contacts.empty();
}

void Batch::clear() { *this = Batch{}; }

std::string day_of(int64_t ms) {
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

std::string timestamp_of(int64_t ms) {
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

std::string body_of(const Json& m, const std::string& type) {
  if (!m.is_object()) {
    return "";
  }
  const Json& o = json::obj(m, type);
  if (type == "text") {
    return json::str(o, "body");
  }
  if (type == "image" || type == "video" || type == "document") {
    return json::str(o, "caption");
  }
  if (type == "button") {
    return json::str(o, "text");
  }
  if (type == "reaction") {
    return json::str(o, "emoji");
  }
  if (type == "location") {
    auto name = json::str(o, "name");
    return name.empty() ? json::str(o, "address") : name;
  }
  if (type == "template") {
    return json::str(o, "name");
  }
  if (type == "contacts") {
    const Json& list = json::arr(m, "contacts");
    return list.empty() ? "" : json::str(json::obj(list[0], "name"), "formatted_name");
  }
  if (type == "interactive") {
    // Inbound: the person's choice; outbound: our message's body.
    for (const char* reply : {"button_reply", "list_reply"}) {
      auto title = json::str(json::obj(o, reply), "title");
      if (!title.empty()) {
        return title;
      }
    }
    auto nfm = json::obj(o, "nfm_reply");
    if (!nfm.empty()) {
      return json::str(nfm, "name");
    }
    return json::str(json::obj(o, "body"), "text");
  }
  return "";
}

namespace {

// One COPY line, field by field.
class Line {
 public:
  explicit Line(TableRows& rows) : rows_(rows) {}
  Line& text(std::string_view v) {
    sep();
    pg::copy_field(rows_.lines, v);
    return *this;
  }
  Line& text_or_null(std::string_view v) {
    if (v.empty()) {
      return null();
    }
    return text(v);
  }
  Line& integer(int64_t v) { return text(std::to_string(v)); }
  Line& null() {
    sep();
    pg::copy_null(rows_.lines);
    return *this;
  }
  void end() {
    pg::copy_end(rows_.lines);
    ++rows_.count;
  }

 private:
  void sep() {
    if (!first_) {
      pg::copy_sep(rows_.lines);
    }
    first_ = false;
  }
  TableRows& rows_;
  bool first_ = true;
};

std::string identity_of_key(const std::string& key) {
  const auto colon = key.find(':');
  return colon == std::string::npos ? key : key.substr(colon + 1);
}

std::string number_of_key(const std::string& key) {
  const auto colon = key.find(':');
  return colon == std::string::npos ? "" : key.substr(0, colon);
}

void touch(Batch& b, const std::string& key, const std::string& pnid, int64_t at_ms,
           const std::string& id, const char* direction, const std::string& type,
           const std::string& body) {
  auto& c = b.conversations[key];
  c.phone_number_id = pnid.empty() ? number_of_key(key) : pnid;
  c.identity = identity_of_key(key);
  if (!c.has_message || at_ms >= c.at_ms) {
    c.has_message = true;
    c.at_ms = at_ms;
    c.last_id = id;
    c.direction = direction;
    c.type = type;
    c.body = body;
  }
}

// Rows older than the retention are not stored (a replay of a month-old dead letter, say).
bool expired(const Rules& rules, int64_t at_ms) {
  return rules.now_ms > 0 && at_ms < rules.now_ms - rules.retention_ms;
}

Status add_inbound(Json&& j, const Rules& rules, Batch& b) {
  auto ev = WebhookEvent::from_json(std::move(j));
  if (!ev) {
    return Unexpected(Error::invalid("wa.inbound: " + ev.error()));
  }
  if (ev->kind != EventKind::kMessage || ev->message_id.empty()) {
    ++b.ignored;
    return {};
  }
  const int64_t at = ev->timestamp > 0 ? ev->timestamp * 1000 : ev->received_at_ms;
  if (expired(rules, at)) {
    ++b.expired;
    return {};
  }
  const auto day = day_of(at);
  const auto body = body_of(ev->raw, ev->type);
  Line(b.tables[Table::kMessages])
      .text(day).text(ev->message_id).text(ev->conversation_key).text("in").text(ev->type)
      .text_or_null(body).text(timestamp_of(at)).text(json::dump(ev->raw)).end();
  b.days.insert(day);
  touch(b, ev->conversation_key, ev->phone_number_id, at, ev->message_id, "in", ev->type, body);
  if (!ev->identity.empty()) {
    auto& c = b.contacts[ev->identity];
    if (at >= c.at_ms) {
      c.at_ms = at;
      if (!ev->wa_id.empty()) {
        c.wa_id = ev->wa_id;
      }
      if (!ev->user_id.empty()) {
        c.user_id = ev->user_id;
      }
      if (!ev->profile_name.empty()) {
        c.name = ev->profile_name;
      }
    }
  }
  return {};
}

Status add_status(Json&& j, const Rules& rules, Batch& b) {
  auto ev = WebhookEvent::from_json(std::move(j));
  if (!ev) {
    return Unexpected(Error::invalid("wa.status: " + ev.error()));
  }
  if (ev->kind != EventKind::kStatus || ev->message_id.empty()) {
    ++b.ignored;  // value-level webhook errors: kept in Kafka and the DLQ tools, not here
    return {};
  }
  const int64_t at = ev->timestamp > 0 ? ev->timestamp * 1000 : ev->received_at_ms;
  if (expired(rules, at)) {
    ++b.expired;
    return {};
  }
  const auto day = day_of(at);
  const Json& errors = json::arr(ev->raw, "errors");
  Line line(b.tables[Table::kStatuses]);
  line.text(day).text(ev->message_id).text(ev->type).text(timestamp_of(at));
  if (!errors.empty() && errors[0].is_object()) {
    line.integer(json::int_or(errors[0], "code", 0));
    auto title = json::str(errors[0], "title");
    line.text_or_null(title.empty() ? json::str(errors[0], "message") : title);
  } else {
    line.null().null();
  }
  line.text(json::dump(ev->raw)).end();
  b.days.insert(day);
  return {};
}

Status add_outbound(const kafka::Record& r, const Json& j, const Rules& rules, Batch& b) {
  const auto id = json::str(j, "request_id");
  const auto type = json::str(j, "type");
  if (id.empty() || type.empty()) {
    return Unexpected(Error::invalid("wa.outbound: request_id and type are required"));
  }
  if (type == "read" || type == "typing") {
    ++b.ignored;  // receipts and typing indicators are not messages of the conversation
    return {};
  }
  std::string key = r.key;
  if (key.empty()) {
    auto to = json::str(j, "to");
    key = json::str(j, "phone_number_id") + ":" + (to.empty() ? json::str(j, "recipient") : to);
  }
  const int64_t at = r.timestamp_ms > 0 ? r.timestamp_ms : rules.now_ms;
  if (expired(rules, at)) {
    ++b.expired;
    return {};
  }
  const auto day = day_of(at);
  const auto body = body_of(j, type);
  Line(b.tables[Table::kMessages])
      .text(day).text(id).text(key).text("out").text(type).text_or_null(body)
      .text(timestamp_of(at)).text(json::dump(j)).end();
  b.days.insert(day);
  touch(b, key, json::str(j, "phone_number_id"), at, id, "out", type, body);
  return {};
}

Status add_result(const Json& j, const Rules& rules, Batch& b) {
  const auto id = json::str(j, "request_id");
  const auto status = json::str(j, "status");
  const int64_t at = json::int_or(j, "at_ms", 0);
  if (id.empty() || status.empty() || at <= 0) {
    return Unexpected(Error::invalid("wa.outbound.results: request_id, status and at_ms are required"));
  }
  if (expired(rules, at)) {
    ++b.expired;
    return {};
  }
  const auto day = day_of(at);
  const Json& err = json::obj(j, "error");
  Line line(b.tables[Table::kResults]);
  line.text(day).text(id).text(status).text(timestamp_of(at)).text_or_null(json::str(j, "wamid"));
  if (!err.empty()) {
    line.integer(json::int_or(err, "code", 0)).text_or_null(json::str(err, "message"));
  } else {
    line.null().null();
  }
  line.integer(json::int_or(j, "attempts", 0)).end();
  b.days.insert(day);
  return {};
}

Status add_media(const Json& j, const Rules& rules, Batch& b) {
  const auto id = json::str(j, "message_id");
  const auto key = json::str(j, "conversation_key");
  const auto status = json::str(j, "status");
  const int64_t at = json::int_or(j, "at_ms", 0);
  if (id.empty() || key.empty() || status.empty() || at <= 0) {
    return Unexpected(Error::invalid("wa.media: message_id, conversation_key, status and at_ms are required"));
  }
  if (expired(rules, at)) {
    ++b.expired;
    return {};
  }
  const auto day = day_of(at);
  Line line(b.tables[Table::kMedia]);
  line.text(day).text(id).text(key).text(json::str(j, "type")).text(status)
      .text_or_null(json::str(j, "storage_uri")).text_or_null(json::str(j, "sha256"));
  if (j.contains("size")) {
    line.integer(json::int_or(j, "size", 0));
  } else {
    line.null();
  }
  line.text_or_null(json::str(j, "mime_type")).text_or_null(json::str(j, "transcript"))
      .text(timestamp_of(at)).end();
  b.days.insert(day);
  return {};
}

Status add_turn(const kafka::Record& r, const Json& j, const Rules& rules, Batch& b) {
  const auto turn = json::str(j, "turn_id");
  const Json& ids = json::arr(j, "message_ids");
  if (turn.empty()) {
    return Unexpected(Error::invalid("wa.turns: turn_id is required"));
  }
  const int64_t at = r.timestamp_ms > 0 ? r.timestamp_ms : rules.now_ms;
  if (expired(rules, at)) {
    ++b.expired;
    return {};
  }
  const auto day = day_of(at);
  for (const auto& id : ids) {
    if (id.is_string()) {
      Line(b.tables[Table::kTurnMessages]).text(day).text(id.get<std::string>()).text(turn).end();
    }
  }
  b.days.insert(day);
  return {};
}

Status add_handoff(const Json& j, const Rules& rules, Batch& b) {
  const auto key = json::str(j, "conversation_key");
  const auto event = json::str(j, "event");
  const auto owner = json::str(j, "owner");
  const int64_t at = json::int_or(j, "at_ms", 0);
  if (key.empty() || event.empty() || owner.empty() || at <= 0) {
    return Unexpected(Error::invalid("wa.handoffs: conversation_key, event, owner and at_ms are required"));
  }
  if (expired(rules, at)) {
    ++b.expired;
    return {};
  }
  const auto day = day_of(at);
  Line(b.tables[Table::kHandoffs])
      .text(day).text(key).text(event).text(owner).text(json::str(j, "by"))
      .text_or_null(json::str(j, "reason")).text(timestamp_of(at)).end();
  b.days.insert(day);
  auto& c = b.conversations[key];
  c.phone_number_id = json::str(j, "phone_number_id");
  if (c.phone_number_id.empty()) {
    c.phone_number_id = number_of_key(key);
  }
  c.identity = identity_of_key(key);
  if (at >= c.owner_at_ms) {
    c.owner = owner;
    c.owner_at_ms = at;
  }
  return {};
}

}  // namespace

Status add(const kafka::Record& r, const Rules& rules, Batch& b) {
  Json j = json::parse(r.value);
  if (j.is_discarded() || !j.is_object()) {
    return Unexpected(Error::invalid(r.topic + ": not a JSON object"));
  }
  Status st;
  if (r.topic == topics::kInbound) {
    st = add_inbound(std::move(j), rules, b);
  } else if (r.topic == topics::kStatus) {
    st = add_status(std::move(j), rules, b);
  } else if (r.topic == topics::kOutbound) {
    st = add_outbound(r, j, rules, b);
  } else if (r.topic == topics::kOutboundResults) {
    st = add_result(j, rules, b);
  } else if (r.topic == topics::kMedia) {
    st = add_media(j, rules, b);
  } else if (r.topic == topics::kTurns) {
    st = add_turn(r, j, rules, b);
  } else if (r.topic == topics::kHandoffs) {
    st = add_handoff(j, rules, b);
  } else {
    ++b.ignored;
  }
  if (st) {
    ++b.records;
  }
  return st;
}

}  // namespace wafleet::store
