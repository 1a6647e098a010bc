#include "workers/bridge/worker.h"

#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include "common/clock.h"
#include "common/dead_letter.h"
#include "common/http_client.h"
#include "common/json_util.h"
#include "common/log.h"
#include "topics/topics.h"
#include "workers/bridge/state.h"
#include "workers/media/worker.h"

namespace wafleet::bridge {

namespace {

using Json = nlohmann::json;

std::vector<config::Option> own_options() {
  std::vector<config::Option> opts = {
      {"agent", "openai", "agent backend: openai (Chat Completions) | webhook"},
      {"agent-url", "", "openai: the API base, e.g. http://127.0.0.1:11434/v1; webhook: the URL",
       false, true},
      {"agent-model", "", "model name sent to the openai backend"},
      {"agent-key", "", "Bearer key for the agent backend", true},
      {"system-prompt", "You are a helpful assistant answering customers on WhatsApp. Be brief.",
       "system prompt of the openai backend", true},
      {"agent-images", "data", "images to the model: data (data URIs of the stored bytes) | link | off"},
      {"agent-image-max-bytes", "4194304", "larger images are described, not attached"},
      {"media-link-base", "", "agent-images=link: base URL the stored objects are served under"},
      {"agent-timeout-ms", "30000", "longest one agent call may take"},
      {"agent-attempts", "3", "tries per turn for 5xx and timeouts, then the fallback message"},
      {"agent-backoff-ms", "500", "first retry delay, doubled per try"},
      {"agent-concurrency", "16", "agent calls in flight at once (one per conversation)"},
      {"memory-turns", "10", "earlier turns and replies the agent sees"},
      {"memory-ttl-hours", "24", "how long a conversation's memory is kept"},
      {"handoff-keywords", "", "messages that ask for a person (comma-separated, case-insensitive, "
                               "whole message); empty: a short multilingual default list"},
      {"handoff-message", "I'm passing you to a person. They will answer here shortly.",
       "sent when the bot hands a conversation over (empty: nothing)"},
      {"handoff-ttl-hours", "24", "a handoff ends by itself after this long"},
      {"handoff-after-failures", "3", "failed agent calls in a row that hand over"},
      {"fallback-message", "Sorry, I can't answer right now. Please try again in a moment.",
       "sent when the agent could not answer (empty: nothing)"},
      {"ack-reaction", "", "react with this emoji to the person's last message while the agent "
                           "thinks (empty: off)"},
      {"typing", "true", "show a typing indicator while the agent thinks (again every 20 s)"},
      {"window-template", "", "name:language of a template sent instead of an answer that would "
                              "land after the 24-hour window; empty: a failed outcome"},
  };
  auto s3 = media::s3_options();
  opts.insert(opts.end(), s3.begin(), s3.end());
  return opts;
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One agent call, made on a pool thread.
struct Job {
  std::string key;
  uint64_t generation = 0;
  Json body;
};
struct Completion {
  std::string key;
  uint64_t generation = 0;
  Expected<Answer, std::string> answer = Unexpected(std::string("not called"));
  int attempts = 0;
  int64_t took_ms = 0;
};

// Calls the backend with retries for 5xx, 429 and transport errors; a 4xx or a 2xx with a bad
// body fails at once, with the reason.
Completion call_agent(const WorkerConfig& c, Job job) {
  Completion done;
  done.key = std::move(job.key);
  done.generation = job.generation;
  const std::string url = c.agent == "openai" ? c.url + "/chat/completions" : c.url;
  std::vector<std::pair<std::string, std::string>> headers = {{"Content-Type", "application/json"}};
  if (!c.key.empty()) {
    headers.emplace_back("Authorization", "Bearer " + c.key);
  }
  const std::string body = job.body.dump();
  const int64_t started = wall_clock_ms();
  auto backoff = c.backoff;
  for (int attempt = 1; attempt <= c.attempts; ++attempt) {
    done.attempts = attempt;
    auto r = http::fetch("POST", url, headers, body, c.timeout);
    std::string why;
    bool retry = false;
    if (!r) {
      why = "agent call: " + r.error().message;
      retry = true;
    } else if (r->status >= 500 || r->status == 429) {
      why = "agent answered HTTP " + std::to_string(r->status);
      retry = true;
    } else if (r->status < 200 || r->status >= 300) {
      why = "agent answered HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 200);
    } else {
      auto j = json::parse(r->body);
      auto a = c.agent == "openai" ? parse_chat_completion(j) : parse_webhook_answer(j);
      if (a) {
        done.answer = std::move(a);
        done.took_ms = wall_clock_ms() - started;
        return done;
      }
      why = "agent answered 2xx with an unusable body: " + a.error();
    }
    done.answer = Unexpected(why);
    if (!retry || attempt == c.attempts) {
      break;
    }
    std::this_thread::sleep_for(backoff);
    backoff *= 2;
  }
  done.took_ms = wall_clock_ms() - started;
  return done;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class BridgeCore : public worker::Core, private kafka::RebalanceListener {
 public:
  BridgeCore(worker::Context& ctx, const WorkerConfig& c)
      : c_(c),
        ctx_(ctx),
        state_(ctx.redis(), c.memory_ttl_ms, c.memory_turns),
        turns_(prometheus::BuildCounter()
                   .Name("wafleet_bridge_turns_total")
                   .Help("turns by what became of them")
                   .Register(ctx.metrics())),
        agent_seconds_(prometheus::BuildHistogram()
                           .Name("wafleet_bridge_agent_call_seconds")
                           .Help("agent call time, retries included")
                           .Register(ctx.metrics())
                           .Add({}, prometheus::Histogram::BucketBoundaries{
                                        0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60})) {
    c_.prompt.read_media = [this](const std::string& uri) -> std::optional<std::string> {
      auto obj = media::open_stored(uri, c_.s3 ? &*c_.s3 : nullptr);
      if (!obj) {
        return std::nullopt;
      }
      auto bytes = read_file(obj->path);
      if (obj->temporary) {
        std::remove(obj->path.c_str());
      }
      return bytes;
    };
    c_.prompt.link_for = [this](const std::string& uri) {
      const size_t sha = uri.find("sha256/");
      return c_.media_link_base.empty() || sha == std::string::npos
                 ? std::string()
                 : c_.media_link_base + "/" + uri.substr(sha);
    };
  }

  kafka::RebalanceListener* listener() override { return this; }

  void stop() override {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

  Status run(worker::Context& ctx) override {
    for (int i = 0; i < c_.concurrency; ++i) {
      pool_.emplace_back([this] { pool_thread(); });
    }
    // A person writing through another tool (an outbound request the bridge did not make) takes
    // the conversation over: the bot steps back.
    kafka::ConsumerOptions oco;
    oco.group_id = ctx.group_id() + "-outbound";
    oco.topics = {topics::kOutbound};
    oco.auto_offset_reset = "latest";
    auto outbound = ctx.create_consumer(oco);
    if (!outbound) {
      shutdown_pool();
      return Unexpected(Error::fatal("outbound consumer: " + outbound.error().message));
    }
    redis::RedisClient watcher_redis(ctx.redis_options());
    State watcher_state(watcher_redis, c_.memory_ttl_ms, c_.memory_turns);
    kafka::LoopOptions wlo = ctx.loop_options();
    wlo.group_id = oco.group_id;
    wlo.max_attempts = 20;
    kafka::ConsumerLoop watcher(**outbound, ctx.producer(), wlo);
    Status watcher_result;
    std::thread watcher_thread([&] {
      watcher_result = watcher.run(
          [&](const kafka::Record& r) { return watch_outbound(watcher_state, r); });
      if (!watcher_result) {
        ctx.request_stop();
      }
    });
    Status result = loop(ctx);
    watcher.stop();
    watcher_thread.join();
    (*outbound)->close(std::chrono::seconds(10));
    shutdown_pool();
    if (result && !watcher_result) {
      return Unexpected(Error::fatal("outbound watcher: " + watcher_result.error().message));
    }
    return result;
  }

 private:
  struct Pending {
    kafka::Record record;
    Json turn;
  };
  struct Conversation {
    std::deque<Pending> turns;
    bool in_flight = false;
    uint64_t generation = 0;
    int64_t started_us = 0;
    int64_t last_typing_us = 0;
    int typing_sent = 0;
  };

  // --- the pool -------------------------------------------------------------------------------
  void pool_thread() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return pool_stop_ || !jobs_.empty(); });
        if (pool_stop_) {
          return;
        }
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Completion done = call_agent(c_, std::move(job));
      std::lock_guard lock(mu_);
      completions_.push_back(std::move(done));
    }
  }
  void shutdown_pool() {
    {
      std::lock_guard lock(mu_);
      pool_stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : pool_) {
      t.join();
    }
    pool_.clear();
  }

