#pragma once
// Bulk jobs in Redis (keep AOF on: a job must survive any restart). Every key of a job carries
// the job id as its hash tag, so a job lives on one Redis Cluster slot.
//   bulk:jobs              ZSET job id -> created ms (`wafleet bulk ls`)
//   bulk:active            SET of jobs a worker should look at (not terminal)
//   bulk:job:{J}           HASH: the spec, state, reason, times, cursor, counts (n:<status>)
//   bulk:rcpt:{J}          LIST of the valid recipients in file order (index = position)
//   bulk:rej:{J}           LIST of the rows left out before launch, with why
//   bulk:st:{J}            HASH index -> the recipient's status (absent: pending, attempt 1)
//   bulk:inflight:{J}      ZSET index -> when it was released to wa.outbound (no result yet)
//   bulk:later:{J}         ZSET index -> when to try it again
//   bulk:recent:{J}        LIST of the last outcomes (1 failed, 0 sent): the circuit breaker
//   bulk:lease:{J}         the worker driving the job (a token, short TTL, renewed)
//   bulk:hold:{J}          set while the job is paused or ended: the sender does not send its
//                          requests (outcome `held`), so a pause holds Meta silent at once
//   bulk:reach:{<portfolio>}  ZSET person -> when first reached in the rolling 24 hours
// Report files are written by the worker (worker.cpp); the report's rows are built here.
// Not thread-safe: one Store per thread (it borrows that thread's RedisClient).
#include <cstdint>
#include <functional>
#include <ostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/redis.h"
#include "workers/bulk/job.h"
#include "workers/media/media.h"

namespace wafleet::bulk {

struct JobInfo {
  JobSpec spec;
  State state = State::kPending;
  std::string reason;  // why it is paused, failed or waiting
  int64_t created_ms = 0;
  int64_t started_ms = 0;
  int64_t ended_ms = 0;
  int64_t rows = 0;      // rows in the file
  int64_t total = 0;     // valid, unique recipients
  int64_t rejected = 0;  // rows left out before launch
  int64_t cursor = 0;    // the next index never released
  int64_t wait_until_ms = 0;  // the daily budget or a back-off holds the job until then
  std::string wait_reason;
  int64_t backoff_ms = 0;  // the current back-off step (doubles, reset by a send)
  std::string report_uri;
  std::map<std::string, int64_t> n;  // recipients per status (pending is what is left)
  std::map<std::string, int64_t> rejected_by_reason;

  int64_t count(Phase s) const;
  int64_t sent_total() const;  // sent + delivered + read
  nlohmann::json to_json() const;
  // One line: "IN_PROGRESS 1234/2000 sent 1200 delivered 1100 read 300 failed 3 ..."
  std::string progress_line() const;
};

struct RecipientStatus {
  Phase status = Phase::kPending;
  int attempt = 1;
  std::string wamid;
  int code = 0;
  std::string reason;
  int64_t updated_ms = 0;
  int64_t sent_ms = 0;
  int64_t delivered_ms = 0;
  int64_t read_ms = 0;
  static RecipientStatus from_json(const nlohmann::json& j);
};

// kDefer: waits until due_ms with the same attempt (quiet hours, the daily budget); kReopen: a
// failed recipient is tried again (retry-failed; never an uncertain one, which may have gone).
enum class Op { kRelease, kSent, kDelivered, kRead, kRetry, kFailed, kSkipped, kDefer, kReopen };

struct Transition {
  std::string job;
  size_t index = 0;
  Op op = Op::kSent;
  int attempt = 0;  // the attempt the event is about; 0: whichever is current
  int64_t now_ms = 0;
  std::string wamid;
  int code = 0;
  std::string reason;
  int64_t due_ms = 0;  // kRetry: when
};

struct Applied {
  bool applied = false;  // false: stale (an earlier attempt) or would move backwards
  Phase before = Phase::kPending;
  Phase after = Phase::kPending;
  int attempt = 1;
  int64_t recent_failures = 0;  // of the last outcomes kept for the breaker
  int64_t recent_count = 0;
};

struct Reach {
  bool allowed = false;
  int64_t retry_at_ms = 0;  // not allowed: when the oldest person leaves the window
};

class Store {
 public:
  explicit Store(redis::RedisClient& redis) : redis_(redis) {}

  // Writes the recipients, the rejected rows and the job (state PENDING). The job is not active
  // until a worker applies its create command.
  Status create(const JobSpec& spec, const Validated& v, int64_t now_ms);
  Result<std::optional<JobInfo>> job(const std::string& id);
  Result<std::vector<JobInfo>> list(size_t limit);
  Result<std::vector<std::string>> active();
  Status activate(const std::string& id);
  Status deactivate(const std::string& id);
  // Moves the job to `to` if it is in one of `from`; returns the state it was in when it moved,
  // nullopt when it did not (not there, or in another state).
  Result<std::optional<State>> set_state(const std::string& id, State to,
                                         const std::vector<State>& from,
                                         const std::string& reason, int64_t now_ms);
  Status set_fields(const std::string& id, const std::map<std::string, std::string>& fields);
  // Sets the sender's gate for the job at once (the CLI, before its pause or cancel command is
  // applied: Meta goes silent without waiting for the worker). ttl_ms 0: until removed.
  Status hold(const std::string& id, const std::string& why, int64_t ttl_ms);

