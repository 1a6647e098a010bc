#pragma once
// What one Kafka record becomes in the record (pure: no database here). A batch collects the
// rows of many records as COPY text lines per table, the days they fall on, and the latest
// activity per conversation and per contact, so a batch is written in one transaction with one
// statement per table (workers/store/README.md).
#include <cstdint>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/kafka.h"

namespace wafleet::store {

// The rows of one table, as COPY text-format lines, in the columns' order.
struct TableRows {
  std::string lines;
  size_t count = 0;
};

// The tables a batch writes, in the order they are written.
enum class Table { kMessages, kStatuses, kResults, kMedia, kTurnMessages, kHandoffs };
inline constexpr Table kTables[] = {Table::kMessages, Table::kStatuses,     Table::kResults,
                                    Table::kMedia,    Table::kTurnMessages, Table::kHandoffs};
const char* table_name(Table t);
// "day,id,..." : the columns every line of that table has, in order.
const char* table_columns(Table t);

struct ConversationTouch {
  std::string phone_number_id;
  std::string identity;
  int64_t at_ms = 0;
  std::string last_id;
  std::string direction;
  std::string type;
  std::string body;
  bool has_message = false;  // a handoff alone changes the owner, not the last message
  std::string owner;         // from a handoff; "" if none in this batch
  int64_t owner_at_ms = 0;
};

struct ContactTouch {
  std::string wa_id;
  std::string user_id;
  std::string name;
  int64_t at_ms = 0;
};

struct Batch {
  std::map<Table, TableRows> tables;
  std::set<std::string> days;  // YYYY-MM-DD of every row
  std::map<std::string, ConversationTouch> conversations;
  std::map<std::string, ContactTouch> contacts;
  int64_t records = 0;
  int64_t expired = 0;  // older than the retention: not stored
  int64_t ignored = 0;  // kinds the record does not keep (value-level errors, typing, ...)

  bool empty() const;
  void clear();
};

struct Rules {
  int64_t now_ms = 0;
  int64_t retention_ms = 30LL * 24 * 3600 * 1000;
};

// Adds the rows of one record. invalid_input: the record is not what its topic's schema says
// (the caller dead-letters it; nothing of it is in the batch).
Status add(const kafka::Record& record, const Rules& rules, Batch& batch);

// UTC date of a Unix time in milliseconds, YYYY-MM-DD.
std::string day_of(int64_t ms);
// ISO-8601 UTC with milliseconds, for timestamptz columns.
std::string timestamp_of(int64_t ms);

// A short text of a WhatsApp message object (either direction): the text, a caption, a button's
// title, a reaction's emoji, a location's name, a template's name; "" when it has none.
std::string body_of(const nlohmann::json& message, const std::string& type);

}  // namespace wafleet::store
