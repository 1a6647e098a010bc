#include "workers/bulk/worker.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/json_util.h"
#include "common/log.h"
#include "topics/topics.h"
#include "topics/webhook_event.h"
#include "workers/bulk/store.h"
#include "workers/media/worker.h"
#include "workers/sender/conversations.h"

namespace wafleet::bulk {

namespace {

using Json = nlohmann::json;

std::vector<config::Option> own_options() {
  std::vector<config::Option> opts = {
      {"portfolio-id", "default", "the business portfolio whose daily budget the jobs share"},
      {"portfolio-daily-limit", "250",
       "people the portfolio may reach per rolling 24 hours outside their customer-service "
       "window (Meta's tier: 250, 2000, 10000, 100000; 0 or 'unlimited': no limit)"},
      {"portfolio-window-ms", "86400000", "the budget's rolling window"},
      {"number-rate", "70", "the sender's per-number rate (WAFLEET_NUMBER_RATE): bulk never "
                            "has more than rate x release-ahead-ms out without a result"},
      {"release-ahead-ms", "500", "how far ahead of the send rate requests are released"},
      {"retry-ms", "60000", "a retriable error (130429, 131056, 131000...): tried again this "
                            "much later, doubled per attempt"},
      {"retry-131049-ms", "21600000", "131049 (Meta held the message back): tried again this "
                                      "much later (default 6 hours)"},
      {"max-attempts", "5", "attempts per recipient before it is failed"},
      {"backoff-ms", "30000", "the job waits this long on 4/80007/131057, doubled up to backoff-max-ms"},
      {"backoff-max-ms", "600000", "longest back-off"},
      {"breaker-failure-percent", "50", "pause a job when this share of its last 100 outcomes failed"},
      {"breaker-min-outcomes", "20", "outcomes needed before the breaker judges"},
      {"stale-ms", "600000", "a request released this long ago with no result is released "
                             "again (same idempotency key: never sent twice)"},
      {"lease-ms", "5000", "a driver's hold on a job; another replica takes over after it"},
      {"tick-ms", "20", "how often the driver looks at its jobs"},
      {"storage", "local", "where reports go: local | s3 (the media worker's settings)"},
      {"storage-dir", "./wafleet-media", "local store; reports under reports/bulk/ (with s3: staging)"},
      {"clock-offset-file", "", "tests and drills: a file holding milliseconds added to the clock"},
  };
  auto s3 = media::s3_options();
  opts.insert(opts.end(), s3.begin(), s3.end());
  return opts;
}

// The wall clock, plus an offset read from a file when configured (tests move time forward to
// see a 24-hour budget window or a 131049 retry hours later).
class Clock {
 public:
  explicit Clock(std::string file) : file_(std::move(file)) {}
  int64_t now() {
    if (file_.empty()) {
      return wall_clock_ms();
    }
    std::lock_guard lock(mu_);
    const auto t = std::chrono::steady_clock::now();
    if (t - read_at_ >= std::chrono::milliseconds(100)) {
      read_at_ = t;
      std::ifstream in(file_);
      int64_t v = 0;
      if (in >> v) {
        offset_ = v;
      }
    }
    return wall_clock_ms() + offset_;
  }

 private:
  std::string file_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point read_at_{};
  int64_t offset_ = 0;
};

// Waits for a batch of produces.
class Latch {
 public:
  explicit Latch(size_t n) : left_(n) {}
  void done() {
    std::lock_guard lock(mu_);
    if (--left_ == 0) {
      cv_.notify_all();
    }
  }
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return left_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t left_;
};

class BulkCore : public worker::Core {
 public:
  BulkCore(worker::Context& ctx, const WorkerConfig& c)
      : c_(c),
        clock_(c.clock_offset_file),
        token_(crypto::random_hex(8)),
        released_(prometheus::BuildCounter()
                      .Name("wafleet_bulk_released_total")
                      .Help("requests released to wa.outbound")
                      .Register(ctx.metrics())
                      .Add({})),
        outcomes_(prometheus::BuildCounter()
                      .Name("wafleet_bulk_outcomes_total")
                      .Help("recipient events applied, by what they did")
                      .Register(ctx.metrics())),
        paused_(prometheus::BuildCounter()
                    .Name("wafleet_bulk_jobs_paused_total")
                    .Help("jobs paused by the worker, by why")
                    .Register(ctx.metrics())),
        budget_waits_(prometheus::BuildCounter()
                          .Name("wafleet_bulk_budget_waits_total")
                          .Help("times a job stopped at the portfolio's daily budget")
                          .Register(ctx.metrics())
                          .Add({})),
        active_jobs_(prometheus::BuildGauge()
                         .Name("wafleet_bulk_active_jobs")
                         .Help("jobs not yet ended")
                         .Register(ctx.metrics())
                         .Add({})) {}

