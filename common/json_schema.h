#pragma once
// JSON Schema (draft 2020-12) validation for the keywords wafleet's topic schemas use: type,
// enum, const, properties, required, additionalProperties, items, minItems, maxItems,
// minLength, maxLength (in code points), minimum, maximum, pattern (ECMAScript, unanchored),
// oneOf, anyOf. Annotations (title, description, format, $schema, $id, examples) are ignored.
// No Debian package validates JSON Schema for C++; supported() refuses a schema using anything
// else, so a schema can never be half checked.
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace wafleet::json_schema {

// The first keyword of `schema` (at any depth) this validator does not know, as
// "<pointer>: <keyword>"; nullopt when it knows them all.
std::optional<std::string> unsupported(const nlohmann::json& schema);

// Why `doc` does not satisfy `schema`, as "<pointer in doc>: <reason>" ("/to: must be a
// string", "/: required property phone_number_id is missing"); nullopt when it does.
std::optional<std::string> first_error(const nlohmann::json& schema, const nlohmann::json& doc);

}  // namespace wafleet::json_schema
