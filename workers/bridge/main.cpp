// wafleet-bridge: wiring only. The worker is worker.cpp (options, the loop and its pool), the
// rules agent.cpp, the Redis state state.cpp; see README.md here.
#include "common/worker.h"
#include "workers/bridge/worker.h"

int main(int argc, char** argv) { return wafleet::worker::run(argc, argv, wafleet::bridge::spec()); }
