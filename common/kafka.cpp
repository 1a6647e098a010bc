#include "common/kafka.h"

#include <algorithm>
#include <map>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstring>

#include "common/log.h"

namespace wafleet::kafka {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const {
    if (p != nullptr) {
      F(p);
    }
  }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, Deleter<rd_kafka_conf_t, rd_kafka_conf_destroy>>;
using PartitionListPtr =
    std::unique_ptr<rd_kafka_topic_partition_list_t,
                    Deleter<rd_kafka_topic_partition_list_t, rd_kafka_topic_partition_list_destroy>>;
using MessagePtr =
    std::unique_ptr<rd_kafka_message_t, Deleter<rd_kafka_message_t, rd_kafka_message_destroy>>;
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, Deleter<rd_kafka_queue_t, rd_kafka_queue_destroy>>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, Deleter<rd_kafka_event_t, rd_kafka_event_destroy>>;

Error map_error(rd_kafka_resp_err_t err, const std::string& what) {
  std::string msg = what + ": " + rd_kafka_err2str(err);
  switch (err) {
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
      return Error::permanent(msg);
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
      return Error::invalid(msg);
    default:
      return Error::transient(msg);
  }
}

void log_cb(const rd_kafka_t* /*rk*/, int level, const char* fac, const char* buf) {
  nlohmann::json f = {{"facility", fac}, {"message", log::redact_digits(buf)}};
  if (level <= 3) {
    log::error("kafka.log", f);
  } else if (level <= 4) {
    log::warn("kafka.log", f);
  } else {
    log::debug("kafka.log", f);
  }
}

void error_cb(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_fatal_error(rk, buf, sizeof buf);
    log::error("kafka.fatal_error", {{"reason", buf}});
    if (opaque != nullptr) {
      static_cast<std::atomic<bool>*>(opaque)->store(true);
    }
    return;
  }
  // Broker-down and all-brokers-down are expected during restarts: warn, librdkafka retries.
  log::warn("kafka.error", {{"code", rd_kafka_err2name(code)}, {"reason", reason}});
}

Result<ConfPtr> make_conf(const ClientConfig& config,
                          const std::map<std::string, std::string>& defaults) {
  ConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  auto set = [&](const std::string& k, const std::string& v) -> Status {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
      return Unexpected(Error::fatal("kafka property " + k + ": " + errstr));
    }
    return {};
  };
  std::map<std::string, std::string> all = defaults;
  all["bootstrap.servers"] = config.brokers;
  all["client.id"] = config.client_id;
  for (const auto& [k, v] : config.properties) {
    all[k] = v;  // operator's pass-through wins
  }
  for (const auto& [k, v] : all) {
    if (auto s = set(k, v); !s) {
      return Unexpected(s.error());
    }
  }
  rd_kafka_conf_set_log_cb(conf.get(), log_cb);
  rd_kafka_conf_set_error_cb(conf.get(), error_cb);
  return conf;
}

void dr_msg_cb(rd_kafka_t* /*rk*/, const rd_kafka_message_t* msg, void* /*opaque*/) {
  std::unique_ptr<DeliveryCallback> cb(static_cast<DeliveryCallback*>(msg->_private));
  if (!cb) {
    return;
  }
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    (*cb)(Unexpected(map_error(msg->err, "delivery failed")), msg->partition, -1);
  } else {
    (*cb)(Status{}, msg->partition, msg->offset);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Producer

Result<std::unique_ptr<Producer>> Producer::create(const ClientConfig& config,
                                                   const ProducerOptions& options) {
  std::map<std::string, std::string> defaults = {
      {"enable.idempotence", options.idempotent ? "true" : "false"},
      {"acks", "all"},
      {"partitioner", "murmur2_random"},
      {"linger.ms", std::to_string(options.linger_ms)},
      {"message.timeout.ms", std::to_string(options.message_timeout_ms)},
      {"socket.keepalive.enable", "true"},
      {"socket.nagle.disable", "true"},  // requests leave at once, not after an ACK
      {"compression.type", "lz4"},
  };
  auto conf = make_conf(config, defaults);
  if (!conf) {
    return Unexpected(conf.error());
  }
  std::unique_ptr<Producer> p(new Producer());
  rd_kafka_conf_set_dr_msg_cb(conf->get(), dr_msg_cb);
  rd_kafka_conf_set_opaque(conf->get(), &p->fatal_);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), errstr, sizeof errstr);
  if (rk == nullptr) {
    return Unexpected(Error::fatal(std::string("kafka producer: ") + errstr));
  }
  conf->release();  // rd_kafka_new took ownership on success
  p->rk_ = rk;
  p->poller_ = std::thread([raw = p.get()] { raw->poll_loop(); });
  return p;
}

