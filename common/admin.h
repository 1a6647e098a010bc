#pragma once
// Every worker's admin port: /metrics (Prometheus text), /healthz (liveness), /readyz
// (readiness). Probes are called on the admin server's thread and must be cheap.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "common/error.h"

namespace wafleet {

namespace http {
class Server;
}

struct Probe {
  bool ok = true;
  std::string detail;  // shown in the body, e.g. "redis: connection refused"
};

class AdminServer {
 public:
  AdminServer(std::string host, uint16_t port, std::shared_ptr<prometheus::Registry> registry,
              std::function<Probe()> liveness, std::function<Probe()> readiness);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  Status start();
  void stop();
  uint16_t port() const;

 private:
  std::unique_ptr<http::Server> server_;  // the Beast server stays out of every worker's header
};

}  // namespace wafleet
