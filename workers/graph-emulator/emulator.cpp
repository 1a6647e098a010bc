#include "workers/graph-emulator/emulator.h"

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <regex>
#include <set>
#include <thread>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/http_client.h"

namespace wafleet::emulator {
namespace {

namespace bhttp = boost::beast::http;

// Deterministic bytes for a (size, seed): large test files without uploading them.
std::string generated_bytes(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') {
      ++i;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) {
      j = path.size();
    }
    if (j > i) {
      parts.emplace_back(path.substr(i, j - i));
    }
    i = j;
  }
  return parts;
}

std::string query_param(const std::string& query, const std::string& name) {
  size_t pos = 0;
  while (pos < query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) {
      amp = query.size();
    }
    const std::string kv = query.substr(pos, amp - pos);
    const size_t eq = kv.find('=');
    if (eq != std::string::npos && kv.substr(0, eq) == name) {
      return kv.substr(eq + 1);
    }
    pos = amp + 1;
  }
  return "";
}

bool is_version(const std::string& s) {
  static const std::regex re(R"(v\d+\.\d+)");
  return std::regex_match(s, re);
}

struct Part {
  std::string headers;
  std::string body;
};

// The parts of a multipart/form-data body, by name.
std::map<std::string, Part> multipart_parts(const http::Request& req) {
  std::map<std::string, Part> parts;
  const std::string ct(req[bhttp::field::content_type]);
  const size_t b = ct.find("boundary=");
  if (!ct.starts_with("multipart/form-data") || b == std::string::npos) {
    return parts;
  }
  std::string boundary = ct.substr(b + 9);
  if (!boundary.empty() && boundary.front() == '"') {
    boundary = boundary.substr(1, boundary.find('"', 1) - 1);
  }
  const std::string& body = req.body();
  const std::string delim = "--" + boundary;
  size_t pos = body.find(delim);
  while (pos != std::string::npos) {
    const size_t headers_start = pos + delim.size() + 2;
    const size_t headers_end = body.find("\r\n\r\n", headers_start);
    if (headers_end == std::string::npos) {
      break;
    }
    const std::string headers = body.substr(headers_start, headers_end - headers_start);
    const size_t next = body.find("\r\n" + delim, headers_end + 4);
    if (next == std::string::npos) {
      break;
    }
    const size_t n = headers.find("name=\"");
    if (n != std::string::npos) {
      const size_t end = headers.find('"', n + 6);
      parts[headers.substr(n + 6, end - n - 6)] =
          Part{headers, body.substr(headers_end + 4, next - headers_end - 4)};
    }
    pos = next + 2;
  }
  return parts;
}

// The bytes of the multipart part named "file".
std::optional<std::string> multipart_file(const http::Request& req) {
  auto parts = multipart_parts(req);
  auto it = parts.find("file");
  if (it == parts.end()) {
    return std::nullopt;
  }
  return it->second.body;
}