Producer::~Producer() {
  if (rk_ == nullptr) {
    return;
  }
  rd_kafka_flush(rk_, 5000);
  stop_ = true;
  if (poller_.joinable()) {
    poller_.join();
  }
  // Anything still queued fails its callback here (purge then serve the reports).
  rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(rk_, 0);
  rd_kafka_destroy(rk_);
}

void Producer::poll_loop() {
  while (!stop_.load()) {
    rd_kafka_poll(rk_, 50);
  }
}

void Producer::produce(const std::string& topic, const std::string& key, const std::string& value,
                       const Headers& headers, DeliveryCallback on_delivery, int32_t partition) {
  auto* cb = new DeliveryCallback(std::move(on_delivery));
  rd_kafka_headers_t* hdrs = rd_kafka_headers_new(headers.size());
  for (const auto& [k, v] : headers) {
    rd_kafka_header_add(hdrs, k.data(), static_cast<ssize_t>(k.size()), v.data(),
                        static_cast<ssize_t>(v.size()));
  }
  rd_kafka_vu_t vus[7];
  size_t n = 0;
  vus[n].vtype = RD_KAFKA_VTYPE_TOPIC;
  vus[n++].u.cstr = topic.c_str();
  vus[n].vtype = RD_KAFKA_VTYPE_KEY;
  vus[n].u.mem.ptr = const_cast<char*>(key.data());
  vus[n++].u.mem.size = key.size();
  vus[n].vtype = RD_KAFKA_VTYPE_VALUE;
  vus[n].u.mem.ptr = const_cast<char*>(value.data());
  vus[n++].u.mem.size = value.size();
  vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vus[n++].u.i = RD_KAFKA_MSG_F_COPY;
  vus[n].vtype = RD_KAFKA_VTYPE_HEADERS;
  vus[n++].u.headers = hdrs;
  vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vus[n++].u.ptr = cb;
  if (partition >= 0) {
    vus[n].vtype = RD_KAFKA_VTYPE_PARTITION;
    vus[n++].u.i32 = partition;
  }
  rd_kafka_error_t* err = rd_kafka_produceva(rk_, vus, n);
  if (err != nullptr) {
    // Not enqueued: the headers are still ours, and so is the callback.
    rd_kafka_headers_destroy(hdrs);
    Error e = map_error(rd_kafka_error_code(err), "produce to " + topic);
    rd_kafka_error_destroy(err);
    std::unique_ptr<DeliveryCallback> owned(cb);
    (*owned)(Unexpected(e), partition, -1);
  }
}

Status Producer::warm_up(const std::string& topic, std::chrono::milliseconds timeout) {
  std::unique_ptr<rd_kafka_topic_t, decltype(&rd_kafka_topic_destroy)> t(
      rd_kafka_topic_new(rk_, topic.c_str(), nullptr), &rd_kafka_topic_destroy);
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(rk_, 0, t.get(), &md, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "metadata for " + topic));
  }
  rd_kafka_metadata_destroy(md);
  return {};
}

