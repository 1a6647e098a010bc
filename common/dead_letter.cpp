#include "common/dead_letter.h"

#include <charconv>

namespace wafleet::dlq {
namespace {

template <typename T>
bool parse_number(const std::string& s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

bool is_hex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

std::string trace_id_of(const std::string& traceparent) {
  // 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
  if (traceparent.size() < 55 || traceparent[2] != '-' || traceparent[35] != '-') {
    return {};
  }
  std::string id = traceparent.substr(3, 32);
  return is_hex(id) ? id : std::string{};
}

int replay_count_of(const kafka::Record& r) {
  int n = 0;
  if (auto h = r.header(kReplayCountHeader); h && parse_number(*h, n) && n >= 0) {
    return n;
  }
  return 0;
}

DeadLetter describe(const kafka::Record& r, const std::string& group, const std::string& worker,
                    const std::string& stage, const Error& e, int attempts,
                    int64_t first_failure_ms, int64_t last_failure_ms) {
  DeadLetter d;
  d.original_topic = r.topic;
  d.original_partition = r.partition;
  d.original_offset = r.offset;
  d.original_timestamp_ms = r.timestamp_ms;
  d.original_key = r.key;
  d.group = group;
  d.worker = worker;
  d.stage = stage;
  d.error_class = to_string(e.kind);
  d.error_message = e.message;
  d.attempts = attempts;
  d.first_failure_ms = first_failure_ms;
  d.last_failure_ms = last_failure_ms;
  d.replay_count = replay_count_of(r);
  for (const auto& [k, v] : r.headers) {
    if (k == "traceparent") {
      d.trace_id = trace_id_of(v);
    }
    // A dead letter's own context never nests; everything else is restored on replay.
    if (k.rfind("dlq.", 0) != 0) {
      d.original_headers.emplace_back(k, v);
    }
  }
  return d;
}

kafka::Headers to_headers(const DeadLetter& d) {
  kafka::Headers h = {{"dlq.original.topic", d.original_topic},
                      {"dlq.original.partition", std::to_string(d.original_partition)},
                      {"dlq.original.offset", std::to_string(d.original_offset)},
                      {"dlq.original.timestamp.ms", std::to_string(d.original_timestamp_ms)},
                      {"dlq.original.key", d.original_key},
                      {"dlq.original.group", d.group},
                      {"dlq.worker", d.worker},
                      {"dlq.stage", d.stage},
                      {"dlq.error.class", d.error_class},
                      {"dlq.error.message", d.error_message},
                      {"dlq.attempts", std::to_string(d.attempts)},
                      {"dlq.first.failure.ms", std::to_string(d.first_failure_ms)},
                      {"dlq.last.failure.ms", std::to_string(d.last_failure_ms)},
                      {"dlq.trace.id", d.trace_id},
                      {"dlq.replay.count", std::to_string(d.replay_count)}};
  if (!d.trace_id.empty()) {
    h.emplace_back("traceparent", "00-" + d.trace_id + "-00000000000000d1-01");
  }
  for (const auto& [k, v] : d.original_headers) {
    h.emplace_back(kOriginalHeaderPrefix + k, v);
  }
  for (const auto& kv : d.extra) {
    h.push_back(kv);
  }
  return h;
}

Expected<DeadLetter, std::string> from_headers(const kafka::Headers& headers) {
  DeadLetter d;
  std::string bad;
  auto number = [&](const std::string& name, const std::string& v, auto& out) {
    if (!parse_number(v, out) && bad.empty()) {
      bad = "header " + name + " is not a number: '" + v + "'";
    }
  };
  const std::string prefix = kOriginalHeaderPrefix;
  for (const auto& [k, v] : headers) {
    if (k.rfind(prefix, 0) == 0) {
      d.original_headers.emplace_back(k.substr(prefix.size()), v);
      continue;
    }
    if (k == "dlq.original.topic") {
      d.original_topic = v;
    } else if (k == "dlq.original.partition") {
      number(k, v, d.original_partition);
    } else if (k == "dlq.original.offset") {
      number(k, v, d.original_offset);
    } else if (k == "dlq.original.timestamp.ms") {
      number(k, v, d.original_timestamp_ms);
    } else if (k == "dlq.original.key") {
      d.original_key = v;
    } else if (k == "dlq.original.group") {
      d.group = v;
    } else if (k == "dlq.worker") {
      d.worker = v;
    } else if (k == "dlq.stage") {
      d.stage = v;
    } else if (k == "dlq.error.class") {
      d.error_class = v;
    } else if (k == "dlq.error.message") {
      d.error_message = v;
    } else if (k == "dlq.attempts") {
      number(k, v, d.attempts);
    } else if (k == "dlq.first.failure.ms") {
      number(k, v, d.first_failure_ms);
    } else if (k == "dlq.last.failure.ms") {
      number(k, v, d.last_failure_ms);
    } else if (k == "dlq.trace.id") {
      d.trace_id = v;
    } else if (k == "dlq.replay.count") {
      number(k, v, d.replay_count);
    } else {
      if (k.rfind("dlq.", 0) == 0) {
        d.extra.emplace_back(k, v);
      }
    }
  }
  if (!bad.empty()) {
    return Unexpected(bad);
  }
  if (d.original_topic.empty()) {
    return Unexpected(std::string("not a dead letter: no dlq.original.topic header"));
  }
  if (d.worker.empty() || d.error_class.empty()) {
    return Unexpected(std::string("dead letter without dlq.worker or dlq.error.class"));
  }
  return d;
}

}  // namespace wafleet::dlq
