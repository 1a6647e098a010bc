#include "workers/sender/sender.h"

#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <set>
#include <thread>

#include "common/crypto.h"

namespace wafleet::sender {
namespace {

// KEYS: number budget, pair budget. ARGV: per-key emission interval (µs) and burst, then the
// longest wait for the number's next slot that may be reserved (µs).
// Returns 0 when both budgets allowed (and were charged); {-w, 0} when the person's budget
// allows and the number's next slot is w µs away (w <= the reserve): the slot is charged now and
// the caller sends at it; else {number wait, pair wait} in µs (nothing charged).
// Reserving the next slot keeps a backlogged number at its full rate: without it, every send
// that comes a little after its slot (the wake-up, the round trips before the script) loses
// that lateness, about 4 % at 80/s with one sender.
const redis::Script kGcra(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function probe(key, interval, burst)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local over = new_tat - now - interval * burst
  return new_tat, over
end
local n_tat, n_over = probe(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local p_tat, p_over = probe(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
if p_over > 0 or n_over > tonumber(ARGV[5]) then
  return {math.max(n_over, 0), math.max(p_over, 0)}
end
redis.call('SET', KEYS[1], string.format('%.0f', n_tat), 'PX', math.ceil((n_tat - now) / 1000) + 1000)
redis.call('SET', KEYS[2], string.format('%.0f', p_tat), 'PX', math.ceil((p_tat - now) / 1000) + 1000)
if n_over > 0 then return {-n_over, 0} end
return 0
)lua");

size_t append_body(char* ptr, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
  return size * nmemb;
}

}  // namespace

bool retriable_code(int code) {
  static const std::set<int> codes = {1,      2,      4,      80007,  130429, 131000,
                                      131016, 131056, 131057, 133004, 133016};
  return codes.contains(code);
}

RateLimiter::RateLimiter(redis::RedisClient& redis, Limits limits)
    : redis_(redis), limits_(limits) {}

Result<std::chrono::microseconds> RateLimiter::acquire(const std::string& phone_number_id,
                                                       const std::string& recipient) {
  auto w = try_acquire(phone_number_id, recipient);
  if (!w) {
    return Unexpected(w.error());
  }
  if (w->granted() && w->reserved.count() > 0) {
    std::this_thread::sleep_for(w->reserved);  // the reserved slot
  }
  return std::max({w->number, w->pair, std::chrono::microseconds(0)});
}

Result<RateLimiter::Wait> RateLimiter::try_acquire(const std::string& phone_number_id,
                                                   const std::string& recipient) {
  const std::string tag = "snd:rate:{" + phone_number_id + "}";
  const auto interval = [](double per_second) {
    return std::to_string(static_cast<int64_t>(std::llround(1e6 / per_second)));
  };
  // At most one slot ahead (and never more than 20 ms): the caller sleeps until it.
  const int64_t reserve = std::min<int64_t>(20000, std::llround(1e6 / limits_.number_per_second));
  auto r = redis_.eval(kGcra, {tag, tag + ":pair:" + recipient},
                       {interval(limits_.number_per_second), std::to_string(limits_.number_burst),
                        interval(limits_.pair_per_second), std::to_string(limits_.pair_burst),
                        std::to_string(reserve)});
  if (!r) {
    return Unexpected(r.error());
  }
  if (r->type == redis::Reply::Type::kInteger && r->integer == 0) {
    return Wait{};
  }
  if (r->type != redis::Reply::Type::kArray || r->elements.size() != 2) {
    return Unexpected(Error::transient("rate limiter: unexpected reply " + r->str));
  }
  if (r->elements[0].integer < 0) {
    Wait w;
    w.reserved = std::chrono::microseconds(-r->elements[0].integer);
    return w;
  }
  return Wait{std::chrono::microseconds(r->elements[0].integer),
              std::chrono::microseconds(r->elements[1].integer)};
}

nlohmann::json Outcome::to_result(const Request& r, int attempts, int64_t now_ms) const {
  nlohmann::json j = {{"request_id", r.request_id},
                      {"idempotency_key", r.idempotency_key},
                      {"phone_number_id", r.phone_number_id},
                      {"type", r.type},
                      {"status", status},
                      {"attempts", attempts},
                      {"at_ms", now_ms}};
  if (!r.to.empty()) {
    j["to"] = r.to;
  }
  if (!r.recipient.empty()) {
    j["recipient"] = r.recipient;
  }
  if (!wamid.empty()) {
    j["wamid"] = wamid;
  }
  if (status == "duplicate") {
    j["note"] = error_message;  // not an error: the first send stands
  } else if (error_code != 0 || !error_message.empty()) {
    j["error"] = {{"code", error_code},
                  {"message", error_message},
                  {"retriable", retriable_code(error_code)}};
  }
  return j;
}

Sender::Sender(Options options, redis::RedisClient& redis, RateLimiter& limiter,
               std::function<bool()> stopping, Conversations* conversations,
               std::function<int64_t()> now_ms)
    : options_(std::move(options)),
      redis_(redis),
      limiter_(limiter),
      stopping_(std::move(stopping)),
      conversations_(conversations),
      now_ms_(now_ms ? std::move(now_ms) : [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
      }),
      token_(crypto::random_hex(8)) {
  started_ms_ = now_ms_();
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_ = curl_easy_init();
}

Sender::~Sender() { curl_easy_cleanup(curl_); }

Result<Outcome> Sender::send(const Request& r, bool replay, bool wait_for_budget) {
  const std::string key = "snd:idem:{" + r.idempotency_key + "}";
  // 1. Never twice: what happened to this key before?
  auto prior = redis_.command({"GET", key});
  if (!prior) {
    return Unexpected(prior.error());
  }
  if (prior->type == redis::Reply::Type::kString) {
    const std::string& v = prior->str;
    if (v.starts_with("sent:")) {
      return Outcome{"duplicate", v.substr(5), 0, "already sent with this idempotency key"};
    }
    if (v.starts_with("failed:") && replay) {
      // Meta refused it last time, so nothing was sent: the replay may try again.
      auto cleared = redis_.command({"DEL", key});
      if (!cleared) {
        return Unexpected(cleared.error());
      }
    } else if (v.starts_with("failed:")) {
      const size_t colon = v.find(':', 7);
      Outcome o{"failed", "", 0, v.substr(colon == std::string::npos ? 7 : colon + 1)};
      try {
        o.error_code = std::stoi(v.substr(7, colon - 7));
      } catch (const std::exception&) {
      }
      return Unexpected(Error::permanent("(#" + std::to_string(o.error_code) + ") " +
                                         o.error_message + " [earlier attempt]"));
    }
    if (!v.starts_with("failed:") && v != "pending:" + token_) {
      return Outcome{"uncertain", "", 0,
                     "an earlier attempt may have reached Meta and its answer was not recorded; "
                     "not sent again (replay with a new idempotency key to send)"};
    }
  }
  // 2. The person: inside the 24-hour window for free-form, not opted out.
  if (conversations_) {
    auto no = conversations_->refusal(r, now_ms_());
    if (!no) {
      return Unexpected(no.error());
    }
    if (*no) {
      if ((*no)->find(Conversations::kNeverWrote) != std::string::npos &&
          now_ms_() - started_ms_ < options_.unknown_window_grace_ms) {
        return Unexpected(Error::transient("the 24-hour window is not known yet (the inbound side "
                                           "is catching up since the start): " + **no));
      }
      return Unexpected(Error::invalid(**no));
    }
  }
  // A bulk job paused, cancelled or failed since this request was released: not sent, and
  // nothing claimed, so the job sends it (same key) when it goes on. This is what makes a pause
  // hold Meta silent at once, whatever was already released.
  if (!r.bulk_job.empty() && r.priority == Priority::kBulk) {
    auto held = redis_.command({"EXISTS", "bulk:hold:{" + r.bulk_job + "}"});
    if (!held) {
      return Unexpected(held.error());
    }
    if (held->integer == 1) {
      return Outcome{"held", "", 0, "the bulk job is paused or ended: not sent"};
    }
  }
  // Media from storage: uploaded once per number (the id is reused while Meta keeps it), then
  // sent by id. Before the rate limit and the claim: an upload that fails sends nothing.
  Request by_id;
  const Request* to_send = &r;
  if (!r.upload_uri.empty()) {
    auto id = uploaded_media_id(r);
    if (!id) {
      return Unexpected(id.error());
    }
    by_id = r;
    by_id.graph_body[r.type]["id"] = *id;
    to_send = &by_id;
  }
  // 3. Rate limits, shared by every replica: wait as long as the script says.
  std::string who = r.to.empty() ? r.recipient : r.to;
  if (who.empty()) {
    // A receipt (read, typing) is not a message to the person: no pair limit, only the number's.
    who = "receipt:" + r.graph_body.value("message_id", std::string());
  }
  if (!wait_for_budget) {
    auto w = limiter_.try_acquire(r.phone_number_id, who);
    if (!w) {
      return Unexpected(w.error());
    }
    if (!w->granted()) {
      Outcome o{"wait", "", 0, ""};
      o.wait = *w;
      return o;
    }
    if (w->reserved.count() > 0) {
      std::this_thread::sleep_for(w->reserved);  // the number's slot, charged already
    }
  }
  for (; wait_for_budget;) {
    auto wait = limiter_.acquire(r.phone_number_id, who);
    if (!wait) {
      return Unexpected(wait.error());
    }
    if (wait->count() == 0) {
      break;
    }
    if (stopping_ && stopping_()) {
      return Unexpected(Error::transient("stopping while waiting for the rate limit"));
    }
    std::this_thread::sleep_for(std::min(*wait, std::chrono::microseconds(1000000)));
  }
  // 4. Claim, then call Meta.
  auto claim = redis_.command({"SET", key, "pending:" + token_, "NX", "PX",
                               std::to_string(options_.idempotency_ttl_ms)});
  if (!claim) {
    return Unexpected(claim.error());
  }
  if (claim->is_nil()) {
    auto now_value = redis_.command({"GET", key});
    if (!now_value || now_value->str != "pending:" + token_) {
      return Unexpected(Error::transient("another sender claimed idempotency key " +
                                         r.idempotency_key + " just now"));
    }
  }
  return call_graph(*to_send, key);
}

Result<std::string> Sender::uploaded_media_id(const Request& r) {
  const std::string key =
      "snd:upload:{" + r.phone_number_id + "}:" + crypto::sha256_hex(r.upload_uri);
  auto cached = redis_.command({"GET", key});
  if (!cached) {
    return Unexpected(cached.error());
  }
  if (cached->type == redis::Reply::Type::kString && !cached->str.empty()) {
    return cached->str;
  }
  auto object = media::open_stored(r.upload_uri, options_.s3 ? &*options_.s3 : nullptr);
  if (!object) {
    return Unexpected(object.error());
  }
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);
  const std::string url = options_.graph_base + "/" + options_.graph_version + "/" +
                          r.phone_number_id + "/media";
  curl_mime* form = curl_mime_init(c);
  curl_mimepart* part = curl_mime_addpart(form);
  curl_mime_name(part, "messaging_product");
  curl_mime_data(part, "whatsapp", CURL_ZERO_TERMINATED);
  part = curl_mime_addpart(form);
  curl_mime_name(part, "type");
  curl_mime_data(part, r.upload_mime.c_str(), CURL_ZERO_TERMINATED);
  part = curl_mime_addpart(form);
  curl_mime_name(part, "file");
  curl_mime_filedata(part, object->path.c_str());
  curl_mime_type(part, r.upload_mime.c_str());
  curl_slist* headers =
      curl_slist_append(nullptr, ("Authorization: Bearer " + options_.access_token).c_str());
  std::string response;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "wafleet-sender/0.1");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.upload_timeout.count()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_MIMEPOST, form);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_mime_free(form);
  if (object->temporary) {
    std::remove(object->path.c_str());
  }
  if (rc != CURLE_OK) {
    return Unexpected(Error::transient(std::string("graph upload: ") + curl_easy_strerror(rc)));
  }
  auto j = nlohmann::json::parse(response, nullptr, false);
  if (status == 200 && j.is_object() && j.contains("id") && j["id"].is_string()) {
    const std::string id = j["id"].get<std::string>();
    // Meta keeps uploaded media 30 days; a day less here, so a cached id is never a stale one.
    (void)redis_.command({"SET", key, id, "PX", std::to_string(29LL * 24 * 3600 * 1000)});
    return id;
  }
  int code = 0;
  std::string message = "HTTP " + std::to_string(status);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    code = j["error"].value("code", 0);
    message = j["error"].value("message", message);
  }
  const std::string what = "(#" + std::to_string(code) + ") upload: " + message;
  if (status >= 500 || status == 429 || retriable_code(code)) {
    return Unexpected(Error::transient(what));
  }
  return Unexpected(Error::permanent(what));
}

