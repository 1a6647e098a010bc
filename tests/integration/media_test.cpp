// The media fetcher against the Graph API emulator over real HTTP: every media type, every
// fault class, content-addressed storage and transcription.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/crypto.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "tests/support/services.h"
#include "workers/graph-emulator/emulator.h"
#include "workers/media/media.h"

namespace wafleet::media {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class MediaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    http::ServerOptions so;
    so.threads = 2;
    server_ = std::make_unique<http::Server>(so, [this](http::Request&& req, http::Responder r) {
      emulator_.handle(std::move(req), std::move(r));
    });
    ASSERT_TRUE(server_->start().has_value());
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
    emulator_.set_public_base(base_);
    dir_ = test::temp_dir("wafleet-media");
    storage_ = std::make_unique<LocalStorage>(dir_);
    Options o;
    o.graph_base = base_;
    o.access_token = "emulator-token";
    o.request_timeout = std::chrono::milliseconds(3000);
    o.transcribe_url = base_ + "/v1/audio/transcriptions";
    fetcher_ = std::make_unique<Fetcher>(o, *storage_);
  }
  void TearDown() override { server_->stop(); }

  nlohmann::json add(const std::string& id, const std::string& mime, size_t size,
                     uint64_t seed = 1, const std::string& transcript = "") {
    std::string bytes(size, '\0');
    for (size_t i = 0; i < size; ++i) {
      bytes[i] = static_cast<char>((i * 31 + seed * 7) & 0xff);
    }
    bytes_[id] = bytes;
    return emulator_.add_media({id, mime, bytes, "", transcript});
  }
  int calls_to(const std::string& prefix) {
    int n = 0;
    for (const auto& c : emulator_.calls()) {
      if (c["path"].get<std::string>().rfind(prefix, 0) == 0) {
        ++n;
      }
    }
    return n;
  }
  std::string path_of(const Stored& s) { return s.uri.substr(std::string("file://").size()); }

  emulator::GraphEmulator emulator_{emulator::Options{}};
  std::unique_ptr<http::Server> server_;
  std::string base_;
  std::string dir_;
  std::unique_ptr<LocalStorage> storage_;
  std::unique_ptr<Fetcher> fetcher_;
  std::map<std::string, std::string> bytes_;
};

TEST_F(MediaTest, EveryMediaTypeIsDownloadedVerifiedAndStoredByContent) {
  const std::vector<std::pair<std::string, std::string>> types = {
      {"image", "image/jpeg"}, {"audio", "audio/ogg"}, {"video", "video/mp4"},
      {"document", "application/pdf"}, {"sticker", "image/webp"}};
  uint64_t seed = 1;
  for (const auto& [type, mime] : types) {
    const std::string id = "media-" + type;
    auto desc = add(id, mime, 50000, seed++);
    // The webhook carries the digest in base64.
    auto s = fetcher_->fetch(type, id, desc["sha256_base64"]);
    ASSERT_TRUE(s.has_value()) << type << ": " << s.error().message;
    EXPECT_EQ(s->sha256_hex, desc["sha256_hex"]);
    EXPECT_EQ(s->size, 50000);
    EXPECT_EQ(s->mime_type, mime);
    EXPECT_FALSE(s->deduplicated);
    EXPECT_NE(s->uri.find("/sha256/"), std::string::npos);
    EXPECT_EQ(read_file(path_of(*s)), bytes_[id]) << type;
  }
  // Every Graph call carried the token (the transcription endpoint is not Meta's); nothing is
  // left in the temp directory; the voice note was transcribed on the way.
  int transcriptions = 0;
  for (const auto& c : emulator_.calls()) {
    if (c["path"].get<std::string>().starts_with("/v1/audio/")) {
      ++transcriptions;
      continue;
    }
    EXPECT_TRUE(c["authorized"].get<bool>()) << c.dump();
  }
  EXPECT_EQ(transcriptions, 1);
  EXPECT_TRUE(std::filesystem::is_empty(storage_->temp_dir()));
}

TEST_F(MediaTest, TheSameBytesAreStoredOnceAndNotDownloadedAgain) {
  auto desc = add("photo-1", "image/jpeg", 20000);
  emulator_.add_media({"photo-2", "image/jpeg", bytes_["photo-1"], "", ""});
  auto first = fetcher_->fetch("image", "photo-1", desc["sha256_base64"]);
  ASSERT_TRUE(first.has_value());
  const int downloads = calls_to("/media/");
  auto second = fetcher_->fetch("image", "photo-2", desc["sha256_base64"]);
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(second->deduplicated);
  EXPECT_EQ(second->uri, first->uri);
  EXPECT_EQ(calls_to("/media/"), downloads) << "downloaded again";
}

TEST_F(MediaTest, AnExpiredUrlIsResolvedAgainOnce) {
  auto desc = add("m-exp", "image/png", 1000);
  emulator::Fault f;
  f.endpoint = "media";
  f.expired_url = true;
  emulator_.add_fault(f);
  auto s = fetcher_->fetch("image", "m-exp", "");
  ASSERT_TRUE(s.has_value()) << s.error().message;
  EXPECT_EQ(s->url_fetches, 2);
  EXPECT_EQ(calls_to("/v22.0/m-exp"), 2);
}

