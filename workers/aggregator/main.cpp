// wafleet-aggregator: wiring only. The worker is worker.cpp (options, the batch loop); the
// logic window.cpp (windows), turn.cpp (turns), engine.cpp (partitions, Redis fencing, emits,
// offsets). See README.md here.
#include "common/worker.h"
#include "workers/aggregator/worker.h"

int main(int argc, char** argv) {
  return wafleet::worker::run(argc, argv, wafleet::aggregator::spec());
}
