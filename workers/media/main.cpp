// wafleet-media: wiring only. The worker is worker.cpp (options, core), the logic media.cpp;
// see README.md here.
#include "common/worker.h"
#include "workers/media/worker.h"

int main(int argc, char** argv) { return wafleet::worker::run(argc, argv, wafleet::media::spec()); }