bool Producer::flush(std::chrono::milliseconds timeout) {
  return rd_kafka_flush(rk_, static_cast<int>(timeout.count())) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

size_t Producer::in_flight() const { return static_cast<size_t>(rd_kafka_outq_len(rk_)); }

int32_t Producer::partition_for_key(const std::string& key, int32_t partition_count) {
  return rd_kafka_msg_partitioner_murmur2_random(nullptr, key.data(), key.size(), partition_count,
                                                 nullptr, nullptr);
}

// ---------------------------------------------------------------------------------------------
// Consumer

std::optional<std::string> Record::header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) {
      return v;
    }
  }
  return std::nullopt;
}

Record to_record(const rd_kafka_message_t* msg) {
  Record r;
  r.topic = rd_kafka_topic_name(msg->rkt);
  r.partition = msg->partition;
  r.offset = msg->offset;
  if (msg->key != nullptr) {
    r.key.assign(static_cast<const char*>(msg->key), msg->key_len);
  }
  if (msg->payload != nullptr) {
    r.value.assign(static_cast<const char*>(msg->payload), msg->len);
  }
  rd_kafka_timestamp_type_t tstype;
  r.timestamp_ms = rd_kafka_message_timestamp(const_cast<rd_kafka_message_t*>(msg), &tstype);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(msg), &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* val = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      r.headers.emplace_back(name, val != nullptr ? std::string(static_cast<const char*>(val), size)
                                                  : std::string{});
    }
  }
  return r;
}

struct RebalanceBridge {
  RebalanceListener* listener = nullptr;
  // Read from the configured strategy once: rd_kafka_rebalance_protocol() called from a
  // rebalance served during close can block for ever (librdkafka #4041).
  bool cooperative = false;
};

namespace {

std::vector<TopicPartition> to_vector(const rd_kafka_topic_partition_list_t* list) {
  std::vector<TopicPartition> out;
  for (int i = 0; list != nullptr && i < list->cnt; ++i) {
    out.push_back({list->elems[i].topic, list->elems[i].partition});
  }
  return out;
}

void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                  rd_kafka_topic_partition_list_t* partitions, void* opaque) {
  auto* bridge = static_cast<RebalanceBridge*>(opaque);
  const bool cooperative = bridge != nullptr && bridge->cooperative;
  auto parts = to_vector(partitions);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    log::info("consumer.assigned", {{"partitions", parts.size()}});
    if (bridge != nullptr && bridge->listener != nullptr) {
      bridge->listener->on_assigned(parts);
    }
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, partitions)) {
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(rk, partitions);
    }
  } else {
    log::info("consumer.revoked", {{"partitions", parts.size()}});
    if (bridge != nullptr && bridge->listener != nullptr) {
      bridge->listener->on_revoked(parts);
    }
    rd_kafka_commit(rk, nullptr, 0);  // stored offsets of the revoked partitions
    if (cooperative) {
      if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, partitions)) {
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }
}

}  // namespace

Result<std::unique_ptr<Consumer>> Consumer::create(const ClientConfig& config,
                                                   const ConsumerOptions& options) {
  if (options.group_id.empty()) {
    return Unexpected(Error::fatal("consumer needs a group id"));
  }
  std::map<std::string, std::string> defaults = {
      {"group.id", options.group_id},
      {"enable.auto.offset.store", "false"},
      {"enable.auto.commit", "true"},
      {"auto.commit.interval.ms", "1000"},
      {"auto.offset.reset", options.auto_offset_reset},
      {"session.timeout.ms", std::to_string(options.session_timeout_ms)},
      {"heartbeat.interval.ms", std::to_string(std::max(500, options.session_timeout_ms / 6))},
      {"partition.assignment.strategy", "range,roundrobin"},
      {"enable.partition.eof", "false"},
      {"fetch.wait.max.ms", std::to_string(options.fetch_wait_max_ms)},
  };
  auto conf = make_conf(config, defaults);
  if (!conf) {
    return Unexpected(conf.error());
  }
  std::unique_ptr<Consumer> c(new Consumer());
  c->bridge_ = std::make_unique<RebalanceBridge>();
  c->bridge_->listener = options.listener;
  char strategy[256] = {0};
  size_t strategy_size = sizeof strategy;
  if (rd_kafka_conf_get(conf->get(), "partition.assignment.strategy", strategy, &strategy_size) ==
      RD_KAFKA_CONF_OK) {
    c->bridge_->cooperative = std::strstr(strategy, "cooperative") != nullptr;
  }
  rd_kafka_conf_set_rebalance_cb(conf->get(), rebalance_cb);
  rd_kafka_conf_set_opaque(conf->get(), c->bridge_.get());
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), errstr, sizeof errstr);
  if (rk == nullptr) {
    return Unexpected(Error::fatal(std::string("kafka consumer: ") + errstr));
  }
  conf->release();
  c->rk_ = rk;
  rd_kafka_poll_set_consumer(rk);
  PartitionListPtr topics(rd_kafka_topic_partition_list_new(static_cast<int>(options.topics.size())));
  for (const auto& t : options.topics) {
    rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (auto err = rd_kafka_subscribe(rk, topics.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "subscribe"));
  }
  c->last_poll_ = std::chrono::steady_clock::now();
  return c;
}

