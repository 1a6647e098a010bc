#include "common/http_server.h"

#include <atomic>
#include <cctype>
#include <chrono>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>

#include "common/log.h"

namespace wafleet::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Response make_response(const Request& req, unsigned status, std::string body,
                       const std::string& content_type) {
  Response res{static_cast<bhttp::status>(status), req.version()};
  res.set(bhttp::field::content_type, content_type);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response make_json_response(const Request& req, unsigned status, const std::string& json) {
  return make_response(req, status, json, "application/json");
}

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, const Handler& handler, const ServerOptions& options,
          std::atomic<int>& active)
      : stream_(std::move(socket)), handler_(handler), options_(options), active_(active) {}

  void run() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&Session::do_read, shared_from_this()));
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->body_limit(options_.body_limit);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(std::chrono::seconds(options_.read_timeout_seconds));
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t /*bytes*/) {
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      return do_close();
    }
    if (ec == bhttp::error::body_limit) {
      Response res{bhttp::status::payload_too_large, 11};
      res.set(bhttp::field::content_type, "text/plain");
      res.body() = "request body exceeds " + std::to_string(options_.body_limit) + " bytes\n";
      res.keep_alive(false);
      res.prepare_payload();
      return write(std::move(res));
    }
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        Response res{bhttp::status::bad_request, 11};
        res.set(bhttp::field::content_type, "text/plain");
        res.body() = "malformed HTTP request: " + ec.message() + "\n";
        res.keep_alive(false);
        res.prepare_payload();
        return write(std::move(res));
      }
      return do_close();
    }
    stream_.expires_never();  // the handler may take a while (Kafka acks); no read is pending
    Request req = parser_->release();
    auto self = shared_from_this();
    ++active_;
    answering_ = true;
    handler_(std::move(req), [self](Response res) {
      // Hop back onto the session's strand, whichever thread answered.
      asio::post(self->stream_.get_executor(),
                 [self, r = std::move(res)]() mutable { self->write(std::move(r)); });
    });
  }

  void write(Response res) {
    res.set(bhttp::field::server, options_.server_name);
    auto sp = std::make_shared<Response>(std::move(res));
    const bool keep = sp->keep_alive();
    stream_.expires_after(std::chrono::seconds(options_.read_timeout_seconds));
    bhttp::async_write(stream_, *sp,
                       [self = shared_from_this(), sp, keep](beast::error_code ec, std::size_t) {
                         if (self->answering_) {
                           self->answering_ = false;
                           --self->active_;
                         }
                         if (ec || !keep) {
                           return self->do_close();
                         }
                         self->do_read();
                       });
  }

  void do_close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  const Handler& handler_;
  const ServerOptions& options_;
  std::atomic<int>& active_;  // requests handed to the handler and not yet answered
  bool answering_ = false;
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  Handler handler;
  asio::io_context ioc;
  tcp::acceptor acceptor{asio::make_strand(ioc)};
  std::vector<std::thread> threads;
  std::atomic<bool> stopped{false};
  std::atomic<int> active{0};

  void accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
          return;
        }
        log::warn("http.accept_failed", {{"reason", ec.message()}});
      } else {
        s.set_option(tcp::no_delay(true), ec);
        std::make_shared<Session>(std::move(s), handler, options, active)->run();
      }
      accept();
    });
  }
};

Server::Server(ServerOptions options, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

Server::~Server() { stop(std::chrono::milliseconds(0)); }

Status Server::start() {
  beast::error_code ec;
  auto addr = asio::ip::make_address(impl_->options.host, ec);
  if (ec) {
    return Unexpected(Error::fatal("bad listen address '" + impl_->options.host + "'"));
  }
  tcp::endpoint ep(addr, impl_->options.port);
  auto& acc = impl_->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) {
    acc.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acc.bind(ep, ec);
  }
  if (!ec) {
    acc.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return Unexpected(Error::fatal("listen on " + impl_->options.host + ":" +
                                   std::to_string(impl_->options.port) + ": " + ec.message()));
  }
  port_ = acc.local_endpoint().port();
  impl_->accept();
  for (int i = 0; i < std::max(1, impl_->options.threads); ++i) {
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
  return {};
}

void Server::stop(std::chrono::milliseconds drain) {
  if (impl_->stopped.exchange(true)) {
    return;
  }
  asio::post(impl_->acceptor.get_executor(), [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
  });
  // Let requests already handed to the handler get their answer (the receiver's wait for
  // Kafka acks), then stop the I/O threads.
  const auto deadline = std::chrono::steady_clock::now() + drain;
  while (impl_->active.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  impl_->ioc.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) {
      t.join();
    }
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string query_param(const Request& req, const std::string& name) {
  std::string_view target(req.target().data(), req.target().size());
  auto q = target.find('?');
  if (q == std::string_view::npos) {
    return {};
  }
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq)) == name) {
      return eq == std::string_view::npos ? std::string{} : percent_decode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(amp + 1);
  }
  return {};
}

std::string percent_encode(std::string_view s, bool keep_slash) {
  static constexpr const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string target_path(const Request& req) {
  std::string_view target(req.target().data(), req.target().size());
  return std::string(target.substr(0, target.find('?')));
}

}  // namespace wafleet::http
