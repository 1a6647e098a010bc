#include "workers/bulk/store.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/json_util.h"
#include "common/text.h"

namespace wafleet::bulk {

using Json = nlohmann::json;

namespace {

std::string job_key(const std::string& id) { return "bulk:job:{" + id + "}"; }
std::string rcpt_key(const std::string& id) { return "bulk:rcpt:{" + id + "}"; }
std::string rej_key(const std::string& id) { return "bulk:rej:{" + id + "}"; }
std::string st_key(const std::string& id) { return "bulk:st:{" + id + "}"; }
std::string inflight_key(const std::string& id) { return "bulk:inflight:{" + id + "}"; }
std::string later_key(const std::string& id) { return "bulk:later:{" + id + "}"; }
std::string recent_key(const std::string& id) { return "bulk:recent:{" + id + "}"; }
std::string lease_key(const std::string& id) { return "bulk:lease:{" + id + "}"; }
constexpr const char* kJobs = "bulk:jobs";
constexpr const char* kActive = "bulk:active";
constexpr int kRecentCap = 100;

const char* op_name(Op op) {
  switch (op) {
    case Op::kRelease:
      return "release";
    case Op::kSent:
      return "sent";
    case Op::kDelivered:
      return "delivered";
    case Op::kRead:
      return "read";
    case Op::kRetry:
      return "retry";
    case Op::kFailed:
      return "failed";
    case Op::kSkipped:
      return "skipped";
    case Op::kDefer:
      return "defer";
    case Op::kReopen:
      return "reopen";
  }
  return "sent";
}

// One recipient's event, applied atomically: the status only moves forward (pending/waiting <
// sending < sent < delivered < read; failed, skipped and cancelled are final), an event about an
// earlier attempt changes nothing, the in-flight and later sets follow, the job's counts
// (n:<status>) move with it, and outcomes feed the breaker's list.
// KEYS: job, st, inflight, later, recent.
// ARGV: index, op, attempt (0 = current), now, wamid, code, reason, due, recent cap.
// Returns {applied, before, after, attempt, recent failures, recent count}.
const redis::Script kTransition(R"lua(
local idx = ARGV[1]
local op = ARGV[2]
local att = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local raw = redis.call('HGET', KEYS[2], idx)
local rec
if raw then rec = cjson.decode(raw) else rec = {s = 'pending', a = 1} end
local old = rec.s
local rank = {pending = 0, waiting = 0, sending = 1, sent = 2, delivered = 3, read = 4}
local final = {failed = true, skipped = true, cancelled = true}
local function stale() return {0, old, old, rec.a, 0, 0} end
if op == 'reopen' then
  if old ~= 'failed' or string.sub(rec.r or '', 1, 9) == 'uncertain' then return stale() end
  rec.a = rec.a + 1
  rec.s = 'waiting'
  rec.t = now
  redis.call('HSET', KEYS[2], idx, cjson.encode(rec))
  redis.call('HINCRBY', KEYS[1], 'n:failed', -1)
  redis.call('HINCRBY', KEYS[1], 'n:waiting', 1)
  redis.call('ZADD', KEYS[4], tonumber(ARGV[8]), idx)
  return {1, old, 'waiting', rec.a, 0, 0}
end
-- A recipient that is done must leave both sets, or a job could wait for it forever.
if final[old] then
  redis.call('ZREM', KEYS[3], idx)
  redis.call('ZREM', KEYS[4], idx)
  return stale()
end
if att ~= 0 and att ~= rec.a then return stale() end
local outcome = nil
local new = old
if op == 'release' then
  if rank[old] >= 2 then
    redis.call('ZREM', KEYS[4], idx)
    return stale()
  end
  new = 'sending'
  redis.call('ZADD', KEYS[3], now, idx)
  redis.call('ZREM', KEYS[4], idx)
elseif op == 'sent' or op == 'delivered' or op == 'read' then
  if rank[op] > rank[old] then new = op end
  if ARGV[5] ~= '' then rec.w = ARGV[5] end
  if rec[op] == nil then rec[op] = now end
  if op == 'sent' and rank[old] < 2 then outcome = 0 end
  redis.call('ZREM', KEYS[3], idx)
  -- Sent under a copy released earlier while a held copy had it waiting: it waits no more.
  redis.call('ZREM', KEYS[4], idx)
elseif op == 'defer' then
  if rank[old] >= 2 then return stale() end
  new = 'waiting'
  rec.r = ARGV[7]
  redis.call('ZREM', KEYS[3], idx)
  redis.call('ZADD', KEYS[4], tonumber(ARGV[8]), idx)
elseif op == 'retry' then
  if rank[old] >= 3 then return stale() end
  new = 'waiting'
  rec.a = rec.a + 1
  rec.c = tonumber(ARGV[6])
  rec.r = ARGV[7]
  outcome = 1
  redis.call('ZREM', KEYS[3], idx)
  redis.call('ZADD', KEYS[4], tonumber(ARGV[8]), idx)
else
  if rank[old] >= 3 then return stale() end
  new = op
  rec.c = tonumber(ARGV[6])
  rec.r = ARGV[7]
  outcome = 1
  redis.call('ZREM', KEYS[3], idx)
  redis.call('ZREM', KEYS[4], idx)
end
rec.s = new
rec.t = now
redis.call('HSET', KEYS[2], idx, cjson.encode(rec))
if new ~= old then
  if old ~= 'pending' then redis.call('HINCRBY', KEYS[1], 'n:' .. old, -1) end
  redis.call('HINCRBY', KEYS[1], 'n:' .. new, 1)
end
local fails, count = 0, 0
if outcome ~= nil then
  redis.call('LPUSH', KEYS[5], outcome)
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[9]) - 1)
  local recent = redis.call('LRANGE', KEYS[5], 0, -1)
  count = #recent
  for _, v in ipairs(recent) do if v == '1' then fails = fails + 1 end end
end
return {1, old, new, rec.a, fails, count}
)lua");

