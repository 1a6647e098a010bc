#pragma once
// Wall-clock milliseconds since the epoch: the one time source for event timestamps
// (received_at_ms, DLQ failure times). Cores take it as a std::function so tests can fix it.
#include <chrono>
#include <cstdint>

namespace wafleet {

inline int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace wafleet
