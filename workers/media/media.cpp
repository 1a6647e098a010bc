#include "workers/media/media.h"

#include <curl/curl.h>

#include <cctype>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include "common/crypto.h"
#include "common/http_server.h"  // percent_encode
#include "common/json_util.h"

namespace wafleet::media {
namespace fs = std::filesystem;

namespace {

struct SlistDeleter {
  void operator()(curl_slist* s) const { curl_slist_free_all(s); }
};
struct MimeDeleter {
  void operator()(curl_mime* m) const { curl_mime_free(m); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// Sets the options every request shares. A handle is reused (curl_easy_reset keeps its
// connection cache), so lookups and downloads ride kept-alive connections.
CURL* prepare(CurlPtr& c, const Options& o) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (c) {
    curl_easy_reset(c.get());
  } else {
    c.reset(curl_easy_init());
  }
  if (c) {
    curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.get(), CURLOPT_USERAGENT, o.user_agent.c_str());
    curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
    curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(o.request_timeout.count()));
    curl_easy_setopt(c.get(), CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c.get(), CURLOPT_MAXREDIRS, 3L);
  }
  return c.get();
}

size_t append_body(char* ptr, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
  return size * nmemb;
}

struct Sink {
  std::FILE* file = nullptr;
  crypto::Sha256 sha;
  int64_t written = 0;
  int64_t limit = 0;
  bool too_large = false;
  long status = 0;
  CURL* curl = nullptr;
};

size_t write_file(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* s = static_cast<Sink*>(userdata);
  const size_t n = size * nmemb;
  if (s->status == 0) {
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
  }
  if (s->status != 200) {
    return n;  // an error body: not stored, not hashed
  }
  if (s->written + static_cast<int64_t>(n) > s->limit) {
    s->too_large = true;
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  if (std::fwrite(ptr, 1, n, s->file) != n) {
    return 0;
  }
  s->sha.update(std::string_view(ptr, n));
  s->written += static_cast<int64_t>(n);
  return n;
}

// Graph error codes worth retrying (contract section 5.2, classes T).
bool transient_code(int code) {
  static const std::set<int> codes = {1, 2, 4, 80007, 130429, 131000, 131016, 131057, 133004};
  return codes.contains(code);
}

Error graph_failure(long status, const std::string& body, const std::string& what) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  int code = 0;
  std::string message;
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    code = j["error"].value("code", 0);
    message = j["error"].value("message", "");
  }
  const std::string text = what + ": HTTP " + std::to_string(status) +
                           (code != 0 ? " Graph error " + std::to_string(code) : "") +
                           (message.empty() ? "" : " (" + message + ")");
  if (status >= 500 || status == 429 || transient_code(code)) {
    return Error::transient(text);
  }
  return Error::permanent(text);
}

}  // namespace

bool is_media(const std::string& type) {
  return type == "image" || type == "audio" || type == "video" || type == "document" ||
         type == "sticker";
}

bool digest_matches(const std::string& raw_digest, const std::string& published) {
  if (published.empty()) {
    return true;
  }
  if (published.size() == 64) {
    if (auto hex = crypto::hex_decode(published); hex && *hex == raw_digest) {
      return true;
    }
  }
  auto b64 = crypto::base64_decode(published);
  return b64 && *b64 == raw_digest;
}

// ---------------------------------------------------------------------------------------------

LocalStorage::LocalStorage(std::string root) : root_(fs::absolute(root).string()) {
  std::error_code ec;
  fs::create_directories(fs::path(root_) / ".tmp", ec);
}

std::string LocalStorage::path_for(const std::string& sha256_hex) const {
  return (fs::path(root_) / "sha256" / sha256_hex.substr(0, 2) / sha256_hex).string();
}

std::string LocalStorage::temp_dir() const { return (fs::path(root_) / ".tmp").string(); }

