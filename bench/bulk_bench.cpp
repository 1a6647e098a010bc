// bench_bulk: the figures of a bulk job against the emulator (bench/run_bulk_bench.sh drives it).
//   bench_bulk replies --kafka-brokers B --pnid P --rate R --seconds S --tag T
//       replies to people (priority reply) on wa.outbound while the job runs, R per second; each
//       carries its produce time so the emulator's call log gives its send latency.
//   bench_bulk analyse --graph G --pnid P --rate R [--pauses F] [--tag T]
//       from the emulator's call log: template sends, people, sends to one person more than once,
//       calendar seconds over the rate and the most in any 1 s window, utilisation of the rate
//       over the time the job was not paused, pause-to-silence (last send after each pause in F,
//       lines "pause_ms resume_ms"), and the replies' latency p50/p99/max.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/consumer_loop.h"
#include "common/http_client.h"
#include "common/kafka.h"

using namespace wafleet;
using Json = nlohmann::json;

namespace {

double percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return static_cast<double>(v[i]);
}

int replies(const std::string& brokers, const std::string& pnid, int rate, int seconds,
            const std::string& tag) {
  auto producer = kafka::Producer::create(kafka::ClientConfig{brokers, "bench-bulk", {}});
  if (!producer) {
    std::cerr << producer.error().message << "\n";
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  const int total = rate * seconds;
  for (int i = 0; i < total; ++i) {
    std::this_thread::sleep_until(start + std::chrono::microseconds(1000000LL * i / rate));
    const std::string to = "4915" + std::to_string(10000000 + i);
    const Json req = {{"request_id", tag + "-" + std::to_string(i)},
                      {"phone_number_id", pnid},
                      {"priority", "reply"},
                      {"to", to},
                      {"type", "text"},
                      {"text", {{"body", tag + " " + std::to_string(wall_clock_ms())}}}};
    (*producer)->produce("wa.outbound", pnid + ":" + to, req.dump(), {}, [](const Status&, int32_t, int64_t) {});
  }
  (*producer)->flush(std::chrono::seconds(30));
  std::cout << "   replies: " << total << " produced at " << rate << "/s\n";
  return 0;
}

int analyse(const std::string& graph, const std::string& pnid, int rate, const std::string& pauses_file,
            const std::string& tag) {
  auto r = http::fetch("GET", graph + "/_emulator/calls", {}, "", std::chrono::seconds(120));
  if (!r || r->status != 200) {
    std::cerr << "emulator calls: " << (r ? std::to_string(r->status) : r.error().message) << "\n";
    return 1;
  }
  auto calls = Json::parse(r->body, nullptr, false);
  std::vector<int64_t> sends;
  std::vector<int64_t> all;  // every message on the number: the rate counts replies too
  std::map<std::string, int> per_person;
  std::vector<int64_t> reply_latency;
  std::vector<std::pair<int64_t, int64_t>> reply_at;  // produced at, latency
  for (const auto& c : calls) {
    if (c.value("path", "") != "/v22.0/" + pnid + "/messages" || c.value("status", 0) != 200) {
      continue;
    }
    const auto& b = c["body"];
    if (b.value("type", "") != "read" && b.value("status", "") != "read") {
      all.push_back(c.value("at_ms", int64_t{0}));
    }
    if (b.value("type", "") == "template") {
      sends.push_back(c.value("at_ms", int64_t{0}));
      ++per_person[b.value("to", "")];
    } else if (b.value("type", "") == "text" && b.contains("text")) {
      const std::string body = b["text"].value("body", "");
      if (body.rfind(tag + " ", 0) == 0) {
        const int64_t produced = std::stoll(body.substr(tag.size() + 1));
        reply_latency.push_back(c.value("at_ms", int64_t{0}) - produced);
        reply_at.emplace_back(produced, reply_latency.back());
      }
    }
  }
  if (sends.empty()) {
    std::cerr << "no template sends at the emulator\n";
    return 1;
  }
  std::sort(sends.begin(), sends.end());
  std::sort(all.begin(), all.end());
  int twice = 0;
  for (const auto& [to, n] : per_person) {
    twice += n > 1 ? 1 : 0;
  }
  std::map<int64_t, int> per_second;
  for (int64_t t : all) {
    ++per_second[t / 1000];
  }
  int over = 0;
  int max_second = 0;
  for (const auto& [s, n] : per_second) {
    over += n > rate ? 1 : 0;
    max_second = std::max(max_second, n);
  }
  size_t sliding = 0;
  for (size_t i = 0, j = 0; i < all.size(); ++i) {
    while (j < all.size() && all[j] - all[i] < 1000) {
      ++j;
    }
    sliding = std::max(sliding, j - i);
  }
  std::vector<std::pair<int64_t, int64_t>> pauses;
  if (!pauses_file.empty()) {
    std::ifstream in(pauses_file);
    int64_t a = 0;
    int64_t b = 0;
    while (in >> a >> b) {
      pauses.emplace_back(a, b);
    }
  }
  int64_t paused_ms = 0;
  std::vector<int64_t> silence;
  for (const auto& [p, q] : pauses) {
    paused_ms += q - p;
    int64_t last = p;
    for (int64_t t : sends) {
      if (t > p && t < q) {
        last = std::max(last, t);
      }
    }
    silence.push_back(last - p);
  }
  const double active_s = static_cast<double>(sends.back() - sends.front() - paused_ms) / 1000.0;
  std::cout << "   template sends=" << sends.size() << " people=" << per_person.size()
            << " people_sent_twice=" << twice << " span_s=" << (sends.back() - sends.front()) / 1000.0
            << " active_s=" << active_s << "\n"
            << "   every message on the number=" << all.size() << " calendar_seconds_over_" << rate << "=" << over << " max_per_calendar_second=" << max_second
            << " max_in_any_1s_window=" << sliding << " utilisation="
            << 100.0 * static_cast<double>(all.size()) / (active_s * rate) << "% (templates and replies)\n";
  if (!silence.empty()) {
    std::cout << "   pauses=" << silence.size() << " pause_to_silence_ms p50=" << percentile(silence, 0.5)
              << " p99=" << percentile(silence, 0.99) << " max=" << percentile(silence, 1.0) << "\n";
  }
  if (!reply_latency.empty()) {
    std::cout << "   replies during the job=" << reply_latency.size() << " send latency ms p50="
              << percentile(reply_latency, 0.5) << " p99=" << percentile(reply_latency, 0.99)
              << " max=" << percentile(reply_latency, 1.0);
    std::sort(reply_at.begin(), reply_at.end());
    int slow = 0;
    for (const auto& [at, ms] : reply_at) {
      if (ms > 250 && slow++ < 3) {
        std::cout << " (" << ms << " ms at +" << (at - reply_at.front().first) / 1000.0 << " s)";
      }
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bulk job figures"};
  std::string brokers;
  std::string graph;
  std::string pnid;
  std::string pauses;
  std::string tag = "reply";
  int rate = 80;
  int seconds = 60;
  app.add_option("--kafka-brokers", brokers);
  app.add_option("--graph", graph);
  app.add_option("--pnid", pnid)->required();
  app.add_option("--rate", rate);
  app.add_option("--tag", tag);
  auto* rep = app.add_subcommand("replies");
  rep->add_option("--seconds", seconds);
  auto* an = app.add_subcommand("analyse");
  an->add_option("--pauses", pauses);
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  if (rep->parsed()) {
    return replies(brokers, pnid, rate, seconds, tag);
  }
  return analyse(graph, pnid, rate, pauses, tag);
}
