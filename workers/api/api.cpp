#include "workers/api/api.h"

#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/openapi_embedded.h"
#include "api/page_embedded.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/json_schema.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/text.h"
#include "topics/topics.h"
#include "workers/api/contacts.h"
#include "workers/sender/request.h"

namespace wafleet::api {

using Json = nlohmann::json;
namespace bhttp = boost::beast::http;

namespace {

bool is_hex64(const std::string& s) {
  if (s.size() != 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// Constant-time comparison of two hex digests of equal length.
bool same_digest(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) {
    return false;
  }
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

http::Response json_response(const http::Request& req, unsigned status, const Json& body) {
  return http::make_json_response(req, status, json::dump(body));
}

// "50" -> 50 within [1, 200]; the default when absent; nullopt when not a number in range.
std::optional<int> limit_of(const http::Request& req) {
  const std::string v = http::query_param(req, "limit");
  if (v.empty()) {
    return 50;
  }
  int n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < 1 || n > 200) {
    return std::nullopt;
  }
  return n;
}

std::optional<int64_t> ms_of(const std::string& v) {
  if (v.empty()) {
    return 0;
  }
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < 0) {
    return std::nullopt;
  }
  return n;
}

http::Response from_error(const http::Request& req, const Error& e) {
  if (e.kind == ErrorKind::kInvalidInput) {
    return error_response(req, 400, "invalid_request", e.message);
  }
  log::warn("api.backend_failed", {{"error", e.message}});
  return error_response(req, 503, "unavailable", "the record is not reachable; try again");
}

// 200 with the item, 404 "no <what>" when there is none, or the backend's error.
http::Response found(const http::Request& req, const Result<std::optional<Json>>& item,
                     const std::string& what) {
  if (!item) {
    return from_error(req, item.error());
  }
  if (!*item) {
    return error_response(req, 404, "not_found", "no " + what);
  }
  return json_response(req, 200, **item);
}

// The {id} of <prefix>{id}, decoded; "" when the path is not that (or has more segments).
std::string id_after(const std::string& path, std::string_view prefix) {
  if (path.rfind(prefix, 0) != 0 || path.size() == prefix.size() ||
      path.find('/', prefix.size()) != std::string::npos) {
    return "";
  }
  return http::percent_decode(path.substr(prefix.size()));
}

}  // namespace

// The description as written, with the topics' own record schemas where a body is one
// (OutboundRequest is topics/schemas/outbound_request.schema.json): what clients are told is
// what the API checks.
const std::string& openapi_json() {
  static const std::string doc = [] {
    Json d = Json::parse(kOpenApiJson);
    Json request = topics::schema("outbound_request");
    request.erase("$schema");
    request.erase("$id");
    d["components"]["schemas"]["OutboundRequest"] = request;
    return d.dump(1);
  }();
  return doc;
}

http::Response error_response(const http::Request& req, unsigned status, const std::string& code,
                              const std::string& message) {
  return json_response(req, status, Json{{"error", {{"code", code}, {"message", message}}}});
}

http::Response method_not_allowed(const http::Request& req, const std::string& allow) {
  auto r = error_response(req, 405, "method_not_allowed", "allowed here: " + allow);
  r.set(bhttp::field::allow, allow);
  return r;
}

Expected<std::vector<ApiKey>, std::string> parse_keys(const std::string& text) {
  std::vector<ApiKey> keys;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    line = trim(line);
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const auto sp = line.find_first_of(" \t");
    if (sp == std::string::npos) {
      return Unexpected("line " + std::to_string(n) + ": want '<name> <sha256 hex of the key>'");
    }
    ApiKey k{line.substr(0, sp), trim(line.substr(sp + 1))};
    for (auto& c : k.sha256_hex) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (!is_hex64(k.sha256_hex)) {
      return Unexpected("line " + std::to_string(n) + ": '" + k.name +
                        "': the hash must be 64 hex digits (sha256sum of the key)");
    }
    keys.push_back(std::move(k));
  }
  return keys;
}

Api::Api(std::vector<ApiKey> keys, Limits limits, Outbox outbox, Clock clock)
    : limits_(limits), outbox_(std::move(outbox)), clock_(std::move(clock)) {
  for (auto& k : keys) {
    keys_[k.sha256_hex] = k.name;
  }
  if (!clock_) {
    clock_ = [] { return std::chrono::steady_clock::now(); };
  }
}