Result<std::optional<std::string>> LocalStorage::find(const std::string& sha256_hex) {
  std::error_code ec;
  const std::string p = path_for(sha256_hex);
  if (fs::exists(p, ec)) {
    return std::optional<std::string>("file://" + p);
  }
  if (ec) {
    return Unexpected(Error::transient("storage: " + ec.message()));
  }
  return std::optional<std::string>();
}

Result<std::string> LocalStorage::put(const std::string& temp_file, const std::string& sha256_hex,
                                      const std::string& /*mime_type*/) {
  const fs::path dest = path_for(sha256_hex);
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  if (ec) {
    return Unexpected(Error::transient("storage: cannot create " + dest.parent_path().string() +
                                       ": " + ec.message()));
  }
  // rename() is atomic: a reader sees the whole file or none; a second copy replaces the same
  // bytes.
  fs::rename(temp_file, dest, ec);
  if (ec) {
    return Unexpected(Error::transient("storage: cannot move into " + dest.string() + ": " +
                                       ec.message()));
  }
  return "file://" + dest.string();
}

// ---------------------------------------------------------------------------------------------

void CurlDeleter::operator()(void* c) const { curl_easy_cleanup(c); }

S3Storage::S3Storage(S3Options options) : options_(std::move(options)) {
  while (!options_.endpoint.empty() && options_.endpoint.back() == '/') {
    options_.endpoint.pop_back();
  }
  std::error_code ec;
  fs::create_directories(options_.staging_dir, ec);
}

std::string S3Storage::key_for(const std::string& sha256_hex) const {
  return options_.prefix + "sha256/" + sha256_hex.substr(0, 2) + "/" + sha256_hex;
}

