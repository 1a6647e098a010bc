#include "tests/support/services.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/http_client.h"
#include "topics/topics.h"

namespace wafleet::test {

uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string read_trimmed(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

int run_command(const std::string& cmd, std::string& out) {
  out.clear();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    return -1;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::string temp_dir(const std::string& prefix) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  return buf.data();
}

Process::Process(const std::string& binary, const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env, const std::string& log_path)
    : log_path_(log_path) {
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    // A fresh signal mask: the test process may block signals.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const auto& [k, v] : env) {
      setenv(k.c_str(), v.c_str(), 1);
    }
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (const auto& a : args) {
      argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    execvp(binary.c_str(), argv.data());
    _exit(127);
  }
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    stop(std::chrono::milliseconds(5000));
  }
}

bool Process::running() {
  if (reaped_) {
    return false;
  }
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int Process::stop(std::chrono::milliseconds timeout) {
  if (reaped_ || pid_ <= 0) {
    return exit_code_;
  }
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) {
      return exit_code_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill9();
  return -1;
}

void Process::kill9() {
  if (reaped_ || pid_ <= 0) {
    return;
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  reaped_ = true;
  exit_code_ = 128 + SIGKILL;
}

std::string Process::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RedisServer::RedisServer(bool append_only) : append_only_(append_only) {
  dir_ = temp_dir("wafleet-redis");
  port_ = free_port();
  start();
}

void RedisServer::restart() {
  process_->stop();
  start();
}

void RedisServer::start() {
  process_ = std::make_unique<Process>(
      "redis-server",
      std::vector<std::string>{"--port", std::to_string(port_), "--bind", "127.0.0.1", "--dir",
                               dir_, "--save", "", "--appendonly", append_only_ ? "yes" : "no",
                               "--appendfsync", "everysec", "--daemonize", "no"},
      std::map<std::string, std::string>{}, dir_ + "/redis.log");
  redis::RedisClient client(options());
  bool up = eventually([&] { return client.ping().has_value(); }, std::chrono::seconds(10));
  if (!up) {
    ADD_FAILURE() << "redis-server did not start: " << process_->log();
  }
}

RedisServer::~RedisServer() {
  process_->stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

RedisCluster::RedisCluster(bool append_only) : append_only_(append_only) {
  dir_ = temp_dir("wafleet-redis-cluster");
  for (size_t i = 0; i < 3; ++i) {
    ports_.push_back(free_port());
    bus_ports_.push_back(free_port());
    processes_.emplace_back();
    start(i);
  }
  std::vector<std::unique_ptr<redis::RedisClient>> nodes;
  for (size_t i = 0; i < ports_.size(); ++i) {
    nodes.push_back(std::make_unique<redis::RedisClient>(node(i)));
    if (!eventually([&] { return nodes[i]->ping().has_value(); }, std::chrono::seconds(10))) {
      ADD_FAILURE() << "redis-server (cluster mode) did not start: " << processes_[i]->log();
      return;
    }
  }
  // Three even slot ranges, then every node meets the first: the cluster forms by gossip.
  for (size_t i = 0; i < ports_.size(); ++i) {
    const size_t from = 16384 * i / ports_.size(), to = 16384 * (i + 1) / ports_.size() - 1;
    auto r = nodes[i]->command({"CLUSTER", "ADDSLOTSRANGE", std::to_string(from), std::to_string(to)});
    EXPECT_TRUE(r && !r->is_error()) << (r ? r->str : r.error().message);
    if (i > 0) {
      auto m = nodes[i]->command(
          {"CLUSTER", "MEET", "127.0.0.1", std::to_string(ports_[0]), std::to_string(bus_ports_[0])});
      EXPECT_TRUE(m && !m->is_error()) << (m ? m->str : m.error().message);
    }
  }
  const bool ok = eventually(
      [&] {
        for (size_t i = 0; i < ports_.size(); ++i) {
          if (!serving(i)) {
            return false;
          }
        }
        return true;
      },
      std::chrono::seconds(20));
  if (!ok) {
    ADD_FAILURE() << "the Redis Cluster did not form: " << processes_[0]->log();
  }
}

void RedisCluster::start(size_t i) {
  const std::string port = std::to_string(ports_[i]);
  processes_[i] = std::make_unique<Process>(
      "redis-server",
      std::vector<std::string>{"--port", port, "--bind", "127.0.0.1", "--dir", dir_, "--save", "",
                               "--appendonly", append_only_ ? "yes" : "no", "--appendfsync", "everysec",
                               "--appendfilename", "appendonly-" + port + ".aof", "--appenddirname",
                               "aof-" + port, "--cluster-enabled", "yes", "--cluster-config-file",
                               "nodes-" + port + ".conf", "--cluster-node-timeout", "2000", "--daemonize", "no",
                               // not port + 10000, the default: free ports go past 55535
                               "--cluster-port", std::to_string(bus_ports_[i])},
      std::map<std::string, std::string>{}, dir_ + "/redis-" + port + ".log");
}

bool RedisCluster::serving(size_t i) const {
  redis::RedisClient c(node(i));
  auto info = c.command({"CLUSTER", "INFO"});
  return info && info->str.find("cluster_state:ok") != std::string::npos &&
         info->str.find("cluster_known_nodes:" + std::to_string(ports_.size())) != std::string::npos;
}

void RedisCluster::stop(size_t i) { processes_.at(i)->stop(); }

void RedisCluster::restart(size_t i) {
  stop(i);
  start(i);
  if (!eventually([&] { return serving(i); }, std::chrono::seconds(20))) {
    ADD_FAILURE() << "Redis Cluster node " << i << " did not come back: " << processes_[i]->log();
  }
}

RedisCluster::~RedisCluster() {
  for (auto& p : processes_) {
    p->stop();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string RedisCluster::url() const {
  std::string u = "redis+cluster://";
  for (size_t i = 0; i < ports_.size(); ++i) {
    u += (i > 0 ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(ports_[i]);
  }
  return u;
}

redis::Options RedisCluster::node(size_t i) const {
  redis::Options o;
  o.port = ports_.at(i);
  return o;
}

std::string RedisCluster::node_id(size_t i) const {
  redis::RedisClient c(node(i));
  auto r = c.command({"CLUSTER", "MYID"});
  return r ? r->str : "";
}

PostgresServer::PostgresServer() {
  dir_ = temp_dir("wafleet-pg");
  port_ = free_port();
  start();
}

PostgresServer::~PostgresServer() {
  stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void PostgresServer::start() {
  std::string out;
  const int rc = run_command(std::string(WAFLEET_SOURCE_DIR) + "/scripts/postgres start " + dir_ +
                                 "/data " + std::to_string(port_) + " --fast",
                             out);
  if (rc != 0) {
    ADD_FAILURE() << "PostgreSQL did not start: " << out;
  }
}

void PostgresServer::stop() {
  std::string out;
  (void)run_command(std::string(WAFLEET_SOURCE_DIR) + "/scripts/postgres stop " + dir_ + "/data", out);
}

std::string PostgresServer::url(const std::string& database) const {
  return "postgresql://wafleet@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string PostgresServer::fresh_database(const std::string& name) {
  std::string out;
  const std::string psql = "psql -qAt -v ON_ERROR_STOP=1 '" + url("postgres") + "' -c ";
  if (run_command(psql + "'DROP DATABASE IF EXISTS " + name + " WITH (FORCE)'", out) != 0 ||
      run_command(psql + "'CREATE DATABASE " + name + "'", out) != 0) {
    ADD_FAILURE() << "cannot create database " << name << ": " << out;
  }
  return url(name);
}

redis::Options RedisServer::options() const {
  redis::Options o;
  o.port = port_;
  return o;
}

void RedisServer::flush_all() {
  redis::RedisClient client(options());
  (void)client.command({"FLUSHALL"});
}

const KafkaEnv& kafka_env() {
  static KafkaEnv env = [] {
    KafkaEnv e;
    const char* apache = std::getenv("WAFLEET_TEST_KAFKA_BROKERS");
    if (apache != nullptr && *apache != '\0') {
      e.brokers = apache;
      e.apache = true;
      std::vector<kafka::TopicRequest> reqs;
      for (const auto& t : topics::catalogue()) {
        reqs.push_back({t.name, t.partitions, 1, {}});
      }
      auto res = kafka::create_topics({e.brokers, "wafleet-test", {}}, reqs,
                                      std::chrono::seconds(30));
      if (!res) {
        ADD_FAILURE() << "cannot create topics on Apache Kafka: " << res.error().message;
      }
      return e;
    }
    static auto mock = kafka::MockCluster::create(1);
    if (!mock) {
      ADD_FAILURE() << "mock cluster: " << mock.error().message;
      return e;
    }
    for (const auto& t : topics::catalogue()) {
      (void)(*mock)->create_topic(t.name, t.partitions);
    }
    e.mock = mock->get();
    e.brokers = (*mock)->bootstraps();
    return e;
  }();
  return env;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return pred();
}

bool wait_ready(const std::string& port_file, std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        const std::string port = read_trimmed(port_file);
        if (port.empty()) {
          return false;
        }
        auto r = http::fetch("GET", "http://127.0.0.1:" + port + "/readyz", {}, "",
                             std::chrono::seconds(2));
        return r && r->status == 200;
      },
      timeout);
}

std::vector<kafka::Record> consume_until(
    const std::string& brokers, const std::vector<std::string>& topics,
    const std::function<bool(const std::vector<kafka::Record>&)>& done,
    std::chrono::milliseconds timeout) {
  kafka::ConsumerOptions co;
  co.group_id = "test-" + crypto::random_hex(8);
  co.topics = topics;
  auto consumer = kafka::Consumer::create({brokers, "wafleet-test", {}}, co);
  std::vector<kafka::Record> out;
  if (!consumer) {
    ADD_FAILURE() << consumer.error().message;
    return out;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline && !done(out)) {
    auto r = (*consumer)->poll(std::chrono::milliseconds(100));
    if (r && *r) {
      out.push_back(std::move(**r));
    }
  }
  (*consumer)->close(std::chrono::seconds(5));
  return out;
}

}  // namespace wafleet::test