  Result<std::vector<Recipient>> recipients(const std::string& id, size_t from, size_t count);
  // Recipients and statuses at scattered indexes (due, stale), in one round trip; a missing
  // index is left out.
  Result<std::map<size_t, std::pair<Recipient, RecipientStatus>>> at(const std::string& id,
                                                                     const std::vector<size_t>& indexes);
  // Indexes due in bulk:later (up to count, earliest first).
  Result<std::vector<size_t>> due(const std::string& id, int64_t now_ms, size_t count);
  Result<int64_t> in_flight(const std::string& id);
  Result<int64_t> waiting(const std::string& id);
  // Takes indexes out of bulk:later (recipients found done when they fell due).
  Status drop_waiting(const std::string& id, const std::vector<size_t>& indexes);
  // Released before older_than_ms and still without a result.
  Result<std::vector<size_t>> stale(const std::string& id, int64_t older_than_ms, size_t count);

  Result<std::vector<Applied>> apply(const std::vector<Transition>& ts);
  Result<std::map<size_t, RecipientStatus>> statuses(const std::string& id, size_t from,
                                                     size_t count);
  // Every failed recipient (retry-failed), by scanning the status hash.
  Result<std::vector<std::pair<size_t, RecipientStatus>>> failed(const std::string& id);
  Status clear_recent(const std::string& id);

  // Holds (or takes) the job's lease for ttl_ms; false when another worker holds it.
  Result<bool> lease(const std::string& id, const std::string& token, int64_t ttl_ms);
  Status release_lease(const std::string& id, const std::string& token);

  // The portfolio's rolling 24-hour budget of people reached outside a customer-service window.
  // A person reached already in the window, or inside their own window (they wrote to the number
  // in the last 24 hours: the sender's snd:win key), costs nothing. limit <= 0: unlimited.
  // Many people in two round trips (their windows, then the budget: two slots of a Redis
  // Cluster), in order: once the budget is spent, only people reached already (or inside their
  // window) are allowed.
  Result<std::vector<Reach>> charge_reach(const std::string& portfolio,
                                          const std::string& phone_number_id,
                                          const std::vector<std::string>& identities,
                                          int64_t now_ms, int64_t window_ms, int64_t limit);
  Result<int64_t> reached(const std::string& portfolio, int64_t now_ms, int64_t window_ms);
  // The sender's opt-out list (STOP, 131050): snd:optout:{<phone_number_id>}:<identity>.
  Result<std::vector<bool>> opted_out(const std::string& phone_number_id,
                                      const std::vector<std::string>& identities);

  // The report, one recipient (and rejected row) at a time, in file order.
  struct ReportRow {
    size_t line = 0;
    std::string to;
    std::string status;  // the recipient's status; a CANCELLED job's unsent ones: cancelled
    std::string wamid;
    int code = 0;
    std::string reason;
    int attempts = 0;
    int64_t sent_ms = 0;
    int64_t delivered_ms = 0;
    int64_t read_ms = 0;
    int64_t updated_ms = 0;
  };
  Status each_report_row(const JobInfo& job, const std::function<void(const ReportRow&)>& row);

  // Erasure (`wafleet forget`): in every job, the rows of these people (phone digits or
  // business-scoped user ids) become tombstones that keep only the line (a pending one is then
  // skipped as erased, never sent), their statuses lose the wamid, and their rejected rows lose
  // what was written. The job's counts and state do not change. Stored reports are not
  // rewritten here: see rewrite_report.
  struct Erased {
    std::vector<std::string> jobs;  // the jobs that held them
    int64_t rows = 0;               // recipients and rejected rows blanked
  };
  Result<Erased> erase_people(const std::vector<std::string>& identities);

 private:
  redis::RedisClient& redis_;
};

// The report as JSON (the job with its totals, then every recipient) and as CSV, from the
// store, streamed a thousand rows at a time (a million recipients never sit in memory at once).
Status report_json(Store& store, const JobInfo& job, std::ostream& out);
Status report_csv(Store& store, const JobInfo& job, std::ostream& out);

// Where reports are stored: reports/bulk/<job>.csv and .json under the local root, or under the
// bucket's prefix with s3 (staged in the S3 options' staging dir first).
struct ReportPlace {
  std::string local_root;
  const media::S3Options* s3 = nullptr;
};
// Both reports, streamed to staging files and stored; returns the JSON's URI.
Result<std::string> write_report(Store& store, const JobInfo& job, const ReportPlace& place);
// Writes a stored report again where it is (after an erasure): the place comes from the job's
// report_uri (file://<root>/reports/bulk/<job>.json, or s3:// with these S3 options).
// invalid_input when the URI is not one wafleet wrote, or is s3:// and s3 is null.
Result<std::string> rewrite_report(Store& store, const JobInfo& job, const media::S3Options* s3);

}  // namespace wafleet::bulk