// KEYS: job, hold. ARGV: to, now, reason, from states... Returns the old state when it moved, else nil.
const redis::Script kSetState(R"lua(
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return false end
for i = 4, #ARGV do
  if ARGV[i] == cur then
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[3], 'state_ms', ARGV[2])
    if ARGV[1] == 'IN_PROGRESS' and not redis.call('HGET', KEYS[1], 'started_ms') then
      redis.call('HSET', KEYS[1], 'started_ms', ARGV[2])
    end
    if ARGV[1] == 'COMPLETED' or ARGV[1] == 'CANCELLED' or ARGV[1] == 'FAILED' then
      redis.call('HSET', KEYS[1], 'ended_ms', ARGV[2])
    end
    -- The sender's gate: a held job's released requests are not sent (kept 8 days, beyond
    -- wa.outbound's retention, once the job has ended).
    if ARGV[1] == 'PAUSED' then
      redis.call('SET', KEYS[2], ARGV[1])
    elseif ARGV[1] == 'CANCELLED' or ARGV[1] == 'FAILED' then
      redis.call('SET', KEYS[2], ARGV[1], 'PX', 691200000)
    else
      redis.call('DEL', KEYS[2])
    end
    return cur
  end
end
return false
)lua");

// KEYS: lease. ARGV: token, ttl. 1 when held by token now.
const redis::Script kLease(R"lua(
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)lua");

const redis::Script kReleaseLease(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
)lua");

// KEYS: reach zset, the person's window key. ARGV: person, now, window, limit.
// Returns {1, 0} allowed, {0, t} not before t.
const redis::Script kReach(R"lua(
local limit = tonumber(ARGV[4])
if limit <= 0 then return {1, 0} end
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1, 0} end
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window}
)lua");

Error redis_error(const redis::Reply& r) {
  return Error::transient("redis: " + r.str);
}

int64_t to_int(const std::string& s) {
  try {
    return s.empty() ? 0 : std::stoll(s);
  } catch (...) {
    return 0;
  }
}

// The members of a sorted set scored at most `max`, lowest first: recipient indexes.
Result<std::vector<size_t>> indexes_up_to(redis::RedisClient& redis, const std::string& key,
                                          int64_t max, size_t count) {
  auto r = redis.command({"ZRANGEBYSCORE", key, "-inf", std::to_string(max), "LIMIT", "0",
                          std::to_string(count)});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  std::vector<size_t> out;
  for (const auto& e : r->elements) {
    out.push_back(static_cast<size_t>(to_int(e.str)));
  }
  return out;
}

Result<int64_t> cardinality(redis::RedisClient& redis, const std::string& key) {
  auto r = redis.command({"ZCARD", key});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return r->integer;
}

JobInfo parse_job(const std::string& id, const redis::Reply& r) {
  std::map<std::string, std::string> f;
  for (size_t i = 0; i + 1 < r.elements.size(); i += 2) {
    f[r.elements[i].str] = r.elements[i + 1].str;
  }
  JobInfo j;
  j.spec.id = id;
  j.spec.name = f["name"];
  j.spec.phone_number_id = f["phone_number_id"];
  j.spec.template_name = f["template"];
  j.spec.language = f["language"];
  j.spec.category = f["category"];
  j.spec.schedule_ms = to_int(f["schedule_ms"]);
  j.spec.quiet_hours = f["quiet_hours"];
  j.state = parse_state(f["state"]).value_or(State::kPending);
  j.reason = f["reason"];
  j.created_ms = to_int(f["created_ms"]);
  j.started_ms = to_int(f["started_ms"]);
  j.ended_ms = to_int(f["ended_ms"]);
  j.rows = to_int(f["rows"]);
  j.total = to_int(f["total"]);
  j.rejected = to_int(f["rejected"]);
  j.cursor = to_int(f["cursor"]);
  j.wait_until_ms = to_int(f["wait_until_ms"]);
  j.wait_reason = f["wait_reason"];
  j.backoff_ms = to_int(f["backoff_ms"]);
  j.report_uri = f["report_uri"];
  for (const auto& [k, v] : f) {
    if (k.rfind("n:", 0) == 0) {
      j.n[k.substr(2)] = to_int(v);
    } else if (k.rfind("rej:", 0) == 0) {
      j.rejected_by_reason[k.substr(4)] = to_int(v);
    }
  }
  return j;
}

}  // namespace

