#include "workers/cli/conversation.h"

#include <cstdlib>
#include <iostream>

#include "common/clock.h"
#include "common/consumer_loop.h"
#include "common/kafka.h"
#include "common/redis.h"
#include "topics/topics.h"
#include "workers/bridge/state.h"

namespace wafleet::cli {

void add_conversation_commands(CLI::App& app, ConversationArgs& a) {
  auto* cmd = app.add_subcommand("conversation", "who answers a conversation: the bot or a person");
  cmd->require_subcommand(1);
  const char* env = std::getenv("WAFLEET_REDIS_URL");
  a.redis_url = env != nullptr ? env : "redis://127.0.0.1:6379/0";
  a.show = cmd->add_subcommand("show", "owner (bot, human, paused), memory and session");
  a.release = cmd->add_subcommand("release", "give a handed-off conversation back to the bot");
  for (auto* sub : {a.show, a.release}) {
    sub->add_option("key", a.key, "conversation key: <phone_number_id>:<wa_id or user id>")->required();
    sub->add_option("--redis-url", a.redis_url, "Redis (WAFLEET_REDIS_URL)");
  }
  a.release->add_option("--reason", a.reason, "why, for wa.handoffs");
}

bool conversation_parsed(const ConversationArgs& a) {
  return (a.show != nullptr && a.show->parsed()) || (a.release != nullptr && a.release->parsed());
}

int run_conversation(const ConversationArgs& a, const std::string& brokers) {
  auto opts = redis::parse_url(a.redis_url);
  if (!opts) {
    std::cerr << "wafleet conversation: WAFLEET_REDIS_URL: " << opts.error().message << "\n";
    return 2;
  }
  redis::RedisClient redis(*opts);
  bridge::State state(redis, 24LL * 3600 * 1000, 10);
  auto owner = state.owner(a.key);
  if (!owner) {
    std::cerr << "wafleet conversation: " << owner.error().message << "\n";
    return 1;
  }
  if (a.show->parsed()) {
    auto memory = state.memory(a.key);
    auto session = state.session(a.key);
    if (!memory || !session) {
      std::cerr << "wafleet conversation: "
                << (!memory ? memory.error().message : session.error().message) << "\n";
      return 1;
    }
    nlohmann::json out = owner->to_json();
    out["conversation_key"] = a.key;
    out["session_id"] = *session;
    out["memory"] = nlohmann::json::array();
    for (const auto& m : *memory) {
      out["memory"].push_back({{"role", m.role}, {"content", m.content}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (owner->bot()) {
    std::cout << "wafleet conversation: " << a.key << " is the bot's already\n";
    return 0;
  }
  if (Status st = state.release(a.key); !st) {
    std::cerr << "wafleet conversation: " << st.error().message << "\n";
    return 1;
  }
  std::cout << "released " << a.key << " to the bot (was " << owner->owner << " since a "
            << owner->by << " handoff)\n";
  if (brokers.empty()) {
    std::cerr << "wafleet conversation: no WAFLEET_KAFKA_BROKERS: no wa.handoffs record written\n";
    return 0;
  }
  auto producer = kafka::Producer::create(kafka::ClientConfig{brokers, "wafleet-cli", {}});
  if (!producer) {
    std::cerr << "wafleet conversation: " << producer.error().message << "\n";
    return 1;
  }
  const nlohmann::json record = {{"conversation_key", a.key}, {"event", "released"},
                                 {"owner", "bot"},           {"by", "operator"},
                                 {"reason", a.reason},       {"at_ms", wall_clock_ms()}};
  if (Status st = kafka::produce_and_wait(**producer, topics::kHandoffs, a.key, record.dump()); !st) {
    std::cerr << "wafleet conversation: released, but wa.handoffs: " << st.error().message << "\n";
    return 1;
  }
  return 0;
}

}  // namespace wafleet::cli