// Meta's supported upload types and their size limits (contract section 3).
std::optional<size_t> upload_limit(const std::string& mime) {
  static const std::map<std::string, size_t> limits = {
      {"image/jpeg", 5u << 20}, {"image/png", 5u << 20}, {"image/webp", 500u << 10},
      {"audio/aac", 16u << 20}, {"audio/amr", 16u << 20}, {"audio/mpeg", 16u << 20},
      {"audio/mp4", 16u << 20}, {"audio/ogg", 16u << 20}, {"video/3gpp", 16u << 20},
      {"video/mp4", 16u << 20}, {"text/plain", 100u << 20}, {"application/pdf", 100u << 20},
      {"application/vnd.ms-excel", 100u << 20}, {"application/msword", 100u << 20},
      {"application/vnd.ms-powerpoint", 100u << 20},
      {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", 100u << 20},
      {"application/vnd.openxmlformats-officedocument.wordprocessingml.document", 100u << 20},
      {"application/vnd.openxmlformats-officedocument.presentationml.presentation", 100u << 20}};
  auto it = limits.find(mime.substr(0, mime.find(';')));
  if (it == limits.end()) {
    return std::nullopt;
  }
  return it->second;
}

// Meta's title and details for the codes the fleet reacts to (contract section 5.2).
std::pair<std::string, std::string> error_text(int code) {
  static const std::map<int, std::pair<std::string, std::string>> texts = {
      {1, {"API Unknown", "Invalid request or possible server error."}},
      {2, {"API Service", "Temporary due to downtime or due to being overloaded."}},
      {4, {"API Too Many Calls", "The app has reached its API call rate limit."}},
      {100, {"Invalid parameter", "The request included one or more unsupported or misspelled parameters."}},
      {190, {"Access token has expired", "Your access token has expired."}},
      {80007, {"Rate limit issues", "The WhatsApp Business Account has reached its rate limit."}},
      {130429, {"Rate limit hit", "Cloud API message throughput has been reached."}},
      {131000, {"Something went wrong", "Message failed to send due to an unknown error."}},
      {131008, {"Required parameter is missing", "The request is missing a required parameter."}},
      {131009, {"Parameter value is not valid", "One or more parameter values are invalid."}},
      {131016, {"Service unavailable", "A service is temporarily unavailable."}},
      {131026, {"Message Undeliverable", "Unable to deliver message."}},
      {131047, {"Re-engagement message", "More than 24 hours have passed since the recipient last replied to the sender number."}},
      {131048, {"Spam rate limit hit", "Message failed to send because there are restrictions on how many messages can be sent from this phone number."}},
      {131050, {"User stopped marketing messages", "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business."}},
      {131052, {"Media download error", "Unable to download the media sent by the user."}},
      {131056, {"(Business Account, Consumer Account) pair rate limit hit", "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time."}},
      {131057, {"Account in maintenance mode", "Business Account is in maintenance mode."}},
      {133004, {"Server temporarily unavailable", "Server is temporarily unavailable."}},
  };
  auto it = texts.find(code);
  if (it == texts.end()) {
    return {"Emulated error", "Emulated error " + std::to_string(code) + "."};
  }
  return it->second;
}

}  // namespace

nlohmann::json Fault::to_json() const {
  return {{"endpoint", endpoint},       {"match", match},
          {"times", times},             {"error_code", error_code},
          {"http_status", http_status}, {"latency_ms", latency_ms},
          {"expired_url", expired_url}, {"wrong_checksum", wrong_checksum},
          {"oversize", oversize},       {"handoff", handoff},
          {"answer_chars", answer_chars},
          {"status_error_code", status_error_code}};
}

std::optional<Fault> Fault::from_json(const nlohmann::json& j, std::string& error) {
  if (!j.is_object()) {
    error = "a fault is a JSON object";
    return std::nullopt;
  }
  Fault f;
  try {
    f.endpoint = j.value("endpoint", "");
    f.match = j.value("match", "");
    f.times = j.value("times", 1);
    f.error_code = j.value("error_code", 0);
    f.http_status = j.value("http_status", 0);
    f.latency_ms = j.value("latency_ms", int64_t{0});
    f.expired_url = j.value("expired_url", false);
    f.wrong_checksum = j.value("wrong_checksum", false);
    f.oversize = j.value("oversize", false);
    f.handoff = j.value("handoff", false);
    f.answer_chars = j.value("answer_chars", 0);
    f.status_error_code = j.value("status_error_code", 0);
  } catch (const nlohmann::json::exception& e) {
    error = std::string("bad fault field: ") + e.what();
    return std::nullopt;
  }
  static const std::vector<std::string> known = {"media", "download", "messages", "upload",
                                                 "transcriptions", "chat"};
  if (std::find(known.begin(), known.end(), f.endpoint) == known.end()) {
    error = "endpoint must be one of media, download, messages, upload, transcriptions, chat";
    return std::nullopt;
  }
  return f;
}

