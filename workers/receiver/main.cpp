// wafleet-receiver: wiring only. The logic is in receiver.cpp (see README.md here).
#include <chrono>
#include <csignal>
#include <unistd.h>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "common/clock.h"
#include "common/admin.h"
#include "common/config.h"
#include "common/http_client.h"
#include "common/kafka.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/runtime.h"
#include "topics/topics.h"
#include "workers/receiver/adapters.h"
#include "workers/receiver/dedupe.h"
#include "workers/receiver/receiver.h"

using namespace wafleet;

namespace {

std::vector<config::Option> options() {
  auto o = config::common_options();
  std::vector<config::Option> mine = {
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
      {"admin-port-file", "", "write the bound admin port here once listening"},
  };
  o.insert(o.end(), mine.begin(), mine.end());
  return o;
}

std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    while (!item.empty() && item.front() == ' ') {
      item.erase(0, 1);
    }
    while (!item.empty() && item.back() == ' ') {
      item.pop_back();
    }
    if (!item.empty()) {
      out.push_back(item);
    }
  }
  return out;
}

int64_t now_ms() { return wall_clock_ms(); }

}  // namespace

int main(int argc, char** argv) {
  runtime::block_shutdown_signals();
  const auto opts = options();
  std::vector<std::string> errors;
  config::Settings s = config::load_args("wafleet-receiver", opts, argc, argv, errors);
  auto listen = config::parse_host_port(s.get("listen"), "listen", errors);
  auto admin = config::parse_host_port(s.get("admin-listen"), "admin-listen", errors);
  const int64_t threads = s.get_int("http-threads", errors);
  const int64_t body_limit = s.get_int("body-limit", errors);
  const int64_t produce_timeout = s.get_int("produce-timeout-ms", errors);
  const int64_t dedupe_hours = s.get_int("dedupe-ttl-hours", errors);
  receiver::ReceiverOptions ro;
  ro.app_secrets = split_csv(s.get("app-secret"));
  ro.verify_token = s.get("verify-token");
  ro.eum_enabled = s.get_bool("eum-enabled", errors);
  ro.eum_allow_unsigned_raw = s.get_bool("eum-allow-unsigned-raw", errors);
  ro.eum_topic_arns = split_csv(s.get("eum-topic-arns"));
  ro.eum_auto_confirm = s.get_bool("eum-auto-confirm", errors);
  ro.sns_host_regex = s.get("eum-sns-host-regex");
  ro.sns_allow_http = s.get_bool("eum-sns-allow-http", errors);
  ro.dedupe_ttl_ms = dedupe_hours * 3600 * 1000;
  ro.receipts = s.get("receipts");
  if (ro.receipts != "off" && ro.receipts != "read" && ro.receipts != "typing") {
    errors.push_back("WAFLEET_RECEIPTS: expected off, read or typing, got '" + ro.receipts + "'");
  }
  ro.pending_claim_ttl_ms = std::max<int64_t>(30000, produce_timeout * 3);
  const bool clear_phones = s.get_bool("log-phone-numbers", errors);
  if (ro.app_secrets.empty()) {
    errors.push_back("WAFLEET_APP_SECRET is required: without it no webhook can be verified");
  }
  auto redis_opts = redis::parse_url(s.get("redis-url"));
  if (!redis_opts) {
    errors.push_back("WAFLEET_REDIS_URL: " + redis_opts.error().message);
  }
  if (threads < 1 || threads > 64) {
    errors.push_back("WAFLEET_HTTP_THREADS: must be 1..64");
  }
  config::exit_if_invalid("wafleet-receiver", errors);
  log::init("receiver", s.get("log-level"), clear_phones);
  nlohmann::json effective;
  for (const auto& [k, v] : s.redacted()) {
    effective[k] = v;
  }
  log::info("worker.starting", {{"config", effective}});

  kafka::ClientConfig kc{s.get("kafka-brokers"), "wafleet-receiver", s.kafka_properties()};
  kafka::ProducerOptions po;
  po.message_timeout_ms = static_cast<int>(produce_timeout);
  auto producer = kafka::Producer::create(kc, po);
  if (!producer) {
    std::cerr << "wafleet-receiver: " << producer.error().message << "\n";
    return 1;
  }
  for (const char* topic : {topics::kInbound, topics::kStatus}) {
    if (auto w = (*producer)->warm_up(topic, std::chrono::seconds(5)); !w) {
      log::warn("receiver.warm_up_failed", {{"topic", topic}, {"reason", w.error().message}});
    }
  }
  receiver::RedisDedupStore dedupe(*redis_opts, ro.pending_claim_ttl_ms, ro.dedupe_ttl_ms);
  receiver::KafkaSink sink(**producer);
  receiver::SnsCerts certs(s.get("eum-sns-cert-file"));
  auto registry = std::make_shared<prometheus::Registry>();
  receiver::Receiver core(ro, sink, dedupe, &certs, *registry, now_ms);

  http::ServerOptions so;
  so.host = listen->host;
  so.port = listen->port;
  so.threads = static_cast<int>(threads);
  so.body_limit = static_cast<uint64_t>(body_limit);
  so.server_name = "wafleet-receiver";
  http::Server server(so, [&core](http::Request&& req, http::Responder respond) {
    core.handle(std::move(req), std::move(respond));
  });
  // Readiness asks Redis itself (short timeouts), so a receiver is not "ready" before its first
  // request has found Redis down.
  std::mutex probe_mu;
  redis::Options probe_opts = *redis_opts;
  probe_opts.connect_timeout = std::chrono::milliseconds(300);
  probe_opts.command_timeout = std::chrono::milliseconds(300);
  redis::RedisClient probe_redis(probe_opts);
  AdminServer admin_server(
      admin->host, admin->port, registry,
      [&] { return Probe{!(*producer)->fatal(), (*producer)->fatal() ? "kafka fatal error" : ""}; },
      [&] {
        if ((*producer)->fatal()) {
          return Probe{false, "kafka fatal error"};
        }
        std::lock_guard lock(probe_mu);
        if (auto ping = probe_redis.ping(); !ping) {
          return Probe{false, "redis: " + ping.error().message};
        }
        return Probe{true, ""};
      });
  if (auto st = admin_server.start(); !st) {
    std::cerr << "wafleet-receiver: admin: " << st.error().message << "\n";
    return 1;
  }
  if (auto st = server.start(); !st) {
    std::cerr << "wafleet-receiver: " << st.error().message << "\n";
    return 1;
  }
  config::write_port_file(s.get("port-file"), server.port());
  config::write_port_file(s.get("admin-port-file"), admin_server.port());
  log::info("worker.started",
            {{"listen", listen->host + ":" + std::to_string(server.port())},
             {"admin", admin->host + ":" + std::to_string(admin_server.port())}});

  std::atomic<bool> fatal{false};
  std::thread watchdog([&] {
    // librdkafka's fatal errors (idempotence broken) need a new producer: exit and let the
    // orchestrator restart us; Meta retries whatever got no 200.
    while (!fatal.load()) {
      if ((*producer)->fatal()) {
        fatal = true;
        log::error("worker.fatal", {{"reason", "kafka producer fatal error"}});
        kill(getpid(), SIGTERM);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  const int sig = runtime::wait_for_shutdown_signal();
  log::info("worker.stopping", {{"signal", sig}});
  // No new requests; those waiting for Kafka acks get their answer first.
  server.stop(std::chrono::milliseconds(produce_timeout + 1000));
  (*producer)->flush(std::chrono::milliseconds(produce_timeout + 1000));
  admin_server.stop();
  const bool was_fatal = fatal.exchange(true);
  watchdog.join();
  // The producer goes first: a delivery report still pending would otherwise call into the
  // receiver core, the dedupe store and the HTTP server after they are gone.
  (*producer).reset();
  log::info("worker.stopped");
  return was_fatal ? 1 : 0;
}
