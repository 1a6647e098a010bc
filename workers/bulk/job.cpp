#include "workers/bulk/job.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <set>
#include <unordered_map>

#include "common/crypto.h"
#include "common/json_util.h"
#include "common/text.h"

namespace wafleet::bulk {

using Json = nlohmann::json;

namespace {

constexpr const char* kStateNames[] = {"PENDING", "SCHEDULED", "IN_PROGRESS", "PAUSED",
                                       "COMPLETED", "CANCELLED", "FAILED"};
constexpr const char* kStatusNames[] = {"pending", "sending", "waiting", "sent", "delivered",
                                        "read", "failed", "skipped", "cancelled"};

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// RFC 4180 with a header row; blank lines are skipped.
Expected<Table, std::string> read_csv(const std::string& text) {
  std::vector<std::vector<std::string>> records;
  std::vector<size_t> lines;
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;
  bool field_started = false;
  size_t line = 1;
  size_t record_line = 1;
  auto end_field = [&] {
    fields.push_back(std::move(field));
    field.clear();
    field_started = false;
  };
  auto end_record = [&] {
    end_field();
    const bool blank = fields.size() == 1 && trim(fields[0]).empty();
    if (!blank) {
      records.push_back(std::move(fields));
      lines.push_back(record_line);
    }
    fields.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') {
          ++line;
        }
        field += c;
      }
      continue;
    }
    if (c == '"' && !field_started) {
      quoted = true;
      field_started = true;
    } else if (c == ',') {
      end_field();
    } else if (c == '\r') {
      // CRLF: the \n ends the record.
    } else if (c == '\n') {
      end_record();
      ++line;
      record_line = line;
    } else {
      field += c;
      field_started = true;
    }
  }
  if (quoted) {
    return Unexpected("line " + std::to_string(record_line) + ": a quoted field is never closed");
  }
  if (!field.empty() || !fields.empty()) {
    end_record();
  }
  if (records.empty()) {
    return Unexpected(std::string("the file is empty"));
  }
  std::vector<std::string> header;
  for (const auto& h : records[0]) {
    std::string name = trim(h);
    if (header.empty() && name.rfind("\xEF\xBB\xBF", 0) == 0) {
      name = name.substr(3);  // a byte-order mark, as spreadsheets write
    }
    header.push_back(name);
  }
  if (std::find(header.begin(), header.end(), "to") == header.end()) {
    return Unexpected(std::string("the header row has no 'to' column"));
  }
  std::set<std::string> seen;
  for (const auto& h : header) {
    if (h.empty()) {
      return Unexpected(std::string("the header row has an empty column name"));
    }
    if (!seen.insert(h).second) {
      return Unexpected("the header row names '" + h + "' twice");
    }
  }
  Table t;
  for (size_t r = 1; r < records.size(); ++r) {
    if (records[r].size() > header.size()) {
      return Unexpected("line " + std::to_string(lines[r]) + ": " +
                        std::to_string(records[r].size()) + " fields, the header has " +
                        std::to_string(header.size()));
    }
    std::map<std::string, std::string> row;
    for (size_t c = 0; c < records[r].size(); ++c) {
      row[header[c]] = trim(records[r][c]);
    }
    t.rows.push_back(std::move(row));
    t.lines.push_back(lines[r]);
  }
  return t;
}

