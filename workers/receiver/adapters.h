#pragma once
// The receiver's ports on real infrastructure: Kafka (EventSink) and SNS certificates over
// HTTPS (CertStore). The Redis DedupStore is in dedupe.h.
#include <atomic>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "common/http_client.h"
#include "common/kafka.h"
#include "workers/receiver/receiver.h"

namespace wafleet::receiver {

// Kafka as the receiver's EventSink: done after every record's delivery report.
class KafkaSink : public EventSink {
 public:
  explicit KafkaSink(kafka::Producer& producer) : producer_(producer) {}
  void publish(std::vector<OutRecord> records,
               std::function<void(Status)> done) override {
    struct Pending {
      std::atomic<size_t> left;
      std::mutex mu;
      std::optional<Error> first_error;
      std::function<void(Status)> done;
    };
    if (records.empty()) {
      return done(Status{});
    }
    if (records.size() == 1) {  // the usual webhook: one event, no bookkeeping to share
      const OutRecord& r = records.front();
      producer_.produce(r.topic, r.key, r.value, r.headers,
                        [done = std::move(done)](const Status& s, int32_t, int64_t) { done(s); });
      return;
    }
    auto p = std::make_shared<Pending>();
    p->left = records.size();
    p->done = std::move(done);
    for (auto& r : records) {
      producer_.produce(r.topic, r.key, r.value, r.headers,
                        [p](const Status& s, int32_t, int64_t) {
                          if (!s) {
                            std::lock_guard lock(p->mu);
                            if (!p->first_error) {
                              p->first_error = s.error();
                            }
                          }
                          if (p->left.fetch_sub(1) == 1) {
                            if (p->first_error) {
                              p->done(Unexpected(*p->first_error));
                            } else {
                              p->done(Status{});
                            }
                          }
                        });
    }
  }

 private:
  kafka::Producer& producer_;
};

// SNS certificates: a configured file, or fetched from the (allow-listed) URL and cached.
class SnsCerts : public CertStore {
 public:
  explicit SnsCerts(std::string pem_file) : pem_file_(std::move(pem_file)) {}
  Result<std::string> certificate(const std::string& url) override {
    std::lock_guard lock(mu_);
    if (!pem_file_.empty()) {
      if (file_pem_.empty()) {
        std::ifstream in(pem_file_);
        std::stringstream ss;
        ss << in.rdbuf();
        file_pem_ = ss.str();
      }
      if (file_pem_.empty()) {
        return Unexpected(Error::permanent("cannot read " + pem_file_));
      }
      return file_pem_;
    }
    if (auto it = cache_.find(url); it != cache_.end()) {
      return it->second;
    }
    auto res = http::fetch("GET", url, {}, "", std::chrono::seconds(5));
    if (!res) {
      return Unexpected(res.error());
    }
    if (res->status != 200 || res->body.find("BEGIN CERTIFICATE") == std::string::npos) {
      return Unexpected(Error::transient("certificate fetch answered " +
                                         std::to_string(res->status)));
    }
    cache_[url] = res->body;
    return res->body;
  }
  Status confirm_subscription(const std::string& url) override {
    auto res = http::fetch("GET", url, {}, "", std::chrono::seconds(5));
    if (!res) {
      return Unexpected(res.error());
    }
    if (res->status != 200) {
      return Unexpected(Error::transient("SubscribeURL answered " + std::to_string(res->status)));
    }
    return {};
  }

 private:
  std::mutex mu_;
  std::string pem_file_;
  std::string file_pem_;
  std::unordered_map<std::string, std::string> cache_;
};

}  // namespace wafleet::receiver
