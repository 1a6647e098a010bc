// The JSON Schema checks (common/json_schema.h) and the topic schemas they are used with.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/json_schema.h"
#include "tests/support/fixtures.h"
#include "topics/topics.h"

namespace wafleet::json_schema {
namespace {

using Json = nlohmann::json;

std::string error_of(const Json& schema, const Json& doc) { return first_error(schema, doc).value_or(""); }

TEST(JsonSchema, EveryTopicSchemaIsCompiledInAndFullyUnderstood) {
  for (const auto& t : topics::catalogue()) {
    const Json& s = topics::schema(t.schema);
    ASSERT_TRUE(s.is_object()) << t.name << ": no schema " << t.schema;
    EXPECT_EQ(unsupported(s), std::nullopt) << t.name;
  }
  EXPECT_TRUE(topics::schema("no_such_schema").is_null());
  EXPECT_EQ(unsupported(Json{{"type", "object"}, {"properties", {{"a", {{"$ref", "#/x"}}}}}}).value_or(""),
            "/properties/a/$ref: $ref");
}

TEST(JsonSchema, TypesEnumsConstsAndBounds) {
  const Json s = Json::parse(R"({
    "type": "object", "required": ["n", "kind"], "additionalProperties": false,
    "properties": {
      "n": {"type": "integer", "minimum": 1, "maximum": 10},
      "kind": {"enum": ["a", "b"]},
      "v": {"const": 1},
      "name": {"type": ["string", "null"], "minLength": 2, "maxLength": 3},
      "tag": {"type": "string", "pattern": "^[a-z]+$"},
      "list": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "number"}}
    }})");
  EXPECT_EQ(error_of(s, {{"n", 5}, {"kind", "a"}}), "");
  EXPECT_EQ(error_of(s, {{"n", 5.0}, {"kind", "a"}}), "");  // 5.0 is an integer
  EXPECT_EQ(error_of(s, {{"n", 5.5}, {"kind", "a"}}), "/n: must be an integer");
  EXPECT_EQ(error_of(s, {{"kind", "a"}}), "/: required property n is missing");
  EXPECT_EQ(error_of(s, {{"n", 0}, {"kind", "a"}}), "/n: must be at least 1");
  EXPECT_EQ(error_of(s, {{"n", 11}, {"kind", "a"}}), "/n: must be at most 10");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "c"}}), R"(/kind: must be one of ["a","b"])");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"v", 2}}), "/v: must be 1");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"name", nullptr}}), "");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"name", 3}}), "/name: must be a string or null");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"name", "é"}}), "/name: must be at least 2 characters");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"name", "ééé"}}), "");  // code points, not bytes
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"tag", "aB"}}), "/tag: must match ^[a-z]+$");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"list", Json::array()}}), "/list: must have at least 1 items");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"list", {1, 2, 3}}}), "/list: must have at most 2 items");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"list", {1, "x"}}}), "/list/1: must be a number");
  EXPECT_EQ(error_of(s, {{"n", 1}, {"kind", "a"}, {"extra/x", 1}}), "/extra~1x: is not an allowed property");
  EXPECT_EQ(error_of(s, Json::array()), "/: must be an object");
}

TEST(JsonSchema, OneOfNeedsExactlyOneAnyOfAtLeastOne) {
  const Json one = {{"oneOf", {{{"type", "integer"}}, {{"type", "number"}}, {{"type", "string"}}}}};
  EXPECT_EQ(error_of(one, "x"), "");
  EXPECT_EQ(error_of(one, 1.5), "");
  EXPECT_EQ(error_of(one, 1), "/: matches more than one of oneOf");
  EXPECT_NE(error_of(one, true).find("/: matches none of oneOf"), std::string::npos);
  const Json any = {{"anyOf", {{{"type", "integer"}}, {{"type", "number"}}}}};
  EXPECT_EQ(error_of(any, 1), "");
  EXPECT_NE(error_of(any, "x").find("matches none of anyOf"), std::string::npos);
}

// What the API checks a POST /v1/messages body against: the wa.outbound schema.
TEST(JsonSchema, OutboundRequestsAreCheckedAgainstTheTopicsOwnSchema) {
  const Json& s = topics::schema("outbound_request");
  for (const auto& name : test::fixture_names("wafleet_send_")) {
    Json body = Json::parse(test::fixture(name));
    body["request_id"] = "r-1";
    body["phone_number_id"] = "111";
    EXPECT_EQ(error_of(s, body), "") << name;
  }
  Json body = {{"request_id", "r-1"}, {"phone_number_id", "111"}, {"to", "15550100001"},
               {"type", "text"}, {"text", {{"body", "hi"}}}};
  EXPECT_EQ(error_of(s, body), "");
  Json bad = body;
  bad.erase("phone_number_id");
  EXPECT_EQ(error_of(s, bad), "/: required property phone_number_id is missing");
  bad = body;
  bad["type"] = "fax";
  EXPECT_EQ(error_of(s, bad).rfind("/type: must be one of", 0), 0u);
  bad = body;
  bad["to"] = 15550100001;
  EXPECT_EQ(error_of(s, bad), "/to: must be a string");
  bad = body;
  bad["biz_opaque_callback_data"] = std::string(513, 'x');
  EXPECT_EQ(error_of(s, bad), "/biz_opaque_callback_data: must be at most 512 characters");
  bad = body;
  bad["context"] = Json::object();
  EXPECT_EQ(error_of(s, bad), "/context: required property message_id is missing");
}

}  // namespace
}  // namespace wafleet::json_schema
