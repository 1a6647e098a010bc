#include "common/redis.h"

#include <hiredis/hiredis.h>

#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <string_view>

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
  const std::string cluster_scheme = "redis+cluster://";
  if (rest.rfind(cluster_scheme, 0) == 0) {
    o.cluster = true;
    rest = rest.substr(cluster_scheme.size());
  } else if (rest.rfind(scheme, 0) == 0) {
    rest = rest.substr(scheme.size());
  } else {
    return Unexpected(Error::invalid("redis url must start with redis:// or redis+cluster://, got '" +
                                     url + "'"));
  }
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
  if (!db.empty()) {
    try {
      o.db = std::stoi(db);
    } catch (const std::exception&) {
      return Unexpected(Error::invalid("redis url has a bad db number: '" + url + "'"));
    }
  }
  if (o.cluster && o.db != 0) {
    return Unexpected(Error::invalid("a Redis Cluster has only db 0: '" + url + "'"));
  }
  std::vector<std::string> hosts;
  for (size_t start = 0;;) {
    const size_t comma = rest.find(',', start);
    hosts.push_back(rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) {
      break;
    }
    start = comma + 1;
  }
  if (hosts.size() > 1 && !o.cluster) {
    return Unexpected(Error::invalid("several hosts need redis+cluster://, got '" + url + "'"));
  }
  for (const auto& h : hosts) {
    Node n{h, 6379};
    if (auto colon = h.rfind(':'); colon != std::string::npos) {
      n.host = h.substr(0, colon);
      try {
        n.port = std::stoi(h.substr(colon + 1));
      } catch (const std::exception&) {
        return Unexpected(Error::invalid("redis url has a bad port: '" + url + "'"));
      }
    }
    if (n.host.empty() || n.port <= 0 || n.port > 65535) {
      return Unexpected(Error::invalid("redis url needs host:port, got '" + url + "'"));
    }
    o.seeds.push_back(n);
  }
  o.host = o.seeds.front().host;
  o.port = o.seeds.front().port;
  return o;
}