Consumer::~Consumer() {
  if (rk_ == nullptr) {
    return;
  }
  if (!closed_) {
    close();
  }
  rd_kafka_destroy_flags(rk_, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

Status poll_batch(Consumer& consumer, std::vector<Record>& out, size_t max,
                  std::chrono::milliseconds first_wait, std::chrono::milliseconds fill) {
  const size_t start = out.size();
  auto first = consumer.poll(first_wait);
  if (!first) {
    return Unexpected(first.error());
  }
  if (!*first) {
    return {};
  }
  out.push_back(std::move(**first));
  const auto deadline = std::chrono::steady_clock::now() + fill;
  while (out.size() - start < max) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto more = consumer.poll(std::max(left, std::chrono::milliseconds(0)));
    if (!more) {
      return Unexpected(more.error());
    }
    if (!*more) {
      break;
    }
    out.push_back(std::move(**more));
  }
  return {};
}

void store_batch_offsets(Consumer& consumer, const std::vector<Record>& records) {
  std::map<std::pair<std::string, int32_t>, int64_t> next;
  for (const auto& r : records) {
    auto& n = next[{r.topic, r.partition}];
    n = std::max(n, r.offset + 1);
  }
  for (const auto& [tp, off] : next) {
    (void)consumer.store_offset(tp.first, tp.second, off);
  }
}

Result<std::optional<Record>> Consumer::poll(std::chrono::milliseconds timeout) {
  last_poll_ = std::chrono::steady_clock::now();
  MessagePtr msg(rd_kafka_consumer_poll(rk_, static_cast<int>(timeout.count())));
  if (!msg) {
    return std::optional<Record>{};
  }
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      return std::optional<Record>{};
    }
    if (msg->err == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      rd_kafka_fatal_error(rk_, buf, sizeof buf);
      return Unexpected(Error::fatal(std::string("consumer fatal: ") + buf));
    }
    log::warn("consumer.error", {{"code", rd_kafka_err2name(msg->err)},
                                 {"reason", rd_kafka_message_errstr(msg.get())}});
    return std::optional<Record>{};
  }
  return std::optional<Record>(to_record(msg.get()));
}

Status Consumer::store_offset(const std::string& topic, int32_t partition, int64_t next_offset) {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = next_offset;
  if (auto err = rd_kafka_offsets_store(rk_, list.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "offset store"));
  }
  if (list->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Typically the partition was revoked meanwhile: the new owner re-reads; not an error of ours.
    return Unexpected(map_error(list->elems[0].err, "offset store"));
  }
  return {};
}

Status Consumer::commit_sync() {
  auto err = rd_kafka_commit(rk_, nullptr, 0);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
    return Unexpected(map_error(err, "commit"));
  }
  return {};
}

