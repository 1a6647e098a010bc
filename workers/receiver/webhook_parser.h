#pragma once
// Pure parsing of Meta webhook bodies and AWS End User Messaging (EUM) events into normalized
// events. No I/O; safe on any input (fuzzed in tests/fuzz).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/expected.h"
#include "topics/webhook_event.h"

namespace wafleet::receiver {

struct ParseContext {
  std::string source = "meta";  // "meta" | "eum"
  int64_t received_at_ms = 0;
  std::string trace_id;
};

// Every message, status, value-level error and non-message change of the body, in order.
// Error: the body is not a WhatsApp Business Account webhook (not JSON, wrong shape).
Expected<std::vector<WebhookEvent>, std::string> parse_meta_webhook(std::string_view body,
                                                                    const ParseContext& ctx);

// One entry object ({id, changes}) as Meta sends it inside entry[] (and EUM in
// whatsAppWebhookEntry). Appends to out; error if the entry is not an object with changes.
Expected<void, std::string> parse_entry(const nlohmann::json& entry, const ParseContext& ctx,
                                        std::vector<WebhookEvent>& out);

// An EUM event (the SNS Message): {context, whatsAppWebhookEntry: "<json string>", ...}.
Expected<std::vector<WebhookEvent>, std::string> parse_eum_event(std::string_view eum_json,
                                                                 const ParseContext& ctx);

}  // namespace wafleet::receiver