TEST_F(MediaTest, AWrongChecksumIsTransientAndNothingIsStored) {
  add("m-sum", "image/jpeg", 1000);
  emulator::Fault f;
  f.endpoint = "media";
  f.wrong_checksum = true;
  emulator_.add_fault(f);
  auto s = fetcher_->fetch("image", "m-sum", "");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind, ErrorKind::kTransient);
  EXPECT_NE(s.error().message.find("sha256"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/sha256"));
  auto again = fetcher_->fetch("image", "m-sum", "");  // the fault was one-shot
  EXPECT_TRUE(again.has_value());
}

TEST_F(MediaTest, OversizeFilesAreRefusedPermanently) {
  add("big", "image/jpeg", (5 << 20) + 1);
  auto s = fetcher_->fetch("image", "big", "");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind, ErrorKind::kPermanent);
  EXPECT_EQ(calls_to("/media/"), 0) << "downloaded although file_size was over the limit";
  // A server sending more bytes than it announced is cut off at the limit.
  add("liar", "image/jpeg", (5 << 20) - 10);
  emulator::Fault f;
  f.endpoint = "download";
  f.oversize = true;
  emulator_.add_fault(f);
  auto liar = fetcher_->fetch("image", "liar", "");
  ASSERT_FALSE(liar.has_value());
  EXPECT_EQ(liar.error().kind, ErrorKind::kPermanent);
  EXPECT_TRUE(std::filesystem::is_empty(storage_->temp_dir()));
}

TEST_F(MediaTest, GraphErrorsAreClassifiedByCode) {
  add("m-err", "image/jpeg", 100);
  struct Case {
    int code;
    int http;
    ErrorKind kind;
  };
  for (const auto& c : {Case{130429, 400, ErrorKind::kTransient}, Case{0, 503, ErrorKind::kTransient},
                        Case{131026, 400, ErrorKind::kPermanent},
                        Case{190, 401, ErrorKind::kPermanent}}) {
    emulator::Fault f;
    f.endpoint = "media";
    f.error_code = c.code;
    f.http_status = c.http;
    emulator_.add_fault(f);
    auto s = fetcher_->fetch("image", "m-err", "");
    ASSERT_FALSE(s.has_value()) << c.code;
    EXPECT_EQ(s.error().kind, c.kind) << c.code << " " << s.error().message;
  }
  auto unknown = fetcher_->fetch("image", "no-such-media", "");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().kind, ErrorKind::kPermanent);
  emulator::Fault down;
  down.endpoint = "download";
  down.http_status = 502;
  emulator_.add_fault(down);
  auto d = fetcher_->fetch("image", "m-err", "");
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().kind, ErrorKind::kTransient);
}

TEST_F(MediaTest, ASlowDownloadTimesOutAsTransient) {
  add("slow", "audio/ogg", 100);
  emulator::Fault f;
  f.endpoint = "download";
  f.latency_ms = 4000;  // the fetcher's request timeout is 3 s
  emulator_.add_fault(f);
  auto s = fetcher_->fetch("audio", "slow", "");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind, ErrorKind::kTransient);
}

TEST_F(MediaTest, AudioIsTranscribedThroughTheOpenAiCompatibleEndpoint) {
  add("voice", "audio/ogg", 3000, 5, "I was charged twice for order 5521");
  auto s = fetcher_->fetch("audio", "voice", "");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->transcript, "I was charged twice for order 5521");  // done while storing
  auto text = fetcher_->transcribe(path_of(*s), s->mime_type);
  ASSERT_TRUE(text.has_value()) << text.error().message;
  EXPECT_EQ(*text, "I was charged twice for order 5521");
  emulator::Fault f;
  f.endpoint = "transcriptions";
  f.http_status = 500;
  emulator_.add_fault(f);
  EXPECT_FALSE(fetcher_->transcribe(path_of(*s), s->mime_type).has_value());
}

