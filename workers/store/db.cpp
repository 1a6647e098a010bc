#include "workers/store/db.h"

#include <functional>

#include <fmt/format.h>

#include "store/migration_0001.h"

namespace wafleet::store {

namespace {

// pg_advisory_lock keys: one for migrations, one for partition DDL.
constexpr const char* kMigrationLock = "7305160001";
constexpr const char* kPartitionLock = "7305160002";

std::string next_day(const std::string& day) {
  // day is YYYY-MM-DD; PostgreSQL does the calendar.
  return "(DATE '" + day + "' + 1)";
}

bool valid_day(const std::string& d) {
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') {
    return false;
  }
  for (size_t i = 0; i < d.size(); ++i) {
    if (i != 4 && i != 7 && (d[i] < '0' || d[i] > '9')) {
      return false;
    }
  }
  return true;
}

}  // namespace

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = {
      {1, "record", kMigration0001},
  };
  return all;
}

const std::vector<std::string>& partitioned_tables() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> v;
    for (Table t : kTables) {
      v.emplace_back(table_name(t));
    }
    return v;
  }();
  return all;
}

std::string partition_name(const std::string& table, const std::string& day) {
  std::string compact;
  for (char c : day) {
    if (c != '-') {
      compact.push_back(c);
    }
  }
  return table + "_p" + compact;
}

Result<std::vector<int>> migrate(pg::Connection& db) {
  if (auto st = db.script("CREATE TABLE IF NOT EXISTS schema_migrations ("
                          " version integer PRIMARY KEY, name text NOT NULL,"
                          " applied_at timestamptz NOT NULL DEFAULT now())");
      !st) {
    return Unexpected(st.error());
  }
  if (auto st = db.exec(std::string("SELECT pg_advisory_lock(") + kMigrationLock + ")"); !st) {
    return Unexpected(st.error());
  }
  std::vector<int> applied;
  auto unlock = [&] { (void)db.exec(std::string("SELECT pg_advisory_unlock(") + kMigrationLock + ")"); };
  auto done = db.exec("SELECT version FROM schema_migrations");
  if (!done) {
    unlock();
    return Unexpected(done.error());
  }
  std::set<int> have;
  for (int i = 0; i < done->size(); ++i) {
    have.insert(static_cast<int>(done->integer(i, 0)));
  }
  for (const auto& m : migrations()) {
    if (have.count(m.version)) {
      continue;
    }
    auto st = db.script(fmt::format("BEGIN;\n{}\nINSERT INTO schema_migrations (version, name) "
                                    "VALUES ({}, '{}');\nCOMMIT;",
                                    m.sql, m.version, m.name));
    if (!st) {
      db.rollback();
      unlock();
      return Unexpected(Error{st.error().kind, fmt::format("migration {:04}_{}: {}", m.version,
                                                           m.name, st.error().message)});
    }
    applied.push_back(m.version);
  }
  // A database newer than this binary (a rollback of the deployment): refuse to write into a
  // schema we do not know.
  const int newest = migrations().back().version;
  for (int v : have) {
    if (v > newest) {
      unlock();
      return Unexpected(Error::fatal(fmt::format(
          "the database is at schema version {}, this binary knows up to {}", v, newest)));
    }
  }
  unlock();
  return applied;
}

Status Database::in_transaction(const std::function<Status()>& body) {
  if (auto st = db_.script("BEGIN"); !st) {
    return st;
  }
  auto st = body();
  if (!st) {
    db_.rollback();
    // Tables made in a rolled-back transaction are gone; partitions may have been made by
    // another replica meanwhile.
    staged_on_ = 0;
    days_loaded_ = false;
    return st;
  }
  if (auto c = db_.script("COMMIT"); !c) {
    db_.rollback();
    staged_on_ = 0;
    days_loaded_ = false;
    return c;
  }
  return {};
}

Status Database::load_days() {
  auto rows = db_.exec(
      "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
      "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'messages'");
  if (!rows) {
    return Unexpected(rows.error());
  }
  days_.clear();
  for (int i = 0; i < rows->size(); ++i) {
    auto name = std::string(rows->text(i, 0));
    auto p = name.rfind("_p");
    if (p != std::string::npos && name.size() - p == 10) {
      auto d = name.substr(p + 2);
      days_.insert(d.substr(0, 4) + "-" + d.substr(4, 2) + "-" + d.substr(6, 2));
    }
  }
  days_loaded_ = true;
  return {};
}

Status Database::ensure_days(const std::set<std::string>& days) {
  if (!days_loaded_) {
    if (auto st = load_days(); !st) {
      return st;
    }
  }
  std::vector<std::string> missing;
  for (const auto& d : days) {
    if (!days_.count(d)) {
      if (!valid_day(d)) {
        return Unexpected(Error::invalid("not a day: " + d));
      }
      missing.push_back(d);
    }
  }
  if (missing.empty()) {
    return {};
  }
  auto st = in_transaction([&]() -> Status {
    if (auto l = db_.exec(std::string("SELECT pg_advisory_xact_lock(") + kPartitionLock + ")"); !l) {
      return Unexpected(l.error());
    }
    for (const auto& d : missing) {
      for (const auto& t : partitioned_tables()) {
        auto sql = fmt::format(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ('{}') TO ({})",
            partition_name(t, d), t, d, next_day(d));
        if (auto s = db_.script(sql); !s) {
          return s;
        }
      }
    }
    return {};
  });
  if (!st) {
    return st;
  }
  days_.insert(missing.begin(), missing.end());
  return {};
}

