// Media throughput: the media worker's fetcher (resolve + streamed download + SHA-256 + store)
// against a running wafleet-graph-emulator, beside a plain libcurl download of the same files
// into nothing (the ceiling), and this process's peak resident memory.
//   bench_media --graph http://127.0.0.1:PORT --token T --size BYTES --count N --dir DIR
// Prints one line per measurement. Run by bench/run_media_bench.sh.
#include <curl/curl.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "workers/media/media.h"

using namespace wafleet;
using Clock = std::chrono::steady_clock;

namespace {

size_t discard(char*, size_t size, size_t nmemb, void*) { return size * nmemb; }

long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("media throughput against the graph emulator");
  std::string graph;
  std::string token = "emulator-token";
  size_t size = 100 * 1024;
  int count = 100;
  std::string dir = "/tmp/wafleet-media-bench";
  app.add_option("--graph", graph, "emulator base URL")->required();
  app.add_option("--token", token, "access token");
  app.add_option("--size", size, "bytes per file");
  app.add_option("--count", count, "files");
  app.add_option("--dir", dir, "storage directory");
  CLI11_PARSE(app, argc, argv);

  // Distinct files (by seed), registered in the emulator.
  const uint64_t run = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  std::vector<std::string> ids;
  for (int i = 0; i < count; ++i) {
    const std::string id = "bench-" + std::to_string(run) + "-" + std::to_string(i);
    nlohmann::json body = {{"id", id}, {"mime_type", "video/mp4"}, {"size", size},
                           {"seed", run + static_cast<uint64_t>(i)}};
    auto r = http::fetch("POST", graph + "/_emulator/media", {{"Content-Type", "application/json"}},
                         body.dump(), std::chrono::seconds(30));
    if (!r || r->status != 200) {
      std::cerr << "cannot register media: " << (r ? r->body : r.error().message) << "\n";
      return 1;
    }
    ids.push_back(id);
  }
  // The ceiling: resolve every URL first (not timed), then plain downloads into nothing.
  std::vector<std::string> urls;
  for (const auto& id : ids) {
    auto r = http::fetch("GET", graph + "/v22.0/" + id, {{"Authorization", "Bearer " + token}}, "",
                         std::chrono::seconds(10));
    urls.push_back(nlohmann::json::parse(r->body)["url"].get<std::string>());
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const std::string auth = "Authorization: Bearer " + token;
  auto t0 = Clock::now();
  for (const auto& url : urls) {
    CURL* c = curl_easy_init();
    curl_slist* h = curl_slist_append(nullptr, auth.c_str());
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_perform(c);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
  }
  const double ceiling_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double mb = static_cast<double>(size) * count / 1e6;
  std::cout << "ceiling (plain libcurl download, no lookup): files=" << count << " size=" << size
            << " files_per_s=" << count / ceiling_s << " MB_per_s=" << mb / ceiling_s << "\n";

  std::filesystem::remove_all(dir);
  media::LocalStorage storage(dir);
  media::Options o;
  o.graph_base = graph;
  o.access_token = token;
  o.max_bytes["video"] = 1LL << 40;
  media::Fetcher fetcher(o, storage);
  const long rss_before = peak_rss_kib();
  t0 = Clock::now();
  for (const auto& id : ids) {
    auto s = fetcher.fetch("video", id, "");
    if (!s) {
      std::cerr << "fetch failed: " << s.error().message << "\n";
      return 1;
    }
  }
  const double fetch_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::cout << "media fetcher (lookup + download + sha256 + store): files=" << count
            << " size=" << size << " files_per_s=" << count / fetch_s
            << " MB_per_s=" << mb / fetch_s << " (" << 100.0 * ceiling_s / fetch_s
            << "% of the ceiling) peak_rss_kib_before=" << rss_before
            << " peak_rss_kib_after=" << peak_rss_kib() << "\n";
  std::filesystem::remove_all(dir);
  return 0;
}
