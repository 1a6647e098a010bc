#include "workers/api/query.h"

#include <charconv>

#include "common/crypto.h"
#include "workers/store/record.h"

namespace wafleet::api {

using Json = nlohmann::json;

namespace {

std::string to_url_safe(std::string b64) {
  for (auto& c : b64) {
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  while (!b64.empty() && b64.back() == '=') {
    b64.pop_back();
  }
  return b64;
}

std::string from_url_safe(std::string s) {
  for (auto& c : s) {
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  while (s.size() % 4) {
    s.push_back('=');
  }
  return s;
}

int rank(const std::string& status) {
  if (status == "sent") return 1;
  if (status == "delivered") return 2;
  if (status == "read") return 3;
  if (status == "played") return 4;
  return 0;
}

Json parse_or_empty(std::string_view text, Json fallback) {
  if (text.empty()) {
    return fallback;
  }
  Json j = Json::parse(text, nullptr, false);
  return j.is_discarded() ? fallback : j;
}

// The columns every message query selects, and how a row becomes the API's message. What
// belongs to a message (its results, statuses, media, turn) comes at or after it: `day >= m.day
// - 1` (a day of slack for clocks) lets PostgreSQL skip the older day partitions at run time.
constexpr const char* kMessageColumns = R"sql(
  m.id, m.conversation_key, m.direction, m.type, m.body,
  (extract(epoch FROM m.at) * 1000)::bigint AS at_ms, m.raw,
  (SELECT json_agg(json_build_object('status', r.status, 'at_ms', (extract(epoch FROM r.at) * 1000)::bigint,
                                     'wamid', r.wamid, 'error_code', r.error_code,
                                     'error_message', r.error_message, 'attempts', r.attempts)
                   ORDER BY r.at)
     FROM results r WHERE r.request_id = m.id AND r.day >= m.day - 1) AS results,
  (SELECT json_agg(json_build_object('status', s.status, 'at_ms', (extract(epoch FROM s.at) * 1000)::bigint,
                                     'error_code', s.error_code, 'error_title', s.error_title)
                   ORDER BY s.at)
     FROM statuses s
    WHERE s.day >= m.day - 1
      AND s.wamid = CASE WHEN m.direction = 'in' THEN m.id
                         ELSE (SELECT r.wamid FROM results r WHERE r.request_id = m.id
                                  AND r.day >= m.day - 1 AND r.wamid IS NOT NULL LIMIT 1) END) AS statuses,
  (SELECT json_build_object('status', md.status, 'type', md.type, 'mime_type', md.mime_type,
                            'size', md.size, 'sha256', md.sha256, 'storage_uri', md.storage_uri,
                            'transcript', md.transcript)
     FROM media md WHERE md.message_id = m.id AND md.day >= m.day - 1 LIMIT 1) AS media,
  (SELECT t.turn_id FROM turn_messages t WHERE t.message_id = m.id AND t.day >= m.day - 1 LIMIT 1) AS turn_id
)sql";

Json message_of(const pg::Rows& rows, int i) {
  Json results = parse_or_empty(rows.text(i, 7), Json::array());
  Json statuses = parse_or_empty(rows.text(i, 8), Json::array());
  Json m = {{"id", rows.text(i, 0)},
            {"conversation_key", rows.text(i, 1)},
            {"direction", rows.text(i, 2)},
            {"type", rows.text(i, 3)},
            {"at_ms", rows.integer(i, 5)},
            {"status", current_status(statuses, results)},
            {"statuses", statuses},
            {"message", parse_or_empty(rows.text(i, 6), Json::object())}};
  m["body"] = rows.null(i, 4) ? Json(nullptr) : Json(std::string(rows.text(i, 4)));
  if (m["direction"] == "in") {
    m["wamid"] = m["id"];
  } else {
    m["request_id"] = m["id"];
    m["results"] = results;
    m["wamid"] = nullptr;
    for (const auto& r : results) {
      if (r.contains("wamid") && r["wamid"].is_string()) {
        m["wamid"] = r["wamid"];
      }
    }
  }
  m["media"] = rows.null(i, 9) ? Json(nullptr) : parse_or_empty(rows.text(i, 9), Json(nullptr));
  m["turn_id"] = rows.null(i, 10) ? Json(nullptr) : Json(std::string(rows.text(i, 10)));
  return m;
}

pg::Param opt(const std::string& s) { return s.empty() ? pg::Param{} : pg::Param{s}; }
pg::Param opt_ms(int64_t ms) { return ms <= 0 ? pg::Param{} : pg::Param{store::timestamp_of(ms)}; }

}  // namespace

std::string encode_cursor(int64_t at_ms, const std::string& id) {
  return to_url_safe(crypto::base64_encode(std::to_string(at_ms) + ":" + id));
}

std::optional<std::pair<int64_t, std::string>> decode_cursor(const std::string& cursor) {
  auto raw = crypto::base64_decode(from_url_safe(cursor));
  if (!raw) {
    return std::nullopt;
  }
  const auto colon = raw->find(':');
  if (colon == std::string::npos || colon == 0) {
    return std::nullopt;
  }
  int64_t ms = 0;
  auto [p, ec] = std::from_chars(raw->data(), raw->data() + colon, ms);
  if (ec != std::errc{} || p != raw->data() + colon || ms < 0) {
    return std::nullopt;
  }
  return std::make_pair(ms, raw->substr(colon + 1));
}

std::string current_status(const Json& statuses, const Json& results) {
  std::string best;
  bool failed = false;
  for (const auto& s : statuses) {
    const std::string st = s.value("status", "");
    if (st == "failed") {
      failed = true;
    } else if (rank(st) > rank(best)) {
      best = st;
    }
  }
  if (!best.empty() && !failed) {
    return best;
  }
  if (failed) {
    return "failed";
  }
  // No status from Meta yet: the sender's last outcome (sent, failed, held, uncertain...).
  std::string last;
  for (const auto& r : results) {
    const std::string st = r.value("status", "");
    if (st == "sent" || st == "duplicate") {
      return "sent";
    }
    last = st;
  }
  return last;
}

Result<Json> Reader::conversations(const ConversationFilter& f, const Page& page) {
  pg::Param before_at;
  pg::Param before_key;
  if (!page.cursor.empty()) {
    auto c = decode_cursor(page.cursor);
    if (!c) {
      return Unexpected(Error::invalid("cursor: not one this API gave"));
    }
    before_at = store::timestamp_of(c->first);
    before_key = c->second;
  }
  auto rows = db_.exec(R"sql(
SELECT c.key, c.phone_number_id, c.identity, c.owner,
       (extract(epoch FROM c.last_at) * 1000)::bigint, c.last_id, c.last_direction, c.last_type,
       c.last_body, k.profile_name, k.name
  FROM conversations c LEFT JOIN contacts k ON k.id = c.identity
 WHERE ($1::text IS NULL OR c.phone_number_id = $1)
   AND ($2::text IS NULL OR c.owner = $2)
   AND ($3::timestamptz IS NULL OR c.last_at >= $3)
   AND ($4::timestamptz IS NULL OR c.last_at < $4)
   AND ($5::timestamptz IS NULL OR (c.last_at, c.key) < ($5, $6::text))
 ORDER BY c.last_at DESC, c.key DESC
 LIMIT $7)sql",
                       {opt(f.phone_number_id), opt(f.owner), opt_ms(f.since_ms), opt_ms(f.until_ms),
                        before_at, before_key, std::to_string(page.limit + 1)});
  if (!rows) {
    return Unexpected(rows.error());
  }
  Json items = Json::array();
  const int n = std::min(rows->size(), page.limit);
  for (int i = 0; i < n; ++i) {
    Json c = {{"key", rows->text(i, 0)},
              {"phone_number_id", rows->text(i, 1)},
              {"identity", rows->text(i, 2)},
              {"owner", rows->text(i, 3)},
              {"last_activity_ms", rows->integer(i, 4)}};
    c["last_message"] = {{"id", rows->text(i, 5)},
                         {"direction", rows->text(i, 6)},
                         {"type", rows->text(i, 7)},
                         {"body", rows->null(i, 8) ? Json(nullptr) : Json(std::string(rows->text(i, 8)))}};
    c["profile_name"] = rows->null(i, 9) ? Json(nullptr) : Json(std::string(rows->text(i, 9)));
    c["name"] = rows->null(i, 10) ? Json(nullptr) : Json(std::string(rows->text(i, 10)));
    items.push_back(std::move(c));
  }
  Json next = nullptr;
  if (rows->size() > page.limit && n > 0) {
    next = encode_cursor(rows->integer(n - 1, 4), std::string(rows->text(n - 1, 0)));
  }
  return Json{{"items", items}, {"next_cursor", next}};
}

Result<std::optional<Json>> Reader::messages(const std::string& key, const Page& page) {
  pg::Param before_at;
  pg::Param before_id;
  if (!page.cursor.empty()) {
    auto c = decode_cursor(page.cursor);
    if (!c) {
      return Unexpected(Error::invalid("cursor: not one this API gave"));
    }
    before_at = store::timestamp_of(c->first);
    before_id = c->second;
  }
  auto conv = db_.exec("SELECT key, owner FROM conversations WHERE key = $1", {key});
  if (!conv) {
    return Unexpected(conv.error());
  }
  if (conv->size() == 0) {
    return std::optional<Json>{};
  }
  auto rows = db_.exec(std::string("SELECT ") + kMessageColumns + R"sql(
  FROM messages m
 WHERE m.conversation_key = $1
   AND ($2::timestamptz IS NULL OR (m.at, m.id) < ($2, $3::text))
 ORDER BY m.at DESC, m.id DESC
 LIMIT $4)sql",
                       {key, before_at, before_id, std::to_string(page.limit + 1)});
  if (!rows) {
    return Unexpected(rows.error());
  }
  Json items = Json::array();
  const int n = std::min(rows->size(), page.limit);
  for (int i = 0; i < n; ++i) {
    items.push_back(message_of(*rows, i));
  }
  Json next = nullptr;
  if (rows->size() > page.limit && n > 0) {
    next = encode_cursor(rows->integer(n - 1, 5), std::string(rows->text(n - 1, 0)));
  }
  return std::optional<Json>(Json{{"conversation_key", key},
                                  {"owner", conv->text(0, 1)},
                                  {"items", items},
                                  {"next_cursor", next}});
}

Result<std::optional<Json>> Reader::message(const std::string& id) {
  auto rows = db_.exec(std::string("SELECT ") + kMessageColumns + R"sql(
  FROM messages m
 WHERE m.id = $1
    OR m.id = (SELECT r.request_id FROM results r WHERE r.wamid = $1 LIMIT 1)
 ORDER BY m.at LIMIT 1)sql",
                       {id});
  if (!rows) {
    return Unexpected(rows.error());
  }
  if (rows->size() == 0) {
    return std::optional<Json>{};
  }
  return std::optional<Json>(message_of(*rows, 0));
}

}  // namespace wafleet::api
