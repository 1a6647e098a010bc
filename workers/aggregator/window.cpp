#include "workers/aggregator/window.h"

#include <algorithm>

namespace wafleet::aggregator {

size_t Window::pending_media() const {
  return static_cast<size_t>(std::count_if(messages.begin(), messages.end(), [](const Buffered& b) {
    return b.media == MediaState::kPending;
  }));
}

bool is_media_type(const std::string& type) {
  return type == "image" || type == "audio" || type == "video" || type == "document" ||
         type == "sticker";
}

int64_t due_at(const Window& w, const Config& c) {
  if (c.mode == Config::Mode::kTumbling) {
    return w.opened_ms + c.tumbling_ms;
  }
  return std::min(w.last_ms + c.quiet_ms, w.opened_ms + c.max_ms);
}

bool WindowSet::takes(const Window& w, int64_t t) const {
  if (config_.mode == Config::Mode::kDebounce && w.messages.size() >= config_.max_messages) {
    return false;
  }
  return t < due_at(w, config_);
}

int64_t WindowSet::effective_due(const Window& w) const {
  const int64_t due = due_at(w, config_);
  if (w.pending_media() > 0) {
    // Media still downloading holds the turn back (not its membership), up to the media wait.
    return std::max(due, w.opened_ms + config_.media_wait_ms);
  }
  if (config_.mode == Config::Mode::kDebounce && w.messages.size() >= config_.max_messages) {
    return w.last_ms;  // full: it takes nothing more, so nothing is left to wait for
  }
  return due;
}

void WindowSet::index(const std::string& key, const Window& front) {
  const int64_t due = effective_due(front);
  auto it = indexed_due_.find(key);
  if (it == indexed_due_.end()) {
    const std::pair<int64_t, uint64_t> entry{due, next_seq_++};
    indexed_due_.emplace(key, entry);
    due_index_.emplace(entry, key);
    return;
  }
  if (it->second.first == due) {
    return;
  }
  auto node = due_index_.extract(it->second);
  it->second.first = due;
  node.key() = it->second;
  due_index_.insert(std::move(node));
}

void WindowSet::unindex(const std::string& key) {
  auto it = indexed_due_.find(key);
  if (it != indexed_due_.end()) {
    due_index_.erase(it->second);
    indexed_due_.erase(it);
  }
}

void WindowSet::finalize(Window& w) const {
  for (auto& b : w.messages) {
    if (b.media == MediaState::kPending) {
      b.media = MediaState::kFailed;  // the media wait passed: marked, never dropped
      b.media_record = {
          {"status", "failed"},
          {"reason", "no media record within " + std::to_string(config_.media_wait_ms) + " ms"}};
    }
  }
}

std::vector<Window> WindowSet::add(WebhookEvent event, int64_t offset, int replay) {
  std::vector<Window> closed;
  const std::string key = event.conversation_key;
  const int64_t t = event.received_at_ms;
  if (auto c = closed_ids_.find(key); c != closed_ids_.end() && replay == 0) {
    for (const auto& seen : c->second) {
      if (seen.first == event.event_id) {
        return closed;  // a late second record of a message already in a turn
      }
    }
  }
  auto it = windows_.find(key);
  if (it != windows_.end()) {
    for (const auto& w : it->second) {
      for (const auto& b : w.messages) {
        if (b.event.event_id == event.event_id) {
          return closed;  // redelivered: already in a window
        }
      }
    }
    // A message at or past the newest window's due time (or a full window) opens the next one.
    // Whether that window is held by media does not matter: membership is a function of the
    // wa.inbound records alone, so a rebuild gives the same windows however the two topics'
    // fetches interleave. A window with nothing to wait for closes now; one held by media
    // stays, and the new window queues behind it.
    std::deque<Window>& queue = it->second;
    if (!takes(queue.back(), t)) {
      if (queue.size() == 1 && queue.front().pending_media() == 0) {
        closed.push_back(take(it));
        it = windows_.end();
      } else {
        queue.push_back(open_window(key, t, offset));
        ++count_;
      }
    }
  }
  if (it == windows_.end()) {
    it = windows_.emplace(key, std::deque<Window>{}).first;
    it->second.push_back(open_window(key, t, offset));
    ++count_;
  }
  Window& w = it->second.back();
  w.last_ms = std::max(w.last_ms, t);
  Buffered b;
  b.offset = offset;
  b.replay = replay;
  b.media = config_.join_media && is_media_type(event.type) ? MediaState::kPending
                                                            : MediaState::kNone;
  if (b.media == MediaState::kPending) {
    if (auto e = early_media_.find(event.message_id); e != early_media_.end()) {
      b.media = e->second.stored ? MediaState::kStored : MediaState::kFailed;
      b.media_record = std::move(e->second.record);
      b.media_offset = e->second.media_offset;  // stays held, now by the window
      early_media_.erase(e);
    }
  }
  b.event = std::move(event);
  w.messages.push_back(std::move(b));
  if (it->second.size() == 1 && config_.mode == Config::Mode::kDebounce &&
      w.messages.size() >= config_.max_messages && w.pending_media() == 0) {
    closed.push_back(take(it));
  } else {
    index(key, it->second.front());
  }
  return closed;
}

Window WindowSet::open_window(const std::string& key, int64_t t, int64_t offset) {
  Window w;
  w.conversation_key = key;
  w.first_offset = offset;
  w.opened_ms = t;
  w.last_ms = t;
  first_offsets_.insert(offset);
  return w;
}

void WindowSet::media_result(const std::string& conversation_key, const std::string& message_id,
                             bool stored, nlohmann::json record, int64_t media_offset,
                             int64_t record_ms) {
  auto it = windows_.find(conversation_key);
  for (size_t i = 0; it != windows_.end() && i < it->second.size(); ++i) {
    for (auto& b : it->second[i].messages) {
      if (b.event.message_id != message_id) {
        continue;
      }
      if (b.media == MediaState::kStored) {
        return;  // a redelivered record: the first stored one stands
      }
      if (b.media_offset >= 0) {
        media_offsets_.erase(media_offsets_.find(b.media_offset));
      }
      b.media = stored ? MediaState::kStored : MediaState::kFailed;
      b.media_record = std::move(record);
      b.media_offset = media_offset;
      if (media_offset >= 0) {
        media_offsets_.insert(media_offset);
      }
      index(conversation_key, it->second.front());
      return;
    }
  }
  auto [e, fresh] = early_media_.try_emplace(message_id);
  if (!fresh) {
    if (e->second.stored) {
      return;
    }
    if (e->second.media_offset >= 0) {
      media_offsets_.erase(media_offsets_.find(e->second.media_offset));
    }
  }
  e->second = Early{stored, std::move(record), media_offset, std::max(event_time_, record_ms)};
  if (media_offset >= 0) {
    media_offsets_.insert(media_offset);
  }
}

std::optional<int64_t> WindowSet::oldest_media_offset() const {
  if (media_offsets_.empty()) {
    return std::nullopt;
  }
  return *media_offsets_.begin();
}

std::vector<Window> WindowSet::close_due(int64_t now_ms) {
  std::vector<Window> closed;
  while (!due_index_.empty() && due_index_.begin()->first.first <= now_ms) {
    const std::string key = due_index_.begin()->second;
    closed.push_back(take(windows_.find(key)));  // the next window queued, if any, is indexed
  }
  return closed;
}

std::vector<Window> WindowSet::advance_event_time(int64_t event_ms, int64_t lateness_ms) {
  event_time_ = std::max(event_time_, event_ms);
  // Records kept for messages that never came (their window closed before the record did).
  for (auto e = early_media_.begin(); e != early_media_.end();) {
    if (event_time_ - e->second.kept_at > 2 * config_.media_wait_ms) {
      if (e->second.media_offset >= 0) {
        media_offsets_.erase(media_offsets_.find(e->second.media_offset));
      }
      e = early_media_.erase(e);
    } else {
      ++e;
    }
  }
  forget_closed_before(event_time_ - config_.duplicate_horizon_ms);
  return close_due(event_time_ - lateness_ms);
}

void WindowSet::forget_closed_before(int64_t event_ms) {
  while (!closed_order_.empty() && closed_order_.front().first < event_ms) {
    const int64_t at = closed_order_.front().first;
    if (auto c = closed_ids_.find(closed_order_.front().second); c != closed_ids_.end()) {
      std::erase_if(c->second, [&](const auto& seen) { return seen.second <= at; });
      if (c->second.empty()) {
        closed_ids_.erase(c);
      }
    }
    closed_order_.pop_front();
  }
}

std::optional<int64_t> WindowSet::next_due() const {
  if (due_index_.empty()) {
    return std::nullopt;
  }
  return due_index_.begin()->first.first;
}

std::optional<int64_t> WindowSet::oldest_open_offset() const {
  if (first_offsets_.empty()) {
    return std::nullopt;
  }
  return *first_offsets_.begin();
}

Window WindowSet::take(std::unordered_map<std::string, std::deque<Window>>::iterator it) {
  Window w = std::move(it->second.front());
  it->second.pop_front();
  --count_;
  for (const auto& b : w.messages) {
    if (b.media_offset >= 0) {
      media_offsets_.erase(media_offsets_.find(b.media_offset));
    }
  }
  first_offsets_.erase(w.first_offset);
  const int64_t at = std::max(event_time_, w.last_ms);
  auto& seen = closed_ids_[it->first];
  for (const auto& b : w.messages) {
    seen.emplace_back(b.event.event_id, at);
  }
  closed_order_.emplace_back(at, it->first);
  if (it->second.empty()) {
    unindex(it->first);
    windows_.erase(it);
  } else {
    index(it->first, it->second.front());
  }
  finalize(w);
  return w;
}

}  // namespace wafleet::aggregator
