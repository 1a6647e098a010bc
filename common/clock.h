#pragma once
// Wall-clock milliseconds since the epoch: the one time source for event timestamps
// (received_at_ms, DLQ failure times). Cores take it as a std::function so tests can fix it.
#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

namespace wafleet {

inline int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// UTC to the second: 2026-12-01T09:30:00Z; "" for 0 (or before the epoch).
inline std::string format_iso8601(int64_t ms) {
  if (ms <= 0) {
    return "";
  }
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace wafleet
