#include "workers/media/worker.h"

#include <filesystem>

#include <prometheus/counter.h>

#include "common/clock.h"
#include "common/json_util.h"
#include "common/log.h"
#include "topics/topics.h"

namespace wafleet::media {

namespace {

std::vector<config::Option> own_options() {
  std::vector<config::Option> opts = {
      {"storage", "local", "local | s3"},
      {"storage-dir", "./wafleet-media", "local store (content-addressed); with s3: the staging dir"},
      {"max-image-bytes", "5242880", "largest image stored (Meta: 5 MB)"},
      {"max-audio-bytes", "16777216", "largest audio stored (Meta: 16 MB)"},
      {"max-video-bytes", "16777216", "largest video stored (Meta: 16 MB)"},
      {"max-document-bytes", "104857600", "largest document stored (Meta: 100 MB)"},
      {"max-sticker-bytes", "512000", "largest sticker stored (Meta: 500 KB animated)"},
      {"attempts", "5", "tries per media item before it is marked failed (transient errors)"},
      {"backoff-ms", "500", "first retry delay, doubled per try up to 8 s"},
      {"request-timeout-ms", "120000", "longest one download may take"},
      {"transcribe-url", "", "OpenAI-compatible /v1/audio/transcriptions URL; empty: off"},
      {"transcribe-key", "", "Bearer key for the transcription endpoint", true},
      {"transcribe-model", "whisper-1", "model name sent with each transcription"},
  };
  auto graph = worker::graph_api_options();
  opts.insert(opts.begin(), graph.begin(), graph.end());
  auto s3 = s3_options();
  opts.insert(opts.end(), s3.begin(), s3.end());
  return opts;
}

struct MediaRef {
  WebhookEvent event;
  std::string media_id;
  std::string webhook_sha256;
};

// The inbound event and its media reference; nullopt for records this worker ignores.
Result<std::optional<MediaRef>> decode(const kafka::Record& r) {
  auto doc = json::parse(r.value);
  if (doc.is_discarded()) {
    return Unexpected(Error::invalid("value is not JSON"));
  }
  auto e = WebhookEvent::from_json(doc);
  if (!e) {
    return Unexpected(Error::invalid(e.error()));
  }
  if (e->kind != EventKind::kMessage || !is_media(e->type)) {
    return std::optional<MediaRef>();
  }
  const auto& obj = e->raw.value(e->type, nlohmann::json::object());
  MediaRef ref{std::move(e).value(), json::str(obj, "id"), json::str(obj, "sha256")};
  return std::optional<MediaRef>(std::move(ref));
}

// One download per record: resolve, fetch, verify, store, then the wa.media record.
class MediaCore : public worker::LoopCore {
 public:
  MediaCore(worker::Context& ctx, const WorkerConfig& c)
      : LoopCore([this](const kafka::Record& r) { return handle(r); },
                 [this](const kafka::Record& r, const Error& e, int n) { return give_up(r, e, n); },
                 [c](kafka::LoopOptions& lo) {
                   lo.max_attempts = c.attempts;
                   lo.backoff_initial = c.backoff;
                   lo.backoff_max = std::chrono::milliseconds(8000);
                 }),
        producer_(ctx.producer()),
        storage_(c.s3 ? std::unique_ptr<Storage>(std::make_unique<S3Storage>(c.s3_options))
                      : std::make_unique<LocalStorage>(c.storage_dir)),
        fetcher_(c.fetch, *storage_),
        outcomes_(prometheus::BuildCounter()
                      .Name("wafleet_media_items_total")
                      .Help("media items by outcome")
                      .Register(ctx.metrics())),
        stored_(outcomes_.Add({{"result", "stored"}})),
        deduplicated_(outcomes_.Add({{"result", "already_stored"}})),
        failed_(outcomes_.Add({{"result", "failed"}})),
        bytes_(prometheus::BuildCounter()
                   .Name("wafleet_media_downloaded_bytes_total")
                   .Help("bytes downloaded and stored")
                   .Register(ctx.metrics())
                   .Add({})) {}

 private:
  Status handle(const kafka::Record& r) {
    auto ref = decode(r);
    if (!ref) {
      // Not a webhook event at all: the aggregator dead-letters it (one dead letter per poison
      // record, so one replay brings it back once); nothing here to download.
      log::warn("media.undecodable",
                {{"partition", r.partition}, {"offset", r.offset}, {"reason", ref.error().message}});
      return {};
    }
    if (!*ref) {
      return {};
    }
    const MediaRef& m = **ref;
    if (m.media_id.empty()) {
      return Unexpected(Error::invalid(m.event.type + " message without a media id"));
    }
    auto stored = fetcher_.fetch(m.event.type, m.media_id, m.webhook_sha256);
    if (!stored) {
      log::warn("media.attempt_failed", {{"message_id", m.event.message_id},
                                         {"media_id", m.media_id},
                                         {"error_class", to_string(stored.error().kind)},
                                         {"reason", stored.error().message}});
      return Unexpected(stored.error());
    }
    const auto record = stored_record(m.event, m.media_id, *stored, 1, wall_clock_ms());
    if (auto p = kafka::produce_and_wait(producer_, topics::kMedia, r.key, record.dump(),
                                         {{"message_id", m.event.message_id}});
        !p) {
      return Unexpected(Error::fatal("cannot produce to " + std::string(topics::kMedia) + ": " +
                                     p.error().message));
    }
    (stored->deduplicated ? deduplicated_ : stored_).Increment();
    if (!stored->deduplicated) {
      bytes_.Increment(static_cast<double>(stored->size));
    }
    log::info("media.stored", {{"message_id", m.event.message_id},
                               {"type", m.event.type},
                               {"size", stored->size},
                               {"deduplicated", stored->deduplicated},
                               {"uri", stored->uri}});
    return {};
  }