  void stop() override {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

  Status run(worker::Context& ctx) override {
    Status driver_result;
    std::thread driver([&] {
      driver_result = drive(ctx);
      if (!driver_result) {
        ctx.request_stop();
      }
    });
    Status result = consume(ctx);
    {
      std::lock_guard lock(mu_);
      cv_.notify_all();
    }
    driver.join();
    if (result && !driver_result) {
      return driver_result;
    }
    return result;
  }

 private:
  // --- the consumer: commands and outcomes --------------------------------------------------
  Status consume(worker::Context& ctx) {
    Store store(ctx.redis());
    sender::Conversations conversations(ctx.redis(), sender::PolicyOptions{});
    auto& consumer = ctx.consumer();
    std::vector<kafka::Record> batch;
    while (!ctx.stopping()) {
      batch.clear();
      if (auto st = kafka::poll_batch(consumer, batch, 500, std::chrono::milliseconds(100),
                                      std::chrono::milliseconds(0));
          !st) {
        return Unexpected(Error::fatal("consumer: " + st.error().message));
      }
      if (batch.empty()) {
        continue;
      }
      // Redis down: keep the batch and try again (offsets are not stored until it worked).
      for (int attempt = 0;; ++attempt) {
        auto st = handle(store, conversations, batch);
        if (st) {
          break;
        }
        if (ctx.stopping()) {
          return {};
        }
        log::warn("bulk.apply_failed", {{"error", st.error().message}, {"attempt", attempt + 1}});
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 100 << std::min(attempt, 5))));
      }
      kafka::store_batch_offsets(consumer, batch);
    }
    return {};
  }

  struct Effect {
    std::string job;
    Action action = Action::kFail;
    std::string reason;
    bool outcome = false;  // feeds the breaker
  };

  Status handle(Store& store, sender::Conversations& conversations,
                const std::vector<kafka::Record>& batch) {
    std::vector<Transition> ts;
    std::vector<Effect> effects;
    for (const auto& r : batch) {
      if (r.topic == topics::kBulkCommands) {
        // Commands are applied in order with what came before them.
        if (auto st = flush(store, ts, effects); !st) {
          return st;
        }
        if (auto st = command(store, r); !st) {
          return st;
        }
      } else if (r.topic == topics::kOutboundResults) {
        result(r, ts, effects);
      } else if (r.topic == topics::kStatus) {
        if (auto st = status(conversations, r, ts, effects); !st) {
          return st;
        }
      } else if (r.topic == topics::kAccountEvents) {
        if (auto st = flush(store, ts, effects); !st) {
          return st;
        }
        if (auto st = account_event(store, r); !st) {
          return st;
        }
      }
    }
    return flush(store, ts, effects);
  }

  void add(std::vector<Transition>& ts, std::vector<Effect>& effects, Transition t, Effect e) {
    ts.push_back(std::move(t));
    effects.push_back(std::move(e));
  }

  // A recipient's failure with Meta's code, as a transition and what it does to the job.
  void failure(const AttemptRef& ref, int code, const std::string& message,
               std::vector<Transition>& ts, std::vector<Effect>& effects) {
    const int64_t now = clock_.now();
    auto cls = classify(code);
    Transition t{ref.job, ref.index, Op::kFailed, ref.attempt, now, "", code,
                 cls.reason + (message.empty() ? "" : " (" + message.substr(0, 200) + ")"), 0};
    switch (cls.action) {
      case Action::kSkip:
        t.op = Op::kSkipped;
        break;
      case Action::kPauseJob:
      case Action::kBackOff:
        // Tried again once the job goes on (the attempt is a new key: this one failed).
        t.op = Op::kRetry;
        t.due_ms = now;
        break;
      case Action::kRetryLater:
      case Action::kRetryMuchLater: {
        if (ref.attempt >= c_.max_attempts) {
          t.reason = "gave up after " + std::to_string(ref.attempt) + " attempts: " + t.reason;
          break;
        }
        t.op = Op::kRetry;
        const int64_t base = cls.action == Action::kRetryMuchLater ? c_.retry_131049_ms : c_.retry_ms;
        const int64_t factor = cls.action == Action::kRetryMuchLater ? 1 : (1LL << std::min(ref.attempt - 1, 10));
        t.due_ms = now + base * factor;
        break;
      }
      case Action::kFailJob:
      case Action::kFail:
        break;
    }
    add(ts, effects, std::move(t), {ref.job, cls.action, cls.reason, true});
  }

