#pragma once
// `wafleet bulk create | ls | show | pause | resume | cancel | report | retry-failed`: bulk
// campaigns (workers/bulk/). create validates the whole list and writes the job to Redis, then
// puts a create command on wa.bulk.commands; pause/resume/cancel/retry-failed are commands on
// that topic, applied by wafleet-bulk (the CLI waits a few seconds to show the effect); ls,
// show and report read Redis.
#include <string>

#include <CLI/CLI.hpp>


namespace wafleet::cli {

struct BulkArgs {
  CLI::App* create = nullptr;
  CLI::App* ls = nullptr;
  CLI::App* show = nullptr;
  CLI::App* pause = nullptr;
  CLI::App* resume = nullptr;
  CLI::App* cancel = nullptr;
  CLI::App* report = nullptr;
  CLI::App* retry_failed = nullptr;
  std::string redis_url;
  std::string file;
  std::string phone_number_id;
  std::string template_name;
  std::string language;
  std::string name;
  std::string schedule;
  std::string category = "marketing";
  std::string quiet_hours;
  bool dry_run = false;
  std::string job;
  bool watch = false;
  bool json = false;
  std::string format = "csv";
  std::string out;
  int limit = 50;
  int wait_s = 5;
};

void add_bulk_commands(CLI::App& app, BulkArgs& a);
bool bulk_parsed(const BulkArgs& a);
// brokers: needed by create (not --dry-run) and the commands.
int run_bulk(const BulkArgs& a, const std::string& brokers);

}  // namespace wafleet::cli
