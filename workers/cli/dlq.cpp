#include "workers/cli/dlq.h"

#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "common/clock.h"
#include "common/log.h"
#include "workers/replay/replay.h"

namespace wafleet::cli {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// WAFLEET_X, or the contents of the file WAFLEET_X_FILE names (first line).
std::string secret_from_env(const std::string& name) {
  std::string v = env(name.c_str());
  if (v.empty() && !env((name + "_FILE").c_str()).empty()) {
    std::ifstream in(env((name + "_FILE").c_str()));
    std::getline(in, v);
  }
  if (auto comma = v.find(','); comma != std::string::npos) {
    v.resize(comma);  // several secrets (rotation): the first one signs
  }
  return v;
}

std::string default_actor() {
  std::string user = env("USER");
  if (user.empty()) {
    if (const passwd* pw = getpwuid(getuid())) {
      user = pw->pw_name;
    }
  }
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return (user.empty() ? "unknown" : user) + "@" + host;
}

std::string age(int64_t since_ms, int64_t now_ms) {
  const int64_t s = std::max<int64_t>(0, (now_ms - since_ms) / 1000);
  if (s < 120) {
    return std::to_string(s) + "s";
  }
  if (s < 7200) {
    return std::to_string(s / 60) + "m";
  }
  if (s < 172800) {
    return std::to_string(s / 3600) + "h";
  }
  return std::to_string(s / 86400) + "d";
}

std::string one_line(std::string s, size_t max) {
  for (auto& c : s) {
    c = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  return s.size() > max ? s.substr(0, max - 3) + "..." : s;
}

// A value as a person can read it: JSON indented, text as is, other bytes escaped.
std::string readable(const std::string& value) {
  auto j = nlohmann::json::parse(value, nullptr, false);
  if (!j.is_discarded()) {
    return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string out;
  for (unsigned char c : value) {
    if (c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f)) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

Expected<replay::Filter, std::string> filter_from(const DlqArgs& a, int64_t now) {
  replay::Filter f;
  if (!a.since.empty()) {
    auto t = replay::parse_time(a.since, now);
    if (!t) {
      return Unexpected("--since: " + t.error());
    }
    f.since_ms = *t;
  }
  if (!a.until.empty()) {
    auto t = replay::parse_time(a.until, now);
    if (!t) {
      return Unexpected("--until: " + t.error());
    }
    f.until_ms = *t;
  }
  static const std::set<std::string> kClasses = {"transient", "permanent", "invalid_input",
                                                 "fatal"};
  for (const auto& c : a.error_classes) {
    if (!kClasses.count(c)) {
      return Unexpected("--error-class: '" + c +
                        "' is not one of transient, permanent, invalid_input, fatal");
    }
    f.error_classes.insert(c);
  }
  f.workers.insert(a.workers.begin(), a.workers.end());
  f.topics.insert(a.topics.begin(), a.topics.end());
  if (!a.key.empty()) {
    f.key = a.key;
  }
  if (a.from_offset >= 0) {
    f.from_offset = a.from_offset;
  }
  if (a.to_offset >= 0) {
    f.to_offset = a.to_offset;
  }
  if (f.from_offset && f.to_offset && *f.from_offset > *f.to_offset) {
    return Unexpected(std::string("--from-offset is after --to-offset"));
  }
  return f;
}

void add_filters(CLI::App* c, DlqArgs& a) {
  c->add_option("--topic", a.topic, "dead-letter topic to read (wa.dlq, or wa.dlq.parked)");
  c->add_option("--since", a.since, "dead-lettered at or after: 30m, 2h, 7d (ago), epoch ms, "
                                    "or 2026-11-22T10:00:00Z");
  c->add_option("--until", a.until, "dead-lettered before (same forms)");
  c->add_option("--error-class", a.error_classes,
                "transient | permanent | invalid_input (repeat or comma-separate)")
      ->delimiter(',');
  c->add_option("--worker", a.workers, "receiver, aggregator, media, sender (repeatable)")
      ->delimiter(',');
  c->add_option("--original-topic", a.topics, "e.g. wa.inbound, http:/webhook (repeatable)")
      ->delimiter(',');
  c->add_option("--key", a.key, "the original key (phone_number_id:sender)");
  c->add_option("--from-offset", a.from_offset, "original offset, inclusive");
  c->add_option("--to-offset", a.to_offset, "original offset, inclusive");
}

int with_redis(const DlqArgs& a, std::unique_ptr<redis::RedisClient>& out) {
  auto opts = redis::parse_url(a.redis_url);
  if (!opts) {
    std::cerr << "wafleet dlq: WAFLEET_REDIS_URL: " << opts.error().message << "\n";
    return 2;
  }
  out = std::make_unique<redis::RedisClient>(*opts);
  if (auto p = out->command({"PING"}); !p || p->is_error()) {
    std::cerr << "wafleet dlq: redis " << a.redis_url << " unavailable"
              << (p ? "" : ": " + p.error().message)
              << " (the replay ledger lives there)\n";
    return 1;
  }
  return 0;
}

void print_line(const replay::Entry& e, int64_t now, const std::string& state) {
  const auto& d = e.letter;
  std::cout << e.record.partition << ":" << e.record.offset << "  " << age(d.last_failure_ms, now)
            << "  " << d.worker << "/" << d.stage << "  " << d.error_class << "  "
            << d.original_topic;
  if (d.original_partition >= 0) {
    std::cout << " p" << d.original_partition << "@" << d.original_offset;
  }
  std::cout << "  key=" << (d.original_key.empty() ? "-" : log::redact_digits(d.original_key))
            << "  replays=" << d.replay_count;
  if (!state.empty()) {
    std::cout << "  " << state;
  }
  std::cout << "  " << one_line(log::redact_digits(d.error_message), 100) << "\n";
}

int run_ls(const DlqArgs& a, const replay::Scan& scan, const replay::Filter& f, int64_t now) {
  std::unique_ptr<redis::RedisClient> redis;
  size_t shown = 0;
  std::cout << "# " << a.topic << ": partition:offset  age  worker/stage  class  original  key"
            << "  replays  [state]  reason\n";
  for (const auto& e : scan.entries) {
    if (!f.matches(e.letter)) {
      continue;
    }
    std::string state;
    if (!a.redis_url.empty() && a.topic == "wa.dlq") {
      if (!redis) {
        auto opts = redis::parse_url(a.redis_url);
        if (opts) {
          redis = std::make_unique<redis::RedisClient>(*opts);
        }
      }
      if (redis) {
        auto got = redis->command({"GET", "dlq:done:{" + e.record.topic + "}:" +
                                              std::to_string(e.record.partition) + ":" +
                                              std::to_string(e.record.offset)});
        if (got && !got->is_error()) {
          state = got->is_nil() ? "waiting" : got->str.substr(0, got->str.find(' '));
        }
      }
    }
    print_line(e, now, state);
    if (a.limit > 0 && static_cast<int64_t>(++shown) >= a.limit) {
      break;
    }
  }
  for (const auto& [r, why] : scan.malformed) {
    std::cout << r.partition << ":" << r.offset << "  NOT A DEAD LETTER: " << why << "\n";
  }
  return 0;
}

int run_show(const DlqArgs& a, const kafka::ClientConfig& kc) {
  const auto colon = a.where.find(':');
  int32_t partition = -1;
  int64_t offset = -1;
  try {
    partition = std::stoi(a.where.substr(0, colon));
    offset = std::stoll(a.where.substr(colon + 1));
  } catch (const std::exception&) {
  }
  if (colon == std::string::npos || partition < 0 || offset < 0) {
    std::cerr << "wafleet dlq show: expected <partition>:<offset> (as `wafleet dlq ls` prints), "
                 "got '" << a.where << "'\n";
    return 2;
  }
  std::optional<kafka::Record> found;
  Status s = kafka::read_topic(
      kc, a.topic,
      [&](const kafka::Record& r) {
        if (r.partition == partition && r.offset == offset) {
          found = r;
          return false;
        }
        return true;
      },
      std::chrono::seconds(a.timeout_s));
  if (!s) {
    std::cerr << "wafleet dlq show: " << s.error().message << "\n";
    return 1;
  }
  if (!found) {
    std::cerr << "wafleet dlq show: no record at " << a.topic << " " << a.where << "\n";
    return 3;
  }
  std::cout << "record   " << a.topic << " " << partition << ":" << offset << "  (written "
            << age(found->timestamp_ms, wall_clock_ms()) << " ago)\n";
  std::cout << "key      " << (found->key.empty() ? "(none)" : found->key) << "\n";
  auto d = dlq::from_headers(found->headers);
  if (!d) {
    std::cout << "context  NOT A DEAD LETTER: " << d.error() << "\n";
  }
  std::cout << "headers\n";
  for (const auto& [k, v] : found->headers) {
    std::cout << "  " << k << ": " << v;
    if ((k.ends_with(".ms")) && !v.empty() && v.find_first_not_of("0123456789") == std::string::npos) {
      const std::time_t t = static_cast<std::time_t>(std::stoll(v) / 1000);
      char buf[32];
      std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
      std::cout << "  (" << buf << ")";
    }
    std::cout << "\n";
  }
  std::cout << "value (" << found->value.size() << " bytes)\n" << readable(found->value) << "\n";
  return 0;
}

int run_stats(const DlqArgs& a, const replay::Scan& scan, const replay::Filter& f, int64_t now) {
  const nlohmann::json st = replay::stats(scan, f, now);
  const int64_t total = st["total"];
  std::cout << a.topic << ": " << total << " dead letter(s)";
  if (total > 0) {
    std::cout << ", oldest " << age(st["oldest_ms"], now) << " ago, newest "
              << age(st["newest_ms"], now) << " ago, " << st["failed_again"].get<int64_t>()
              << " failed again after a replay";
  }
  std::cout << "\n";
  auto group = [&](const char* title, const char* field) {
    std::cout << title << "\n";
    for (const auto& [k, n] : st[field].items()) {
      if (n.get<int64_t>() > 0) {
        std::cout << "  " << k << "\t" << n.get<int64_t>() << "\n";
      }
    }
  };
  group("by error class", "by_error_class");
  group("by worker/stage", "by_worker");
  group("by original topic", "by_original_topic");
  group("by age", "by_age");
  if (!scan.malformed.empty()) {
    std::cout << "not dead letters (no dlq.* context)\t" << scan.malformed.size() << "\n";
  }
  return 0;
}

int run_replay(const DlqArgs& a, const kafka::ClientConfig& kc, const replay::Scan& scan,
               const replay::Filter& f) {
  std::vector<const replay::Entry*> matched;
  for (const auto& e : scan.entries) {
    if (f.matches(e.letter)) {
      matched.push_back(&e);
    }
  }
  if (f.empty() && !a.yes && !a.dry_run) {
    if (!isatty(STDIN_FILENO)) {
      std::cerr << "wafleet dlq replay: no filter selects the whole of " << a.topic << " ("
                << matched.size()
                << " dead letters): add --yes to confirm, or narrow it with a filter\n";
      return 2;
    }
    std::cerr << "Replay every one of the " << matched.size() << " dead letters in " << a.topic
              << "? [y/N] ";
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      std::cerr << "wafleet dlq replay: not confirmed, nothing replayed\n";
      return 2;
    }
  }
  std::unique_ptr<redis::RedisClient> redis;
  if (int rc = with_redis(a, redis); rc != 0) {
    return rc;
  }
  kafka::ProducerOptions po;
  po.linger_ms = 0;
  auto producer = kafka::Producer::create(kc, po);
  if (!producer) {
    std::cerr << "wafleet dlq replay: " << producer.error().message << "\n";
    return 1;
  }
  replay::Options o;
  o.dlq_topic = a.topic;
  o.max_replays = a.max_replays;
  o.actor = a.actor.empty() ? default_actor() : a.actor;
  o.mode = "cli";
  o.receiver_url = a.receiver_url;
  o.app_secret = secret_from_env("WAFLEET_APP_SECRET");
  replay::Replayer replayer(**producer, *redis, o);
  replay::Counts counts;
  std::vector<std::string> taken;
  const auto interval = a.rate > 0 ? std::chrono::microseconds(static_cast<int64_t>(1e6 / a.rate))
                                   : std::chrono::microseconds(0);
  auto next = std::chrono::steady_clock::now();
  const char* verb = a.dry_run ? "would " : "";
  for (const auto* e : matched) {
    ++counts.matched;
    auto plan = replayer.plan(*e);
    if (!plan) {
      std::cerr << "wafleet dlq replay: " << plan.error().message << "\n";
      ++counts.failed;
      break;
    }
    const std::string where = std::to_string(e->record.partition) + ":" +
                              std::to_string(e->record.offset);
    if (plan->action == replay::Action::kAlreadyDone) {
      ++counts.already_replayed;
      std::cout << where << "  skip: already " << plan->why << "\n";
      continue;
    }
    if (plan->action == replay::Action::kUnreplayable) {
      ++counts.unreplayable;
      std::cout << where << "  skip: " << plan->why << "\n";
      continue;
    }
    if (a.limit > 0 && counts.replayed + counts.parked >= a.limit) {
      --counts.matched;  // left for another run
      break;
    }
    if (!a.dry_run) {
      std::this_thread::sleep_until(next);
      next = std::max(next + interval, std::chrono::steady_clock::now());
      if (Status s = replayer.apply(*e, *plan); !s) {
        ++counts.failed;
        std::cout << where << "  FAILED: " << s.error().message << "\n";
        continue;
      }
      taken.push_back(where);
    }
    (plan->action == replay::Action::kPark ? counts.parked : counts.replayed) += 1;
    std::cout << where << "  " << verb
              << (plan->action == replay::Action::kPark ? "park to " : "replay to ")
              << plan->target << "  key=" << log::redact_digits(e->record.key)
              << (plan->why.empty() ? "" : "  (" + plan->why + ")") << "\n";
  }
  std::cout << (a.dry_run ? "dry run, nothing written: " : "") << counts.to_json().dump() << "\n";
  if (!a.dry_run) {
    if (Status s = replayer.audit(f.to_json(), counts, taken, false); !s) {
      std::cerr << "wafleet dlq replay: the audit record was not written: "
                << s.error().message << "\n";
      return 1;
    }
  }
  return counts.failed == 0 ? 0 : 1;
}

}  // namespace

void add_dlq_commands(CLI::App& app, DlqArgs& a) {
  a.cmd = app.add_subcommand("dlq", "inspect and replay dead letters");
  a.cmd->require_subcommand(1);
  a.redis_url = env("WAFLEET_REDIS_URL").empty() ? "redis://127.0.0.1:6379/0"
                                                 : env("WAFLEET_REDIS_URL");
  a.ls = a.cmd->add_subcommand("ls", "one line per dead letter");
  add_filters(a.ls, a);
  a.ls->add_option("--limit", a.limit, "show at most this many");
  a.ls->add_option("--redis-url", a.redis_url, "to show what was replayed (WAFLEET_REDIS_URL)");
  a.show = a.cmd->add_subcommand("show", "one dead letter: every header and a readable value");
  a.show->add_option("where", a.where, "<partition>:<offset>, as ls prints")->required();
  a.show->add_option("--topic", a.topic, "dead-letter topic (wa.dlq, or wa.dlq.parked)");
  a.stats = a.cmd->add_subcommand("stats", "counts by error class, worker, original topic, age");
  add_filters(a.stats, a);
  a.replay = a.cmd->add_subcommand(
      "replay", "send dead letters back to their original topic (each once; audited)");
  add_filters(a.replay, a);
  a.replay->add_flag("--dry-run", a.dry_run, "print what would be replayed; write nothing");
  a.replay->add_flag("--yes", a.yes, "confirm a replay without any filter (the whole DLQ)");
  a.replay->add_option("--rate", a.rate, "records per second at most (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  a.replay->add_option("--limit", a.limit, "replay (or park) at most this many")
      ->check(CLI::NonNegativeNumber);
  a.replay->add_option("--max-replays", a.max_replays,
                       "a dead letter already replayed this often is parked instead")
      ->check(CLI::Range(1, 1000));
  a.replay->add_option("--actor", a.actor, "who, for the audit record (default user@host)");
  a.replay->add_option("--receiver-url", a.receiver_url,
                       "receiver base URL (http://host:port) for webhook bodies the receiver "
                       "dead-lettered; signed with WAFLEET_APP_SECRET");
  a.replay->add_option("--redis-url", a.redis_url, "the replay ledger (WAFLEET_REDIS_URL)");
  for (auto* c : {a.ls, a.show, a.stats, a.replay}) {
    c->add_option("--timeout", a.timeout_s, "seconds to wait for the cluster");
  }
}

bool dlq_parsed(const DlqArgs& a) { return a.cmd != nullptr && a.cmd->parsed(); }

int run_dlq(const DlqArgs& a, const kafka::ClientConfig& kc) {
  if (a.show->parsed()) {
    return run_show(a, kc);
  }
  const int64_t now = wall_clock_ms();
  auto f = filter_from(a, now);
  if (!f) {
    std::cerr << "wafleet dlq: " << f.error() << "\n";
    return 2;
  }
  auto scan = replay::scan(kc, a.topic, std::chrono::seconds(a.timeout_s));
  if (!scan) {
    std::cerr << "wafleet dlq: " << scan.error().message << "\n";
    return 1;
  }
  if (a.ls->parsed()) {
    return run_ls(a, *scan, *f, now);
  }
  if (a.stats->parsed()) {
    return run_stats(a, *scan, *f, now);
  }
  return run_replay(a, kc, *scan, *f);
}

}  // namespace wafleet::cli
