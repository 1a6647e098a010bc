#pragma once
// Small string helpers shared by the workers.
#include <cctype>
#include <string>
#include <string_view>

namespace wafleet {

// Without the surrounding white space (ASCII).
inline std::string trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b])) != 0) {
    ++b;
  }
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1])) != 0) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

}  // namespace wafleet