Expected<std::map<std::string, std::string>, std::string> json_row(const Json& o) {
  if (!o.is_object()) {
    return Unexpected(std::string("expected an object"));
  }
  std::map<std::string, std::string> row;
  for (const auto& [k, v] : o.items()) {
    if (v.is_string()) {
      row[k] = trim(v.get<std::string>());
    } else if (v.is_number_integer() || v.is_number_unsigned()) {
      row[k] = v.dump();
    } else if (v.is_null()) {
      continue;
    } else if (v.is_object() && (k == "body" || k == "header" || k == "button")) {
      // {"body": {"1": "Ana"}} is the same as {"body.1": "Ana"}.
      for (const auto& [sub, sv] : v.items()) {
        if (!sv.is_string() && !sv.is_number()) {
          return Unexpected(k + "." + sub + ": expected a string");
        }
        row[k + "." + sub] = sv.is_string() ? trim(sv.get<std::string>()) : sv.dump();
      }
    } else if (v.is_array() && k == "body") {
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string() && !v[i].is_number()) {
          return Unexpected("body[" + std::to_string(i) + "]: expected a string");
        }
        row["body." + std::to_string(i + 1)] =
            v[i].is_string() ? trim(v[i].get<std::string>()) : v[i].dump();
      }
    } else {
      return Unexpected(k + ": expected a string");
    }
  }
  return row;
}

Expected<Table, std::string> read_json(const std::string& text) {
  Table t;
  auto whole = json::parse(text);
  if (!whole.is_discarded()) {
    if (!whole.is_array()) {
      whole = Json::array({whole});
    }
    for (size_t i = 0; i < whole.size(); ++i) {
      auto row = json_row(whole[i]);
      if (!row) {
        return Unexpected("element " + std::to_string(i + 1) + ": " + row.error());
      }
      t.rows.push_back(std::move(*row));
      t.lines.push_back(i + 1);
    }
    return t;
  }
  // One object per line (JSON Lines).
  size_t line = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) {
      end = text.size();
    }
    ++line;
    const std::string one = trim(text.substr(start, end - start));
    start = end + 1;
    if (one.empty()) {
      continue;
    }
    auto j = json::parse(one);
    if (j.is_discarded()) {
      return Unexpected("line " + std::to_string(line) + ": not JSON");
    }
    auto row = json_row(j);
    if (!row) {
      return Unexpected("line " + std::to_string(line) + ": " + row.error());
    }
    t.rows.push_back(std::move(*row));
    t.lines.push_back(line);
  }
  return t;
}

// Canada and the NANP members that are not the United States (US territories stay US).
const std::set<std::string>& non_us_nanp() {
  static const std::set<std::string> k = {
      // Canada
      "204", "226", "236", "249", "250", "257", "263", "289", "306", "343", "354", "365", "367",
      "368", "382", "387", "403", "416", "418", "428", "431", "437", "438", "450", "460", "468",
      "474", "506", "514", "519", "548", "579", "581", "584", "587", "600", "604", "613", "622",
      "639", "647", "672", "683", "705", "709", "742", "753", "778", "780", "782", "807", "819",
      "825", "867", "873", "879", "902", "905", "942",
      // Caribbean and Atlantic members
      "242", "246", "264", "268", "284", "345", "441", "473", "649", "658", "664", "721", "758",
      "767", "784", "809", "829", "849", "868", "869", "876"};
  return k;
}

// Big-endian readers for TZif.
int64_t be(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    v = (v << 8) | p[i];
  }
  if (n == 4) {
    return static_cast<int32_t>(static_cast<uint32_t>(v));
  }
  return static_cast<int64_t>(v);
}