  void result(const kafka::Record& r, std::vector<Transition>& ts, std::vector<Effect>& effects) {
    auto j = json::parse(r.value);
    auto ref = parse_attempt_key(json::str(j, "idempotency_key"));
    if (!ref) {
      return;  // not a bulk request
    }
    const std::string st = json::str(j, "status");
    const int64_t now = clock_.now();
    if (st == "sent" || st == "duplicate") {
      add(ts, effects, {ref->job, ref->index, Op::kSent, ref->attempt, now, json::str(j, "wamid"), 0, "", 0},
          {ref->job, Action::kFail, "", false});
    } else if (st == "held") {
      // The job was paused (or ended) after this was released: it waits, same attempt and key.
      add(ts, effects, {ref->job, ref->index, Op::kDefer, ref->attempt, now, "", 0, "held by the pause", now},
          {ref->job, Action::kFail, "", false});
    } else if (st == "uncertain") {
      add(ts, effects,
          {ref->job, ref->index, Op::kFailed, ref->attempt, now, "", 0,
           "uncertain: the sender may have sent it before it stopped (" + json::str(j, "note") + ")", 0},
          {ref->job, Action::kFail, "", true});
    } else if (st == "failed") {
      const auto& err = json::obj(j, "error");
      const int code = static_cast<int>(json::int_or(err, "code", 0));
      const std::string message = json::str(err, "message");
      if (code == 0 && json::str(err, "class") == "invalid_input") {
        add(ts, effects,
            {ref->job, ref->index, Op::kSkipped, ref->attempt, now, "", 0,
             "refused before Meta: " + message.substr(0, 200), 0},
            {ref->job, Action::kSkip, "", true});
      } else {
        failure(*ref, code, message, ts, effects);
      }
    }
  }

  Status status(sender::Conversations& conversations, const kafka::Record& r,
                std::vector<Transition>& ts, std::vector<Effect>& effects) {
    auto j = json::parse(r.value);
    const auto& raw = json::obj(j, "raw");
    auto ref = parse_callback_data(json::str(raw, "biz_opaque_callback_data"));
    if (!ref) {
      return {};
    }
    const std::string st = json::str(raw, "status");
    const int64_t now = clock_.now();
    const std::string wamid = json::str(raw, "id");
    if (st == "sent" || st == "delivered" || st == "read" || st == "played") {
      const Op op = st == "sent" ? Op::kSent : st == "delivered" ? Op::kDelivered : Op::kRead;
      add(ts, effects, {ref->job, ref->index, op, ref->attempt, now, wamid, 0, "", 0},
          {ref->job, Action::kFail, "", false});
    } else if (st == "failed") {
      const auto& errors = json::arr(raw, "errors");
      const Json err = errors.empty() ? Json::object() : errors[0];
      const int code = static_cast<int>(json::int_or(err, "code", 0));
      if (code == 131050) {
        // The person stopped marketing messages: on the suppression list for good.
        const std::string who = !json::str(raw, "recipient_user_id").empty()
                                    ? json::str(raw, "recipient_user_id")
                                    : json::str(raw, "recipient_id");
        if (auto o = conversations.opt_out(json::str(j, "phone_number_id"), who,
                                           "Meta error 131050", now);
            !o) {
          return Unexpected(o.error());
        }
      }
      failure(*ref, code, json::str(err, "message").empty() ? json::str(err, "title") : json::str(err, "message"),
              ts, effects);
    }
    return {};
  }

  Status flush(Store& store, std::vector<Transition>& ts, std::vector<Effect>& effects) {
    if (ts.empty()) {
      return {};
    }
    auto applied = store.apply(ts);
    if (!applied) {
      return Unexpected(applied.error());
    }
    std::set<std::string> sent_jobs;
    for (size_t i = 0; i < applied->size(); ++i) {
      const auto& a = (*applied)[i];
      const auto& e = effects[i];
      if (!a.applied) {
        outcomes_.Add({{"outcome", "stale"}}).Increment();
        continue;
      }
      outcomes_.Add({{"outcome", to_string(a.after)}}).Increment();
      if (a.after == Phase::kSent) {
        sent_jobs.insert(e.job);
      }
      if (!e.outcome) {
        continue;
      }
      const int64_t now = clock_.now();
      if (e.action == Action::kPauseJob) {
        if (auto st = pause(store, e.job, "paused: Meta error " + e.reason, "error_class"); !st) {
          return st;
        }
      } else if (e.action == Action::kFailJob) {
        auto moved = store.set_state(e.job, State::kFailed,
                                     {State::kPending, State::kScheduled, State::kInProgress, State::kPaused},
                                     "failed: Meta error " + e.reason, now);
        if (!moved) {
          return Unexpected(moved.error());
        }
        if (*moved) {
          log::warn("bulk.job_failed", {{"job_id", e.job}, {"reason", e.reason}});
          if (auto st = finish(store, e.job); !st) {
            return st;
          }
        }
      } else if (e.action == Action::kBackOff) {
        auto job = store.job(e.job);
        if (!job) {
          return Unexpected(job.error());
        }
        if (*job && (*job)->wait_until_ms <= now) {
          const int64_t step = std::clamp<int64_t>((*job)->backoff_ms * 2, c_.backoff_ms, c_.backoff_max_ms);
          if (auto st = store.set_fields(e.job, {{"wait_until_ms", std::to_string(now + step)},
                                                  {"wait_reason", "backing off: Meta error " + e.reason},
                                                  {"backoff_ms", std::to_string(step)}});
              !st) {
            return st;
          }
          log::warn("bulk.backing_off", {{"job_id", e.job}, {"ms", step}, {"reason", e.reason}});
          backing_off_.insert(e.job);
        }
      }
      if (a.recent_count >= c_.breaker_min &&
          static_cast<double>(a.recent_failures) >= c_.breaker_rate * static_cast<double>(a.recent_count)) {
        const std::string why = "circuit breaker: " + std::to_string(a.recent_failures) + " of the last " +
                                std::to_string(a.recent_count) + " outcomes failed (threshold " +
                                std::to_string(static_cast<int>(std::lround(c_.breaker_rate * 100))) +
                                "%); last: " + e.reason;
        if (auto st = pause(store, e.job, why, "breaker"); !st) {
          return st;
        }
      }
    }
    for (const auto& job : sent_jobs) {
      if (backing_off_.erase(job) > 0) {
        if (auto st = store.set_fields(job, {{"backoff_ms", "0"}}); !st) {
          return st;
        }
      }
    }
    ts.clear();
    effects.clear();
    return {};
  }

