#pragma once
// hiredis behind RAII (STYLE.md §5). hiredis 0.14: no RESP3, no redisConnectWithOptions.
//
// RedisClient: one connection, synchronous, with connect/command timeouts and reconnect on the
// next call after an I/O error. Not thread-safe: one per thread, or use RedisPipeline.
// RedisPipeline: a thread that owns a RedisClient and sends every job queued by other threads
// meanwhile in ONE pipelined round trip (Redis round trips decide throughput).
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

struct Options {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string password;
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{1000};
};

// redis://[[user]:password@]host:port[/db]
Result<Options> parse_url(const std::string& url);

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
  // Any EVALSHA answered NOSCRIPT is retried after SCRIPT LOAD of the matching script.
  Result<std::vector<Reply>> pipeline(const std::vector<Command>& commands,
                                      const std::vector<const Script*>& scripts = {});
  // The same, for writes whose replies do not matter: an error reply of any one is the error.
  Status pipeline_ok(const std::vector<Command>& commands);
  Result<Reply> eval(const Script& script, const std::vector<std::string>& keys,
                     const std::vector<std::string>& args);
  Status ping();

 private:
  Status ensure_connected();
  void drop();
  Options options_;
  redisContext* ctx_ = nullptr;
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