int64_t JobInfo::count(Phase s) const {
  if (s == Phase::kPending) {
    int64_t used = 0;
    for (const auto& [k, v] : n) {
      used += v;
    }
    return total - used;
  }
  auto it = n.find(to_string(s));
  return it == n.end() ? 0 : it->second;
}

int64_t JobInfo::sent_total() const {
  return count(Phase::kSent) + count(Phase::kDelivered) + count(Phase::kRead);
}

Json JobInfo::to_json() const {
  Json counts = Json::object();
  for (int i = 0; i <= static_cast<int>(Phase::kCancelled); ++i) {
    counts[to_string(static_cast<Phase>(i))] = count(static_cast<Phase>(i));
  }
  if (state == State::kCancelled) {
    // The recipients never released are cancelled (the report says so one by one).
    counts["cancelled"] = count(Phase::kCancelled) + count(Phase::kPending) + count(Phase::kWaiting);
    counts["pending"] = 0;
    counts["waiting"] = 0;
  }
  Json j = {{"job_id", spec.id},
            {"name", spec.name},
            {"state", to_string(state)},
            {"reason", reason},
            {"phone_number_id", spec.phone_number_id},
            {"template", spec.template_name},
            {"language", spec.language},
            {"category", spec.category},
            {"quiet_hours", spec.quiet_hours},
            {"scheduled_at", format_iso8601(spec.schedule_ms)},
            {"created_at", format_iso8601(created_ms)},
            {"started_at", format_iso8601(started_ms)},
            {"completed_at", format_iso8601(ended_ms)},
            {"rows", rows},
            {"total", total},
            {"rejected", rejected},
            {"rejected_by_reason", rejected_by_reason},
            {"released", cursor},
            {"sent_total", sent_total()},
            {"counts", counts},
            {"report_uri", report_uri}};
  if (wait_until_ms > 0) {
    j["waiting_until"] = format_iso8601(wait_until_ms);
    j["waiting_for"] = wait_reason;
  }
  return j;
}

std::string JobInfo::progress_line() const {
  std::ostringstream o;
  const Json c = to_json()["counts"];
  const int64_t done = total - c["pending"].get<int64_t>() - c["sending"].get<int64_t>() -
                       c["waiting"].get<int64_t>();
  o << spec.id << " " << to_string(state) << " " << done << "/" << total << " sent "
    << sent_total() << " (delivered " << count(Phase::kDelivered) + count(Phase::kRead)
    << ", read " << count(Phase::kRead) << ") failed " << c["failed"].get<int64_t>()
    << " skipped " << c["skipped"].get<int64_t>() << " cancelled "
    << c["cancelled"].get<int64_t>() << " sending " << c["sending"].get<int64_t>()
    << " waiting " << c["waiting"].get<int64_t>();
  if (!reason.empty()) {
    o << " - " << reason;
  }
  if (wait_until_ms > 0 && state == State::kInProgress) {
    o << " - " << wait_reason << " until " << format_iso8601(wait_until_ms);
  }
  return o.str();
}

RecipientStatus RecipientStatus::from_json(const Json& j) {
  RecipientStatus r;
  r.status = parse_phase(json::str(j, "s")).value_or(Phase::kPending);
  r.attempt = static_cast<int>(json::int_or(j, "a", 1));
  r.wamid = json::str(j, "w");
  r.code = static_cast<int>(json::int_or(j, "c", 0));
  r.reason = json::str(j, "r");
  r.updated_ms = json::int_or(j, "t", 0);
  r.sent_ms = json::int_or(j, "sent", 0);
  r.delivered_ms = json::int_or(j, "delivered", 0);
  r.read_ms = json::int_or(j, "read", 0);
  return r;
}

