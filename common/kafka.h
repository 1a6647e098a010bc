#pragma once
// librdkafka behind RAII (STYLE.md §5). C headers stay in kafka.cpp.
//
// Producer: idempotent, acks=all, murmur2_random partitioner (Java-compatible, so every client
// puts a key on the same partition). One background thread serves delivery reports; callbacks
// run on it and must be quick (post work elsewhere). Thread-safe: produce() from any thread.
//
// Consumer: manual offset store (enable.auto.offset.store=false), one message per poll, a
// rebalance listener, bounded close. Single-threaded: poll, store, commit from one thread.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/error.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace wafleet::kafka {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct ClientConfig {
  std::string brokers;
  std::string client_id = "wafleet";
  std::map<std::string, std::string> properties;  // pass-through librdkafka properties
};

struct ProducerOptions {
  // A produce not acknowledged by then fails (a consuming worker then stops, uncommitted). Long
  // enough to wait out a leader election: Kafka fences a broker killed outright only after
  // broker.session.timeout.ms (9 s by default). The receiver sets its own, shorter one.
  int message_timeout_ms = 30000;
  int linger_ms = 2;              // small: the receiver waits for acks before answering Meta
  bool idempotent = true;
};

using DeliveryCallback = std::function<void(const Status& status, int32_t partition,
                                            int64_t offset)>;

class Producer {
 public:
  static Result<std::unique_ptr<Producer>> create(const ClientConfig& config,
                                                  const ProducerOptions& options = {});
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // Enqueues one record; on_delivery runs exactly once (on the delivery thread, or inline with
  // an error when the record could not even be enqueued). partition < 0: by key.
  void produce(const std::string& topic, const std::string& key, const std::string& value,
               const Headers& headers, DeliveryCallback on_delivery, int32_t partition = -1);

  // Blocks until everything queued is delivered or the timeout passes; false on timeout.
  bool flush(std::chrono::milliseconds timeout);
  // Fetches the topic's metadata and connects to its leaders now, so the first record a worker
  // produces does not pay for it (about half a second on a fresh producer). Best effort.
  Status warm_up(const std::string& topic, std::chrono::milliseconds timeout);
  // True once librdkafka reported a fatal error (idempotence broken): the owner should exit.
  bool fatal() const { return fatal_.load(); }
  size_t in_flight() const;

  // Partition librdkafka would pick for a key (murmur2_random), for tests and tooling.
  static int32_t partition_for_key(const std::string& key, int32_t partition_count);

 private:
  Producer() = default;
  void poll_loop();

  rd_kafka_s* rk_ = nullptr;
  std::atomic<bool> stop_{false};
  std::atomic<bool> fatal_{false};
  std::thread poller_;
};

struct Record {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  Headers headers;
  int64_t timestamp_ms = 0;

  std::optional<std::string> header(const std::string& name) const;
};

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  bool operator<(const TopicPartition& o) const {
    return topic < o.topic || (topic == o.topic && partition < o.partition);
  }
  bool operator==(const TopicPartition& o) const {
    return topic == o.topic && partition == o.partition;
  }
};

// Called from inside Consumer::poll on the polling thread.
class RebalanceListener {
 public:
  virtual ~RebalanceListener() = default;
  virtual void on_assigned(const std::vector<TopicPartition>& partitions) = 0;
  // Before the partitions go: finish or abandon their work; stored offsets are committed right
  // after this returns.
  virtual void on_revoked(const std::vector<TopicPartition>& partitions) = 0;
};

struct ConsumerOptions {
  std::string group_id;
  std::vector<std::string> topics;
  int session_timeout_ms = 6000;  // the mock's first join waits ~3 s; keep rebalances quick
  std::string auto_offset_reset = "earliest";
  // How long the broker may hold a fetch with no new data. Low values make the cached high
  // watermark fresh (the aggregator's idle check) and new records arrive sooner.
  int fetch_wait_max_ms = 100;
  RebalanceListener* listener = nullptr;  // borrowed; may be null
};

