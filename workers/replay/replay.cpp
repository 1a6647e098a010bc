#include "workers/replay/replay.h"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <future>
#include <map>

#include "common/clock.h"
#include "common/consumer_loop.h"
#include "common/crypto.h"
#include "common/http_client.h"
#include "common/log.h"

namespace wafleet::replay {
namespace {

nlohmann::json set_json(const std::set<std::string>& s) { return nlohmann::json(s); }

}  // namespace

const char* to_string(Action a) {
  switch (a) {
    case Action::kReplay:
      return "replay";
    case Action::kPark:
      return "park";
    case Action::kAlreadyDone:
      return "already_replayed";
    case Action::kUnreplayable:
      return "unreplayable";
  }
  return "unknown";
}

bool Filter::empty() const {
  return !since_ms && !until_ms && error_classes.empty() && workers.empty() && topics.empty() &&
         !key && !from_offset && !to_offset;
}

bool Filter::matches(const dlq::DeadLetter& d) const {
  if (since_ms && d.last_failure_ms < *since_ms) {
    return false;
  }
  if (until_ms && d.last_failure_ms >= *until_ms) {
    return false;
  }
  if (!error_classes.empty() && !error_classes.count(d.error_class)) {
    return false;
  }
  if (!workers.empty() && !workers.count(d.worker)) {
    return false;
  }
  if (!topics.empty() && !topics.count(d.original_topic)) {
    return false;
  }
  if (key && d.original_key != *key) {
    return false;
  }
  if (from_offset && d.original_offset < *from_offset) {
    return false;
  }
  if (to_offset && d.original_offset > *to_offset) {
    return false;
  }
  return true;
}

nlohmann::json Filter::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  if (since_ms) {
    j["since_ms"] = *since_ms;
  }
  if (until_ms) {
    j["until_ms"] = *until_ms;
  }
  if (!error_classes.empty()) {
    j["error_class"] = set_json(error_classes);
  }
  if (!workers.empty()) {
    j["worker"] = set_json(workers);
  }
  if (!topics.empty()) {
    j["original_topic"] = set_json(topics);
  }
  if (key) {
    j["key"] = *key;
  }
  if (from_offset) {
    j["from_offset"] = *from_offset;
  }
  if (to_offset) {
    j["to_offset"] = *to_offset;
  }
  return j;
}

nlohmann::json Counts::to_json() const {
  return {{"matched", matched},   {"replayed", replayed},         {"parked", parked},
          {"already_replayed", already_replayed}, {"unreplayable", unreplayable},
          {"failed", failed}};
}

Result<Scan> scan(const kafka::ClientConfig& config, const std::string& topic,
                  std::chrono::milliseconds timeout) {
  Scan out;
  Status s = kafka::read_topic(
      config, topic,
      [&](const kafka::Record& r) {
        auto d = dlq::from_headers(r.headers);
        if (d) {
          out.entries.push_back({r, std::move(d).value()});
        } else {
          out.malformed.emplace_back(r, d.error());
        }
        return true;
      },
      timeout);
  if (!s) {
    return Unexpected(s.error());
  }
  return out;
}

Replayer::Replayer(kafka::Producer& producer, redis::RedisClient& redis, Options options)
    : producer_(producer), redis_(redis), options_(std::move(options)) {}

std::string Replayer::ledger_key(const kafka::Record& r) const {
  return "dlq:done:{" + r.topic + "}:" + std::to_string(r.partition) + ":" +
         std::to_string(r.offset);
}

kafka::Headers Replayer::replay_headers(const Entry& e, const std::string& dlq_topic) {
  kafka::Headers h;
  for (const auto& [k, v] : e.letter.original_headers) {
    if (k != dlq::kReplayCountHeader && k != dlq::kReplayOfHeader) {
      h.emplace_back(k, v);
    }
  }
  h.emplace_back(dlq::kReplayCountHeader, std::to_string(e.letter.replay_count + 1));
  h.emplace_back(dlq::kReplayOfHeader, dlq_topic + ":" + std::to_string(e.record.partition) +
                                           ":" + std::to_string(e.record.offset));
  return h;
}