void Consumer::close(std::chrono::milliseconds timeout) {
  if (closed_ || rk_ == nullptr) {
    return;
  }
  closed_ = true;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Leave the group while still an ordinary consumer: an assignment that arrives once the close
  // has begun makes rd_kafka_assign() block for ever (librdkafka #4884, #4527). Polling here
  // serves any pending assignment and then the revoke; what it reads is dropped, unstored.
  rd_kafka_unsubscribe(rk_);
  while (std::chrono::steady_clock::now() < deadline) {
    MessagePtr drop(rd_kafka_consumer_poll(rk_, 50));
    if (drop) {
      continue;
    }
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (rd_kafka_assignment(rk_, &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      break;
    }
    PartitionListPtr assigned(raw);
    if (!assigned || assigned->cnt == 0) {
      break;
    }
  }
  QueuePtr queue(rd_kafka_queue_new(rk_));
  if (rd_kafka_error_t* e = rd_kafka_consumer_close_queue(rk_, queue.get())) {
    log::warn("consumer.close_failed", {{"reason", rd_kafka_error_string(e)}});
    rd_kafka_error_destroy(e);
    return;
  }
  while (!rd_kafka_consumer_closed(rk_)) {
    if (std::chrono::steady_clock::now() > deadline) {
      log::warn("consumer.close_timeout", {{"timeout_ms", timeout.count()}});
      break;
    }
    // Serve rebalance (revoke) events so the close can finish.
    EventPtr ev(rd_kafka_queue_poll(queue.get(), 100));
    if (ev && rd_kafka_event_type(ev.get()) == RD_KAFKA_EVENT_REBALANCE) {
      rebalance_cb(rk_, rd_kafka_event_error(ev.get()),
                   rd_kafka_event_topic_partition_list(ev.get()), bridge_.get());
    }
  }
}

std::optional<int64_t> Consumer::high_watermark(const std::string& topic,
                                                int32_t partition) const {
  int64_t low = 0;
  int64_t high = 0;
  if (rd_kafka_get_watermark_offsets(rk_, topic.c_str(), partition, &low, &high) !=
          RD_KAFKA_RESP_ERR_NO_ERROR ||
      high < 0) {
    return std::nullopt;
  }
  return high;
}

std::optional<int64_t> Consumer::query_high_watermark(const std::string& topic,
                                                      int32_t partition,
                                                      std::chrono::milliseconds timeout) const {
  int64_t low = 0;
  int64_t high = 0;
  if (rd_kafka_query_watermark_offsets(rk_, topic.c_str(), partition, &low, &high,
                                       static_cast<int>(timeout.count())) !=
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  return high;
}

Status Consumer::pause_all() {
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (auto err = rd_kafka_assignment(rk_, &list); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "assignment"));
  }
  PartitionListPtr owned(list);
  if (auto err = rd_kafka_pause_partitions(rk_, list); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "pause"));
  }
  return {};
}

Status Consumer::resume_all() {
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (auto err = rd_kafka_assignment(rk_, &list); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "assignment"));
  }
  PartitionListPtr owned(list);
  if (auto err = rd_kafka_resume_partitions(rk_, list); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "resume"));
  }
  return {};
}

std::vector<TopicPartition> Consumer::assignment() const {
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (rd_kafka_assignment(rk_, &list) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return {};
  }
  PartitionListPtr owned(list);
  return to_vector(list);
}

// ---------------------------------------------------------------------------------------------
// Admin

namespace {

using HandlePtr = std::unique_ptr<rd_kafka_t, Deleter<rd_kafka_t, rd_kafka_destroy>>;

// A short-lived client handle for admin and metadata calls.
Result<HandlePtr> admin_handle(const ClientConfig& config) {
  auto conf = make_conf(config, {});
  if (!conf) {
    return Unexpected(conf.error());
  }
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), errstr, sizeof errstr);
  if (rk == nullptr) {
    return Unexpected(Error::fatal(std::string("kafka admin client: ") + errstr));
  }
  conf->release();
  return HandlePtr(rk);
}

}  // namespace