  // --- rebalance: revoked partitions take their unanswered turns with them ------------------
  void on_assigned(const std::vector<kafka::TopicPartition>&) override {}
  void on_revoked(const std::vector<kafka::TopicPartition>& partitions) override {
    for (const auto& tp : partitions) {
      pending_offsets_.erase(tp.partition);
      high_.erase(tp.partition);
      for (auto it = conversations_.begin(); it != conversations_.end();) {
        if (!it->second.turns.empty() && it->second.turns.front().record.partition == tp.partition) {
          it = conversations_.erase(it);  // a call in flight is dropped when it answers
        } else {
          ++it;
        }
      }
    }
  }

  // --- the loop -------------------------------------------------------------------------------
  Status loop(worker::Context& ctx) {
    kafka::Consumer& consumer = ctx.consumer();
    while (!ctx.stopping()) {
      const bool busy = in_flight_ > 0;
      auto timeout = std::chrono::milliseconds(busy ? 5 : 50);
      for (int n = 0; n < 500; ++n) {
        auto polled = consumer.poll(timeout);
        if (!polled) {
          return Unexpected(polled.error());
        }
        if (!*polled) {
          break;
        }
        timeout = std::chrono::milliseconds(0);
        if (Status st = take(std::move(**polled)); !st) {
          return st;
        }
      }
      std::deque<Completion> done;
      {
        std::lock_guard lock(mu_);
        done.swap(completions_);
      }
      for (auto& d : done) {
        --in_flight_;
        if (Status st = finish_call(std::move(d)); !st) {
          if (st.error().kind == ErrorKind::kFatal) {
            return st;
          }
          log::warn("bridge.retry", {{"reason", st.error().message}});
        }
      }
      for (auto it = ready_.begin(); it != ready_.end() && in_flight_ < c_.concurrency;) {
        const std::string key = *it;
        it = ready_.erase(it);
        if (Status st = start_call(key); !st) {
          if (st.error().kind == ErrorKind::kFatal) {
            return st;
          }
          log::warn("bridge.retry", {{"reason", st.error().message}});
          ready_.insert(key);
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          break;
        }
      }
      refresh_typing();
    }
    return {};
  }