Status Store::create(const JobSpec& spec, const Validated& v, int64_t now_ms) {
  constexpr size_t kBatch = 1000;
  for (size_t i = 0; i < v.recipients.size(); i += kBatch) {
    redis::Command cmd = {"RPUSH", rcpt_key(spec.id)};
    for (size_t k = i; k < std::min(v.recipients.size(), i + kBatch); ++k) {
      cmd.push_back(v.recipients[k].to_json().dump());
    }
    auto r = redis_.command(cmd);
    if (!r || r->is_error()) {
      return Unexpected(r ? redis_error(*r) : r.error());
    }
  }
  for (size_t i = 0; i < v.rejected.size(); i += kBatch) {
    redis::Command cmd = {"RPUSH", rej_key(spec.id)};
    for (size_t k = i; k < std::min(v.rejected.size(), i + kBatch); ++k) {
      cmd.push_back(v.rejected[k].to_json().dump());
    }
    auto r = redis_.command(cmd);
    if (!r || r->is_error()) {
      return Unexpected(r ? redis_error(*r) : r.error());
    }
  }
  redis::Command h = {"HSET",
                      job_key(spec.id),
                      "name", spec.name,
                      "phone_number_id", spec.phone_number_id,
                      "template", spec.template_name,
                      "language", spec.language,
                      "category", spec.category,
                      "schedule_ms", std::to_string(spec.schedule_ms),
                      "quiet_hours", spec.quiet_hours,
                      "state", to_string(State::kPending),
                      "reason", "",
                      "created_ms", std::to_string(now_ms),
                      "rows", std::to_string(v.rows),
                      "total", std::to_string(v.recipients.size()),
                      "rejected", std::to_string(v.rejected.size()),
                      "cursor", "0"};
  for (const auto& [reason, n] : v.rejected_by_reason) {
    h.push_back("rej:" + reason);
    h.push_back(std::to_string(n));
  }
  auto r = redis_.pipeline({h, {"ZADD", kJobs, std::to_string(now_ms), spec.id}});
  if (!r) {
    return Unexpected(r.error());
  }
  for (const auto& one : *r) {
    if (one.is_error()) {
      return Unexpected(redis_error(one));
    }
  }
  return {};
}

Result<std::optional<JobInfo>> Store::job(const std::string& id) {
  auto r = redis_.command({"HGETALL", job_key(id)});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  if (r->elements.empty()) {
    return std::optional<JobInfo>();
  }
  return std::optional<JobInfo>(parse_job(id, *r));
}

Result<std::vector<JobInfo>> Store::list(size_t limit) {
  auto ids = redis_.command({"ZREVRANGE", kJobs, "0", std::to_string(limit == 0 ? -1 : static_cast<int64_t>(limit) - 1)});
  if (!ids || ids->is_error()) {
    return Unexpected(ids ? redis_error(*ids) : ids.error());
  }
  std::vector<redis::Command> cmds;
  for (const auto& e : ids->elements) {
    cmds.push_back({"HGETALL", job_key(e.str)});
  }
  std::vector<JobInfo> out;
  if (cmds.empty()) {
    return out;
  }
  auto r = redis_.pipeline(cmds);
  if (!r) {
    return Unexpected(r.error());
  }
  for (size_t i = 0; i < r->size(); ++i) {
    if (!(*r)[i].elements.empty()) {
      out.push_back(parse_job(ids->elements[i].str, (*r)[i]));
    }
  }
  return out;
}

Result<std::vector<std::string>> Store::active() {
  auto r = redis_.command({"SMEMBERS", kActive});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  std::vector<std::string> out;
  for (const auto& e : r->elements) {
    out.push_back(e.str);
  }
  return out;
}

Status Store::activate(const std::string& id) {
  auto r = redis_.command({"SADD", kActive, id});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return {};
}

Status Store::deactivate(const std::string& id) {
  auto r = redis_.command({"SREM", kActive, id});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return {};
}

Result<std::optional<State>> Store::set_state(const std::string& id, State to,
                                              const std::vector<State>& from,
                                              const std::string& reason, int64_t now_ms) {
  std::vector<std::string> args = {to_string(to), std::to_string(now_ms), reason};
  for (State s : from) {
    args.emplace_back(to_string(s));
  }
  auto r = redis_.eval(kSetState, {job_key(id), "bulk:hold:{" + id + "}"}, args);
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  if (r->type != redis::Reply::Type::kString) {
    return std::optional<State>();
  }
  return parse_state(r->str);
}

Status Store::set_fields(const std::string& id, const std::map<std::string, std::string>& fields) {
  redis::Command cmd = {"HSET", job_key(id)};
  for (const auto& [k, v] : fields) {
    cmd.push_back(k);
    cmd.push_back(v);
  }
  auto r = redis_.command(cmd);
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return {};
}

Status Store::hold(const std::string& id, const std::string& why, int64_t ttl_ms) {
  redis::Command cmd = {"SET", "bulk:hold:{" + id + "}", why};
  if (ttl_ms > 0) {
    cmd.push_back("PX");
    cmd.push_back(std::to_string(ttl_ms));
  }
  auto r = redis_.command(cmd);
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return {};
}

Result<std::vector<Recipient>> Store::recipients(const std::string& id, size_t from, size_t count) {
  std::vector<Recipient> out;
  if (count == 0) {
    return out;
  }
  auto r = redis_.command({"LRANGE", rcpt_key(id), std::to_string(from), std::to_string(from + count - 1)});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  for (const auto& e : r->elements) {
    auto rec = Recipient::from_json(json::parse(e.str));
    if (!rec) {
      return Unexpected(Error::permanent("job " + id + ": " + rec.error()));
    }
    out.push_back(std::move(*rec));
  }
  return out;
}

