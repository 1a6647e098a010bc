// Aggregator figures (issue 3):
//   fill  --count N --people P : produce N inbound events (P conversations, event time in the past)
//   copy  --count N            : the ceiling: consume wa.inbound and produce every record to
//                                bench.copy with no logic, waiting for acks like the aggregator
//   turns --messages N         : read wa.turns until turns covering N messages are seen; rate
//   live  --people P --seconds S : bursts in real time; close latency = turn readable - due
#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <iostream>
#include <random>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "common/kafka.h"
#include "topics/topics.h"
#include "topics/webhook_event.h"

using namespace wafleet;
using Clock = std::chrono::steady_clock;

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

WebhookEvent event(int person, int n, int64_t t) {
  WebhookEvent e;
  e.kind = EventKind::kMessage;
  e.phone_number_id = "106540352242922";
  e.identity = "1555" + std::to_string(3000000 + person);
  e.wa_id = e.identity;
  e.conversation_key = e.phone_number_id + ":" + e.identity;
  e.message_id = "wamid.B." + std::to_string(person) + "." + std::to_string(n) + "." +
                 std::to_string(t);
  e.event_id = "m:" + e.phone_number_id + ":" + e.message_id;
  e.type = "text";
  e.received_at_ms = t;
  e.source = "meta";
  e.raw = {{"from", e.wa_id}, {"id", e.message_id}, {"type", "text"},
           {"text", {{"body", "message number " + std::to_string(n)}}}};
  return e;
}

void produce_all(kafka::Producer& p, const std::vector<std::pair<std::string, std::string>>& kv,
                 const std::string& topic) {
  std::atomic<size_t> left{kv.size()};
  std::promise<void> done;
  for (const auto& [k, v] : kv) {
    p.produce(topic, k, v, {}, [&](const Status&, int32_t, int64_t) {
      if (left.fetch_sub(1) == 1) {
        done.set_value();
      }
    });
  }
  done.get_future().wait();
}

