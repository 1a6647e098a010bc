#include "workers/cli/bulk.h"

#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/clock.h"
#include "common/consumer_loop.h"
#include "common/redis.h"
#include "topics/topics.h"
#include "workers/bulk/control.h"
#include "workers/bulk/job.h"
#include "workers/bulk/store.h"

namespace wafleet::cli {

namespace {

using Json = nlohmann::json;

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

int64_t env_int(const char* name, int64_t fallback) {
  const std::string v = env_or(name, "");
  if (v == "unlimited") {
    return 0;
  }
  try {
    return v.empty() ? fallback : std::stoll(v);
  } catch (...) {
    return fallback;
  }
}

bulk::Pacing pacing_from_env() {
  bulk::Pacing p;
  p.number_rate = static_cast<double>(env_int("WAFLEET_NUMBER_RATE", 70));
  p.daily_limit = env_int("WAFLEET_PORTFOLIO_DAILY_LIMIT", 250);
  p.portfolio = env_or("WAFLEET_PORTFOLIO_ID", "default");
  return p;
}

int create(const BulkArgs& a, bulk::Store& store, const std::string& brokers) {
  bulk::JobSpec spec;
  spec.name = a.name;
  spec.phone_number_id = a.phone_number_id;
  spec.template_name = a.template_name;
  spec.language = a.language;
  spec.category = a.category;
  spec.quiet_hours = a.quiet_hours;
  std::vector<std::string> problems = bulk::check_spec(spec, a.schedule);
  std::ifstream in(a.file, std::ios::binary);
  if (!in) {
    problems.push_back("file: cannot read " + a.file);
  }
  if (!problems.empty()) {
    for (auto p : problems) {
      for (size_t i = 0; i < p.size() && p[i] != ':'; ++i) {
        p[i] = p[i] == '_' ? '-' : p[i];  // the flag's name: --phone-number-id
      }
      std::cerr << "wafleet bulk create: --" << p << "\n";
    }
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto prepared = bulk::prepare(store, spec, ss.str(), pacing_from_env(), wall_clock_ms());
  if (!prepared) {
    std::cerr << "wafleet bulk create: "
              << (prepared.error().kind == ErrorKind::kInvalidInput ? a.file + ": " : std::string("redis: "))
              << prepared.error().message << "\n";
    return prepared.error().kind == ErrorKind::kInvalidInput ? 2 : 1;
  }
  const bulk::Validated& v = prepared->validated;
  std::ostream& out = a.dry_run ? std::cout : std::cerr;
  out << (a.dry_run ? "dry run: nothing was created\n" : "");
  out << "rows            " << v.rows << "\n"
      << "people to reach " << v.recipients.size() << "\n"
      << "left out        " << v.rejected.size() << "\n";
  for (const auto& [reason, n] : v.rejected_by_reason) {
    out << "  " << std::left << std::setw(18) << reason << n << "\n";
  }
  out << "time            " << prepared->estimate.text << "\n";
  if (a.dry_run) {
    size_t shown = 0;
    for (const auto& r : v.rejected) {
      if (r.reason != "duplicate" && shown++ < 20) {
        out << "  line " << r.line << ": " << r.reason << ": " << r.detail << "\n";
      }
    }
    return 0;
  }
  if (v.recipients.empty()) {
    std::cerr << "wafleet bulk create: nobody to send to; no job created\n";
    return 2;
  }
  if (brokers.empty()) {
    std::cerr << "wafleet bulk create: set WAFLEET_KAFKA_BROKERS or --kafka-brokers\n";
    return 2;
  }
  auto producer = kafka::Producer::create(kafka::ClientConfig{brokers, "wafleet-cli", {}});
  if (!producer) {
    std::cerr << "wafleet bulk create: " << producer.error().message << "\n";
    return 1;
  }
  if (auto st = bulk::launch(store, **producer, *prepared, env_or("USER", "cli"), wall_clock_ms()); !st) {
    std::cerr << "wafleet bulk create: " << st.error().message << "\n";
    return 1;
  }
  std::cout << prepared->spec.id << "\n";
  return 0;
}

int command(const BulkArgs& a, const std::string& verb, bulk::Store& store, const std::string& brokers) {
  auto job = store.job(a.job);
  if (!job) {
    std::cerr << "wafleet bulk " << verb << ": redis: " << job.error().message << "\n";
    return 1;
  }
  if (!*job) {
    std::cerr << "wafleet bulk " << verb << ": no job " << a.job << "\n";
    return 3;
  }
  if (const std::string refused = bulk::refusal(**job, verb); !refused.empty()) {
    std::cerr << "wafleet bulk " << verb << ": " << a.job << " is " << bulk::to_string((*job)->state)
              << ": " << refused << "\n";
    return 5;
  }
  if (brokers.empty()) {
    std::cerr << "wafleet bulk " << verb << ": set WAFLEET_KAFKA_BROKERS or --kafka-brokers\n";
    return 2;
  }
  auto producer = kafka::Producer::create(kafka::ClientConfig{brokers, "wafleet-cli", {}});
  if (!producer) {
    std::cerr << "wafleet bulk " << verb << ": " << producer.error().message << "\n";
    return 1;
  }
  if (auto st = bulk::send_command(store, **producer, a.job, verb, env_or("USER", "cli"), wall_clock_ms()); !st) {
    std::cerr << "wafleet bulk " << verb << ": " << st.error().message << "\n";
    return 1;
  }
  const auto before = **job;
  auto applied = [&](const bulk::JobInfo& j) {
    if (verb == "pause") {
      return j.state == bulk::State::kPaused || bulk::terminal(j.state);
    }
    if (verb == "resume") {
      return j.state != bulk::State::kPaused;
    }
    if (verb == "cancel") {
      return bulk::terminal(j.state);
    }
    return j.count(bulk::Phase::kFailed) < before.count(bulk::Phase::kFailed) ||
           before.count(bulk::Phase::kFailed) == 0;
  };
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(a.wait_s);
  while (std::chrono::steady_clock::now() < until) {
    auto now = store.job(a.job);
    if (now && *now && applied(**now)) {
      std::cout << (*now)->progress_line() << "\n";
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "wafleet bulk " << verb << ": the command is on wa.bulk.commands, but no worker "
               "applied it within " << a.wait_s << " s (is wafleet-bulk running?); it will be "
               "applied when one does\n";
  return 4;
}

int show(const BulkArgs& a, bulk::Store& store) {
  for (;;) {
    auto job = store.job(a.job);
    if (!job) {
      std::cerr << "wafleet bulk show: redis: " << job.error().message << "\n";
      return 1;
    }
    if (!*job) {
      std::cerr << "wafleet bulk show: no job " << a.job << "\n";
      return 3;
    }
    if (a.watch) {
      std::cout << (*job)->progress_line() << std::endl;
      if (bulk::terminal((*job)->state)) {
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    std::cout << (*job)->to_json().dump(2) << "\n";
    return 0;
  }
}

int list(const BulkArgs& a, bulk::Store& store) {
  auto jobs = store.list(static_cast<size_t>(a.limit));
  if (!jobs) {
    std::cerr << "wafleet bulk ls: redis: " << jobs.error().message << "\n";
    return 1;
  }
  if (a.json) {
    Json out = Json::array();
    for (const auto& j : *jobs) {
      out.push_back(j.to_json());
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << std::left << std::setw(21) << "JOB" << std::setw(13) << "STATE" << std::setw(24)
            << "NAME" << std::right << std::setw(9) << "TOTAL" << std::setw(9) << "SENT"
            << std::setw(9) << "FAILED" << "  CREATED\n";
  for (const auto& j : *jobs) {
    std::cout << std::left << std::setw(21) << j.spec.id << std::setw(13) << bulk::to_string(j.state)
              << std::setw(24) << j.spec.name.substr(0, 23) << std::right << std::setw(9) << j.total
              << std::setw(9) << j.sent_total() << std::setw(9) << j.count(bulk::Phase::kFailed)
              << "  " << format_iso8601(j.created_ms) << "\n";
  }
  return 0;
}

int report(const BulkArgs& a, bulk::Store& store) {
  auto job = store.job(a.job);
  if (!job || !*job) {
    std::cerr << "wafleet bulk report: " << (job ? "no job " + a.job : "redis: " + job.error().message) << "\n";
    return job ? 3 : 1;
  }
  auto write = [&](std::ostream& out) {
    return a.format == "json" ? bulk::report_json(store, **job, out) : bulk::report_csv(store, **job, out);
  };
  if (a.out.empty()) {
    if (auto st = write(std::cout); !st) {
      std::cerr << "wafleet bulk report: " << st.error().message << "\n";
      return 1;
    }
    return 0;
  }
  std::ofstream f(a.out, std::ios::binary | std::ios::trunc);
  auto st = write(f);
  f.close();
  if (!st || !f) {
    std::cerr << "wafleet bulk report: " << (st ? "cannot write " + a.out : st.error().message) << "\n";
    return 1;
  }
  std::cerr << "wrote " << a.out << "\n";
  return 0;
}

}  // namespace

void add_bulk_commands(CLI::App& app, BulkArgs& a) {
  auto* cmd = app.add_subcommand("bulk", "bulk campaigns: templates to a list, paced and once each");
  cmd->require_subcommand(1);
  a.redis_url = env_or("WAFLEET_REDIS_URL", "redis://127.0.0.1:6379/0");
  cmd->add_option("--redis-url", a.redis_url, "Redis (WAFLEET_REDIS_URL)");
  a.create = cmd->add_subcommand("create", "validate a CSV/JSON list and start a job (prints its id)");
  a.create->add_option("--file", a.file, "recipients: CSV with a header row (to, body.1.., "
                                         "body.<name>, header.image|video|document|text, "
                                         "button.<index>, tz) or JSON")->required();
  a.create->add_option("--phone-number-id", a.phone_number_id, "the business number to send from")->required();
  a.create->add_option("--template", a.template_name, "approved template name")->required();
  a.create->add_option("--language", a.language, "template language code, e.g. en_US")->required();
  a.create->add_option("--name", a.name, "the job's name (default: the template's)");
  a.create->add_option("--schedule", a.schedule, "start at this time (ISO-8601, e.g. 2026-12-24T09:00:00Z)");
  a.create->add_option("--category", a.category, "the template's category: marketing | utility | authentication");
  a.create->add_option("--quiet-hours", a.quiet_hours, "HH:MM-HH:MM in each recipient's tz column: "
                                                       "nobody is sent to then");
  a.create->add_flag("--dry-run", a.dry_run, "validate and estimate only: counts per reason, "
                                             "people, time at today's limits");
  a.ls = cmd->add_subcommand("ls", "jobs, newest first");
  a.ls->add_option("--limit", a.limit, "at most this many");
  a.ls->add_flag("--json", a.json, "as JSON");
  a.show = cmd->add_subcommand("show", "one job's state and counts");
  a.show->add_flag("--watch", a.watch, "a progress line every second until the job ends");
  a.pause = cmd->add_subcommand("pause", "stop releasing (takes effect within a second)");
  a.resume = cmd->add_subcommand("resume", "go on after a pause");
  a.cancel = cmd->add_subcommand("cancel", "stop for good; the unsent are cancelled in the report");
  a.retry_failed = cmd->add_subcommand("retry-failed", "try the failed recipients again (not uncertain ones)");
  a.report = cmd->add_subcommand("report", "every recipient's status, as CSV or JSON");
  a.report->add_option("--format", a.format, "csv | json")->check(CLI::IsMember({"csv", "json"}));
  a.report->add_option("--out", a.out, "write to this file instead of stdout");
  for (auto* sub : {a.show, a.pause, a.resume, a.cancel, a.retry_failed, a.report}) {
    sub->add_option("job", a.job, "job id (bj_...)")->required();
  }
  for (auto* sub : {a.pause, a.resume, a.cancel, a.retry_failed}) {
    sub->add_option("--wait", a.wait_s, "seconds to wait for a worker to apply it");
  }
}

bool bulk_parsed(const BulkArgs& a) {
  for (auto* sub : {a.create, a.ls, a.show, a.pause, a.resume, a.cancel, a.report, a.retry_failed}) {
    if (sub != nullptr && sub->parsed()) {
      return true;
    }
  }
  return false;
}

int run_bulk(const BulkArgs& a, const std::string& brokers) {
  auto opts = redis::parse_url(a.redis_url);
  if (!opts) {
    std::cerr << "wafleet bulk: WAFLEET_REDIS_URL: " << opts.error().message << "\n";
    return 2;
  }
  redis::RedisClient redis(*opts);
  bulk::Store store(redis);
  if (!a.job.empty() && !bulk::valid_job_id(a.job)) {
    std::cerr << "wafleet bulk: '" << a.job << "' is not a job id (bj_ and 16 hex digits)\n";
    return 2;
  }
  if (a.create->parsed()) {
    return create(a, store, brokers);
  }
  if (a.ls->parsed()) {
    return list(a, store);
  }
  if (a.show->parsed()) {
    return show(a, store);
  }
  if (a.report->parsed()) {
    return report(a, store);
  }
  for (auto [sub, verb] : {std::pair{a.pause, "pause"}, {a.resume, "resume"}, {a.cancel, "cancel"},
                           {a.retry_failed, "retry-failed"}}) {
    if (sub->parsed()) {
      return command(a, verb, store, brokers);
    }
  }
  return 0;
}

}  // namespace wafleet::cli
