#pragma once
// The media worker's logic: for one inbound media message, resolve Meta's media URL, download
// it (Bearer token, streamed to disk, size-limited, SHA-256 verified), store it content-addressed
// and optionally transcribe audio. Kafka stays outside (main.cpp runs the consumer loop).
//
//   fetch(): GET /{version}/{media-id} -> url, sha256, file_size; GET url with the token. An
//   expired URL (401/404) is resolved again once. Errors are classified: transient (5xx,
//   timeouts, throttling codes, checksum mismatch) or permanent (unknown media id, bad token,
//   too large, unsupported type).
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "topics/webhook_event.h"

namespace wafleet::media {

// Where stored media live. Keys are content addresses (SHA-256 hex), so the same bytes are
// stored once however often they are sent.
class Storage {
 public:
  virtual ~Storage() = default;
  // URI of the object if it is stored already.
  virtual Result<std::optional<std::string>> find(const std::string& sha256_hex) = 0;
  // Moves/uploads the finished temp file; returns the object's URI.
  virtual Result<std::string> put(const std::string& temp_file, const std::string& sha256_hex,
                                  const std::string& mime_type) = 0;
  // A directory for downloads in progress (same filesystem as the store, for local storage).
  virtual std::string temp_dir() const = 0;
};

// <root>/sha256/<first two hex>/<hex>; URI file://<absolute path>.
class LocalStorage : public Storage {
 public:
  explicit LocalStorage(std::string root);
  Result<std::optional<std::string>> find(const std::string& sha256_hex) override;
  Result<std::string> put(const std::string& temp_file, const std::string& sha256_hex,
                          const std::string& mime_type) override;
  std::string temp_dir() const override;

 private:
  std::string path_for(const std::string& sha256_hex) const;
  std::string root_;
};

// S3-compatible object storage (AWS S3, MinIO, s3rver...), path-style URLs, SigV4 signed by
// libcurl. Objects: <prefix>sha256/<ab>/<hex>; URI s3://<bucket>/<key>. Downloads are staged in
// staging_dir and removed after the upload.
struct S3Options {
  std::string endpoint;  // e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:4569
  std::string bucket;
  std::string region = "us-east-1";
  std::string access_key;
  std::string secret_key;
  std::string prefix;
  std::string staging_dir = "./wafleet-media-staging";
};

class S3Storage : public Storage {
 public:
  explicit S3Storage(S3Options options);
  Result<std::optional<std::string>> find(const std::string& sha256_hex) override;
  Result<std::string> put(const std::string& temp_file, const std::string& sha256_hex,
                          const std::string& mime_type) override;
  std::string temp_dir() const override { return options_.staging_dir; }

