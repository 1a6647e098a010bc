#include "workers/cli/topics.h"

#include <algorithm>
#include <iostream>
#include <thread>

#include "topics/topics.h"

namespace wafleet::cli {

void add_topics_commands(CLI::App& app, TopicsArgs& a) {
  a.cmd = app.add_subcommand("topics", "the topic catalogue");
  a.cmd->require_subcommand(1);
  a.apply = a.cmd->add_subcommand("apply", "create every catalogue topic on the cluster");
  a.apply->add_option("--replication", a.replication,
                      "replication factor (default: the number of brokers, up to 3)")
      ->check(CLI::Range(1, 7));
  a.apply->add_option("--min-insync-replicas", a.min_insync,
                      "min.insync.replicas of each topic (default: 2 from replication 3, else 1)")
      ->check(CLI::Range(1, 7));
  a.apply->add_option("--timeout", a.timeout_s, "seconds to wait for the cluster");
  a.list = a.cmd->add_subcommand("list", "show the catalogue and what the cluster has");
  a.list->add_option("--timeout", a.timeout_s, "seconds to wait for the cluster");
  a.show = a.cmd->add_subcommand("catalogue", "print the catalogue JSON");
}

bool topics_parsed(const TopicsArgs& a) { return a.cmd != nullptr && a.cmd->parsed(); }

bool topics_need_cluster(const TopicsArgs& a) { return a.apply->parsed() || a.list->parsed(); }

namespace {

// Partitions whose in-sync set is smaller than their replica set, and those with no leader.
struct Health {
  size_t replication = 0;
  int under_replicated = 0;
  int leaderless = 0;
};

Health health_of(const std::vector<kafka::PartitionState>& parts) {
  Health h;
  for (const auto& p : parts) {
    h.replication = std::max(h.replication, p.replicas.size());
    h.under_replicated += p.in_sync.size() < p.replicas.size() ? 1 : 0;
    h.leaderless += p.leader < 0 ? 1 : 0;
  }
  return h;
}

int apply(const TopicsArgs& a, const kafka::ClientConfig& kc) {
  const auto timeout = std::chrono::seconds(a.timeout_s);
  auto before = kafka::describe_cluster(kc, timeout);
  if (!before) {
    std::cerr << "wafleet: topics apply: " << before.error().message << "\n";
    return 1;
  }
  const int brokers = static_cast<int>(before->brokers.size());
  const int replication = a.replication > 0 ? a.replication : std::clamp(brokers, 1, 3);
  const int min_insync = a.min_insync > 0 ? a.min_insync : (replication >= 3 ? 2 : 1);
  if (replication > brokers) {
    std::cerr << "wafleet: topics apply: replication " << replication << " needs " << replication
              << " brokers, the cluster has " << brokers << "\n";
    return 1;
  }
  if (min_insync > replication) {
    std::cerr << "wafleet: topics apply: min.insync.replicas " << min_insync
              << " is more than the replication factor " << replication
              << " (every produce would fail)\n";
    return 1;
  }
  std::cout << "# brokers=" << brokers << " replication=" << replication
            << " min.insync.replicas=" << min_insync << "\n";
  std::vector<kafka::TopicRequest> reqs;
  for (const auto& t : topics::catalogue()) {
    reqs.push_back({t.name, t.partitions, static_cast<int16_t>(replication),
                    {{"retention.ms", std::to_string(t.retention_ms)},
                     {"cleanup.policy", t.cleanup_policy},
                     {"min.insync.replicas", std::to_string(min_insync)}}});
  }
  auto res = kafka::create_topics(kc, reqs, timeout);
  if (!res) {
    std::cerr << "wafleet: topics apply: " << res.error().message << "\n";
    return 1;
  }
  int failed = 0;
  for (const auto& o : *res) {
    std::string state = o.created ? "created" : o.existed ? "exists" : "FAILED: " + o.error;
    auto spec = topics::find(o.name);
    auto it = before->topics.find(o.name);
    if (o.existed && spec && it != before->topics.end()) {
      const auto partitions = static_cast<int32_t>(it->second.size());
      const auto have = health_of(it->second).replication;
      if (partitions != spec->partitions) {
        state = "exists with " + std::to_string(partitions) + " partitions, catalogue says " +
                std::to_string(spec->partitions) + " (not changed: repartitioning breaks keys)";
        ++failed;
      } else if (static_cast<int>(have) < replication) {
        state = "exists with replication " + std::to_string(have) + ", asked " +
                std::to_string(replication) +
                " (not changed: raise it with kafka-reassign-partitions)";
        ++failed;
      }
    }
    if (!o.created && !o.existed) {
      ++failed;
    }
    std::cout << o.name << "\t" << state << "\n";
  }
  if (failed > 0) {
    return 1;
  }
  // The controller has them; the brokers learn of them a moment later. Wait until every topic
  // has every partition with a leader, so what starts after this job finds them.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string waiting;
  do {
    waiting.clear();
    auto now = kafka::describe_cluster(kc, timeout);
    for (const auto& t : topics::catalogue()) {
      if (!now) {
        waiting = "every topic (" + now.error().message + ")";
        break;
      }
      auto it = now->topics.find(t.name);
      if (it == now->topics.end() || static_cast<int32_t>(it->second.size()) != t.partitions ||
          health_of(it->second).leaderless > 0) {
        waiting += (waiting.empty() ? "" : ", ") + t.name;
      }
    }
    if (waiting.empty()) {
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < deadline);
  std::cerr << "wafleet: topics apply: created, but after " << a.timeout_s
            << " s the cluster still shows no leader for: " << waiting << "\n";
  return 1;
}

int list(const TopicsArgs& a, const kafka::ClientConfig& kc) {
  auto cluster = kafka::describe_cluster(kc, std::chrono::seconds(a.timeout_s));
  if (!cluster) {
    std::cerr << "wafleet: " << cluster.error().message << "\n";
    return 1;
  }
  std::cout << "# brokers=" << cluster->brokers.size() << "\n";
  for (const auto& t : topics::catalogue()) {
    auto it = cluster->topics.find(t.name);
    std::cout << t.name << "\tcatalogue=" << t.partitions << "\tcluster=";
    if (it == cluster->topics.end()) {
      std::cout << "missing\n";
      continue;
    }
    const auto h = health_of(it->second);
    std::cout << it->second.size() << "\treplication=" << h.replication
              << "\tunder_replicated=" << h.under_replicated << "\tleaderless=" << h.leaderless
              << "\n";
  }
  return 0;
}

}  // namespace

int run_topics(const TopicsArgs& a, const kafka::ClientConfig& kc) {
  if (a.show->parsed()) {
    std::cout << topics::catalogue_json();
    return 0;
  }
  return a.apply->parsed() ? apply(a, kc) : list(a, kc);
}

}  // namespace wafleet::cli
