#pragma once
// Configuration: every setting is an environment variable WAFLEET_<NAME> and a flag --<name>;
// secrets may also come from WAFLEET_<NAME>_FILE. Loading is a pure function of an environment
// map and an argument list, so tests pass maps and never call setenv. All bad settings are
// reported at once, each on its own line.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/expected.h"

namespace wafleet::config {

using EnvMap = std::map<std::string, std::string>;

// One setting a worker understands.
struct Option {
  std::string name;           // flag name, e.g. "kafka-brokers"; env is WAFLEET_KAFKA_BROKERS
  std::string default_value;  // used when neither env nor flag sets it; "" means unset
  std::string help;
  bool secret = false;    // redacted when the effective config is logged; *_FILE accepted
  bool required = false;  // an empty value is an error
};

// The options every worker shares (Kafka, Redis, admin port, group id, log level).
std::vector<Option> common_options();

// Effective settings after env, *_FILE and flags were merged.
class Settings {
 public:
  std::string get(const std::string& name) const;
  bool has(const std::string& name) const;
  // Typed readers append to errors when the value does not parse.
  int64_t get_int(const std::string& name, std::vector<std::string>& errors) const;
  bool get_bool(const std::string& name, std::vector<std::string>& errors) const;
  // librdkafka properties passed through: WAFLEET_KAFKA_<prop.with.dots> and --kafka-prop k=v.
  const std::map<std::string, std::string>& kafka_properties() const { return kafka_props_; }
  // "name=value" lines with secrets replaced by "***", for the startup log.
  std::vector<std::pair<std::string, std::string>> redacted() const;

 private:
  friend Settings load_partial(const std::vector<Option>&, const EnvMap&,
                               const std::vector<std::string>&, std::vector<std::string>&);
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> secret_;
  std::map<std::string, std::string> kafka_props_;
};

std::string env_name(const std::string& option_name);

// Merges defaults < environment (< *_FILE for secrets) < flags ("--name=value" or "--name value").
// Unknown flags are errors; "--help" is handled by the caller before this.
Expected<Settings, std::vector<std::string>> load(const std::vector<Option>& options,
                                                  const EnvMap& env,
                                                  const std::vector<std::string>& args);
// The same, appending problems to errors and returning what could be read, so a worker can
// add its own checks and report everything in one go.
Settings load_partial(const std::vector<Option>& options, const EnvMap& env,
                      const std::vector<std::string>& args, std::vector<std::string>& errors);

// The process environment as a map (only WAFLEET_* names).
EnvMap process_env();

// Prints usage for --help.
std::string usage(const std::string& program, const std::vector<Option>& options);

// host:port split with validation; errors appended.
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
std::optional<HostPort> parse_host_port(const std::string& value, const std::string& name,
                                        std::vector<std::string>& errors);

// Loads settings from argv and the process environment (--help prints usage, exits 0);
// problems are appended to errors.
Settings load_args(const std::string& program, const std::vector<Option>& options, int argc,
                   char** argv, std::vector<std::string>& errors);
// Prints each error as "program: invalid config: reason" and exits 2, if there are any.
void exit_if_invalid(const std::string& program, const std::vector<std::string>& errors);

// Writes "PORT\n" to path atomically (tmp + rename), for tests and scripts; no-op if path is "".
void write_port_file(const std::string& path, uint16_t port);

}  // namespace wafleet::config