Status Database::prepare_staging() {
  if (staged_on_ == db_.generation()) {
    return {};
  }
  std::string sql;
  for (Table t : kTables) {
    sql += fmt::format(
        "CREATE TEMP TABLE IF NOT EXISTS stage_{0} (LIKE {0} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;\n",
        table_name(t));
  }
  sql +=
      "CREATE TEMP TABLE IF NOT EXISTS stage_conversations (key text, phone_number_id text,"
      " identity text, owner text, owner_at timestamptz, last_at timestamptz, last_id text,"
      " last_direction text, last_type text, last_body text) ON COMMIT DELETE ROWS;\n"
      "CREATE TEMP TABLE IF NOT EXISTS stage_contacts (id text, wa_id text, user_id text,"
      " profile_name text, seen timestamptz) ON COMMIT DELETE ROWS;\n";
  if (auto st = db_.script(sql); !st) {
    return st;
  }
  staged_on_ = db_.generation();
  return {};
}

Status Database::write_table(Table t, const TableRows& rows) {
  if (rows.count == 0) {
    return {};
  }
  const std::string name = table_name(t);
  const std::string cols = table_columns(t);
  if (auto st = db_.script("SAVEPOINT copy_" + name); !st) {
    return st;
  }
  auto st = db_.copy_in(fmt::format("COPY {} ({}) FROM STDIN", name, cols), rows.lines);
  if (st) {
    return db_.script("RELEASE SAVEPOINT copy_" + name);
  }
  if (st.error().message.find("SQLSTATE 23505") == std::string::npos) {
    return st;
  }
  // Some rows are stored already (a redelivery after a crash or a rebalance): keep the others.
  ++conflicts_;
  if (auto r = db_.script("ROLLBACK TO SAVEPOINT copy_" + name); !r) {
    return r;
  }
  if (auto c = db_.copy_in(fmt::format("COPY stage_{} ({}) FROM STDIN", name, cols), rows.lines); !c) {
    return c;
  }
  return db_.script(fmt::format("INSERT INTO {0} ({1}) SELECT {1} FROM stage_{0} ON CONFLICT DO NOTHING;"
                                " TRUNCATE stage_{0}",
                                name, cols));
}

Status Database::write_conversations(const Batch& batch) {
  if (batch.conversations.empty()) {
    return {};
  }
  std::string lines;
  for (const auto& [key, c] : batch.conversations) {
    auto field = [&](std::string_view v, bool tab = true) {
      if (v.empty()) {
        pg::copy_null(lines);
      } else {
        pg::copy_field(lines, v);
      }
      if (tab) {
        pg::copy_sep(lines);
      }
    };
    field(key);
    field(c.phone_number_id);
    field(c.identity);
    field(c.owner);
    field(c.owner.empty() ? "" : timestamp_of(c.owner_at_ms));
    field(c.has_message ? timestamp_of(c.at_ms) : "");
    field(c.has_message ? c.last_id : "");
    field(c.has_message ? c.direction : "");
    field(c.has_message ? c.type : "");
    field(c.has_message ? c.body : "", false);
    pg::copy_end(lines);
  }
  if (auto st = db_.copy_in("COPY stage_conversations FROM STDIN", lines); !st) {
    return st;
  }
  // A message newer than the stored last one replaces it; a handoff newer than the stored owner
  // replaces the owner. Out-of-order batches never move either back.
  return db_.script(R"sql(
INSERT INTO conversations AS c (key, phone_number_id, identity, owner, owner_at, last_at, last_id,
                                last_direction, last_type, last_body)
SELECT key, COALESCE(phone_number_id, ''), COALESCE(identity, ''), COALESCE(owner, 'bot'), owner_at,
       COALESCE(last_at, owner_at), COALESCE(last_id, ''), COALESCE(last_direction, ''),
       COALESCE(last_type, ''), last_body
FROM stage_conversations
ON CONFLICT (key) DO UPDATE SET
  last_at = CASE WHEN EXCLUDED.last_id <> '' AND (c.last_id = '' OR EXCLUDED.last_at >= c.last_at)
                 THEN EXCLUDED.last_at ELSE c.last_at END,
  last_id = CASE WHEN EXCLUDED.last_id <> '' AND (c.last_id = '' OR EXCLUDED.last_at >= c.last_at)
                 THEN EXCLUDED.last_id ELSE c.last_id END,
  last_direction = CASE WHEN EXCLUDED.last_id <> '' AND (c.last_id = '' OR EXCLUDED.last_at >= c.last_at)
                 THEN EXCLUDED.last_direction ELSE c.last_direction END,
  last_type = CASE WHEN EXCLUDED.last_id <> '' AND (c.last_id = '' OR EXCLUDED.last_at >= c.last_at)
                 THEN EXCLUDED.last_type ELSE c.last_type END,
  last_body = CASE WHEN EXCLUDED.last_id <> '' AND (c.last_id = '' OR EXCLUDED.last_at >= c.last_at)
                 THEN EXCLUDED.last_body ELSE c.last_body END,
  owner = CASE WHEN EXCLUDED.owner_at IS NOT NULL AND (c.owner_at IS NULL OR EXCLUDED.owner_at >= c.owner_at)
               THEN EXCLUDED.owner ELSE c.owner END,
  owner_at = CASE WHEN EXCLUDED.owner_at IS NOT NULL AND (c.owner_at IS NULL OR EXCLUDED.owner_at >= c.owner_at)
               THEN EXCLUDED.owner_at ELSE c.owner_at END;
TRUNCATE stage_conversations)sql");
}