  Status pause(Store& store, const std::string& job, const std::string& why, const std::string& label) {
    auto moved = store.set_state(job, State::kPaused, {State::kPending, State::kScheduled, State::kInProgress},
                                 why, clock_.now());
    if (!moved) {
      return Unexpected(moved.error());
    }
    if (*moved) {
      paused_.Add({{"why", label}}).Increment();
      log::warn("bulk.job_paused", {{"job_id", job}, {"reason", why}});
    }
    return {};
  }

  Status command(Store& store, const kafka::Record& r) {
    auto j = json::parse(r.value);
    const std::string cmd = json::str(j, "command");
    const std::string id = json::str(j, "job_id");
    const int64_t now = clock_.now();
    auto job = store.job(id);
    if (!job) {
      return Unexpected(job.error());
    }
    if (!*job) {
      log::warn("bulk.unknown_job", {{"job_id", id}, {"command", cmd}});
      return {};
    }
    const State from = (*job)->state;
    Result<std::optional<State>> moved = std::optional<State>();
    if (cmd == "create") {
      if (auto st = store.activate(id); !st) {
        return st;
      }
    } else if (cmd == "pause") {
      moved = store.set_state(id, State::kPaused, {State::kPending, State::kScheduled, State::kInProgress},
                              "paused by " + json::str(j, "by"), now);
    } else if (cmd == "resume" && from == State::kPending) {
      // A job whose create command never arrived (the CLI lost Kafka after writing it).
      if (auto st = store.activate(id); !st) {
        return st;
      }
    } else if (cmd == "resume") {
      const State to = (*job)->started_ms > 0 ? State::kInProgress : State::kPending;
      moved = store.set_state(id, to, {State::kPaused}, "", now);
      if (moved && *moved) {
        (void)store.clear_recent(id);
        if (auto st = store.set_fields(id, {{"wait_until_ms", "0"}, {"backoff_ms", "0"}, {"wait_reason", ""}}); !st) {
          return st;
        }
        if (auto st = store.activate(id); !st) {
          return st;
        }
      }
    } else if (cmd == "cancel") {
      moved = store.set_state(id, State::kCancelled,
                              {State::kPending, State::kScheduled, State::kInProgress, State::kPaused},
                              "cancelled by " + json::str(j, "by"), now);
      if (moved && *moved) {
        if (auto st = finish(store, id); !st) {
          return st;
        }
      }
    } else if (cmd == "retry-failed") {
      auto failed = store.failed(id);
      if (!failed) {
        return Unexpected(failed.error());
      }
      std::vector<Transition> ts;
      for (const auto& [index, st] : *failed) {
        ts.push_back({id, index, Op::kReopen, 0, now, "", 0, "", now});
      }
      auto applied = store.apply(ts);
      if (!applied) {
        return Unexpected(applied.error());
      }
      const auto n = std::count_if(applied->begin(), applied->end(), [](const Applied& a) { return a.applied; });
      if (n > 0) {
        moved = store.set_state(id, State::kInProgress, {State::kCompleted, State::kFailed}, "", now);
        if (auto st = store.set_fields(id, {{"report_uri", ""}}); !st) {
          return st;
        }
        if (auto st = store.activate(id); !st) {
          return st;
        }
      }
      log::info("bulk.retry_failed", {{"job_id", id}, {"reopened", static_cast<int64_t>(n)}});
    } else {
      log::warn("bulk.unknown_command", {{"job_id", id}, {"command", cmd}});
      return {};
    }
    if (!moved) {
      return Unexpected(moved.error());
    }
    log::info("bulk.command", {{"job_id", id},
                               {"command", cmd},
                               {"from", to_string(from)},
                               {"applied", cmd == "create" || cmd == "retry-failed" || moved->has_value()}});
    {
      std::lock_guard lock(mu_);
      cv_.notify_all();  // the driver looks now
    }
    return {};
  }

