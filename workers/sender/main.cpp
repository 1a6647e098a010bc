// wafleet-sender: wiring only. The worker is worker.cpp (options, the send loop), its outcome
// rules dispatch.cpp; the logic request.cpp (validation, Graph bodies), sender.cpp (limits,
// never twice), scheduler.cpp (per-person queues); see README.md here.
#include "common/worker.h"
#include "workers/sender/worker.h"

int main(int argc, char** argv) { return wafleet::worker::run(argc, argv, wafleet::sender::spec()); }
