#pragma once
// A Boost.Beast HTTP/1.1 server: keep-alive, body limit (413), read timeout, N I/O threads.
// The handler is pure request -> response logic (Beast example/http/server/async) and may answer
// later from any thread through the Responder: the receiver answers only after Kafka acks.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/beast/http.hpp>

#include "common/error.h"

namespace wafleet::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
// Call exactly once, from any thread.
using Responder = std::function<void(Response)>;
using Handler = std::function<void(Request&&, Responder)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port; see Server::port()
  int threads = 1;
  uint64_t body_limit = 4 * 1024 * 1024;
  int read_timeout_seconds = 30;
  std::string server_name = "wafleet";
};

// Lifecycle: construct, start() (binds, spawns threads), stop() or destructor (joins).
class Server {
 public:
  Server(ServerOptions options, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Status start();
  // Stops accepting, waits up to drain for answers still owed, then stops the I/O threads.
  void stop(std::chrono::milliseconds drain = std::chrono::milliseconds(5000));
  uint16_t port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

// Helpers for handlers.
Response make_response(const Request& req, unsigned status, std::string body,
                       const std::string& content_type = "text/plain");
Response make_json_response(const Request& req, unsigned status, const std::string& json);

// 0-15 for a hex digit, -1 for anything else.
int hex_digit(char c);
// Every byte but RFC 3986's unreserved characters as %XX (and '/' kept when keep_slash: a path).
std::string percent_encode(std::string_view s, bool keep_slash = false);
// %XX and '+' decoded (a malformed escape is kept as it is).
std::string percent_decode(std::string_view s);
// A query parameter of the request's target by exact name ("hub.mode"); "" when absent.
std::string query_param(const Request& req, const std::string& name);
// The target without its query string.
std::string target_path(const Request& req);

}  // namespace wafleet::http