  Status account_event(Store& store, const kafka::Record& r) {
    auto j = json::parse(r.value);
    if (json::str(j, "field") != "message_template_status_update") {
      return {};
    }
    const auto& v = json::obj(j, "raw");
    const std::string event = json::str(v, "event");
    if (event != "PAUSED" && event != "DISABLED" && event != "PENDING_DELETION" && event != "DELETED") {
      return {};
    }
    const std::string name = json::str(v, "message_template_name");
    const std::string language = json::str(v, "message_template_language");
    auto ids = store.active();
    if (!ids) {
      return Unexpected(ids.error());
    }
    for (const auto& id : *ids) {
      auto job = store.job(id);
      if (!job) {
        return Unexpected(job.error());
      }
      if (*job && (*job)->spec.template_name == name &&
          (language.empty() || (*job)->spec.language == language)) {
        std::string why = "paused: template " + name + " is " + event;
        if (const auto& info = json::obj(v, "other_info"); !json::str(info, "title").empty()) {
          why += " (" + json::str(info, "title") + ")";
        }
        if (!json::str(v, "reason").empty() && json::str(v, "reason") != "NONE") {
          why += ": " + json::str(v, "reason");
        }
        if (auto st = pause(store, id, why, "template"); !st) {
          return st;
        }
      }
    }
    return {};
  }

  // A job ended: its report goes to the storage, and it leaves the active set.
  Status finish(Store& store, const std::string& id) {
    auto job = store.job(id);
    if (!job) {
      return Unexpected(job.error());
    }
    if (!*job) {
      return store.deactivate(id);
    }
    auto uri = write_report(store, **job, {c_.storage_dir, c_.storage == "s3" ? &c_.s3 : nullptr});
    if (!uri) {
      log::error("bulk.report_failed", {{"job_id", id}, {"error", uri.error().message}});
      return Unexpected(uri.error());
    }
    if (auto st = store.set_fields(id, {{"report_uri", *uri}}); !st) {
      return st;
    }
    log::info("bulk.job_ended", {{"job_id", id},
                                 {"state", to_string((*job)->state)},
                                 {"sent", (*job)->sent_total()},
                                 {"failed", (*job)->count(Phase::kFailed)},
                                 {"report", *uri}});
    return store.deactivate(id);
  }

  // --- the driver --------------------------------------------------------------------------
  Status drive(worker::Context& ctx) {
    redis::RedisClient redis(ctx.redis_options());
    Store store(redis);
    while (!ctx.stopping()) {
      auto st = drive_once(ctx, store);
      if (!st) {
        if (st.error().kind == ErrorKind::kFatal) {
          return st;
        }
        log::warn("bulk.driver_failed", {{"error", st.error().message}});
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(c_.tick_ms));
    }
    return {};
  }

  Status drive_once(worker::Context& ctx, Store& store) {
    auto ids = store.active();
    if (!ids) {
      return Unexpected(ids.error());
    }
    active_jobs_.Set(static_cast<double>(ids->size()));
    for (const auto& id : *ids) {
      auto job = store.job(id);
      if (!job) {
        return Unexpected(job.error());
      }
      if (!*job) {
        (void)store.deactivate(id);
        continue;
      }
      auto& j = **job;
      const int64_t now = clock_.now();
      if (terminal(j.state)) {
        if (j.report_uri.empty()) {
          if (auto held = store.lease(id, token_, c_.lease_ms); held && *held) {
            // A report that cannot be written (storage down) is tried again next tick; it does
            // not hold the other jobs.
            (void)finish(store, id);
          }
        } else {
          (void)store.deactivate(id);
        }
        continue;
      }
      if (j.state == State::kPaused) {
        continue;
      }
      if (j.state == State::kPending || j.state == State::kScheduled) {
        const bool later = j.spec.schedule_ms > now;
        auto moved = store.set_state(id, later ? State::kScheduled : State::kInProgress,
                                     later ? std::vector<State>{State::kPending}
                                           : std::vector<State>{State::kPending, State::kScheduled},
                                     "", now);
        if (!moved) {
          return Unexpected(moved.error());
        }
        if (later || !*moved) {
          continue;
        }
        log::info("bulk.job_started", {{"job_id", id}, {"total", j.total}});
      }
      auto held = store.lease(id, token_, c_.lease_ms);
      if (!held) {
        return Unexpected(held.error());
      }
      if (!*held) {
        continue;  // another replica drives it
      }
      if (auto st = release(ctx, store, j, now); !st) {
        return st;
      }
    }
    return {};
  }

