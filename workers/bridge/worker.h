#pragma once
// wafleet-bridge as a worker on the skeleton (common/worker.h): wa.turns -> an agent backend ->
// wa.outbound replies (priority reply), so rate limits, the 24-hour window, opt-outs and
// never-twice stay the sender's job. See README.md here.
//
// The loop (one thread) reads turns into per-conversation queues and hands agent calls to a
// pool of threads (WAFLEET_AGENT_CONCURRENCY), one call per conversation at a time. A newer turn
// of a conversation whose call is still running makes that call stale: its answer is dropped
// when it comes and one new call is made with every unanswered turn, so one answer goes out,
// made with all of them. Offsets are stored up to the lowest turn not yet answered.
#include <string>
#include <vector>

#include "common/config.h"
#include "common/worker.h"
#include "workers/bridge/agent.h"
#include "workers/media/media.h"

namespace wafleet::bridge {

struct WorkerConfig {
  std::string agent = "openai";  // openai | webhook
  std::string url;               // openai: the base (.../v1); webhook: the URL itself
  std::string key;
  PromptOptions prompt;
  std::chrono::milliseconds timeout{30000};
  int attempts = 3;
  std::chrono::milliseconds backoff{500};
  int concurrency = 16;
  size_t memory_turns = 10;
  int64_t memory_ttl_ms = 24LL * 3600 * 1000;
  std::vector<std::string> handoff_keywords;
  std::string handoff_message;
  int64_t handoff_ttl_ms = 24LL * 3600 * 1000;
  int handoff_after_failures = 3;
  std::string fallback_message;
  std::string ack_reaction;
  bool typing = true;
  std::string window_template;  // name:language_code; empty: a failed outcome instead
  std::string media_link_base;  // WAFLEET_AGENT_IMAGES=link: base URL of the stored objects
  std::optional<media::S3Options> s3;
};

// Pure: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::bridge
