#pragma once
// `wafleet topics apply | list | catalogue`: the catalogue (topics/catalogue.json) on a cluster.
#include <CLI/CLI.hpp>

#include "common/kafka.h"

namespace wafleet::cli {

struct TopicsArgs {
  CLI::App* cmd = nullptr;
  CLI::App* apply = nullptr;
  CLI::App* list = nullptr;
  CLI::App* show = nullptr;
  int replication = 0;  // 0: as many as there are brokers, up to 3
  int min_insync = 0;   // 0: 2 when the replication factor is 3 or more, else 1
  int timeout_s = 30;
};

void add_topics_commands(CLI::App& app, TopicsArgs& a);
bool topics_parsed(const TopicsArgs& a);
// Whether the verb talks to the cluster (catalogue does not).
bool topics_need_cluster(const TopicsArgs& a);
int run_topics(const TopicsArgs& a, const kafka::ClientConfig& kc);

}  // namespace wafleet::cli
