#pragma once
// The aggregator's window state machine for ONE partition: pure and deterministic, so the
// worker can rebuild it by re-reading Kafka and tests can drive it in microseconds.
//
// Time is event time: a message's `received_at_ms` (when the receiver got the webhook). That
// makes windows reproducible on replay after a crash: the same records give the same windows
// and so the same turns (same turn_id). Wall-clock time only decides when an idle partition's
// windows are due (close_due(now)).
//
// Lifecycle: the worker owns one WindowSet per assigned partition; add() per consumed inbound
// message, media_result() per wa.media record, close_due() from its timer. Not thread-safe.
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "topics/webhook_event.h"

namespace wafleet::aggregator {

struct Config {
  enum class Mode { kDebounce, kTumbling };
  Mode mode = Mode::kDebounce;
  int64_t quiet_ms = 2000;      // debounce: close after this much silence...
  int64_t max_ms = 10000;       // ...but never later than first + max_ms
  size_t max_messages = 50;     // ...nor past this many messages
  int64_t tumbling_ms = 20000;  // tumbling: close at first + tumbling_ms
  bool keep_reactions = true;
  bool keep_stickers = true;
  int64_t media_wait_ms = 30000;  // a window with media waits this long (from open) at most
  bool join_media = false;        // hold media messages for their wa.media record (issue 4)
  // A second record of a message already in a turn closed this recently (event time) is
  // dropped: Meta's resend of a webhook whose produce timed out on the receiver's side yet
  // reached Kafka. DLQ replays are not dropped.
  int64_t duplicate_horizon_ms = 600000;
};

enum class MediaState { kNone, kPending, kStored, kFailed };

struct Buffered {
  int64_t offset = 0;  // Kafka offset: the order inside a turn
  WebhookEvent event;
  MediaState media = MediaState::kNone;
  nlohmann::json media_record;  // the wa.media record (stored or failed), when there is one
  int64_t media_offset = -1;    // its offset on wa.media
  int replay = 0;               // wafleet.replay.count of its record: 0 unless a DLQ replay
};

struct Window {
  std::string conversation_key;
  int64_t first_offset = 0;
  int64_t opened_ms = 0;  // event time of the first message
  int64_t last_ms = 0;    // event time of the latest message
  std::vector<Buffered> messages;

  size_t pending_media() const;
};

// When the window closes if nothing else arrives.
int64_t due_at(const Window& w, const Config& c);

// Media types whose window waits for a wa.media record.
bool is_media_type(const std::string& type);

class WindowSet {
 public:
  explicit WindowSet(Config config) : config_(config) {}

  // Adds an inbound message at its Kafka offset. Windows this closes (the conversation's
  // previous window when the message falls outside it, or the window itself when it reached
  // max_messages) are returned in close order. A message already buffered (same event_id,
  // a redelivery) is ignored. Messages the config drops (reactions, stickers) still count for
  // timing but do not become items.
  // replay: the record's wafleet.replay.count (a dead letter sent back): such a message makes
  // a turn of its own even when an earlier turn held it, with a turn id of its own.
  std::vector<Window> add(WebhookEvent event, int64_t offset, int replay = 0);

  // A wa.media record (stored or failed) at `media_offset` of the co-partitioned wa.media.
  // For a message not buffered yet (the media worker was faster than this consumer) it is
  // kept until the message arrives, or forgotten after 2 x media_wait of event time (the
  // window closed already).
  // record_ms: the wa.media record's own time. A record read before any inbound record of a
  // fresh partition (the media worker was ahead of us after a restart) is kept from then, not
  // from an event time that has not started yet.
  void media_result(const std::string& conversation_key, const std::string& message_id,
                    bool stored, nlohmann::json record, int64_t media_offset = -1,
                    int64_t record_ms = 0);
  // Lowest wa.media offset still needed by an open window or a kept record: the wa.media
  // commit position must not pass it, so a restart re-reads it.
  std::optional<int64_t> oldest_media_offset() const;

  // Closes every window due at now_ms, oldest due first.
  std::vector<Window> close_due(int64_t now_ms);
  // Event time moves forward with the records of the partition: after each record, windows
  // due before (latest event time seen - lateness) close, exactly as they would on a replay.
  // Returns them, oldest due first. This is what closes windows on a busy partition.
  std::vector<Window> advance_event_time(int64_t event_ms, int64_t lateness_ms);

  // Earliest due time of any open window.
  std::optional<int64_t> next_due() const;
  // First offset of the oldest open window: the partition's commit position must not pass it,
  // so re-reading Kafka can rebuild every open window.
  std::optional<int64_t> oldest_open_offset() const;
  size_t open_windows() const { return count_; }
  const Config& config() const { return config_; }

 private:
  // Whether a message at event time t joins w (the conversation's newest window).
  bool takes(const Window& w, int64_t t) const;
  int64_t effective_due(const Window& w) const;
  void finalize(Window& w) const;
  Window open_window(const std::string& key, int64_t t, int64_t offset);
  void index(const std::string& key, const Window& front);
  void unindex(const std::string& key);
  Config config_;
  // Takes the conversation's oldest window out of every index (indexing the next one) and
  // returns it, finalized.
  Window take(std::unordered_map<std::string, std::deque<Window>>::iterator it);
  // By conversation key, oldest first: the newest takes messages; older ones (more than one
  // only while media holds the oldest) wait to close in order.
  std::unordered_map<std::string, std::deque<Window>> windows_;
  size_t count_ = 0;  // windows in all the queues
  // Event ids of each conversation's windows taken in the last duplicate_horizon_ms, with when;
  // closed_order_ (when, key), oldest first, prunes them.
  void forget_closed_before(int64_t event_ms);
  std::unordered_map<std::string, std::vector<std::pair<std::string, int64_t>>> closed_ids_;
  std::deque<std::pair<int64_t, std::string>> closed_order_;
  // (effective due of the conversation's oldest window, sequence) -> key, earliest first; the
  // sequence breaks ties without comparing keys, which share long prefixes.
  std::map<std::pair<int64_t, uint64_t>, std::string> due_index_;
  std::unordered_map<std::string, std::pair<int64_t, uint64_t>> indexed_due_;  // key -> entry
  uint64_t next_seq_ = 0;
  std::set<int64_t> first_offsets_;  // of the open windows (offsets are unique), oldest first
  struct Early {
    bool stored = false;
    nlohmann::json record;
    int64_t media_offset = -1;
    int64_t kept_at = 0;  // event time when it came
  };
  std::unordered_map<std::string, Early> early_media_;  // by message id
  std::multiset<int64_t> media_offsets_;  // held by open windows and early_media_
  int64_t event_time_ = 0;                               // latest event time seen
};

}  // namespace wafleet::aggregator