// The UTC offset (seconds) of a TZif file at a time. Debian's zoneinfo is "fat" (transitions to
// 2037), so the last transition's type is right past the table too.
Expected<int, std::string> tzif_offset(const std::string& bytes, int64_t at_s) {
  const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 44 || std::memcmp(d, "TZif", 4) != 0) {
    return Unexpected(std::string("not a TZif file"));
  }
  auto counts = [&](size_t at, int64_t c[6]) {
    for (int i = 0; i < 6; ++i) {
      c[i] = be(d + at + 20 + 4 * i, 4);
    }
  };
  int64_t c[6];
  counts(0, c);
  size_t pos = 44;
  int tsize = 4;
  if (d[4] >= '2') {
    // Skip the v1 block; the v2 block has 64-bit times.
    pos += static_cast<size_t>(c[3] * 4 + c[3] + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0]);
    if (pos + 44 > n) {
      return Unexpected(std::string("truncated TZif file"));
    }
    counts(pos, c);
    pos += 44;
    tsize = 8;
  }
  const int64_t timecnt = c[3];
  const int64_t typecnt = c[4];
  const size_t need = pos + static_cast<size_t>(timecnt * tsize + timecnt + typecnt * 6);
  if (typecnt <= 0 || need > n) {
    return Unexpected(std::string("truncated TZif file"));
  }
  const unsigned char* times = d + pos;
  const unsigned char* idx = times + timecnt * tsize;
  const unsigned char* types = idx + timecnt;
  size_t type = 0;
  for (int64_t i = 0; i < timecnt; ++i) {
    if (be(times + i * tsize, tsize) > at_s) {
      break;
    }
    type = idx[i];
  }
  if (timecnt == 0 || be(times, tsize) > at_s) {
    type = 0;
  }
  if (static_cast<int64_t>(type) >= typecnt) {
    return Unexpected(std::string("corrupt TZif file"));
  }
  return static_cast<int>(be(types + type * 6, 4));
}

}  // namespace

const char* to_string(State s) { return kStateNames[static_cast<int>(s)]; }
std::optional<State> parse_state(const std::string& s) {
  for (int i = 0; i < 7; ++i) {
    if (s == kStateNames[i]) {
      return static_cast<State>(i);
    }
  }
  return std::nullopt;
}
bool terminal(State s) {
  return s == State::kCompleted || s == State::kCancelled || s == State::kFailed;
}
const char* to_string(Phase s) { return kStatusNames[static_cast<int>(s)]; }
std::optional<Phase> parse_phase(const std::string& s) {
  for (int i = 0; i < 9; ++i) {
    if (s == kStatusNames[i]) {
      return static_cast<Phase>(i);
    }
  }
  return std::nullopt;
}
bool final_phase(Phase s) {
  return s == Phase::kFailed || s == Phase::kSkipped || s == Phase::kCancelled;
}

Json JobSpec::to_json() const {
  return {{"id", id},
          {"name", name},
          {"phone_number_id", phone_number_id},
          {"template", template_name},
          {"language", language},
          {"category", category},
          {"schedule_ms", schedule_ms},
          {"quiet_hours", quiet_hours}};
}

std::string new_job_id() { return "bj_" + crypto::random_hex(8); }
bool valid_job_id(const std::string& id) {
  return id.size() == 19 && id.rfind("bj_", 0) == 0 &&
         std::all_of(id.begin() + 3, id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Expected<Table, std::string> read_table(const std::string& text) {
  size_t i = 0;
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) {
    i = 3;
  }
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) != 0) {
    ++i;
  }
  if (i == text.size()) {
    return Unexpected(std::string("the file is empty"));
  }
  if (text[i] == '[' || text[i] == '{') {
    return read_json(text.substr(i));
  }
  return read_csv(text);
}

Json Recipient::to_json() const {
  if (erased) {
    return {{"l", line}, {"x", 1}};
  }
  Json j = {{"l", line}, {"c", components}};
  if (!to.empty()) {
    j["to"] = to;
  }
  if (!recipient.empty()) {
    j["u"] = recipient;
  }
  if (!tz.empty()) {
    j["tz"] = tz;
  }
  return j;
}

Expected<Recipient, std::string> Recipient::from_json(const Json& j) {
  if (!j.is_object()) {
    return Unexpected(std::string("recipient: not an object"));
  }
  Recipient r;
  r.line = static_cast<size_t>(json::int_or(j, "l", 0));
  if (json::int_or(j, "x", 0) != 0) {
    r.erased = true;
    return r;
  }
  r.to = json::str(j, "to");
  r.recipient = json::str(j, "u");
  r.tz = json::str(j, "tz");
  r.components = json::arr(j, "c");
  if (r.to.empty() && r.recipient.empty()) {
    return Unexpected(std::string("recipient: neither to nor u"));
  }
  return r;
}

