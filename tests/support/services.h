#pragma once
// Real services for integration and e2e tests: a redis-server of its own per test binary,
// Kafka (Apache Kafka when WAFLEET_TEST_KAFKA_BROKERS is set, as scripts/test does in CI; else
// an in-process librdkafka mock cluster serving TCP), and child processes for the binaries.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/kafka.h"
#include "common/redis.h"

namespace wafleet::test {

uint16_t free_port();
// A small file's text without trailing newlines/spaces ("" if missing).
std::string read_trimmed(const std::string& path);
// Runs a shell command to completion; its stdout+stderr in out; returns the exit code.
int run_command(const std::string& cmd, std::string& out);
std::string temp_dir(const std::string& prefix);
// Writes bytes to path (binary), failing the test if it cannot.
void write_file(const std::string& path, const std::string& bytes);

// A child process with its output in a log file; SIGTERM then SIGKILL on destruction.
class Process {
 public:
  Process(const std::string& binary, const std::vector<std::string>& args,
          const std::map<std::string, std::string>& env, const std::string& log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  pid_t pid() const { return pid_; }
  bool running();
  // SIGTERM, wait up to timeout; returns the exit code (or 128+signal), -1 if it had to be killed.
  int stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  void kill9();
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  int exit_code_ = -1;
  bool reaped_ = false;
};

class RedisServer {
 public:
  // Starts redis-server on a free port, waits for PING. append_only: AOF on (everysec), kept
  // across restart(), as production runs it.
  explicit RedisServer(bool append_only = false);
  ~RedisServer();
  uint16_t port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  redis::Options options() const;
  void flush_all();
  void stop() { process_->stop(); }
  // Stops (SIGTERM) and starts again on the same port: nothing kept unless append_only.
  void restart();

 private:
  void start();
  uint16_t port_ = 0;
  bool append_only_ = false;
  std::string dir_;
  std::unique_ptr<Process> process_;
};

// A Redis Cluster of three masters on free ports (redis-server in cluster mode, no replicas),
// slots split in three even ranges; url() is the redis+cluster:// URL of all three.
class RedisCluster {
 public:
  // append_only: AOF on (everysec), kept across restart(), as production runs it.
  explicit RedisCluster(bool append_only = false);
  ~RedisCluster();
  // Stops node i (SIGTERM) and starts it again on its ports with its cluster config: it comes
  // back as the same master of the same slots; its keys only if append_only.
  void restart(size_t i);
  void stop(size_t i);   // SIGTERM; start(i) brings it back
  void start(size_t i);
  std::string url() const;
  size_t size() const { return ports_.size(); }
  // A plain (non-cluster) connection to one node, for looking behind the client's back.
  redis::Options node(size_t i) const;
  std::string node_id(size_t i) const;

 private:
  std::string dir_;
  std::vector<uint16_t> ports_;
  bool serving(size_t i) const;  // answers PING and sees the whole cluster ok
  bool append_only_ = false;
  std::vector<uint16_t> bus_ports_;  // the cluster bus of each node
  std::vector<std::unique_ptr<Process>> processes_;
};

// A PostgreSQL cluster of its own (scripts/postgres: initdb + pg_ctl, fsync off), one per
// test binary that needs it; each test takes a fresh database from it.
class PostgresServer {
 public:
  PostgresServer();  // starts it on a free port (about 1.5 s)
  ~PostgresServer();
  uint16_t port() const { return port_; }
  // postgresql://wafleet@127.0.0.1:<port>/<database>
  std::string url(const std::string& database = "wafleet") const;
  // Creates an empty database (dropping one of that name) and returns its URL.
  std::string fresh_database(const std::string& name);
  void stop();
  void start();

 private:
  uint16_t port_ = 0;
  std::string dir_;
};

// The Kafka the tests talk to. mock() is null when it is Apache Kafka.
struct KafkaEnv {
  std::string brokers;
  kafka::MockCluster* mock = nullptr;
  bool apache = false;
};
// Process-wide; catalogue topics exist on it.
const KafkaEnv& kafka_env();

// Waits until pred() is true or the timeout passes.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));

// Waits until the worker whose admin port is written to port_file answers /readyz with 200
// (a consuming worker is ready once it holds partitions: on the dev broker a first group join
// takes 3-10 s). False on timeout.
bool wait_ready(const std::string& port_file,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

// Reads records from topics with a fresh group until pred(records) holds or timeout.
std::vector<kafka::Record> consume_until(
    const std::string& brokers, const std::vector<std::string>& topics,
    const std::function<bool(const std::vector<kafka::Record>&)>& done,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

}  // namespace wafleet::test