 private:
  std::string key_for(const std::string& sha256_hex) const;
  S3Options options_;
};

// A stored object (a URI as Storage::put returned it) as a local file, for the sender's
// uploads: file:// (or a plain path) is read in place; s3:// is downloaded into the staging
// dir, and `temporary` says the caller removes it. A missing object is invalid input.
struct LocalObject {
  std::string path;
  bool temporary = false;
};
Result<LocalObject> open_stored(const std::string& uri, const S3Options* s3);
// An AWS SigV4 presigned GET URL (query-string authentication, UNSIGNED-PAYLOAD), valid
// expires_s seconds from amz_date ("20130524T000000Z"). canonical_uri is percent-encoded
// already ("/bucket/key" path-style, or "/key" for a virtual-hosted bucket).
std::string presign_get(const std::string& scheme_host, const std::string& host,
                        const std::string& canonical_uri, const std::string& region,
                        const std::string& access_key, const std::string& secret_key,
                        const std::string& amz_date, int64_t expires_s);
// The same for a stored s3:// object of the configured bucket (path-style at its endpoint).
Result<std::string> presign_stored(const std::string& uri, const S3Options& s3, int64_t expires_s,
                                   int64_t now_ms);

// Deletes a stored object (erasure, the sweeper): true if it was there, false if already gone.
Result<bool> remove_stored(const std::string& uri, const S3Options* s3);

// Writes bytes as a named object beside the media (reports): <local_root>/<name>, or, with s3,
// <prefix><name> in the bucket. Returns the object's URI (file://... or s3://...).
Result<std::string> write_named(const std::string& name, const std::string& bytes,
                                const std::string& mime_type, const std::string& local_root,
                                const S3Options* s3);
// The same for a finished file (written elsewhere, e.g. streamed): moved into place locally
// (same filesystem), or uploaded and removed. The file is gone afterwards either way.
Result<std::string> store_named(const std::string& name, const std::string& file,
                                const std::string& mime_type, const std::string& local_root,
                                const S3Options* s3);

struct Options {
  std::string graph_base = "https://graph.facebook.com";
  std::string graph_version = "v22.0";
  std::string access_token;
  std::string user_agent = "wafleet-media/0.1 (+https://github.com/wafleet)";
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{120000};
  // Per type, bytes (Meta's limits: contract section 3).
  std::map<std::string, int64_t> max_bytes = {{"image", 5LL << 20},
                                              {"audio", 16LL << 20},
                                              {"video", 16LL << 20},
                                              {"document", 100LL << 20},
                                              {"sticker", 500LL << 10}};
  // Optional OpenAI-compatible transcription of audio.
  std::string transcribe_url;  // e.g. http://host/v1/audio/transcriptions; "" = off
  std::string transcribe_key;
  std::string transcribe_model = "whisper-1";
};

struct Stored {
  std::string uri;
  std::string sha256_hex;
  int64_t size = 0;
  std::string mime_type;
  bool deduplicated = false;  // the bytes were stored already: nothing downloaded
  int url_fetches = 0;        // media URL lookups (1, or 2 after an expired URL)
  // Audio with transcription configured: the text, or why there is none (the media is stored).
  std::optional<std::string> transcript;
  std::string transcript_error;
};

// True for the message types this worker stores.
bool is_media(const std::string& type);

struct CurlDeleter {
  void operator()(void* c) const;
};
using CurlPtr = std::unique_ptr<void, CurlDeleter>;

// Not thread-safe: one per worker thread (it keeps a connection per endpoint alive).
class Fetcher {
 public:
  Fetcher(Options options, Storage& storage);
  // Downloads and stores the media of one message (one attempt, URL refetched once inside).
  Result<Stored> fetch(const std::string& type, const std::string& media_id,
                       const std::string& webhook_sha256);
  // Transcribes a stored local file; the transcript text.
  Result<std::string> transcribe(const std::string& file, const std::string& mime_type);
  const Options& options() const { return options_; }

 private:
  struct Info {
    std::string url;
    std::string mime_type;
    std::string sha256;
    int64_t file_size = -1;
  };
  Result<Info> resolve(const std::string& media_id);
  void transcribe_into(Stored& out, const std::string& type, const std::string& file,
                       const std::string& mime_type);
  // Downloads url into temp; the SHA-256 hex of what was written. Status 401/404: expired.
  Result<std::string> download(const std::string& url, const std::string& temp, int64_t limit,
                               long& status, int64_t& size);
  Options options_;
  Storage& storage_;
  CurlPtr graph_handle_;
  CurlPtr download_handle_;
};

// The wa.media record for a message: stored or failed (schema topics/schemas/media.schema.json).
nlohmann::json stored_record(const WebhookEvent& e, const std::string& media_id,
                             const Stored& s, int attempts, int64_t now_ms);
nlohmann::json failed_record(const WebhookEvent& e, const std::string& media_id,
                             const Error& why, int attempts, int64_t now_ms);

// Matches a computed digest against a published one, hex or base64 (Meta uses both).
bool digest_matches(const std::string& raw_digest, const std::string& published);

}  // namespace wafleet::media