std::string Api::authenticate(const http::Request& req) const {
  auto it = req.find(bhttp::field::authorization);
  if (it == req.end()) {
    return "";
  }
  std::string_view v(it->value().data(), it->value().size());
  constexpr std::string_view kBearer = "Bearer ";
  if (v.size() <= kBearer.size() || v.substr(0, kBearer.size()) != kBearer) {
    return "";
  }
  const std::string digest = crypto::sha256_hex(v.substr(kBearer.size()));
  for (const auto& [hash, name] : keys_) {
    if (same_digest(hash, digest)) {
      return name;
    }
  }
  return "";
}

bool Api::admit(const std::string& who) {
  std::lock_guard lock(mu_);
  const auto now = clock_();
  auto [it, fresh] = buckets_.try_emplace(who, Bucket{limits_.burst, now});
  Bucket& b = it->second;
  if (!fresh) {
    const double elapsed = std::chrono::duration<double>(now - b.at).count();
    b.tokens = std::min(limits_.burst, b.tokens + elapsed * limits_.requests_per_second);
    b.at = now;
  }
  if (b.tokens < 1) {
    return false;
  }
  b.tokens -= 1;
  return true;
}

http::Response Api::media_file(const http::Request& req, Session& session, const std::string& id) {
  if (req.method() != bhttp::verb::get) {
    return method_not_allowed(req, "GET");
  }
  const int64_t now_ms = wall_clock_ms();
  const std::string expires = http::query_param(req, "expires");
  if (links_.secret.empty() ||
      !media_link_valid(links_, id, expires, http::query_param(req, "sig"), now_ms / 1000)) {
    return error_response(req, 403, "forbidden", "the link is not valid or has expired: ask for the message again");
  }
  auto row = session.db.exec(
      "SELECT storage_uri, mime_type FROM media WHERE message_id = $1 AND status = 'stored' "
      "AND storage_uri IS NOT NULL LIMIT 1",
      {id});
  if (!row) {
    return from_error(req, row.error());
  }
  if (row->size() == 0) {
    return error_response(req, 404, "not_found", "no stored media for that message");
  }
  const std::string uri(row->text(0, 0));
  const std::string mime = row->null(0, 1) ? "application/octet-stream" : std::string(row->text(0, 1));
  const int64_t left_s = std::max<int64_t>(1, std::stoll(expires) - now_ms / 1000);
  if (uri.starts_with("s3://")) {
    if (!links_.s3) {
      return error_response(req, 503, "unavailable", "the media is in S3 and this API has no WAFLEET_S3_* settings");
    }
    auto url = media::presign_stored(uri, *links_.s3, left_s, now_ms);
    if (!url) {
      return from_error(req, url.error());
    }
    auto r = http::make_response(req, 302, "");
    r.set(bhttp::field::location, *url);
    r.set(bhttp::field::cache_control, "private, no-store");
    return r;
  }
  auto local = media::open_stored(uri, nullptr);
  if (!local) {
    return error_response(req, 404, "not_found", "the stored file is gone (erased or swept)");
  }
  std::ifstream in(local->path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto r = http::make_response(req, 200, std::move(bytes), mime);
  r.set(bhttp::field::cache_control, "private, max-age=" + std::to_string(left_s));
  return r;
}

std::optional<http::Response> Api::too_large(const http::Request& req) const {
  if (req.body().size() <= limits_.max_body_bytes) {
    return std::nullopt;
  }
  return error_response(req, 413, "too_large",
                        "the body is over " + std::to_string(limits_.max_body_bytes) + " bytes");
}

http::Response Api::contacts(const http::Request& req, Session& session, const std::string& id) {
  Contacts contacts(session.db);
  const auto method = req.method();
  if (method == bhttp::verb::get) {
    return found(req, contacts.get(id), "contact with that id");
  }
  if (method == bhttp::verb::put) {
    Json body = json::parse(req.body());
    if (body.is_discarded()) {
      return error_response(req, 400, "invalid_json", "the body is not JSON");
    }
    auto change = parse_contact_change(body);
    if (!change) {
      return error_response(req, 422, "invalid_request", change.error());
    }
    auto c = contacts.put(id, *change);
    if (!c) {
      return from_error(req, c.error());
    }
    if (session.redis != nullptr) {
      if (auto st = mirror(*session.redis, *c); !st) {
        log::warn("api.contact_mirror_failed", {{"error", st.error().message}});
        return error_response(req, 503, "unavailable",
                              "stored, but the sender's copy in Redis was not written; repeat the request");
      }
    }
    return json_response(req, 200, *c);
  }
  if (method == bhttp::verb::delete_) {
    // The sender's copy goes first: a failure there leaves both as they were.
    auto known = contacts.get(id);
    if (!known) {
      return from_error(req, known.error());
    }
    if (!*known) {
      return error_response(req, 404, "not_found", "no contact with that id");
    }
    if (session.redis != nullptr) {
      Json cleared = **known;
      cleared["allowlisted"] = false;
      cleared["opt_in"] = false;
      if (auto st = mirror(*session.redis, cleared); !st) {
        log::warn("api.contact_mirror_failed", {{"error", st.error().message}});
        return error_response(req, 503, "unavailable", "the sender's copy in Redis was not written; nothing changed");
      }
    }
    auto gone = contacts.remove(id);
    if (!gone) {
      return from_error(req, gone.error());
    }
    if (session.redis != nullptr) {
      (void)unmirror(*session.redis, *gone);  // flags already cleared above
    }
    return http::make_response(req, 204, "");
  }
  return method_not_allowed(req, "GET, PUT, DELETE");
}

http::Response Api::forget(const http::Request& req, Session& session, const std::string& id,
                           const std::string& who) {
  if (req.method() != bhttp::verb::delete_) {
    return method_not_allowed(req, "DELETE");
  }
  if (!erasure_ || session.redis == nullptr) {
    return error_response(req, 501, "not_configured",
                          "erasure needs WAFLEET_SUPPRESSION_SALT and Redis on this API");
  }
  erasure::Eraser eraser(session.db, *session.redis, erasure_->options);
  const int64_t now = wall_clock_ms();
  auto report = eraser.forget(id, now);
  if (!report) {
    return from_error(req, report.error());
  }
  Json audit = report->to_json();
  audit["actor"] = who;
  audit["via"] = "api";
  audit["at_ms"] = now;
  if (auto st = erasure_->audit(report->identity_hash, audit.dump()); !st) {
    log::warn("api.audit_failed", {{"error", st.error().message}});
    return error_response(req, 503, "unavailable",
                          "erased, but the audit record was not acknowledged; repeat the request");
  }
  log::info("api.person_forgotten", {{"actor", who}, {"identity_hash", report->identity_hash}});
  return json_response(req, 200, audit);
}

http::Response Api::handle(const http::Request& req, Session& session) {
  Reader& reader = session.reader;
  const std::string path = http::target_path(req);
  const auto method = req.method();
  if (path == "/v1/openapi.json") {
    if (method != bhttp::verb::get) {
      return method_not_allowed(req, "GET");
    }
    return http::make_json_response(req, 200, openapi_json());
  }
  if (path == "/" || path == "/index.html") {
    // The operator page holds no data: it asks for a key and calls the routes below.
    if (method != bhttp::verb::get) {
      return method_not_allowed(req, "GET");
    }
    auto r = http::make_response(req, 200, kOperatorPage, "text/html; charset=utf-8");
    r.set("Content-Security-Policy",
          "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src * data: blob:");
    r.set(bhttp::field::cache_control, "no-store");
    return r;
  }
  if (path.rfind("/v1/", 0) != 0) {
    return error_response(req, 404, "not_found", "no such path: see /v1/openapi.json");
  }
  if (const std::string id = id_after(path, "/v1/media/"); !id.empty()) {
    return media_file(req, session, id);  // the link's signature is its key
  }
  const std::string who = authenticate(req);
  if (who.empty()) {
    auto r = error_response(req, 401, "unauthorized", "Authorization: Bearer <API key> is missing or not a known key");
    r.set(bhttp::field::www_authenticate, "Bearer");
    return r;
  }
  if (!admit(who)) {
    auto r = error_response(req, 429, "rate_limited", "too many requests for this key; slow down");
    r.set(bhttp::field::retry_after, "1");
    return r;
  }

  // POST /v1/messages
  if (path == "/v1/messages") {
    if (method != bhttp::verb::post) {
      return method_not_allowed(req, "POST");
    }
    if (auto big = too_large(req)) {
      return *big;
    }
    Json body = json::parse(req.body());
    if (body.is_discarded() || !body.is_object()) {
      return error_response(req, 400, "invalid_json", "the body is not a JSON object");
    }
    if (!body.contains("request_id")) {
      body["request_id"] = "api-" + crypto::random_hex(16);
    }
    if (auto bad = json_schema::first_error(topics::schema("outbound_request"), body)) {
      return error_response(req, 422, "invalid_request", "the body is not an outbound request (" + *bad + ")");
    }
    auto parsed = sender::parse_request(body);
    if (!parsed) {
      return error_response(req, 422, "invalid_request", parsed.error());
    }
    if (parsed->type == "read" || parsed->type == "typing") {
      return error_response(req, 422, "invalid_request", "read receipts and typing indicators are the agent's, not the API's");
    }
    body["wafleet"] = Json::object();
    body["wafleet"]["api_key"] = who;
    const std::string key = parsed->phone_number_id + ":" + (parsed->to.empty() ? parsed->recipient : parsed->to);
    if (auto st = outbox_(key, json::dump(body)); !st) {
      log::warn("api.outbox_failed", {{"error", st.error().message}});
      return error_response(req, 503, "unavailable", "wa.outbound did not acknowledge; try again with the same request_id");
    }
    return json_response(req, 202, Json{{"request_id", parsed->request_id},
                                        {"idempotency_key", parsed->idempotency_key}});
  }
  if (const std::string id = id_after(path, "/v1/contacts/"); !id.empty()) {
    if (auto big = too_large(req)) {
      return *big;
    }
    return contacts(req, session, id);
  }
  if (path == "/v1/bulk/jobs" || path.rfind("/v1/bulk/jobs/", 0) == 0) {
    return bulk_jobs(req, session, path, who);
  }
  if (const std::string id = id_after(path, "/v1/people/"); !id.empty()) {
    return forget(req, session, id, who);
  }
  if (method != bhttp::verb::get) {
    return method_not_allowed(req, "GET");
  }
  if (path == "/v1/dlq/stats") {
    if (!dlq_stats_) {
      return error_response(req, 501, "not_configured", "no Kafka for the dead-letter topics");
    }
    auto st = dlq_stats_();
    if (!st) {
      return from_error(req, st.error());
    }
    return json_response(req, 200, *st);
  }
  auto limit = limit_of(req);
  if (!limit) {
    return error_response(req, 400, "invalid_request", "limit: a whole number from 1 to 200");
  }
  const Page page{http::query_param(req, "cursor"), *limit};

  // GET /v1/messages/{id}
  constexpr std::string_view kMessage = "/v1/messages/";
  if (path.rfind(kMessage, 0) == 0 && path.size() > kMessage.size()) {
    const std::string id = http::percent_decode(path.substr(kMessage.size()));
    auto m = reader.message(id);
    if (m && *m) {
      add_media_links(links_, **m, wall_clock_ms() / 1000);
    }
    return found(req, m, "message with that wamid or request id");
  }
  // GET /v1/conversations
  if (path == "/v1/conversations") {
    ConversationFilter f;
    f.phone_number_id = http::query_param(req, "phone_number_id");
    f.owner = http::query_param(req, "owner");
    if (!f.owner.empty() && f.owner != "bot" && f.owner != "human" && f.owner != "paused") {
      return error_response(req, 400, "invalid_request", "owner: bot, human or paused");
    }
    auto since = ms_of(http::query_param(req, "since_ms"));
    auto until = ms_of(http::query_param(req, "until_ms"));
    if (!since || !until) {
      return error_response(req, 400, "invalid_request", "since_ms, until_ms: Unix milliseconds");
    }
    f.since_ms = *since;
    f.until_ms = *until;
    auto list = reader.conversations(f, page);
    if (!list) {
      return from_error(req, list.error());
    }
    return json_response(req, 200, *list);
  }
  // GET /v1/conversations/{key}/messages
  constexpr std::string_view kConversations = "/v1/conversations/";
  constexpr std::string_view kMessagesSuffix = "/messages";
  if (path.rfind(kConversations, 0) == 0 && path.size() > kConversations.size() + kMessagesSuffix.size() &&
      path.compare(path.size() - kMessagesSuffix.size(), kMessagesSuffix.size(), kMessagesSuffix) == 0) {
    const std::string key = http::percent_decode(
        path.substr(kConversations.size(), path.size() - kConversations.size() - kMessagesSuffix.size()));
    auto items = reader.messages(key, page);
    if (items && *items) {
      add_media_links(links_, **items, wall_clock_ms() / 1000);
    }
    return found(req, items, "conversation with that key");
  }
  return error_response(req, 404, "not_found", "no such path: see /v1/openapi.json");
}

}  // namespace wafleet::api
