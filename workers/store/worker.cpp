#include "workers/store/worker.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include "common/clock.h"
#include "common/consumer_loop.h"
#include "common/log.h"
#include "common/pg.h"
#include "topics/topics.h"
#include "workers/media/worker.h"  // the S3 settings
#include "workers/store/db.h"
#include "workers/store/record.h"

namespace wafleet::store {

namespace {

std::vector<config::Option> own_options() {
  std::vector<config::Option> o = {
      {"database-url", "", "PostgreSQL connection URL (postgresql://user:password@host:port/db)", true,
       true},
      {"batch-max", "5000", "records written per transaction, at most"},
      {"batch-ms", "100", "the longest a record waits for its batch to fill"},
      {"retention-days", "30", "day partitions older than this are dropped (messages, statuses, media, turns, handoffs)"},
      {"sweep-interval-s", "3600", "how often old partitions are dropped"},
      {"topics",
       "wa.inbound,wa.status,wa.media,wa.turns,wa.outbound,wa.outbound.results,wa.handoffs",
       "topics read into the record"},
  };
  auto s3 = media::s3_options();  // the sweep removes expired s3:// media
  o.insert(o.end(), s3.begin(), s3.end());
  return o;
}

constexpr int64_t kDayMs = 24LL * 3600 * 1000;

class StoreCore : public worker::Core {
 public:
  StoreCore(worker::Context& ctx, WorkerConfig c)
      : ctx_(ctx),
        c_(std::move(c)),
        records_(prometheus::BuildCounter()
                     .Name("wafleet_store_records_total")
                     .Help("records read, by topic and outcome (stored, expired, ignored, dead_lettered)")
                     .Register(ctx.metrics())),
        rows_(prometheus::BuildCounter()
                  .Name("wafleet_store_rows_total")
                  .Help("rows written (before conflicts), by table")
                  .Register(ctx.metrics())),
        batches_(prometheus::BuildHistogram()
                     .Name("wafleet_store_batch_seconds")
                     .Help("time to write one batch (one transaction)")
                     .Register(ctx.metrics())
                     .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                      0.05, 0.1, 0.25, 0.5, 1, 2.5})),
        errors_(prometheus::BuildCounter()
                    .Name("wafleet_store_write_errors_total")
                    .Help("failed batch writes, by error class (transient ones are retried)")
                    .Register(ctx.metrics())),
        dropped_(prometheus::BuildCounter()
                     .Name("wafleet_store_partitions_dropped_total")
                     .Help("day partitions dropped past the retention")
                     .Register(ctx.metrics())
                     .Add({})),
        media_removed_(prometheus::BuildCounter()
                           .Name("wafleet_store_media_removed_total")
                           .Help("stored media files removed past the retention")
                           .Register(ctx.metrics())
                           .Add({})),
        connected_(prometheus::BuildGauge()
                       .Name("wafleet_store_database_up")
                       .Help("1 while the last database round trip worked")
                       .Register(ctx.metrics())
                       .Add({})) {}

  Probe ready() override {
    if (!up_.load()) {
      return {false, "postgres: not connected"};
    }
    return {};
  }