  Status take(kafka::Record r) {
    high_[r.partition] = std::max(high_[r.partition], r.offset + 1);
    auto turn = json::parse(r.value);
    if (!turn.is_object() || json::str(turn, "turn_id").empty() ||
        json::str(turn, "conversation_key").empty()) {
      turns_.Add({{"result", "invalid"}}).Increment();
      if (Status d = kafka::produce_dead_letter(ctx_.producer(), ctx_.loop_options(), r,
                                                Error::invalid("not a turn (turn_id and "
                                                               "conversation_key required)"),
                                                1, wall_clock_ms(), "decode");
          !d) {
        return Unexpected(Error::fatal("cannot write the dead-letter topic: " + d.error().message));
      }
      store_offsets(r.partition);
      return {};
    }
    const std::string key = json::str(turn, "conversation_key");
    Conversation& conv = conversations_[key];
    pending_offsets_[r.partition].insert(r.offset);
    conv.turns.push_back({std::move(r), std::move(turn)});
    if (conv.in_flight) {
      conv.generation = ++generation_;  // the running call is stale: redo with every turn
      turns_.Add({{"result", "joined_running_call"}}).Increment();
    } else {
      ready_.insert(key);
    }
    return {};
  }

  // The turns leave the conversation; offsets move up to the lowest turn still pending.
  void finish_turns(const std::string& key, size_t n) {
    auto it = conversations_.find(key);
    if (it == conversations_.end()) {
      return;
    }
    std::set<int32_t> partitions;
    for (size_t i = 0; i < n && !it->second.turns.empty(); ++i) {
      const auto& rec = it->second.turns.front().record;
      auto& offsets = pending_offsets_[rec.partition];
      if (auto o = offsets.find(rec.offset); o != offsets.end()) {
        offsets.erase(o);
      }
      partitions.insert(rec.partition);
      it->second.turns.pop_front();
    }
    if (it->second.turns.empty() && !it->second.in_flight) {
      conversations_.erase(it);
    } else if (!it->second.turns.empty() && !it->second.in_flight) {
      ready_.insert(key);
    }
    for (int32_t p : partitions) {
      store_offsets(p);
    }
  }