namespace {

// One SigV4-signed S3 request (libcurl signs it); the HTTP status. PUT uploads body_file, GET
// downloads into it.
Result<long> s3_request(const S3Options& o, const std::string& method, const std::string& key,
                        const std::string& body_file, const std::string& content_sha256,
                        const std::string& mime_type, std::string* response) {
  CurlPtr c;
  const Options defaults;
  if (!prepare(c, defaults)) {
    return Unexpected(Error::transient("curl_easy_init failed"));
  }
  const std::string url = o.endpoint + "/" + o.bucket + "/" + key;
  const std::string provider = "aws:amz:" + o.region + ":s3";
  const std::string userpwd = o.access_key + ":" + o.secret_key;
  curl_slist* raw =
      curl_slist_append(nullptr, ("x-amz-content-sha256: " + content_sha256).c_str());
  if (!mime_type.empty()) {
    raw = curl_slist_append(raw, ("Content-Type: " + mime_type).c_str());
  }
  SlistPtr headers(raw);
  std::string sink;
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_AWS_SIGV4, provider.c_str());
  curl_easy_setopt(c.get(), CURLOPT_USERPWD, userpwd.c_str());
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, response ? response : &sink);
  std::FILE* f = nullptr;
  if (method == "HEAD") {
    curl_easy_setopt(c.get(), CURLOPT_NOBODY, 1L);
  } else if (method == "DELETE") {
    curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, "DELETE");
  } else if (method == "GET") {
    f = std::fopen(body_file.c_str(), "wb");  // the object's bytes go to body_file
    if (!f) {
      return Unexpected(Error::transient("cannot write " + body_file));
    }
    curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, nullptr);  // libcurl's fwrite
    curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, f);
  } else {
    f = std::fopen(body_file.c_str(), "rb");
    if (!f) {
      return Unexpected(Error::transient("cannot read " + body_file));
    }
    std::error_code ec;
    const auto size = fs::file_size(body_file, ec);
    curl_easy_setopt(c.get(), CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c.get(), CURLOPT_READDATA, f);
    curl_easy_setopt(c.get(), CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
  }
  const CURLcode rc = curl_easy_perform(c.get());
  if (f) {
    std::fclose(f);
  }
  if (rc != CURLE_OK) {
    return Unexpected(Error::transient("s3 " + method + " " + key + ": " + curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  return status;
}

// The payload hash of an empty body (HEAD).
constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace

Result<std::optional<std::string>> S3Storage::find(const std::string& sha256_hex) {
  const std::string key = key_for(sha256_hex);
  auto status = s3_request(options_, "HEAD", key, "", kEmptySha256, "", nullptr);
  if (!status) {
    return Unexpected(status.error());
  }
  if (*status == 200) {
    return std::optional<std::string>("s3://" + options_.bucket + "/" + key);
  }
  if (*status == 404) {
    return std::optional<std::string>();
  }
  return Unexpected(Error::transient("s3 HEAD " + key + ": HTTP " + std::to_string(*status)));
}

Result<std::string> S3Storage::put(const std::string& temp_file, const std::string& sha256_hex,
                                   const std::string& mime_type) {
  const std::string key = key_for(sha256_hex);
  std::string body;
  // The payload hash is the content's SHA-256, verified already: the signature covers the bytes.
  auto status = s3_request(options_, "PUT", key, temp_file, sha256_hex, mime_type, &body);
  std::error_code ec;
  fs::remove(temp_file, ec);
  if (!status) {
    return Unexpected(status.error());
  }
  if (*status != 200) {
    const std::string what = "s3 PUT " + key + ": HTTP " + std::to_string(*status) + " " +
                             body.substr(0, 300);
    return Unexpected(*status >= 500 ? Error::transient(what) : Error::permanent(what));
  }
  return "s3://" + options_.bucket + "/" + key;
}

Result<std::string> store_named(const std::string& name, const std::string& file,
                                const std::string& mime_type, const std::string& local_root,
                                const S3Options* s3) {
  std::error_code ec;
  if (s3 == nullptr || s3->bucket.empty()) {
    const fs::path final_path = fs::path(local_root) / name;
    fs::create_directories(final_path.parent_path(), ec);
    fs::rename(file, final_path, ec);
    if (ec) {
      fs::remove(file, ec);
      return Unexpected(Error::transient("cannot move " + file + " to " + final_path.string() + ": " +
                                         ec.message()));
    }
    return "file://" + fs::absolute(final_path).string();
  }
  const std::string key = s3->prefix + name;
  std::optional<std::string> digest;
  {
    std::ifstream in(file, std::ios::binary);
    crypto::Sha256 sha;
    std::string chunk(1 << 16, '\0');
    while (in) {
      in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      sha.update(std::string_view(chunk.data(), static_cast<size_t>(in.gcount())));
    }
    if (in.bad() || !in.eof()) {
      fs::remove(file, ec);
      return Unexpected(Error::transient("cannot read " + file));
    }
    digest = crypto::hex_encode(sha.final_raw());
  }
  std::string body;
  auto status = s3_request(*s3, "PUT", key, file, *digest, mime_type, &body);
  fs::remove(file, ec);
  if (!status) {
    return Unexpected(status.error());
  }
  if (*status != 200) {
    return Unexpected(Error::transient("s3 PUT " + key + ": HTTP " + std::to_string(*status) + " " +
                                       body.substr(0, 300)));
  }
  return "s3://" + s3->bucket + "/" + key;
}

Result<std::string> write_named(const std::string& name, const std::string& bytes,
                                const std::string& mime_type, const std::string& local_root,
                                const S3Options* s3) {
  std::error_code ec;
  const bool remote = s3 != nullptr && !s3->bucket.empty();
  const fs::path dir = remote ? fs::path(s3->staging_dir) : (fs::path(local_root) / name).parent_path();
  fs::create_directories(dir, ec);
  const fs::path temp = dir / (".write-" + crypto::random_hex(8) + ".part");
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      fs::remove(temp, ec);
      return Unexpected(Error::transient("cannot write " + temp.string()));
    }
  }
  return store_named(name, temp.string(), mime_type, local_root, s3);
}

namespace {

// The object key of an s3://<bucket>/<key> URI in the configured bucket.
Result<std::string> s3_key_of(const std::string& uri, const S3Options* s3) {
  if (s3 == nullptr || s3->bucket.empty()) {
    return Unexpected(Error::invalid("storage_uri " + uri + ": no S3 storage is configured"));
  }
  const std::string rest = uri.substr(5);
  const size_t slash = rest.find('/');
  if (slash == std::string::npos || rest.substr(0, slash) != s3->bucket) {
    return Unexpected(Error::invalid("storage_uri " + uri + ": not in bucket " + s3->bucket));
  }
  return rest.substr(slash + 1);
}

}  // namespace


std::string presign_get(const std::string& scheme_host, const std::string& host,
                        const std::string& canonical_uri, const std::string& region,
                        const std::string& access_key, const std::string& secret_key,
                        const std::string& amz_date, int64_t expires_s) {
  const std::string day = amz_date.substr(0, 8);
  const std::string scope = day + "/" + region + "/s3/aws4_request";
  // Parameters in byte order of their names.
  const std::string query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" +
                            http::percent_encode(access_key + "/" + scope) + "&X-Amz-Date=" + amz_date +
                            "&X-Amz-Expires=" + std::to_string(expires_s) +
                            "&X-Amz-SignedHeaders=host";
  const std::string canonical = "GET\n" + canonical_uri + "\n" + query + "\nhost:" + host +
                                "\n\nhost\nUNSIGNED-PAYLOAD";
  const std::string to_sign =
      "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + crypto::sha256_hex(canonical);
  std::string k = crypto::hmac_sha256_raw("AWS4" + secret_key, day);
  for (const std::string& part : {region, std::string("s3"), std::string("aws4_request")}) {
    k = crypto::hmac_sha256_raw(k, part);
  }
  return scheme_host + canonical_uri + "?" + query +
         "&X-Amz-Signature=" + crypto::hmac_sha256_hex(k, to_sign);
}

Result<std::string> presign_stored(const std::string& uri, const S3Options& s3, int64_t expires_s,
                                   int64_t now_ms) {
  if (!uri.starts_with("s3://")) {
    return Unexpected(Error::invalid("storage_uri " + uri + ": not an s3:// object"));
  }
  auto key = s3_key_of(uri, &s3);
  if (!key) {
    return Unexpected(key.error());
  }
  const size_t scheme = s3.endpoint.find("://");
  if (scheme == std::string::npos) {
    return Unexpected(Error::invalid("WAFLEET_S3_ENDPOINT: expected http(s)://host[:port]"));
  }
  std::string host = s3.endpoint.substr(scheme + 3);
  while (!host.empty() && host.back() == '/') {
    host.pop_back();
  }
  const std::time_t t = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[20];
  std::strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
  return presign_get(s3.endpoint.substr(0, scheme + 3) + host, host,
                     "/" + http::percent_encode(s3.bucket) + "/" + http::percent_encode(*key, true), s3.region,
                     s3.access_key, s3.secret_key, date, expires_s);
}

Result<bool> remove_stored(const std::string& uri, const S3Options* s3) {
  if (uri.starts_with("file://") || uri.starts_with("/")) {
    std::error_code ec;
    const bool removed = fs::remove(uri.starts_with("file://") ? uri.substr(7) : uri, ec);
    if (ec) {
      return Unexpected(Error::transient("remove " + uri + ": " + ec.message()));
    }
    return removed;
  }
  if (!uri.starts_with("s3://")) {
    return Unexpected(Error::invalid("storage_uri " + uri + ": expected file:// or s3://"));
  }
  auto key = s3_key_of(uri, s3);
  if (!key) {
    return Unexpected(key.error());
  }
  auto status = s3_request(*s3, "DELETE", *key, "", kEmptySha256, "", nullptr);
  if (!status) {
    return Unexpected(status.error());
  }
  if (*status == 204 || *status == 200) {
    return true;
  }
  if (*status == 404) {
    return false;
  }
  const std::string what = "s3 DELETE " + uri + ": HTTP " + std::to_string(*status);
  return Unexpected(*status >= 500 ? Error::transient(what) : Error::permanent(what));
}

Result<LocalObject> open_stored(const std::string& uri, const S3Options* s3) {
  if (uri.starts_with("file://") || uri.starts_with("/")) {
    LocalObject o{uri.starts_with("file://") ? uri.substr(7) : uri, false};
    std::error_code ec;
    if (!fs::is_regular_file(o.path, ec)) {
      return Unexpected(Error::invalid("stored object " + o.path + " does not exist"));
    }
    return o;
  }
  if (!uri.starts_with("s3://")) {
    return Unexpected(Error::invalid("storage_uri " + uri + ": expected file:// or s3://"));
  }
  auto key = s3_key_of(uri, s3);
  if (!key) {
    return Unexpected(key.error());
  }
  std::error_code ec;
  fs::create_directories(s3->staging_dir, ec);
  LocalObject o{s3->staging_dir + "/get-" + crypto::random_hex(8), true};
  auto status = s3_request(*s3, "GET", *key, o.path, kEmptySha256, "", nullptr);
  if (!status || *status != 200) {
    fs::remove(o.path, ec);
    if (!status) {
      return Unexpected(status.error());
    }
    const std::string what = "s3 GET " + uri + ": HTTP " + std::to_string(*status);
    return Unexpected(*status == 404 ? Error::invalid(what)
                                     : *status >= 500 ? Error::transient(what)
                                                      : Error::permanent(what));
  }
  return o;
}

// ---------------------------------------------------------------------------------------------


Fetcher::Fetcher(Options options, Storage& storage)
    : options_(std::move(options)), storage_(storage) {}

Result<Fetcher::Info> Fetcher::resolve(const std::string& media_id) {
  CurlPtr& c = graph_handle_;
  if (!prepare(c, options_)) {
    return Unexpected(Error::transient("curl_easy_init failed"));
  }
  const std::string url = options_.graph_base + "/" + options_.graph_version + "/" + media_id;
  SlistPtr headers(curl_slist_append(nullptr, ("Authorization: Bearer " + options_.access_token).c_str()));
  std::string body;
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(c.get());
  if (rc != CURLE_OK) {
    return Unexpected(Error::transient("media lookup " + media_id + ": " + curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    return Unexpected(graph_failure(status, body, "media lookup " + media_id));
  }
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("url") || !j["url"].is_string()) {
    return Unexpected(Error::transient("media lookup " + media_id + ": no url in the answer"));
  }
  Info info;
  info.url = j["url"].get<std::string>();
  info.mime_type = j.value("mime_type", "");
  info.sha256 = j.value("sha256", "");
  // file_size: an integer in real answers, a string in Meta's documented syntax.
  if (j.contains("file_size")) {
    if (j["file_size"].is_number_integer()) {
      info.file_size = j["file_size"].get<int64_t>();
    } else if (j["file_size"].is_string()) {
      try {
        info.file_size = std::stoll(j["file_size"].get<std::string>());
      } catch (const std::exception&) {
        info.file_size = -1;
      }
    }
  }
  return info;
}

Result<std::string> Fetcher::download(const std::string& url, const std::string& temp,
                                      int64_t limit, long& status, int64_t& size) {
  CurlPtr& c = download_handle_;
  if (!prepare(c, options_)) {
    return Unexpected(Error::transient("curl_easy_init failed"));
  }
  Sink sink;
  sink.file = std::fopen(temp.c_str(), "wb");
  if (!sink.file) {
    return Unexpected(Error::transient("cannot write " + temp));
  }
  sink.limit = limit;
  sink.curl = c.get();
  SlistPtr headers(curl_slist_append(nullptr, ("Authorization: Bearer " + options_.access_token).c_str()));
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c.get(), CURLOPT_BUFFERSIZE, 512L * 1024);  // fewer, larger writes
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, write_file);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &sink);
  const CURLcode rc = curl_easy_perform(c.get());
  const bool closed = std::fclose(sink.file) == 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  size = sink.written;
  if (sink.too_large) {
    return Unexpected(Error::permanent("download larger than the limit of " +
                                       std::to_string(limit) + " bytes"));
  }
  if (rc != CURLE_OK) {
    return Unexpected(Error::transient(std::string("download: ") + curl_easy_strerror(rc)));
  }
  if (!closed) {
    return Unexpected(Error::transient("cannot finish writing " + temp));
  }
  return sink.sha.final_raw();
}

