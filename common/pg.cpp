#include "common/pg.h"

#include <libpq-fe.h>

#include <charconv>
#include <cstring>

namespace wafleet::pg {

namespace {

std::string trimmed(const char* s) {
  std::string out = s ? s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

ErrorKind kind_of_sqlstate(std::string_view state) {
  if (state.size() < 2) {
    return ErrorKind::kTransient;  // no state: the connection went away
  }
  const auto cls = state.substr(0, 2);
  if (cls == "08" || cls == "40" || cls == "53" || cls == "57") {
    return ErrorKind::kTransient;
  }
  if (cls == "22" || cls == "23") {
    return ErrorKind::kInvalidInput;
  }
  return ErrorKind::kPermanent;
}

}  // namespace

// --- Rows -----------------------------------------------------------------------------------

Rows::Rows(pg_result* r) : r_(r) {}
Rows::~Rows() {
  if (r_) {
    PQclear(r_);
  }
}
Rows::Rows(Rows&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
Rows& Rows::operator=(Rows&& o) noexcept {
  if (this != &o) {
    if (r_) {
      PQclear(r_);
    }
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}
int Rows::size() const { return r_ ? PQntuples(r_) : 0; }
int Rows::columns() const { return r_ ? PQnfields(r_) : 0; }
bool Rows::null(int row, int col) const { return !r_ || PQgetisnull(r_, row, col) != 0; }
std::string_view Rows::text(int row, int col) const {
  if (null(row, col)) {
    return {};
  }
  return {PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col))};
}
std::optional<std::string> Rows::get(int row, int col) const {
  if (null(row, col)) {
    return std::nullopt;
  }
  return std::string(text(row, col));
}
int64_t Rows::integer(int row, int col) const {
  const auto t = text(row, col);
  int64_t v = 0;
  std::from_chars(t.data(), t.data() + t.size(), v);
  return v;
}
int Rows::column(std::string_view name) const {
  if (!r_) {
    return -1;
  }
  return PQfnumber(r_, std::string(name).c_str());
}
int64_t Rows::affected() const {
  if (!r_) {
    return 0;
  }
  const char* n = PQcmdTuples(r_);
  int64_t v = 0;
  std::from_chars(n, n + std::strlen(n), v);
  return v;
}

// --- Connection -----------------------------------------------------------------------------

Result<std::unique_ptr<Connection>> Connection::connect(const Options& options) {
  std::unique_ptr<Connection> c(new Connection(options));
  if (auto st = c->open(); !st) {
    return Unexpected(st.error());
  }
  return c;
}

Connection::~Connection() {
  if (conn_) {
    PQfinish(conn_);
  }
}

Status Connection::open() {
  if (conn_) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  const std::string timeout = std::to_string(options_.connect_timeout_s);
  const std::string pgopts = "-c statement_timeout=" + std::to_string(options_.statement_timeout_ms);
  const char* keys[] = {"dbname", "connect_timeout", "application_name", "options", nullptr};
  const char* values[] = {options_.url.c_str(), timeout.c_str(), options_.application_name.c_str(),
                          pgopts.c_str(), nullptr};
  conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
    std::string why = conn_ ? trimmed(PQerrorMessage(conn_)) : "out of memory";
    return Unexpected(Error::transient("postgres connect " + redact_url(options_.url) + ": " + why));
  }
  ++generation_;
  // Quiet NOTICEs ("relation already exists, skipping") instead of libpq printing to stderr.
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  return {};
}

Status Connection::ensure_open() {
  if (conn_ && PQstatus(conn_) == CONNECTION_OK) {
    return {};
  }
  return open();
}

bool Connection::healthy() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

Status Connection::reset() { return open(); }

Error Connection::failure(pg_result* r, const std::string& what) const {
  std::string state;
  std::string message;
  if (r) {
    const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    state = s ? s : "";
    message = trimmed(PQresultErrorMessage(r));
  }
  if (message.empty()) {
    message = conn_ ? trimmed(PQerrorMessage(conn_)) : "no connection";
  }
  ErrorKind kind = (!conn_ || PQstatus(conn_) != CONNECTION_OK) ? ErrorKind::kTransient
                                                                 : kind_of_sqlstate(state);
  std::string text = what + ": " + message;
  if (!state.empty()) {
    text += " (SQLSTATE " + state + ")";
  }
  return Error{kind, text};
}

Result<Rows> Connection::exec(const std::string& sql, const std::vector<Param>& params) {
  if (auto st = ensure_open(); !st) {
    return Unexpected(st.error());
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) {
    values.push_back(p ? p->c_str() : nullptr);
  }
  PGresult* r = PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr,
                             values.empty() ? nullptr : values.data(), nullptr, nullptr, 0);
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    return Rows(r);
  }
  Error e = failure(r, "postgres");
  if (r) {
    PQclear(r);
  }
  return Unexpected(std::move(e));
}

Status Connection::script(const std::string& sql) {
  if (auto st = ensure_open(); !st) {
    return st;
  }
  PGresult* r = PQexec(conn_, sql.c_str());
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY) {
    PQclear(r);
    return {};
  }
  Error e = failure(r, "postgres");
  if (r) {
    PQclear(r);
  }
  return Unexpected(std::move(e));
}

Status Connection::copy_in(const std::string& copy_sql, std::string_view data) {
  if (auto st = ensure_open(); !st) {
    return st;
  }
  PGresult* r = PQexec(conn_, copy_sql.c_str());
  if (!r || PQresultStatus(r) != PGRES_COPY_IN) {
    Error e = failure(r, "postgres copy");
    if (r) {
      PQclear(r);
    }
    return Unexpected(std::move(e));
  }
  PQclear(r);
  constexpr size_t kChunk = 1 << 20;
  bool ok = true;
  for (size_t at = 0; at < data.size() && ok; at += kChunk) {
    const size_t n = std::min(kChunk, data.size() - at);
    ok = PQputCopyData(conn_, data.data() + at, static_cast<int>(n)) == 1;
  }
  if (PQputCopyEnd(conn_, ok ? nullptr : "client failed to send the data") != 1) {
    ok = false;
  }
  Status result;
  while ((r = PQgetResult(conn_)) != nullptr) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK && result) {
      result = Unexpected(failure(r, "postgres copy"));
    }
    PQclear(r);
  }
  if (!ok && result) {
    result = Unexpected(failure(nullptr, "postgres copy"));
  }
  return result;
}

void Connection::rollback() {
  if (conn_ && PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    PGresult* r = PQexec(conn_, "ROLLBACK");
    if (r) {
      PQclear(r);
    }
  }
}

// --- text helpers ---------------------------------------------------------------------------

void copy_field(std::string& line, std::string_view value) {
  // Runs without a character to escape are appended whole.
  size_t start = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c != '\\' && c != '\t' && c != '\n' && c != '\r') {
      continue;
    }
    line.append(value.substr(start, i - start));
    line.push_back('\\');
    line.push_back(c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : 'r');
    start = i + 1;
  }
  line.append(value.substr(start));
}

void copy_null(std::string& line) { line += "\\N"; }

std::string redact_url(const std::string& url) {
  const auto scheme = url.find("://");
  const auto at = url.find('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) {
    return url;
  }
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) {
    return url;
  }
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) {
      out.push_back(',');
    }
    out.push_back('"');
    for (char c : items[i]) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
      }
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

}  // namespace wafleet::pg
