#include "workers/erasure/erasure.h"

#include <cctype>
#include <map>
#include <set>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/text.h"
#include "topics/topics.h"
#include "workers/bulk/store.h"

namespace wafleet::erasure {

using Json = nlohmann::json;

namespace {

std::string optout_key(const std::string& pnid, const std::string& id) {
  return "snd:optout:{" + pnid + "}:" + id;
}

std::vector<std::string> column(const pg::Rows& rows, int col) {
  std::vector<std::string> out;
  for (int i = 0; i < rows.size(); ++i) {
    if (!rows.null(i, col)) {
      out.emplace_back(rows.text(i, col));
    }
  }
  return out;
}

// Topics that carry something of a person (docs/PRIVACY.md): their records stay in Kafka's
// segments until the retention ends.
const std::set<std::string>& personal_topics() {
  static const std::set<std::string> t = {
      topics::kInbound,  topics::kStatus,          topics::kMedia,    topics::kTurns,
      topics::kOutbound, topics::kOutboundResults, topics::kHandoffs, topics::kDlq,
      topics::kDlqParked};
  return t;
}

}  // namespace

std::string suppression_hash(const std::string& salt, const std::string& identity) {
  return crypto::hmac_sha256_hex(salt, identity);
}

std::string normalize_identity(const std::string& raw) {
  std::string digits;
  bool phone = !raw.empty();
  for (char c : raw) {
    if (std::isdigit(static_cast<unsigned char>(c)) != 0) {
      digits.push_back(c);
    } else if (c != '+' && c != ' ' && c != '-' && c != '(' && c != ')' && c != '.') {
      phone = false;
    }
  }
  if (phone) {
    return digits;
  }
  return trim(raw);
}

Json Report::to_json() const {
  Json r = Json::object();
  for (const auto& [what, n] : removed) {
    r[what] = n;
  }
  return {{"identity_hash", identity_hash},
          {"removed", r},
          {"opt_out_kept_as_hash", suppressed},
          {"remaining", remaining}};
}

Eraser::Eraser(pg::Connection& db, redis::RedisClient& redis, Options options)
    : db_(db), redis_(redis), options_(std::move(options)) {}

Result<Report> Eraser::forget(const std::string& raw_identity, int64_t now_ms) {
  const std::string identity = normalize_identity(raw_identity);
  if (identity.empty()) {
    return Unexpected(Error::invalid("no identity: give a phone number or a business-scoped user id"));
  }
  if (options_.salt.empty()) {
    return Unexpected(Error::invalid(
        "WAFLEET_SUPPRESSION_SALT is not set: an opt-out outlives erasure only as a salted hash"));
  }
  Report report;
  report.identity_hash = suppression_hash(options_.salt, identity);

  // Who: every id the record knows this person by (phone digits, BSUID), and their
  // conversations on every number.
  auto known = db_.exec(
      "SELECT id, wa_id, user_id FROM contacts WHERE id = $1 OR wa_id = $1 OR user_id = $1",
      {identity});
  if (!known) {
    return Unexpected(known.error());
  }
  std::set<std::string> id_set = {identity};
  for (int c = 0; c < 3; ++c) {
    for (auto& v : column(*known, c)) {
      id_set.insert(v);
    }
  }
  const std::vector<std::string> ids(id_set.begin(), id_set.end());
  auto convs = db_.exec("SELECT key, phone_number_id FROM conversations WHERE identity = ANY($1::text[])",
                        {pg::text_array(ids)});
  if (!convs) {
    return Unexpected(convs.error());
  }
  std::vector<std::string> keys = column(*convs, 0);
  std::set<std::string> numbers;
  for (auto& n : column(*convs, 1)) {
    numbers.insert(n);
  }

  // Opt-outs, before anything is removed: they are what survives, as a hash.
  std::vector<redis::Command> reads;
  std::vector<std::pair<std::string, std::string>> read_of;  // (number, id)
  for (const auto& n : numbers) {
    for (const auto& id : ids) {
      reads.push_back({"GET", optout_key(n, id)});
      read_of.emplace_back(n, id);
    }
  }
  std::vector<std::pair<std::pair<std::string, std::string>, std::string>> optouts;
  if (!reads.empty()) {
    auto got = redis_.pipeline(reads);
    if (!got) {
      return Unexpected(got.error());
    }
    for (size_t i = 0; i < got->size(); ++i) {
      if ((*got)[i].type == redis::Reply::Type::kString) {
        optouts.push_back({read_of[i], (*got)[i].str});
      }
    }
  }

  // The record, in one transaction.
  const std::string keys_array = pg::text_array(keys);
  if (auto st = db_.exec("BEGIN"); !st) {
    return Unexpected(st.error());
  }
  auto fail = [&](const Error& e) -> Result<Report> {
    db_.rollback();
    return Unexpected(e);
  };
  auto msgs = db_.exec("SELECT id, direction FROM messages WHERE conversation_key = ANY($1::text[])",
                       {keys_array});
  if (!msgs) {
    return fail(msgs.error());
  }
  std::vector<std::string> inbound;
  std::vector<std::string> outbound;
  for (int i = 0; i < msgs->size(); ++i) {
    (msgs->text(i, 1) == "in" ? inbound : outbound).emplace_back(msgs->text(i, 0));
  }
  auto wamid_rows = db_.exec(
      "SELECT DISTINCT wamid FROM results WHERE request_id = ANY($1::text[]) AND wamid IS NOT NULL",
      {pg::text_array(outbound)});
  if (!wamid_rows) {
    return fail(wamid_rows.error());
  }
  const std::vector<std::string> wamids = column(*wamid_rows, 0);
  struct Step {
    const char* what;
    std::string sql;
    std::string param;
  };
  const std::vector<Step> steps = {
      {"statuses", "DELETE FROM statuses WHERE wamid = ANY($1::text[])", pg::text_array(wamids)},
      {"results", "DELETE FROM results WHERE request_id = ANY($1::text[])", pg::text_array(outbound)},
      {"turn_messages", "DELETE FROM turn_messages WHERE message_id = ANY($1::text[])",
       pg::text_array(inbound)},
      {"handoffs", "DELETE FROM handoffs WHERE conversation_key = ANY($1::text[])", keys_array},
      {"messages", "DELETE FROM messages WHERE conversation_key = ANY($1::text[])", keys_array},
      {"conversations", "DELETE FROM conversations WHERE key = ANY($1::text[])", keys_array},
      {"contacts",
       "DELETE FROM contacts WHERE id = ANY($1::text[]) OR wa_id = ANY($1::text[]) OR "
       "user_id = ANY($1::text[])",
       pg::text_array(ids)},
  };
  auto media_rows = db_.exec(
      "DELETE FROM media WHERE conversation_key = ANY($1::text[]) RETURNING storage_uri, sha256",
      {keys_array});
  if (!media_rows) {
    return fail(media_rows.error());
  }
  report.removed.emplace_back("media_rows", media_rows->size());
  for (const auto& s : steps) {
    auto r = db_.exec(s.sql, {s.param});
    if (!r) {
      return fail(r.error());
    }
    report.removed.emplace_back(s.what, r->affected());
  }
  for (const auto& [where, why] : optouts) {
    auto reason = Json::parse(why, nullptr, false);
    const std::string text = reason.is_object() ? reason.value("reason", "opt-out") : "opt-out";
    auto r = db_.exec(
        "INSERT INTO suppressed (identity_hash, reason) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        {suppression_hash(options_.salt, where.second), text});
    if (!r) {
      return fail(r.error());
    }
  }
  if (auto st = db_.exec("COMMIT"); !st) {
    return fail(st.error());
  }
  report.suppressed = !optouts.empty();

  // Stored media no one else sent (objects are content-addressed: the same photo from two
  // people is one object).
  std::map<std::string, std::string> objects;  // sha256 -> uri
  for (int i = 0; i < media_rows->size(); ++i) {
    if (!media_rows->null(i, 0) && !media_rows->null(i, 1)) {
      objects[std::string(media_rows->text(i, 1))] = std::string(media_rows->text(i, 0));
    }
  }
  int64_t files = 0;
  for (const auto& [sha, uri] : objects) {
    auto shared = db_.exec("SELECT 1 FROM media WHERE sha256 = $1 LIMIT 1", {sha});
    if (!shared) {
      return Unexpected(shared.error());
    }
    if (shared->size() > 0) {
      report.remaining.push_back({{"where", "media storage"}, {"until", "kept"},
                                  {"why", "the same file was also sent by someone else"}});
      continue;
    }
    auto gone = media::remove_stored(uri, options_.s3);
    if (!gone) {
      report.remaining.push_back({{"where", "media storage"}, {"until", "a second forget"},
                                  {"why", gone.error().message}});
      continue;
    }
    files += *gone ? 1 : 0;
  }
  report.removed.emplace_back("media_files", files);

  // Redis: windows, opt-outs (as hashes), bridge state, the aggregator's offsets, our messages'
  // statuses, the portfolio's reach.
  std::vector<redis::Command> cmds;
  for (const auto& n : numbers) {
    for (const auto& id : ids) {
      cmds.push_back({"DEL", "snd:win:{" + n + "}:" + id});
    }
  }
  for (const auto& id : ids) {
    cmds.push_back({"DEL", "snd:contact:" + id});  // the contact's flags, mirrored for the sender
  }
  for (const auto& [where, why] : optouts) {
    cmds.push_back({"SET", optout_key(where.first, "#" + suppression_hash(options_.salt, where.second)), why});
    cmds.push_back({"DEL", optout_key(where.first, where.second)});
  }
  for (const auto& key : keys) {
    for (const char* family : {"br:owner:", "br:fail:", "br:mem:", "br:session:"}) {
      cmds.push_back({"DEL", std::string(family) + "{" + key + "}"});
    }
    for (int p = 0; p < options_.inbound_partitions; ++p) {
      cmds.push_back({"DEL", "agg:{" + std::string(topics::kInbound) + ":" + std::to_string(p) +
                                 "}:conv:" + key});
    }
  }
  for (const auto& w : wamids) {
    cmds.push_back({"DEL", "snd:st:{" + w + "}"});
  }
  for (const auto& portfolio : options_.portfolios) {
    for (const auto& id : ids) {
      cmds.push_back({"ZREM", "bulk:reach:{" + portfolio + "}", id});
    }
  }
  int64_t redis_keys = 0;
  constexpr size_t kChunk = 500;
  for (size_t i = 0; i < cmds.size(); i += kChunk) {
    std::vector<redis::Command> chunk(cmds.begin() + static_cast<std::ptrdiff_t>(i),
                                      cmds.begin() + static_cast<std::ptrdiff_t>(std::min(cmds.size(), i + kChunk)));
    auto r = redis_.pipeline(chunk);
    if (!r) {
      report.remaining.push_back({{"where", "redis"}, {"until", "a second forget"},
                                  {"why", r.error().message}});
      break;
    }
    for (size_t k = 0; k < r->size(); ++k) {
      if (chunk[k][0] != "SET" && (*r)[k].type == redis::Reply::Type::kInteger) {
        redis_keys += (*r)[k].integer;
      }
    }
  }
  report.removed.emplace_back("redis_keys", redis_keys);

  // Bulk jobs: their rows become tombstones (the line stays, the person does not), and the
  // reports already stored are written again from them.
  bulk::Store jobs(redis_);
  auto erased = jobs.erase_people(ids);
  if (!erased) {
    report.remaining.push_back({{"where", "redis bulk:rcpt, bulk:rej, bulk:st"}, {"until", "a second forget"},
                                {"why", erased.error().message}});
  } else {
    report.removed.emplace_back("bulk_rows", erased->rows);
    int64_t rewritten = 0;
    for (const auto& id : erased->jobs) {
      auto job = jobs.job(id);
      if (job && (!*job || (*job)->report_uri.empty())) {
        continue;  // gone, or its report not written yet (it will be, from the tombstones)
      }
      auto written = job ? bulk::rewrite_report(jobs, **job, options_.s3)
                         : Result<std::string>(Unexpected(job.error()));
      if (!written) {
        // The bulk worker writes a finished job's report when it has none: it takes over.
        const bool handed = jobs.set_fields(id, {{"report_uri", ""}}) && jobs.activate(id);
        report.remaining.push_back({{"where", "bulk report of job " + id},
                                    {"until", handed ? "the bulk worker writes it again" : "a second forget"},
                                    {"why", written.error().message}});
        continue;
      }
      ++rewritten;
    }
    report.removed.emplace_back("bulk_reports_rewritten", rewritten);
  }

  // Kafka: a record cannot leave a segment before its retention; say until when.
  for (const auto& t : topics::catalogue()) {
    if (personal_topics().count(t.name) != 0) {
      report.remaining.push_back({{"where", "kafka " + t.name},
                                  {"until", format_iso8601(now_ms + t.retention_ms)},
                                  {"why", "records in Kafka segments go with the topic's retention"}});
    }
  }
  report.remaining.push_back({{"where", "redis rcv:dedupe:*, snd:idem:*"},
                              {"until", format_iso8601(now_ms + 7LL * 24 * 3600 * 1000)},
                              {"why", "message ids only, by TTL"}});
  return report;
}

}  // namespace wafleet::erasure
