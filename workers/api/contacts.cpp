#include "workers/api/contacts.h"

#include "workers/erasure/erasure.h"

namespace wafleet::api {

using Json = nlohmann::json;

namespace {

constexpr const char* kSelect =
    "SELECT id, wa_id, user_id, profile_name, name, opt_in, "
    "(extract(epoch FROM opt_in_at) * 1000)::bigint, allowlisted, "
    "(extract(epoch FROM first_seen) * 1000)::bigint, (extract(epoch FROM last_seen) * 1000)::bigint, "
    "(extract(epoch FROM updated_at) * 1000)::bigint FROM contacts ";

Json nullable(const pg::Rows& r, int col) {
  return r.null(0, col) ? Json() : Json(std::string(r.text(0, col)));
}

Json nullable_ms(const pg::Rows& r, int col) {
  return r.null(0, col) ? Json() : Json(r.integer(0, col));
}

// The ids (id, wa_id, user_id: the first three columns) of one row that are set.
std::vector<std::string> ids_in_row(const pg::Rows& r, int row) {
  std::vector<std::string> ids;
  for (int c = 0; c < 3; ++c) {
    if (!r.null(row, c)) {
      ids.emplace_back(r.text(row, c));
    }
  }
  return ids;
}

Json contact_of(const pg::Rows& r) {
  return {{"id", std::string(r.text(0, 0))},
          {"wa_id", nullable(r, 1)},
          {"user_id", nullable(r, 2)},
          {"profile_name", nullable(r, 3)},
          {"name", nullable(r, 4)},
          {"opt_in", r.text(0, 5) == "t"},
          {"opt_in_at_ms", nullable_ms(r, 6)},
          {"allowlisted", r.text(0, 7) == "t"},
          {"first_seen_ms", nullable_ms(r, 8)},
          {"last_seen_ms", nullable_ms(r, 9)},
          {"updated_at_ms", nullable_ms(r, 10)}};
}

std::optional<std::string> boolean(const std::optional<bool>& b) {
  if (!b) {
    return std::nullopt;
  }
  return *b ? "true" : "false";
}

}  // namespace

Expected<ContactChange, std::string> parse_contact_change(const Json& body) {
  if (!body.is_object()) {
    return Unexpected(std::string("the body is not a JSON object"));
  }
  ContactChange c;
  for (const auto& [k, v] : body.items()) {
    if (k == "name") {
      if (!v.is_null() && !v.is_string()) {
        return Unexpected(std::string("name: a string or null"));
      }
      c.set_name = true;
      if (v.is_string()) {
        if (v.get<std::string>().size() > 256) {
          return Unexpected(std::string("name: at most 256 bytes"));
        }
        c.name = v.get<std::string>();
      }
    } else if (k == "opt_in" || k == "allowlisted") {
      if (!v.is_boolean()) {
        return Unexpected(k + ": true or false");
      }
      (k == "opt_in" ? c.opt_in : c.allowlisted) = v.get<bool>();
    } else {
      return Unexpected(k + ": not a field of a contact (name, opt_in, allowlisted)");
    }
  }
  return c;
}

Result<std::optional<Json>> Contacts::get(const std::string& raw_id) {
  const std::string id = erasure::normalize_identity(raw_id);
  auto r = db_.exec(std::string(kSelect) + "WHERE id = $1 OR wa_id = $1 OR user_id = $1 "
                                           "ORDER BY (id = $1) DESC LIMIT 1",
                    {id});
  if (!r) {
    return Unexpected(r.error());
  }
  if (r->size() == 0) {
    return std::optional<Json>();
  }
  return std::optional<Json>(contact_of(*r));
}

Result<Json> Contacts::put(const std::string& raw_id, const ContactChange& change) {
  const std::string input = erasure::normalize_identity(raw_id);
  if (input.empty()) {
    return Unexpected(Error::invalid("no id: a phone number or a business-scoped user id"));
  }
  // The row this person already has, whichever id it is under.
  auto known = db_.exec("SELECT id FROM contacts WHERE id = $1 OR wa_id = $1 OR user_id = $1 "
                        "ORDER BY (id = $1) DESC LIMIT 1",
                        {input});
  if (!known) {
    return Unexpected(known.error());
  }
  const std::string id = known->size() > 0 ? std::string(known->text(0, 0)) : input;
  auto r = db_.exec(R"sql(
INSERT INTO contacts AS c (id, wa_id, name, opt_in, opt_in_at, allowlisted, updated_at)
VALUES ($1, CASE WHEN $1 ~ '^[0-9]+$' THEN $1 END, $2, COALESCE($3::boolean, false),
        CASE WHEN $3::boolean THEN now() END, COALESCE($4::boolean, false), now())
ON CONFLICT (id) DO UPDATE SET
  name = CASE WHEN $5::boolean THEN EXCLUDED.name ELSE c.name END,
  opt_in = COALESCE($3::boolean, c.opt_in),
  opt_in_at = CASE WHEN $3::boolean IS NULL THEN c.opt_in_at
                   WHEN $3::boolean AND c.opt_in THEN c.opt_in_at
                   WHEN $3::boolean THEN now() END,
  allowlisted = COALESCE($4::boolean, c.allowlisted),
  updated_at = now())sql",
                    {id, change.name, boolean(change.opt_in), boolean(change.allowlisted),
                     change.set_name ? "true" : "false"});
  if (!r) {
    return Unexpected(r.error());
  }
  auto got = get(id);
  if (!got) {
    return Unexpected(got.error());
  }
  if (!*got) {
    return Unexpected(Error::transient("contact " + id + " vanished after it was written"));
  }
  return **got;
}