  struct Candidate {
    size_t index = 0;
    bool from_cursor = false;
    Recipient recipient;
    RecipientStatus status;
  };

  Status release(worker::Context& ctx, Store& store, JobInfo& j, int64_t now) {
    const std::string& id = j.spec.id;
    if (j.wait_until_ms > now) {
      return {};
    }
    if (j.wait_until_ms > 0) {
      if (auto st = store.set_fields(id, {{"wait_until_ms", "0"}, {"wait_reason", ""}}); !st) {
        return st;
      }
    }
    auto inflight = store.in_flight(id);
    if (!inflight) {
      return Unexpected(inflight.error());
    }
    const int64_t room = c_.window() - *inflight;
    std::vector<Candidate> cands;
    // Released long ago and never answered (a sender lost it?): again, with the same key.
    auto stale = store.stale(id, now - c_.stale_ms, 50);
    if (!stale) {
      return Unexpected(stale.error());
    }
    for (size_t index : *stale) {
      cands.push_back({index, false, {}, {}});
    }
    if (room > 0) {
      auto due = store.due(id, now, static_cast<size_t>(room));
      if (!due) {
        return Unexpected(due.error());
      }
      for (size_t index : *due) {
        cands.push_back({index, false, {}, {}});
      }
      const int64_t more = room - static_cast<int64_t>(due->size());
      if (more > 0 && j.cursor < j.total) {
        const int64_t n = std::min(more, j.total - j.cursor);
        auto rs = store.recipients(id, static_cast<size_t>(j.cursor), static_cast<size_t>(n));
        if (!rs) {
          return Unexpected(rs.error());
        }
        auto sts = store.statuses(id, static_cast<size_t>(j.cursor), static_cast<size_t>(n));
        if (!sts) {
          return Unexpected(sts.error());
        }
        for (size_t k = 0; k < rs->size(); ++k) {
          const size_t index = static_cast<size_t>(j.cursor) + k;
          auto it = sts->find(index);
          cands.push_back({index, true, std::move((*rs)[k]), it == sts->end() ? RecipientStatus{} : it->second});
        }
      }
    }
    if (cands.empty()) {
      return maybe_complete(store, j, now);
    }
    // Recipients and statuses of the ones not read with the cursor.
    std::vector<size_t> scattered;
    for (const auto& cd : cands) {
      if (!cd.from_cursor) {
        scattered.push_back(cd.index);
      }
    }
    auto found = store.at(id, scattered);
    if (!found) {
      return Unexpected(found.error());
    }
    for (auto& cd : cands) {
      if (auto it = found->find(cd.index); !cd.from_cursor && it != found->end()) {
        cd.recipient = it->second.first;
        cd.status = it->second.second;
      }
    }
    std::vector<std::string> who;
    for (const auto& cd : cands) {
      who.push_back(cd.recipient.identity());
    }
    auto opted = store.opted_out(j.spec.phone_number_id, who);
    if (!opted) {
      return Unexpected(opted.error());
    }
    std::optional<QuietHours> quiet;
    if (!j.spec.quiet_hours.empty()) {
      if (auto q = parse_quiet_hours(j.spec.quiet_hours)) {
        quiet = *q;
      }
    }
    std::vector<Transition> decided;
    std::vector<const Candidate*> to_send;
    std::vector<const Candidate*> need_budget;
    std::vector<size_t> done_but_due;
    for (size_t k = 0; k < cands.size(); ++k) {
      const auto& cd = cands[k];
      if (cd.recipient.erased && !final_phase(cd.status.status) && cd.status.status != Phase::kSent &&
          cd.status.status != Phase::kDelivered && cd.status.status != Phase::kRead) {
        decided.push_back({id, cd.index, Op::kSkipped, 0, now, "", 0,
                           "erased: the person was forgotten (wafleet forget)", 0});
        continue;
      }
      if (cd.recipient.identity().empty() || final_phase(cd.status.status) ||
          cd.status.status == Phase::kSent || cd.status.status == Phase::kDelivered ||
          cd.status.status == Phase::kRead) {
        if (!cd.from_cursor) {
          done_but_due.push_back(cd.index);
        }
        continue;
      }
      if ((*opted)[k]) {
        decided.push_back({id, cd.index, Op::kSkipped, 0, now, "", 0,
                           "opted_out: the person asked to stop (STOP or 131050)", 0});
        continue;
      }
      if (quiet && !cd.recipient.tz.empty()) {
        if (auto off = utc_offset_minutes(cd.recipient.tz, now)) {
          if (const int64_t until = quiet_until(*quiet, *off, now); until > 0) {
            decided.push_back({id, cd.index, Op::kDefer, 0, now, "", 0, "quiet hours", until});
            continue;
          }
        }
      }
      need_budget.push_back(&cd);
    }
    if (auto st = store.drop_waiting(id, done_but_due); !st) {
      return st;
    }
    std::vector<std::string> people;
    for (const auto* cd : need_budget) {
      people.push_back(cd->recipient.identity());
    }
    auto reach = store.charge_reach(c_.portfolio, j.spec.phone_number_id, people, now,
                                    c_.budget_window_ms, c_.daily_limit);
    if (!reach) {
      return Unexpected(reach.error());
    }
    int64_t budget_until = 0;
    for (size_t k = 0; k < need_budget.size(); ++k) {
      if ((*reach)[k].allowed) {
        to_send.push_back(need_budget[k]);
      } else {
        budget_until = std::max(budget_until, (*reach)[k].retry_at_ms);
      }
    }
    for (size_t k = 0; k < need_budget.size(); ++k) {
      if (!(*reach)[k].allowed) {
        decided.push_back({id, need_budget[k]->index, Op::kDefer, 0, now, "", 0, "daily budget", budget_until});
      }
    }
    // Produce, wait for every acknowledgement, then record: a crash in between re-releases the
    // same keys, which the sender answers as duplicates.
    std::vector<char> ok(to_send.size(), 0);
    if (!to_send.empty()) {
      auto latch = std::make_shared<Latch>(to_send.size());
      auto acked = std::make_shared<std::vector<char>>(to_send.size(), 0);
      for (size_t k = 0; k < to_send.size(); ++k) {
        const auto& cd = *to_send[k];
        const int attempt = cd.status.attempt;
        const Json req = outbound_request(j.spec, cd.recipient, cd.index, attempt);
        ctx.producer().produce(topics::kOutbound, conversation_key(j.spec, cd.recipient), req.dump(),
                               {{"request_id", attempt_key(id, cd.index, attempt)}},
                               [latch, acked, k](const wafleet::Status& s, int32_t, int64_t) {
                                 (*acked)[k] = s ? 1 : 0;
                                 latch->done();
                               });
      }
      if (!latch->wait(std::chrono::seconds(30))) {
        return Unexpected(Error::transient("wa.outbound: produce not acknowledged in 30 s"));
      }
      ok = *acked;
    }
    bool all_ok = true;
    for (size_t k = 0; k < to_send.size(); ++k) {
      if (ok[k] == 0) {
        all_ok = false;
        continue;
      }
      decided.push_back({id, to_send[k]->index, Op::kRelease, to_send[k]->status.attempt, now, "", 0, "", 0});
    }
    auto applied = store.apply(decided);
    if (!applied) {
      return Unexpected(applied.error());
    }
    released_.Increment(static_cast<double>(std::count(ok.begin(), ok.end(), 1)));
    // The cursor moves over every recipient read from it (each now has a status), up to the
    // first one whose produce failed.
    std::set<const Candidate*> not_produced;
    for (size_t k = 0; k < to_send.size(); ++k) {
      if (ok[k] == 0) {
        not_produced.insert(to_send[k]);
      }
    }
    int64_t cursor = j.cursor;
    for (const auto& cd : cands) {
      if (!cd.from_cursor) {
        continue;
      }
      if (not_produced.count(&cd) != 0) {
        break;
      }
      cursor = static_cast<int64_t>(cd.index) + 1;
    }
    std::map<std::string, std::string> fields;
    if (cursor != j.cursor) {
      fields["cursor"] = std::to_string(cursor);
      j.cursor = cursor;
    }
    if (budget_until > 0) {
      budget_waits_.Increment();
      fields["wait_until_ms"] = std::to_string(budget_until);
      fields["wait_reason"] = "the portfolio's daily budget (" + std::to_string(c_.daily_limit) +
                              " people per 24 hours) is spent";
      log::info("bulk.budget_spent", {{"job_id", id}, {"until", format_iso8601(budget_until)}});
    }
    if (!fields.empty()) {
      if (auto st = store.set_fields(id, fields); !st) {
        return st;
      }
    }
    if (!all_ok) {
      return Unexpected(Error::transient("wa.outbound: some produces failed; retried"));
    }
    return {};
  }