Result<Stored> Fetcher::fetch(const std::string& type, const std::string& media_id,
                              const std::string& webhook_sha256) {
  if (!is_media(type)) {
    return Unexpected(Error::invalid("type '" + type + "' carries no media"));
  }
  const auto lim = options_.max_bytes.find(type);
  const int64_t limit = lim == options_.max_bytes.end() ? (100LL << 20) : lim->second;
  // The same bytes stored already (the webhook's sha256 names them): nothing to download.
  if (!webhook_sha256.empty()) {
    std::optional<std::string> raw;
    if (webhook_sha256.size() == 64) {
      raw = crypto::hex_decode(webhook_sha256);
    }
    if (!raw) {
      raw = crypto::base64_decode(webhook_sha256);
    }
    if (raw && raw->size() == 32) {
      const std::string hex = crypto::hex_encode(*raw);
      auto found = storage_.find(hex);
      if (!found) {
        return Unexpected(found.error());
      }
      if (*found) {
        Stored out{**found, hex, -1, "", true, 0, std::nullopt, ""};
        if (found->value().starts_with("file://")) {
          const std::string path = found->value().substr(std::string("file://").size());
          std::error_code ec;
          const auto size = fs::file_size(path, ec);
          out.size = ec ? -1 : static_cast<int64_t>(size);
          transcribe_into(out, type, path, "");
        } else if (type == "audio" && !options_.transcribe_url.empty()) {
          out.transcript_error = "stored earlier in object storage; not transcribed again";
        }
        return out;
      }
    }
  }
  Stored out;
  for (int lookup = 1; lookup <= 2; ++lookup) {
    auto info = resolve(media_id);
    out.url_fetches = lookup;
    if (!info) {
      return Unexpected(info.error());
    }
    if (info->file_size > limit) {
      return Unexpected(Error::permanent(type + " of " + std::to_string(info->file_size) +
                                         " bytes is over the limit of " + std::to_string(limit)));
    }
    const std::string temp = storage_.temp_dir() + "/" + crypto::random_hex(8) + ".part";
    long status = 0;
    int64_t size = 0;
    auto digest = download(info->url, temp, limit, status, size);
    if (!digest || status != 200) {
      std::error_code ec;
      fs::remove(temp, ec);
      if (digest && (status == 401 || status == 404) && lookup == 1) {
        continue;  // the URL expired (Meta: 5 minutes): look the media id up again, once
      }
      if (!digest) {
        return Unexpected(digest.error());
      }
      return Unexpected(status >= 500 || status == 429
                            ? Error::transient("download: HTTP " + std::to_string(status))
                            : Error::permanent("download: HTTP " + std::to_string(status) +
                                               (lookup == 2 ? " after a fresh URL" : "")));
    }
    if (info->file_size >= 0 && size != info->file_size) {
      std::error_code ec;
      fs::remove(temp, ec);
      return Unexpected(Error::transient("download: got " + std::to_string(size) +
                                         " bytes, file_size says " +
                                         std::to_string(info->file_size)));
    }
    if (!digest_matches(*digest, info->sha256) || !digest_matches(*digest, webhook_sha256)) {
      std::error_code ec;
      fs::remove(temp, ec);
      return Unexpected(Error::transient("sha256 mismatch: the bytes do not match the published "
                                         "digest"));
    }
    out.sha256_hex = crypto::hex_encode(*digest);
    out.size = size;
    out.mime_type = info->mime_type;
    transcribe_into(out, type, temp, info->mime_type);
    auto uri = storage_.put(temp, out.sha256_hex, info->mime_type);
    if (!uri) {
      std::error_code ec;
      fs::remove(temp, ec);
      return Unexpected(uri.error());
    }
    out.uri = *uri;
    return out;
  }
  return Unexpected(Error::permanent("media URL expired twice"));
}