Json Rejected::to_json() const {
  return {{"line", line}, {"to", to}, {"reason", reason}, {"detail", detail}};
}

std::optional<std::string> normalize_phone(const std::string& raw) {
  std::string s = trim(raw);
  std::string digits;
  bool plus = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isdigit(c) != 0) {
      digits += static_cast<char>(c);
    } else if (c == '+' && digits.empty() && !plus) {
      plus = true;
    } else if (c == ' ' || c == '-' || c == '(' || c == ')' || c == '.') {
      continue;
    } else {
      return std::nullopt;
    }
  }
  if (!plus && digits.rfind("00", 0) == 0) {
    digits = digits.substr(2);  // the international prefix many countries dial
  }
  if (digits.size() < 8 || digits.size() > 15 || digits[0] == '0') {
    return std::nullopt;
  }
  return digits;
}

bool is_bsuid(const std::string& s) {
  // CC.<digits>, or the parent form CC.ENT.<digits> (docs/reference/whatsapp-contract.md §1.5).
  if (s.size() < 4 || s.size() > 256 || std::isupper(static_cast<unsigned char>(s[0])) == 0 ||
      std::isupper(static_cast<unsigned char>(s[1])) == 0 || s[2] != '.') {
    return false;
  }
  std::string rest = s.substr(3);
  if (rest.rfind("ENT.", 0) == 0) {
    rest = rest.substr(4);
  }
  return all_digits(rest);
}

bool is_us_number(const std::string& digits) {
  return digits.size() == 11 && digits[0] == '1' && non_us_nanp().count(digits.substr(1, 3)) == 0;
}

Expected<Json, std::string> components_for(const std::map<std::string, std::string>& row) {
  std::map<int, std::string> positional;
  std::vector<std::pair<std::string, std::string>> named;
  std::optional<Json> header;
  std::map<int, std::string> buttons;
  for (const auto& [col, value] : row) {
    if (col == "to" || col == "tz" || col == "name") {
      continue;
    }
    const size_t dot = col.find('.');
    const std::string group = col.substr(0, dot);
    const std::string sub = dot == std::string::npos ? "" : col.substr(dot + 1);
    if (group != "body" && group != "header" && group != "button") {
      return Unexpected("column '" + col + "': not to, tz, body.N, body.<name>, header.<type> "
                        "or button.N");
    }
    if (sub.empty()) {
      return Unexpected("column '" + col + "': needs a part after the dot");
    }
    if (value.empty()) {
      return Unexpected("column '" + col + "' is empty");
    }
    if (group == "body") {
      if (value.size() > 1024) {
        return Unexpected("column '" + col + "': over 1024 characters");
      }
      if (value.find('\n') != std::string::npos || value.find('\t') != std::string::npos ||
          value.find("    ") != std::string::npos) {
        // Meta refuses parameters with new lines, tabs or more than 4 spaces (132018).
        return Unexpected("column '" + col + "': new lines, tabs and 4 spaces in a row are refused by Meta");
      }
      if (all_digits(sub)) {
        const int n = std::stoi(sub.substr(0, 4));
        if (n < 1) {
          return Unexpected("column '" + col + "': positions start at 1");
        }
        positional[n] = value;
      } else {
        for (unsigned char ch : sub) {
          if (std::islower(ch) == 0 && std::isdigit(ch) == 0 && ch != '_') {
            return Unexpected("column '" + col + "': a named parameter is lower case letters, "
                              "digits and _");
          }
        }
        named.emplace_back(sub, value);
      }
    } else if (group == "header") {
      if (header) {
        return Unexpected(std::string("more than one header column"));
      }
      if (sub == "text") {
        header = Json{{"type", "text"}, {"text", value}};
      } else if (sub == "image" || sub == "video" || sub == "document") {
        if (value.rfind("https://", 0) != 0 && value.rfind("http://", 0) != 0) {
          return Unexpected("column '" + col + "': expected an http(s) link");
        }
        header = Json{{"type", sub}, {sub, {{"link", value}}}};
      } else {
        return Unexpected("column '" + col + "': header.text, header.image, header.video or "
                          "header.document");
      }
    } else {
      if (!all_digits(sub) || sub.size() > 1 || std::stoi(sub) > 9) {
        return Unexpected("column '" + col + "': button index 0..9");
      }
      buttons[std::stoi(sub)] = value;
    }
  }
  if (!positional.empty() && !named.empty()) {
    return Unexpected(std::string("positional (body.1) and named (body.<name>) parameters mixed"));
  }
  if (!positional.empty() && positional.rbegin()->first != static_cast<int>(positional.size())) {
    return Unexpected("body parameters are not 1.." + std::to_string(positional.size()) +
                      " without gaps");
  }
  Json components = Json::array();
  if (header) {
    components.push_back({{"type", "header"}, {"parameters", Json::array({*header})}});
  }
  if (!positional.empty() || !named.empty()) {
    Json params = Json::array();
    for (const auto& [n, v] : positional) {
      params.push_back({{"type", "text"}, {"text", v}});
    }
    for (const auto& [name, v] : named) {
      params.push_back({{"type", "text"}, {"parameter_name", name}, {"text", v}});
    }
    components.push_back({{"type", "body"}, {"parameters", params}});
  }
  for (const auto& [index, suffix] : buttons) {
    components.push_back({{"type", "button"},
                          {"sub_type", "url"},
                          {"index", std::to_string(index)},
                          {"parameters", Json::array({{{"type", "text"}, {"text", suffix}}})}});
  }
  return components;
}

