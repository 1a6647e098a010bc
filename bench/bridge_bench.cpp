// The fleet's share of a person's wait for an answer (issue 11): signed webhooks in bursts at a
// given rate through receiver -> aggregator -> bridge -> sender -> Meta (the emulator, which is
// also the agent). For each burst: the reply's arrival at Meta's /messages minus the webhook of
// the burst's last message, minus the quiet window (the aggregator waits it out by design) and
// minus the agent's own time (the emulator answers at once; its call time is measured anyway).
//   bench_bridge --url URL --secret S --graph G --rate MSGS_PER_MIN --seconds N --quiet-ms Q
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/http_client.h"

using namespace wafleet;
using Json = nlohmann::json;

namespace {

Json webhook(const std::string& pnid, const std::string& from, const std::string& id,
             const std::string& body) {
  Json message = {{"from", from}, {"id", id}, {"timestamp", std::to_string(wall_clock_ms() / 1000)},
                  {"type", "text"}, {"text", {{"body", body}}}};
  Json value = {{"messaging_product", "whatsapp"},
                {"metadata", {{"display_phone_number", "15550001111"}, {"phone_number_id", pnid}}},
                {"contacts", {{{"profile", {{"name", "Bench"}}}, {"wa_id", from}}}},
                {"messages", {message}}};
  return {{"object", "whatsapp_business_account"},
          {"entry", {{{"id", "1"}, {"changes", {{{"value", value}, {"field", "messages"}}}}}}}};
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bridge latency: the fleet's share of a person's wait"};
  std::string url, secret, graph, pnid = "777000111";
  double rate = 1000;
  int seconds = 30;
  int burst = 3;
  int64_t quiet_ms = 2000;
  int64_t gap_ms = 300;
  app.add_option("--url", url)->required();
  app.add_option("--secret", secret)->required();
  app.add_option("--graph", graph)->required();
  app.add_option("--rate", rate, "messages per minute");
  app.add_option("--seconds", seconds);
  app.add_option("--burst", burst, "messages per person per burst");
  app.add_option("--gap-ms", gap_ms, "between a person's messages in a burst");
  app.add_option("--quiet-ms", quiet_ms, "the aggregator's quiet window");
  app.add_option("--pnid", pnid);
  CLI11_PARSE(app, argc, argv);

  // People start bursts at rate/burst per minute; each burst's messages gap_ms apart.
  const double bursts_per_s = rate / 60.0 / burst;
  const int total_bursts = std::max(1, static_cast<int>(bursts_per_s * seconds));
  std::mutex mu;
  std::map<std::string, int64_t> last_sent_ms;  // person -> webhook time of the burst's last message
  std::atomic<int> failed{0};
  std::vector<std::thread> people;
  const auto start = std::chrono::steady_clock::now();
  for (int b = 0; b < total_bursts; ++b) {
    const auto due = start + std::chrono::microseconds(static_cast<int64_t>(b * 1e6 / bursts_per_s));
    std::this_thread::sleep_until(due);
    const std::string from = "1777" + std::to_string(1000000 + b);
    people.emplace_back([&, from, b] {
      for (int m = 0; m < burst; ++m) {
        const std::string raw =
            webhook(pnid, from, "wamid.bench." + from + "." + std::to_string(m), "message " + std::to_string(m)).dump();
        const int64_t t = wall_clock_ms();
        auto r = http::fetch("POST", url,
                             {{"Content-Type", "application/json"},
                              {"X-Hub-Signature-256", "sha256=" + crypto::hmac_sha256_hex(secret, raw)}},
                             raw, std::chrono::seconds(10));
        if (!r || r->status != 200) {
          ++failed;
        }
        if (m == burst - 1) {
          std::lock_guard lock(mu);
          last_sent_ms[from] = t;
        }
        if (m + 1 < burst) {
          std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
        }
      }
      (void)b;
    });
    if (people.size() > 256) {  // bound the threads: join the oldest bursts
      for (auto& t : people) {
        t.join();
      }
      people.clear();
    }
  }
  for (auto& t : people) {
    t.join();
  }
  // Wait for the answers: every person one text at Meta.
  std::vector<double> share;
  std::vector<double> agent;
  size_t answered = 0;
  const int64_t deadline = wall_clock_ms() + quiet_ms + 30000;
  while (wall_clock_ms() < deadline) {
    auto calls = http::fetch("GET", graph + "/_emulator/calls", {}, "", std::chrono::seconds(30));
    if (!calls) {
      continue;
    }
    auto all = Json::parse(calls->body, nullptr, false);
    std::map<std::string, int64_t> reply_ms;
    agent.clear();
    for (const auto& c : all) {
      const std::string path = c.value("path", "");
      const auto& body = c["body"];
      if (path == "/v22.0/" + pnid + "/messages" && body.is_object() && body.value("type", "") == "text") {
        const std::string to = body.value("to", "");
        if (!reply_ms.count(to)) {
          reply_ms[to] = c.value("at_ms", int64_t{0});
        }
      }
    }
    answered = reply_ms.size();
    if (answered >= last_sent_ms.size()) {
      share.clear();
      for (const auto& [who, sent] : last_sent_ms) {
        auto it = reply_ms.find(who);
        if (it != reply_ms.end()) {
          share.push_back(static_cast<double>(it->second - sent - quiet_ms));
        }
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::printf("rate=%.0f msg/min bursts=%d messages=%d failed_webhooks=%d answered=%zu/%zu "
              "fleet_share_ms p50=%.0f p90=%.0f p99=%.0f max=%.0f\n",
              rate, total_bursts, total_bursts * burst, failed.load(), answered, last_sent_ms.size(),
              percentile(share, 0.5), percentile(share, 0.9), percentile(share, 0.99),
              percentile(share, 1.0));
  return answered == last_sent_ms.size() && failed == 0 ? 0 : 1;
}