  Status maybe_complete(Store& store, JobInfo& j, int64_t now) {
    if (j.cursor < j.total) {
      return {};
    }
    auto inflight = store.in_flight(j.spec.id);
    auto waiting = store.waiting(j.spec.id);
    if (!inflight || !waiting) {
      return Unexpected(!inflight ? inflight.error() : waiting.error());
    }
    if (*inflight > 0 || *waiting > 0) {
      return {};
    }
    auto moved = store.set_state(j.spec.id, State::kCompleted, {State::kInProgress}, "", now);
    if (!moved) {
      return Unexpected(moved.error());
    }
    if (*moved) {
      (void)finish(store, j.spec.id);  // on failure (logged) the terminal branch tries again
    }
    return {};
  }

  WorkerConfig c_;
  Clock clock_;
  std::string token_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> backing_off_;  // consumer thread only
  prometheus::Counter& released_;
  prometheus::Family<prometheus::Counter>& outcomes_;
  prometheus::Family<prometheus::Counter>& paused_;
  prometheus::Counter& budget_waits_;
  prometheus::Gauge& active_jobs_;
};

worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.consumes = {topics::kBulkCommands, topics::kOutboundResults, topics::kStatus,
                          topics::kAccountEvents};
  plan.wiring.produces = {topics::kOutbound};
  plan.wiring.fetch_wait_max_ms = 20;
  // Statuses of every message flow through here: a bounded read-ahead keeps the worker small.
  plan.wiring.consumer_properties = {{"queued.max.messages.kbytes", "16384"}};
  plan.build = worker::build<BulkCore>(c);
  plan.started = {{"portfolio", c.portfolio},
                  {"daily_limit", c.daily_limit},
                  {"number_rate", c.number_rate},
                  {"window", c.window()},
                  {"reports", c.storage == "s3" ? "s3://" + c.s3.bucket + "/" + c.s3.prefix + "reports/bulk/"
                                                : c.storage_dir + "/reports/bulk/"}};
  return plan;
}

}  // namespace