  // After the last attempt: a `failed` record, so the aggregator marks the item instead of
  // waiting out its media wait; then the loop writes the dead letter for a replay.
  Status give_up(const kafka::Record& r, const Error& e, int attempts) {
    auto ref = decode(r);
    if (!ref || !*ref) {
      return {};  // undecodable: the dead letter alone says it
    }
    failed_.Increment();
    const auto record = failed_record((*ref)->event, (*ref)->media_id, e, attempts, wall_clock_ms());
    return kafka::produce_and_wait(producer_, topics::kMedia, r.key, record.dump(),
                                   {{"message_id", (*ref)->event.message_id}});
  }

  kafka::Producer& producer_;
  std::unique_ptr<Storage> storage_;
  Fetcher fetcher_;
  prometheus::Family<prometheus::Counter>& outcomes_;
  prometheus::Counter& stored_;
  prometheus::Counter& deduplicated_;
  prometheus::Counter& failed_;
  prometheus::Counter& bytes_;
};

}  // namespace

std::vector<config::Option> s3_options() {
  return {
      {"s3-endpoint", "", "S3-compatible endpoint, e.g. https://s3.eu-west-1.amazonaws.com"},
      {"s3-bucket", "", "bucket"},
      {"s3-region", "us-east-1", "region for SigV4"},
      {"s3-access-key", "", "access key id", true},
      {"s3-secret-key", "", "secret access key", true},
      {"s3-prefix", "", "key prefix, e.g. media/"},
  };
}

S3Options parse_s3(const config::Settings& s, const std::string& staging_dir) {
  S3Options o;
  o.endpoint = s.get("s3-endpoint");
  o.bucket = s.get("s3-bucket");
  o.region = s.get("s3-region");
  o.access_key = s.get("s3-access-key");
  o.secret_key = s.get("s3-secret-key");
  o.prefix = s.get("s3-prefix");
  o.staging_dir = staging_dir;
  return o;
}

WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors) {
  WorkerConfig c;
  c.fetch.graph_base = s.get("graph-base");
  c.fetch.graph_version = s.get("graph-version");
  c.fetch.access_token = s.get("access-token");
  for (const char* type : {"image", "audio", "video", "document", "sticker"}) {
    c.fetch.max_bytes[type] = s.get_int(std::string("max-") + type + "-bytes", errors);
  }
  c.fetch.request_timeout = std::chrono::milliseconds(s.get_int("request-timeout-ms", errors));
  c.fetch.transcribe_url = s.get("transcribe-url");
  c.fetch.transcribe_key = s.get("transcribe-key");
  c.fetch.transcribe_model = s.get("transcribe-model");
  c.attempts = static_cast<int>(s.get_int("attempts", errors));
  c.backoff = std::chrono::milliseconds(s.get_int("backoff-ms", errors));
  if (c.attempts < 1) {
    errors.push_back("WAFLEET_ATTEMPTS: must be at least 1");
  }
  const std::string storage = s.get("storage");
  if (storage != "local" && storage != "s3") {
    errors.push_back("WAFLEET_STORAGE: expected local or s3, got '" + storage + "'");
  }
  c.s3 = storage == "s3";
  c.storage_dir = s.get("storage-dir");
  if (c.s3) {
    for (const char* name : {"s3-endpoint", "s3-bucket", "s3-access-key", "s3-secret-key"}) {
      if (s.get(name).empty()) {
        errors.push_back(config::env_name(name) + ": required with WAFLEET_STORAGE=s3");
      }
    }
    c.s3_options = parse_s3(s, c.storage_dir);
  }
  return c;
}

static worker::Plan make_plan(const config::Settings& s, std::vector<std::string>& errors) {
  const WorkerConfig c = parse_config(s, errors);
  worker::Plan plan;
  plan.wiring.consumes = {topics::kInbound};
  plan.wiring.produces = {topics::kMedia};
  plan.wiring.redis = false;
  // A download may legitimately take up to the request timeout.
  plan.wiring.max_poll_gap = c.fetch.request_timeout * 2 + std::chrono::seconds(30);
  plan.started = {{"storage", c.s3 ? "s3://" + c.s3_options.bucket + "/" + c.s3_options.prefix
                                   : std::filesystem::absolute(c.storage_dir).string()},
                  {"transcription", !c.fetch.transcribe_url.empty()}};
  plan.build = worker::build<MediaCore>(c);
  return plan;
}

worker::Spec spec() { return {"media", "wafleet-media", own_options(), make_plan}; }

}  // namespace wafleet::media