Result<std::map<size_t, std::pair<Recipient, RecipientStatus>>> Store::at(
    const std::string& id, const std::vector<size_t>& indexes) {
  std::map<size_t, std::pair<Recipient, RecipientStatus>> out;
  if (indexes.empty()) {
    return out;
  }
  std::vector<redis::Command> cmds;
  for (size_t index : indexes) {
    cmds.push_back({"LINDEX", rcpt_key(id), std::to_string(index)});
    cmds.push_back({"HGET", st_key(id), std::to_string(index)});
  }
  auto r = redis_.pipeline(cmds);
  if (!r) {
    return Unexpected(r.error());
  }
  for (size_t k = 0; k < indexes.size(); ++k) {
    const auto& rec = (*r)[2 * k];
    const auto& st = (*r)[2 * k + 1];
    if (rec.is_error() || st.is_error()) {
      return Unexpected(redis_error(rec.is_error() ? rec : st));
    }
    if (rec.type != redis::Reply::Type::kString) {
      continue;
    }
    auto recipient = Recipient::from_json(json::parse(rec.str));
    if (!recipient) {
      return Unexpected(Error::permanent("job " + id + ": " + recipient.error()));
    }
    out[indexes[k]] = {std::move(*recipient), st.type == redis::Reply::Type::kString
                                                  ? RecipientStatus::from_json(json::parse(st.str))
                                                  : RecipientStatus{}};
  }
  return out;
}

Result<std::vector<size_t>> Store::due(const std::string& id, int64_t now_ms, size_t count) {
  return indexes_up_to(redis_, later_key(id), now_ms, count);
}

Result<int64_t> Store::in_flight(const std::string& id) { return cardinality(redis_, inflight_key(id)); }

Result<int64_t> Store::waiting(const std::string& id) { return cardinality(redis_, later_key(id)); }

Status Store::drop_waiting(const std::string& id, const std::vector<size_t>& indexes) {
  if (indexes.empty()) {
    return {};
  }
  std::vector<std::string> cmd = {"ZREM", later_key(id)};
  for (size_t i : indexes) {
    cmd.push_back(std::to_string(i));
  }
  auto r = redis_.command(cmd);
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return {};
}

Result<std::vector<size_t>> Store::stale(const std::string& id, int64_t older_than_ms, size_t count) {
  return indexes_up_to(redis_, inflight_key(id), older_than_ms, count);
}

Result<std::vector<Applied>> Store::apply(const std::vector<Transition>& ts) {
  std::vector<redis::Command> cmds;
  cmds.reserve(ts.size());
  for (const auto& t : ts) {
    cmds.push_back(kTransition.evalsha(
        {job_key(t.job), st_key(t.job), inflight_key(t.job), later_key(t.job), recent_key(t.job)},
        {std::to_string(t.index), op_name(t.op), std::to_string(t.attempt),
         std::to_string(t.now_ms), t.wamid, std::to_string(t.code), t.reason,
         std::to_string(t.due_ms), std::to_string(kRecentCap)}));
  }
  std::vector<Applied> out;
  if (cmds.empty()) {
    return out;
  }
  auto r = redis_.pipeline(cmds, {&kTransition});
  if (!r) {
    return Unexpected(r.error());
  }
  for (const auto& one : *r) {
    if (one.is_error() || one.elements.size() != 6) {
      return Unexpected(Error::transient("redis: transition: " + one.str));
    }
    Applied a;
    a.applied = one.elements[0].integer == 1;
    a.before = parse_phase(one.elements[1].str).value_or(Phase::kPending);
    a.after = parse_phase(one.elements[2].str).value_or(Phase::kPending);
    a.attempt = static_cast<int>(one.elements[3].integer);
    a.recent_failures = one.elements[4].integer;
    a.recent_count = one.elements[5].integer;
    out.push_back(a);
  }
  return out;
}

Result<std::map<size_t, RecipientStatus>> Store::statuses(const std::string& id, size_t from,
                                                          size_t count) {
  std::map<size_t, RecipientStatus> out;
  if (count == 0) {
    return out;
  }
  redis::Command cmd = {"HMGET", st_key(id)};
  for (size_t i = from; i < from + count; ++i) {
    cmd.push_back(std::to_string(i));
  }
  auto r = redis_.command(cmd);
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  for (size_t k = 0; k < r->elements.size(); ++k) {
    if (r->elements[k].type == redis::Reply::Type::kString) {
      out[from + k] = RecipientStatus::from_json(json::parse(r->elements[k].str));
    }
  }
  return out;
}

