#include "workers/api/worker.h"

#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <prometheus/counter.h>

#include "common/clock.h"
#include "common/consumer_loop.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/pg.h"
#include "topics/topics.h"
#include "workers/api/contacts.h"
#include "workers/media/worker.h"  // the S3 settings
#include "workers/replay/replay.h"

namespace wafleet::api {

namespace {

std::vector<config::Option> own_options() {
  std::vector<config::Option> o = {
      {"listen", "127.0.0.1:8081", "API listener host:port (port 0 picks a free one)"},
      {"port-file", "", "write the bound API port here once listening"},
      {"database-url", "", "PostgreSQL of the record (postgresql://user:password@host:port/db)", true, true},
      {"api-keys-file", "", "lines '<name> <sha256 hex of the key>'", false, true},
      {"http-threads", "2", "HTTP I/O threads"},
      {"db-connections", "4", "requests answered at once, one database connection each"},
      {"rate", "50", "requests per second per API key"},
      {"burst", "100", "requests a key may make at once"},
      {"body-limit", "262144", "largest request body in bytes"},
      {"suppression-salt", "", "salt of the hashed opt-outs kept after erasure (the sender's "
                               "and wafleet forget's); unset: DELETE /v1/people answers 501", true, false},
      {"portfolio-id", "default", "the business portfolio whose 24-hour reach an erased person leaves"},
      {"bulk-body-limit", "33554432", "largest POST /v1/bulk/jobs body (the recipient list) in bytes"},
      {"number-rate", "70", "messages/s per number, for a bulk job's time estimate (the sender's)"},
      {"portfolio-daily-limit", "250", "people per rolling 24 hours, for the estimate (the bulk "
                                      "worker's; 0 or unlimited: none)"},
      {"dlq-stats-cache-ms", "10000", "GET /v1/dlq/stats reads the dead-letter topics at most this often"},
      {"media-link-secret", "", "signs the expiring media links (set the same on every replica; "
                                "unset: a random one, links good for this process only)", true, false},
      {"media-link-ttl-s", "3600", "how long a media link is good for"},
  };
  auto s3 = media::s3_options();  // s3:// media are answered with presigned URLs
  o.insert(o.end(), s3.begin(), s3.end());
  return o;
}

// Requests wait here for one of the threads that own a database connection each.
class ApiCore : public worker::Core {
 public:
  ApiCore(worker::Context& ctx, const WorkerConfig& c)
      : c_(c),
        api_(c.keys, c.limits,
             [&ctx](const std::string& key, const std::string& value) {
               return kafka::produce_and_wait(ctx.producer(), topics::kOutbound, key, value);
             }),
        redis_options_(ctx.redis_options()),
        requests_(prometheus::BuildCounter()
                      .Name("wafleet_api_requests_total")
                      .Help("API requests answered, by status code")
                      .Register(ctx.metrics())),
        server_(server_options(c), [this](http::Request&& req, http::Responder respond) {
          enqueue(std::move(req), std::move(respond));
        }) {
    if (!c.suppression_salt.empty()) {
      Erasure e;
      e.options.salt = c.suppression_salt;
      e.options.portfolios = {c.portfolio_id};
      e.audit = [&ctx](const std::string& key, const std::string& value) {
        return kafka::produce_and_wait(ctx.producer(), topics::kPrivacyAudit, key, value);
      };
      api_.enable_erasure(std::move(e));
    }
    api_.enable_bulk(BulkJobs{c.pacing, &ctx.producer()});
    api_.set_media_links(c.links);
    const kafka::ClientConfig kc = ctx.kafka_config();
    const auto cache_ms = std::chrono::milliseconds(c.dlq_stats_cache_ms);
    api_.enable_dlq_stats([this, kc, cache_ms]() -> Result<nlohmann::json> {
      std::lock_guard lock(dlq_mu_);
      const auto now = std::chrono::steady_clock::now();
      if (dlq_cached_ && now - dlq_at_ < cache_ms) {
        return *dlq_cached_;
      }
      nlohmann::json out = nlohmann::json::object();
      for (const char* topic : {topics::kDlq, topics::kDlqParked}) {
        auto scan = replay::scan(kc, topic, std::chrono::seconds(10));
        if (!scan) {
          return Unexpected(scan.error());
        }
        out[topic] = replay::stats(*scan, replay::Filter{}, wall_clock_ms());
      }
      out["at_ms"] = wall_clock_ms();
      dlq_cached_ = out;
      dlq_at_ = now;
      return out;
    });
  }

