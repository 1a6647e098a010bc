#include "workers/sender/dispatch.h"

#include <algorithm>

#include "common/json_util.h"

namespace wafleet::sender {

std::chrono::milliseconds RetryPolicy::backoff(int attempt) const {
  auto b = backoff_initial;
  for (int i = 1; i < attempt && b < backoff_max; ++i) {
    b *= 2;
  }
  return std::min(b, backoff_max);
}

nlohmann::json failure_result(const Item& item, const Error& e, int attempts, int64_t now_ms) {
  Request req = item.request;
  if (req.request_id.empty()) {
    // Not a valid request: take what the record says of itself.
    auto doc = json::parse(item.record.value);
    if (doc.is_object()) {
      req.request_id = json::str(doc, "request_id");
      req.idempotency_key = json::str(doc, "idempotency_key");
      req.phone_number_id = json::str(doc, "phone_number_id");
      req.type = json::str(doc, "type");
      req.to = json::str(doc, "to");
      req.recipient = json::str(doc, "recipient");
    }
    if (req.request_id.empty()) {
      req.request_id = item.record.header("request_id").value_or("");
    }
    if (req.idempotency_key.empty()) {
      req.idempotency_key = req.request_id;
    }
  }
  Outcome o{"failed", "", 0, e.message};
  if (e.message.starts_with("(#")) {
    try {
      o.error_code = std::stoi(e.message.substr(2));
    } catch (const std::exception&) {
    }
  }
  auto result = o.to_result(req, attempts, now_ms);
  result["error"]["class"] = to_string(e.kind);
  return result;
}

Effects decide_invalid(const Item& item, int64_t now_ms) {
  Effects fx;
  fx.attempts = 1;
  const Error e = Error::invalid(item.invalid);
  fx.result = failure_result(item, e, 1, now_ms);
  fx.dead_letter = e;
  return fx;
}

Effects decide(const Item& item, const Result<Outcome>& out, const RetryPolicy& policy,
               int64_t now_us, int64_t now_ms) {
  Effects fx;
  const int attempt = item.attempts + 1;
  fx.attempts = attempt;
  if (out && out->status == "wait") {
    fx.attempts = item.attempts;  // nothing was tried
    if (out->wait.number.count() > 0) {
      fx.number_blocked_until_us = now_us + out->wait.number.count();
    }
    fx.defer_until_us = now_us + std::max(out->wait.number, out->wait.pair).count();
    return fx;
  }
  if (!out) {
    const Error& e = out.error();
    if (e.kind == ErrorKind::kFatal) {
      fx.fatal = e;
      return fx;
    }
    if (e.kind == ErrorKind::kTransient && attempt < policy.max_attempts) {
      // Only this person's messages wait for the retry; everyone else's go meanwhile.
      fx.defer_until_us =
          now_us + std::chrono::duration_cast<std::chrono::microseconds>(policy.backoff(attempt))
                       .count();
      return fx;
    }
    fx.result = failure_result(item, e, attempt, now_ms);
    fx.dead_letter = e;
    return fx;
  }
  fx.result = out->to_result(item.request, attempt, now_ms);
  if (out->status == "uncertain") {
    // Published as `uncertain`; the dead letter keeps it for a person to decide.
    fx.dead_letter = Error::permanent("uncertain: " + out->error_message);
  }
  return fx;
}

}  // namespace wafleet::sender
