#pragma once
// The one dead-letter format every worker writes and `wafleet dlq` / `wafleet-replay` read
// (topics/schemas/dead_letter.schema.json, docs/OPERATIONS.md "Dead letters").
// Key and value are the original record's, untouched; the context travels in headers, every one
// always present (UTF-8 strings; numbers in decimal):
//   dlq.original.topic         the topic read (the receiver: "http:<path>")
//   dlq.original.partition     -1 for the receiver
//   dlq.original.offset        -1 for the receiver
//   dlq.original.timestamp.ms  the original record's timestamp (the receiver: arrival)
//   dlq.original.key           the original key (also the record's key)
//   dlq.original.group         the consumer group ("" for the receiver, which has none)
//   dlq.worker, dlq.stage      who failed, and at which step (decode, handle, parse...)
//   dlq.error.class            transient | permanent | invalid_input
//   dlq.error.message          why (phone digits are not redacted here: it is data, not a log)
//   dlq.attempts               tries before giving up
//   dlq.first.failure.ms, dlq.last.failure.ms
//   dlq.trace.id               32 hex digits (also in `traceparent`), or ""
//   dlq.replay.count           how many times this record had been replayed before it failed
//   dlq.original.header.<h>    every header of the original record, restored on replay
// A replayed record carries `wafleet.replay.count` (1, 2, ...): the next dead letter of it
// counts on from there, which is what caps replays.
#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/kafka.h"

namespace wafleet::dlq {

inline constexpr const char* kReplayCountHeader = "wafleet.replay.count";
inline constexpr const char* kReplayOfHeader = "wafleet.replay.of";  // "<dlq topic>:<p>:<o>"
inline constexpr const char* kOriginalHeaderPrefix = "dlq.original.header.";

struct DeadLetter {
  std::string original_topic;
  int32_t original_partition = -1;
  int64_t original_offset = -1;
  int64_t original_timestamp_ms = 0;
  std::string original_key;
  std::string group;
  std::string worker;
  std::string stage;
  std::string error_class;
  std::string error_message;
  int attempts = 1;
  int64_t first_failure_ms = 0;
  int64_t last_failure_ms = 0;
  std::string trace_id;
  int replay_count = 0;
  kafka::Headers original_headers;  // without the dlq.original.header. prefix
  kafka::Headers extra;             // other dlq.* headers (e.g. the receiver's dlq.http.*)
};

// The context of a record the worker gives up on.
DeadLetter describe(const kafka::Record& r, const std::string& group, const std::string& worker,
                    const std::string& stage, const Error& e, int attempts,
                    int64_t first_failure_ms, int64_t last_failure_ms);

kafka::Headers to_headers(const DeadLetter& d);

// Reads the context back; an error names the first missing or malformed header.
Expected<DeadLetter, std::string> from_headers(const kafka::Headers& headers);

// The 32-hex trace id of a W3C traceparent, or "".
std::string trace_id_of(const std::string& traceparent);

// The replay count a record carries (wafleet.replay.count), 0 if none or malformed.
int replay_count_of(const kafka::Record& r);

}  // namespace wafleet::dlq
