// wafleet-replay: wiring only. Replays dead letters of the error classes configured as
// transient, after a delay that doubles with each replay, up to a cap after which they are
// parked. The worker is worker.cpp, the policy (shared with `wafleet dlq replay`) replay.cpp;
// see README.md here.
#include "common/worker.h"
#include "workers/replay/worker.h"

int main(int argc, char** argv) { return wafleet::worker::run(argc, argv, wafleet::replay::spec()); }