Result<Plan> Replayer::plan(const Entry& e) {
  auto done = redis_.command({"GET", ledger_key(e.record)});
  if (!done) {
    return Unexpected(done.error());
  }
  if (!done->is_nil()) {
    return Plan{Action::kAlreadyDone, "", done->str};
  }
  if (e.letter.replay_count >= options_.max_replays) {
    return Plan{Action::kPark, options_.parking_topic,
                "replayed " + std::to_string(e.letter.replay_count) + " times (cap " +
                    std::to_string(options_.max_replays) + ")"};
  }
  const std::string& topic = e.letter.original_topic;
  if (topic.rfind("http:", 0) == 0) {
    if (options_.receiver_url.empty() || options_.app_secret.empty()) {
      return Plan{Action::kUnreplayable, "",
                  "a webhook body: replaying it needs --receiver-url and the app secret"};
    }
    return Plan{Action::kReplay, options_.receiver_url + topic.substr(5), ""};
  }
  if (e.record.value.empty() && e.record.key.empty()) {
    return Plan{Action::kUnreplayable, "", "no key and no value"};
  }
  return Plan{Action::kReplay, topic, ""};
}

Status Replayer::replay_http(const Entry& e) {
  const std::string url = options_.receiver_url + e.letter.original_topic.substr(5);
  std::string content_type = "application/json";
  for (const auto& [k, v] : e.letter.extra) {
    if (k == "dlq.http.content_type" && !v.empty()) {
      content_type = v;
    }
  }
  auto res = http::fetch(
      "POST", url,
      {{"Content-Type", content_type},
       {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(options_.app_secret,
                                                                     e.record.value)},
       {"X-Wafleet-Replay", std::to_string(e.letter.replay_count + 1)}},
      e.record.value, std::chrono::seconds(15));
  if (!res) {
    return Unexpected(Error::transient("receiver " + url + ": " + res.error().message));
  }
  if (res->status != 200) {
    return Unexpected(Error::transient("receiver " + url + " answered " +
                                       std::to_string(res->status)));
  }
  return {};
}

Status Replayer::apply(const Entry& e, const Plan& p) {
  if (p.action == Action::kAlreadyDone || p.action == Action::kUnreplayable) {
    return {};
  }
  std::string ledger_value;
  if (p.action == Action::kPark) {
    kafka::Headers h = e.record.headers;
    h.emplace_back("dlq.parked.reason", p.why);
    h.emplace_back("dlq.parked.ms", std::to_string(wall_clock_ms()));
    h.emplace_back("dlq.parked.from", e.record.topic + ":" + std::to_string(e.record.partition) +
                                          ":" + std::to_string(e.record.offset));
    if (Status s = kafka::produce_and_wait(producer_, options_.parking_topic, e.record.key,
                                           e.record.value, h);
        !s) {
      return s;
    }
    ledger_value = "parked:" + options_.parking_topic;
  } else if (e.letter.original_topic.rfind("http:", 0) == 0) {
    if (Status s = replay_http(e); !s) {
      return s;
    }
    ledger_value = "replayed:" + p.target;
  } else {
    if (Status s = kafka::produce_and_wait(producer_, e.letter.original_topic, e.record.key,
                                           e.record.value, replay_headers(e, e.record.topic));
        !s) {
      return s;
    }
    ledger_value = "replayed:" + e.letter.original_topic;
  }
  ledger_value += " by " + options_.actor + " at " + std::to_string(wall_clock_ms());
  // After the acknowledgement: a crash before this line replays the record once more, which
  // the consumers' dedupe absorbs; the other order could lose it.
  auto marked = redis_.command({"SET", ledger_key(e.record), ledger_value, "PX",
                                std::to_string(options_.ledger_ttl_ms)});
  if (!marked || marked->is_error()) {
    log::warn("replay.ledger_failed",
              {{"dlq_offset", e.record.offset},
               {"reason", marked ? marked->str : marked.error().message}});
  }
  return {};
}