Result<std::vector<TopicOutcome>> create_topics(const ClientConfig& config,
                                                const std::vector<TopicRequest>& topics,
                                                std::chrono::milliseconds timeout) {
  auto handle = admin_handle(config);
  if (!handle) {
    return Unexpected(handle.error());
  }
  rd_kafka_t* rk = handle->get();
  char errstr[512];

  std::vector<rd_kafka_NewTopic_t*> news;
  for (const auto& t : topics) {
    rd_kafka_NewTopic_t* nt =
        rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, t.replication, errstr, sizeof errstr);
    if (nt == nullptr) {
      for (auto* n : news) {
        rd_kafka_NewTopic_destroy(n);
      }
      return Unexpected(Error::invalid("topic " + t.name + ": " + errstr));
    }
    for (const auto& [k, v] : t.configs) {
      rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    }
    news.push_back(nt);
  }
  QueuePtr queue(rd_kafka_queue_new(rk));
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, static_cast<int>(timeout.count()), errstr,
                                              sizeof errstr);
  rd_kafka_AdminOptions_set_request_timeout(opts, static_cast<int>(timeout.count()), errstr,
                                            sizeof errstr);
  rd_kafka_CreateTopics(rk, news.data(), news.size(), opts, queue.get());
  rd_kafka_AdminOptions_destroy(opts);
  for (auto* n : news) {
    rd_kafka_NewTopic_destroy(n);
  }
  EventPtr ev(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count()) + 2000));
  if (!ev) {
    return Unexpected(Error::transient("create topics: no answer from the cluster"));
  }
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(rd_kafka_event_error(ev.get()), "create topics"));
  }
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev.get());
  size_t cnt = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &cnt);
  std::vector<TopicOutcome> out;
  for (size_t i = 0; i < cnt; ++i) {
    TopicOutcome o;
    o.name = rd_kafka_topic_result_name(results[i]);
    auto err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      o.created = true;
    } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      o.existed = true;
    } else {
      const char* s = rd_kafka_topic_result_error_string(results[i]);
      o.error = s != nullptr ? s : rd_kafka_err2str(err);
    }
    out.push_back(std::move(o));
  }
  return out;
}

Result<ClusterState> describe_cluster(const ClientConfig& config,
                                     std::chrono::milliseconds timeout) {
  auto handle = admin_handle(config);
  if (!handle) {
    return Unexpected(handle.error());
  }
  const rd_kafka_metadata_t* md = nullptr;
  auto err = rd_kafka_metadata(handle->get(), 1, nullptr, &md, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "metadata"));
  }
  ClusterState out;
  for (int i = 0; i < md->broker_cnt; ++i) {
    out.brokers.push_back(md->brokers[i].id);
  }
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      continue;
    }
    auto& parts = out.topics[t.topic];
    for (int j = 0; j < t.partition_cnt; ++j) {
      const auto& p = t.partitions[j];
      parts.push_back({p.id, p.leader, std::vector<int32_t>(p.replicas, p.replicas + p.replica_cnt),
                       std::vector<int32_t>(p.isrs, p.isrs + p.isr_cnt)});
    }
  }
  rd_kafka_metadata_destroy(md);
  return out;
}

Result<std::map<std::string, int32_t>> list_topics(const ClientConfig& config,
                                                   std::chrono::milliseconds timeout) {
  auto cluster = describe_cluster(config, timeout);
  if (!cluster) {
    return Unexpected(cluster.error());
  }
  std::map<std::string, int32_t> out;
  for (const auto& [name, parts] : cluster->topics) {
    out[name] = static_cast<int32_t>(parts.size());
  }
  return out;
}