Result<std::vector<std::pair<size_t, RecipientStatus>>> Store::failed(const std::string& id) {
  std::vector<std::pair<size_t, RecipientStatus>> out;
  std::string cursor = "0";
  do {
    auto r = redis_.command({"HSCAN", st_key(id), cursor, "COUNT", "1000"});
    if (!r || r->is_error() || r->elements.size() != 2) {
      return Unexpected(r && !r->is_error() ? Error::transient("redis: HSCAN: unexpected reply")
                                            : r ? redis_error(*r) : r.error());
    }
    cursor = r->elements[0].str;
    const auto& kv = r->elements[1].elements;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) {
      auto st = RecipientStatus::from_json(json::parse(kv[i + 1].str));
      if (st.status == Phase::kFailed) {
        out.emplace_back(static_cast<size_t>(to_int(kv[i].str)), st);
      }
    }
  } while (cursor != "0");
  return out;
}

Status Store::clear_recent(const std::string& id) {
  auto r = redis_.command({"DEL", recent_key(id)});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return {};
}

Result<bool> Store::lease(const std::string& id, const std::string& token, int64_t ttl_ms) {
  auto r = redis_.eval(kLease, {lease_key(id)}, {token, std::to_string(ttl_ms)});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return r->integer == 1;
}

Status Store::release_lease(const std::string& id, const std::string& token) {
  auto r = redis_.eval(kReleaseLease, {lease_key(id)}, {token});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return {};
}

Result<std::vector<Reach>> Store::charge_reach(const std::string& portfolio,
                                                const std::string& phone_number_id,
                                                const std::vector<std::string>& identities,
                                                int64_t now_ms, int64_t window_ms, int64_t limit) {
  std::vector<Reach> out;
  if (limit <= 0) {
    out.assign(identities.size(), Reach{true, 0});
    return out;
  }
  if (identities.empty()) {
    return out;
  }
  // Who is inside their own window first: that key lives in the number's slot, the budget in
  // the portfolio's, and a Redis Cluster runs no script across two slots. Someone whose window
  // opens in between is charged once more than needed: the budget errs on the safe side.
  std::vector<redis::Command> cmds;
  for (const auto& who : identities) {
    cmds.push_back({"EXISTS", "snd:win:{" + phone_number_id + "}:" + who});
  }
  auto open = redis_.pipeline(cmds);
  if (!open) {
    return Unexpected(open.error());
  }
  cmds.clear();
  for (size_t i = 0; i < identities.size(); ++i) {
    if ((*open)[i].is_error()) {
      return Unexpected(Error::transient("redis: reach: " + (*open)[i].str));
    }
    if ((*open)[i].integer != 1) {
      cmds.push_back(kReach.evalsha({"bulk:reach:{" + portfolio + "}"}, {identities[i], std::to_string(now_ms),
                                                                         std::to_string(window_ms),
                                                                         std::to_string(limit)}));
    }
  }
  auto r = redis_.pipeline(cmds, {&kReach});
  if (!r) {
    return Unexpected(r.error());
  }
  size_t k = 0;
  for (size_t i = 0; i < identities.size(); ++i) {
    if ((*open)[i].integer == 1) {
      out.push_back(Reach{true, 0});
      continue;
    }
    const auto& one = (*r)[k++];
    if (one.is_error() || one.elements.size() != 2) {
      return Unexpected(Error::transient("redis: reach: " + one.str));
    }
    out.push_back(Reach{one.elements[0].integer == 1, one.elements[1].integer});
  }
  return out;
}

Result<int64_t> Store::reached(const std::string& portfolio, int64_t now_ms, int64_t window_ms) {
  auto r = redis_.command({"ZCOUNT", "bulk:reach:{" + portfolio + "}",
                           std::to_string(now_ms - window_ms + 1), "+inf"});
  if (!r || r->is_error()) {
    return Unexpected(r ? redis_error(*r) : r.error());
  }
  return r->integer;
}

Result<std::vector<bool>> Store::opted_out(const std::string& phone_number_id,
                                           const std::vector<std::string>& identities) {
  std::vector<bool> out;
  if (identities.empty()) {
    return out;
  }
  std::vector<redis::Command> cmds;
  for (const auto& who : identities) {
    cmds.push_back({"EXISTS", "snd:optout:{" + phone_number_id + "}:" + who});
  }
  auto r = redis_.pipeline(cmds);
  if (!r) {
    return Unexpected(r.error());
  }
  for (const auto& one : *r) {
    if (one.is_error()) {
      return Unexpected(redis_error(one));
    }
    out.push_back(one.integer == 1);
  }
  return out;
}

