#include "workers/cli/forget.h"

#include <cstdlib>
#include <iostream>

#include "common/clock.h"
#include "common/consumer_loop.h"
#include "common/kafka.h"
#include "common/pg.h"
#include "common/redis.h"
#include "topics/topics.h"
#include "workers/erasure/erasure.h"

namespace wafleet::cli {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// S3 media (s3:// URIs) from the media worker's variables; none when no bucket is set.
media::S3Options s3_from_env() {
  media::S3Options o;
  o.endpoint = env_or("WAFLEET_S3_ENDPOINT", "");
  o.bucket = env_or("WAFLEET_S3_BUCKET", "");
  o.region = env_or("WAFLEET_S3_REGION", "us-east-1");
  o.access_key = env_or("WAFLEET_S3_ACCESS_KEY", "");
  o.secret_key = env_or("WAFLEET_S3_SECRET_KEY", "");
  o.prefix = env_or("WAFLEET_S3_PREFIX", "");
  return o;
}

}  // namespace

void add_forget_command(CLI::App& app, ForgetArgs& a) {
  a.forget = app.add_subcommand(
      "forget", "erase a person: their record, media, Redis state; an opt-out is kept as a salted hash");
  a.database_url = env_or("WAFLEET_DATABASE_URL", "");
  a.redis_url = env_or("WAFLEET_REDIS_URL", "redis://127.0.0.1:6379/0");
  a.forget->add_option("identity", a.identity, "phone number (any format) or business-scoped user id")
      ->required();
  a.forget->add_option("--database-url", a.database_url, "the record (WAFLEET_DATABASE_URL)");
  a.forget->add_option("--redis-url", a.redis_url, "Redis (WAFLEET_REDIS_URL)");
  a.forget->add_option("--actor", a.actor, "who asked, for wa.privacy.audit (default $USER)");
}

bool forget_parsed(const ForgetArgs& a) { return a.forget != nullptr && a.forget->parsed(); }

int run_forget(const ForgetArgs& a, const std::string& brokers) {
  if (a.database_url.empty()) {
    std::cerr << "wafleet forget: set WAFLEET_DATABASE_URL or --database-url\n";
    return 2;
  }
  if (brokers.empty()) {
    std::cerr << "wafleet forget: set WAFLEET_KAFKA_BROKERS: every erasure is audited on "
              << topics::kPrivacyAudit << "\n";
    return 2;
  }
  auto ropts = redis::parse_url(a.redis_url);
  if (!ropts) {
    std::cerr << "wafleet forget: WAFLEET_REDIS_URL: " << ropts.error().message << "\n";
    return 2;
  }
  auto db = pg::Connection::connect(pg::Options{a.database_url});
  if (!db) {
    std::cerr << "wafleet forget: the record: " << db.error().message << "\n";
    return 1;
  }
  redis::RedisClient redis(*ropts);
  const media::S3Options s3 = s3_from_env();
  erasure::Options eo;
  eo.salt = env_or("WAFLEET_SUPPRESSION_SALT", "");
  eo.portfolios = {env_or("WAFLEET_PORTFOLIO_ID", "default")};
  eo.s3 = s3.bucket.empty() ? nullptr : &s3;
  erasure::Eraser eraser(**db, redis, eo);
  const int64_t now = wall_clock_ms();
  auto report = eraser.forget(a.identity, now);
  if (!report) {
    std::cerr << "wafleet forget: " << report.error().message << "\n";
    return report.error().kind == ErrorKind::kInvalidInput ? 2 : 1;
  }
  nlohmann::json audit = report->to_json();
  audit["actor"] = a.actor.empty() ? env_or("USER", "unknown") : a.actor;
  audit["via"] = "cli";
  audit["at_ms"] = now;
  auto producer = kafka::Producer::create(kafka::ClientConfig{brokers, "wafleet-cli", {}});
  Status audited = producer ? kafka::produce_and_wait(**producer, topics::kPrivacyAudit,
                                                      report->identity_hash, audit.dump())
                            : Status(Unexpected(producer.error()));
  std::cout << audit.dump(2) << "\n";
  if (!audited) {
    std::cerr << "wafleet forget: erased, but " << topics::kPrivacyAudit << ": "
              << audited.error().message << " (run it again to write the audit record)\n";
    return 1;
  }
  return 0;
}

}  // namespace wafleet::cli
