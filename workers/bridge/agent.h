#pragma once
// The agent bridge's decisions, pure (no Kafka, Redis or HTTP), so every rule is a unit test:
// what the agent reads for a turn, what its answer means, and what goes to wa.outbound.
//
// A turn (topics/schemas/turn.schema.json) becomes, for the OpenAI-compatible backend, one
// `user` message whose content parts keep the turn's order: text; images as `image_url` (a data
// URI of the stored bytes, or a link, or left out); voice notes as their transcript; documents,
// locations, contacts, button and list replies, reactions and reply context as short text the
// model can read. Earlier turns and replies (the memory) come before it as `user` / `assistant`.
// Several turns answered at once (a newer turn came while the agent was answering) are one
// `user` message, oldest first.
//
// Answers: a Chat Completions response (text and, optionally, a `handoff_to_human` tool call) or
// the webhook backend's `{"replies": [...], "handoff": {...} | null, "end_session": bool}`. Each
// reply maps one to one onto a wa.outbound request; a text over Meta's 4096 characters is split
// on paragraph, then sentence, then word boundaries, in order.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/expected.h"

namespace wafleet::bridge {

enum class Images { kData, kLink, kOff };

struct PromptOptions {
  std::string system_prompt;
  std::string model;
  Images images = Images::kData;
  size_t max_image_bytes = 4u << 20;  // larger images are described, not attached
  // The stored bytes of a media item (its wa.media storage_uri); nullopt when unreadable.
  std::function<std::optional<std::string>(const std::string& storage_uri)> read_media;
  // A link the model can fetch for a stored item (WAFLEET_AGENT_IMAGES=link).
  std::function<std::string(const std::string& storage_uri)> link_for;
};

struct MemoryEntry {
  std::string role;  // user | assistant
  std::string content;
};

// What the turns say, as one line per item, for memory and for the text-only parts.
std::string describe_item(const nlohmann::json& item);
std::string turn_text(const nlohmann::json& turn);

// The `content` parts of the user message for these turns (oldest first).
nlohmann::json user_content(const std::vector<nlohmann::json>& turns, const PromptOptions& o);
// The whole POST /chat/completions body: system prompt, memory, the turns, the handoff tool.
nlohmann::json chat_request(const std::vector<nlohmann::json>& turns,
                            const std::vector<MemoryEntry>& memory, const PromptOptions& o);

struct Handoff {
  std::string reason;
  std::string queue;
};

struct Answer {
  // Meta objects to send, each {"type": T, T: {...}} (text, image/video/document/audio by link,
  // interactive buttons or list, reaction).
  std::vector<nlohmann::json> replies;
  std::optional<Handoff> handoff;
  bool end_session = false;
  std::string session_id;  // the backend's own, kept with the memory
  std::string text;        // what the bot said, for the memory
};

// A Chat Completions response. 2xx with no usable choice is an error with a reason.
Expected<Answer, std::string> parse_chat_completion(const nlohmann::json& response);
// The webhook backend's answer contract (topics/schemas/agent_answer.schema.json).
Expected<Answer, std::string> parse_webhook_answer(const nlohmann::json& response);

// Splits text into parts of at most max_chars characters (UTF-8 code points, as Meta counts):
// on blank lines first, then line ends, then sentence ends, then spaces, then anywhere (never
// inside a UTF-8 sequence). Parts are trimmed and never empty.
std::vector<std::string> split_text(const std::string& text, size_t max_chars = 4096);

// True when one of the turn's texts is, as a whole, one of the keywords (case-insensitive,
// surrounding spaces and punctuation ignored).
bool asks_for_human(const nlohmann::json& turn, const std::vector<std::string>& keywords);

// The wa.outbound requests of an answer to `turn` (the latest of those answered): texts split,
// in order, each with idempotency key "bridge:<turn_id>:<n>", priority reply, a reply to the
// person's identity (phone, or business-scoped user id), and `wafleet` metadata naming the turn.
std::vector<nlohmann::json> outbound_requests(const nlohmann::json& turn, const Answer& answer,
                                              const std::string& source = "bridge");
// A typing indicator (and read receipt) for the turn's last message.
nlohmann::json typing_request(const nlohmann::json& turn, int n);
// A reaction to the turn's last message, e.g. "👍" while the agent thinks.
nlohmann::json reaction_request(const nlohmann::json& turn, const std::string& emoji);

// The default handoff keywords: a short multilingual list.
std::vector<std::string> default_handoff_keywords();

}  // namespace wafleet::bridge
