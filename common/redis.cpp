#include "common/redis.h"

#include <hiredis/hiredis.h>

#include <sys/time.h>

#include "common/crypto.h"
#include "common/log.h"

namespace wafleet::redis {
namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) {
      freeReplyObject(r);
    }
  }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) {
        out.elements.push_back(convert(r->element[i]));
      }
      break;
    default:
      out.type = Reply::Type::kNil;
  }
  return out;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string sha1_hex(const std::string& s);

}  // namespace

Result<Options> parse_url(const std::string& url) {
  Options o;
  std::string rest = url;
  const std::string scheme = "redis://";
  if (rest.rfind(scheme, 0) != 0) {
    return Unexpected(Error::invalid("redis url must start with redis://, got '" + url + "'"));
  }
  rest = rest.substr(scheme.size());
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = auth.find(':');
    o.password = colon == std::string::npos ? auth : auth.substr(colon + 1);
  }
  std::string db;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    o.host = rest;
  } else {
    o.host = rest.substr(0, colon);
    try {
      o.port = std::stoi(rest.substr(colon + 1));
    } catch (const std::exception&) {
      return Unexpected(Error::invalid("redis url has a bad port: '" + url + "'"));
    }
  }
  if (o.host.empty() || o.port <= 0 || o.port > 65535) {
    return Unexpected(Error::invalid("redis url needs host:port, got '" + url + "'"));
  }
  if (!db.empty()) {
    try {
      o.db = std::stoi(db);
    } catch (const std::exception&) {
      return Unexpected(Error::invalid("redis url has a bad db number: '" + url + "'"));
    }
  }
  return o;
}

Script::Script(std::string source) : source_(std::move(source)) {
  // SHA1 of the source is what EVALSHA wants; computed with OpenSSL via crypto helpers.
  sha1_ = sha1_hex(source_);
}

Command Script::evalsha(const std::vector<std::string>& keys,
                        const std::vector<std::string>& args) const {
  Command c;
  c.reserve(3 + keys.size() + args.size());
  c.push_back("EVALSHA");
  c.push_back(sha1_);
  c.push_back(std::to_string(keys.size()));
  c.insert(c.end(), keys.begin(), keys.end());
  c.insert(c.end(), args.begin(), args.end());
  return c;
}

RedisClient::RedisClient(Options options) : options_(std::move(options)) {}

RedisClient::~RedisClient() { drop(); }

void RedisClient::drop() {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
}

Status RedisClient::ensure_connected() {
  if (ctx_ != nullptr && ctx_->err == 0) {
    return {};
  }
  drop();
  timeval tv = to_timeval(options_.connect_timeout);
  ctx_ = redisConnectWithTimeout(options_.host.c_str(), options_.port, tv);
  if (ctx_ == nullptr || ctx_->err != 0) {
    std::string reason = ctx_ != nullptr ? ctx_->errstr : "allocation failed";
    drop();
    return Unexpected(Error::transient("redis connect " + options_.host + ":" +
                                       std::to_string(options_.port) + ": " + reason));
  }
  timeval ctv = to_timeval(options_.command_timeout);
  redisSetTimeout(ctx_, ctv);
  redisEnableKeepAlive(ctx_);
  auto run_setup = [&](const Command& c) -> Status {
    auto r = command(c);
    if (!r) {
      return Unexpected(r.error());
    }
    if (r->is_error()) {
      drop();
      return Unexpected(Error::fatal("redis " + c[0] + ": " + r->str));
    }
    return {};
  };
  if (!options_.password.empty()) {
    if (auto s = run_setup({"AUTH", options_.password}); !s) {
      return s;
    }
  }
  if (options_.db != 0) {
    if (auto s = run_setup({"SELECT", std::to_string(options_.db)}); !s) {
      return s;
    }
  }
  return {};
}

Result<Reply> RedisClient::command(const Command& argv) {
  auto r = pipeline({argv});
  if (!r) {
    return Unexpected(r.error());
  }
  return std::move(r->front());
}

