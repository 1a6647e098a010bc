#include "topics/topics.h"

#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/kafka.h"

namespace wafleet::topics {
namespace {

TEST(Topics, CatalogueHoldsEveryDesignTopicOnce) {
  std::set<std::string> names;
  for (const auto& t : catalogue()) {
    EXPECT_TRUE(names.insert(t.name).second) << t.name;
    EXPECT_GT(t.partitions, 0) << t.name;
    EXPECT_GT(t.retention_ms, 0) << t.name;
    EXPECT_FALSE(t.schema.empty()) << t.name;
  }
  for (const char* n : {kInbound, kStatus, kAccountEvents, kMedia, kTurns, kOutbound,
                        kOutboundResults, kBulkCommands, kDlq, kDlqParked, kDlqAudit}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
}

TEST(Topics, ConversationTopicsAreCoPartitioned) {
  auto doc = nlohmann::json::parse(catalogue_json());
  const int expected = doc["conversation_partitions"];
  for (const auto& t : catalogue()) {
    if (t.key == "conversation") {
      EXPECT_EQ(t.partitions, expected) << t.name;
    }
  }
}

TEST(Topics, SchemasThatExistParseAsJson) {
  const std::string dir = std::string(WAFLEET_SOURCE_DIR) + "/topics/schemas";
  ASSERT_TRUE(std::filesystem::exists(dir + "/webhook_event.schema.json"));
  ASSERT_TRUE(std::filesystem::exists(dir + "/dead_letter.schema.json"));
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path());
    auto j = nlohmann::json::parse(in, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << e.path();
  }
  for (const auto& t : catalogue()) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + t.schema + ".schema.json")) << t.name << ": " << t.schema;
  }
}

TEST(Topics, PartitionerIsJavaCompatibleMurmur2) {
  // Values computed by Kafka's Java DefaultPartitioner (Utils.toPositive(murmur2(key)) % n);
  // also checked end to end against the Java console consumer in tests/e2e.
  EXPECT_EQ(kafka::Producer::partition_for_key("a", 100), 24);
  EXPECT_EQ(kafka::Producer::partition_for_key("hello", 100), 29);
  EXPECT_EQ(kafka::Producer::partition_for_key("a", 12), 4);
  EXPECT_EQ(kafka::Producer::partition_for_key("106540352242922:15551230001", 12), 6);
}

}  // namespace
}  // namespace wafleet::topics