Validated validate(const Table& table, const JobSpec& spec) {
  Validated v;
  v.rows = table.rows.size();
  std::unordered_map<std::string, size_t> first_line;
  auto reject = [&](size_t line, const std::string& to, const std::string& reason,
                    const std::string& detail) {
    v.rejected.push_back({line, to, reason, detail});
    ++v.rejected_by_reason[reason];
  };
  for (size_t i = 0; i < table.rows.size(); ++i) {
    const auto& row = table.rows[i];
    const size_t line = i < table.lines.size() ? table.lines[i] : i + 1;
    auto it = row.find("to");
    const std::string raw = it == row.end() ? "" : it->second;
    Recipient r;
    r.line = line;
    if (is_bsuid(raw)) {
      r.recipient = raw;
      if (spec.category == "authentication") {
        reject(line, raw, "invalid_recipient", "authentication templates cannot go to a BSUID (131062)");
        continue;
      }
    } else if (auto p = normalize_phone(raw)) {
      r.to = *p;
    } else {
      reject(line, raw, "invalid_recipient",
             raw.empty() ? "no recipient" : "not a phone number (E.164) or a business-scoped user id");
      continue;
    }
    if (auto tz = row.find("tz"); tz != row.end() && !tz->second.empty()) {
      if (auto off = utc_offset_minutes(tz->second, 0); !off) {
        reject(line, raw, "invalid_tz", off.error());
        continue;
      }
      r.tz = tz->second;
    }
    auto comps = components_for(row);
    if (!comps) {
      reject(line, raw, "invalid_parameter", comps.error());
      continue;
    }
    r.components = std::move(*comps);
    auto [seen, fresh] = first_line.emplace(r.identity(), line);
    if (!fresh) {
      reject(line, raw, "duplicate", "same person as line " + std::to_string(seen->second));
      continue;
    }
    if (spec.category == "marketing" && !r.to.empty() && is_us_number(r.to)) {
      reject(line, raw, "us_marketing",
             "Meta does not deliver marketing templates to US numbers (since April 2025)");
      continue;
    }
    v.recipients.push_back(std::move(r));
  }
  return v;
}

