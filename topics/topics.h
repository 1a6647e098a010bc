#pragma once
// The topic catalogue (topics/catalogue.json, compiled in) and the names every binary uses.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wafleet::topics {

struct TopicSpec {
  std::string name;
  int32_t partitions = 1;
  std::string key;
  int64_t retention_ms = 0;
  std::string cleanup_policy;
  std::string schema;
  std::string description;
};

// Parsed once from the embedded catalogue; the catalogue is validated by a unit test, so a
// broken file fails the build's tests, not production.
const std::vector<TopicSpec>& catalogue();
std::optional<TopicSpec> find(const std::string& name);
const std::string& catalogue_json();
// A record schema of topics/schemas/ by name ("outbound_request"), compiled in; null when
// there is none of that name.
const nlohmann::json& schema(const std::string& name);

inline constexpr const char* kInbound = "wa.inbound";
inline constexpr const char* kStatus = "wa.status";
inline constexpr const char* kAccountEvents = "wa.account.events";
inline constexpr const char* kMedia = "wa.media";
inline constexpr const char* kTurns = "wa.turns";
inline constexpr const char* kOutbound = "wa.outbound";
inline constexpr const char* kOutboundResults = "wa.outbound.results";
inline constexpr const char* kHandoffs = "wa.handoffs";
inline constexpr const char* kBulkCommands = "wa.bulk.commands";
inline constexpr const char* kDlq = "wa.dlq";
inline constexpr const char* kDlqParked = "wa.dlq.parked";
inline constexpr const char* kDlqAudit = "wa.dlq.audit";
inline constexpr const char* kPrivacyAudit = "wa.privacy.audit";

}  // namespace wafleet::topics
