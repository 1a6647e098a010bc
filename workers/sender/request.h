#pragma once
// An outbound request (wa.outbound, schema topics/schemas/outbound_request.schema.json): parsed,
// checked against Meta's documented limits (contract section 4) and turned into the exact JSON
// body of POST /{version}/{phone-number-id}/messages. Pure: no I/O, so every rule is a unit test.
//
// A request carries Meta's own object for its type unchanged (`"text": {"body": ...}`,
// `"template": {...}`, ...), plus our envelope: request_id, idempotency_key, phone_number_id,
// `to` (phone, or a group id with recipient_type "group") or `recipient` (business-scoped user
// id), priority, and `wafleet` (the producer's own metadata, never sent). Every other top-level
// field must be one Meta's /messages takes (it is passed through) or the request is refused:
// nothing is accepted and dropped.
#include <string>

#include <nlohmann/json.hpp>

#include "common/expected.h"

namespace wafleet::sender {

enum class Priority { kReply, kBulk };

struct Request {
  std::string request_id;
  std::string idempotency_key;  // defaults to request_id
  std::string phone_number_id;
  std::string to;         // phone number
  std::string recipient;  // BSUID, when there is no phone
  std::string type;       // text, image, ..., read, typing
  Priority priority = Priority::kReply;
  bool free_form = true;  // everything but templates (and receipts) needs the 24-hour window
  bool group = false;     // recipient_type "group": `to` is a group id, no person's window
  // Media from storage: the stored object to upload (POST /{phone-number-id}/media) and send by
  // the id Meta gives it; graph_body[type] gets that id in place of storage_uri/mime_type.
  std::string upload_uri;
  std::string bulk_job;  // wafleet.bulk_job: a bulk job's request, held while the job is paused
  std::string upload_mime;
  nlohmann::json graph_body;  // exactly what Meta receives
  nlohmann::json original;    // the request as it came
};

// Parses and validates; the error says which rule failed ("text.body: 4100 characters, Meta's
// limit is 4096").
Expected<Request, std::string> parse_request(const nlohmann::json& j);

// Length in characters (UTF-8 code points), as Meta counts.
size_t utf8_length(const std::string& s);

}  // namespace wafleet::sender
