#include "common/consumer_loop.h"

#include "common/clock.h"

#include <future>
#include <thread>

#include "common/dead_letter.h"
#include "common/log.h"

namespace wafleet::kafka {
namespace {

int64_t now_ms() { return wall_clock_ms(); }

}  // namespace

ConsumerLoop::ConsumerLoop(Consumer& consumer, Producer& producer, LoopOptions options)
    : consumer_(consumer), producer_(producer), options_(std::move(options)) {}

Status ConsumerLoop::dead_letter(const Record& r, const Error& e, int attempts, int64_t first_ms,
                                 const std::string& stage) {
  Status s = produce_dead_letter(producer_, options_, r, e, attempts, first_ms, stage);
  if (s) {
    ++stats_.dead_lettered;
  }
  return s;
}

Status produce_dead_letter(Producer& producer, const LoopOptions& options, const Record& r,
                           const Error& e, int attempts, int64_t first_ms,
                           const std::string& stage) {
  const Headers h = dlq::to_headers(dlq::describe(r, options.group_id, options.worker, stage, e,
                                                  attempts, first_ms, now_ms()));
  Status s = produce_and_wait(producer, options.dlq_topic, r.key, r.value, h);
  if (s) {
    log::warn("record.dead_lettered", {{"topic", r.topic},
                                       {"partition", r.partition},
                                       {"offset", r.offset},
                                       {"error_class", to_string(e.kind)},
                                       {"reason", log::redact_digits(e.message)},
                                       {"attempts", attempts}});
  }
  return s;
}

Status produce_and_wait(Producer& producer, const std::string& topic, const std::string& key,
                        const std::string& value, const Headers& headers) {
  std::promise<Status> acked;
  producer.produce(topic, key, value, headers,
                   [&acked](const Status& s, int32_t, int64_t) { acked.set_value(s); });
  return acked.get_future().get();
}

Status ConsumerLoop::run(const RecordHandler& handler, const GiveUpHandler& on_give_up) {
  while (!stop_.load()) {
    auto polled = consumer_.poll(options_.poll_timeout);
    if (!polled) {
      return Unexpected(polled.error());  // fatal consumer error
    }
    if (!*polled) {
      continue;
    }
    const Record& r = **polled;
    int attempts = 0;
    int64_t first_failure = 0;
    auto backoff = options_.backoff_initial;
    for (;;) {
      ++attempts;
      Status s = handler(r);
      if (s) {
        break;
      }
      if (first_failure == 0) {
        first_failure = now_ms();
      }
      const Error& e = s.error();
      if (e.kind == ErrorKind::kFatal) {
        log::error("consumer.fatal", {{"topic", r.topic}, {"partition", r.partition},
                                      {"offset", r.offset}, {"reason", e.message}});
        return s;
      }
      if (e.kind == ErrorKind::kTransient && attempts < options_.max_attempts && !stop_.load()) {
        ++stats_.retried;
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, options_.backoff_max);
        continue;
      }
      if (stop_.load() && e.kind == ErrorKind::kTransient) {
        return {};  // shutting down: leave the offset, the next owner retries
      }
      if (on_give_up) {
        if (Status g = on_give_up(r, e, attempts); !g) {
          log::error("consumer.give_up_failed", {{"reason", g.error().message}});
          return Unexpected(Error::fatal("cannot publish the failure outcome: " +
                                         g.error().message));
        }
      }
      if (Status d = dead_letter(r, e, attempts, first_failure, "handle"); !d) {
        log::error("dlq.produce_failed", {{"reason", d.error().message}});
        return Unexpected(Error::fatal("cannot write the dead-letter topic: " + d.error().message));
      }
      break;
    }
    ++stats_.processed;
    if (Status st = consumer_.store_offset(r.topic, r.partition, r.offset + 1); !st) {
      log::warn("consumer.offset_store_failed", {{"reason", st.error().message}});
    }
  }
  return {};
}

}  // namespace wafleet::kafka