double pct(std::vector<double>& v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"aggregator benchmark"};
  std::string brokers;
  int count = 100000;
  int people = 10000;
  int seconds = 20;
  app.add_option("--kafka-brokers", brokers)->required();
  auto* fill = app.add_subcommand("fill");
  fill->add_option("--count", count);
  fill->add_option("--people", people);
  auto* copy = app.add_subcommand("copy");
  copy->add_option("--count", count);
  auto* turns = app.add_subcommand("turns");
  turns->add_option("--messages", count);
  auto* live = app.add_subcommand("live");
  live->add_option("--people", people);
  live->add_option("--seconds", seconds);
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  kafka::ClientConfig kc{brokers, "bench", {}};

  if (fill->parsed()) {
    auto p = kafka::Producer::create(kc).value();
    const int64_t t0 = now_ms() - 3600 * 1000;
    std::vector<std::pair<std::string, std::string>> kv;
    const int per = std::max(1, count / people);
    for (int n = 0; n < per; ++n) {
      for (int person = 0; person < people; ++person) {
        auto e = event(person, n, t0 + n * 100 + person % 50);  // 100 ms apart: one burst each
        kv.emplace_back(e.conversation_key, e.encode());
      }
    }
    const auto start = Clock::now();
    produce_all(*p, kv, topics::kInbound);
    std::cout << "filled " << kv.size() << " events in "
              << std::chrono::duration<double>(Clock::now() - start).count() << " s\n";
    return 0;
  }
  if (copy->parsed()) {
    auto p = kafka::Producer::create(kc).value();
    kafka::ConsumerOptions co;
    co.group_id = "bench-copy-" + crypto::random_hex(4);
    co.topics = {topics::kInbound};
    auto c = kafka::Consumer::create(kc, co).value();
    int seen = 0;
    std::optional<Clock::time_point> first;
    std::atomic<int> acked{0};
    while (seen < count) {
      // Same batching as the aggregator: up to 1,000 records or 10 ms, then wait for acks.
      const auto batch_end = Clock::now() + std::chrono::milliseconds(10);
      int in_batch = 0;
      std::vector<kafka::Record> batch;
      while (in_batch < 1000 && Clock::now() < batch_end) {
        auto r = c->poll(std::chrono::milliseconds(in_batch == 0 ? 100 : 0));
        if (!r || !*r) {
          break;
        }
        if (!first) {
          first = Clock::now();
        }
        batch.push_back(std::move(**r));
        ++in_batch;
      }
      std::vector<std::pair<std::string, std::string>> kv;
      for (auto& r : batch) {
        kv.emplace_back(r.key, r.value);
      }
      if (!kv.empty()) {
        produce_all(*p, kv, "bench.copy");
        for (auto& r : batch) {
          (void)c->store_offset(r.topic, r.partition, r.offset + 1);
        }
      }
      seen += in_batch;
    }
    const double s = std::chrono::duration<double>(Clock::now() - *first).count();
    std::cout << "copy: " << seen << " records in " << s << " s = " << seen / s
              << " records/s (consume + produce + acks, no logic)\n";
    c->close();
    return 0;
  }
  if (turns->parsed() || live->parsed()) {
    kafka::ConsumerOptions co;
    co.group_id = "bench-turns-" + crypto::random_hex(4);
    co.topics = {topics::kTurns};
    co.auto_offset_reset = live->parsed() ? "latest" : "earliest";
    co.fetch_wait_max_ms = 10;  // see new turns at once
    auto c = kafka::Consumer::create(kc, co).value();
    std::vector<double> lat_ms;
    std::atomic<bool> stop{false};
    std::thread producer_thread;
    int expected_messages = count;
    if (live->parsed()) {
      // Wait for the assignment, then bursts: each person 3 messages 200 ms apart, every ~3 s.
      while (c->assignment().empty()) {
        (void)c->poll(std::chrono::milliseconds(100));
      }
      expected_messages = -1;
      producer_thread = std::thread([&, p = std::shared_ptr<kafka::Producer>(
                                             kafka::Producer::create(kc).value().release())] {
        std::mt19937 rng(7);
        const auto end = Clock::now() + std::chrono::seconds(seconds);
        int n = 0;
        while (Clock::now() < end) {
          for (int k = 0; k < 3 && Clock::now() < end; ++k) {
            std::vector<std::pair<std::string, std::string>> kv;
            for (int person = 0; person < people; ++person) {
              auto e = event(person, n * 3 + k, now_ms());
              kv.emplace_back(e.conversation_key, e.encode());
            }
            produce_all(*p, kv, topics::kInbound);
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
          }
          ++n;
          std::this_thread::sleep_for(std::chrono::milliseconds(2600 + rng() % 400));
        }
        stop = true;
      });
    }
    int messages = 0;
    int turn_count = 0;
    std::optional<Clock::time_point> first;
    auto last_seen = Clock::now();
    while (true) {
      auto r = c->poll(std::chrono::milliseconds(100));
      if (r && *r) {
        auto v = nlohmann::json::parse((*r)->value, nullptr, false);
        if (!v.is_discarded()) {
          if (!first) {
            first = Clock::now();
          }
          last_seen = Clock::now();
          ++turn_count;
          messages += static_cast<int>(v["message_ids"].size());
          if (live->parsed()) {
            lat_ms.push_back(static_cast<double>(now_ms() - v["window"]["due_at_ms"].get<int64_t>()));
          }
        }
      }
      if (expected_messages > 0 && messages >= expected_messages) {
        break;
      }
      if (live->parsed() && stop && Clock::now() - last_seen > std::chrono::seconds(5)) {
        break;
      }
      if (Clock::now() - last_seen > std::chrono::seconds(60)) {
        std::cerr << "no turn for 60 s\n";
        break;
      }
    }
    if (producer_thread.joinable()) {
      producer_thread.join();
    }
    if (turns->parsed()) {
      const double s = std::chrono::duration<double>(last_seen - *first).count();
      const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_seen);
      std::cout << "turns: messages=" << messages << " turns=" << turn_count
                << " first_to_last_s=" << s << " last_turn_wall_ms=" << now_ms() - idle.count()
                << "\n";
    } else {
      std::cout << "close latency (turn readable on wa.turns - window due): turns=" << turn_count
                << " p50_ms=" << pct(lat_ms, 0.5) << " p99_ms=" << pct(lat_ms, 0.99)
                << " max_ms=" << pct(lat_ms, 1.0) << "\n";
    }
    c->close();
    return 0;
  }
  return 0;
}
