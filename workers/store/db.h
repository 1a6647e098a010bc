#pragma once
// The record in PostgreSQL: migrations, day partitions, and writing a batch in one transaction.
//
// Lifecycle: a Database borrows one pg::Connection for the thread that uses it; it remembers
// which day partitions exist (read at start, added as it creates them) and whether the
// connection's staging tables exist (lost with the connection).
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/pg.h"
#include "workers/store/record.h"

namespace wafleet::store {

// The schema versions in the repository (workers/store/migrations/NNNN_name.sql), in order.
struct Migration {
  int version = 0;
  std::string name;
  const char* sql = nullptr;
};
const std::vector<Migration>& migrations();

// Applies every migration not yet applied, each in its own transaction, under an advisory lock
// (replicas starting together apply each once). Returns the versions it applied.
Result<std::vector<int>> migrate(pg::Connection& db);

// The partitioned tables (messages, statuses, ... : their rows carry a day).
const std::vector<std::string>& partitioned_tables();

class Database {
 public:
  explicit Database(pg::Connection& db) : db_(db) {}

  // Creates the day partitions of every partitioned table for these days (YYYY-MM-DD) that do
  // not exist yet.
  Status ensure_days(const std::set<std::string>& days);
  // Writes a batch in one transaction: each table by COPY, falling back to
  // INSERT ... ON CONFLICT DO NOTHING through a staging table when the batch holds rows
  // already stored (a redelivery); then the conversations and contacts it touched.
  Status write(const Batch& batch);
  // Drops the day partitions before `oldest_day` and deletes the conversations idle since
  // before it. Returns the partitions dropped.
  Result<std::vector<std::string>> drop_before(const std::string& oldest_day);
  // The stored files (storage URIs) named only by media rows before `oldest_day`: what the
  // sweep removes before it drops those days (a file sent again since is kept; files are
  // content-addressed).
  Result<std::vector<std::string>> files_only_before(const std::string& oldest_day);

  // Counters, for the worker's metrics.
  int64_t conflicts() const { return conflicts_; }

 private:
  Status load_days();
  Status prepare_staging();
  Status write_table(Table t, const TableRows& rows);
  Status write_conversations(const Batch& batch);
  Status write_contacts(const Batch& batch);
  Status in_transaction(const std::function<Status()>& body);

  pg::Connection& db_;
  std::set<std::string> days_;
  bool days_loaded_ = false;
  uint64_t staged_on_ = 0;  // the connection generation the staging tables were made on
  int64_t conflicts_ = 0;
};

// "messages_p20261202" for (messages, 2026-12-02).
std::string partition_name(const std::string& table, const std::string& day);

}  // namespace wafleet::store