  void store_offsets(int32_t partition) {
    const auto& offsets = pending_offsets_[partition];
    const int64_t next = offsets.empty() ? high_[partition] : *offsets.begin();
    if (next > 0) {
      if (Status st = ctx_.consumer().store_offset(topics::kTurns, partition, next); !st) {
        log::warn("consumer.offset_store_failed", {{"reason", st.error().message}});
      }
    }
  }

  Status start_call(const std::string& key) {
    auto it = conversations_.find(key);
    if (it == conversations_.end() || it->second.turns.empty() || it->second.in_flight) {
      return {};
    }
    Conversation& conv = it->second;
    // Redeliveries of turns answered before (a crash after the answer, before the commit).
    size_t skip = 0;
    for (const auto& p : conv.turns) {
      if (dlq::replay_count_of(p.record) > 0) {
        break;  // sent back from the DLQ on purpose: answered again
      }
      auto done = state_.answered(json::str(p.turn, "turn_id"));
      if (!done) {
        return Unexpected(done.error());
      }
      if (!*done) {
        break;
      }
      ++skip;
    }
    if (skip > 0) {
      turns_.Add({{"result", "already_answered"}}).Increment(static_cast<double>(skip));
      finish_turns(key, skip);
      return {};
    }
    std::vector<Json> turns;
    for (const auto& p : conv.turns) {
      turns.push_back(p.turn);
    }
    const Json& latest = turns.back();
    auto owner = state_.owner(key);
    if (!owner) {
      return Unexpected(owner.error());
    }
    if (!owner->bot()) {
      // A person has it: stay silent, but remember what was said for when the bot is back.
      std::vector<MemoryEntry> said;
      for (const auto& t : turns) {
        said.push_back({"user", turn_text(t)});
      }
      if (Status st = state_.remember(key, said); !st) {
        return st;
      }
      return settle(key, turns, "silent_" + owner->owner);
    }
    for (const auto& t : turns) {
      if (asks_for_human(t, c_.handoff_keywords)) {
        if (Status st = hand_over(key, latest, "keyword", "the person asked for a human", ""); !st) {
          return st;
        }
        return settle(key, turns, "handed_off");
      }
    }
    auto memory = state_.memory(key);
    if (!memory) {
      return Unexpected(memory.error());
    }
    Job job;
    job.key = key;
    if (c_.agent == "openai") {
      job.body = chat_request(turns, *memory, c_.prompt);
    } else {
      auto session = state_.session(key);
      if (!session) {
        return Unexpected(session.error());
      }
      Json mem = Json::array();
      for (const auto& m : *memory) {
        mem.push_back({{"role", m.role}, {"content", m.content}});
      }
      const int64_t last = latest.value("window", Json::object()).value("last_message_at_ms", int64_t{0});
      job.body = {{"turn", latest}, {"turns", turns}, {"memory", mem},
                  {"window_closes_at_ms", last + kWindowMs}, {"session_id", *session}};
    }
    if (!c_.ack_reaction.empty()) {
      if (Status st = send(key, reaction_request(latest, c_.ack_reaction)); !st) {
        return st;
      }
    }
    conv.generation = ++generation_;
    job.generation = conv.generation;
    conv.in_flight = true;
    conv.started_us = now_us();
    conv.typing_sent = 0;
    conv.last_typing_us = 0;
    ++in_flight_;
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    if (c_.typing) {
      send_typing(key, conv);
    }
    return {};
  }

  void send_typing(const std::string& key, Conversation& conv) {
    if (conv.turns.empty()) {
      return;
    }
    const Json req = typing_request(conv.turns.back().turn, conv.typing_sent++);
    conv.last_typing_us = now_us();
    // Best effort: a typing indicator that does not go out is no reason to stop.
    if (Status st = send(key, req); !st) {
      log::warn("bridge.typing_failed", {{"reason", st.error().message}});
    }
  }

