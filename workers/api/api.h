#pragma once
// wafleet-api's request handling, apart from sockets (Boost.Beast's example shape): a request
// and the thread's Reader in, a response out. Authentication (API keys, stored as SHA-256
// hashes), a rate limit per key, the one error format {"error": {"code", "message"}}, and the
// routes of the OpenAPI description (workers/api/openapi.json, served at /v1/openapi.json).
//
// Threading: handle() may run on several threads at once, each with its own Reader; the key
// table is read-only after construction, the rate buckets are behind a mutex.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/error.h"
#include "common/http_server.h"
#include "common/redis.h"
#include "common/kafka.h"
#include "workers/api/media_links.h"
#include "workers/api/query.h"
#include "workers/bulk/control.h"
#include "workers/erasure/erasure.h"

namespace wafleet::api {

struct ApiKey {
  std::string name;        // who, for logs and audit ("ops", "crm")
  std::string sha256_hex;  // of the key itself; the key is never stored
};

// Lines "<name> <sha256 hex of the key>"; '#' comments and blank lines skipped. The error names
// the line.
Expected<std::vector<ApiKey>, std::string> parse_keys(const std::string& text);

struct Limits {
  double requests_per_second = 50;  // per key
  double burst = 100;
  size_t max_body_bytes = 256 * 1024;
  size_t max_bulk_body_bytes = 32 * 1024 * 1024;  // POST /v1/bulk/jobs: the recipient list
};

// Puts a request on wa.outbound (key, value) and waits for the acknowledgement.
using Outbox = std::function<Status(const std::string& key, const std::string& value)>;
using Clock = std::function<std::chrono::steady_clock::time_point()>;

// What the thread answering a request owns: the record's connection and, where configured,
// Redis (erasure).
struct Session {
  Reader& reader;
  pg::Connection& db;
  redis::RedisClient* redis = nullptr;
};

// DELETE /v1/people/{id}: how to erase, and where the audit record goes (wa.privacy.audit,
// key and value); without it the route answers 501.
struct Erasure {
  erasure::Options options;
  std::function<Status(const std::string& key, const std::string& value)> audit;
};

// /v1/bulk/jobs: the estimate's limits and the producer of wa.bulk.commands (needs Redis).
struct BulkJobs {
  bulk::Pacing pacing;
  kafka::Producer* producer = nullptr;
};

// GET /v1/dlq/stats: the counts of replay::stats for wa.dlq and wa.dlq.parked.
using DlqStats = std::function<Result<nlohmann::json>()>;

class Api {
 public:
  Api(std::vector<ApiKey> keys, Limits limits, Outbox outbox, Clock clock = nullptr);
  void enable_erasure(Erasure e) { erasure_ = std::move(e); }
  void enable_dlq_stats(DlqStats s) { dlq_stats_ = std::move(s); }
  void enable_bulk(BulkJobs b) { bulk_ = b; }
  void set_media_links(MediaLinks l) { links_ = std::move(l); }
  http::Response handle(const http::Request& req, Session& session);

 private:
  std::optional<http::Response> too_large(const http::Request& req) const;  // 413 past the limit
  http::Response contacts(const http::Request& req, Session& session, const std::string& id);
  http::Response media_file(const http::Request& req, Session& session, const std::string& id);
  http::Response bulk_jobs(const http::Request& req, Session& session, const std::string& path,
                           const std::string& who);
  http::Response forget(const http::Request& req, Session& session, const std::string& id,
                        const std::string& who);
  // The key's name, or "" when the header is missing or matches no key.
  std::string authenticate(const http::Request& req) const;
  bool admit(const std::string& who);

  std::map<std::string, std::string> keys_;  // sha256 hex -> name
  Limits limits_;
  Outbox outbox_;
  Clock clock_;
  std::optional<Erasure> erasure_;
  DlqStats dlq_stats_;
  std::optional<BulkJobs> bulk_;
  MediaLinks links_;
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point at{};
  };
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;
};

// The OpenAPI 3.1 description, as served.
const std::string& openapi_json();

// {"error": {"code": code, "message": message}} with that status.
http::Response error_response(const http::Request& req, unsigned status, const std::string& code,
                              const std::string& message);
// 405 with the Allow header (RFC 9110): allow is "GET, POST".
http::Response method_not_allowed(const http::Request& req, const std::string& allow);

}  // namespace wafleet::api
