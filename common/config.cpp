#include "common/config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

extern char** environ;

namespace wafleet::config {

std::string env_name(const std::string& option_name) {
  std::string out = "WAFLEET_";
  for (char c : option_name) {
    out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::vector<Option> common_options() {
  return {
      {"kafka-brokers", "", "Kafka bootstrap list host:port[,host:port]", false, true},
      {"bootstrap-file", "", "read the Kafka bootstrap list from this file (dev broker)", false,
       false},
      {"redis-url", "redis://127.0.0.1:6379/0", "Redis URL redis://host:port/db", false, false},
      {"admin-listen", "127.0.0.1:0", "metrics/health host:port (port 0 picks a free one)", false,
       false},
      {"group-id", "", "Kafka consumer group id", false, false},
      {"log-level", "info", "trace|debug|info|warn|error", false, false},
      {"log-phone-numbers", "false", "log phone numbers unredacted (never in production)", false,
       false},
  };
}

std::string Settings::get(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::string{} : it->second;
}

bool Settings::has(const std::string& name) const {
  auto it = values_.find(name);
  return it != values_.end() && !it->second.empty();
}

int64_t Settings::get_int(const std::string& name, std::vector<std::string>& errors) const {
  const std::string v = get(name);
  try {
    size_t used = 0;
    int64_t n = std::stoll(v, &used);
    if (used == v.size()) {
      return n;
    }
  } catch (const std::exception&) {
  }
  errors.push_back(env_name(name) + ": expected an integer, got '" + v + "'");
  return 0;
}

bool Settings::get_bool(const std::string& name, std::vector<std::string>& errors) const {
  std::string v = get(name);
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  if (v == "1" || v == "true" || v == "yes" || v == "on") {
    return true;
  }
  if (v == "0" || v == "false" || v == "no" || v == "off" || v.empty()) {
    return false;
  }
  errors.push_back(env_name(name) + ": expected true or false, got '" + v + "'");
  return false;
}

std::vector<std::pair<std::string, std::string>> Settings::redacted() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, v] : values_) {
    auto it = secret_.find(k);
    bool secret = it != secret_.end() && it->second;
    out.emplace_back(k, secret && !v.empty() ? "***" : v);
  }
  for (const auto& [k, v] : kafka_props_) {
    bool secret = k.find("password") != std::string::npos ||
                  k.find("secret") != std::string::npos || k.find("key") != std::string::npos;
    out.emplace_back("kafka." + k, secret ? "***" : v);
  }
  return out;
}

