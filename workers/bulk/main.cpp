// wafleet-bulk: wiring only. The worker is worker.cpp (the consumer of commands and outcomes, the
// driver), the rules job.cpp, the Redis state store.cpp; see README.md here.
#include "common/worker.h"
#include "workers/bulk/worker.h"

int main(int argc, char** argv) { return wafleet::worker::run(argc, argv, wafleet::bulk::spec()); }