// Posts status webhooks from its own thread, in the order the messages were accepted.
class StatusPoster {
 public:
  explicit StatusPoster(const Options& o) : o_(o), thread_([this] { run(); }) {}
  ~StatusPoster() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void add(const std::string& pnid, nlohmann::json status) {
    std::lock_guard lock(mu_);
    queue_.emplace_back(pnid, std::move(status));
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::string pnid;
      nlohmann::json statuses = nlohmann::json::array();
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) {
          return;
        }
        pnid = queue_.front().first;
        while (!queue_.empty() && queue_.front().first == pnid && statuses.size() < 100) {
          statuses.push_back(std::move(queue_.front().second));
          queue_.pop_front();
        }
      }
      const nlohmann::json value = {
          {"messaging_product", "whatsapp"},
          {"metadata", {{"display_phone_number", o_.display_phone_number}, {"phone_number_id", pnid}}},
          {"statuses", statuses}};
      const nlohmann::json body = {
          {"object", "whatsapp_business_account"},
          {"entry", {{{"id", o_.waba_id}, {"changes", {{{"value", value}, {"field", "messages"}}}}}}}};
      const std::string payload = body.dump();
      const std::string sig = "sha256=" + crypto::hmac_sha256_hex(o_.status_app_secret, payload);
      // Meta retries a failed delivery; so does this, a few times.
      for (int attempt = 0; attempt < 20; ++attempt) {
        auto r = http::fetch("POST", o_.status_url,
                             {{"Content-Type", "application/json"}, {"X-Hub-Signature-256", sig}},
                             payload, std::chrono::seconds(10));
        if (r && r->status == 200) {
          break;
        }
        {
          std::lock_guard lock(mu_);
          if (stop_) {
            return;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
    }
  }

  Options o_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::string, nlohmann::json>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

GraphEmulator::GraphEmulator(Options options) : options_(std::move(options)) {
  if (!options_.status_url.empty()) {
    poster_ = std::make_unique<StatusPoster>(options_);
  }
}

GraphEmulator::~GraphEmulator() = default;

void GraphEmulator::set_public_base(const std::string& base) {
  std::lock_guard lock(mu_);
  options_.public_base = base;
}

nlohmann::json GraphEmulator::add_media(Media m) {
  const std::string digest = crypto::sha256_raw(m.bytes);
  m.sha256_hex = crypto::hex_encode(digest);
  nlohmann::json out = {{"id", m.id},
                        {"mime_type", m.mime_type},
                        {"sha256_hex", m.sha256_hex},
                        {"sha256_base64", crypto::base64_encode(digest)},
                        {"file_size", m.bytes.size()}};
  std::lock_guard lock(mu_);
  media_[m.id] = std::move(m);
  return out;
}

void GraphEmulator::add_fault(Fault f) {
  std::lock_guard lock(mu_);
  faults_.push_back(std::move(f));
}

nlohmann::json GraphEmulator::calls() const {
  std::lock_guard lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : calls_) {
    out.push_back({{"method", c.method},
                   {"path", c.path},
                   {"status", c.status},
                   {"authorized", c.authorized},
                   {"body", c.body},
                   {"at_ms", c.at_ms}});
  }
  return out;
}

std::optional<Fault> GraphEmulator::take_fault(const std::string& endpoint,
                                               const std::string& match) {
  std::lock_guard lock(mu_);
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->endpoint != endpoint || (!it->match.empty() && it->match != match)) {
      continue;
    }
    Fault f = *it;
    if (it->times > 0 && --it->times == 0) {
      faults_.erase(it);
    }
    return f;
  }
  return std::nullopt;
}

bool GraphEmulator::authorized(const http::Request& req) const {
  return std::string(req[bhttp::field::authorization]) == "Bearer " + options_.access_token;
}

http::Response GraphEmulator::graph_error(const http::Request& req, int code,
                                          const std::string& details, unsigned status) const {
  // Meta's shape: message "(#code) title", type, code, error_data.details, fbtrace_id.
  const auto [title, known_details] = error_text(code);
  nlohmann::json err = {
      {"message", "(#" + std::to_string(code) + ") " + title},
      {"type", "OAuthException"},
      {"code", code},
      {"error_data",
       {{"messaging_product", "whatsapp"}, {"details", details.empty() ? known_details : details}}},
      {"fbtrace_id", "AEmu" + crypto::random_hex(8)}};
  return http::make_json_response(req, status, nlohmann::json{{"error", err}}.dump());
}

std::string GraphEmulator::url_signature(const std::string& id, int64_t exp) const {
  return crypto::hmac_sha256_hex(options_.access_token, id + ":" + std::to_string(exp));
}

