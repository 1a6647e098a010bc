// wafleet-devbroker: librdkafka's mock cluster as a local Kafka for `scripts/up` and quick
// tests. Creates every catalogue topic, writes its bootstrap address, runs until SIGTERM.
// Limits of librdkafka's mock cluster: memory only, ~5 MiB per partition, no admin API, no commit markers.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "common/config.h"
#include "common/kafka.h"
#include "common/log.h"
#include "common/runtime.h"
#include "topics/topics.h"

using namespace wafleet;

int main(int argc, char** argv) {
  runtime::block_shutdown_signals();
  std::vector<config::Option> opts = {
      {"bootstrap-file", "", "write the bootstrap address (127.0.0.1:PORT) here", false, false},
      {"brokers", "1", "number of mock brokers"},
      {"extra-topics", "", "comma-separated name:partitions to create besides the catalogue"},
      {"log-level", "info", "trace|debug|info|warn|error"},
  };
  std::vector<std::string> errors;
  auto s = config::load_args("wafleet-devbroker", opts, argc, argv, errors);
  const int64_t brokers = s.get_int("brokers", errors);
  if (brokers < 1 || brokers > 9) {
    errors.push_back("WAFLEET_BROKERS: must be 1..9");
  }
  config::exit_if_invalid("wafleet-devbroker", errors);
  log::init("devbroker", s.get("log-level"));
  auto cluster = kafka::MockCluster::create(static_cast<int>(brokers));
  if (!cluster) {
    std::cerr << "wafleet-devbroker: " << cluster.error().message << "\n";
    return 1;
  }
  for (const auto& t : topics::catalogue()) {
    if (auto st = (*cluster)->create_topic(t.name, t.partitions); !st) {
      std::cerr << "wafleet-devbroker: " << st.error().message << "\n";
      return 1;
    }
  }
  std::string extra = s.get("extra-topics");
  size_t pos = 0;
  while (!extra.empty() && pos != std::string::npos) {
    size_t comma = extra.find(',', pos);
    std::string item = extra.substr(pos, comma == std::string::npos ? comma : comma - pos);
    pos = comma == std::string::npos ? comma : comma + 1;
    auto colon = item.find(':');
    int parts = colon == std::string::npos ? 1 : std::atoi(item.c_str() + colon + 1);
    (void)(*cluster)->create_topic(item.substr(0, colon), parts > 0 ? parts : 1);
  }
  const std::string bootstrap = (*cluster)->bootstraps();
  if (const std::string file = s.get("bootstrap-file"); !file.empty()) {
    std::ofstream(file + ".tmp") << bootstrap << "\n";
    std::rename((file + ".tmp").c_str(), file.c_str());
  }
  log::info("devbroker.ready",
            {{"bootstrap", bootstrap}, {"topics", topics::catalogue().size()},
             {"brokers", brokers}});
  std::cout << bootstrap << std::endl;
  runtime::wait_for_shutdown_signal();
  log::info("devbroker.stopping");
  return 0;
}
