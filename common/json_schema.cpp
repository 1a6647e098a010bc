#include "common/json_schema.h"

#include <cmath>
#include <regex>
#include <set>

namespace wafleet::json_schema {

using Json = nlohmann::json;

namespace {

const std::set<std::string>& known_keywords() {
  static const std::set<std::string> k = {
      "type",     "enum",      "const",     "properties", "required",  "additionalProperties",
      "items",    "minItems",  "maxItems",  "minLength",  "maxLength", "minimum",
      "maximum",  "pattern",   "oneOf",     "anyOf",      "title",     "description",
      "format",   "$schema",   "$id",       "examples",   "default",   "$comment"};
  return k;
}

std::string escape_token(const std::string& t) {
  std::string out;
  for (char c : t) {
    out += c == '~' ? std::string("~0") : c == '/' ? std::string("~1") : std::string(1, c);
  }
  return out;
}

std::string child(const std::string& at, const std::string& token) {
  return (at == "/" ? std::string() : at) + "/" + escape_token(token);
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) {
    n += (c & 0xC0) != 0x80 ? 1 : 0;
  }
  return n;
}

bool has_type(const Json& doc, const std::string& type) {
  if (type == "object") return doc.is_object();
  if (type == "array") return doc.is_array();
  if (type == "string") return doc.is_string();
  if (type == "boolean") return doc.is_boolean();
  if (type == "null") return doc.is_null();
  if (type == "number") return doc.is_number();
  if (type == "integer") {
    return doc.is_number_integer() ||
           (doc.is_number_float() && std::isfinite(doc.get<double>()) &&
            std::floor(doc.get<double>()) == doc.get<double>());
  }
  return false;
}

std::optional<std::string> check(const Json& schema, const Json& doc, const std::string& at);

std::optional<std::string> fail(const std::string& at, const std::string& why) { return at + ": " + why; }

std::optional<std::string> check_object(const Json& schema, const Json& doc, const std::string& at) {
  if (auto req = schema.find("required"); req != schema.end() && req->is_array()) {
    for (const auto& name : *req) {
      if (name.is_string() && !doc.contains(name.get<std::string>())) {
        return fail(at, "required property " + name.get<std::string>() + " is missing");
      }
    }
  }
  const auto props = schema.find("properties");
  const auto extra = schema.find("additionalProperties");
  for (const auto& [name, value] : doc.items()) {
    if (props != schema.end() && props->is_object() && props->contains(name)) {
      if (auto e = check((*props)[name], value, child(at, name))) {
        return e;
      }
      continue;
    }
    if (extra == schema.end()) {
      continue;
    }
    if (extra->is_boolean()) {
      if (!extra->get<bool>()) {
        return fail(child(at, name), "is not an allowed property");
      }
    } else if (auto e = check(*extra, value, child(at, name))) {
      return e;
    }
  }
  return std::nullopt;
}

std::optional<std::string> check_array(const Json& schema, const Json& doc, const std::string& at) {
  if (auto m = schema.find("minItems"); m != schema.end() && m->is_number() && doc.size() < m->get<size_t>()) {
    return fail(at, "must have at least " + m->dump() + " items");
  }
  if (auto m = schema.find("maxItems"); m != schema.end() && m->is_number() && doc.size() > m->get<size_t>()) {
    return fail(at, "must have at most " + m->dump() + " items");
  }
  if (auto items = schema.find("items"); items != schema.end() && items->is_object()) {
    for (size_t i = 0; i < doc.size(); ++i) {
      if (auto e = check(*items, doc[i], child(at, std::to_string(i)))) {
        return e;
      }
    }
  }
  return std::nullopt;
}

std::optional<std::string> check_string(const Json& schema, const Json& doc, const std::string& at) {
  const std::string& s = doc.get_ref<const std::string&>();
  if (auto m = schema.find("minLength"); m != schema.end() && m->is_number() && code_points(s) < m->get<size_t>()) {
    return fail(at, "must be at least " + m->dump() + " characters");
  }
  if (auto m = schema.find("maxLength"); m != schema.end() && m->is_number() && code_points(s) > m->get<size_t>()) {
    return fail(at, "must be at most " + m->dump() + " characters");
  }
  if (auto p = schema.find("pattern"); p != schema.end() && p->is_string()) {
    try {
      if (!std::regex_search(s, std::regex(p->get<std::string>(), std::regex::ECMAScript))) {
        return fail(at, "must match " + p->get<std::string>());
      }
    } catch (const std::regex_error&) {
      return fail(at, "the schema's pattern " + p->get<std::string>() + " is not a valid expression");
    }
  }
  return std::nullopt;
}

std::optional<std::string> check(const Json& schema, const Json& doc, const std::string& at) {
  if (schema.is_boolean()) {
    return schema.get<bool>() ? std::nullopt : fail(at, "is not allowed");
  }
  if (!schema.is_object()) {
    return std::nullopt;
  }
  if (auto t = schema.find("type"); t != schema.end()) {
    bool ok = false;
    std::string names;
    for (const auto& one : t->is_array() ? *t : Json::array({*t})) {
      if (one.is_string()) {
        ok = ok || has_type(doc, one.get<std::string>());
        names += (names.empty() ? "" : " or ") + one.get<std::string>();
      }
    }
    if (!ok) {
      const bool vowel = names == "object" || names == "array" || names == "integer";
      return fail(at, std::string("must be ") + (vowel ? "an " : "a ") + names);
    }
  }
  if (auto c = schema.find("const"); c != schema.end() && *c != doc) {
    return fail(at, "must be " + c->dump());
  }
  if (auto e = schema.find("enum"); e != schema.end() && e->is_array()) {
    bool found = false;
    for (const auto& v : *e) {
      found = found || v == doc;
    }
    if (!found) {
      return fail(at, "must be one of " + e->dump());
    }
  }
  if (doc.is_number()) {
    if (auto m = schema.find("minimum"); m != schema.end() && m->is_number() && doc.get<double>() < m->get<double>()) {
      return fail(at, "must be at least " + m->dump());
    }
    if (auto m = schema.find("maximum"); m != schema.end() && m->is_number() && doc.get<double>() > m->get<double>()) {
      return fail(at, "must be at most " + m->dump());
    }
  }
  if (doc.is_object()) {
    if (auto e = check_object(schema, doc, at)) {
      return e;
    }
  } else if (doc.is_array()) {
    if (auto e = check_array(schema, doc, at)) {
      return e;
    }
  } else if (doc.is_string()) {
    if (auto e = check_string(schema, doc, at)) {
      return e;
    }
  }
  if (auto any = schema.find("anyOf"); any != schema.end() && any->is_array()) {
    std::optional<std::string> last;
    bool ok = false;
    for (const auto& sub : *any) {
      last = check(sub, doc, at);
      ok = ok || !last;
    }
    if (!ok) {
      return fail(at, "matches none of anyOf (" + last.value_or("") + ")");
    }
  }
  if (auto one = schema.find("oneOf"); one != schema.end() && one->is_array()) {
    int matched = 0;
    std::optional<std::string> last;
    for (const auto& sub : *one) {
      auto e = check(sub, doc, at);
      matched += e ? 0 : 1;
      last = e ? e : last;
    }
    if (matched != 1) {
      return fail(at, matched == 0 ? "matches none of oneOf (" + last.value_or("") + ")"
                                   : "matches more than one of oneOf");
    }
  }
  return std::nullopt;
}

std::optional<std::string> find_unsupported(const Json& schema, const std::string& at) {
  if (!schema.is_object()) {
    return std::nullopt;
  }
  for (const auto& [key, value] : schema.items()) {
    if (known_keywords().count(key) == 0) {
      return child(at, key) + ": " + key;
    }
    if (key == "properties" && value.is_object()) {
      for (const auto& [name, sub] : value.items()) {
        if (auto e = find_unsupported(sub, child(child(at, key), name))) {
          return e;
        }
      }
    } else if ((key == "items" || key == "additionalProperties") && value.is_object()) {
      if (auto e = find_unsupported(value, child(at, key))) {
        return e;
      }
    } else if ((key == "oneOf" || key == "anyOf") && value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) {
        if (auto e = find_unsupported(value[i], child(child(at, key), std::to_string(i)))) {
          return e;
        }
      }
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> unsupported(const Json& schema) { return find_unsupported(schema, "/"); }

std::optional<std::string> first_error(const Json& schema, const Json& doc) { return check(schema, doc, "/"); }

}  // namespace wafleet::json_schema