Result<std::vector<std::string>> Contacts::remove(const std::string& raw_id) {
  const std::string id = erasure::normalize_identity(raw_id);
  auto r = db_.exec("DELETE FROM contacts WHERE id = $1 OR wa_id = $1 OR user_id = $1 "
                    "RETURNING id, wa_id, user_id",
                    {id});
  if (!r) {
    return Unexpected(r.error());
  }
  std::vector<std::string> ids;
  for (int i = 0; i < r->size(); ++i) {
    auto more = ids_in_row(*r, i);
    ids.insert(ids.end(), more.begin(), more.end());
  }
  return ids;
}

namespace {

std::vector<std::string> ids_of(const Json& contact) {
  std::vector<std::string> ids;
  for (const char* f : {"id", "wa_id", "user_id"}) {
    if (contact.contains(f) && contact[f].is_string()) {
      ids.push_back(contact[f].get<std::string>());
    }
  }
  return ids;
}

}  // namespace

Status mirror(redis::RedisClient& redis, const Json& contact) {
  std::vector<redis::Command> cmds;
  for (const auto& id : ids_of(contact)) {
    cmds.push_back({"HSET", "snd:contact:" + id, "allowlisted",
                    contact.value("allowlisted", false) ? "1" : "0", "opt_in",
                    contact.value("opt_in", false) ? "1" : "0"});
  }
  return redis.pipeline_ok(cmds);
}

Status unmirror(redis::RedisClient& redis, const std::vector<std::string>& ids) {
  std::vector<redis::Command> cmds;
  for (const auto& id : ids) {
    cmds.push_back({"DEL", "snd:contact:" + id});
  }
  return redis.pipeline_ok(cmds);
}

Result<int64_t> mirror_all(pg::Connection& db, redis::RedisClient& redis) {
  auto r = db.exec("SELECT id, wa_id, user_id, opt_in, allowlisted FROM contacts "
                   "WHERE opt_in OR allowlisted");
  if (!r) {
    return Unexpected(r.error());
  }
  std::vector<redis::Command> cmds;
  for (int i = 0; i < r->size(); ++i) {
    for (const auto& id : ids_in_row(*r, i)) {
      cmds.push_back({"HSET", "snd:contact:" + id, "allowlisted", r->text(i, 4) == "t" ? "1" : "0",
                      "opt_in", r->text(i, 3) == "t" ? "1" : "0"});
    }
    if (cmds.size() >= 1000 || i + 1 == r->size()) {
      if (Status st = redis.pipeline_ok(cmds); !st) {
        return Unexpected(st.error());
      }
      cmds.clear();
    }
  }
  return static_cast<int64_t>(r->size());
}

}  // namespace wafleet::api