  // Two threads, so that parsing the next batch overlaps writing this one: this one polls and
  // builds batches; the writer writes them in order, one at a time, and stores their offsets.
  Status run(worker::Context& ctx) override {
    if (auto st = connect(); !st) {
      return st;
    }
    std::thread writer([this] { write_loop(); });
    Status result;
    while (!ctx.stopping()) {
      Pending next;
      auto polled = kafka::poll_batch(ctx.consumer(), next.records, static_cast<size_t>(c_.batch_max),
                                      std::chrono::milliseconds(100),
                                      std::chrono::milliseconds(c_.batch_ms));
      if (!polled) {
        result = Unexpected(Error::fatal("consumer: " + polled.error().message));
        break;
      }
      if (next.records.empty()) {
        continue;
      }
      if (auto st = prepare(next); !st) {
        result = st;
        break;
      }
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !queued_ || done_; });
      if (done_) {
        break;
      }
      queued_ = std::move(next);
      cv_.notify_all();
    }
    {
      std::lock_guard lock(mu_);
      done_ = true;
      cv_.notify_all();
    }
    writer.join();
    if (!result) {
      return result;
    }
    return writer_result_;
  }

 private:
  struct Pending {
    std::vector<kafka::Record> records;
    Batch batch;
    Rules rules;
    std::vector<std::string> outcome;
  };

  // The writer: batches in the order they were read; a fatal error stops the worker; a
  // transient one while stopping leaves the batch unstored (it is read again).
  void write_loop() {
    Database db(*conn_);
    int64_t next_sweep = 0;
    while (true) {
      std::optional<Pending> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return queued_ || done_; });
        if (queued_) {
          job = std::move(queued_);
          queued_.reset();
          cv_.notify_all();
        } else if (done_) {
          return;
        }
      }
      if (job) {
        auto st = commit(db, *job);
        if (!st) {
          if (st.error().kind == ErrorKind::kFatal) {
            writer_result_ = st;
            ctx_.request_stop();
          }
          std::lock_guard lock(mu_);
          done_ = true;  // nothing after this batch may be stored before it
          cv_.notify_all();
          return;
        }
      }
      if (wall_clock_ms() >= next_sweep) {
        sweep(db);
        next_sweep = wall_clock_ms() + c_.sweep_interval_s * 1000;
      }
    }
  }

  Status connect() {
    pg::Options o;
    o.url = c_.database_url;
    o.application_name = "wafleet-store";
    for (int attempt = 0; !ctx_.stopping(); ++attempt) {
      auto conn = pg::Connection::connect(o);
      if (conn) {
        auto applied = migrate(**conn);
        if (applied) {
          conn_ = std::move(conn).value();
          up_ = true;
          connected_.Set(1);
          log::info("store.database_ready", {{"database", pg::redact_url(c_.database_url)},
                                             {"migrations_applied", applied->size()},
                                             {"schema_version", migrations().back().version}});
          return {};
        }
        if (applied.error().kind != ErrorKind::kTransient) {
          return Unexpected(Error::fatal(applied.error().message));
        }
        log::warn("store.migrate_failed", {{"error", applied.error().message}, {"attempt", attempt + 1}});
      } else {
        log::warn("store.connect_failed", {{"error", conn.error().message}, {"attempt", attempt + 1}});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 200 << std::min(attempt, 5))));
    }
    return Unexpected(Error::transient("stopping before the database answered"));
  }

  // Builds the batch, dead-lettering records that are not what their topic says.
  Status prepare(Pending& p) {
    p.rules = current_rules();
    p.outcome.assign(p.records.size(), "stored");
    for (size_t i = 0; i < p.records.size(); ++i) {
      const int64_t expired = p.batch.expired;
      const int64_t ignored = p.batch.ignored;
      auto st = add(p.records[i], p.rules, p.batch);
      if (!st) {
        if (auto d = dead_letter(p.records[i], st.error()); !d) {
          return d;
        }
        p.outcome[i] = "dead_lettered";
      } else if (p.batch.expired > expired) {
        p.outcome[i] = "expired";
      } else if (p.batch.ignored > ignored) {
        p.outcome[i] = "ignored";
      }
    }
    return {};
  }

  // Writes the batch, then stores the offsets. A transient failure is retried until it works or
  // the worker stops; any other failure of the whole batch is narrowed down record by record.
  Status commit(Database& db, Pending& p) {
    auto st = write_with_retry(db, p.batch);
    if (!st && st.error().kind != ErrorKind::kTransient && st.error().kind != ErrorKind::kFatal) {
      // One record the database refuses (a NUL in a text, say) must not hold the others.
      for (size_t i = 0; i < p.records.size(); ++i) {
        if (p.outcome[i] != "stored") {
          continue;
        }
        Batch one;
        (void)add(p.records[i], p.rules, one);
        auto s1 = write_with_retry(db, one);
        if (!s1 && s1.error().kind != ErrorKind::kTransient && s1.error().kind != ErrorKind::kFatal) {
          if (auto d = dead_letter(p.records[i], s1.error()); !d) {
            return d;
          }
          p.outcome[i] = "dead_lettered";
        } else if (!s1) {
          return s1;
        }
      }
    } else if (!st) {
      return st;
    } else {
      for (const auto& [t, rows] : p.batch.tables) {
        rows_.Add({{"table", table_name(t)}}).Increment(static_cast<double>(rows.count));
      }
    }
    for (size_t i = 0; i < p.records.size(); ++i) {
      records_.Add({{"topic", p.records[i].topic}, {"outcome", p.outcome[i]}}).Increment();
    }
    kafka::store_batch_offsets(ctx_.consumer(), p.records);
    return {};
  }

  Status write_with_retry(Database& db, const Batch& batch) {
    for (int attempt = 0;; ++attempt) {
      const auto t0 = std::chrono::steady_clock::now();
      auto st = db.write(batch);
      if (st) {
        batches_.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (!up_.exchange(true)) {
          connected_.Set(1);
          log::info("store.database_back", {{"attempts", attempt + 1}});
        }
        return {};
      }
      errors_.Add({{"class", to_string(st.error().kind)}}).Increment();
      if (st.error().kind != ErrorKind::kTransient) {
        return st;
      }
      if (up_.exchange(false)) {
        connected_.Set(0);
      }
      log::warn("store.write_failed", {{"error", st.error().message}, {"attempt", attempt + 1}});
      if (ctx_.stopping()) {
        return st;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 100 << std::min(attempt, 5))));
      (void)conn_->reset();
    }
  }

  Status dead_letter(const kafka::Record& r, const Error& e) {
    auto lo = ctx_.loop_options();
    auto st = kafka::produce_dead_letter(ctx_.producer(), lo, r, e, 1, wall_clock_ms(), "store");
    if (!st) {
      return Unexpected(Error::fatal("dead letter not written: " + st.error().message));
    }
    log::warn("record.dead_lettered", {{"topic", r.topic}, {"partition", r.partition},
                                        {"offset", r.offset}, {"reason", e.message}});
    return {};
  }

  void sweep(Database& db) {
    const std::string oldest = day_of(wall_clock_ms() - c_.retention_days * kDayMs);
    // The media files of those days first: a file whose rows are gone would never be found.
    auto files = db.files_only_before(oldest);
    if (!files) {
      log::warn("store.sweep_failed", {{"error", files.error().message}});
      return;
    }
    int64_t removed = 0;
    for (const auto& uri : *files) {
      auto gone = media::remove_stored(uri, c_.s3 ? &*c_.s3 : nullptr);
      if (!gone) {
        // Left for the next sweep (the rows stay until every file went).
        log::warn("store.media_not_removed", {{"error", gone.error().message}});
        return;
      }
      removed += *gone ? 1 : 0;
    }
    if (removed > 0) {
      media_removed_.Increment(static_cast<double>(removed));
      log::info("store.media_removed", {{"before", oldest}, {"files", removed}});
    }
    auto dropped = db.drop_before(oldest);
    if (!dropped) {
      log::warn("store.sweep_failed", {{"error", dropped.error().message}});
      return;
    }
    if (!dropped->empty()) {
      dropped_.Increment(static_cast<double>(dropped->size()));
      log::info("store.partitions_dropped", {{"before", oldest}, {"count", dropped->size()}});
    }
  }

  Rules current_rules() const {
    Rules r;
    r.now_ms = wall_clock_ms();
    r.retention_ms = c_.retention_days * kDayMs;
    return r;
  }

  worker::Context& ctx_;
  WorkerConfig c_;
  std::unique_ptr<pg::Connection> conn_;  // the writer thread's, once connect() returned
  std::atomic<bool> up_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Pending> queued_;  // the batch read and waiting for the writer
  bool done_ = false;
  Status writer_result_;
  prometheus::Family<prometheus::Counter>& records_;
  prometheus::Family<prometheus::Counter>& rows_;
  prometheus::Histogram& batches_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Counter& dropped_;
  prometheus::Counter& media_removed_;
  prometheus::Gauge& connected_;
};

}  // namespace

WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c;
  c.database_url = s.get("database-url");
  if (!c.database_url.empty() && c.database_url.rfind("postgresql://", 0) != 0 &&
      c.database_url.rfind("postgres://", 0) != 0) {
    errors.push_back("WAFLEET_DATABASE_URL: must start with postgresql://");
  }
  c.batch_max = static_cast<int>(s.get_int("batch-max", errors));
  if (c.batch_max < 1 || c.batch_max > 100000) {
    errors.push_back("WAFLEET_BATCH_MAX: between 1 and 100000");
  }
  c.batch_ms = s.get_int("batch-ms", errors);
  if (c.batch_ms < 0 || c.batch_ms > 10000) {
    errors.push_back("WAFLEET_BATCH_MS: between 0 and 10000");
  }
  if (!s.get("s3-bucket").empty()) {
    c.s3 = media::parse_s3(s, "/tmp");
  }
  c.retention_days = s.get_int("retention-days", errors);
  if (c.retention_days < 1) {
    errors.push_back("WAFLEET_RETENTION_DAYS: at least 1");
  }
  c.sweep_interval_s = s.get_int("sweep-interval-s", errors);
  if (c.sweep_interval_s < 1) {
    errors.push_back("WAFLEET_SWEEP_INTERVAL_S: at least 1");
  }
  c.topics = worker::split_list(s.get("topics"));
  for (const auto& t : c.topics) {
    if (!topics::find(t)) {
      errors.push_back("WAFLEET_TOPICS: '" + t + "' is not in the topic catalogue");
    }
  }
  if (c.topics.empty()) {
    errors.push_back("WAFLEET_TOPICS: at least one topic");
  }
  return c;
}

static worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  const WorkerConfig c = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.consumes = c.topics;
  plan.wiring.produces = {topics::kDlq};
  plan.wiring.redis = false;
  plan.wiring.fetch_wait_max_ms = 50;
  // A database outage holds the loop in its retries: it polls again within the longest backoff.
  plan.wiring.max_poll_gap = std::chrono::seconds(300);
  plan.wiring.consumer_properties = {{"max.poll.interval.ms", "600000"}};
  plan.started = {{"database", pg::redact_url(c.database_url)},
                  {"batch_max", c.batch_max},
                  {"retention_days", c.retention_days}};
  plan.build = worker::build<StoreCore>(c);
  return plan;
}

worker::Spec spec() { return {"store", "wafleet-store", own_options(), make_plan}; }

}  // namespace wafleet::store