  Status run(worker::Context& ctx) override {
    mirror_contacts();
    for (int i = 0; i < c_.db_connections; ++i) {
      threads_.emplace_back([this] { serve(); });
    }
    if (Status st = server_.start(); !st) {
      stop_threads();
      return Unexpected(Error::fatal("listen " + c_.listen.host + ":" + std::to_string(c_.listen.port) +
                                     ": " + st.error().message));
    }
    config::write_port_file(ctx.settings().get("port-file"), server_.port());
    log::info("api.listening", {{"listen", c_.listen.host + ":" + std::to_string(server_.port())},
                                {"keys", c_.keys.size()}});
    ctx.wait_for_stop();
    server_.stop(std::chrono::milliseconds(5000));
    stop_threads();
    return {};
  }

  Probe ready() override {
    if (connected_.load() == 0) {
      return {false, "postgres: no connection"};
    }
    return {};
  }

 private:
  static http::ServerOptions server_options(const WorkerConfig& c) {
    http::ServerOptions so;
    so.host = c.listen.host;
    so.port = c.listen.port;
    so.threads = c.http_threads;
    so.body_limit = std::max(c.limits.max_body_bytes, c.limits.max_bulk_body_bytes) + 1024;
    so.server_name = "wafleet-api";
    return so;
  }

  // The contacts' flags into Redis for the sender (allowlist mode, opt-in): a Redis that lost
  // them gets them back with a restart of the API.
  void mirror_contacts() {
    pg::Options o;
    o.url = c_.database_url;
    o.application_name = "wafleet-api";
    auto db = pg::Connection::connect(o);
    redis::RedisClient redis(redis_options_);
    auto n = db ? mirror_all(**db, redis) : Result<int64_t>(Unexpected(db.error()));
    if (!n) {
      log::warn("api.contacts_not_mirrored", {{"error", n.error().message}});
      return;
    }
    log::info("api.contacts_mirrored", {{"contacts", *n}});
  }

  void enqueue(http::Request&& req, http::Responder respond) {
    std::unique_lock lock(mu_);
    if (queue_.size() >= static_cast<size_t>(c_.queue_max)) {
      lock.unlock();
      requests_.Add({{"code", "503"}}).Increment();
      respond(error_response(req, 503, "overloaded", "too many requests waiting; retry"));
      return;
    }
    queue_.emplace_back(std::move(req), std::move(respond));
    cv_.notify_one();
  }

  void serve() {
    pg::Options o;
    o.url = c_.database_url;
    o.application_name = "wafleet-api";
    o.statement_timeout_ms = 10000;
    std::unique_ptr<pg::Connection> db;
    redis::RedisClient redis(redis_options_);  // connects on first use (erasure only)
    connect(o, db);  // ready before the first request
    while (true) {
      std::pair<http::Request, http::Responder> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || !queue_.empty(); });
        if (stop_ && queue_.empty()) {
          break;
        }
        if (queue_.empty()) {
          if (!db) {
            lock.unlock();
            connect(o, db);  // readiness says whether the record is reachable
          }
          continue;
        }
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      if (!db || !db->healthy()) {
        connect(o, db);
      }
      http::Response res;
      if (!db) {
        res = error_response(job.first, 503, "unavailable", "the record is not reachable; try again");
      } else {
        Reader reader(*db);
        Session session{reader, *db, &redis};
        res = api_.handle(job.first, session);
      }
      requests_.Add({{"code", std::to_string(res.result_int())}}).Increment();
      job.second(std::move(res));
    }
    if (db) {
      --connected_;
    }
  }

  void connect(const pg::Options& o, std::unique_ptr<pg::Connection>& db) {
    const bool had = db != nullptr;
    auto c = pg::Connection::connect(o);
    if (c) {
      db = std::move(c).value();
      if (!had) {
        ++connected_;
      }
    } else {
      if (had) {
        --connected_;
      }
      db.reset();
      log::warn("api.connect_failed", {{"error", c.error().message}});
    }
  }

  void stop_threads() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    for (auto& t : threads_) {
      t.join();
    }
    threads_.clear();
  }

  WorkerConfig c_;
  Api api_;
  redis::Options redis_options_;
  std::mutex dlq_mu_;
  std::optional<nlohmann::json> dlq_cached_;
  std::chrono::steady_clock::time_point dlq_at_{};
  prometheus::Family<prometheus::Counter>& requests_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<http::Request, http::Responder>> queue_;
  bool stop_ = false;
  std::atomic<int> connected_{0};
  std::vector<std::thread> threads_;
  http::Server server_;  // last: stopped (in run) before the rest goes
};

}  // namespace

WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c;
  if (auto listen = config::parse_host_port(s.get("listen"), "listen", errors)) {
    c.listen = *listen;
  }
  c.database_url = s.get("database-url");
  if (!c.database_url.empty() && c.database_url.rfind("postgresql://", 0) != 0 &&
      c.database_url.rfind("postgres://", 0) != 0) {
    errors.push_back("WAFLEET_DATABASE_URL: must start with postgresql://");
  }
  const std::string keys_file = s.get("api-keys-file");
  if (!keys_file.empty()) {
    std::ifstream in(keys_file);
    if (!in) {
      errors.push_back("WAFLEET_API_KEYS_FILE: cannot read " + keys_file);
    } else {
      std::stringstream text;
      text << in.rdbuf();
      auto keys = parse_keys(text.str());
      if (!keys) {
        errors.push_back("WAFLEET_API_KEYS_FILE: " + keys.error());
      } else if (keys->empty()) {
        errors.push_back("WAFLEET_API_KEYS_FILE: no key in " + keys_file);
      } else {
        c.keys = std::move(keys).value();
      }
    }
  }
  const int64_t threads = s.get_int("http-threads", errors);
  const int64_t conns = s.get_int("db-connections", errors);
  const int64_t rate = s.get_int("rate", errors);
  const int64_t burst = s.get_int("burst", errors);
  const int64_t body = s.get_int("body-limit", errors);
  if (threads < 1 || threads > 64) {
    errors.push_back("WAFLEET_HTTP_THREADS: must be 1..64");
  }
  if (conns < 1 || conns > 64) {
    errors.push_back("WAFLEET_DB_CONNECTIONS: must be 1..64");
  }
  if (rate < 1 || burst < 1) {
    errors.push_back("WAFLEET_RATE, WAFLEET_BURST: at least 1");
  }
  if (body < 1024) {
    errors.push_back("WAFLEET_BODY_LIMIT: at least 1024");
  }
  c.http_threads = static_cast<int>(std::clamp<int64_t>(threads, 1, 64));
  c.db_connections = static_cast<int>(std::clamp<int64_t>(conns, 1, 64));
  c.limits.requests_per_second = static_cast<double>(std::max<int64_t>(1, rate));
  c.limits.burst = static_cast<double>(std::max<int64_t>(1, burst));
  c.limits.max_body_bytes = static_cast<size_t>(std::max<int64_t>(1024, body));
  const int64_t bulk_body = s.get_int("bulk-body-limit", errors);
  if (bulk_body < 1024) {
    errors.push_back("WAFLEET_BULK_BODY_LIMIT: at least 1024");
  }
  c.limits.max_bulk_body_bytes = static_cast<size_t>(std::max<int64_t>(1024, bulk_body));
  c.pacing.number_rate = static_cast<double>(s.get_int("number-rate", errors));
  const std::string daily = s.get("portfolio-daily-limit");
  c.pacing.daily_limit = daily == "unlimited" ? 0 : s.get_int("portfolio-daily-limit", errors);
  c.pacing.portfolio = s.get("portfolio-id");
  c.suppression_salt = s.get("suppression-salt");
  c.links.secret = s.get("media-link-secret");
  if (c.links.secret.empty()) {
    c.links.secret = crypto::random_hex(32);
  }
  c.links.ttl_s = s.get_int("media-link-ttl-s", errors);
  if (c.links.ttl_s < 1 || c.links.ttl_s > 7 * 24 * 3600) {
    errors.push_back("WAFLEET_MEDIA_LINK_TTL_S: 1 s to 7 days (S3's own limit)");
  }
  if (!s.get("s3-bucket").empty()) {
    c.links.s3 = media::parse_s3(s, "/tmp");
  }
  c.portfolio_id = s.get("portfolio-id");
  c.dlq_stats_cache_ms = s.get_int("dlq-stats-cache-ms", errors);
  if (c.dlq_stats_cache_ms < 0) {
    errors.push_back("WAFLEET_DLQ_STATS_CACHE_MS: at least 0");
  }
  return c;
}

static worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  const WorkerConfig c = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.produces = {topics::kOutbound, topics::kPrivacyAudit, topics::kBulkCommands};
  plan.wiring.redis = true;  // erasure
  plan.wiring.producer.linger_ms = 0;
  plan.started = {{"listen", c.listen.host + ":" + std::to_string(c.listen.port)},
                  {"database", pg::redact_url(c.database_url)},
                  {"keys", c.keys.size()}};
  plan.build = worker::build<ApiCore>(c);
  return plan;
}

worker::Spec spec() { return {"api", "wafleet-api", own_options(), make_plan}; }

}  // namespace wafleet::api
