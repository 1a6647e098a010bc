#pragma once
// Process plumbing shared by every binary: signals and shutdown.
namespace wafleet::runtime {

// Blocks SIGINT/SIGTERM in this thread and every thread started after; call first in main.
void block_shutdown_signals();
// Waits until SIGINT or SIGTERM arrives; returns the signal number.
int wait_for_shutdown_signal();

}  // namespace wafleet::runtime
