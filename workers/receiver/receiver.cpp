#include "workers/receiver/receiver.h"

#include <charconv>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_set>

#include "common/crypto.h"
#include "common/dead_letter.h"
#include "common/json_util.h"
#include "common/log.h"
#include "topics/topics.h"
#include "workers/receiver/sns.h"
#include "workers/receiver/webhook_parser.h"

namespace wafleet::receiver {

namespace bhttp = boost::beast::http;

namespace {

// Counters of a two-label family, looked up without allocating once created (the hot path
// would otherwise build a label map per request).
class CounterTable {
 public:
  CounterTable(prometheus::Family<prometheus::Counter>& family, std::string label_a,
               std::string label_b)
      : family_(family), label_a_(std::move(label_a)), label_b_(std::move(label_b)) {}

  prometheus::Counter& get(std::string_view a, std::string_view b) {
    {
      std::shared_lock lock(mu_);
      if (auto i = table_.find(a); i != table_.end()) {
        if (auto j = i->second.find(b); j != i->second.end()) {
          return *j->second;
        }
      }
    }
    std::unique_lock lock(mu_);
    auto& c = family_.Add({{label_a_, std::string(a)}, {label_b_, std::string(b)}});
    table_[std::string(a)][std::string(b)] = &c;
    return c;
  }

 private:
  prometheus::Family<prometheus::Counter>& family_;
  std::string label_a_;
  std::string label_b_;
  std::shared_mutex mu_;
  std::map<std::string, std::map<std::string, prometheus::Counter*, std::less<>>, std::less<>>
      table_;
};

}  // namespace

struct Receiver::Metrics {
  CounterTable requests;
  CounterTable events;
  prometheus::Histogram& latency;