void GraphEmulator::handle(http::Request&& req, http::Responder respond) {
  Call call;
  call.method = std::string(req.method_string());
  call.path = std::string(req.target());
  call.at_ms = wall_clock_ms();
  call.authorized = authorized(req);
  if (req[bhttp::field::content_type].starts_with("application/json")) {
    call.body = nlohmann::json::parse(req.body(), nullptr, false);
  }
  int64_t delay_ms = 0;
  http::Response res = route(req, call, delay_ms);
  call.status = res.result_int();
  if (!call.path.starts_with("/_emulator/")) {
    std::lock_guard lock(mu_);
    calls_.push_back(std::move(call));
  }
  if (delay_ms <= 0) {
    respond(std::move(res));
    return;
  }
  std::thread([delay_ms, respond = std::move(respond), res = std::move(res)]() mutable {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    respond(std::move(res));
  }).detach();
}

http::Response GraphEmulator::route(const http::Request& req, Call& call, int64_t& delay_ms) {
  const std::string target(req.target());
  const size_t q = target.find('?');
  const std::string path = target.substr(0, q);
  const std::string query = q == std::string::npos ? "" : target.substr(q + 1);
  const auto parts = split_path(path);
  const auto method = req.method();
  if (parts.size() == 2 && parts[0] == "_emulator") {
    return admin(req, parts[1]);
  }
  if (method == bhttp::verb::post && parts.size() == 3 && parts[0] == "v1" && parts[1] == "audio" &&
      parts[2] == "transcriptions") {
    return transcription(req, call, delay_ms);
  }
  if (method == bhttp::verb::post && parts.size() == 3 && parts[0] == "v1" && parts[1] == "chat" &&
      parts[2] == "completions") {
    return chat(req, call, delay_ms);
  }
  if (method == bhttp::verb::get && parts.size() == 2 && parts[0] == "media") {
    return download(req, parts[1], query, call, delay_ms);
  }
  if (method == bhttp::verb::post && parts.size() == 3 && is_version(parts[0]) &&
      parts[2] == "messages") {
    return messages(req, parts[1], call, delay_ms);
  }
  if (method == bhttp::verb::post && parts.size() == 3 && is_version(parts[0]) &&
      parts[2] == "media") {
    return upload(req, parts[1], call, delay_ms);
  }
  if (method == bhttp::verb::get && parts.size() == 2 && is_version(parts[0])) {
    return media_info(req, parts[1], call, delay_ms);
  }
  if (method == bhttp::verb::delete_ && parts.size() == 2 && is_version(parts[0])) {
    return delete_media(req, parts[1], call);
  }
  return graph_error(req, 100, "Unsupported request: " + std::string(req.method_string()) + " " +
                                   path,
                     400);
}

std::optional<http::Response> GraphEmulator::admit(const http::Request& req, const Call& call,
                                                   const std::string& endpoint,
                                                   const std::string& match,
                                                   std::optional<Fault>& fault, int64_t& delay_ms) {
  if (!call.authorized) {
    return graph_error(req, 190, "Error validating access token: the Bearer token is missing or wrong.", 401);
  }
  fault = take_fault(endpoint, match);
  if (fault) {
    delay_ms = fault->latency_ms;
    if (fault->error_code != 0) {
      return graph_error(req, fault->error_code, "", fault->status());
    }
    if (fault->is_error()) {
      return graph_error(req, 2, "", fault->status());
    }
  }
  return std::nullopt;
}

http::Response GraphEmulator::media_info(const http::Request& req, const std::string& id,
                                         Call& call, int64_t& delay_ms) {
  std::optional<Fault> fault;
  if (auto refused = admit(req, call, "media", id, fault, delay_ms)) {
    return std::move(*refused);
  }
  std::lock_guard lock(mu_);
  auto it = media_.find(id);
  if (it == media_.end()) {
    return graph_error(req, 100,
                       "Unsupported get request. Object with ID '" + id +
                           "' does not exist, cannot be loaded due to missing permissions, or "
                           "does not support this operation",
                       400);
  }
  const int64_t exp = fault && fault->expired_url ? wall_clock_ms() - 1000
                                                  : wall_clock_ms() + options_.url_ttl_ms;
  std::string sha = it->second.sha256_hex;
  if (fault && fault->wrong_checksum) {
    sha = crypto::sha256_hex("not the bytes" + id);
  }
  nlohmann::json body = {
      {"messaging_product", "whatsapp"},
      {"url", options_.public_base + "/media/" + id + "?exp=" + std::to_string(exp) +
                  "&sig=" + url_signature(id, exp)},
      {"mime_type", it->second.mime_type},
      {"sha256", sha},
      {"file_size", it->second.bytes.size()},
      {"id", id}};
  return http::make_json_response(req, 200, body.dump());
}

