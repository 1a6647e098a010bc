#include "workers/bridge/state.h"

#include "common/json_util.h"

namespace wafleet::bridge {
namespace {

std::string tag(const std::string& prefix, const std::string& key) {
  return prefix + "{" + key + "}";
}

Status check(const Result<redis::Reply>& r) {
  if (!r) {
    return Unexpected(r.error());
  }
  if (r->is_error()) {
    return Unexpected(Error::transient("redis: " + r->str));
  }
  return {};
}

}  // namespace

nlohmann::json Owner::to_json() const {
  return {{"owner", owner}, {"by", by}, {"reason", reason}, {"since_ms", since_ms},
          {"until_ms", until_ms}};
}

Result<Owner> State::owner(const std::string& key) {
  auto r = redis_.command({"GET", tag("br:owner:", key)});
  if (Status st = check(r); !st) {
    return Unexpected(st.error());
  }
  Owner o;
  if (r->type != redis::Reply::Type::kString) {
    return o;
  }
  auto j = json::parse(r->str);
  if (!j.is_object()) {
    return o;
  }
  o.owner = json::str(j, "owner");
  o.by = json::str(j, "by");
  o.reason = json::str(j, "reason");
  o.since_ms = j.value("since_ms", int64_t{0});
  o.until_ms = j.value("until_ms", int64_t{0});
  if (o.owner != "human" && o.owner != "paused") {
    o.owner = "bot";
  }
  return o;
}

Status State::hand_over(const std::string& key, const Owner& o, int64_t ttl_ms) {
  return check(redis_.command({"SET", tag("br:owner:", key), o.to_json().dump(), "PX",
                               std::to_string(std::max<int64_t>(1, ttl_ms))}));
}

Status State::release(const std::string& key) {
  return check(redis_.command({"DEL", tag("br:owner:", key), tag("br:fail:", key)}));
}

Result<std::vector<MemoryEntry>> State::memory(const std::string& key) {
  auto r = redis_.command({"LRANGE", tag("br:mem:", key), "0", "-1"});
  if (Status st = check(r); !st) {
    return Unexpected(st.error());
  }
  std::vector<MemoryEntry> out;
  for (const auto& e : r->elements) {
    auto j = json::parse(e.str);
    if (j.is_object()) {
      out.push_back({json::str(j, "role"), json::str(j, "content")});
    }
  }
  return out;
}

Status State::remember(const std::string& key, const std::vector<MemoryEntry>& entries) {
  if (entries.empty() || memory_turns_ == 0) {
    return {};
  }
  const std::string k = tag("br:mem:", key);
  redis::Command push = {"RPUSH", k};
  for (const auto& e : entries) {
    push.push_back(nlohmann::json{{"role", e.role}, {"content", e.content}}.dump());
  }
  return redis_.pipeline_ok({push,
                             {"LTRIM", k, "-" + std::to_string(2 * memory_turns_), "-1"},
                             {"PEXPIRE", k, std::to_string(memory_ttl_ms_)}});
}

Status State::forget(const std::string& key) {
  return check(redis_.command({"DEL", tag("br:mem:", key), tag("br:session:", key)}));
}

Result<std::string> State::session(const std::string& key) {
  auto r = redis_.command({"GET", tag("br:session:", key)});
  if (Status st = check(r); !st) {
    return Unexpected(st.error());
  }
  return r->type == redis::Reply::Type::kString ? r->str : std::string();
}

Status State::set_session(const std::string& key, const std::string& id) {
  return check(redis_.command(
      {"SET", tag("br:session:", key), id, "PX", std::to_string(memory_ttl_ms_)}));
}

Result<bool> State::answered(const std::string& turn_id) {
  auto r = redis_.command({"EXISTS", "br:done:{" + turn_id + "}"});
  if (Status st = check(r); !st) {
    return Unexpected(st.error());
  }
  return r->integer > 0;
}

Status State::mark_answered(const std::vector<std::string>& turn_ids) {
  std::vector<redis::Command> cmds;
  for (const auto& id : turn_ids) {
    cmds.push_back({"SET", "br:done:{" + id + "}", "1", "PX", std::to_string(48LL * 3600 * 1000)});
  }
  if (cmds.empty()) {
    return {};
  }
  auto r = redis_.pipeline(cmds);
  if (!r) {
    return Unexpected(r.error());
  }
  return {};
}

Result<int64_t> State::failed(const std::string& key) {
  auto r = redis_.pipeline({{"INCR", tag("br:fail:", key)},
                            {"PEXPIRE", tag("br:fail:", key), std::to_string(memory_ttl_ms_)}});
  if (!r) {
    return Unexpected(r.error());
  }
  return (*r)[0].integer;
}

Status State::succeeded(const std::string& key) {
  return check(redis_.command({"DEL", tag("br:fail:", key)}));
}

}  // namespace wafleet::bridge
