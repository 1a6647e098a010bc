#include "common/admin.h"

#include <prometheus/text_serializer.h>

#include "common/http_server.h"

namespace wafleet {
namespace {

http::Response answer(const http::Request& req, prometheus::Registry& registry,
                      const std::function<Probe()>& liveness,
                      const std::function<Probe()>& readiness) {
  const std::string target = http::target_path(req);
  if (target == "/metrics") {
    prometheus::TextSerializer serializer;
    return http::make_response(req, 200, serializer.Serialize(registry.Collect()),
                               "text/plain; version=0.0.4");
  }
  if (target == "/healthz" || target == "/readyz") {
    const auto& probe = target == "/healthz" ? liveness : readiness;
    const Probe p = probe ? probe() : Probe{};
    return http::make_response(req, p.ok ? 200 : 503,
                               (p.ok ? "ok" : "not ok") +
                                   (p.detail.empty() ? std::string{} : ": " + p.detail) + "\n");
  }
  return http::make_response(req, 404, "not found\n");
}

}  // namespace

AdminServer::AdminServer(std::string host, uint16_t port,
                         std::shared_ptr<prometheus::Registry> registry,
                         std::function<Probe()> liveness, std::function<Probe()> readiness)
    : server_(std::make_unique<http::Server>(
          http::ServerOptions{std::move(host), port, 1, 64 * 1024, 30, "wafleet-admin"},
          [registry = std::move(registry), liveness = std::move(liveness),
           readiness = std::move(readiness)](http::Request&& req, http::Responder respond) {
            respond(answer(req, *registry, liveness, readiness));
          })) {}

AdminServer::~AdminServer() = default;

Status AdminServer::start() { return server_->start(); }
void AdminServer::stop() { server_->stop(); }
uint16_t AdminServer::port() const { return server_->port(); }

}  // namespace wafleet
