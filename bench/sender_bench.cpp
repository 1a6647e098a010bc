// Sender benchmark driver (bench/run_sender_bench.sh):
//   produce  --count N [--repeat-people K] --tag T   requests to wa.outbound (1 in 10 to one of
//                                                    K people written to again and again)
//   analyse  --count N --tag T [--rate R ...]        waits for N calls of this tag at the
//                                                    emulator; per-second counts, utilisation,
//                                                    pair-limit violations, messages/s
//   ceiling  --count N                               the emulator's own rate (plain libcurl)
#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "common/kafka.h"
#include "topics/topics.h"

using namespace wafleet;
using Clock = std::chrono::steady_clock;

namespace {

nlohmann::json request(const std::string& tag, int i, const std::string& to) {
  return {{"request_id", tag + "-" + std::to_string(i)},
          {"phone_number_id", "106540352242922"},
          {"to", to},
          {"type", "text"},
          {"text", {{"body", tag + " " + std::to_string(i)}}}};
}

size_t discard(char*, size_t size, size_t nmemb, void*) { return size * nmemb; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("sender benchmark driver");
  std::string brokers;
  std::string graph;
  int count = 1000;
  int repeat_people = 0;
  std::string tag = "bench";
  double rate = 0;
  int64_t pair_interval_ms = 6000;
  int pair_burst = 5;
  app.add_option("--kafka-brokers", brokers)->required();
  app.add_option("--graph", graph)->required();
  auto* produce = app.add_subcommand("produce");
  auto* analyse = app.add_subcommand("analyse");
  auto* ceiling = app.add_subcommand("ceiling");
  for (auto* c : {produce, analyse, ceiling}) {
    c->add_option("--count", count);
  }
  for (auto* c : {produce, analyse}) {
    c->add_option("--tag", tag);
  }
  produce->add_option("--repeat-people", repeat_people);
  analyse->add_option("--rate", rate, "the configured number rate (0: no limit)");
  analyse->add_option("--pair-interval-ms", pair_interval_ms);
  analyse->add_option("--pair-burst", pair_burst);
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);

  if (produce->parsed()) {
    auto p = kafka::Producer::create(kafka::ClientConfig{brokers, "bench-sender", {}}).value();
    std::atomic<int> acked{0};
    for (int i = 0; i < count; ++i) {
      const std::string to = repeat_people > 0 && i % 10 == 0
                                 ? "+1777000" + std::to_string(1000 + (i / 10) % repeat_people)
                                 : "+1888" + std::to_string(1000000 + i);
      p->produce(topics::kOutbound, "106540352242922:" + to, request(tag, i, to).dump(), {},
                 [&](const Status&, int32_t, int64_t) { ++acked; });
    }
    while (acked.load() < count) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::cout << "   produced " << count << " requests (" << tag << ")\n";
    return 0;
  }

  if (ceiling->parsed()) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL* c = curl_easy_init();
    curl_slist* h = curl_slist_append(nullptr, "Content-Type: application/json");
    h = curl_slist_append(h, "Authorization: Bearer t");
    const std::string url = graph + "/v22.0/106540352242922/messages";
    std::string body;
    const auto t0 = Clock::now();
    for (int i = 0; i < count; ++i) {
      body = request("ceiling", i, "+1999" + std::to_string(i)).dump();
      curl_easy_setopt(c, CURLOPT_URL, url.c_str());
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
      curl_easy_perform(c);
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::cout << "   emulator ceiling: " << count << " POSTs in " << s << " s = " << count / s
              << " messages/s\n";
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return 0;
  }

  // analyse: wait until every request of the tag reached the emulator.
  std::vector<std::pair<int64_t, std::string>> calls;  // (at_ms, recipient)
  const auto deadline = Clock::now() + std::chrono::seconds(600);
  while (Clock::now() < deadline) {
    auto r = http::fetch("GET", graph + "/_emulator/calls", {}, "", std::chrono::seconds(60));
    calls.clear();
    if (r && r->status == 200) {
      for (const auto& c : nlohmann::json::parse(r->body)) {
        const auto& b = c["body"];
        if (b.is_object() && b.contains("text") &&
            b["text"].value("body", "").rfind(tag + " ", 0) == 0) {
          calls.emplace_back(c["at_ms"].get<int64_t>(), b.value("to", ""));
        }
      }
    }
    if (static_cast<int>(calls.size()) >= count) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  std::sort(calls.begin(), calls.end());
  if (calls.empty()) {
    std::cerr << "no calls reached the emulator\n";
    return 1;
  }
  const int64_t t0 = calls.front().first;
  const int64_t t1 = calls.back().first;
  std::map<int64_t, int> per_second;
  for (const auto& [t, to] : calls) {
    ++per_second[(t - t0) / 1000];
  }
  int max_second = 0;
  double full_sum = 0;
  int full = 0;
  for (const auto& [sec, n] : per_second) {
    max_second = std::max(max_second, n);
    if (sec < (t1 - t0) / 1000) {  // the last second is partial
      full_sum += n;
      ++full;
    }
  }
  size_t sliding = 0;  // most calls in any 1000 ms window
  for (size_t i = 0, j = 0; i < calls.size(); ++i) {
    while (j < calls.size() && calls[j].first - calls[i].first < 1000) {
      ++j;
    }
    sliding = std::max(sliding, j - i);
  }
  // Pair limit (GCRA, interval T, burst b): any k messages to one person span >= (k - b) * T.
  std::map<std::string, std::vector<int64_t>> by_person;
  for (const auto& [t, to] : calls) {
    by_person[to].push_back(t);
  }
  int violations = 0;
  size_t most_to_one = 0;
  for (const auto& [to, ts] : by_person) {
    most_to_one = std::max(most_to_one, ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
      for (size_t j = i + static_cast<size_t>(pair_burst); j < ts.size(); ++j) {
        const int64_t need = static_cast<int64_t>(j - i + 1 - static_cast<size_t>(pair_burst)) *
                             pair_interval_ms;
        if (ts[j] - ts[i] < need - 50) {
          ++violations;
        }
      }
    }
  }
  const double span_s = static_cast<double>(t1 - t0) / 1000.0;
  std::cout << "   calls=" << calls.size() << " span_s=" << span_s
            << " messages_per_s=" << (span_s > 0 ? static_cast<double>(calls.size()) / span_s : 0)
            << " max_per_calendar_second=" << max_second << " max_in_any_1s_window=" << sliding;
  if (full > 0) {
    std::cout << " mean_per_full_second=" << full_sum / full;
    if (rate > 0) {
      std::cout << " utilisation=" << 100.0 * full_sum / full / rate << "%";
    }
  }
  std::cout << " people=" << by_person.size() << " most_to_one_person=" << most_to_one
            << " pair_violations=" << violations << "\n";
  return 0;
}
