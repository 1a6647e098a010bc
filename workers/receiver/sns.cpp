#include "workers/receiver/sns.h"

#include <regex>

#include "common/json_util.h"

namespace wafleet::receiver {

Expected<SnsMessage, std::string> parse_sns(std::string_view body) {
  auto doc = json::parse(body);
  if (doc.is_discarded() || !doc.is_object()) {
    return Unexpected(std::string("SNS body is not a JSON object"));
  }
  SnsMessage m;
  m.type = json::str(doc, "Type");
  m.message_id = json::str(doc, "MessageId");
  m.topic_arn = json::str(doc, "TopicArn");
  m.has_subject = json::field(doc, "Subject") != nullptr && doc["Subject"].is_string();
  m.subject = json::str(doc, "Subject");
  m.message = json::str(doc, "Message");
  m.timestamp = json::str(doc, "Timestamp");
  m.signature_version = json::str(doc, "SignatureVersion");
  m.signature = json::str(doc, "Signature");
  m.signing_cert_url = json::str(doc, "SigningCertURL");
  if (m.signing_cert_url.empty()) {
    m.signing_cert_url = json::str(doc, "SigningCertUrl");  // Lambda's spelling
  }
  m.subscribe_url = json::str(doc, "SubscribeURL");
  m.token = json::str(doc, "Token");
  if (m.type.empty() || m.message_id.empty()) {
    return Unexpected(std::string("SNS body lacks Type or MessageId"));
  }
  if (m.type != "Notification" && m.type != "SubscriptionConfirmation" &&
      m.type != "UnsubscribeConfirmation") {
    return Unexpected("unknown SNS Type '" + m.type + "'");
  }
  return m;
}

std::string sns_string_to_sign(const SnsMessage& m) {
  std::string out;
  auto add = [&](const char* k, const std::string& v) {
    out += k;
    out += '\n';
    out += v;
    out += '\n';
  };
  if (m.type == "Notification") {
    add("Message", m.message);
    add("MessageId", m.message_id);
    if (m.has_subject) {
      add("Subject", m.subject);
    }
    add("Timestamp", m.timestamp);
    add("TopicArn", m.topic_arn);
    add("Type", m.type);
  } else {
    add("Message", m.message);
    add("MessageId", m.message_id);
    add("SubscribeURL", m.subscribe_url);
    add("Timestamp", m.timestamp);
    add("Token", m.token);
    add("TopicArn", m.topic_arn);
    add("Type", m.type);
  }
  return out;
}

std::string sns_digest(const SnsMessage& m) {
  if (m.signature_version == "1") {
    return "sha1";
  }
  if (m.signature_version == "2") {
    return "sha256";
  }
  return "";
}

bool sns_url_allowed(std::string_view url, std::string_view host_regex, bool require_pem,
                     bool allow_http) {
  std::string u(url);
  std::string rest;
  if (u.rfind("https://", 0) == 0) {
    rest = u.substr(8);
  } else if (allow_http && u.rfind("http://", 0) == 0) {
    rest = u.substr(7);
  } else {
    return false;
  }
  auto slash = rest.find('/');
  std::string host = slash == std::string::npos ? rest : rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (host.find('@') != std::string::npos) {
    return false;  // no userinfo tricks
  }
  if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  if (auto q = path.find('?'); q != std::string::npos && require_pem) {
    path = path.substr(0, q);
  }
  if (require_pem && (path.size() < 4 || path.substr(path.size() - 4) != ".pem")) {
    return false;
  }
  try {
    return std::regex_match(host, std::regex(std::string(host_regex)));
  } catch (const std::regex_error&) {
    return false;
  }
}

}  // namespace wafleet::receiver