std::string attempt_key(const std::string& job, size_t index, int attempt) {
  std::string k = "bulk:" + job + ":" + std::to_string(index);
  if (attempt > 1) {
    k += ":r" + std::to_string(attempt);
  }
  return k;
}

std::optional<AttemptRef> parse_attempt_key(const std::string& key) {
  if (key.rfind("bulk:", 0) != 0) {
    return std::nullopt;
  }
  const size_t a = key.find(':', 5);
  if (a == std::string::npos) {
    return std::nullopt;
  }
  AttemptRef ref;
  ref.job = key.substr(5, a - 5);
  const size_t b = key.find(':', a + 1);
  const std::string index = key.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  if (!valid_job_id(ref.job) || !all_digits(index) || index.size() > 9) {
    return std::nullopt;
  }
  ref.index = std::stoul(index);
  if (b != std::string::npos) {
    const std::string r = key.substr(b + 1);
    if (r.size() < 2 || r[0] != 'r' || !all_digits(r.substr(1)) || r.size() > 6) {
      return std::nullopt;
    }
    ref.attempt = std::stoi(r.substr(1));
  }
  return ref;
}

std::string callback_data(const std::string& job, size_t index, int attempt) {
  return "wafleet-" + attempt_key(job, index, attempt);
}

std::optional<AttemptRef> parse_callback_data(const std::string& data) {
  if (data.rfind("wafleet-bulk:", 0) != 0) {
    return std::nullopt;
  }
  return parse_attempt_key(data.substr(8));
}

std::string conversation_key(const JobSpec& spec, const Recipient& r) {
  return spec.phone_number_id + ":" + r.identity();
}

Json outbound_request(const JobSpec& spec, const Recipient& r, size_t index, int attempt) {
  const std::string key = attempt_key(spec.id, index, attempt);
  Json tmpl = {{"name", spec.template_name}, {"language", {{"code", spec.language}}}};
  if (!r.components.empty()) {
    tmpl["components"] = r.components;
  }
  Json j = {{"request_id", key},
            {"idempotency_key", key},
            {"phone_number_id", spec.phone_number_id},
            {"priority", "bulk"},
            {"type", "template"},
            {"template", tmpl},
            {"biz_opaque_callback_data", callback_data(spec.id, index, attempt)},
            {"wafleet", {{"bulk_job", spec.id}, {"recipient_index", index}, {"attempt", attempt}}}};
  if (!r.to.empty()) {
    j["to"] = r.to;
  } else {
    j["recipient"] = r.recipient;
  }
  return j;
}

Classified classify(int code) {
  switch (code) {
    case 131048:
      return {Action::kPauseJob, "131048 spam rate limit: Meta restricted the number's sends"};
    case 368:
      return {Action::kPauseJob, "368 the account is restricted for policy violations"};
    case 131031:
      return {Action::kPauseJob, "131031 the business account is locked"};
    case 190:
      return {Action::kPauseJob, "190 the access token is invalid or expired"};
    case 10:
      return {Action::kPauseJob, "10 permission denied"};
    case 200:
      return {Action::kPauseJob, "200 permission denied"};
    case 131042:
      return {Action::kPauseJob, "131042 payment problem on the business account"};
    case 132015:
      return {Action::kPauseJob, "132015 the template is paused"};
    case 132016:
      return {Action::kPauseJob, "132016 the template is disabled"};
    case 4:
    case 80007:
      return {Action::kBackOff, std::to_string(code) + " the number's or app's rate limit was hit"};
    case 131057:
      return {Action::kBackOff, "131057 the account is in maintenance mode"};
    case 131026:
      return {Action::kSkip, "131026 the message is undeliverable to this person"};
    case 131050:
      return {Action::kSkip, "131050 the person stopped marketing messages"};
    case 130472:
      return {Action::kSkip, "130472 the person is part of a Meta experiment"};
    case 100:
    case 131008:
    case 131009:
    case 132000:
    case 132005:
    case 132007:
    case 132012:
    case 132018:
      return {Action::kSkip, std::to_string(code) + " the template's parameters were refused"};
    case 131062:
      return {Action::kSkip, "131062 authentication templates cannot go to a BSUID"};
    case 130429:
      return {Action::kRetryLater, "130429 throughput exceeded"};
    case 131056:
      return {Action::kRetryLater, "131056 too many messages to this person"};
    case 131000:
    case 1:
    case 2:
    case 131016:
    case 133004:
    case 0:
      return {Action::kRetryLater, std::to_string(code) + " a temporary error at Meta"};
    case 131049:
      return {Action::kRetryMuchLater,
              "131049 Meta held it back to keep the ecosystem healthy (per-user marketing limit)"};
    case 132001:
      return {Action::kFailJob, "132001 the template does not exist in this language"};
    default:
      return {Action::kFail, std::to_string(code) + " refused by Meta"};
  }
}

