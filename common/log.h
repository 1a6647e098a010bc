#pragma once
// Structured JSON log lines: one object per line with a stable event name and typed fields.
// Payload bodies and secrets never go in; phone numbers go through log::phone(), which redacts
// them unless the operator explicitly allowed clear numbers (WAFLEET_LOG_PHONE_NUMBERS).
// Thread-safe: spdlog's multi-threaded stderr sink underneath.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace wafleet::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError };

// Called once at startup; safe to skip in tests (defaults: info, worker "wafleet").
void init(const std::string& worker, const std::string& level, bool clear_phone_numbers = false);

bool enabled(Level level);
void write(Level level, std::string_view event, const nlohmann::json& fields = {});

inline void debug(std::string_view e, const nlohmann::json& f = {}) { write(Level::kDebug, e, f); }
inline void info(std::string_view e, const nlohmann::json& f = {}) { write(Level::kInfo, e, f); }
inline void warn(std::string_view e, const nlohmann::json& f = {}) { write(Level::kWarn, e, f); }
inline void error(std::string_view e, const nlohmann::json& f = {}) { write(Level::kError, e, f); }

// "15551234567" -> "*******4567": digits kept only at the end, so operators can still tell
// conversations apart. Non-digit identities (BSUIDs) are returned unchanged.
std::string redact_phone(std::string_view phone);
// redact_phone unless clear numbers were allowed at init.
std::string phone(std::string_view phone);
// Redacts every phone-like run of 7+ digits inside a free-text string (error messages, keys).
std::string redact_digits(std::string_view text);

}  // namespace wafleet::log
