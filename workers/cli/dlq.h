#pragma once
// `wafleet dlq ls | show | stats | replay`: see docs/OPERATIONS.md "Dead letters".
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/kafka.h"

namespace wafleet::cli {

struct DlqArgs {
  CLI::App* cmd = nullptr;
  CLI::App* ls = nullptr;
  CLI::App* show = nullptr;
  CLI::App* stats = nullptr;
  CLI::App* replay = nullptr;
  std::string topic = "wa.dlq";
  // filters
  std::string since, until, key;
  std::vector<std::string> error_classes, workers, topics;
  int64_t from_offset = -1;
  int64_t to_offset = -1;
  // show
  std::string where;  // <partition>:<offset>
  // replay
  bool dry_run = false;
  bool yes = false;
  double rate = 0;
  int64_t limit = 0;
  int max_replays = 3;
  std::string actor;
  std::string receiver_url;
  std::string redis_url;
  int timeout_s = 30;
};

void add_dlq_commands(CLI::App& app, DlqArgs& a);
bool dlq_parsed(const DlqArgs& a);
int run_dlq(const DlqArgs& a, const kafka::ClientConfig& kc);

}  // namespace wafleet::cli