Status Replayer::audit(const nlohmann::json& filter, const Counts& counts,
                       const std::vector<std::string>& taken, bool dry_run) {
  nlohmann::json rec = {{"actor", options_.actor},
                        {"mode", options_.mode},
                        {"at_ms", wall_clock_ms()},
                        {"dlq_topic", options_.dlq_topic},
                        {"filter", filter},
                        {"dry_run", dry_run},
                        {"max_replays", options_.max_replays},
                        {"counts", counts.to_json()}};
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < taken.size() && i < 10000; ++i) {
    list.push_back(taken[i]);
  }
  rec["dead_letters"] = std::move(list);
  rec["dead_letters_listed_all"] = taken.size() <= 10000;
  return kafka::produce_and_wait(producer_, options_.audit_topic, options_.actor, rec.dump());
}

Expected<int64_t, std::string> parse_time(const std::string& text, int64_t now_ms) {
  if (text.empty()) {
    return Unexpected(std::string("empty time"));
  }
  const char unit = text.back();
  int64_t n = 0;
  auto digits = [&](const std::string& s) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    return ec == std::errc{} && end == s.data() + s.size() && n >= 0;
  };
  const std::string head = text.substr(0, text.size() - 1);
  if ((unit == 's' || unit == 'm' || unit == 'h' || unit == 'd') && digits(head)) {
    const int64_t per = unit == 's' ? 1000 : unit == 'm' ? 60000 : unit == 'h' ? 3600000 : 86400000;
    return now_ms - n * per;
  }
  if (digits(text)) {
    return n;  // epoch milliseconds
  }
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end != nullptr && (*end == '\0' || std::string(end) == "Z")) {
    return static_cast<int64_t>(timegm(&tm)) * 1000;
  }
  return Unexpected("'" + text +
                    "' is not a time: use 30m/2h/7d (ago), epoch milliseconds, or "
                    "2026-11-22T10:00:00Z");
}

nlohmann::json stats(const Scan& scan, const Filter& filter, int64_t now_ms) {
  std::map<std::string, int64_t> by_class, by_worker, by_topic;
  std::map<std::string, int64_t> by_age = {{"<1h", 0}, {"1h-24h", 0}, {"1d-7d", 0}, {">7d", 0}};
  int64_t total = 0;
  int64_t oldest = 0;
  int64_t newest = 0;
  int64_t failed_again = 0;
  for (const auto& e : scan.entries) {
    if (!filter.matches(e.letter)) {
      continue;
    }
    const auto& d = e.letter;
    ++total;
    ++by_class[d.error_class];
    ++by_worker[d.worker + "/" + d.stage];
    ++by_topic[d.original_topic];
    const int64_t h = (now_ms - d.last_failure_ms) / 3600000;
    ++by_age[h < 1 ? "<1h" : h < 24 ? "1h-24h" : h < 168 ? "1d-7d" : ">7d"];
    failed_again += d.replay_count > 0 ? 1 : 0;
    oldest = oldest == 0 ? d.last_failure_ms : std::min(oldest, d.last_failure_ms);
    newest = std::max(newest, d.last_failure_ms);
  }
  return {{"total", total},
          {"oldest_ms", total > 0 ? nlohmann::json(oldest) : nlohmann::json()},
          {"newest_ms", total > 0 ? nlohmann::json(newest) : nlohmann::json()},
          {"failed_again", failed_again},
          {"by_error_class", by_class},
          {"by_worker", by_worker},
          {"by_original_topic", by_topic},
          {"by_age", by_age},
          {"not_dead_letters", scan.malformed.size()}};
}


}  // namespace wafleet::replay