int64_t WorkerConfig::window() const {
  return std::max<int64_t>(min_window, static_cast<int64_t>(std::ceil(number_rate * static_cast<double>(release_ahead_ms) / 1000.0)));
}

WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c;
  c.portfolio = s.get("portfolio-id");
  const std::string limit = s.get("portfolio-daily-limit");
  c.daily_limit = limit == "unlimited" ? 0 : s.get_int("portfolio-daily-limit", errors);
  c.budget_window_ms = s.get_int("portfolio-window-ms", errors);
  c.number_rate = static_cast<double>(s.get_int("number-rate", errors));
  c.release_ahead_ms = s.get_int("release-ahead-ms", errors);
  c.retry_ms = s.get_int("retry-ms", errors);
  c.retry_131049_ms = s.get_int("retry-131049-ms", errors);
  c.max_attempts = static_cast<int>(s.get_int("max-attempts", errors));
  c.backoff_ms = s.get_int("backoff-ms", errors);
  c.backoff_max_ms = s.get_int("backoff-max-ms", errors);
  c.breaker_rate = static_cast<double>(s.get_int("breaker-failure-percent", errors)) / 100.0;
  c.breaker_min = static_cast<int>(s.get_int("breaker-min-outcomes", errors));
  c.stale_ms = s.get_int("stale-ms", errors);
  c.lease_ms = s.get_int("lease-ms", errors);
  c.tick_ms = s.get_int("tick-ms", errors);
  c.storage = s.get("storage");
  c.storage_dir = s.get("storage-dir");
  c.clock_offset_file = s.get("clock-offset-file");
  if (c.portfolio.empty()) {
    errors.push_back("WAFLEET_PORTFOLIO_ID: must not be empty");
  }
  if (c.number_rate <= 0 || c.release_ahead_ms <= 0) {
    errors.push_back("WAFLEET_NUMBER_RATE, WAFLEET_RELEASE_AHEAD_MS: must be > 0");
  }
  if (c.budget_window_ms <= 0 || c.retry_ms <= 0 || c.retry_131049_ms <= 0 || c.backoff_ms <= 0 ||
      c.backoff_max_ms < c.backoff_ms || c.stale_ms <= 0 || c.lease_ms <= 0 || c.tick_ms <= 0) {
    errors.push_back("bulk timings: portfolio-window-ms, retry-ms, retry-131049-ms, backoff-ms, "
                     "stale-ms, lease-ms, tick-ms > 0; backoff-max-ms >= backoff-ms");
  }
  if (c.max_attempts < 1) {
    errors.push_back("WAFLEET_MAX_ATTEMPTS: must be >= 1");
  }
  if (c.breaker_rate <= 0 || c.breaker_rate > 1 || c.breaker_min < 1) {
    errors.push_back("WAFLEET_BREAKER_FAILURE_PERCENT: 1..100; WAFLEET_BREAKER_MIN_OUTCOMES >= 1");
  }
  if (c.storage != "local" && c.storage != "s3") {
    errors.push_back("WAFLEET_STORAGE: expected local or s3, got '" + c.storage + "'");
  }
  if (c.storage == "s3") {
    c.s3 = media::parse_s3(s, c.storage_dir);
    for (const char* name : {"s3-endpoint", "s3-bucket", "s3-access-key", "s3-secret-key"}) {
      if (s.get(name).empty()) {
        errors.push_back(config::env_name(name) + ": required with WAFLEET_STORAGE=s3");
      }
    }
  }
  return c;
}

worker::Spec spec() { return {"bulk", "wafleet-bulk", own_options(), make_plan}; }

}  // namespace wafleet::bulk