Status Store::each_report_row(const JobInfo& job, const std::function<void(const ReportRow&)>& row) {
  constexpr size_t kBatch = 1000;
  const std::string& id = job.spec.id;
  for (size_t from = 0; from < static_cast<size_t>(job.total); from += kBatch) {
    const size_t n = std::min(kBatch, static_cast<size_t>(job.total) - from);
    auto rs = recipients(id, from, n);
    if (!rs) {
      return Unexpected(rs.error());
    }
    auto st = statuses(id, from, n);
    if (!st) {
      return Unexpected(st.error());
    }
    for (size_t k = 0; k < rs->size(); ++k) {
      const auto& rec = (*rs)[k];
      ReportRow out;
      out.line = rec.line;
      out.to = rec.identity();
      auto it = st->find(from + k);
      RecipientStatus s = it == st->end() ? RecipientStatus{} : it->second;
      out.status = to_string(s.status);
      if (job.state == State::kCancelled &&
          (s.status == Phase::kPending || s.status == Phase::kWaiting)) {
        out.status = "cancelled";
      }
      out.wamid = s.wamid;
      out.code = s.code;
      out.reason = s.reason;
      out.attempts = s.status == Phase::kPending ? 0 : s.attempt;
      out.sent_ms = s.sent_ms;
      out.delivered_ms = s.delivered_ms;
      out.read_ms = s.read_ms;
      out.updated_ms = s.updated_ms;
      row(out);
    }
  }
  for (int64_t from = 0; from < job.rejected; from += static_cast<int64_t>(kBatch)) {
    auto r = redis_.command({"LRANGE", rej_key(id), std::to_string(from),
                             std::to_string(from + static_cast<int64_t>(kBatch) - 1)});
    if (!r || r->is_error()) {
      return Unexpected(r ? redis_error(*r) : r.error());
    }
    for (const auto& e : r->elements) {
      auto j = json::parse(e.str);
      ReportRow out;
      out.line = static_cast<size_t>(json::int_or(j, "line", 0));
      out.to = json::str(j, "to");
      out.status = "skipped";
      out.reason = json::str(j, "reason") + ": " + json::str(j, "detail");
      row(out);
    }
  }
  return {};
}

namespace {

// An erased recipient's status keeps its phase and times, not the wamid of our message to them.
// KEYS: st. ARGV: index.
const redis::Script kForgetStatus(R"lua(
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec.w == nil then return 0 end
rec.w = nil
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
return 1
)lua");

// A rejected row's `to` as written, in the form erasure is asked for.
std::string rejected_identity(const std::string& written) {
  if (auto phone = normalize_phone(written)) {
    return *phone;
  }
  return trim(written);
}

}  // namespace

Result<Store::Erased> Store::erase_people(const std::vector<std::string>& identities) {
  constexpr int64_t kBatch = 1000;
  const std::set<std::string> who(identities.begin(), identities.end());
  Erased out;
  auto jobs = redis_.command({"ZRANGE", kJobs, "0", "-1"});
  if (!jobs || jobs->is_error()) {
    return Unexpected(jobs ? redis_error(*jobs) : jobs.error());
  }
  for (const auto& e : jobs->elements) {
    const std::string& id = e.str;
    std::vector<redis::Command> writes;
    for (const auto& [key, rejected] : {std::pair{rcpt_key(id), false}, std::pair{rej_key(id), true}}) {
      for (int64_t from = 0;; from += kBatch) {
        auto r = redis_.command({"LRANGE", key, std::to_string(from), std::to_string(from + kBatch - 1)});
        if (!r || r->is_error()) {
          return Unexpected(r ? redis_error(*r) : r.error());
        }
        for (size_t k = 0; k < r->elements.size(); ++k) {
          const std::string index = std::to_string(from + static_cast<int64_t>(k));
          auto row = json::parse(r->elements[k].str);
          if (!rejected) {
            auto rec = Recipient::from_json(row);
            if (!rec || rec->erased || who.count(rec->identity()) == 0) {
              continue;
            }
            Recipient tomb;
            tomb.line = rec->line;
            tomb.erased = true;
            writes.push_back({"LSET", key, index, tomb.to_json().dump()});
            writes.push_back(kForgetStatus.evalsha({st_key(id)}, {index}));
          } else {
            if (who.count(rejected_identity(json::str(row, "to"))) == 0) {
              continue;
            }
            Rejected blank;
            blank.line = static_cast<size_t>(json::int_or(row, "line", 0));
            blank.reason = json::str(row, "reason");
            blank.detail = "erased";
            writes.push_back({"LSET", key, index, blank.to_json().dump()});
          }
          ++out.rows;
        }
        if (r->elements.size() < static_cast<size_t>(kBatch)) {
          break;
        }
      }
    }
    if (writes.empty()) {
      continue;
    }
    auto r = redis_.pipeline(writes, {&kForgetStatus});
    if (!r) {
      return Unexpected(r.error());
    }
    for (const auto& one : *r) {
      if (one.is_error()) {
        return Unexpected(redis_error(one));
      }
    }
    out.jobs.push_back(id);
  }
  return out;
}

