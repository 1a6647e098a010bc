#include "workers/sender/conversations.h"

#include <algorithm>
#include <cctype>

#include "common/crypto.h"

namespace wafleet::sender {
namespace {

// KEYS[1] status hash. ARGV: status, rank, at_ms, raw json, ttl_ms. 1 if applied.
const redis::Script kStatus(R"lua(
local cur = tonumber(redis.call('HGET', KEYS[1], 'rank') or '0')
redis.call('HSET', KEYS[1], 'seen:' .. ARGV[1], ARGV[3])
if tonumber(ARGV[2]) > cur then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', ARGV[2], 'at_ms', ARGV[3], 'raw', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 0
)lua");

int rank_of(const std::string& status) {
  if (status == "sent") return 10;
  if (status == "delivered") return 20;
  if (status == "failed") return 25;
  if (status == "read") return 30;
  if (status == "played") return 40;
  return 0;
}

std::string normalize(std::string s) {
  // Trim, collapse inner whitespace, upper-case: "  stop  " and "Stop" are STOP.
  std::string out;
  bool space = false;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) {
      out.push_back(' ');
      space = false;
    }
    out.push_back(static_cast<char>(std::toupper(c)));
  }
  while (!out.empty() && (out.back() == '.' || out.back() == '!')) {
    out.pop_back();
  }
  return out;
}

std::vector<std::string> ids_of(const WebhookEvent& e) {
  std::vector<std::string> ids;
  if (const std::string d = phone_digits(e.wa_id); !d.empty()) {
    ids.push_back(d);
  }
  if (!e.user_id.empty()) {
    ids.push_back(e.user_id);
  }
  return ids;
}

std::string id_of(const Request& r) { return r.to.empty() ? r.recipient : phone_digits(r.to); }

}  // namespace

std::string phone_digits(const std::string& phone) {
  std::string d;
  for (char c : phone) {
    if (c >= '0' && c <= '9') {
      d.push_back(c);
    }
  }
  return d;
}

Conversations::Conversations(redis::RedisClient& redis, PolicyOptions options)
    : redis_(redis), options_(std::move(options)) {
  for (auto& k : options_.stop_keywords) {
    k = normalize(k);
  }
}

bool Conversations::is_stop(const std::string& text) const {
  const std::string t = normalize(text);
  return std::find(options_.stop_keywords.begin(), options_.stop_keywords.end(), t) !=
         options_.stop_keywords.end();
}

Status Conversations::on_inbound(const WebhookEvent& e) {
  if (e.kind != EventKind::kMessage) {
    return {};
  }
  const int64_t at = e.timestamp > 0 ? e.timestamp * 1000 : e.received_at_ms;
  std::vector<redis::Command> cmds;
  const std::string prefix = "{" + e.phone_number_id + "}:";
  for (const auto& id : ids_of(e)) {
    cmds.push_back({"SET", "snd:win:" + prefix + id, std::to_string(at), "PX",
                    std::to_string(options_.window_ms)});
  }
  if (e.type == "text" && e.raw.is_object() && e.raw.contains("text") &&
      is_stop(e.raw["text"].value("body", ""))) {
    const std::string why = nlohmann::json{{"at_ms", at}, {"reason", "STOP keyword"},
                                           {"message_id", e.message_id}}.dump();
    for (const auto& id : ids_of(e)) {
      cmds.push_back({"SET", "snd:optout:" + prefix + id, why});
    }
  }
  // An error reply (a cluster slot without its master, say) is an error too: the record is
  // retried, not taken as learnt.
  return redis_.pipeline_ok(cmds);
}

Status Conversations::on_status(const WebhookEvent& e) {
  if (e.kind != EventKind::kStatus || e.message_id.empty()) {
    return {};
  }
  const int rank = rank_of(e.type);
  if (rank == 0) {
    return {};  // an unknown status value is kept on wa.status, not ranked
  }
  const int64_t at = e.timestamp > 0 ? e.timestamp * 1000 : e.received_at_ms;
  auto r = redis_.eval(kStatus, {"snd:st:{" + e.message_id + "}"},
                       {e.type, std::to_string(rank), std::to_string(at), e.raw.dump(),
                        std::to_string(options_.status_ttl_ms)});
  if (!r) {
    return Unexpected(r.error());
  }
  return {};
}

Status Conversations::opt_out(const std::string& phone_number_id, const std::string& who,
                              const std::string& reason, int64_t now_ms) {
  auto r = redis_.command({"SET", "snd:optout:{" + phone_number_id + "}:" + who,
                           nlohmann::json{{"at_ms", now_ms}, {"reason", reason}}.dump()});
  if (!r) {
    return Unexpected(r.error());
  }
  return {};
}

