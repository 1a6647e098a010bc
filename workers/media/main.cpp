// wafleet-media: wiring only. Logic in media.cpp; see README.md here.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "common/admin.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/consumer_loop.h"
#include "common/json_util.h"
#include "common/kafka.h"
#include "common/log.h"
#include "common/runtime.h"
#include "common/worker.h"
#include "topics/topics.h"
#include "workers/media/media.h"

using namespace wafleet;

namespace {

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
  if (e->kind != EventKind::kMessage || !media::is_media(e->type)) {
    return std::optional<MediaRef>();
  }
  const auto& obj = e->raw.value(e->type, nlohmann::json::object());
  MediaRef ref{std::move(e).value(), json::str(obj, "id"), json::str(obj, "sha256")};
  return std::optional<MediaRef>(std::move(ref));
}

}  // namespace

int main(int argc, char** argv) {
  runtime::block_shutdown_signals();
  auto opts = config::common_options();
  for (auto& o : opts) {
    if (o.name == "group-id") {
      o.default_value = "wafleet-media";
    }
  }
  const std::vector<config::Option> mine = {
      {"access-token", "", "Graph API access token (Bearer)", true, true},
      {"graph-base", "https://graph.facebook.com", "Graph API base URL (the emulator in tests)"},
      {"graph-version", "v22.0", "Graph API version in request paths"},
      {"storage", "local", "local | s3"},
      {"storage-dir", "./wafleet-media", "local store (content-addressed); with s3: the staging dir"},
      {"s3-endpoint", "", "S3-compatible endpoint, e.g. https://s3.eu-west-1.amazonaws.com"},
      {"s3-bucket", "", "bucket"},
      {"s3-region", "us-east-1", "region for SigV4"},
      {"s3-access-key", "", "access key id", true},
      {"s3-secret-key", "", "secret access key", true},
      {"s3-prefix", "", "key prefix, e.g. media/"},
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
      {"admin-port-file", "", "write the bound admin port here"},
  };
  opts.insert(opts.end(), mine.begin(), mine.end());
  std::vector<std::string> errors;
  auto s = config::load_args("wafleet-media", opts, argc, argv, errors);
  media::Options mo;
  mo.graph_base = s.get("graph-base");
  mo.graph_version = s.get("graph-version");
  mo.access_token = s.get("access-token");
  for (const char* type : {"image", "audio", "video", "document", "sticker"}) {
    mo.max_bytes[type] = s.get_int(std::string("max-") + type + "-bytes", errors);
  }
  mo.request_timeout = std::chrono::milliseconds(s.get_int("request-timeout-ms", errors));
  mo.transcribe_url = s.get("transcribe-url");
  mo.transcribe_key = s.get("transcribe-key");
  mo.transcribe_model = s.get("transcribe-model");
  kafka::LoopOptions lo;
  lo.worker = "media";
  lo.group_id = s.get("group-id");
  lo.max_attempts = static_cast<int>(s.get_int("attempts", errors));
  lo.backoff_initial = std::chrono::milliseconds(s.get_int("backoff-ms", errors));
  lo.backoff_max = std::chrono::milliseconds(8000);
  if (lo.max_attempts < 1) {
    errors.push_back("WAFLEET_ATTEMPTS: must be at least 1");
  }
  if (s.get("storage") != "local" && s.get("storage") != "s3") {
    errors.push_back("WAFLEET_STORAGE: expected local or s3, got '" + s.get("storage") + "'");
  }
  if (s.get("storage") == "s3") {
    for (const char* name : {"s3-endpoint", "s3-bucket", "s3-access-key", "s3-secret-key"}) {
      if (s.get(name).empty()) {
        std::string env = std::string("WAFLEET_") + name;
        std::transform(env.begin(), env.end(), env.begin(),
                       [](char c) { return c == '-' ? '_' : static_cast<char>(std::toupper(c)); });
        errors.push_back(env + ": required with WAFLEET_STORAGE=s3");
      }
    }
  }
  auto admin = config::parse_host_port(s.get("admin-listen"), "admin-listen", errors);
  const bool clear_phones = s.get_bool("log-phone-numbers", errors);
  config::exit_if_invalid("wafleet-media", errors);
  log::init("media", s.get("log-level"), clear_phones);
  nlohmann::json effective;
  for (const auto& [k, v] : s.redacted()) {
    effective[k] = v;
  }
  log::info("worker.starting", {{"config", effective}});

  std::unique_ptr<media::Storage> storage;
  if (s.get("storage") == "s3") {
    media::S3Options so;
    so.endpoint = s.get("s3-endpoint");
    so.bucket = s.get("s3-bucket");
    so.region = s.get("s3-region");
    so.access_key = s.get("s3-access-key");
    so.secret_key = s.get("s3-secret-key");
    so.prefix = s.get("s3-prefix");
    so.staging_dir = s.get("storage-dir");
    storage = std::make_unique<media::S3Storage>(so);
  } else {
    storage = std::make_unique<media::LocalStorage>(s.get("storage-dir"));
  }
  media::Fetcher fetcher(mo, *storage);
  kafka::ClientConfig kc{s.get("kafka-brokers"), "wafleet-media", s.kafka_properties()};
  auto producer = kafka::Producer::create(kc);
  if (!producer) {
    std::cerr << "wafleet-media: " << producer.error().message << "\n";
    return 1;
  }
  if (auto w = (*producer)->warm_up(topics::kMedia, std::chrono::seconds(5)); !w) {
    log::warn("media.warm_up_failed", {{"reason", w.error().message}});
  }
  kafka::ConsumerOptions co;
  co.group_id = lo.group_id;
  co.topics = {topics::kInbound};
  auto consumer = kafka::Consumer::create(kc, co);
  if (!consumer) {
    std::cerr << "wafleet-media: " << consumer.error().message << "\n";
    return 1;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  auto& outcomes = prometheus::BuildCounter()
                       .Name("wafleet_media_items_total")
                       .Help("media items by outcome")
                       .Register(*registry);
  auto& stored_count = outcomes.Add({{"result", "stored"}});
  auto& dedup_count = outcomes.Add({{"result", "already_stored"}});
  auto& failed_count = outcomes.Add({{"result", "failed"}});
  auto& bytes = prometheus::BuildCounter()
                    .Name("wafleet_media_downloaded_bytes_total")
                    .Help("bytes downloaded and stored")
                    .Register(*registry)
                    .Add({});
  AdminServer admin_server(
      admin->host, admin->port, registry,
      [&] {
        // A download may legitimately take up to the request timeout.
        const auto idle = std::chrono::steady_clock::now() - (*consumer)->last_poll();
        return Probe{idle < mo.request_timeout * 2 + std::chrono::seconds(30),
                     "consumer loop stalled"};
      },
      [&] {
        if ((*consumer)->assignment().empty()) {
          return Probe{false, "no partitions assigned"};
        }
        return Probe{true, ""};
      });
  if (auto st = admin_server.start(); !st) {
    std::cerr << "wafleet-media: admin: " << st.error().message << "\n";
    return 1;
  }
  config::write_port_file(s.get("admin-port-file"), admin_server.port());

  kafka::ConsumerLoop loop(**consumer, **producer, lo);
  std::atomic<bool> signalled{false};
  std::thread signals([&] {
    runtime::wait_for_shutdown_signal();
    signalled = true;
    loop.stop();
  });
  log::info("worker.started", {{"group", lo.group_id},
                               {"storage", s.get("storage") == "s3"
                                               ? "s3://" + s.get("s3-bucket") + "/" + s.get("s3-prefix")
                                               : std::filesystem::absolute(s.get("storage-dir")).string()},
                               {"transcription", !mo.transcribe_url.empty()}});

  auto handle = [&](const kafka::Record& r) -> Status {
    auto ref = decode(r);
    if (!ref) {
      // Not a webhook event at all: the aggregator dead-letters it (one dead letter per poison
      // record, so one replay brings it back once); nothing here to download.
      log::warn("media.undecodable", {{"partition", r.partition},
                                      {"offset", r.offset},
                                      {"reason", ref.error().message}});
      return {};
    }
    if (!*ref) {
      return {};
    }
    const MediaRef& m = **ref;
    if (m.media_id.empty()) {
      return Unexpected(Error::invalid(m.event.type + " message without a media id"));
    }
    auto stored = fetcher.fetch(m.event.type, m.media_id, m.webhook_sha256);
    if (!stored) {
      log::warn("media.attempt_failed", {{"message_id", m.event.message_id},
                                         {"media_id", m.media_id},
                                         {"error_class", to_string(stored.error().kind)},
                                         {"reason", stored.error().message}});
      return Unexpected(stored.error());
    }
    const auto record = media::stored_record(m.event, m.media_id, *stored, 1, wall_clock_ms());
    if (auto p = kafka::produce_and_wait(**producer, topics::kMedia, r.key, record.dump(),
                                         {{"message_id", m.event.message_id}});
        !p) {
      return Unexpected(Error::fatal("cannot produce to " + std::string(topics::kMedia) + ": " +
                                     p.error().message));
    }
    (stored->deduplicated ? dedup_count : stored_count).Increment();
    if (!stored->deduplicated) {
      bytes.Increment(static_cast<double>(stored->size));
    }
    log::info("media.stored", {{"message_id", m.event.message_id},
                               {"type", m.event.type},
                               {"size", stored->size},
                               {"deduplicated", stored->deduplicated},
                               {"uri", stored->uri}});
    return {};
  };
  // After the last attempt: a `failed` record, so the aggregator marks the item instead of
  // waiting out its media wait; then the loop writes the dead letter for a replay.
  auto give_up = [&](const kafka::Record& r, const Error& e, int attempts) -> Status {
    auto ref = decode(r);
    if (!ref || !*ref) {
      return {};  // undecodable: the dead letter alone says it
    }
    failed_count.Increment();
    const auto record =
        media::failed_record((*ref)->event, (*ref)->media_id, e, attempts, wall_clock_ms());
    return kafka::produce_and_wait(**producer, topics::kMedia, r.key, record.dump(),
                                   {{"message_id", (*ref)->event.message_id}});
  };
  Status result = loop.run(handle, give_up);
  return worker::finish(result, **consumer, **producer, admin_server, signalled, signals);
}