  // Meta drops a typing indicator after 25 s: renew it every 20 s while the agent thinks.
  void refresh_typing() {
    if (!c_.typing) {
      return;
    }
    const int64_t now = now_us();
    for (auto& [key, conv] : conversations_) {
      if (conv.in_flight && now - conv.last_typing_us >= 20'000'000) {
        send_typing(key, conv);
      }
    }
  }

  Status finish_call(Completion done) {
    agent_seconds_.Observe(static_cast<double>(done.took_ms) / 1000.0);
    auto it = conversations_.find(done.key);
    if (it == conversations_.end() || it->second.generation != done.generation) {
      // A newer turn came while the agent was answering (or the partition moved): this answer
      // lacks it. Dropped; the next call has every turn.
      if (it != conversations_.end()) {
        it->second.in_flight = false;
        ready_.insert(done.key);
      }
      turns_.Add({{"result", "stale_answer_dropped"}}).Increment();
      log::info("bridge.stale_answer_dropped", {{"conversation", done.key}});
      return {};
    }
    Conversation& conv = it->second;
    conv.in_flight = false;
    std::vector<Json> turns;
    for (const auto& p : conv.turns) {
      turns.push_back(p.turn);
    }
    const Json latest = turns.back();
    const std::string& key = done.key;
    if (!done.answer) {
      return agent_failed(key, turns, done);
    }
    if (Status st = state_.succeeded(key); !st) {
      return retry_later(key, st);
    }
    const Answer& a = *done.answer;
    if (Status st = deliver(key, latest, a, source_of(key)); !st) {
      return retry_later(key, st);
    }
    if (a.handoff) {
      if (Status st = hand_over(key, latest, c_.agent == "openai" ? "tool" : "webhook",
                                a.handoff->reason, a.handoff->queue);
          !st) {
        return retry_later(key, st);
      }
    }
    std::vector<MemoryEntry> entries;
    for (const auto& t : turns) {
      entries.push_back({"user", turn_text(t)});
    }
    if (!a.text.empty()) {
      entries.push_back({"assistant", a.text});
    }
    Status mem = a.end_session ? state_.forget(key) : state_.remember(key, entries);
    if (mem && !a.session_id.empty() && !a.end_session) {
      mem = state_.set_session(key, a.session_id);
    }
    if (!mem) {
      log::warn("bridge.memory_failed", {{"reason", mem.error().message}});
    }
    log::info("bridge.answered", {{"conversation", key},
                                  {"turns", turns.size()},
                                  {"replies", a.replies.size()},
                                  {"handoff", a.handoff.has_value()},
                                  {"agent_ms", done.took_ms}});
    return settle(key, turns, a.handoff ? "answered_and_handed_off" : "answered");
  }

  // The replies go out, unless they would land after the 24-hour window closed.
  Status deliver(const std::string& key, const Json& latest, const Answer& a,
                 const std::string& source) {
    if (a.replies.empty()) {
      return {};
    }
    const int64_t last = latest.value("window", Json::object()).value("last_message_at_ms", int64_t{0});
    if (last > 0 && wall_clock_ms() >= last + kWindowMs) {
      const std::string why = "the 24-hour customer-service window closed before the answer "
                              "was ready: not sent as free-form";
      if (!c_.window_template.empty()) {
        const auto colon = c_.window_template.find(':');
        Json req = outbound_requests(latest, Answer{{Json{{"type", "text"}, {"text", {{"body", "x"}}}}},
                                                    std::nullopt, false, "", ""})
                       .front();
        req.erase("text");
        req["type"] = "template";
        req["template"] = {{"name", c_.window_template.substr(0, colon)},
                           {"language", {{"code", colon == std::string::npos
                                                      ? std::string("en_US")
                                                      : c_.window_template.substr(colon + 1)}}}};
        log::info("bridge.window_closed", {{"conversation", key}, {"sent", "template"}});
        return send(key, req);
      }
      for (const auto& req : outbound_requests(latest, a, source)) {
        Json result = {{"request_id", req["request_id"]},
                       {"idempotency_key", req["idempotency_key"]},
                       {"phone_number_id", req["phone_number_id"]},
                       {"type", req["type"]},
                       {"status", "failed"},
                       {"attempts", 0},
                       {"at_ms", wall_clock_ms()},
                       {"error", {{"code", 131047}, {"message", why}, {"retriable", false},
                                  {"class", "invalid_input"}}}};
        for (const char* f : {"to", "recipient"}) {
          if (req.contains(f)) {
            result[f] = req[f];
          }
        }
        if (Status st = kafka::produce_and_wait(ctx_.producer(), topics::kOutboundResults, key,
                                                result.dump(), {{"request_id", req["request_id"]}});
            !st) {
          return st;
        }
      }
      log::info("bridge.window_closed", {{"conversation", key}, {"sent", "nothing"}});
      return {};
    }
    for (const auto& req : outbound_requests(latest, a, source)) {
      if (Status st = send(key, req); !st) {
        return st;
      }
    }
    return {};
  }