uint16_t key_slot(const std::string& key) {
  std::string_view k = key;
  if (auto open = k.find('{'); open != std::string_view::npos) {
    if (auto close = k.find('}', open + 1); close != std::string_view::npos && close > open + 1) {
      k = k.substr(open + 1, close - open - 1);
    }
  }
  uint16_t crc = 0;  // CRC16-CCITT (XMODEM), as the cluster specification defines it
  for (unsigned char c : k) {
    crc ^= static_cast<uint16_t>(c) << 8;
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc % 16384;
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

struct RedisClient::Connection {
  Node node;
  redisContext* ctx = nullptr;
  ~Connection() { drop(); }
  void drop() {
    if (ctx != nullptr) {
      redisFree(ctx);
      ctx = nullptr;
    }
  }
  std::string name() const { return node.host + ":" + std::to_string(node.port); }
};

namespace {

std::string upper(std::string s) {
  for (auto& c : s) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return s;
}

// The key that decides where a command runs in a cluster; nullptr for keyless commands.
const std::string* first_key(const Command& c) {
  if (c.empty()) {
    return nullptr;
  }
  const std::string name = upper(c[0]);
  if (name == "EVAL" || name == "EVALSHA" || name == "EVAL_RO" || name == "EVALSHA_RO" || name == "FCALL") {
    return c.size() > 3 && c[2] != "0" ? &c[3] : nullptr;
  }
  if (name == "PING" || name == "SCRIPT" || name == "INFO" || name == "CLUSTER" || name == "ECHO") {
    return nullptr;
  }
  return c.size() > 1 ? &c[1] : nullptr;
}

// "MOVED 3999 127.0.0.1:6381" (or ASK): the slot and the node to ask.
std::optional<std::pair<int, Node>> redirect_of(const std::string& error, const std::string& kind) {
  if (error.rfind(kind + " ", 0) != 0) {
    return std::nullopt;
  }
  const size_t sp = error.find(' ', kind.size() + 1);
  const size_t colon = error.rfind(':');
  if (sp == std::string::npos || colon == std::string::npos || colon < sp) {
    return std::nullopt;
  }
  try {
    const int slot = std::stoi(error.substr(kind.size() + 1, sp - kind.size() - 1));
    return std::make_pair(slot, Node{error.substr(sp + 1, colon - sp - 1), std::stoi(error.substr(colon + 1))});
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

constexpr int kRedirectsPerCall = 5;

bool unavailable(const std::string& error) {
  for (const char* prefix : {"LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "MOVED", "ASK ", "BUSY "}) {
    if (error.rfind(prefix, 0) == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

RedisClient::RedisClient(Options options) : options_(std::move(options)) {
  if (!options_.cluster) {
    single_ = std::make_unique<Connection>();
    single_->node = {options_.host, options_.port};
  } else if (options_.seeds.empty()) {
    options_.seeds.push_back({options_.host, options_.port});
  }
}

RedisClient::~RedisClient() = default;

Status RedisClient::connect(Connection& conn) {
  if (conn.ctx != nullptr && conn.ctx->err == 0) {
    return {};
  }
  conn.drop();
  timeval tv = to_timeval(options_.connect_timeout);
  conn.ctx = redisConnectWithTimeout(conn.node.host.c_str(), conn.node.port, tv);
  if (conn.ctx == nullptr || conn.ctx->err != 0) {
    std::string reason = conn.ctx != nullptr ? conn.ctx->errstr : "allocation failed";
    conn.drop();
    return Unexpected(Error::transient("redis connect " + conn.name() + ": " + reason));
  }
  timeval ctv = to_timeval(options_.command_timeout);
  redisSetTimeout(conn.ctx, ctv);
  redisEnableKeepAlive(conn.ctx);
  auto run_setup = [&](const Command& c) -> Status {
    auto r = send(conn, {c});
    if (!r) {
      return Unexpected(r.error());
    }
    if (r->front().is_error()) {
      conn.drop();
      return Unexpected(Error::fatal("redis " + c[0] + ": " + r->front().str));
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

namespace {

// Queues one command in the context's output buffer (nothing is written yet).
bool append(redisContext* ctx, const Command& c) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : c) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return redisAppendCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data()) == REDIS_OK;
}

}  // namespace

Result<std::vector<Reply>> RedisClient::send(Connection& conn, const std::vector<Command>& commands) {
  for (const auto& c : commands) {
    if (!append(conn.ctx, c)) {
      std::string reason = conn.ctx->errstr;
      conn.drop();
      return Unexpected(Error::transient("redis append: " + reason));
    }
  }
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(conn.ctx, &raw) != REDIS_OK || raw == nullptr) {
      std::string reason = conn.ctx->errstr;
      conn.drop();  // the connection is out of step now; the next call reconnects
      return Unexpected(Error::transient("redis " + conn.name() + ": " + reason));
    }
    ReplyPtr reply(static_cast<redisReply*>(raw));
    replies.push_back(convert(reply.get()));
  }
  return replies;
}

RedisClient::Connection& RedisClient::connection(const Node& node) {
  for (auto& c : nodes_) {
    if (c->node.host == node.host && c->node.port == node.port) {
      return *c;
    }
  }
  nodes_.push_back(std::make_unique<Connection>());
  nodes_.back()->node = node;
  return *nodes_.back();
}

Status RedisClient::load_slots() {
  std::vector<Node> candidates = masters_;
  candidates.insert(candidates.end(), options_.seeds.begin(), options_.seeds.end());
  std::string last = "no node to ask";
  for (const auto& n : candidates) {
    Connection& conn = connection(n);
    if (auto s = connect(conn); !s) {
      last = s.error().message;
      continue;
    }
    auto r = send(conn, {{"CLUSTER", "SLOTS"}});
    if (!r) {
      last = r.error().message;
      continue;
    }
    const Reply& map = r->front();
    if (map.type != Reply::Type::kArray || map.elements.empty()) {
      last = conn.name() + " answered CLUSTER SLOTS with " + (map.is_error() ? map.str : "no slots");
      continue;
    }
    std::vector<Node> masters;
    std::vector<int> owner(16384, -1);
    for (const auto& range : map.elements) {
      if (range.elements.size() < 3 || range.elements[2].elements.size() < 2) {
        continue;
      }
      const auto& m = range.elements[2].elements;
      Node node{m[0].str.empty() || m[0].str == "?" ? n.host : m[0].str, static_cast<int>(m[1].integer)};
      int index = -1;
      for (size_t i = 0; i < masters.size(); ++i) {
        if (masters[i].host == node.host && masters[i].port == node.port) {
          index = static_cast<int>(i);
        }
      }
      if (index < 0) {
        masters.push_back(node);
        index = static_cast<int>(masters.size() - 1);
      }
      for (int64_t slot = range.elements[0].integer; slot <= range.elements[1].integer && slot < 16384; ++slot) {
        owner[static_cast<size_t>(slot)] = index;
      }
    }
    masters_ = std::move(masters);
    slot_master_ = std::move(owner);
    slots_stale_ = false;
    return {};
  }
  return Unexpected(Error::transient("redis cluster: no node gave the slot map (" + last + ")"));
}

Result<std::vector<Reply>> RedisClient::route(const std::vector<Command>& commands) {
  if (slots_stale_) {
    if (auto s = load_slots(); !s) {
      return Unexpected(s.error());
    }
  }
  std::vector<Reply> replies(commands.size());
  std::vector<size_t> pending(commands.size());
  for (size_t i = 0; i < pending.size(); ++i) {
    pending[i] = i;
  }
  std::map<size_t, Node> asked;  // command -> the node an ASK sent it to, for one try
  for (int round = 0; !pending.empty() && round <= kRedirectsPerCall; ++round) {
    struct Group {
      Connection* conn;
      std::vector<Command> commands;
      std::vector<long> index;  // command index per sent command; -1 for ASKING
    };
    std::vector<Group> groups;
    for (size_t i : pending) {
      Node target;
      auto a = asked.find(i);
      if (a != asked.end()) {
        target = a->second;
      } else {
        const std::string* key = first_key(commands[i]);
        const int m = slot_master_[key != nullptr ? key_slot(*key) : 0];
        if (m < 0) {
          slots_stale_ = true;
          return Unexpected(Error::transient("redis cluster: slot " +
                                             std::to_string(key != nullptr ? key_slot(*key) : 0) +
                                             " has no master"));
        }
        target = masters_[static_cast<size_t>(m)];
      }
      Connection* conn = &connection(target);
      auto g = std::find_if(groups.begin(), groups.end(), [&](const Group& x) { return x.conn == conn; });
      if (g == groups.end()) {
        groups.push_back({conn, {}, {}});
        g = groups.end() - 1;
      }
      if (a != asked.end()) {
        g->commands.push_back({"ASKING"});
        g->index.push_back(-1);
      }
      g->commands.push_back(commands[i]);
      g->index.push_back(static_cast<long>(i));
    }
    asked.clear();
    // A node that fails leaves the others' replies unread: every connection of this round is
    // dropped (out of step), and the map reloaded on the next call (a failover moves it).
    auto fail = [&](Connection& conn, const std::string& reason) {
      for (auto& g : groups) {
        g.conn->drop();
      }
      slots_stale_ = true;
      return Unexpected(Error::transient("redis " + conn.name() + ": " + reason));
    };
    for (auto& g : groups) {
      if (auto s = connect(*g.conn); !s) {
        return fail(*g.conn, s.error().message);
      }
    }
    // Every node's batch is written before any reply is read: the round trips overlap.
    for (auto& g : groups) {
      for (const auto& c : g.commands) {
        if (!append(g.conn->ctx, c)) {
          return fail(*g.conn, g.conn->ctx->errstr);
        }
      }
      for (int done = 0; done == 0;) {
        if (redisBufferWrite(g.conn->ctx, &done) != REDIS_OK) {
          return fail(*g.conn, g.conn->ctx->errstr);
        }
      }
    }
    std::vector<size_t> again;
    bool try_again = false;
    for (auto& g : groups) {
      for (long index : g.index) {
        void* raw = nullptr;
        if (redisGetReply(g.conn->ctx, &raw) != REDIS_OK || raw == nullptr) {
          return fail(*g.conn, g.conn->ctx->errstr);
        }
        ReplyPtr reply(static_cast<redisReply*>(raw));
        if (index < 0) {
          continue;  // ASKING's OK
        }
        const auto i = static_cast<size_t>(index);
        replies[i] = convert(reply.get());
        if (!replies[i].is_error()) {
          continue;
        }
        if (auto moved = redirect_of(replies[i].str, "MOVED")) {
          // The slot has a new owner: use it now, and reload the whole map on the next call.
          Connection& to = connection(moved->second);
          auto m = std::find_if(masters_.begin(), masters_.end(), [&](const Node& x) {
            return x.host == to.node.host && x.port == to.node.port;
          });
          if (m == masters_.end()) {
            masters_.push_back(to.node);
            m = masters_.end() - 1;
          }
          slot_master_[static_cast<size_t>(moved->first)] = static_cast<int>(m - masters_.begin());
          slots_stale_ = true;
          again.push_back(i);
        } else if (auto ask = redirect_of(replies[i].str, "ASK")) {
          asked[i] = ask->second;  // mid-migration: this key is on the importing node already
          again.push_back(i);
        } else if (replies[i].str.rfind("TRYAGAIN", 0) == 0) {
          again.push_back(i);  // a multi-key command while its slot migrates
          try_again = true;
        }
      }
    }
    if (try_again && round < kRedirectsPerCall) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10 * (round + 1)));
    }
    pending = std::move(again);
  }
  return replies;  // what is still a redirect after kRedirectsPerCall stays an error reply
}

Result<std::vector<Reply>> RedisClient::pipeline(const std::vector<Command>& commands,
                                                 const std::vector<const Script*>& scripts) {
  Result<std::vector<Reply>> first = [&]() -> Result<std::vector<Reply>> {
    if (options_.cluster) {
      return route(commands);
    }
    if (auto s = connect(*single_); !s) {
      return Unexpected(s.error());
    }
    return send(*single_, commands);
  }();
  if (!first) {
    return first;
  }
  std::vector<Reply> replies = std::move(*first);
  // NOSCRIPT: Redis restarted (or SCRIPT FLUSH). Load and run those commands again; they did
  // not execute, so repeating them is safe. A cluster loads the script on every master.
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
          if (auto loaded = load_script(s->source()); !loaded) {
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
  // Answers that say the server cannot answer now (loading its data after a restart, a cluster
  // slot without its master, a redirect still unresolved) fail the call as transient, like a
  // dropped connection: no caller mistakes them for a value.
  for (const auto& r : replies) {
    if (r.is_error() && unavailable(r.str)) {
      return Unexpected(Error::transient("redis: " + r.str));
    }
  }
  return replies;
}

Status RedisClient::on_every_node(const Command& command) {
  if (!options_.cluster) {
    auto r = command_on(*single_, command);
    return r ? Status{} : Unexpected(r.error());
  }
  if (slots_stale_) {
    if (auto s = load_slots(); !s) {
      return s;
    }
  }
  for (const auto& m : masters_) {
    if (auto r = command_on(connection(m), command); !r) {
      slots_stale_ = true;
      return Unexpected(r.error());
    }
  }
  return {};
}

Result<Reply> RedisClient::command_on(Connection& conn, const Command& command) {
  if (auto s = connect(conn); !s) {
    return Unexpected(s.error());
  }
  auto r = send(conn, {command});
  if (!r) {
    return Unexpected(r.error());
  }
  if (r->front().is_error()) {
    return Unexpected(Error::transient("redis " + conn.name() + " " + command[0] + ": " + r->front().str));
  }
  return std::move(r->front());
}

Status RedisClient::load_script(const std::string& source) { return on_every_node({"SCRIPT", "LOAD", source}); }

Result<Reply> RedisClient::eval(const Script& script, const std::vector<std::string>& keys,
                                const std::vector<std::string>& args) {
  auto r = pipeline({script.evalsha(keys, args)}, {&script});
  if (!r) {
    return Unexpected(r.error());
  }
  return std::move(r->front());
}

Status RedisClient::ping() {
  auto s = on_every_node({"PING"});
  if (!s) {
    return Unexpected(Error::transient("redis ping: " + s.error().message));
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
