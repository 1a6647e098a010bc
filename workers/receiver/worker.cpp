#include "workers/receiver/worker.h"

#include "common/clock.h"
#include "common/log.h"
#include "topics/topics.h"
#include "workers/receiver/adapters.h"
#include "workers/receiver/dedupe.h"

namespace wafleet::receiver {

namespace {

std::vector<config::Option> own_options() {
  std::vector<config::Option> opts = {
      {"listen", "127.0.0.1:8080", "webhook listener host:port (port 0 picks a free one)"},
      {"app-secret", "", "Meta app secret(s), comma-separated for rotation", true, false},
      {"verify-token", "", "token for Meta's GET verification handshake", true, false},
      {"http-threads", "2", "HTTP I/O threads"},
      {"body-limit", "4194304", "largest accepted body in bytes (Meta sends up to 3 MB)"},
      {"produce-timeout-ms", "5000", "Kafka acknowledgement deadline before answering 503"},
      {"dedupe-ttl-hours", "48", "how long a delivered event id is remembered"},
      {"receipts", "off", "per inbound message, ask the sender (wa.outbound) for: off | read "
                          "(mark as read) | typing (read + typing indicator)"},
      {"eum-enabled", "true", "serve POST /eum (AWS End User Messaging through SNS)"},
      {"eum-allow-unsigned-raw", "false", "accept SNS raw message delivery (no signature)"},
      {"eum-topic-arns", "", "comma-separated SNS topic ARNs to accept (empty: any verified)"},
      {"eum-auto-confirm", "true", "confirm SNS subscriptions by visiting SubscribeURL"},
      {"eum-sns-cert-file", "", "PEM certificate to verify SNS signatures with, instead of fetching"},
      {"eum-sns-host-regex", R"(^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$)",
       "hosts allowed for SigningCertURL and SubscribeURL"},
      {"eum-sns-allow-http", "false", "allow http:// SNS URLs (tests only)"},
      {"port-file", "", "write the bound webhook port here once listening"},
  };
  return opts;
}

int64_t now_ms() { return wall_clock_ms(); }

// Owns the adapters, the receiver core and the HTTP server; run() serves until stopped, then
// drains: no new requests, those waiting for Kafka acks get their answer first.
class ReceiverCore : public worker::Core {
 public:
  ReceiverCore(worker::Context& ctx, const WorkerConfig& c)
      : c_(c),
        dedupe_(ctx.redis_options(), c.receiver.pending_claim_ttl_ms, c.receiver.dedupe_ttl_ms),
        sink_(ctx.producer()),
        certs_(c.sns_cert_file),
        core_(c.receiver, sink_, dedupe_, &certs_, ctx.metrics(), now_ms),
        server_(server_options(c), [this](http::Request&& req, http::Responder respond) {
          core_.handle(std::move(req), std::move(respond));
        }) {}

  Status run(worker::Context& ctx) override {
    if (Status st = server_.start(); !st) {
      return Unexpected(Error::fatal("listen " + c_.listen.host + ":" +
                                     std::to_string(c_.listen.port) + ": " + st.error().message));
    }
    config::write_port_file(ctx.settings().get("port-file"), server_.port());
    log::info("receiver.listening", {{"listen", c_.listen.host + ":" + std::to_string(server_.port())}});
    ctx.wait_for_stop();
    server_.stop(std::chrono::milliseconds(c_.produce_timeout_ms + 1000));
    return {};
  }

 private:
  static http::ServerOptions server_options(const WorkerConfig& c) {
    http::ServerOptions so;
    so.host = c.listen.host;
    so.port = c.listen.port;
    so.threads = c.http_threads;
    so.body_limit = c.body_limit;
    so.server_name = "wafleet-receiver";
    return so;
  }

  WorkerConfig c_;
  RedisDedupStore dedupe_;
  KafkaSink sink_;
  SnsCerts certs_;
  Receiver core_;
  http::Server server_;
};

}  // namespace

WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c;
  if (auto listen = config::parse_host_port(s.get("listen"), "listen", errors)) {
    c.listen = *listen;
  }
  const int64_t threads = s.get_int("http-threads", errors);
  const int64_t body_limit = s.get_int("body-limit", errors);
  const int64_t produce_timeout = s.get_int("produce-timeout-ms", errors);
  const int64_t dedupe_hours = s.get_int("dedupe-ttl-hours", errors);
  ReceiverOptions& ro = c.receiver;
  ro.app_secrets = worker::split_list(s.get("app-secret"));
  ro.verify_token = s.get("verify-token");
  ro.eum_enabled = s.get_bool("eum-enabled", errors);
  ro.eum_allow_unsigned_raw = s.get_bool("eum-allow-unsigned-raw", errors);
  ro.eum_topic_arns = worker::split_list(s.get("eum-topic-arns"));
  ro.eum_auto_confirm = s.get_bool("eum-auto-confirm", errors);
  ro.sns_host_regex = s.get("eum-sns-host-regex");
  ro.sns_allow_http = s.get_bool("eum-sns-allow-http", errors);
  ro.dedupe_ttl_ms = dedupe_hours * 3600 * 1000;
  ro.receipts = s.get("receipts");
  if (ro.receipts != "off" && ro.receipts != "read" && ro.receipts != "typing") {
    errors.push_back("WAFLEET_RECEIPTS: expected off, read or typing, got '" + ro.receipts + "'");
  }
  ro.pending_claim_ttl_ms = std::max<int64_t>(30000, produce_timeout * 3);
  if (ro.app_secrets.empty()) {
    errors.push_back("WAFLEET_APP_SECRET is required: without it no webhook can be verified");
  }
  if (threads < 1 || threads > 64) {
    errors.push_back("WAFLEET_HTTP_THREADS: must be 1..64");
  }
  if (body_limit < 1) {
    errors.push_back("WAFLEET_BODY_LIMIT: must be at least 1");
  }
  if (produce_timeout < 1) {
    errors.push_back("WAFLEET_PRODUCE_TIMEOUT_MS: must be at least 1");
  }
  c.http_threads = static_cast<int>(std::clamp<int64_t>(threads, 1, 64));
  c.body_limit = static_cast<uint64_t>(std::max<int64_t>(1, body_limit));
  c.produce_timeout_ms = static_cast<int>(std::max<int64_t>(1, produce_timeout));
  c.sns_cert_file = s.get("eum-sns-cert-file");
  return c;
}

static worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  const WorkerConfig c = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.produces = {topics::kInbound, topics::kStatus};
  plan.wiring.producer.message_timeout_ms = c.produce_timeout_ms;
  plan.build = worker::build<ReceiverCore>(c);
  return plan;
}

worker::Spec spec() { return {"receiver", "", own_options(), make_plan}; }

}  // namespace wafleet::receiver
