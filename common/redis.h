#pragma once
// hiredis behind RAII (STYLE.md §5). hiredis 0.14: no RESP3, no redisConnectWithOptions.
//
// RedisClient: one connection (one per node of a Redis Cluster), synchronous, with
// connect/command timeouts and reconnect on the next call after an I/O error. Not thread-safe:
// one per thread, or use RedisPipeline.
// Redis Cluster (redis+cluster:// URLs): each command goes to the node owning its first key's
// slot (a key's {hash tag} decides it; every key of one command or script must share a slot),
// one pipelined round trip per node, all nodes at once. MOVED updates the slot map and sends
// the command again; ASK sends it once to the importing node; TRYAGAIN waits and retries; an
// I/O error reloads the slot map on the next call (a failover).
// RedisPipeline: a thread that owns a RedisClient and sends every job queued by other threads
// meanwhile in ONE pipelined round trip (Redis round trips decide throughput).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"

struct redisContext;

namespace wafleet::redis {

struct Node {
  std::string host;
  int port = 0;
};

struct Options {
  std::string host = "127.0.0.1";  // the server, or a cluster's first seed node
  int port = 6379;
  bool cluster = false;
  std::vector<Node> seeds;  // cluster: every node of the URL
  int db = 0;
  std::string password;
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{1000};
};

// redis://[[user]:password@]host:port[/db]
// redis+cluster://[[user]:password@]host:port[,host:port...]   (a Redis Cluster; db 0 only)
Result<Options> parse_url(const std::string& url);

// The cluster slot (0..16383) of a key: CRC16 of its {hash tag} if it has one, else of it all.
uint16_t key_slot(const std::string& key);

struct Reply {
  enum class Type { kNil, kString, kStatus, kInteger, kArray, kError };
  Type type = Type::kNil;
  std::string str;  // string, status or error text
  int64_t integer = 0;
  std::vector<Reply> elements;

  bool is_error() const { return type == Type::kError; }
  bool is_nil() const { return type == Type::kNil; }
};

using Command = std::vector<std::string>;

// A Lua script run by EVALSHA, loaded again when Redis answers NOSCRIPT (after a restart).
class Script {
 public:
  explicit Script(std::string source);
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }
  // EVALSHA command for these keys and args.
  Command evalsha(const std::vector<std::string>& keys, const std::vector<std::string>& args) const;

 private:
  std::string source_;
  std::string sha1_;
};

class RedisClient {
 public:
  explicit RedisClient(Options options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  Result<Reply> command(const Command& argv);
  // All commands in one round trip; per-command Redis errors come back as Reply::kError.
  // Any EVALSHA answered NOSCRIPT is retried after SCRIPT LOAD of the matching script. An
  // answer that says the server cannot answer now (LOADING, CLUSTERDOWN, MASTERDOWN, BUSY, a
  // redirect still unresolved) fails the whole call as transient, like a dropped connection.
  Result<std::vector<Reply>> pipeline(const std::vector<Command>& commands,
                                      const std::vector<const Script*>& scripts = {});
  // The same, for writes whose replies do not matter: an error reply of any one is the error.
  Status pipeline_ok(const std::vector<Command>& commands);
  Result<Reply> eval(const Script& script, const std::vector<std::string>& keys,
                     const std::vector<std::string>& args);
  // Every node answers PING (a cluster: every master of the slot map).
  Status ping();

 private:
  struct Connection;
  // One round trip: every command on `conn`, replies in order (Redis errors as kError).
  Result<std::vector<Reply>> send(Connection& conn, const std::vector<Command>& commands);
  Result<std::vector<Reply>> route(const std::vector<Command>& commands);
  // One command on one node (an error reply is the error); on_every_node: on every master.
  Result<Reply> command_on(Connection& conn, const Command& command);
  Status on_every_node(const Command& command);
  Status load_script(const std::string& source);
  Status load_slots();
  Connection& connection(const Node& node);
  Status connect(Connection& conn);
  Options options_;
  std::unique_ptr<Connection> single_;
  // Cluster: connections by "host:port", and the slot map (index into masters_, -1 unknown).
  std::vector<std::unique_ptr<Connection>> nodes_;
  std::vector<Node> masters_;
  std::vector<int> slot_master_;
  bool slots_stale_ = true;
};

using PipelineCallback = std::function<void(Result<std::vector<Reply>>)>;

class RedisPipeline {
 public:
  RedisPipeline(Options options, std::vector<const Script*> scripts);
  ~RedisPipeline();  // drains: queued jobs still run or fail, callbacks always called
  RedisPipeline(const RedisPipeline&) = delete;
  RedisPipeline& operator=(const RedisPipeline&) = delete;

  // Queues commands; callback runs on the pipeline thread with their replies, in order.
  void submit(std::vector<Command> commands, PipelineCallback callback);
  bool healthy() const { return healthy_.load(); }

 private:
  struct Job {
    std::vector<Command> commands;
    PipelineCallback callback;
  };
  void run();

  RedisClient client_;
  std::vector<const Script*> scripts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stop_ = false;
  std::atomic<bool> healthy_{true};
  std::thread thread_;
};

}  // namespace wafleet::redis
