#include "common/config.h"

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

namespace wafleet::config {
namespace {

std::vector<Option> opts() {
  auto o = common_options();
  o.push_back({"app-secret", "", "secret", true, true});
  o.push_back({"http-threads", "2", "threads"});
  return o;
}

TEST(Config, EnvironmentThenFlagsWin) {
  EnvMap env = {{"WAFLEET_KAFKA_BROKERS", "k:9092"}, {"WAFLEET_APP_SECRET", "s"},
                {"WAFLEET_HTTP_THREADS", "4"}};
  auto s = load(opts(), env, {"--http-threads", "8", "--redis-url=redis://r:1/2"});
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->get("kafka-brokers"), "k:9092");
  EXPECT_EQ(s->get("http-threads"), "8");
  EXPECT_EQ(s->get("redis-url"), "redis://r:1/2");
}

TEST(Config, ReportsEveryProblemAtOnce) {
  auto s = load(opts(), {}, {"--nope", "x", "stray"});
  ASSERT_FALSE(s.has_value());
  const auto& errors = s.error();
  auto has = [&](const std::string& needle) {
    for (const auto& e : errors) {
      if (e.find(needle) != std::string::npos) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(has("unknown flag --nope"));
  EXPECT_TRUE(has("WAFLEET_KAFKA_BROKERS"));
  EXPECT_TRUE(has("WAFLEET_APP_SECRET"));
  EXPECT_GE(errors.size(), 3u);
}

TEST(Config, SecretsComeFromFilesAndAreRedacted) {
  const std::string path = testing::TempDir() + "/secret.txt";
  std::ofstream(path) << "from-file\n";
  EnvMap env = {{"WAFLEET_KAFKA_BROKERS", "k:1"}, {"WAFLEET_APP_SECRET_FILE", path}};
  auto s = load(opts(), env, {});
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->get("app-secret"), "from-file");
  for (const auto& [k, v] : s->redacted()) {
    if (k == "app-secret") {
      EXPECT_EQ(v, "***");
    }
    EXPECT_EQ(v.find("from-file"), std::string::npos);
  }
  std::remove(path.c_str());
  EnvMap missing = {{"WAFLEET_KAFKA_BROKERS", "k:1"}, {"WAFLEET_APP_SECRET_FILE", "/no/such"}};
  EXPECT_FALSE(load(opts(), missing, {}).has_value());
}

TEST(Config, KafkaPropertiesPassThroughFromEnvAndFlags) {
  EnvMap env = {{"WAFLEET_KAFKA_BROKERS", "k:1"}, {"WAFLEET_APP_SECRET", "s"},
                {"WAFLEET_KAFKA_security.protocol", "SASL_SSL"},
                {"WAFLEET_KAFKA_sasl.password", "pw"}};
  auto s = load(opts(), env, {"--kafka-prop", "sasl.mechanism=PLAIN"});
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->kafka_properties().at("security.protocol"), "SASL_SSL");
  EXPECT_EQ(s->kafka_properties().at("sasl.mechanism"), "PLAIN");
  EXPECT_EQ(s->kafka_properties().count("BROKERS"), 0u);
  for (const auto& [k, v] : s->redacted()) {
    if (k == "kafka.sasl.password") {
      EXPECT_EQ(v, "***");
    }
  }
}

TEST(Config, TypedReadersExplainBadValues) {
  EnvMap env = {{"WAFLEET_KAFKA_BROKERS", "k:1"}, {"WAFLEET_APP_SECRET", "s"},
                {"WAFLEET_HTTP_THREADS", "two"}, {"WAFLEET_LOG_PHONE_NUMBERS", "maybe"}};
  auto s = load(opts(), env, {});
  ASSERT_TRUE(s.has_value());
  std::vector<std::string> errors;
  s->get_int("http-threads", errors);
  s->get_bool("log-phone-numbers", errors);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("WAFLEET_HTTP_THREADS"), std::string::npos);
  EXPECT_NE(errors[1].find("WAFLEET_LOG_PHONE_NUMBERS"), std::string::npos);
}

TEST(Config, HostPortParsing) {
  std::vector<std::string> errors;
  auto hp = parse_host_port("0.0.0.0:8080", "listen", errors);
  ASSERT_TRUE(hp.has_value());
  EXPECT_EQ(hp->host, "0.0.0.0");
  EXPECT_EQ(hp->port, 8080);
  auto v6 = parse_host_port("[::1]:9", "listen", errors);
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_FALSE(parse_host_port("8080", "listen", errors).has_value());
  EXPECT_FALSE(parse_host_port("h:99999", "listen", errors).has_value());
  EXPECT_EQ(errors.size(), 2u);
}

TEST(Config, BootstrapFileStandsInForBrokers) {
  const std::string path = testing::TempDir() + "/bootstrap";
  std::ofstream(path) << "127.0.0.1:1234\n";
  EnvMap env = {{"WAFLEET_BOOTSTRAP_FILE", path}, {"WAFLEET_APP_SECRET", "s"}};
  auto s = load(opts(), env, {});
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->get("kafka-brokers"), "127.0.0.1:1234");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace wafleet::config