Status Database::write_contacts(const Batch& batch) {
  if (batch.contacts.empty()) {
    return {};
  }
  std::string lines;
  for (const auto& [id, c] : batch.contacts) {
    for (std::string_view v : {std::string_view(id), std::string_view(c.wa_id),
                               std::string_view(c.user_id), std::string_view(c.name)}) {
      if (v.empty()) {
        pg::copy_null(lines);
      } else {
        pg::copy_field(lines, v);
      }
      pg::copy_sep(lines);
    }
    pg::copy_field(lines, timestamp_of(c.at_ms));
    pg::copy_end(lines);
  }
  if (auto st = db_.copy_in("COPY stage_contacts FROM STDIN", lines); !st) {
    return st;
  }
  return db_.script(R"sql(
INSERT INTO contacts AS c (id, wa_id, user_id, profile_name, first_seen, last_seen)
SELECT id, wa_id, user_id, profile_name, seen, seen FROM stage_contacts
ON CONFLICT (id) DO UPDATE SET
  wa_id = COALESCE(EXCLUDED.wa_id, c.wa_id),
  user_id = COALESCE(EXCLUDED.user_id, c.user_id),
  profile_name = CASE WHEN EXCLUDED.profile_name IS NOT NULL
                       AND (c.last_seen IS NULL OR EXCLUDED.last_seen >= c.last_seen)
                      THEN EXCLUDED.profile_name ELSE c.profile_name END,
  first_seen = LEAST(c.first_seen, EXCLUDED.first_seen),
  last_seen = GREATEST(c.last_seen, EXCLUDED.last_seen);
TRUNCATE stage_contacts)sql");
}

Status Database::write(const Batch& batch) {
  if (batch.empty()) {
    return {};
  }
  if (auto st = ensure_days(batch.days); !st) {
    return st;
  }
  return in_transaction([&]() -> Status {
    if (auto st = prepare_staging(); !st) {
      return st;
    }
    for (Table t : kTables) {
      auto it = batch.tables.find(t);
      if (it == batch.tables.end()) {
        continue;
      }
      if (auto st = write_table(t, it->second); !st) {
        return st;
      }
    }
    if (auto st = write_conversations(batch); !st) {
      return st;
    }
    return write_contacts(batch);
  });
}

Result<std::vector<std::string>> Database::drop_before(const std::string& oldest_day) {
  if (!valid_day(oldest_day)) {
    return Unexpected(Error::invalid("not a day: " + oldest_day));
  }
  if (auto st = load_days(); !st) {
    return Unexpected(st.error());
  }
  std::vector<std::string> dropped;
  std::vector<std::string> old;
  for (const auto& d : days_) {
    if (d < oldest_day) {
      old.push_back(d);
    }
  }
  auto st = in_transaction([&]() -> Status {
    if (auto l = db_.exec(std::string("SELECT pg_advisory_xact_lock(") + kPartitionLock + ")"); !l) {
      return Unexpected(l.error());
    }
    for (const auto& d : old) {
      for (const auto& t : partitioned_tables()) {
        auto name = partition_name(t, d);
        if (auto s = db_.script("DROP TABLE IF EXISTS " + name); !s) {
          return s;
        }
        dropped.push_back(name);
      }
    }
    auto del = db_.exec("DELETE FROM conversations WHERE last_at < $1::date", {oldest_day});
    if (!del) {
      return Unexpected(del.error());
    }
    return {};
  });
  if (!st) {
    return Unexpected(st.error());
  }
  for (const auto& d : old) {
    days_.erase(d);
  }
  return dropped;
}

Result<std::vector<std::string>> Database::files_only_before(const std::string& oldest_day) {
  if (!valid_day(oldest_day)) {
    return Unexpected(Error::invalid("not a day: " + oldest_day));
  }
  auto rows = db_.exec(R"sql(
SELECT DISTINCT o.storage_uri FROM media o
 WHERE o.day < $1::date AND o.status = 'stored' AND o.storage_uri IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM media n WHERE n.day >= $1::date AND n.sha256 = o.sha256))sql",
                       {oldest_day});
  if (!rows) {
    return Unexpected(rows.error());
  }
  std::vector<std::string> out;
  for (int i = 0; i < rows->size(); ++i) {
    out.emplace_back(rows->text(i, 0));
  }
  return out;
}

}  // namespace wafleet::store
