// wafleet-receiver: wiring only. The worker is worker.cpp (options, the HTTP server), the logic
// receiver.cpp (see README.md here).
#include "common/worker.h"
#include "workers/receiver/worker.h"

int main(int argc, char** argv) {
  return wafleet::worker::run(argc, argv, wafleet::receiver::spec());
}