Result<Outcome> Sender::call_graph(const Request& r, const std::string& key) {
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);
  const std::string url = options_.graph_base + "/" + options_.graph_version + "/" +
                          r.phone_number_id + "/messages";
  const std::string body = r.graph_body.dump();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, ("Authorization: Bearer " + options_.access_token).c_str());
  std::string response;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "wafleet-sender/0.1");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  auto release = [&] {
    (void)redis_.command({"DEL", key});  // Meta did not send: a retry may claim it again
  };
  if (rc != CURLE_OK) {
    // No answer: a connection never made sent nothing; after a timeout Meta may have sent it,
    // and it is retried like a 5xx all the same (Meta's guidance: retry). That one case can
    // send twice; every other path cannot.
    release();
    return Unexpected(Error::transient(std::string("graph: ") + curl_easy_strerror(rc)));
  }
  auto j = nlohmann::json::parse(response, nullptr, false);
  if (status == 200 && j.is_object()) {
    std::string wamid;
    if (j.contains("messages") && j["messages"].is_array() && !j["messages"].empty()) {
      wamid = j["messages"][0].value("id", "");
    }
    // Recorded before anything else: a crash from here on finds "sent".
    auto rec = redis_.command({"SET", key, "sent:" + wamid, "PX",
                               std::to_string(options_.idempotency_ttl_ms)});
    if (!rec) {
      // Sent, but not recorded: leave the pending claim (a redelivery reports `uncertain`
      // instead of sending again) and still report the send.
      return Outcome{"sent", wamid, 0, "sent; recording it in Redis failed"};
    }
    return Outcome{"sent", wamid, 0, ""};
  }
  int code = 0;
  std::string message = "HTTP " + std::to_string(status);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    code = j["error"].value("code", 0);
    message = j["error"].value("message", message);
  }
  const std::string what = "(#" + std::to_string(code) + ") " + message;
  if (status >= 500 || status == 429 || retriable_code(code)) {
    release();
    return Unexpected(Error::transient(what));
  }
  (void)redis_.command({"SET", key, "failed:" + std::to_string(code) + ":" + message, "PX",
                        std::to_string(options_.idempotency_ttl_ms)});
  if (code == 131050 && conversations_ && !r.group) {
    // The person stopped marketing messages: remembered, so the next template is refused here.
    (void)conversations_->opt_out(r.phone_number_id,
                                  r.to.empty() ? r.recipient : phone_digits(r.to),
                                  "Meta error 131050", now_ms_());
  }
  return Unexpected(Error::permanent(what));
}

}  // namespace wafleet::sender
