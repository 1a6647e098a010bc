#pragma once
// A local stand-in for the parts of Meta's Cloud API wafleet uses, built from
// docs/reference/whatsapp-contract.md (sections 3 and 4):
//   GET  /{version}/{media-id}              media URL, mime_type, sha256 (hex), file_size
//   GET  /media/{media-id}?exp=..&sig=..    the download URL: Bearer token required, expires
//   POST /{version}/{phone-number-id}/messages   Meta's success and error shapes
//   POST /{version}/{phone-number-id}/media upload (multipart: messaging_product, type, file)
//                                           -> {"id"}; Meta's types and size limits
//   DELETE /{version}/{media-id}            -> {"success": true}
//   POST /v1/audio/transcriptions           OpenAI-compatible transcription (multipart)
//   POST /v1/chat/completions               an OpenAI-compatible agent that answers
//                                           deterministically ("You said: ...", images counted)
// and an admin API for tests and the demo, under /_emulator/:
//   POST /_emulator/media    register media: {"id","mime_type", "content_base64" | "size"+"seed",
//                            "transcript"?} -> {"id","sha256_hex","sha256_base64","file_size"}
//   POST /_emulator/faults   add a fault rule (see Fault), GET lists them, DELETE clears them
//   GET  /_emulator/calls    every call so far (method, path, status, authorized, body for JSON)
//   POST /_emulator/reset    forget media, faults and calls
//   POST /_emulator/webhook  sign a webhook body with an app secret and POST it to a receiver:
//                            {"url","app_secret","body"} -> {"status","body"}
// Thread-safe: the HTTP server calls handle() from its I/O threads.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http_server.h"

namespace wafleet::emulator {

struct Options {
  std::string access_token = "emulator-token";
  int64_t url_ttl_ms = 5 * 60 * 1000;  // Meta: media URLs expire after 5 minutes
  std::string public_base;             // "http://127.0.0.1:PORT"; set once the port is known
  // Status webhooks, as Meta sends them after a message is accepted: signed with the app secret
  // and POSTed to the receiver (batched, up to 100 statuses a webhook). Empty url: none.
  std::string status_url;
  std::string status_app_secret;
  std::vector<std::string> statuses = {"sent", "delivered"};
  std::string waba_id = "100000000000001";
  std::string display_phone_number = "15550001111";
};

class StatusPoster;

// A fault rule: the next `times` calls (-1: every call) to `endpoint` (media | download |
// messages | upload | transcriptions | chat), optionally only for one media id or recipient (`match`), get it.
struct Fault {
  std::string endpoint;
  std::string match;
  int times = 1;
  int error_code = 0;   // Graph error code in Meta's error shape (HTTP 400 unless http_status)
  int http_status = 0;  // an error status (e.g. 500) on its own, or with error_code; 0: none
  int64_t latency_ms = 0;   // answer this much later (a client timeout shorter than it fails)
  bool expired_url = false;   // media: hand out a URL that has already expired
  bool wrong_checksum = false;  // media: report a sha256 that does not match the bytes
  bool oversize = false;        // download: send 1 MiB more bytes than file_size says
  bool handoff = false;         // chat: answer with a handoff_to_human tool call
  int answer_chars = 0;         // chat: answer with this many characters of numbered sentences
  int status_error_code = 0;    // messages: accept the send, then a failed status with this code
  bool is_error() const { return error_code != 0 || http_status >= 400; }
  unsigned status() const { return http_status >= 400 ? http_status : 400; }
  nlohmann::json to_json() const;
  static std::optional<Fault> from_json(const nlohmann::json& j, std::string& error);
};

struct Media {
  std::string id{};
  std::string mime_type{};
  std::string bytes{};
  std::string sha256_hex{};
  std::string transcript{};
  std::string uploaded_by{};  // the phone number id that uploaded it; "" for test media
};

class GraphEmulator {
 public:
  explicit GraphEmulator(Options options);
  ~GraphEmulator();
  void set_public_base(const std::string& base);
  // Registers media directly (tests in process); returns its description as Meta gives it.
  nlohmann::json add_media(Media m);
  void add_fault(Fault f);
  nlohmann::json calls() const;

  void handle(http::Request&& req, http::Responder respond);

 private:
  struct Call {
    std::string method;
    std::string path;
    unsigned status = 0;
    bool authorized = false;
    nlohmann::json body;  // request body when it is JSON
    int64_t at_ms = 0;
  };
  http::Response route(const http::Request& req, Call& call, int64_t& delay_ms);
  std::optional<Fault> take_fault(const std::string& endpoint, const std::string& match);
  // The Bearer token, then the endpoint's next fault: an answer when either refuses the call.
  std::optional<http::Response> admit(const http::Request& req, const Call& call,
                                      const std::string& endpoint, const std::string& match,
                                      std::optional<Fault>& fault, int64_t& delay_ms);
  http::Response graph_error(const http::Request& req, int code, const std::string& message,
                             unsigned status) const;
  http::Response media_info(const http::Request& req, const std::string& id, Call& call,
                            int64_t& delay_ms);
  http::Response download(const http::Request& req, const std::string& id,
                          const std::string& query, Call& call, int64_t& delay_ms);
  http::Response messages(const http::Request& req, const std::string& pnid, Call& call,
                          int64_t& delay_ms);
  http::Response transcription(const http::Request& req, Call& call, int64_t& delay_ms);
  http::Response chat(const http::Request& req, Call& call, int64_t& delay_ms);
  http::Response upload(const http::Request& req, const std::string& pnid, Call& call,
                        int64_t& delay_ms);
  http::Response delete_media(const http::Request& req, const std::string& id, Call& call);
  http::Response admin(const http::Request& req, const std::string& what);
  std::string url_signature(const std::string& id, int64_t exp) const;
  bool authorized(const http::Request& req) const;

  Options options_;
  mutable std::mutex mu_;
  std::map<std::string, Media> media_;
  std::vector<Fault> faults_;
  std::vector<Call> calls_;
  std::atomic<uint64_t> next_message_{1};
  std::unique_ptr<StatusPoster> poster_;  // null without a status url
};

}  // namespace wafleet::emulator