const char* to_string(Action a) {
  switch (a) {
    case Action::kPauseJob:
      return "pause_job";
    case Action::kBackOff:
      return "back_off";
    case Action::kSkip:
      return "skip";
    case Action::kRetryLater:
      return "retry_later";
    case Action::kRetryMuchLater:
      return "retry_much_later";
    case Action::kFailJob:
      return "fail_job";
    case Action::kFail:
      return "fail";
  }
  return "fail";
}

Expected<QuietHours, std::string> parse_quiet_hours(const std::string& s) {
  auto hm = [](const std::string& p) -> std::optional<int> {
    if (p.size() != 5 || p[2] != ':' || !all_digits(p.substr(0, 2)) || !all_digits(p.substr(3))) {
      return std::nullopt;
    }
    const int h = std::stoi(p.substr(0, 2));
    const int m = std::stoi(p.substr(3));
    if (h > 23 || m > 59) {
      return std::nullopt;
    }
    return h * 60 + m;
  };
  const size_t dash = s.find('-');
  if (dash == std::string::npos) {
    return Unexpected("quiet hours '" + s + "': expected HH:MM-HH:MM");
  }
  auto a = hm(s.substr(0, dash));
  auto b = hm(s.substr(dash + 1));
  if (!a || !b || *a == *b) {
    return Unexpected("quiet hours '" + s + "': expected HH:MM-HH:MM, two different times");
  }
  return QuietHours{*a, *b};
}

Expected<int, std::string> utc_offset_minutes(const std::string& tz, int64_t at_ms) {
  if (tz == "UTC" || tz == "Z" || tz == "GMT") {
    return 0;
  }
  if ((tz[0] == '+' || tz[0] == '-') && tz.size() == 6 && tz[3] == ':' &&
      all_digits(tz.substr(1, 2)) && all_digits(tz.substr(4))) {
    const int h = std::stoi(tz.substr(1, 2));
    const int m = std::stoi(tz.substr(4));
    if (h > 14 || m > 59) {
      return Unexpected("time zone '" + tz + "': offset out of range");
    }
    return (tz[0] == '-' ? -1 : 1) * (h * 60 + m);
  }
  // An IANA name: letters, digits, '_', '-', '+' and '/' segments; never '..'.
  bool ok = !tz.empty() && tz.size() < 64 && tz[0] != '/' && tz.find("..") == std::string::npos;
  for (unsigned char c : tz) {
    ok = ok && (std::isalnum(c) != 0 || c == '_' || c == '-' || c == '+' || c == '/');
  }
  if (!ok) {
    return Unexpected("time zone '" + tz + "': not an IANA name or +HH:MM");
  }
  std::ifstream in("/usr/share/zoneinfo/" + tz, std::ios::binary);
  if (!in) {
    return Unexpected("time zone '" + tz + "': unknown (not in /usr/share/zoneinfo)");
  }
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto off = tzif_offset(bytes, at_ms / 1000);
  if (!off) {
    return Unexpected("time zone '" + tz + "': " + off.error());
  }
  return *off / 60;
}

