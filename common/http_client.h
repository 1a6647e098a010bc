#pragma once
// A blocking libcurl client for the few outbound calls that are not on a hot path (SNS
// certificates, subscription confirmation, the CLI). One easy handle per call.
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace wafleet::http {

struct ClientResponse {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Result<ClientResponse> fetch(const std::string& method, const std::string& url,
                             const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::string& body, std::chrono::milliseconds timeout);

}  // namespace wafleet::http