http::Response GraphEmulator::download(const http::Request& req, const std::string& id,
                                       const std::string& query, Call& call, int64_t& delay_ms) {
  if (!call.authorized) {
    return graph_error(req, 190, "Error validating access token: the Bearer token is missing or wrong.", 401);
  }
  const std::string exp_text = query_param(query, "exp");
  int64_t exp = 0;
  try {
    exp = std::stoll(exp_text);
  } catch (const std::exception&) {
    return http::make_response(req, 404, "");
  }
  if (query_param(query, "sig") != url_signature(id, exp) || exp < wall_clock_ms()) {
    return http::make_response(req, 404, "");  // Meta: an expired URL answers 404
  }
  auto fault = take_fault("download", id);
  if (fault) {
    delay_ms = fault->latency_ms;
    if (fault->is_error()) {
      return http::make_response(req, fault->status(), "emulated download fault");
    }
  }
  std::lock_guard lock(mu_);
  auto it = media_.find(id);
  if (it == media_.end()) {
    return http::make_response(req, 404, "");
  }
  std::string bytes = it->second.bytes;
  if (fault && fault->oversize) {
    bytes += generated_bytes(1 << 20, 99);
  }
  return http::make_response(req, 200, std::move(bytes), it->second.mime_type);
}

http::Response GraphEmulator::messages(const http::Request& req, const std::string& pnid,
                                       Call& call, int64_t& delay_ms) {
  if (!call.authorized) {
    return graph_error(req, 190, "Error validating access token: the Bearer token is missing or wrong.", 401);
  }
  const nlohmann::json& body = call.body;
  if (!body.is_object()) {
    return graph_error(req, 100, "Request body is not JSON (Content-Type application/json)", 400);
  }
  if (body.value("messaging_product", "") != "whatsapp") {
    return graph_error(req, 100, "The parameter messaging_product is required.", 400);
  }
  const std::string to = body.value("to", "");
  const std::string recipient = body.value("recipient", "");
  auto fault = take_fault("messages", to.empty() ? recipient : to);
  if (fault) {
    delay_ms = fault->latency_ms;
    if (fault->error_code != 0) {
      return graph_error(req, fault->error_code, "", fault->status());
    }
    if (fault->is_error()) {
      return http::make_json_response(
          req, fault->status(),
          R"({"error":{"message":"An unexpected error has occurred. Please retry your request later.","type":"OAuthException","is_transient":true,"code":2}})");
    }
  }
  if (body.value("status", "") == "read") {
    if (!body.contains("message_id")) {
      return graph_error(req, 131008, "Required parameter is missing: message_id", 400);
    }
    return http::make_json_response(req, 200, R"({"success":true})");
  }
  if (to.empty() && recipient.empty()) {
    return graph_error(req, 131008, "Required parameter is missing: to", 400);
  }
  const std::string type = body.value("type", "text");
  static const std::set<std::string> types = {"text", "image", "audio", "video", "document",
                                              "sticker", "location", "contacts", "interactive",
                                              "template", "reaction"};
  if (types.count(type) == 0) {
    return graph_error(req, 100, "Param type must be one of {AUDIO, CONTACTS, DOCUMENT, IMAGE, "
                                 "INTERACTIVE, LOCATION, REACTION, STICKER, TEMPLATE, TEXT, "
                                 "VIDEO} - got \"" + type + "\".", 400);
  }
  if (!body.contains(type)) {
    return graph_error(req, 131008, "Required parameter is missing: " + type, 400);
  }
  if (type == "text") {
    const auto& t = body[type];
    if (!t.is_object() || !t.contains("body") || !t["body"].is_string()) {
      return graph_error(req, 131008, "Required parameter is missing: text.body", 400);
    }
    size_t chars = 0;
    for (unsigned char c : t["body"].get<std::string>()) {
      chars += (c & 0xC0) != 0x80 ? 1 : 0;
    }
    if (chars > 4096) {
      return graph_error(req, 100, "Param text['body'] must be at most 4096 characters long.", 400);
    }
  }
  const std::string recipient_type = body.value("recipient_type", "individual");
  if (recipient_type != "individual" && recipient_type != "group") {
    return graph_error(req, 100, "Param recipient_type must be one of {INDIVIDUAL, GROUP}", 400);
  }
  nlohmann::json contact;
  if (recipient_type == "group") {
    if (to.empty()) {
      return graph_error(req, 131008, "Required parameter is missing: to (the group id)", 400);
    }
    contact = {{"input", to}};  // a group: no wa_id, and no digits taken out of its id
  } else if (!to.empty()) {
    std::string digits;
    for (char c : to) {
      if (c >= '0' && c <= '9') {
        digits.push_back(c);
      }
    }
    contact = {{"input", to}, {"wa_id", digits}};
  } else {
    contact = {{"input", recipient}, {"wa_id", ""}, {"user_id", recipient}};
  }
  const uint64_t n = next_message_.fetch_add(1);
  const std::string wamid =
      "wamid.EMU" + crypto::base64_encode(pnid + ":" + std::to_string(n));
  nlohmann::json out = {{"messaging_product", "whatsapp"},
                        {"contacts", nlohmann::json::array({contact})},
                        {"messages", nlohmann::json::array({{{"id", wamid}}})}};
  if (poster_) {
    const std::string ts = std::to_string(std::time(nullptr));
    nlohmann::json base = {{"id", wamid}, {"timestamp", ts},
                           {"recipient_id", contact.value("wa_id", recipient_type == "group" ? to : "")}};
    if (!recipient.empty() && to.empty()) {
      base["recipient_user_id"] = recipient;
    }
    if (recipient_type == "group") {
      base["recipient_type"] = "group";
    }
    if (body.contains("biz_opaque_callback_data") && body["biz_opaque_callback_data"].is_string()) {
      base["biz_opaque_callback_data"] = body["biz_opaque_callback_data"];
    }
    if (fault && fault->status_error_code != 0) {
      auto failed = base;
      failed["status"] = "failed";
      const int code = fault->status_error_code;
      const std::string title = code == 131049
                                    ? "This message was not delivered to maintain healthy ecosystem engagement."
                                    : "Message failed to send";
      failed["errors"] = nlohmann::json::array(
          {{{"code", code}, {"title", title}, {"message", title}, {"error_data", {{"details", title}}}}});
      poster_->add(pnid, std::move(failed));
    } else {
      for (const auto& st : options_.statuses) {
        auto one = base;
        one["status"] = st;
        if (type == "template") {
          one["pricing"] = {{"billable", true}, {"pricing_model", "PMP"}, {"category", "marketing"}, {"type", "regular"}};
        }
        poster_->add(pnid, std::move(one));
      }
    }
  }
  return http::make_json_response(req, 200, out.dump());
}

