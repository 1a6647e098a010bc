#pragma once
// PostgreSQL through libpq: one connection, statements with text parameters, COPY FROM STDIN,
// and libpq's errors mapped once to the error kinds (STYLE.md §7):
//   connection lost, SQLSTATE class 08 (connection), 40 (serialization, deadlock), 53
//   (resources), 57 (admin shutdown, cancel) -> transient; 22 (data exception) and 23
//   (integrity) -> invalid input; anything else -> permanent.
// A statement on a broken connection reconnects first (never inside a transaction: the caller
// retries its whole transaction after a transient error), so a restarted server costs the
// caller one transient error, not a dead worker.
// Lifecycle: Connection owns its PGconn; not thread-safe (one per thread).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

struct pg_conn;
struct pg_result;

namespace wafleet::pg {

struct Options {
  std::string url;                      // postgresql://user@host:port/db?...
  int connect_timeout_s = 5;            // libpq connect_timeout
  std::string application_name = "wafleet";
  int statement_timeout_ms = 30000;     // 0: none
};

// A statement's rows, read as text (libpq's text format). Owns its PGresult.
class Rows {
 public:
  Rows() = default;
  explicit Rows(pg_result* r);
  ~Rows();
  Rows(Rows&& o) noexcept;
  Rows& operator=(Rows&& o) noexcept;
  Rows(const Rows&) = delete;
  Rows& operator=(const Rows&) = delete;

  int size() const;
  int columns() const;
  bool null(int row, int col) const;
  std::string_view text(int row, int col) const;  // "" when null
  std::optional<std::string> get(int row, int col) const;
  int64_t integer(int row, int col) const;  // 0 when null or not a number
  int column(std::string_view name) const;   // -1 if absent
  int64_t affected() const;                  // INSERT/UPDATE/DELETE row count

 private:
  pg_result* r_ = nullptr;
};

using Param = std::optional<std::string>;  // nullopt: SQL NULL

class Connection {
 public:
  static Result<std::unique_ptr<Connection>> connect(const Options& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One statement with $1..$n text parameters.
  Result<Rows> exec(const std::string& sql, const std::vector<Param>& params = {});
  // Several statements, no parameters (migrations, BEGIN/COMMIT).
  Status script(const std::string& sql);
  // COPY ... FROM STDIN in text format: data is whole lines (see copy_field()).
  Status copy_in(const std::string& copy_sql, std::string_view data);
  // Whether the last round trip left the connection usable.
  bool healthy() const;
  // Reconnects (after the server restarted); transient error if it cannot.
  Status reset();
  // Outside any transaction block: ROLLBACK after a failure inside one, best effort.
  void rollback();
  // Counts the connections opened: session state (temporary tables, prepared statements) is
  // gone when it changes.
  uint64_t generation() const { return generation_; }

 private:
  explicit Connection(Options options) : options_(std::move(options)) {}
  Status open();
  Status ensure_open();
  Error failure(pg_result* r, const std::string& what) const;
  Options options_;
  pg_conn* conn_ = nullptr;
  uint64_t generation_ = 0;
};

// Appends one field of a COPY text-format line, escaped (backslash, tab, newline, CR), or \N.
void copy_field(std::string& line, std::string_view value);
void copy_null(std::string& line);
// Ends a field (tab) or a line (newline).
inline void copy_sep(std::string& line) { line.push_back('\t'); }
inline void copy_end(std::string& line) { line.push_back('\n'); }

// A URL with its password replaced by "***", for logs.
std::string redact_url(const std::string& url);

// The literal of a PostgreSQL text[] array ({"a","b"}), elements quoted and escaped.
std::string text_array(const std::vector<std::string>& items);

}  // namespace wafleet::pg