int64_t quiet_until(const QuietHours& q, int offset_min, int64_t now_ms) {
  constexpr int64_t kDay = 24 * 60;
  const int64_t local_min = ((now_ms / 60000 + offset_min) % kDay + kDay) % kDay;
  const bool wraps = q.start_min > q.end_min;
  const bool inside = wraps ? (local_min >= q.start_min || local_min < q.end_min)
                            : (local_min >= q.start_min && local_min < q.end_min);
  if (!inside) {
    return 0;
  }
  const int64_t to_end = ((q.end_min - local_min) % kDay + kDay) % kDay;
  return (now_ms / 60000 + to_end) * 60000;
}

Expected<int64_t, std::string> parse_iso8601(const std::string& s) {
  // YYYY-MM-DDTHH:MM[:SS][.fff][Z|+HH:MM|-HH:MM]
  auto bad = [&] { return Unexpected("'" + s + "': expected ISO-8601, e.g. 2026-12-01T09:30:00Z"); };
  if (s.size() < 16 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') ||
      s[13] != ':') {
    return bad();
  }
  auto num = [&](size_t at, size_t n) -> int {
    const std::string p = s.substr(at, n);
    return all_digits(p) ? std::stoi(p) : -1;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  size_t pos = 16;
  if (pos < s.size() && s[pos] == ':') {
    tm.tm_sec = num(pos + 1, 2);
    pos += 3;
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])) != 0) {
        ++pos;
      }
    }
  }
  if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
      tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
      tm.tm_sec > 60) {
    return bad();
  }
  int offset_min = 0;
  const std::string zone = s.substr(std::min(pos, s.size()));
  if (zone == "Z" || zone.empty()) {
    offset_min = 0;
  } else {
    auto off = utc_offset_minutes(zone, 0);
    if (!off || zone[0] == 'U' || zone[0] == 'G' || zone.size() != 6) {
      return bad();
    }
    offset_min = *off;
  }
  const int64_t secs = static_cast<int64_t>(timegm(&tm));
  return (secs - offset_min * 60LL) * 1000;
}

Estimate estimate(size_t people, double rate_per_s, int64_t daily_limit, int64_t left_today) {
  Estimate e;
  const double n = static_cast<double>(people);
  e.seconds = rate_per_s > 0 ? n / rate_per_s : 0;
  auto human = [](double secs) {
    const int64_t s = static_cast<int64_t>(std::ceil(secs));
    if (s < 120) {
      return std::to_string(s) + " s";
    }
    if (s < 7200) {
      return std::to_string((s + 59) / 60) + " min";
    }
    return std::to_string(s / 3600) + " h " + std::to_string((s % 3600 + 59) / 60) + " min";
  };
  if (daily_limit <= 0 || static_cast<int64_t>(people) <= left_today) {
    e.text = human(e.seconds) + " at " + std::to_string(static_cast<int64_t>(rate_per_s)) +
             "/s" + (daily_limit > 0 ? " (within today's budget)" : "");
    return e;
  }
  const int64_t beyond = static_cast<int64_t>(people) - std::max<int64_t>(left_today, 0);
  e.windows = (beyond + daily_limit - 1) / daily_limit;
  e.text = "at least " + std::to_string(e.windows) + " more 24-hour window" +
           (e.windows == 1 ? "" : "s") + ": the portfolio may reach " +
           std::to_string(daily_limit) + " new people per 24 hours and has " +
           std::to_string(std::max<int64_t>(left_today, 0)) + " left now (sending time " +
           human(e.seconds) + ")";
  return e;
}

}  // namespace wafleet::bulk