http::Response GraphEmulator::upload(const http::Request& req, const std::string& pnid,
                                     Call& call, int64_t& delay_ms) {
  std::optional<Fault> fault;
  if (auto refused = admit(req, call, "upload", pnid, fault, delay_ms)) {
    return std::move(*refused);
  }
  auto parts = multipart_parts(req);
  if (parts.count("messaging_product") == 0 || parts["messaging_product"].body != "whatsapp") {
    return graph_error(req, 100, "The parameter messaging_product is required.", 400);
  }
  auto file = parts.find("file");
  if (file == parts.end()) {
    return graph_error(req, 100, "The parameter file is required.", 400);
  }
  std::string mime = parts.count("type") ? parts["type"].body : "";
  if (mime.empty()) {
    const size_t ct = file->second.headers.find("Content-Type: ");
    if (ct != std::string::npos) {
      mime = file->second.headers.substr(ct + 14, file->second.headers.find("\r\n", ct) - ct - 14);
    }
  }
  const auto limit = upload_limit(mime);
  if (!limit) {
    return graph_error(req, 100, "Param file must be a file with one of the supported types; got '" +
                                     mime + "'", 400);
  }
  if (file->second.body.size() > *limit) {
    return graph_error(req, 100, "Param file is " + std::to_string(file->second.body.size()) +
                                     " bytes; the limit for " + mime + " is " +
                                     std::to_string(*limit), 400);
  }
  Media m;
  m.id = std::to_string(9000000000000000ULL + next_message_.fetch_add(1));
  m.mime_type = mime;
  m.bytes = std::move(file->second.body);
  m.uploaded_by = pnid;
  const auto described = add_media(std::move(m));
  call.body = {{"uploaded", described["id"]}, {"mime_type", mime},
               {"file_size", described["file_size"]}, {"sha256_hex", described["sha256_hex"]}};
  return http::make_json_response(req, 200, nlohmann::json{{"id", described["id"]}}.dump());
}

