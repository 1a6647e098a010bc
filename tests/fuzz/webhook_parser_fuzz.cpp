// libFuzzer target: any bytes through the Meta webhook parser, the EUM unwrapper and the SNS
// envelope parser. No crash, no leak, no uncaught exception.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "workers/receiver/sns.h"
#include "workers/receiver/webhook_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  wafleet::receiver::ParseContext ctx{"meta", 1, "trace"};
  auto events = wafleet::receiver::parse_meta_webhook(body, ctx);
  if (events) {
    for (const auto& e : *events) {
      (void)e.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  (void)wafleet::receiver::parse_eum_event(body, ctx);
  if (auto sns = wafleet::receiver::parse_sns(body)) {
    (void)wafleet::receiver::sns_string_to_sign(*sns);
  }
  return 0;
}