class Consumer {
 public:
  static Result<std::unique_ptr<Consumer>> create(const ClientConfig& config,
                                                  const ConsumerOptions& options);
  ~Consumer();  // closes (bounded) if close() was not called
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // One record, nothing on timeout, or an error (transient broker errors are logged and
  // swallowed; fatal ones returned).
  Result<std::optional<Record>> poll(std::chrono::milliseconds timeout);
  // Marks offset (the next to read, i.e. record.offset + 1) for the next commit.
  Status store_offset(const std::string& topic, int32_t partition, int64_t next_offset);
  Status commit_sync();
  // Leaves the group and commits stored offsets, giving up after the timeout.
  void close(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  std::vector<TopicPartition> assignment() const;
  // Stops (resumes) fetching from every assigned partition; poll() still serves rebalances and
  // keeps the member in its group. Records fetched but not yet returned are fetched again.
  Status pause_all();
  Status resume_all();
  // The partition's high watermark as librdkafka last saw it (no broker round trip), if known.
  std::optional<int64_t> high_watermark(const std::string& topic, int32_t partition) const;
  // The same, asked of the partition leader now (one round trip).
  std::optional<int64_t> query_high_watermark(const std::string& topic, int32_t partition,
                                              std::chrono::milliseconds timeout) const;
  // Time of the last poll call, for liveness.
  std::chrono::steady_clock::time_point last_poll() const { return last_poll_.load(); }

 private:
  Consumer() = default;
  rd_kafka_s* rk_ = nullptr;
  bool closed_ = false;
  std::atomic<std::chrono::steady_clock::time_point> last_poll_{};
  std::unique_ptr<struct RebalanceBridge> bridge_;
};

// Appends up to max records to out: waits up to first_wait for the first, then takes what is
// already fetched, waiting up to fill in all for more (fill 0: only what is at hand). For
// workers that apply records in batches (bulk, store).
Status poll_batch(Consumer& consumer, std::vector<Record>& out, size_t max,
                  std::chrono::milliseconds first_wait, std::chrono::milliseconds fill);

// Stores, per partition, the offset after the last of these records (a revoked partition's
// is refused and left to its next owner, which reads those records again).
void store_batch_offsets(Consumer& consumer, const std::vector<Record>& records);

// Reads a topic as it stands: every partition from its first record to its high watermark at
// the start (records produced meanwhile are not read), in offset order per partition, with no
// consumer group and nothing committed. on_record returns false to stop early. For inspection
// tools (`wafleet dlq`).
Status read_topic(const ClientConfig& config, const std::string& topic,
                  const std::function<bool(const Record&)>& on_record,
                  std::chrono::milliseconds timeout);

// Admin: creates topics (no-op for existing ones with the same partition count).
struct TopicRequest {
  std::string name;
  int32_t partitions = 1;
  int16_t replication = 1;
  std::map<std::string, std::string> configs;
};
struct TopicOutcome {
  std::string name;
  bool created = false;
  bool existed = false;
  std::string error;
};
Result<std::vector<TopicOutcome>> create_topics(const ClientConfig& config,
                                                const std::vector<TopicRequest>& topics,
                                                std::chrono::milliseconds timeout);
// topic -> partition count, from cluster metadata.
Result<std::map<std::string, int32_t>> list_topics(const ClientConfig& config,
                                                   std::chrono::milliseconds timeout);

// Who holds what, from cluster metadata: the brokers up now, and per partition its leader
// (-1 while it has none), replicas and in-sync replicas.
struct PartitionState {
  int32_t partition = 0;
  int32_t leader = -1;
  std::vector<int32_t> replicas;
  std::vector<int32_t> in_sync;
};
struct ClusterState {
  std::vector<int32_t> brokers;
  std::map<std::string, std::vector<PartitionState>> topics;
};
Result<ClusterState> describe_cluster(const ClientConfig& config, std::chrono::milliseconds timeout);

// librdkafka's mock cluster (rdkafka_mock.h), serving real TCP clients. Owns its handle.
class MockCluster {
 public:
  static Result<std::unique_ptr<MockCluster>> create(int brokers = 1);
  ~MockCluster();
  std::string bootstraps() const;
  Status create_topic(const std::string& name, int32_t partitions);
  void set_broker_down(int32_t broker_id);
  void set_broker_up(int32_t broker_id);
  // The next count requests of this Kafka API key fail with this Kafka error code.
  void push_request_errors(int16_t api_key, const std::vector<int>& error_codes);

 private:
  MockCluster() = default;
  rd_kafka_s* rk_ = nullptr;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
};

}  // namespace wafleet::kafka
