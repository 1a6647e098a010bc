// The deployment files (compose/, its kubernetes/ manifests, the image's package list) against
// what the code and the docs say: no Docker engine runs here, so this is what keeps them honest.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/services.h"

namespace wafleet {
namespace {

namespace fs = std::filesystem;
const std::string kSource = WAFLEET_SOURCE_DIR;
const std::string kBin = WAFLEET_BIN_DIR;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> deployment_files() {
  std::vector<std::string> out = {kSource + "/compose/docker-compose.yml"};
  for (const auto& e : fs::directory_iterator(kSource + "/compose/kubernetes")) {
    if (e.path().extension() == ".yaml") {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::set<std::string> matches(const std::string& text, const std::regex& re, int group = 0) {
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    out.insert((*it)[group].str());
  }
  return out;
}

TEST(Deploy, EveryVariableTheFilesSetIsADocumentedSetting) {
  const std::string config = slurp(kSource + "/docs/CONFIG.md");
  ASSERT_FALSE(config.empty());
  const std::set<std::string> not_settings = {"WAFLEET_IMAGE"};  // compose's own substitution
  size_t seen = 0;
  for (const auto& f : deployment_files()) {
    for (auto name : matches(slurp(f), std::regex("WAFLEET_[A-Z0-9_]+"))) {
      if (not_settings.count(name)) {
        continue;
      }
      ++seen;
      // A secret's WAFLEET_X_FILE is WAFLEET_X read from a file (some settings end in _FILE).
      if (config.find("`" + name + "`") == std::string::npos && name.size() > 5 &&
          name.compare(name.size() - 5, 5, "_FILE") == 0) {
        name.resize(name.size() - 5);
      }
      EXPECT_NE(config.find("`" + name + "`"), std::string::npos)
          << fs::path(f).filename() << " sets " << name << ", which docs/CONFIG.md does not know";
    }
  }
  EXPECT_GT(seen, 20u);
}

TEST(Deploy, EveryCommandIsABinaryWeBuildAndEveryWorkerIsDeployed) {
  std::set<std::string> commands;
  for (const auto& f : deployment_files()) {
    for (const auto& c : matches(slurp(f), std::regex("\\bwafleet-([a-z-]+)\\b\"?\\]"), 1)) {
      commands.insert(c);
    }
  }
  for (const auto& c : commands) {
    EXPECT_TRUE(fs::exists(kBin + "/wafleet-" + c)) << "wafleet-" << c << " is not built";
  }
  for (const char* w : {"receiver", "aggregator", "media", "bridge", "sender", "bulk", "replay",
                        "store", "api"}) {
    EXPECT_TRUE(commands.count(w)) << "wafleet-" << w << " is in no deployment file";
    EXPECT_TRUE(fs::exists(kSource + "/compose/kubernetes/" + w + ".yaml")) << w;
  }
}

TEST(Deploy, ComposeDeclaresEverySecretItMountsAndRunsTheReplicatedCluster) {
  const std::string compose = slurp(kSource + "/compose/docker-compose.yml");
  const auto block = compose.substr(compose.find("\nsecrets:\n"));
  for (const auto& s : matches(compose, std::regex("/run/secrets/([a-z0-9_]+)"), 1)) {
    EXPECT_NE(block.find("\n  " + s + ": { file: ./secrets/" + s + " }"), std::string::npos)
        << "secret " << s << " is mounted but not declared";
  }
  for (const char* want : {"kafka-1:", "kafka-2:", "kafka-3:", "KAFKA_MIN_INSYNC_REPLICAS: 2",
                           "KAFKA_DEFAULT_REPLICATION_FACTOR: 3", "--appendonly\", \"yes",
                           "postgres:", "minio:", "topics:", "restart: unless-stopped",
                           "healthcheck:"}) {
    EXPECT_NE(compose.find(want), std::string::npos) << want;
  }
}

TEST(Deploy, EveryDeploymentProbesHealthAndReadinessAndEveryConsumerHasADisruptionBudget) {
  for (const auto& e : fs::directory_iterator(kSource + "/compose/kubernetes")) {
    const std::string text = slurp(e.path().string());
    if (text.find("kind: Deployment") == std::string::npos) {
      continue;
    }
    const auto name = e.path().filename().string();
    EXPECT_NE(text.find("livenessProbe:\n            httpGet: {path: /healthz"), std::string::npos)
        << name;
    EXPECT_NE(text.find("readinessProbe:\n            httpGet: {path: /readyz"), std::string::npos)
        << name;
    EXPECT_NE(text.find("runAsNonRoot: true"), std::string::npos) << name;
    if (text.find("WAFLEET_GROUP_ID") != std::string::npos) {
      EXPECT_NE(text.find("kind: PodDisruptionBudget"), std::string::npos) << name;
    }
  }
}

// Each shared library a binary asks for (its NEEDED entries) comes from a package on the one
// run-time list, or from the C/C++ runtime every Debian system has.
TEST(Deploy, TheRuntimePackageListCoversEveryLibraryTheBinariesNeed) {
  std::set<std::string> listed = {"libc6", "libstdc++6", "libgcc-s1"};
  std::istringstream in(slurp(kSource + "/scripts/runtime-packages"));
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    line.erase(std::remove_if(line.begin(), line.end(), ::isspace), line.end());
    if (!line.empty()) {
      listed.insert(line);
    }
  }
  ASSERT_GT(listed.size(), 8u);
  // soname -> the file the loader resolves it to (ldd), for the binaries' own NEEDED entries.
  std::map<std::string, std::string> needed;
  for (const auto& e : fs::directory_iterator(kBin)) {
    const auto name = e.path().filename().string();
    if (name.rfind("wafleet", 0) != 0) {
      continue;
    }
    std::string dyn;
    std::string resolved;
    ASSERT_EQ(test::run_command("readelf -d '" + e.path().string() + "'", dyn), 0) << dyn;
    ASSERT_EQ(test::run_command("ldd '" + e.path().string() + "'", resolved), 0) << resolved;
    for (const auto& lib : matches(dyn, std::regex("Shared library: \\[([^\\]]+)\\]"), 1)) {
      if (std::regex_search(lib, std::regex("^lib(a|ub|l|t)san\\."))) {
        continue;  // the sanitizer build's runtime: never deployed
      }
      std::smatch m;
      ASSERT_TRUE(std::regex_search(resolved, m, std::regex(std::regex_replace(lib, std::regex("[.+]"), "\\$&") +
                                                            " => (\\S+)")))
          << name << " needs " << lib << ", which the loader does not find:\n" << resolved;
      needed[lib] = m[1].str();
    }
  }
  ASSERT_GT(needed.size(), 5u);
  for (const auto& [lib, path] : needed) {
    std::string out;
    // Debian 12 merges /lib into /usr/lib; dpkg knows each file under one of the two names.
    const std::string other = path.rfind("/usr/", 0) == 0 ? path.substr(4) : "/usr" + path;
    test::run_command("dpkg -S '" + path + "' 2>/dev/null || dpkg -S '" + other + "' 2>/dev/null", out);
    const auto package = out.substr(0, out.find(':'));
    EXPECT_TRUE(listed.count(package)) << lib << " (" << path << ") comes from '" << package
                                       << "', which scripts/runtime-packages does not list";
  }
}

}  // namespace
}  // namespace wafleet
