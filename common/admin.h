#pragma once
// Every worker's admin port: /metrics (Prometheus text), /healthz (liveness), /readyz
// (readiness). Probes are called on the admin server's thread and must be cheap.
#include <functional>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "common/http_server.h"

namespace wafleet {

struct Probe {
  bool ok = true;
  std::string detail;  // shown in the body, e.g. "redis: connection refused"
};

class AdminServer {
 public:
  AdminServer(std::string host, uint16_t port, std::shared_ptr<prometheus::Registry> registry,
              std::function<Probe()> liveness, std::function<Probe()> readiness);
  Status start();
  void stop() { server_.stop(); }
  uint16_t port() const { return server_.port(); }

 private:
  void handle(http::Request&& req, http::Responder respond);

  std::shared_ptr<prometheus::Registry> registry_;
  std::function<Probe()> liveness_;
  std::function<Probe()> readiness_;
  http::Server server_;
};

}  // namespace wafleet
