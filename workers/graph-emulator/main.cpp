// wafleet-graph-emulator: Meta's Cloud API as wafleet uses it, locally (emulator.h). Wiring only.
#include <fstream>
#include <iostream>
#include <iterator>

#include "common/config.h"
#include "common/log.h"
#include "common/runtime.h"
#include "workers/graph-emulator/emulator.h"

using namespace wafleet;

int main(int argc, char** argv) {
  runtime::block_shutdown_signals();
  const std::vector<config::Option> opts = {
      {"listen", "127.0.0.1:8090", "host:port (port 0 picks a free one)"},
      {"port-file", "", "write the bound port here once listening"},
      {"access-token", "emulator-token", "the Bearer token every Graph call must carry", true},
      {"public-base", "", "base of the media download URLs (default http://<listen>)"},
      {"url-ttl-ms", "300000", "media URLs expire after this long (Meta: 5 minutes)"},
      {"http-threads", "2", "HTTP I/O threads"},
      {"faults", "", "fault rules at start: a JSON array (or @file), as POST /_emulator/faults takes"},
      {"status-url", "", "POST status webhooks (sent, delivered...) for every accepted message here, "
                         "e.g. http://127.0.0.1:8080/webhook"},
      {"status-app-secret", "", "app secret the status webhooks are signed with", true},
      {"statuses", "sent,delivered", "the statuses each accepted message gets, in order"},
      {"log-level", "info", "debug | info | warn | error"},
  };
  std::vector<std::string> errors;
  auto s = config::load_args("wafleet-graph-emulator", opts, argc, argv, errors);
  auto listen = config::parse_host_port(s.get("listen"), "listen", errors);
  emulator::Options eo;
  eo.access_token = s.get("access-token");
  eo.url_ttl_ms = s.get_int("url-ttl-ms", errors);
  eo.status_url = s.get("status-url");
  eo.status_app_secret = s.get("status-app-secret");
  eo.statuses.clear();
  for (std::string rest = s.get("statuses"); !rest.empty();) {
    const size_t comma = rest.find(',');
    const std::string one = rest.substr(0, comma);
    if (one != "sent" && one != "delivered" && one != "read" && one != "played") {
      errors.push_back("WAFLEET_STATUSES: '" + one + "' is not sent, delivered, read or played");
    } else {
      eo.statuses.push_back(one);
    }
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
  }
  if (!eo.status_url.empty() && eo.status_app_secret.empty()) {
    errors.push_back("WAFLEET_STATUS_APP_SECRET: required with WAFLEET_STATUS_URL");
  }
  const int threads = static_cast<int>(s.get_int("http-threads", errors));
  std::vector<emulator::Fault> faults;
  if (std::string spec = s.get("faults"); !spec.empty()) {
    if (spec.front() == '@') {
      std::ifstream in(spec.substr(1));
      spec.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    auto j = nlohmann::json::parse(spec, nullptr, false);
    if (!j.is_array()) {
      errors.push_back("WAFLEET_FAULTS: expected a JSON array of fault rules");
    } else {
      for (const auto& rule : j) {
        std::string why;
        if (auto f = emulator::Fault::from_json(rule, why)) {
          faults.push_back(*f);
        } else {
          errors.push_back("WAFLEET_FAULTS: " + why);
        }
      }
    }
  }
  config::exit_if_invalid("wafleet-graph-emulator", errors);
  log::init("graph-emulator", s.get("log-level"), false);

  emulator::GraphEmulator emu(eo);
  for (auto& f : faults) {
    emu.add_fault(std::move(f));
  }
  http::ServerOptions so;
  so.host = listen->host;
  so.port = listen->port;
  so.threads = threads;
  so.body_limit = 64ULL * 1024 * 1024;
  so.server_name = "wafleet-graph-emulator";
  http::Server server(so, [&](http::Request&& req, http::Responder respond) {
    emu.handle(std::move(req), std::move(respond));
  });
  if (auto st = server.start(); !st) {
    std::cerr << "wafleet-graph-emulator: " << st.error().message << "\n";
    return 1;
  }
  const std::string base = s.get("public-base").empty()
                               ? "http://" + listen->host + ":" + std::to_string(server.port())
                               : s.get("public-base");
  emu.set_public_base(base);
  config::write_port_file(s.get("port-file"), server.port());
  log::info("worker.started", {{"listen", listen->host + ":" + std::to_string(server.port())},
                               {"public_base", base}});
  runtime::wait_for_shutdown_signal();
  server.stop();
  log::info("worker.stopped");
  return 0;
}
