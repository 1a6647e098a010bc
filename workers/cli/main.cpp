// wafleet: the admin CLI. Subcommands: topics (apply, list), send-webhook, consume, status, dlq,
// conversation, bulk.
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "common/config.h"
#include "common/text.h"
#include "common/crypto.h"
#include "common/http_client.h"
#include "common/kafka.h"
#include "common/log.h"
#include "topics/topics.h"
#include "workers/cli/bulk.h"
#include "workers/cli/conversation.h"
#include "workers/cli/dlq.h"
#include "workers/cli/forget.h"
#include "workers/cli/topics.h"
#include "workers/sender/conversations.h"

using namespace wafleet;

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string brokers_from(const std::string& brokers, const std::string& bootstrap_file) {
  if (!brokers.empty()) {
    return brokers;
  }
  if (!bootstrap_file.empty()) {
    return trim(read_file(bootstrap_file));
  }
  return "";
}

std::map<std::string, std::string> kafka_props_from_env() {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : config::process_env()) {
    if (k.rfind("WAFLEET_KAFKA_", 0) == 0 && k.find('.') != std::string::npos) {
      out[k.substr(14)] = v;
    }
  }
  return out;
}

// A realistic inbound text webhook for a conversation (used by the demo and the bench).
std::string demo_payload(const std::string& phone_number_id, const std::string& from,
                         const std::string& name, const std::string& text,
                         const std::string& wamid) {
  nlohmann::json msg = {{"from", from},
                        {"id", wamid},
                        {"timestamp", std::to_string(std::time(nullptr))},
                        {"type", "text"},
                        {"text", {{"body", text}}}};
  nlohmann::json value = {
      {"messaging_product", "whatsapp"},
      {"metadata", {{"display_phone_number", "15550001111"}, {"phone_number_id", phone_number_id}}},
      {"contacts", {{{"profile", {{"name", name}}}, {"wa_id", from}}}},
      {"messages", {msg}}};
  nlohmann::json body = {
      {"object", "whatsapp_business_account"},
      {"entry", {{{"id", "100000000000001"}, {"changes", {{{"value", value}, {"field", "messages"}}}}}}}};
  return body.dump();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wafleet admin CLI"};
  app.require_subcommand(1);
  log::init("cli", env_or("WAFLEET_LOG_LEVEL", "warn"));

  std::string brokers = env_or("WAFLEET_KAFKA_BROKERS", "");
  std::string bootstrap_file = env_or("WAFLEET_BOOTSTRAP_FILE", "");
  app.add_option("--kafka-brokers", brokers, "Kafka bootstrap list (WAFLEET_KAFKA_BROKERS)");
  app.add_option("--bootstrap-file", bootstrap_file, "read the bootstrap list from a file");

  cli::TopicsArgs topics_args;
  cli::add_topics_commands(app, topics_args);

  // send-webhook
  auto* send = app.add_subcommand("send-webhook", "POST a signed webhook to a receiver");
  std::string url = "http://127.0.0.1:8080/webhook";
  std::string file;
  std::string secret = env_or("WAFLEET_APP_SECRET", "");
  std::string demo_from = "15551230001";
  std::string demo_text = "Hi";
  std::string demo_name = "Demo Person";
  std::string demo_pnid = "106540352242922";
  std::string demo_id;
  send->add_option("--url", url, "receiver webhook URL");
  send->add_option("--file", file, "body to send (raw bytes, signed as they are)");
  send->add_option("--secret", secret, "app secret to sign with (WAFLEET_APP_SECRET)");
  send->add_option("--from", demo_from, "demo: sender phone digits");
  send->add_option("--text", demo_text, "demo: message text");
  send->add_option("--name", demo_name, "demo: profile name");
  send->add_option("--phone-number-id", demo_pnid, "demo: business phone_number_id");
  send->add_option("--message-id", demo_id, "demo: wamid (random when empty)");

  // consume
  auto* consume = app.add_subcommand("consume", "print records of a topic as JSON lines");
  std::string topic = topics::kInbound;
  int max_records = 10;
  int wait_ms = 10000;
  consume->add_option("--topic", topic, "topic to read");
  consume->add_option("--max", max_records, "stop after this many records");
  consume->add_option("--timeout-ms", wait_ms, "stop after this long without a record");
  bool summary = false;
  consume->add_flag("--summary", summary, "one readable line per webhook event");

  // status
  auto* status_cmd = app.add_subcommand("status", "the delivery status of a sent message (from Redis)");
  std::string wamid;
  std::string redis_url = env_or("WAFLEET_REDIS_URL", "redis://127.0.0.1:6379/0");
  status_cmd->add_option("wamid", wamid, "the message id Meta returned")->required();
  status_cmd->add_option("--redis-url", redis_url, "Redis (WAFLEET_REDIS_URL)");

  cli::DlqArgs dlq_args;
  cli::add_dlq_commands(app, dlq_args);
  cli::ConversationArgs conversation_args;
  cli::add_conversation_commands(app, conversation_args);
  cli::BulkArgs bulk_args;
  cli::add_bulk_commands(app, bulk_args);
  cli::ForgetArgs forget_args;
  cli::add_forget_command(app, forget_args);

  CLI11_PARSE(app, argc, argv);

  if (status_cmd->parsed()) {
    auto opts = redis::parse_url(redis_url);
    if (!opts) {
      std::cerr << "wafleet status: WAFLEET_REDIS_URL: " << opts.error().message << "\n";
      return 2;
    }
    redis::RedisClient redis(*opts);
    auto st = sender::Conversations::status_of(redis, wamid);
    if (!st) {
      std::cerr << "wafleet status: " << st.error().message << "\n";
      return 1;
    }
    if (st->empty()) {
      std::cerr << "wafleet status: no status recorded for " << wamid << "\n";
      return 3;
    }
    std::cout << st->dump(2) << "\n";
    return 0;
  }

  if (cli::conversation_parsed(conversation_args)) {
    return cli::run_conversation(conversation_args, brokers_from(brokers, bootstrap_file));
  }
  if (cli::bulk_parsed(bulk_args)) {
    return cli::run_bulk(bulk_args, brokers_from(brokers, bootstrap_file));
  }
  if (cli::forget_parsed(forget_args)) {
    return cli::run_forget(forget_args, brokers_from(brokers, bootstrap_file));
  }
  const bool needs_cluster =
      (cli::topics_parsed(topics_args) && cli::topics_need_cluster(topics_args)) ||
      consume->parsed() || cli::dlq_parsed(dlq_args);
  if (needs_cluster) {
    brokers = brokers_from(brokers, bootstrap_file);
    if (brokers.empty()) {
      std::cerr << "wafleet: set WAFLEET_KAFKA_BROKERS or --kafka-brokers\n";
      return 2;
    }
  }
  kafka::ClientConfig kc{brokers, "wafleet-cli", kafka_props_from_env()};
  if (cli::dlq_parsed(dlq_args)) {
    return cli::run_dlq(dlq_args, kc);
  }

  if (cli::topics_parsed(topics_args)) {
    return cli::run_topics(topics_args, kc);
  }
  if (send->parsed()) {
    if (secret.empty()) {
      std::cerr << "wafleet: send-webhook needs --secret or WAFLEET_APP_SECRET\n";
      return 2;
    }
    std::string body;
    if (!file.empty()) {
      body = read_file(file);
      if (body.empty()) {
        std::cerr << "wafleet: cannot read " << file << "\n";
        return 2;
      }
    } else {
      if (demo_id.empty()) {
        demo_id = "wamid.DEMO" + crypto::random_hex(12);
      }
      body = demo_payload(demo_pnid, demo_from, demo_name, demo_text, demo_id);
    }
    auto res = http::fetch("POST", url,
                           {{"Content-Type", "application/json"},
                            {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(secret, body)}},
                           body, std::chrono::seconds(15));
    if (!res) {
      std::cerr << "wafleet: " << res.error().message << "\n";
      return 1;
    }
    std::cout << res->status << " " << trim(res->body) << "\n";
    return res->status == 200 ? 0 : 1;
  }
  if (consume->parsed()) {
    kafka::ConsumerOptions co;
    co.group_id = "wafleet-cli-" + crypto::random_hex(6);
    co.topics = {topic};
    auto consumer = kafka::Consumer::create(kc, co);
    if (!consumer) {
      std::cerr << "wafleet: " << consumer.error().message << "\n";
      return 1;
    }
    int seen = 0;
    auto last = std::chrono::steady_clock::now();
    while (seen < max_records &&
           std::chrono::steady_clock::now() - last < std::chrono::milliseconds(wait_ms)) {
      auto r = (*consumer)->poll(std::chrono::milliseconds(200));
      if (!r) {
        std::cerr << "wafleet: " << r.error().message << "\n";
        return 1;
      }
      if (!*r) {
        continue;
      }
      last = std::chrono::steady_clock::now();
      const auto& rec = **r;
      if (summary) {
        auto v = nlohmann::json::parse(rec.value, nullptr, false);
        std::string what;
        if (!v.is_discarded() && v.is_object() && v.contains("turn_id")) {
          what = "turn " + v.value("turn_id", std::string()).substr(0, 8) + " from " +
                 v.value("profile_name", std::string("?")) + ": ";
          const auto& items = v.value("items", nlohmann::json::array());
          for (size_t i = 0; i < items.size(); ++i) {
            const auto& it = items[i];
            what += (i ? " | " : "") + it.value("kind", std::string("?"));
            if (it.contains("text") && it["text"].is_string()) {
              std::string t = it["text"].get<std::string>();
              for (auto& ch : t) {
                ch = ch == '\n' ? '/' : ch;
              }
              what += " \"" + t + "\"";
            }
          }
          what += "  (" + std::to_string(v.value("message_ids", nlohmann::json::array()).size()) +
                  " messages)";
        } else if (!v.is_discarded() && v.is_object()) {
          const auto& raw = v.value("raw", nlohmann::json::object());
          what = v.value("kind", "") + " " + v.value("type", "");
          if (raw.is_object() && raw.contains("text") && raw["text"].is_object()) {
            what += " \"" + raw["text"].value("body", "") + "\"";
          }
          what += " from " + v.value("profile_name", std::string("?"));
        }
        std::cout << rec.topic << " p" << rec.partition << "@" << rec.offset << " key="
                  << log::redact_digits(rec.key) << "  " << what << "\n";
        ++seen;
        continue;
      }
      nlohmann::json line = {{"topic", rec.topic},
                             {"partition", rec.partition},
                             {"offset", rec.offset},
                             {"key", log::redact_digits(rec.key)}};
      auto value = nlohmann::json::parse(rec.value, nullptr, false);
      line["value"] = value.is_discarded() ? nlohmann::json(rec.value) : value;
      std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      ++seen;
    }
    (*consumer)->close(std::chrono::seconds(3));
    return seen > 0 ? 0 : 3;
  }
  return 0;
}
