#pragma once
// Bulk campaigns, the pure part: what a job is, reading its recipient list (CSV or JSON),
// validating every row before launch, the request each recipient gets, what each Graph error
// code does to a job, quiet hours, and the report. No I/O here; store.h keeps jobs in Redis and
// worker.h drives them.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"  // format_iso8601
#include "common/expected.h"

namespace wafleet::bulk {

// PENDING (created, no worker has picked it up), SCHEDULED (waits for its start time),
// IN_PROGRESS, PAUSED (by an operator, an error class or the circuit breaker), and the three
// terminal states.
enum class State { kPending, kScheduled, kInProgress, kPaused, kCompleted, kCancelled, kFailed };
const char* to_string(State s);
std::optional<State> parse_state(const std::string& s);
bool terminal(State s);

// One recipient's status. kSending: released to wa.outbound, no result yet; kWaiting: to be
// tried again later (a retriable error, quiet hours, a paused job's recipient in flight).
enum class Phase { kPending, kSending, kWaiting, kSent, kDelivered, kRead, kFailed, kSkipped,
                    kCancelled };
const char* to_string(Phase s);
std::optional<Phase> parse_phase(const std::string& s);
// Sent, delivered and read only move forward; failed, skipped and cancelled are final.
bool final_phase(Phase s);

struct JobSpec {
  std::string id;
  std::string name;
  std::string phone_number_id;
  std::string template_name;
  std::string language;
  std::string category = "marketing";  // marketing | utility | authentication
  int64_t schedule_ms = 0;             // 0: start now
  std::string quiet_hours;             // "21:00-08:00" in each recipient's tz; empty: none
  nlohmann::json to_json() const;
};

// "bj_" + 16 hex characters.
std::string new_job_id();
bool valid_job_id(const std::string& id);

// A recipient list as rows of column -> value. CSV (RFC 4180: a header row, quoted fields with
// commas, doubled quotes and newlines) or JSON (an array of objects, or one object per line);
// chosen by the first non-space character ('[' or '{' is JSON).
struct Table {
  std::vector<std::map<std::string, std::string>> rows;
  std::vector<size_t> lines;  // the input line (CSV) or element number (JSON) of each row
};
Expected<Table, std::string> read_table(const std::string& text);

// A valid, unique recipient, ready to send.
struct Recipient {
  size_t line = 0;
  std::string to;         // phone digits (E.164 without '+'), or empty
  std::string recipient;  // a business-scoped user id (BSUID), or empty
  std::string tz;         // IANA name or +HH:MM; empty: none
  nlohmann::json components = nlohmann::json::array();  // the template's components
  bool erased = false;    // the person was forgotten (`wafleet forget`): only the line is left
  const std::string& identity() const { return to.empty() ? recipient : to; }
  nlohmann::json to_json() const;
  static Expected<Recipient, std::string> from_json(const nlohmann::json& j);
};

// A row left out before launch, with why.
struct Rejected {
  size_t line = 0;
  std::string to;      // as written (redacted in logs, not in the report)
  std::string reason;  // invalid_recipient | invalid_parameter | duplicate | us_marketing |
                       // opted_out | invalid_tz
  std::string detail;
  nlohmann::json to_json() const;
};

struct Validated {
  std::vector<Recipient> recipients;
  std::vector<Rejected> rejected;
  std::map<std::string, size_t> rejected_by_reason;
  size_t rows = 0;
};
// Every row checked before launch: recipient (E.164 after normalisation, or a BSUID), template
// parameters, tz; duplicates (after normalisation) removed and counted; marketing templates to
// US numbers refused (Meta stopped delivering them in April 2025).
Validated validate(const Table& table, const JobSpec& spec);

// "+44 (20) 7946-0958", "0044..." -> "442079460958"; nullopt unless 8..15 digits result.
std::optional<std::string> normalize_phone(const std::string& raw);
bool is_bsuid(const std::string& s);
// A +1 number outside Canada and the non-US Caribbean NANP members.
bool is_us_number(const std::string& digits);

// The template's components from a row's columns: body.1..N (positional) or body.<name>
// (named), header.image|video|document (a link) or header.text, button.<index> (a URL
// button's suffix). An error names the column.
Expected<nlohmann::json, std::string> components_for(const std::map<std::string, std::string>& row);

// The idempotency key of a recipient's attempt: bulk:<job>:<index> for the first,
// bulk:<job>:<index>:r<attempt> for a retry after a definite failure (the sender keeps a
// failure under its key, so a retry needs a new one). Also the request id.
std::string attempt_key(const std::string& job, size_t index, int attempt);
struct AttemptRef {
  std::string job;
  size_t index = 0;
  int attempt = 1;
};
// From an idempotency key or a status's biz_opaque_callback_data ("wafleet-bulk:<key>").
std::optional<AttemptRef> parse_attempt_key(const std::string& key);
std::string callback_data(const std::string& job, size_t index, int attempt);
std::optional<AttemptRef> parse_callback_data(const std::string& data);

// The wa.outbound request for one recipient's attempt (priority bulk).
nlohmann::json outbound_request(const JobSpec& spec, const Recipient& r, size_t index, int attempt);
// The Kafka key: the conversation key <phone_number_id>:<identity>.
std::string conversation_key(const JobSpec& spec, const Recipient& r);

// What a Graph error code does (issue 12's classes).
enum class Action {
  kPauseJob,        // 131048 spam rate limit, 368, 131031, 190/10/200, 131042, 132015/132016
  kBackOff,         // 4, 80007, 131057: the whole job waits, the recipient is tried again
  kSkip,            // 131026, 131050, 130472, parameter errors: never this person again
  kRetryLater,      // 130429, 131056, 131000 (and other transient ones): minutes later
  kRetryMuchLater,  // 131049 (ecosystem engagement): hours later
  kFailJob,         // 132001: the template does not exist; nobody can get it
  kFail,            // anything else: the recipient failed
};
struct Classified {
  Action action = Action::kFail;
  std::string reason;
};
Classified classify(int code);
const char* to_string(Action a);

// Quiet hours "HH:MM-HH:MM" (may wrap midnight).
struct QuietHours {
  int start_min = 0;
  int end_min = 0;
};
Expected<QuietHours, std::string> parse_quiet_hours(const std::string& s);
// The UTC offset in minutes of a time zone at a time: "+05:30", "-03:00", "UTC", or an IANA
// name looked up in the system's zoneinfo (tzdata).
Expected<int, std::string> utc_offset_minutes(const std::string& tz, int64_t at_ms);
// When quiet hours end if now_ms falls inside them for this offset; 0 when it does not.
int64_t quiet_until(const QuietHours& q, int offset_min, int64_t now_ms);

// ISO-8601 "2026-12-01T09:30:00Z", "...+01:00", "2026-12-01T09:30" (UTC) -> epoch ms.
Expected<int64_t, std::string> parse_iso8601(const std::string& s);

// How long a job of `people` new recipients takes at a rate, given the portfolio's daily budget
// and what is left of it today. Seconds; the budget part in whole windows.
struct Estimate {
  double seconds = 0;
  int64_t windows = 0;  // further 24-hour windows needed beyond today's (0: fits today)
  std::string text;
};
Estimate estimate(size_t people, double rate_per_s, int64_t daily_limit, int64_t left_today);

}  // namespace wafleet::bulk