http::Response GraphEmulator::delete_media(const http::Request& req, const std::string& id,
                                           Call& call) {
  if (!call.authorized) {
    return graph_error(req, 190, "Error validating access token: the Bearer token is missing or wrong.", 401);
  }
  std::lock_guard lock(mu_);
  if (media_.erase(id) == 0) {
    return graph_error(req, 100, "Unsupported delete request. Object with ID '" + id +
                                     "' does not exist", 400);
  }
  return http::make_json_response(req, 200, R"({"success":true})");
}

http::Response GraphEmulator::chat(const http::Request& req, Call& call, int64_t& delay_ms) {
  const nlohmann::json& body = call.body;
  const nlohmann::json& messages = body.is_object() ? body.value("messages", nlohmann::json()) : nlohmann::json();
  if (!messages.is_array() || messages.empty()) {
    return http::make_json_response(
        req, 400,
        R"({"error":{"message":"'messages' is required and must be a non-empty array","type":"invalid_request_error","code":null}})");
  }
  // The last user message: what the agent answers. Its text, and how many images it holds.
  std::string text;
  int images = 0;
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    if (!it->is_object() || it->value("role", "") != "user") {
      continue;
    }
    const auto& content = (*it)["content"];
    if (content.is_string()) {
      text = content.get<std::string>();
    } else if (content.is_array()) {
      for (const auto& part : content) {
        if (part.value("type", "") == "text") {
          text += (text.empty() ? "" : "\n") + part.value("text", "");
        } else if (part.value("type", "") == "image_url") {
          ++images;
        }
      }
    }
    break;
  }
  auto fault = take_fault("chat", "");
  if (fault) {
    delay_ms = fault->latency_ms;
    if (fault->is_error()) {
      return http::make_json_response(
          req, fault->status(),
          R"({"error":{"message":"emulated agent fault","type":"server_error","code":null}})");
    }
  }
  const uint64_t n = next_message_.fetch_add(1);
  nlohmann::json message = {{"role", "assistant"}};
  std::string finish = "stop";
  if (fault && fault->handoff) {
    message["content"] = nullptr;
    message["tool_calls"] = nlohmann::json::array(
        {{{"id", "call_" + std::to_string(n)},
          {"type", "function"},
          {"function", {{"name", "handoff_to_human"},
                        {"arguments", R"({"reason":"emulated: the person needs a human"})"}}}}});
    finish = "tool_calls";
  } else {
    std::string answer = "You said: " + text;
    if (images > 0) {
      answer += "\n(" + std::to_string(images) + (images == 1 ? " image" : " images") + " received)";
    }
    if (fault && fault->answer_chars > 0) {
      // An over-long answer: numbered sentences, so a split can be checked for order.
      std::string longer;
      for (int i = 1; static_cast<int>(longer.size()) < fault->answer_chars; ++i) {
        longer += "Sentence " + std::to_string(i) + " of the long answer. ";
        if (i % 20 == 0) {
          longer += "\n\n";
        }
      }
      answer = longer.substr(0, static_cast<size_t>(fault->answer_chars));
    }
    message["content"] = answer;
  }
  call.body = {{"model", body.value("model", "")},
               {"messages", messages},
               {"images", images},
               {"answered", message}};
  nlohmann::json out = {{"id", "chatcmpl-emu" + std::to_string(n)},
                        {"object", "chat.completion"},
                        {"created", wall_clock_ms() / 1000},
                        {"model", body.value("model", "emulator")},
                        {"choices", nlohmann::json::array({{{"index", 0},
                                                             {"message", message},
                                                             {"finish_reason", finish}}})},
                        {"usage", {{"prompt_tokens", 0}, {"completion_tokens", 0}, {"total_tokens", 0}}}};
  return http::make_json_response(req, 200, out.dump());
}

