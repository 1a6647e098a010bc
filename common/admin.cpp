#include "common/admin.h"

#include <prometheus/text_serializer.h>

namespace wafleet {

AdminServer::AdminServer(std::string host, uint16_t port,
                         std::shared_ptr<prometheus::Registry> registry,
                         std::function<Probe()> liveness, std::function<Probe()> readiness)
    : registry_(std::move(registry)),
      liveness_(std::move(liveness)),
      readiness_(std::move(readiness)),
      server_(http::ServerOptions{std::move(host), port, 1, 64 * 1024, 30, "wafleet-admin"},
              [this](http::Request&& req, http::Responder respond) {
                handle(std::move(req), std::move(respond));
              }) {}

Status AdminServer::start() { return server_.start(); }

void AdminServer::handle(http::Request&& req, http::Responder respond) {
  std::string target(req.target());
  if (auto q = target.find('?'); q != std::string::npos) {
    target.resize(q);
  }
  if (target == "/metrics") {
    prometheus::TextSerializer serializer;
    respond(http::make_response(req, 200, serializer.Serialize(registry_->Collect()),
                                "text/plain; version=0.0.4"));
    return;
  }
  if (target == "/healthz" || target == "/readyz") {
    Probe p = target == "/healthz" ? (liveness_ ? liveness_() : Probe{})
                                   : (readiness_ ? readiness_() : Probe{});
    respond(http::make_response(req, p.ok ? 200 : 503,
                                (p.ok ? "ok" : "not ok") +
                                    (p.detail.empty() ? std::string{} : ": " + p.detail) + "\n"));
    return;
  }
  respond(http::make_response(req, 404, "not found\n"));
}

}  // namespace wafleet
