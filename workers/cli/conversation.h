#pragma once
// `wafleet conversation show|release <conversation_key>`: who answers a conversation (the bot, or
// a person since a handoff), its memory, and giving it back to the bot.
#include <string>

#include <CLI/CLI.hpp>

namespace wafleet::cli {

struct ConversationArgs {
  CLI::App* show = nullptr;
  CLI::App* release = nullptr;
  std::string key;
  std::string redis_url;
  std::string reason = "released by an operator";
};

void add_conversation_commands(CLI::App& app, ConversationArgs& a);
bool conversation_parsed(const ConversationArgs& a);
// brokers may be empty: a release then writes no wa.handoffs record (and says so).
int run_conversation(const ConversationArgs& a, const std::string& brokers);

}  // namespace wafleet::cli