Status RedisClient::pipeline_ok(const std::vector<Command>& commands) {
  if (commands.empty()) {
    return {};
  }
  auto r = pipeline(commands);
  if (!r) {
    return Unexpected(r.error());
  }
  for (const auto& reply : *r) {
    if (reply.is_error()) {
      return Unexpected(Error::transient("redis: " + reply.str));
    }
  }
  return {};
}

Result<std::vector<Reply>> RedisClient::pipeline(const std::vector<Command>& commands,
                                                 const std::vector<const Script*>& scripts) {
  if (auto s = ensure_connected(); !s) {
    return Unexpected(s.error());
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& c : commands) {
    argv.clear();
    lens.clear();
    for (const auto& a : c) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
      std::string reason = ctx_->errstr;
      drop();
      return Unexpected(Error::transient("redis append: " + reason));
    }
  }
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
      std::string reason = ctx_->errstr;
      drop();  // the connection is out of step now; the next call reconnects
      return Unexpected(Error::transient("redis: " + reason));
    }
    ReplyPtr reply(static_cast<redisReply*>(raw));
    replies.push_back(convert(reply.get()));
  }
  // NOSCRIPT: Redis restarted (or SCRIPT FLUSH). Load and run those commands again; they did
  // not execute, so repeating them is safe.
  std::vector<size_t> retry;
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i].is_error() && replies[i].str.rfind("NOSCRIPT", 0) == 0) {
      retry.push_back(i);
    }
  }
  if (!retry.empty()) {
    std::vector<Command> again;
    for (size_t i : retry) {
      const std::string& sha = commands[i].size() > 1 ? commands[i][1] : std::string{};
      for (const Script* s : scripts) {
        if (s->sha1() == sha) {
          auto loaded = command({"SCRIPT", "LOAD", s->source()});
          if (!loaded) {
            return Unexpected(loaded.error());
          }
        }
      }
      again.push_back(commands[i]);
    }
    auto second = pipeline(again, {});
    if (!second) {
      return Unexpected(second.error());
    }
    for (size_t k = 0; k < retry.size(); ++k) {
      replies[retry[k]] = std::move((*second)[k]);
    }
  }
  return replies;
}

Result<Reply> RedisClient::eval(const Script& script, const std::vector<std::string>& keys,
                                const std::vector<std::string>& args) {
  auto r = pipeline({script.evalsha(keys, args)}, {&script});
  if (!r) {
    return Unexpected(r.error());
  }
  return std::move(r->front());
}

Status RedisClient::ping() {
  auto r = command({"PING"});
  if (!r) {
    return Unexpected(r.error());
  }
  if (r->is_error()) {
    return Unexpected(Error::transient("redis ping: " + r->str));
  }
  return {};
}

RedisPipeline::RedisPipeline(Options options, std::vector<const Script*> scripts)
    : client_(std::move(options)), scripts_(std::move(scripts)) {
  thread_ = std::thread([this] { run(); });
}

RedisPipeline::~RedisPipeline() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void RedisPipeline::submit(std::vector<Command> commands, PipelineCallback callback) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back({std::move(commands), std::move(callback)});
  }
  cv_.notify_one();
}

void RedisPipeline::run() {
  std::deque<Job> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty() && stop_) {
        return;
      }
      batch.swap(queue_);
    }
    std::vector<Command> all;
    for (auto& job : batch) {
      for (auto& c : job.commands) {
        all.push_back(std::move(c));
      }
    }
    auto result = client_.pipeline(all, scripts_);
    healthy_ = result.has_value();
    if (!result) {
      log::warn("redis.pipeline_failed", {{"reason", result.error().message},
                                          {"jobs", batch.size()}});
    }
    size_t pos = 0;
    for (auto& job : batch) {
      const size_t n = job.commands.size();
      if (!result) {
        job.callback(Unexpected(result.error()));
      } else {
        std::vector<Reply> mine(std::make_move_iterator(result->begin() + static_cast<long>(pos)),
                                std::make_move_iterator(result->begin() +
                                                        static_cast<long>(pos + n)));
        job.callback(std::move(mine));
      }
      pos += n;
    }
    batch.clear();
  }
}

namespace {
std::string sha1_hex(const std::string& s) { return crypto::sha1_hex(s); }
}  // namespace

}  // namespace wafleet::redis
