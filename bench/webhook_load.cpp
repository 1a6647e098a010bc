// Closed-loop HTTP load: C keep-alive connections, each POSTing signed webhooks (every body a
// unique message, so each one is claimed in Redis and produced to Kafka) and waiting for the
// answer. Prints requests/s and latency percentiles. --noop starts an in-process no-op endpoint
// on the same HTTP server code and loads that instead: the ceiling of the HTTP layer here.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <CLI/CLI.hpp>

#include "common/crypto.h"
#include "common/http_server.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

std::string body_for(uint64_t n) {
  const std::string from = "1555" + std::to_string(1000000 + n % 5000);  // 5000 people
  return R"({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Load Test"},"wa_id":")" +
         from + R"("}],"messages":[{"from":")" + from + R"(","id":"wamid.LOAD)" +
         std::to_string(n) + "." + std::to_string(std::time(nullptr)) +
         R"(","timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},"field":"messages"}]}]})";
}

struct Shared {
  std::string host;
  std::string port;
  std::string path;
  std::string secret;
  std::vector<std::string> bodies;
  std::vector<std::string> signatures;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> ok{0};
  std::atomic<uint64_t> failed{0};
  Clock::time_point deadline;
  std::mutex mu;
  std::vector<double> latencies_ms;
};

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(asio::io_context& ioc, Shared& s) : stream_(ioc), shared_(s) {}
  void start(const tcp::resolver::results_type& eps) {
    stream_.async_connect(eps, [self = shared_from_this()](beast::error_code ec,
                                                           const tcp::endpoint&) {
      if (ec) {
        std::cerr << "connect: " << ec.message() << "\n";
        return;
      }
      self->send();
    });
  }

 private:
  void send() {
    if (Clock::now() >= shared_.deadline) {
      return;
    }
    const uint64_t n = shared_.next.fetch_add(1) % shared_.bodies.size();
    req_ = {bhttp::verb::post, shared_.path, 11};
    req_.set(bhttp::field::host, shared_.host);
    req_.set(bhttp::field::content_type, "application/json");
    req_.set("X-Hub-Signature-256", shared_.signatures[n]);
    req_.body() = shared_.bodies[n];
    req_.keep_alive(true);
    req_.prepare_payload();
    started_ = Clock::now();
    bhttp::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        ++self->shared_.failed;
        return;
      }
      self->res_ = {};
      bhttp::async_read(self->stream_, self->buffer_, self->res_,
                        [self](beast::error_code ec2, size_t) { self->on_read(ec2); });
    });
  }
  void on_read(beast::error_code ec) {
    if (ec) {
      ++shared_.failed;
      return;
    }
    const double ms =
        std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
    if (res_.result_int() == 200) {
      ++shared_.ok;
    } else {
      ++shared_.failed;
    }
    latencies_.push_back(ms);
    if (latencies_.size() >= 1024) {
      flush();
    }
    if (Clock::now() >= shared_.deadline) {
      flush();
      return;
    }
    send();
  }
  void flush() {
    std::lock_guard lock(shared_.mu);
    shared_.latencies_ms.insert(shared_.latencies_ms.end(), latencies_.begin(), latencies_.end());
    latencies_.clear();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  bhttp::request<bhttp::string_body> req_;
  bhttp::response<bhttp::string_body> res_;
  Shared& shared_;
  Clock::time_point started_;
  std::vector<double> latencies_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"webhook load generator"};
  std::string url_host = "127.0.0.1";
  std::string url_port = "8080";
  std::string path = "/webhook";
  std::string secret = "demo-app-secret";
  int connections = 64;
  int seconds = 10;
  int threads = 1;
  int unique = 200000;
  bool noop = false;
  int noop_threads = 2;
  app.add_option("--host", url_host);
  app.add_option("--port", url_port);
  app.add_option("--path", path);
  app.add_option("--secret", secret);
  app.add_option("--connections", connections);
  app.add_option("--seconds", seconds);
  app.add_option("--threads", threads, "client I/O threads");
  app.add_option("--unique", unique, "distinct bodies (beyond that they repeat as duplicates)");
  app.add_flag("--noop", noop, "load an in-process no-op endpoint of the same HTTP server");
  app.add_option("--noop-threads", noop_threads, "I/O threads of the no-op server");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<wafleet::http::Server> noop_server;
  if (noop) {
    wafleet::http::ServerOptions so;
    so.threads = noop_threads;
    noop_server = std::make_unique<wafleet::http::Server>(
        so, [](wafleet::http::Request&& req, wafleet::http::Responder respond) {
          respond(wafleet::http::make_response(req, 200, "ok\n"));
        });
    if (!noop_server->start()) {
      std::cerr << "cannot start the no-op server\n";
      return 1;
    }
    url_port = std::to_string(noop_server->port());
  }

  Shared s;
  s.host = url_host;
  s.port = url_port;
  s.path = path;
  s.secret = secret;
  for (int i = 0; i < unique; ++i) {
    s.bodies.push_back(body_for(static_cast<uint64_t>(i)));
    s.signatures.push_back("sha256=" + wafleet::crypto::hmac_sha256_hex(secret, s.bodies.back()));
  }
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  auto eps = resolver.resolve(url_host, url_port);
  const auto start = Clock::now();
  s.deadline = start + std::chrono::seconds(seconds);
  for (int i = 0; i < connections; ++i) {
    std::make_shared<Conn>(ioc, s)->start(eps);
  }
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) {
    pool.emplace_back([&] { ioc.run(); });
  }
  ioc.run();
  for (auto& t : pool) {
    t.join();
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  auto& l = s.latencies_ms;
  std::sort(l.begin(), l.end());
  auto pct = [&](double p) {
    return l.empty() ? 0.0 : l[std::min(l.size() - 1, static_cast<size_t>(p * static_cast<double>(l.size())))];
  };
  std::cout << "target=" << (noop ? "noop" : url_host + ":" + url_port + path)
            << " connections=" << connections << " seconds=" << elapsed << " ok=" << s.ok
            << " failed=" << s.failed << " rps=" << static_cast<double>(s.ok) / elapsed
            << " p50_ms=" << pct(0.50) << " p99_ms=" << pct(0.99) << " max_ms=" << pct(1.0)
            << "\n";
  return s.failed > 0 && s.ok == 0 ? 1 : 0;
}