Status read_topic(const ClientConfig& config, const std::string& topic,
                  const std::function<bool(const Record&)>& on_record,
                  std::chrono::milliseconds timeout) {
  auto topics = list_topics(config, timeout);
  if (!topics) {
    return Unexpected(topics.error());
  }
  auto found = topics->find(topic);
  if (found == topics->end()) {
    return Unexpected(Error::permanent("topic " + topic + " does not exist"));
  }
  auto conf = make_conf(config, {{"group.id", "wafleet-reader"},
                                 {"enable.auto.commit", "false"},
                                 {"enable.partition.eof", "false"},
                                 {"fetch.wait.max.ms", "100"}});
  if (!conf) {
    return Unexpected(conf.error());
  }
  char errstr[512];
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), errstr, sizeof errstr);
  if (raw == nullptr) {
    return Unexpected(Error::fatal(std::string("kafka reader: ") + errstr));
  }
  conf->release();
  HandlePtr rk(raw);
  rd_kafka_poll_set_consumer(rk.get());
  // Where each partition ends now: records produced after this are not read.
  std::map<int32_t, int64_t> end;
  PartitionListPtr assign(rd_kafka_topic_partition_list_new(found->second));
  for (int32_t p = 0; p < found->second; ++p) {
    int64_t low = 0;
    int64_t high = 0;
    if (auto err = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high,
                                                    static_cast<int>(timeout.count()));
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Unexpected(map_error(err, "watermarks of " + topic));
    }
    if (high > low) {
      end[p] = high;
      rd_kafka_topic_partition_list_add(assign.get(), topic.c_str(), p)->offset = low;
    }
  }
  if (end.empty()) {
    return {};
  }
  if (auto err = rd_kafka_assign(rk.get(), assign.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "assign"));
  }
  auto last_progress = std::chrono::steady_clock::now();
  while (!end.empty()) {
    if (std::chrono::steady_clock::now() - last_progress > timeout) {
      return Unexpected(Error::transient("reading " + topic + " stalled for " +
                                         std::to_string(timeout.count()) + " ms"));
    }
    MessagePtr msg(rd_kafka_consumer_poll(rk.get(), 100));
    if (!msg) {
      continue;
    }
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (msg->err == RD_KAFKA_RESP_ERR__FATAL || msg->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        return Unexpected(map_error(msg->err, "reading " + topic));
      }
      continue;
    }
    last_progress = std::chrono::steady_clock::now();
    auto e = end.find(msg->partition);
    if (e == end.end() || msg->offset >= e->second) {
      continue;
    }
    const bool more = on_record(to_record(msg.get()));
    if (msg->offset + 1 >= e->second) {
      end.erase(e);
    }
    if (!more) {
      break;
    }
  }
  rd_kafka_assign(rk.get(), nullptr);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Mock cluster

Result<std::unique_ptr<MockCluster>> MockCluster::create(int brokers) {
  ConfPtr conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), log_cb);
  char errstr[512];
  // A quiet handle whose only job is to own the mock cluster.
  rd_kafka_conf_set(conf.get(), "log.queue", "false", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr);
  if (rk == nullptr) {
    return Unexpected(Error::fatal(std::string("mock cluster handle: ") + errstr));
  }
  conf.release();
  std::unique_ptr<MockCluster> m(new MockCluster());
  m->rk_ = rk;
  m->cluster_ = rd_kafka_mock_cluster_new(rk, brokers);
  if (m->cluster_ == nullptr) {
    return Unexpected(Error::fatal("rd_kafka_mock_cluster_new failed"));
  }
  return m;
}

MockCluster::~MockCluster() {
  if (cluster_ != nullptr) {
    rd_kafka_mock_cluster_destroy(cluster_);
  }
  if (rk_ != nullptr) {
    rd_kafka_destroy(rk_);
  }
}

std::string MockCluster::bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

Status MockCluster::create_topic(const std::string& name, int32_t partitions) {
  auto err = rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unexpected(map_error(err, "mock topic " + name));
  }
  return {};
}

void MockCluster::set_broker_down(int32_t broker_id) {
  rd_kafka_mock_broker_set_down(cluster_, broker_id);
}

void MockCluster::set_broker_up(int32_t broker_id) {
  rd_kafka_mock_broker_set_up(cluster_, broker_id);
}

void MockCluster::push_request_errors(int16_t api_key, const std::vector<int>& error_codes) {
  std::vector<rd_kafka_resp_err_t> errs;
  for (int c : error_codes) {
    errs.push_back(static_cast<rd_kafka_resp_err_t>(c));
  }
  rd_kafka_mock_push_request_errors_array(cluster_, api_key, errs.size(), errs.data());
}

}  // namespace wafleet::kafka