  // The source of a conversation's replies, which their idempotency keys start with: a turn
  // replayed from the DLQ (by an operator, once the agent is back) is answered anew.
  std::string source_of(const std::string& key) const {
    auto it = conversations_.find(key);
    if (it == conversations_.end() || it->second.turns.empty()) {
      return "bridge";
    }
    const int replay = dlq::replay_count_of(it->second.turns.back().record);
    return replay > 0 ? "bridge-replay" + std::to_string(replay) : "bridge";
  }

  Status agent_failed(const std::string& key, const std::vector<Json>& turns,
                      const Completion& done) {
    const Json& latest = turns.back();
    log::warn("bridge.agent_failed", {{"conversation", key},
                                      {"attempts", done.attempts},
                                      {"reason", done.answer.error()}});
    auto n = state_.failed(key);
    if (!n) {
      return retry_later(key, Unexpected(n.error()));
    }
    if (!c_.fallback_message.empty()) {
      Answer fallback;
      fallback.replies.push_back({{"type", "text"}, {"text", {{"body", c_.fallback_message}}}});
      if (Status st = deliver(key, latest, fallback, "bridge-fallback"); !st) {
        return retry_later(key, st);
      }
    }
    // The turn, its context and why, for a replay once the agent is back.
    const auto& rec = conversations_[key].turns.back().record;
    // Permanent: not replayed by wafleet-replay on its own (the person got the fallback); an
    // operator replays it with `wafleet dlq replay` once the agent is back, and it is answered.
    if (Status d = kafka::produce_dead_letter(ctx_.producer(), ctx_.loop_options(), rec,
                                              Error::permanent("agent: " + done.answer.error()),
                                              done.attempts, wall_clock_ms(), "agent");
        !d) {
      return Unexpected(Error::fatal("cannot write the dead-letter topic: " + d.error().message));
    }
    if (*n >= c_.handoff_after_failures) {
      if (Status st = hand_over(key, latest, "failures",
                                std::to_string(*n) + " failed agent calls in a row", "");
          !st) {
        return retry_later(key, st);
      }
    }
    return settle(key, turns, "agent_failed");
  }

  // A Redis or Kafka hiccup after the call: the turns stay and are tried again.
  Status retry_later(const std::string& key, const Status& st) {
    ready_.insert(key);
    return st;
  }

  Status settle(const std::string& key, const std::vector<Json>& turns, const std::string& result) {
    std::vector<std::string> ids;
    for (const auto& t : turns) {
      ids.push_back(json::str(t, "turn_id"));
    }
    if (Status st = state_.mark_answered(ids); !st) {
      return retry_later(key, st);
    }
    turns_.Add({{"result", result}}).Increment(static_cast<double>(turns.size()));
    finish_turns(key, turns.size());
    return {};
  }

