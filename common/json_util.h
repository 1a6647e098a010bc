#pragma once
// Checked field readers: nlohmann-json throws on a field of the wrong type even after a
// non-throwing parse, and webhook payloads are untrusted. These never throw.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace wafleet::json {

using nlohmann::json;

// Parses without exceptions; is_discarded() on failure.
inline json parse(std::string_view text) { return json::parse(text, nullptr, false); }

inline const json* field(const json& j, std::string_view key) {
  if (!j.is_object()) {
    return nullptr;
  }
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

// The string at key, or "" when absent or not a string.
inline std::string str(const json& j, std::string_view key) {
  const json* f = field(j, key);
  return f != nullptr && f->is_string() ? f->get<std::string>() : std::string{};
}

// An object at key, or a static empty object.
inline const json& obj(const json& j, std::string_view key) {
  static const json kEmpty = json::object();
  const json* f = field(j, key);
  return f != nullptr && f->is_object() ? *f : kEmpty;
}

// An array at key, or a static empty array.
inline const json& arr(const json& j, std::string_view key) {
  static const json kEmpty = json::array();
  const json* f = field(j, key);
  return f != nullptr && f->is_array() ? *f : kEmpty;
}

// Integer from a JSON number or a numeric string ("1697043223"); fallback otherwise.
inline int64_t int_or(const json& j, std::string_view key, int64_t fallback = 0) {
  const json* f = field(j, key);
  if (f == nullptr) {
    return fallback;
  }
  if (f->is_number_integer()) {
    return f->get<int64_t>();
  }
  if (f->is_number_float()) {
    return static_cast<int64_t>(f->get<double>());
  }
  if (f->is_string()) {
    const auto& s = f->get_ref<const std::string&>();
    if (s.empty() || s.size() > 18) {
      return fallback;
    }
    int64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') {
        return fallback;
      }
      v = v * 10 + (c - '0');
    }
    return v;
  }
  return fallback;
}

// Serialises untrusted content without throwing on invalid UTF-8.
inline std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace wafleet::json
