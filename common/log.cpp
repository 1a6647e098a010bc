#include "common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace wafleet::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<bool> g_clear_phones{false};
std::mutex g_mu;
std::string g_worker = "wafleet";  // guarded by g_mu for writes; read under it too
std::shared_ptr<spdlog::logger> g_logger;

std::shared_ptr<spdlog::logger> logger() {
  std::lock_guard lock(g_mu);
  if (!g_logger) {
    g_logger = spdlog::stderr_logger_mt("wafleet-json");
    g_logger->set_pattern("%v");
    g_logger->set_level(spdlog::level::trace);
    g_logger->flush_on(spdlog::level::trace);
  }
  return g_logger;
}

const char* level_name(Level l) {
  switch (l) {
    case Level::kTrace:
      return "trace";
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

std::string iso_now() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
            1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

void init(const std::string& worker, const std::string& level, bool clear_phone_numbers) {
  {
    std::lock_guard lock(g_mu);
    g_worker = worker;
  }
  Level l = Level::kInfo;
  if (level == "trace") {
    l = Level::kTrace;
  } else if (level == "debug") {
    l = Level::kDebug;
  } else if (level == "warn") {
    l = Level::kWarn;
  } else if (level == "error") {
    l = Level::kError;
  }
  g_level = static_cast<int>(l);
  g_clear_phones = clear_phone_numbers;
}

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(); }

void write(Level level, std::string_view event, const nlohmann::json& fields) {
  if (!enabled(level)) {
    return;
  }
  nlohmann::json line;
  line["ts"] = iso_now();
  line["level"] = level_name(level);
  {
    std::lock_guard lock(g_mu);
    line["worker"] = g_worker;
  }
  line["event"] = std::string(event);
  if (fields.is_object()) {
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      line[it.key()] = it.value();
    }
  }
  logger()->info(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

std::string redact_phone(std::string_view phone) {
  size_t digits = 0;
  for (char c : phone) {
    if (c >= '0' && c <= '9') {
      ++digits;
    } else if (c != '+' && c != ' ' && c != '-') {
      return std::string(phone);  // not a phone number (a BSUID or a group id)
    }
  }
  if (digits == 0) {
    return std::string(phone);
  }
  std::string out(phone);
  size_t keep = digits > 4 ? 4 : 0;
  size_t seen = 0;
  for (char& c : out) {
    if (c >= '0' && c <= '9') {
      if (seen++ < digits - keep) {
        c = '*';
      }
    }
  }
  return out;
}

std::string phone(std::string_view p) {
  return g_clear_phones.load() ? std::string(p) : redact_phone(p);
}

std::string redact_digits(std::string_view text) {
  if (g_clear_phones.load()) {
    return std::string(text);
  }
  std::string out(text);
  size_t i = 0;
  while (i < out.size()) {
    if (out[i] >= '0' && out[i] <= '9') {
      size_t j = i;
      while (j < out.size() && out[j] >= '0' && out[j] <= '9') {
        ++j;
      }
      if (j - i >= 7) {
        for (size_t k = i; k < j - 4; ++k) {
          out[k] = '*';
        }
      }
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

}  // namespace wafleet::log
