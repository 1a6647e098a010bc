#pragma once
// `wafleet forget <identity>`: erases one person (workers/erasure/) and writes the audit record
// to wa.privacy.audit. Prints what was removed and what remains, with when it goes.
#include <string>

#include <CLI/CLI.hpp>

namespace wafleet::cli {

struct ForgetArgs {
  CLI::App* forget = nullptr;
  std::string identity;
  std::string database_url;
  std::string redis_url;
  std::string actor;
};

void add_forget_command(CLI::App& app, ForgetArgs& a);
bool forget_parsed(const ForgetArgs& a);
int run_forget(const ForgetArgs& a, const std::string& brokers);

}  // namespace wafleet::cli