namespace {

std::optional<std::string> read_file_trimmed(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

constexpr const char* kKafkaPrefix = "WAFLEET_KAFKA_";

}  // namespace

Expected<Settings, std::vector<std::string>> load(const std::vector<Option>& options,
                                                  const EnvMap& env,
                                                  const std::vector<std::string>& args) {
  std::vector<std::string> errors;
  Settings s = load_partial(options, env, args, errors);
  if (!errors.empty()) {
    return Unexpected(errors);
  }
  return s;
}

Settings load_partial(const std::vector<Option>& options, const EnvMap& env,
                      const std::vector<std::string>& args, std::vector<std::string>& errors) {
  Settings s;
  std::map<std::string, const Option*> by_name;
  for (const auto& o : options) {
    by_name[o.name] = &o;
    s.values_[o.name] = o.default_value;
    s.secret_[o.name] = o.secret;
  }
  // Environment.
  for (const auto& o : options) {
    const std::string name = env_name(o.name);
    if (auto it = env.find(name); it != env.end()) {
      s.values_[o.name] = it->second;
    }
    if (o.secret) {
      if (auto it = env.find(name + "_FILE"); it != env.end() && !it->second.empty()) {
        auto content = read_file_trimmed(it->second);
        if (!content) {
          errors.push_back(name + "_FILE: cannot read '" + it->second + "'");
        } else {
          s.values_[o.name] = *content;
        }
      }
    }
  }
  // librdkafka pass-through: WAFLEET_KAFKA_<property> where the property has a dot
  // (WAFLEET_KAFKA_BROKERS is our own option, not a property).
  for (const auto& [k, v] : env) {
    if (k.rfind(kKafkaPrefix, 0) == 0) {
      std::string prop = k.substr(std::string(kKafkaPrefix).size());
      if (prop.find('.') != std::string::npos) {
        s.kafka_props_[prop] = v;
      }
    }
  }
  // Flags.
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      errors.push_back("unexpected argument '" + a + "'");
      continue;
    }
    std::string name = a.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "kafka-prop") {
      if (!has_value && i + 1 < args.size()) {
        value = args[++i];
      }
      auto eq = value.find('=');
      if (eq == std::string::npos || eq == 0) {
        errors.push_back("--kafka-prop: expected property=value, got '" + value + "'");
      } else {
        s.kafka_props_[value.substr(0, eq)] = value.substr(eq + 1);
      }
      continue;
    }
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      errors.push_back("unknown flag --" + name);
      continue;
    }
    if (!has_value) {
      if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
        value = args[++i];
      } else {
        value = "true";  // a bare flag is a boolean switch
      }
    }
    s.values_[name] = value;
  }
  // The bootstrap file stands in for the broker list (dev broker writes it).
  if (by_name.count("kafka-brokers") != 0 && s.values_["kafka-brokers"].empty() &&
      !s.values_["bootstrap-file"].empty()) {
    auto content = read_file_trimmed(s.values_["bootstrap-file"]);
    if (!content || content->empty()) {
      errors.push_back(env_name("bootstrap-file") + ": cannot read '" +
                       s.values_["bootstrap-file"] + "'");
    } else {
      s.values_["kafka-brokers"] = *content;
    }
  }
  for (const auto& o : options) {
    if (o.required && s.values_[o.name].empty()) {
      errors.push_back(env_name(o.name) + " (--" + o.name + ") is required: " + o.help);
    }
  }
  return s;
}

EnvMap process_env() {
  EnvMap out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos && kv.rfind("WAFLEET_", 0) == 0) {
      out[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  return out;
}

std::string usage(const std::string& program, const std::vector<Option>& options) {
  std::ostringstream os;
  os << "usage: " << program << " [--flag value ...]\n"
     << "Every flag is also an environment variable; secrets also accept *_FILE.\n\n";
  for (const auto& o : options) {
    os << "  --" << o.name << " (" << env_name(o.name) << (o.secret ? ", *_FILE" : "") << ")\n"
       << "      " << o.help;
    if (!o.default_value.empty()) {
      os << " [default: " << o.default_value << "]";
    }
    os << "\n";
  }
  os << "  --kafka-prop property=value (WAFLEET_KAFKA_<property>)\n"
     << "      any librdkafka property, e.g. security.protocol=SASL_SSL\n";
  return os.str();
}

std::optional<HostPort> parse_host_port(const std::string& value, const std::string& name,
                                        std::vector<std::string>& errors) {
  auto colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    errors.push_back(env_name(name) + ": expected host:port, got '" + value + "'");
    return std::nullopt;
  }
  HostPort hp;
  hp.host = value.substr(0, colon);
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  const std::string port = value.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); }) ||
      std::stoul(port) > 65535) {
    errors.push_back(env_name(name) + ": bad port in '" + value + "'");
    return std::nullopt;
  }
  hp.port = static_cast<uint16_t>(std::stoul(port));
  return hp;
}

Settings load_args(const std::string& program, const std::vector<Option>& options, int argc,
                   char** argv, std::vector<std::string>& errors) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << usage(program, options);
      std::exit(0);
    }
  }
  return load_partial(options, process_env(), args, errors);
}

void write_port_file(const std::string& path, uint16_t port) {
  if (path.empty()) {
    return;
  }
  std::ofstream(path + ".tmp") << port << "\n";
  std::rename((path + ".tmp").c_str(), path.c_str());
}

void exit_if_invalid(const std::string& program, const std::vector<std::string>& errors) {
  if (errors.empty()) {
    return;
  }
  for (const auto& e : errors) {
    std::cerr << program << ": invalid config: " << e << "\n";
  }
  std::exit(2);
}

}  // namespace wafleet::config
