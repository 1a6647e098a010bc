#pragma once
// Turns: one record on wa.turns per closed window (schema: topics/schemas/turn.schema.json).
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "workers/aggregator/window.h"

namespace wafleet::aggregator {

// Deterministic: the conversation plus the offset of the window's first wa.inbound record.
// Re-reading Kafka after a crash rebuilds the same window and so the same id; a consumer seeing
// it twice knows it is a redelivery.
std::string turn_id(const Window& w);

// Items in Kafka-offset order: consecutive plain texts joined with "\n"; every other message
// its own item (captions stay with their media; reply context and referrals keep a text
// separate); reactions/stickers dropped from items when the config says so. Every message id
// and every raw message object travel with the turn, dropped ones included.
nlohmann::json build_turn(const Window& w, const Config& c, int32_t partition,
                          int64_t closed_at_ms);

}  // namespace wafleet::aggregator
