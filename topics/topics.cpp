#include "topics/topics.h"

#include <nlohmann/json.hpp>

#include "topics/catalogue_embedded.h"
#include "topics/schemas_embedded.h"

namespace wafleet::topics {

const std::string& catalogue_json() {
  static const std::string json(kCatalogueJson);
  return json;
}

const nlohmann::json& schema(const std::string& name) {
  static const nlohmann::json all = nlohmann::json::parse(kSchemasJson, nullptr, false);
  static const nlohmann::json none;
  auto it = all.is_object() ? all.find(name) : all.end();
  return all.is_object() && it != all.end() ? *it : none;
}

const std::vector<TopicSpec>& catalogue() {
  static const std::vector<TopicSpec> specs = [] {
    std::vector<TopicSpec> out;
    auto doc = nlohmann::json::parse(catalogue_json(), nullptr, false);
    if (doc.is_discarded() || !doc.contains("topics") || !doc["topics"].is_array()) {
      return out;
    }
    for (const auto& t : doc["topics"]) {
      TopicSpec s;
      s.name = t.value("name", "");
      s.partitions = t.value("partitions", 1);
      s.key = t.value("key", "");
      s.retention_ms = t.value("retention_ms", int64_t{0});
      s.cleanup_policy = t.value("cleanup_policy", "delete");
      s.schema = t.value("schema", "");
      s.description = t.value("description", "");
      out.push_back(std::move(s));
    }
    return out;
  }();
  return specs;
}

std::optional<TopicSpec> find(const std::string& name) {
  for (const auto& s : catalogue()) {
    if (s.name == name) {
      return s;
    }
  }
  return std::nullopt;
}

}  // namespace wafleet::topics