void Fetcher::transcribe_into(Stored& out, const std::string& type, const std::string& file,
                              const std::string& mime_type) {
  if (type != "audio" || options_.transcribe_url.empty()) {
    return;
  }
  auto t = transcribe(file, mime_type);
  if (t) {
    out.transcript = *t;
  } else {
    out.transcript_error = t.error().message;
  }
}

Result<std::string> Fetcher::transcribe(const std::string& file, const std::string& mime_type) {
  CurlPtr c;
  if (!prepare(c, options_)) {
    return Unexpected(Error::transient("curl_easy_init failed"));
  }
  std::unique_ptr<curl_mime, MimeDeleter> form(curl_mime_init(c.get()));
  curl_mimepart* part = curl_mime_addpart(form.get());
  curl_mime_name(part, "file");
  curl_mime_filedata(part, file.c_str());
  curl_mime_filename(part, "audio");
  if (!mime_type.empty()) {
    curl_mime_type(part, mime_type.c_str());
  }
  part = curl_mime_addpart(form.get());
  curl_mime_name(part, "model");
  curl_mime_data(part, options_.transcribe_model.c_str(), CURL_ZERO_TERMINATED);
  SlistPtr headers;
  if (!options_.transcribe_key.empty()) {
    headers.reset(curl_slist_append(nullptr, ("Authorization: Bearer " + options_.transcribe_key).c_str()));
  }
  std::string body;
  curl_easy_setopt(c.get(), CURLOPT_URL, options_.transcribe_url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_MIMEPOST, form.get());
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(c.get());
  if (rc != CURLE_OK) {
    return Unexpected(Error::transient(std::string("transcription: ") + curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (status != 200 || !j.is_object() || !j.contains("text") || !j["text"].is_string()) {
    return Unexpected(Error::transient("transcription: HTTP " + std::to_string(status)));
  }
  return j["text"].get<std::string>();
}

// ---------------------------------------------------------------------------------------------

namespace {
nlohmann::json base_record(const WebhookEvent& e, const std::string& media_id, int attempts,
                           int64_t now_ms) {
  return {{"message_id", e.message_id},
          {"event_id", e.event_id},
          {"conversation_key", e.conversation_key},
          {"phone_number_id", e.phone_number_id},
          {"type", e.type},
          {"media_id", media_id},
          {"attempts", attempts},
          {"at_ms", now_ms}};
}
}  // namespace

nlohmann::json stored_record(const WebhookEvent& e, const std::string& media_id,
                             const Stored& s, int attempts, int64_t now_ms) {
  auto j = base_record(e, media_id, attempts, now_ms);
  j["status"] = "stored";
  j["storage_uri"] = s.uri;
  j["sha256"] = s.sha256_hex;
  j["size"] = s.size;
  j["mime_type"] = s.mime_type.empty() ? json::str(e.raw.value(e.type, nlohmann::json::object()),
                                                   "mime_type")
                                       : s.mime_type;
  j["deduplicated"] = s.deduplicated;
  if (s.transcript) {
    j["transcript"] = *s.transcript;
  }
  if (!s.transcript_error.empty()) {
    j["transcript_error"] = s.transcript_error;
  }
  return j;
}

nlohmann::json failed_record(const WebhookEvent& e, const std::string& media_id, const Error& why,
                             int attempts, int64_t now_ms) {
  auto j = base_record(e, media_id, attempts, now_ms);
  j["status"] = "failed";
  j["reason"] = why.message;
  j["error_class"] = to_string(why.kind);
  return j;
}

}  // namespace wafleet::media