http::Response GraphEmulator::transcription(const http::Request& req, Call& call,
                                            int64_t& delay_ms) {
  auto fault = take_fault("transcriptions", "");
  if (fault) {
    delay_ms = fault->latency_ms;
    if (fault->is_error()) {
      return http::make_json_response(
          req, fault->http_status >= 400 ? fault->http_status : 500,
          R"({"error":{"message":"emulated transcription fault","type":"server_error"}})");
    }
  }
  auto file = multipart_file(req);
  if (!file) {
    return http::make_json_response(
        req, 400,
        R"({"error":{"message":"multipart/form-data with a 'file' part is required","type":"invalid_request_error"}})");
  }
  const std::string sha = crypto::sha256_hex(*file);
  std::string text;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, m] : media_) {
      if (m.sha256_hex == sha) {
        text = m.transcript;
      }
    }
  }
  if (text.empty()) {
    text = "(emulated transcript of " + std::to_string(file->size()) + " bytes)";
  }
  call.body = {{"file_sha256", sha}, {"file_size", file->size()}};
  return http::make_json_response(req, 200, nlohmann::json{{"text", text}}.dump());
}

http::Response GraphEmulator::admin(const http::Request& req, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return http::make_json_response(req, 400, nlohmann::json{{"error", why}}.dump());
  };
  const auto method = req.method();
  nlohmann::json body = nlohmann::json::parse(req.body(), nullptr, false);
  if (what == "calls" && method == bhttp::verb::get) {
    return http::make_json_response(req, 200, calls().dump());
  }
  if (what == "reset" && method == bhttp::verb::post) {
    std::lock_guard lock(mu_);
    media_.clear();
    faults_.clear();
    calls_.clear();
    return http::make_json_response(req, 200, R"({"reset":true})");
  }
  if (what == "media" && method == bhttp::verb::post) {
    if (!body.is_object() || !body.contains("id") || !body["id"].is_string()) {
      return bad("media: need {\"id\", \"mime_type\", \"content_base64\" | \"size\"}");
    }
    Media m;
    m.id = body["id"].get<std::string>();
    m.mime_type = body.value("mime_type", "application/octet-stream");
    m.transcript = body.value("transcript", "");
    if (body.contains("content_base64")) {
      auto decoded = crypto::base64_decode(body.value("content_base64", ""));
      if (!decoded) {
        return bad("media: content_base64 is not base64");
      }
      m.bytes = std::move(*decoded);
    } else if (body.contains("size") && body["size"].is_number_unsigned()) {
      m.bytes = generated_bytes(body["size"].get<size_t>(), body.value("seed", uint64_t{1}));
    } else {
      return bad("media: need content_base64 or a size");
    }
    return http::make_json_response(req, 200, add_media(std::move(m)).dump());
  }
  if (what == "faults") {
    if (method == bhttp::verb::get) {
      std::lock_guard lock(mu_);
      nlohmann::json out = nlohmann::json::array();
      for (const auto& f : faults_) {
        out.push_back(f.to_json());
      }
      return http::make_json_response(req, 200, out.dump());
    }
    if (method == bhttp::verb::delete_) {
      std::lock_guard lock(mu_);
      faults_.clear();
      return http::make_json_response(req, 200, R"({"cleared":true})");
    }
    if (method == bhttp::verb::post) {
      std::string error;
      auto f = Fault::from_json(body, error);
      if (!f) {
        return bad("fault: " + error);
      }
      add_fault(*f);
      return http::make_json_response(req, 200, f->to_json().dump());
    }
  }
  if (what == "webhook" && method == bhttp::verb::post) {
    if (!body.is_object() || !body.contains("url") || !body.contains("body")) {
      return bad("webhook: need {\"url\", \"app_secret\", \"body\"}");
    }
    const std::string payload =
        body["body"].is_string() ? body["body"].get<std::string>() : body["body"].dump();
    auto r = http::fetch(
        "POST", body.value("url", ""),
        {{"Content-Type", "application/json"},
         {"X-Hub-Signature-256",
          "sha256=" + crypto::hmac_sha256_hex(body.value("app_secret", ""), payload)}},
        payload, std::chrono::seconds(10));
    if (!r) {
      return http::make_json_response(req, 502,
                                      nlohmann::json{{"error", r.error().message}}.dump());
    }
    return http::make_json_response(req, 200,
                                    nlohmann::json{{"status", r->status}, {"body", r->body}}.dump());
  }
  return bad("unknown admin call: " + std::string(req.method_string()) + " /_emulator/" + what);
}

}  // namespace wafleet::emulator