Status report_json(Store& store, const JobInfo& job, std::ostream& out) {
  Json head = job.to_json();
  head["generated_at"] = format_iso8601(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
  // The job's fields, then "recipients": [...] written row by row.
  std::string opening = head.dump(2, ' ', false, Json::error_handler_t::replace);
  opening.erase(opening.find_last_of('}'));
  while (!opening.empty() && (opening.back() == '\n' || opening.back() == ' ')) {
    opening.pop_back();
  }
  out << opening << ",\n  \"recipients\": [";
  bool first = true;
  auto st = store.each_report_row(job, [&](const Store::ReportRow& r) {
    Json one = {{"line", r.line}, {"to", r.to}, {"status", r.status}, {"attempts", r.attempts}};
    if (!r.wamid.empty()) {
      one["wamid"] = r.wamid;
    }
    if (r.code != 0) {
      one["error_code"] = r.code;
    }
    if (!r.reason.empty()) {
      one["error"] = r.reason;
    }
    for (const auto& [k, v] : {std::pair<const char*, int64_t>{"sent_at", r.sent_ms},
                               {"delivered_at", r.delivered_ms},
                               {"read_at", r.read_ms},
                               {"updated_at", r.updated_ms}}) {
      if (v > 0) {
        one[k] = format_iso8601(v);
      }
    }
    out << (first ? "\n    " : ",\n    ") << one.dump(-1, ' ', false, Json::error_handler_t::replace);
    first = false;
  });
  if (!st) {
    return st;
  }
  out << (first ? "]\n}\n" : "\n  ]\n}\n");
  if (!out) {
    return Unexpected(Error::transient("report: the output could not be written"));
  }
  return {};
}

Status report_csv(Store& store, const JobInfo& job, std::ostream& out) {
  auto quote = [](const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) {
      return s;
    }
    std::string q = "\"";
    for (char c : s) {
      q += c;
      if (c == '"') {
        q += '"';
      }
    }
    return q + "\"";
  };
  out << "job_id,name,state,line,to,status,wamid,error_code,error,attempts,sent_at,delivered_at,"
         "read_at,updated_at\n";
  auto st = store.each_report_row(job, [&](const Store::ReportRow& r) {
    out << job.spec.id << "," << quote(job.spec.name) << "," << to_string(job.state) << ","
        << r.line << "," << quote(r.to) << "," << r.status << "," << quote(r.wamid) << ","
        << (r.code != 0 ? std::to_string(r.code) : "") << "," << quote(r.reason) << ","
        << r.attempts << "," << format_iso8601(r.sent_ms) << "," << format_iso8601(r.delivered_ms)
        << "," << format_iso8601(r.read_ms) << "," << format_iso8601(r.updated_ms) << "\n";
  });
  if (!st) {
    return st;
  }
  if (!out) {
    return Unexpected(Error::transient("report: the output could not be written"));
  }
  return {};
}

Result<std::string> write_report(Store& store, const JobInfo& job, const ReportPlace& place) {
  const media::S3Options* s3 = place.s3 != nullptr && !place.s3->bucket.empty() ? place.s3 : nullptr;
  const std::string staging = s3 != nullptr ? s3->staging_dir : place.local_root + "/reports/bulk";
  std::error_code ec;
  std::filesystem::create_directories(staging, ec);
  const std::string base = "reports/bulk/" + job.spec.id;
  std::string uri;
  for (const std::string kind : {"csv", "json"}) {
    const std::string temp = staging + "/." + job.spec.id + "." + kind + ".part";
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      auto st = kind == "csv" ? report_csv(store, job, out) : report_json(store, job, out);
      out.close();
      if (!st || !out) {
        std::filesystem::remove(temp, ec);
        return Unexpected(st ? Error::transient("cannot write " + temp) : st.error());
      }
    }
    auto stored = media::store_named(base + "." + kind, temp, kind == "csv" ? "text/csv" : "application/json",
                                     place.local_root, s3);
    if (!stored) {
      return Unexpected(stored.error());
    }
    uri = *stored;  // the JSON's, written last
  }
  return uri;
}

Result<std::string> rewrite_report(Store& store, const JobInfo& job, const media::S3Options* s3) {
  const std::string tail = "reports/bulk/" + job.spec.id + ".json";
  const std::string& uri = job.report_uri;
  if (!uri.ends_with(tail)) {
    return Unexpected(Error::invalid("report " + uri + ": not a wafleet report of job " + job.spec.id));
  }
  if (uri.starts_with("file://")) {
    std::string root = uri.substr(7, uri.size() - 7 - tail.size());
    return write_report(store, job, {root.empty() ? "/" : root, nullptr});
  }
  if (uri.starts_with("s3://")) {
    if (s3 == nullptr || s3->bucket.empty() || uri != "s3://" + s3->bucket + "/" + s3->prefix + tail) {
      return Unexpected(Error::invalid("report " + uri + ": not in the configured S3 bucket and prefix"));
    }
    return write_report(store, job, {"", s3});
  }
  return Unexpected(Error::invalid("report " + uri + ": neither file:// nor s3://"));
}

}  // namespace wafleet::bulk