Result<std::optional<std::string>> Conversations::refusal(const Request& r, int64_t now_ms) {
  if (r.type == "read" || r.type == "typing" || r.group) {
    // Receipts are not messages; a group has no person's 24-hour window (and its id is not a
    // phone number to take digits out of).
    return std::optional<std::string>();
  }
  const std::string prefix = "{" + r.phone_number_id + "}:";
  const std::string id = id_of(r);
  std::vector<redis::Command> reads = {{"GET", "snd:win:" + prefix + id},
                                       {"GET", "snd:optout:" + prefix + id}};
  reads.push_back({"GET", "snd:optout:" + prefix + "#" +
                             (options_.suppression_salt.empty()
                                  ? std::string("-")  // no salt: no hashed opt-outs to find
                                  : crypto::hmac_sha256_hex(options_.suppression_salt, id))});
  const bool needs_opt_in = (options_.require_opt_in == "templates" && !r.free_form) ||
                            (options_.require_opt_in != "off" && r.priority == Priority::kBulk);
  if (options_.allowlist_mode || needs_opt_in) {
    reads.push_back({"HMGET", "snd:contact:" + id, "allowlisted", "opt_in"});
  }
  auto got = redis_.pipeline(reads);
  if (!got) {
    return Unexpected(got.error());
  }
  const auto& win = (*got)[0];
  const auto& optout = (*got)[1].type == redis::Reply::Type::kString ? (*got)[1] : (*got)[2];
  if (got->size() > 3) {
    const auto& flags = (*got)[3].elements;
    auto set = [&](size_t i) {
      return flags.size() > i && flags[i].type == redis::Reply::Type::kString && flags[i].str == "1";
    };
    if (options_.allowlist_mode && !set(0)) {
      return std::optional<std::string>(
          "allowlist mode: this person is not allowlisted (PUT /v1/contacts/{id} "
          "{\"allowlisted\": true})");
    }
    if (needs_opt_in && !set(1)) {
      return std::optional<std::string>(
          "no WhatsApp opt-in recorded for this person, and " +
          std::string(r.priority == Priority::kBulk ? "campaign messages" : "templates") +
          " need one (PUT /v1/contacts/{id} {\"opt_in\": true})");
    }
  }
  if (!options_.enforce_window) {
    return std::optional<std::string>();
  }
  int64_t last_inbound = -1;
  if (win.type == redis::Reply::Type::kString) {
    try {
      last_inbound = std::stoll(win.str);
    } catch (const std::exception&) {
    }
  }
  const bool in_window = last_inbound >= 0 && now_ms - last_inbound < options_.window_ms;
  if (optout.type == redis::Reply::Type::kString) {
    auto o = nlohmann::json::parse(optout.str, nullptr, false);
    const int64_t since = o.is_object() ? o.value("at_ms", int64_t{0}) : 0;
    const std::string reason = o.is_object() ? o.value("reason", "") : "";
    if (!r.free_form || r.priority == Priority::kBulk) {
      return std::optional<std::string>("the recipient opted out (" + reason +
                                        "): no templates or bulk messages");
    }
    if (!in_window || last_inbound < since) {
      return std::optional<std::string>("the recipient opted out (" + reason +
                                        "); only replies inside a conversation they start");
    }
  }
  if (r.free_form && !in_window) {
    return std::optional<std::string>(
        last_inbound < 0
            ? "outside the 24-hour customer-service window: no inbound message from this "
              "person (Meta would answer 131047); send a template"
            : "outside the 24-hour customer-service window: last inbound message " +
                  std::to_string((now_ms - last_inbound) / 60000) +
                  " minutes ago (Meta would answer 131047); send a template");
  }
  return std::optional<std::string>();
}

Result<nlohmann::json> Conversations::status_of(redis::RedisClient& redis,
                                                const std::string& wamid) {
  auto r = redis.command({"HGETALL", "snd:st:{" + wamid + "}"});
  if (!r) {
    return Unexpected(r.error());
  }
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    const std::string& k = r->elements[i].str;
    const std::string& v = r->elements[i + 1].str;
    if (k == "raw") {
      out[k] = nlohmann::json::parse(v, nullptr, false);
    } else if (k == "rank") {
      continue;
    } else if (k == "at_ms" || k.starts_with("seen:")) {
      try {
        out[k] = std::stoll(v);
      } catch (const std::exception&) {
        out[k] = v;
      }
    } else {
      out[k] = v;
    }
  }
  if (!out.empty()) {
    out["wamid"] = wamid;
  }
  return out;
}

}  // namespace wafleet::sender