  explicit Metrics(prometheus::Registry& r)
      : requests(prometheus::BuildCounter()
                     .Name("wafleet_receiver_requests_total")
                     .Help("HTTP requests by path and outcome")
                     .Register(r),
                 "path", "outcome"),
        events(prometheus::BuildCounter()
                   .Name("wafleet_receiver_events_total")
                   .Help("normalized events by kind and result (produced, duplicate)")
                   .Register(r),
               "kind", "result"),
        latency(prometheus::BuildHistogram()
                    .Name("wafleet_receiver_request_seconds")
                    .Help("time from request to answer")
                    .Register(r)
                    .Add({}, prometheus::Histogram::BucketBoundaries{
                                 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                 1, 2.5, 5, 10})) {}
};

namespace {

using http::query_param;

std::string path_of(const http::Request& req) { return http::target_path(req); }

using http::hex_digit;

bool content_type_is(const http::Request& req, std::string_view wanted) {
  auto it = req.find(bhttp::field::content_type);
  if (it == req.end()) {
    return false;
  }
  std::string v(it->value());
  auto semi = v.find(';');
  if (semi != std::string::npos) {
    v.resize(semi);
  }
  while (!v.empty() && v.back() == ' ') {
    v.pop_back();
  }
  for (char& c : v) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return v == wanted;
}

std::string header(const http::Request& req, std::string_view name) {
  auto it = req.find(boost::beast::string_view(name.data(), name.size()));
  return it == req.end() ? std::string{} : std::string(it->value());
}

bool is_hex(std::string_view s) {
  for (char c : s) {
    if (hex_digit(c) < 0) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string trace_id_from(const http::Request& req) {
  // 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
  const std::string tp = header(req, "traceparent");
  if (tp.size() >= 55 && tp[2] == '-' && tp[35] == '-') {
    std::string id = tp.substr(3, 32);
    if (is_hex(id) && id != std::string(32, '0')) {
      return id;
    }
  }
  return crypto::fast_random_hex(16);
}

std::string make_traceparent(const std::string& trace_id) {
  return "00-" + trace_id + "-" + crypto::fast_random_hex(8) + "-01";
}

// Unique per request across replicas and restarts: a random process prefix and a counter.
std::string claim_token() {
  static const std::string prefix = crypto::random_hex(8) + ":";
  static std::atomic<uint64_t> counter{0};
  return prefix + std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
}

OutRecord Receiver::to_record(const WebhookEvent& e) {
  OutRecord r;
  r.topic = e.topic();
  r.key = e.conversation_key;
  r.value = e.encode();
  r.headers = {{"traceparent", make_traceparent(e.trace_id)},
               {"event_id", e.event_id},
               {"source", e.source}};
  return r;
}

OutRecord Receiver::receipt_record(const WebhookEvent& e, const std::string& type) {
  OutRecord r;
  r.topic = topics::kOutbound;
  r.key = e.conversation_key;  // the person's partition: after anything sent to them before
  const std::string id = "receipt:" + e.message_id;
  r.value = nlohmann::json{{"request_id", id},
                           {"idempotency_key", id},
                           {"phone_number_id", e.phone_number_id},
                           {"type", type},
                           {"message_id", e.message_id},
                           {"priority", "reply"}}
                .dump();
  r.headers = {{"traceparent", make_traceparent(e.trace_id)}, {"source", "receiver"}};
  return r;
}

Receiver::Receiver(ReceiverOptions options, EventSink& sink, DedupStore& dedupe, CertStore* certs,
                   prometheus::Registry& registry, std::function<int64_t()> now_ms)
    : options_(std::move(options)),
      sink_(sink),
      dedupe_(dedupe),
      certs_(certs),
      now_ms_(std::move(now_ms)),
      metrics_(std::make_shared<Metrics>(registry)) {}

void Receiver::finish(const http::Request& req, const http::Responder& respond, unsigned status,
                      const std::string& body, const std::string& path,
                      const std::string& outcome) {
  metrics_->requests.get(path, outcome).Increment();
  respond(http::make_response(req, status, body + "\n"));
}

void Receiver::handle(http::Request&& req, http::Responder respond) {
  const std::string path = path_of(req);
  const int64_t started = now_ms_();
  // Latency is observed when the answer goes out, whichever thread sends it.
  http::Responder timed = [respond = std::move(respond), started, m = metrics_,
                           now = now_ms_](http::Response res) {
    m->latency.Observe(static_cast<double>(now() - started) / 1000.0);
    respond(std::move(res));
  };
  if (path == "/webhook") {
    if (req.method() == bhttp::verb::get) {
      return handle_verify(req, timed);
    }
    if (req.method() == bhttp::verb::post) {
      return handle_meta(std::move(req), std::move(timed));
    }
    return finish(req, timed, 405, "method not allowed", path, "method_not_allowed");
  }
  if (path == "/eum" && options_.eum_enabled) {
    if (req.method() == bhttp::verb::post) {
      return handle_eum(std::move(req), std::move(timed));
    }
    return finish(req, timed, 405, "method not allowed", path, "method_not_allowed");
  }
  if (path == "/healthz" && req.method() == bhttp::verb::get) {
    // Load balancers often probe the serving port; the full probes are on the admin port.
    return timed(http::make_response(req, 200, "ok\n"));
  }
  return finish(req, timed, 404, "not found", "other", "not_found");
}

void Receiver::handle_verify(const http::Request& req, const http::Responder& respond) {
  const std::string mode = query_param(req, "hub.mode");
  const std::string token = query_param(req, "hub.verify_token");
  const std::string challenge = query_param(req, "hub.challenge");
  const bool ok = !options_.verify_token.empty() && mode == "subscribe" &&
                  crypto::constant_time_equal(token, options_.verify_token) && !challenge.empty();
  if (!ok) {
    log::warn("webhook.verify_rejected", {{"mode", mode}});
    metrics_->requests.get("/webhook", "verify_rejected").Increment();
    respond(http::make_response(req, 403, "Forbidden"));
    return;
  }
  log::info("webhook.verified");
  metrics_->requests.get("/webhook", "verified").Increment();
  respond(http::make_response(req, 200, challenge));  // verbatim, no newline
}

void Receiver::handle_meta(http::Request&& req, http::Responder respond) {
  const std::string path = "/webhook";
  const std::string signature = header(req, "X-Hub-Signature-256");
  if (signature.empty()) {
    log::warn("webhook.signature_missing");
    return finish(req, respond, 401, "missing X-Hub-Signature-256", path, "signature_missing");
  }
  if (!crypto::verify_hub_signature(signature, options_.app_secrets, req.body())) {
    log::warn("webhook.signature_invalid", {{"bytes", req.body().size()}});
    return finish(req, respond, 401, "invalid signature", path, "signature_invalid");
  }
  // The signature covers the bytes, so we checked it first; a signed body of another type is
  // Meta's (or a proxy's) mistake and goes to the DLQ rather than being lost.
  const std::string trace_id = trace_id_from(req);
  if (!content_type_is(req, "application/json")) {
    return dead_letter(req, path, "content type is not application/json", trace_id,
                       std::move(respond));
  }
  ParseContext ctx{"meta", now_ms_(), trace_id};
  auto events = parse_meta_webhook(req.body(), ctx);
  if (!events) {
    return dead_letter(req, path, events.error(), trace_id, std::move(respond));
  }
  ingest(std::move(events).value(), req, std::move(respond), path);
}

void Receiver::handle_eum(http::Request&& req, http::Responder respond) {
  const std::string path = "/eum";
  const std::string trace_id = trace_id_from(req);
  ParseContext ctx{"eum", now_ms_(), trace_id};
  const bool raw = header(req, "x-amz-sns-rawdelivery") == "true";
  if (raw) {
    if (!options_.eum_allow_unsigned_raw) {
      log::warn("eum.raw_delivery_refused");
      return finish(req, respond, 401,
                    "raw message delivery carries no signature; enable it explicitly", path,
                    "raw_refused");
    }
    auto events = parse_eum_event(req.body(), ctx);
    if (!events) {
      return dead_letter(req, path, events.error(), trace_id, std::move(respond));
    }
    return ingest(std::move(events).value(), req, std::move(respond), path);
  }
  auto sns = parse_sns(req.body());
  if (!sns) {
    // Without an envelope there is nothing to authenticate: refuse, produce nothing.
    log::warn("eum.bad_envelope", {{"reason", sns.error()}});
    return finish(req, respond, 400, "not an SNS message: " + sns.error(), path, "bad_request");
  }
  const std::string digest = sns_digest(*sns);
  if (digest.empty() || certs_ == nullptr ||
      !sns_url_allowed(sns->signing_cert_url, options_.sns_host_regex, true,
                       options_.sns_allow_http)) {
    log::warn("eum.signature_unverifiable", {{"version", sns->signature_version}});
    return finish(req, respond, 401, "SNS signature cannot be verified", path,
                  "signature_invalid");
  }
  auto cert = certs_->certificate(sns->signing_cert_url);
  if (!cert) {
    log::warn("eum.certificate_unavailable", {{"reason", cert.error().message}});
    return finish(req, respond, 503, "SNS signing certificate unavailable", path, "unavailable");
  }
  auto signature = crypto::base64_decode(sns->signature);
  if (!signature ||
      !crypto::verify_x509_signature(*cert, digest, sns_string_to_sign(*sns), *signature)) {
    log::warn("eum.signature_invalid", {{"message_id", sns->message_id}});
    return finish(req, respond, 401, "invalid SNS signature", path, "signature_invalid");
  }
  if (!options_.eum_topic_arns.empty() &&
      std::find(options_.eum_topic_arns.begin(), options_.eum_topic_arns.end(),
                sns->topic_arn) == options_.eum_topic_arns.end()) {
    log::warn("eum.topic_not_allowed", {{"topic_arn", sns->topic_arn}});
    return finish(req, respond, 403, "topic not allowed", path, "topic_not_allowed");
  }
  if (sns->type == "SubscriptionConfirmation") {
    if (!options_.eum_auto_confirm) {
      log::info("eum.subscription_pending", {{"topic_arn", sns->topic_arn}});
      return finish(req, respond, 200, "subscription not confirmed (auto-confirm off)", path,
                    "subscription_ignored");
    }
    if (!sns_url_allowed(sns->subscribe_url, options_.sns_host_regex, false,
                         options_.sns_allow_http)) {
      log::warn("eum.subscribe_url_refused", {{"topic_arn", sns->topic_arn}});
      return finish(req, respond, 400, "SubscribeURL is not an SNS URL", path, "bad_request");
    }
    if (auto s = certs_->confirm_subscription(sns->subscribe_url); !s) {
      log::warn("eum.subscription_confirm_failed", {{"reason", s.error().message}});
      return finish(req, respond, 503, "subscription confirmation failed", path, "unavailable");
    }
    log::info("eum.subscription_confirmed", {{"topic_arn", sns->topic_arn}});
    return finish(req, respond, 200, "subscription confirmed", path, "subscription_confirmed");
  }
  if (sns->type == "UnsubscribeConfirmation") {
    log::warn("eum.unsubscribed", {{"topic_arn", sns->topic_arn}});
    return finish(req, respond, 200, "ok", path, "unsubscribe_noted");
  }
  auto events = parse_eum_event(sns->message, ctx);
  if (!events) {
    return dead_letter(req, path, events.error(), trace_id, std::move(respond));
  }
  ingest(std::move(events).value(), req, std::move(respond), path);
}

void Receiver::dead_letter(const http::Request& req, const std::string& path,
                           const std::string& reason, const std::string& trace_id,
                           http::Responder respond) {
  const int64_t now = now_ms_();
  dlq::DeadLetter d;
  d.original_topic = "http:" + path;
  d.original_timestamp_ms = now;
  d.worker = "receiver";
  d.stage = "parse";
  d.error_class = to_string(ErrorKind::kInvalidInput);
  d.error_message = reason;
  d.first_failure_ms = now;
  d.last_failure_ms = now;
  d.trace_id = trace_id;
  // A replay (`wafleet dlq replay` posts the body again, signed) says which one it is.
  const std::string replay = header(req, "X-Wafleet-Replay");
  if (int n = 0;
      std::from_chars(replay.data(), replay.data() + replay.size(), n).ec == std::errc{}) {
    d.replay_count = n;
  }
  d.extra = {{"dlq.http.content_type", header(req, "Content-Type")},
             {"dlq.http.signature_verified", "true"}};
  OutRecord r;
  r.topic = topics::kDlq;
  r.value = req.body();
  r.headers = dlq::to_headers(d);
  auto shared_req = std::make_shared<http::Request>(req);
  log::warn("record.dead_lettered",
            {{"stage", "parse"}, {"path", path}, {"reason", reason}, {"bytes", req.body().size()}});
  std::vector<OutRecord> records;
  records.push_back(std::move(r));
  sink_.publish(std::move(records), [this, shared_req, respond = std::move(respond),
                                     path](const Status& s) {
    if (!s) {
      log::error("dlq.produce_failed", {{"reason", s.error().message}});
      return finish(*shared_req, respond, 503, "temporarily unavailable", path, "unavailable");
    }
    finish(*shared_req, respond, 200, "ok", path, "dead_lettered");
  });
}

void Receiver::ingest(std::vector<WebhookEvent> events, const http::Request& req,
                      http::Responder respond, const std::string& path) {
  if (events.empty()) {
    return finish(req, respond, 200, "ok", path, "empty");
  }
  struct Ctx {
    std::vector<WebhookEvent> events;
    std::vector<OutRecord> records;  // encoded here, on the I/O thread, not on Redis's thread
    std::vector<std::string> keys;
    std::string token;
    http::Request req;
    http::Responder respond;
  };
  auto ctx = std::make_shared<Ctx>();
  ctx->events = std::move(events);
  ctx->token = claim_token();
  // Only the HTTP version and keep-alive are needed to answer: no copy of headers or body.
  ctx->req.version(req.version());
  ctx->req.keep_alive(req.keep_alive());
  ctx->respond = std::move(respond);
  ctx->records.reserve(ctx->events.size());
  for (const auto& e : ctx->events) {
    ctx->keys.push_back(dedupe_redis_key(e.dedupe_key));
    ctx->records.push_back(to_record(e));
  }

  dedupe_.claim(ctx->keys, ctx->token, [this, ctx, path](Result<std::vector<ClaimState>> states) {
    if (!states) {
      log::warn("webhook.dedupe_unavailable", {{"reason", states.error().message}});
      return finish(ctx->req, ctx->respond, 503, "temporarily unavailable", path, "unavailable");
    }
    const size_t n = ctx->events.size();
    std::vector<std::string> claimed;
    std::vector<OutRecord> records;
    std::vector<const char*> kinds;
    claimed.reserve(n);
    records.reserve(n);
    kinds.reserve(n);
    bool elsewhere = false;
    std::unordered_set<std::string_view> seen;  // the same event twice inside one body
    for (size_t i = 0; i < n; ++i) {
      ClaimState st = i < states->size() ? (*states)[i] : ClaimState::kInFlightElsewhere;
      if (n > 1 && !seen.insert(ctx->keys[i]).second) {
        st = ClaimState::kAlreadyDone;
      }
      const char* kind = to_string(ctx->events[i].kind);
      if (st == ClaimState::kClaimed) {
        claimed.push_back(ctx->keys[i]);
        records.push_back(std::move(ctx->records[i]));
        kinds.push_back(kind);
        if (options_.receipts != "off" && ctx->events[i].kind == EventKind::kMessage &&
            !ctx->events[i].message_id.empty()) {
          records.push_back(receipt_record(ctx->events[i], options_.receipts));
        }
      } else if (st == ClaimState::kAlreadyDone) {
        metrics_->events.get(kind, "duplicate").Increment();
      } else {
        elsewhere = true;
      }
    }
    if (elsewhere) {
      // Another request holds some of these events right now and may still fail: do not
      // answer 200 for them. Give ours back; Meta's retry will find them done or free.
      log::info("webhook.in_flight_elsewhere", {{"events", ctx->events.size()}});
      dedupe_.release(claimed, ctx->token, [this, ctx, path](const Status&) {
        finish(ctx->req, ctx->respond, 503, "events in flight, retry", path, "in_flight");
      });
      return;
    }
    if (records.empty()) {
      return finish(ctx->req, ctx->respond, 200, "ok", path, "duplicate");
    }
    const size_t produced = records.size();
    sink_.publish(std::move(records), [this, ctx, claimed = std::move(claimed),
                                       kinds = std::move(kinds), path, produced](const Status& s) {
      if (!s) {
        // Release before answering: a claim left behind would turn Meta's retry into a
        // "duplicate". If even the release fails, the pending mark expires by itself and the
        // retries meanwhile get 503 (in flight), never a false 200.
        log::warn("webhook.produce_failed", {{"reason", s.error().message}, {"events", produced}});
        dedupe_.release(claimed, ctx->token, [this, ctx, path](const Status& r) {
          if (!r) {
            log::warn("dedupe.release_failed", {{"reason", r.error().message}});
          }
          finish(ctx->req, ctx->respond, 503, "temporarily unavailable", path, "unavailable");
        });
        return;
      }
      for (const char* k : kinds) {
        metrics_->events.get(k, "produced").Increment();
      }
      // Durable on Kafka. Mark the claims done before answering, so a duplicate sent after our
      // 200 finds "done" rather than our pending mark (a 503 for an event already accepted).
      // The 200 goes out whatever the mark's outcome: if it failed, the pending marks expire
      // and a later retry may be produced again (same event_id), never lost.
      dedupe_.confirm(claimed, ctx->token, [this, ctx, path](const Status& c) {
        if (!c) {
          log::warn("dedupe.confirm_failed", {{"reason", c.error().message}});
        }
        finish(ctx->req, ctx->respond, 200, "ok", path, "accepted");
      });
    });
  });
}

}  // namespace wafleet::receiver
