#pragma once
// The receiver's core: HTTP request in, Kafka records out, answer after they are durable.
// Pure logic over three ports (EventSink = Kafka, DedupStore = Redis, CertStore = SNS
// certificates), so unit tests drive it with fakes and the binary wires the real adapters.
//
// Threading: handle() runs on HTTP I/O threads; port callbacks may arrive on any thread. The
// Receiver keeps no per-request state outside the request's own shared context.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/error.h"
#include "common/http_server.h"
#include "common/kafka.h"
#include "topics/webhook_event.h"

namespace wafleet::receiver {

struct OutRecord {
  std::string topic;
  std::string key;
  std::string value;
  kafka::Headers headers;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // done runs once: ok after every record was acknowledged, else the first error.
  virtual void publish(std::vector<OutRecord> records, std::function<void(Status)> done) = 0;
};

enum class ClaimState { kClaimed, kAlreadyDone, kInFlightElsewhere };

class DedupStore {
 public:
  virtual ~DedupStore() = default;
  // Atomically claims each key for this request (a short-lived "pending" mark owned by token).
  virtual void claim(std::vector<std::string> keys, std::string token,
                     std::function<void(Result<std::vector<ClaimState>>)> done) = 0;
  // Turns our pending marks into "done" for the dedupe TTL.
  virtual void confirm(std::vector<std::string> keys, std::string token,
                       std::function<void(Status)> done) = 0;
  // Deletes our pending marks, so Meta's retry is not mistaken for a duplicate.
  virtual void release(std::vector<std::string> keys, std::string token,
                       std::function<void(Status)> done) = 0;
};

class CertStore {
 public:
  virtual ~CertStore() = default;
  // PEM certificate for an SNS SigningCertURL (already checked against the allow-list).
  virtual Result<std::string> certificate(const std::string& url) = 0;
  // Visits a SubscribeURL (already checked) to confirm an SNS subscription.
  virtual Status confirm_subscription(const std::string& url) = 0;
};

struct ReceiverOptions {
  std::vector<std::string> app_secrets;  // several for rotation
  std::string verify_token;
  bool eum_enabled = true;
  bool eum_allow_unsigned_raw = false;  // raw delivery carries no signature at all
  std::vector<std::string> eum_topic_arns;  // allow-list; empty accepts any verified topic
  bool eum_auto_confirm = true;
  std::string sns_host_regex = R"(^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$)";
  bool sns_allow_http = false;  // tests only
  int64_t pending_claim_ttl_ms = 30000;      // longer than the producer's delivery timeout
  int64_t dedupe_ttl_ms = 48LL * 3600 * 1000;
  // Per inbound message, a request on wa.outbound (produced with the event, before the 200):
  // "off", "read" (mark as read: blue ticks) or "typing" (read + typing indicator).
  std::string receipts = "off";
};

class Receiver {
 public:
  Receiver(ReceiverOptions options, EventSink& sink, DedupStore& dedupe, CertStore* certs,
           prometheus::Registry& registry, std::function<int64_t()> now_ms);

  void handle(http::Request&& req, http::Responder respond);

  // Dedupe key namespace in Redis.
  static std::string dedupe_redis_key(const std::string& dedupe_key) {
    return "rcv:dedupe:" + dedupe_key;
  }
  static OutRecord to_record(const WebhookEvent& e);
  // The wa.outbound request for a read receipt (type "read" or "typing") of a message event.
  static OutRecord receipt_record(const WebhookEvent& e, const std::string& type);

 private:
  struct Metrics;
  void handle_verify(const http::Request& req, const http::Responder& respond);
  void handle_meta(http::Request&& req, http::Responder respond);
  void handle_eum(http::Request&& req, http::Responder respond);
  void ingest(std::vector<WebhookEvent> events, const http::Request& req, http::Responder respond,
              const std::string& path);
  void dead_letter(const http::Request& req, const std::string& path, const std::string& reason,
                   const std::string& trace_id, http::Responder respond);
  void finish(const http::Request& req, const http::Responder& respond, unsigned status,
              const std::string& body, const std::string& path, const std::string& outcome);

  ReceiverOptions options_;
  EventSink& sink_;
  DedupStore& dedupe_;
  CertStore* certs_;
  std::function<int64_t()> now_ms_;
  std::shared_ptr<Metrics> metrics_;
};

// Trace id from a W3C traceparent header, or a new one.
std::string trace_id_from(const http::Request& req);
std::string make_traceparent(const std::string& trace_id);

}  // namespace wafleet::receiver