  Status hand_over(const std::string& key, const Json& latest, const std::string& by,
                   const std::string& reason, const std::string& queue) {
    Owner o;
    o.owner = "human";
    o.by = by;
    o.reason = reason;
    o.since_ms = wall_clock_ms();
    o.until_ms = o.since_ms + c_.handoff_ttl_ms;
    if (Status st = state_.hand_over(key, o, c_.handoff_ttl_ms); !st) {
      return st;
    }
    if (!c_.handoff_message.empty()) {
      Json req = outbound_requests(
                     latest, Answer{{Json{{"type", "text"}, {"text", {{"body", c_.handoff_message}}}}},
                                    std::nullopt, false, "", ""},
                     "bridge-handoff")
                     .front();
      if (Status st = send(key, req); !st) {
        return st;
      }
    }
    Json memory = Json::array();
    if (auto m = state_.memory(key); m) {
      for (const auto& e : *m) {
        memory.push_back({{"role", e.role}, {"content", e.content}});
      }
    }
    memory.push_back({{"role", "user"}, {"content", turn_text(latest)}});
    const Json record = {{"conversation_key", key},
                         {"event", "handed_off"},
                         {"owner", "human"},
                         {"by", by},
                         {"reason", reason},
                         {"queue", queue},
                         {"phone_number_id", json::str(latest, "phone_number_id")},
                         {"wa_id", json::str(latest, "wa_id")},
                         {"user_id", json::str(latest, "user_id")},
                         {"turn_id", json::str(latest, "turn_id")},
                         {"memory", memory},
                         {"until_ms", o.until_ms},
                         {"at_ms", o.since_ms}};
    log::info("bridge.handed_off", {{"conversation", key}, {"by", by}});
    return kafka::produce_and_wait(ctx_.producer(), topics::kHandoffs, key, record.dump());
  }

  Status send(const std::string& key, const Json& req) {
    return kafka::produce_and_wait(ctx_.producer(), topics::kOutbound, key, req.dump(),
                                   {{"request_id", json::str(req, "request_id")},
                                    {"source", "bridge"}});
  }

  // On the watcher thread, with its own Redis connection.
  Status watch_outbound(State& state, const kafka::Record& r) {
    auto req = json::parse(r.value);
    if (!req.is_object()) {
      return {};
    }
    const std::string type = json::str(req, "type");
    const std::string source = json::str(json::obj(req, "wafleet"), "source");
    // A person's message: priority "human", or any message the bridge did not make (receipts,
    // bulk campaigns and the receiver's own requests aside).
    const bool human = json::str(req, "priority") == "human";
    if (!human && (type.empty() || type == "read" || type == "typing" ||
                   source.starts_with("bridge") || json::str(req, "priority") == "bulk" ||
                   r.header("source").value_or("") == "receiver")) {
      return {};
    }
    if (r.key.empty()) {
      return {};
    }
    auto owner = state.owner(r.key);
    if (!owner) {
      return Unexpected(owner.error());
    }
    if (!owner->bot()) {
      return {};
    }
    Owner o;
    o.owner = "human";
    o.by = "human_message";
    o.reason = "a person wrote to them (" + (source.empty() ? std::string("not the bridge") : source) + ")";
    o.since_ms = wall_clock_ms();
    o.until_ms = o.since_ms + c_.handoff_ttl_ms;
    if (Status st = state.hand_over(r.key, o, c_.handoff_ttl_ms); !st) {
      return st;
    }
    log::info("bridge.human_took_over", {{"conversation", r.key}});
    const Json record = {{"conversation_key", r.key}, {"event", "handed_off"}, {"owner", "human"},
                         {"by", "human_message"}, {"reason", o.reason},
                         {"phone_number_id", json::str(req, "phone_number_id")},
                         {"until_ms", o.until_ms}, {"at_ms", o.since_ms}};
    return kafka::produce_and_wait(ctx_.producer(), topics::kHandoffs, r.key, record.dump());
  }

  static constexpr int64_t kWindowMs = 24LL * 3600 * 1000;

  WorkerConfig c_;
  worker::Context& ctx_;
  State state_;
  std::unordered_map<std::string, Conversation> conversations_;
  std::set<std::string> ready_;  // conversations with turns and no call running
  std::map<int32_t, std::multiset<int64_t>> pending_offsets_;
  std::map<int32_t, int64_t> high_;
  uint64_t generation_ = 0;
  int in_flight_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::deque<Completion> completions_;
  bool pool_stop_ = false;
  std::vector<std::thread> pool_;
  prometheus::Family<prometheus::Counter>& turns_;
  prometheus::Histogram& agent_seconds_;
};

}  // namespace

WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c;
  c.agent = s.get("agent");
  if (c.agent != "openai" && c.agent != "webhook") {
    errors.push_back("WAFLEET_AGENT: expected openai or webhook, got '" + c.agent + "'");
  }
  c.url = s.get("agent-url");
  while (!c.url.empty() && c.url.back() == '/') {
    c.url.pop_back();
  }
  if (!c.url.empty() && !c.url.starts_with("http://") && !c.url.starts_with("https://")) {
    errors.push_back("WAFLEET_AGENT_URL: an http(s) URL, got '" + c.url + "'");
  }
  if (c.agent == "openai" && c.url.ends_with("/chat/completions")) {
    errors.push_back("WAFLEET_AGENT_URL: the API base (.../v1); the bridge adds /chat/completions");
  }
  c.key = s.get("agent-key");
  c.prompt.model = s.get("agent-model");
  c.prompt.system_prompt = s.get("system-prompt");
  const std::string images = s.get("agent-images");
  if (images == "data") {
    c.prompt.images = Images::kData;
  } else if (images == "link") {
    c.prompt.images = Images::kLink;
  } else if (images == "off") {
    c.prompt.images = Images::kOff;
  } else {
    errors.push_back("WAFLEET_AGENT_IMAGES: expected data, link or off, got '" + images + "'");
  }
  c.prompt.max_image_bytes =
      static_cast<size_t>(std::max<int64_t>(0, s.get_int("agent-image-max-bytes", errors)));
  c.media_link_base = s.get("media-link-base");
  if (images == "link" && c.media_link_base.empty()) {
    errors.push_back("WAFLEET_MEDIA_LINK_BASE: required with WAFLEET_AGENT_IMAGES=link");
  }
  c.timeout = std::chrono::milliseconds(s.get_int("agent-timeout-ms", errors));
  c.attempts = static_cast<int>(s.get_int("agent-attempts", errors));
  c.backoff = std::chrono::milliseconds(s.get_int("agent-backoff-ms", errors));
  c.concurrency = static_cast<int>(s.get_int("agent-concurrency", errors));
  const int64_t memory_turns = s.get_int("memory-turns", errors);
  c.memory_turns = static_cast<size_t>(std::max<int64_t>(0, memory_turns));
  c.memory_ttl_ms = s.get_int("memory-ttl-hours", errors) * 3600 * 1000;
  c.handoff_keywords = worker::split_list(s.get("handoff-keywords"));
  if (c.handoff_keywords.empty()) {
    c.handoff_keywords = default_handoff_keywords();
  }
  c.handoff_message = s.get("handoff-message");
  c.handoff_ttl_ms = s.get_int("handoff-ttl-hours", errors) * 3600 * 1000;
  c.handoff_after_failures = static_cast<int>(s.get_int("handoff-after-failures", errors));
  c.fallback_message = s.get("fallback-message");
  c.ack_reaction = s.get("ack-reaction");
  c.typing = s.get_bool("typing", errors);
  c.window_template = s.get("window-template");
  if (c.timeout.count() < 1 || c.attempts < 1 || c.concurrency < 1 || c.concurrency > 256 ||
      memory_turns < 0 || c.memory_ttl_ms < 1 || c.handoff_ttl_ms < 1 ||
      c.handoff_after_failures < 1) {
    errors.push_back("agent settings: need agent-timeout-ms, agent-attempts, "
                     "handoff-after-failures >= 1, agent-concurrency 1..256, memory-turns >= 0, "
                     "memory-ttl-hours and handoff-ttl-hours >= 1");
  }
  if (!s.get("s3-bucket").empty()) {
    c.s3 = media::parse_s3(s, "/tmp/wafleet-bridge-staging");
  }
  return c;
}

static worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  const WorkerConfig c = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.consumes = {topics::kTurns};
  plan.wiring.produces = {topics::kOutbound, topics::kHandoffs};
  plan.wiring.producer.linger_ms = 0;  // each reply is awaited: do not wait to batch
  plan.wiring.fetch_wait_max_ms = 10;  // a turn is answered the moment it lands
  plan.started = {{"agent", c.agent}, {"url", c.url}, {"concurrency", c.concurrency}};
  plan.build = worker::build<BridgeCore>(c);
  return plan;
}

worker::Spec spec() { return {"bridge", "wafleet-bridge", own_options(), make_plan}; }

}  // namespace wafleet::bridge
