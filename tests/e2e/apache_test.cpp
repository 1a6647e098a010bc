// Against Apache Kafka only (scripts/test starts it; ctest label 'apache'): the admin API
// and interop with Kafka's own Java client.
#include <fstream>
#include <future>
#include <sstream>

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/http_client.h"
#include "tests/support/fixtures.h"
#include "tests/support/services.h"
#include "topics/topics.h"

namespace wafleet {
namespace {

const std::string kBin = WAFLEET_BIN_DIR;

// Apache Kafka only (scripts/test starts it): the admin API and the Java client.
class ApacheKafka : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* b = std::getenv("WAFLEET_TEST_KAFKA_BROKERS");
    const char* cp = std::getenv("WAFLEET_TEST_KAFKA_CLASSPATH");
    ASSERT_TRUE(b != nullptr && *b != '\0' && cp != nullptr && *cp != '\0')
        << "needs Apache Kafka: run through scripts/test (label 'apache')";
    brokers_ = b;
    classpath_ = cp;
  }
  std::string brokers_;
  std::string classpath_;
};

TEST_F(ApacheKafka, TopicsApplyCreatesTheCatalogueAndIsIdempotent) {
  std::string out;
  ASSERT_EQ(test::run_command(kBin + "/wafleet --kafka-brokers " + brokers_ + " topics apply", out), 0) << out;
  for (const auto& t : topics::catalogue()) {
    EXPECT_NE(out.find(t.name + "\t"), std::string::npos) << out;
  }
  ASSERT_EQ(test::run_command(kBin + "/wafleet --kafka-brokers " + brokers_ + " topics apply", out), 0) << out;
  EXPECT_EQ(out.find("FAILED"), std::string::npos) << out;
  ASSERT_EQ(test::run_command(kBin + "/wafleet --kafka-brokers " + brokers_ + " topics list", out), 0) << out;
  EXPECT_NE(out.find("wa.inbound\tcatalogue=12\tcluster=12"), std::string::npos) << out;
}

TEST_F(ApacheKafka, JavaConsoleConsumerReadsOurEventsOnTheSamePartition) {
  ASSERT_TRUE(test::kafka_env().apache);  // creates the catalogue topics if this runs first
  auto producer = kafka::Producer::create({brokers_, "e2e", {}});
  ASSERT_TRUE(producer.has_value());
  const std::string key = "106540352242922:" + crypto::random_hex(5);
  std::promise<int32_t> part;
  (*producer)->produce(topics::kInbound, key, "{\"java\":true}", {},
                       [&](const Status& s, int32_t p, int64_t) { part.set_value(s ? p : -1); });
  const int32_t partition = part.get_future().get();
  ASSERT_GE(partition, 0);
  std::string out;
  int rc = test::run_command("java -cp '" + classpath_ +
                   "' kafka.tools.ConsoleConsumer --bootstrap-server " +
                   brokers_ + " --topic wa.inbound --partition " + std::to_string(partition) +
                   " --offset earliest --timeout-ms 6000 --property print.key=true"
                   " --property key.separator='|'",
               out);
  (void)rc;  // the console consumer exits non-zero on its timeout; the output is what counts
  EXPECT_NE(out.find(key + "|{\"java\":true}"), std::string::npos) << out.substr(0, 2000);
}

}  // namespace
}  // namespace wafleet