// S3-compatible storage against s3rver (npm), a real S3-protocol server.
// scripts/s3rver fetches it; WAFLEET_S3RVER overrides where it is.
std::string s3rver_path() {
  if (const char* p = std::getenv("WAFLEET_S3RVER")) {
    return p;
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.cache/wafleet/s3rver/node_modules/.bin/s3rver";
}

// (s3rver accepts any signature, so this proves the S3 protocol path, not SigV4 itself: the
// signing is libcurl's CURLOPT_AWS_SIGV4.)
TEST_F(MediaTest, S3StorageUploadsObjectsOnceByContent) {
  ASSERT_TRUE(std::filesystem::exists(s3rver_path()))
      << "s3rver not installed: run scripts/s3rver fetch (scripts/test does)";
  const uint16_t port = test::free_port();
  test::Process s3(s3rver_path(),
                   {"-d", dir_ + "/s3", "-p", std::to_string(port), "-a", "127.0.0.1",
                    "--configure-bucket", "wafleet-media", "--silent"},
                   {}, dir_ + "/s3rver.log");
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(test::eventually([&] {
    auto r = http::fetch("GET", endpoint, {}, "", std::chrono::seconds(1));
    return r.has_value();
  }, std::chrono::seconds(20)));
  S3Options so;
  so.endpoint = endpoint;
  so.bucket = "wafleet-media";
  so.access_key = "S3RVER";
  so.secret_key = "S3RVER";
  so.prefix = "media/";
  so.staging_dir = dir_ + "/staging";
  S3Storage s3store(so);
  Options o;
  o.graph_base = base_;
  o.access_token = "emulator-token";
  Fetcher fetcher(o, s3store);
  auto desc = add("s3-photo", "image/jpeg", 300000, 9);
  auto s = fetcher.fetch("image", "s3-photo", desc["sha256_base64"]);
  ASSERT_TRUE(s.has_value()) << s.error().message;
  const std::string key = "media/sha256/" + s->sha256_hex.substr(0, 2) + "/" + s->sha256_hex;
  EXPECT_EQ(s->uri, "s3://wafleet-media/" + key);
  EXPECT_TRUE(std::filesystem::is_empty(so.staging_dir)) << "staged file left behind";
  // Read it back with curl's own SigV4: the same bytes.
  std::string out;
  ASSERT_EQ(test::run_command("curl -sS -f --aws-sigv4 aws:amz:us-east-1:s3 --user S3RVER:S3RVER "
                              "-H 'x-amz-content-sha256: "
                              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' -o " +
                                  dir_ + "/back " + endpoint + "/wafleet-media/" + key,
                              out),
            0)
      << out;
  EXPECT_EQ(read_file(dir_ + "/back"), bytes_["s3-photo"]);
  // The same bytes again: found by HEAD, not downloaded, not uploaded.
  const int downloads = calls_to("/media/");
  auto again = fetcher.fetch("image", "s3-photo", desc["sha256_base64"]);
  ASSERT_TRUE(again.has_value()) << again.error().message;
  EXPECT_TRUE(again->deduplicated);
  EXPECT_EQ(again->uri, s->uri);
  EXPECT_EQ(calls_to("/media/"), downloads);
  // A named object beside the media (bulk reports): reports/bulk/<job>.csv under the prefix.
  auto report = write_named("reports/bulk/bj_0123456789abcdef.csv", "job_id,line\nbj,2\n", "text/csv",
                            dir_ + "/unused", &so);
  ASSERT_TRUE(report.has_value()) << report.error().message;
  EXPECT_EQ(*report, "s3://wafleet-media/media/reports/bulk/bj_0123456789abcdef.csv");
  ASSERT_EQ(test::run_command("curl -sS -f --aws-sigv4 aws:amz:us-east-1:s3 --user S3RVER:S3RVER "
                              "-H 'x-amz-content-sha256: "
                              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' -o " +
                                  dir_ + "/report " + endpoint +
                                  "/wafleet-media/media/reports/bulk/bj_0123456789abcdef.csv",
                              out),
            0)
      << out;
  EXPECT_EQ(read_file(dir_ + "/report"), "job_id,line\nbj,2\n");
  EXPECT_TRUE(std::filesystem::is_empty(so.staging_dir));
  // Object storage down: a transient failure (retried), and the staged file is not left behind.
  s3.stop();
  add("s3-other", "image/jpeg", 1000, 10);
  auto down = fetcher.fetch("image", "s3-other", "");
  ASSERT_FALSE(down.has_value());
  EXPECT_EQ(down.error().kind, ErrorKind::kTransient) << down.error().message;
  EXPECT_TRUE(std::filesystem::is_empty(so.staging_dir));
}

TEST(MediaNamed, LocalObjectsAreWrittenWholeUnderTheirName) {
  const std::string root = test::temp_dir("wafleet-named");
  auto uri = write_named("reports/bulk/x.json", "{\"a\": 1}\n", "application/json", root, nullptr);
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(*uri, "file://" + std::filesystem::absolute(root + "/reports/bulk/x.json").string());
  std::ifstream in(root + "/reports/bulk/x.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "{\"a\": 1}\n");
  EXPECT_FALSE(std::filesystem::exists(root + "/reports/bulk/x.json.part"));
  // Written again (a report made anew): replaced, not appended.
  ASSERT_TRUE(write_named("reports/bulk/x.json", "{}\n", "application/json", root, nullptr));
  std::ifstream again(root + "/reports/bulk/x.json");
  std::string text2((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text2, "{}\n");
}

TEST(MediaDigest, HexAndBase64AreBothAccepted) {
  const std::string raw = crypto::sha256_raw("hello");
  EXPECT_TRUE(digest_matches(raw, crypto::hex_encode(raw)));
  EXPECT_TRUE(digest_matches(raw, crypto::base64_encode(raw)));
  EXPECT_FALSE(digest_matches(raw, crypto::sha256_hex("other")));
  EXPECT_TRUE(digest_matches(raw, ""));
}

}  // namespace
}  // namespace wafleet::media
