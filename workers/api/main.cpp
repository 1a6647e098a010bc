// wafleet-api: wiring only. The worker is worker.cpp, the routes api.cpp, the queries query.cpp;
// see README.md here.
#include "workers/api/worker.h"

int main(int argc, char** argv) { return wafleet::worker::run(argc, argv, wafleet::api::spec()); }
