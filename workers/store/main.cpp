#include "workers/store/worker.h"

int main(int argc, char** argv) { return wafleet::worker::run(argc, argv, wafleet::store::spec()); }
