// Outbound request validation against Meta's documented limits (contract section 4): every
// invalid request fails here with a reason, never reaching Meta.
#include <gtest/gtest.h>

#include "tests/support/fixtures.h"
#include "workers/sender/request.h"

namespace wafleet::sender {
namespace {

nlohmann::json base(const std::string& type, nlohmann::json object) {
  return {{"request_id", "r1"}, {"phone_number_id", "106540352242922"}, {"to", "+16505551234"},
          {"type", type}, {type, std::move(object)}};
}

std::string error_of(const nlohmann::json& j) {
  auto r = parse_request(j);
  return r ? "" : r.error();
}

nlohmann::json buttons(int n, int title_len = 5) {
  nlohmann::json bs = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    bs.push_back({{"type", "reply"},
                  {"reply", {{"id", "b" + std::to_string(i)},
                             {"title", std::string(static_cast<size_t>(title_len), 'x') +
                                           std::to_string(i)}}}});
  }
  return {{"type", "button"}, {"body", {{"text", "Pick one"}}}, {"action", {{"buttons", bs}}}};
}

TEST(SenderRequest, ValidRequestsBecomeMetasBody) {
  auto r = parse_request(base("text", {{"body", "hello"}}));
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->idempotency_key, "r1");  // defaults to the request id
  EXPECT_EQ(r->graph_body, nlohmann::json::parse(
                               R"({"messaging_product":"whatsapp","to":"+16505551234","type":"text","text":{"body":"hello"}})"));
  EXPECT_TRUE(r->free_form);
  auto bsuid = base("text", {{"body", "hi"}});
  bsuid.erase("to");
  bsuid["recipient"] = "US.13491208655302741918";
  r = parse_request(bsuid);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->graph_body["recipient"], "US.13491208655302741918");
  EXPECT_FALSE(r->graph_body.contains("to"));
  auto tpl = parse_request(base("template", {{"name", "hello_world"}, {"language", {{"code", "en_US"}}}}));
  ASSERT_TRUE(tpl.has_value());
  EXPECT_FALSE(tpl->free_form);  // templates pass outside the 24-hour window
  auto reply = base("text", {{"body", "yes"}});
  reply["context"] = {{"message_id", "wamid.X"}};
  EXPECT_EQ(parse_request(reply)->graph_body["context"]["message_id"], "wamid.X");
  EXPECT_EQ(error_of(base("interactive", buttons(3))), "");
  EXPECT_EQ(error_of(base("reaction", {{"message_id", "wamid.X"}, {"emoji", ""}})), "");
}

TEST(SenderRequest, MetasLimitsAreEnforcedWithAReason) {
  EXPECT_EQ(error_of(base("text", {{"body", std::string(4096, 'a')}})), "");
  EXPECT_EQ(error_of(base("text", {{"body", std::string(4097, 'a')}})),
            "text.body: 4097 characters, Meta's limit is 4096");
  // Characters, not bytes: 4096 two-byte characters are fine.
  std::string accents;
  for (int i = 0; i < 4096; ++i) {
    accents += "\xc3\xa9";
  }
  EXPECT_EQ(error_of(base("text", {{"body", accents}})), "");
  EXPECT_NE(error_of(base("text", {{"body", ""}})), "");
  EXPECT_NE(error_of(base("image", {{"id", "1"}, {"caption", std::string(1025, 'c')}})), "");
  EXPECT_NE(error_of(base("image", {{"caption", "no media"}})), "");
  EXPECT_NE(error_of(base("image", {{"id", "1"}, {"link", "https://x/y.jpg"}})), "");
  EXPECT_NE(error_of(base("audio", {{"id", "1"}, {"caption", "no"}})), "");
  EXPECT_NE(error_of(base("image", {{"link", "ftp://x/y.jpg"}})), "");
  EXPECT_EQ(error_of(base("interactive", buttons(4))),
            "interactive.action.buttons: 4 buttons, Meta allows 1 to 3");
  EXPECT_NE(error_of(base("interactive", buttons(1, 20))), "");  // title of 21 characters
  auto dup = buttons(2);
  dup["action"]["buttons"][1]["reply"]["title"] = dup["action"]["buttons"][0]["reply"]["title"];
  EXPECT_EQ(error_of(base("interactive", dup)),
            "interactive.action.buttons: titles and ids must be unique");
  auto list = nlohmann::json::parse(test::fixture("meta_send_interactive_list.json"))["interactive"];
  EXPECT_EQ(error_of(base("interactive", list)), "");
  for (int i = 0; i < 7; ++i) {
    list["action"]["sections"][0]["rows"].push_back({{"id", "r" + std::to_string(i)}, {"title", "t"}});
  }
  EXPECT_EQ(error_of(base("interactive", list)),
            "interactive.action.sections: 11 rows in all, Meta allows 10");
  auto cta = nlohmann::json::parse(test::fixture("meta_send_interactive_cta_url.json"))["interactive"];
  EXPECT_EQ(error_of(base("interactive", cta)), "");
  cta["action"]["parameters"]["display_text"] = std::string(21, 'd');
  EXPECT_NE(error_of(base("interactive", cta)), "");
  EXPECT_EQ(error_of(base("template", {{"name", "x"}})), "template.language.code: required");
  EXPECT_NE(error_of(base("reaction", {{"emoji", "x"}})), "");
  EXPECT_NE(error_of(base("location", {{"latitude", 1}})), "");
  EXPECT_NE(error_of(base("contacts", nlohmann::json::array())), "");
  EXPECT_EQ(error_of(base("poll", {{"q", 1}})), "type: 'poll' is not one wafleet sends");
}

TEST(SenderRequest, EnvelopeErrorsAreNamed) {
  auto j = base("text", {{"body", "x"}});
  j.erase("request_id");
  EXPECT_EQ(error_of(j), "request_id: required");
  j = base("text", {{"body", "x"}});
  j.erase("to");
  EXPECT_EQ(error_of(j), "to (phone) or recipient (business-scoped user id): required");
  j = base("text", {{"body", "x"}});
  j["priority"] = "urgent";
  EXPECT_EQ(error_of(j), "priority: expected reply or bulk, got 'urgent'");
  j = base("text", {{"body", "x"}});
  j.erase("text");
  EXPECT_EQ(error_of(j), "text: the 'text' object is required");
  EXPECT_EQ(error_of({{"request_id", "r"}, {"phone_number_id", "1"}, {"type", "read"}}),
            "read: message_id (the inbound wamid) is required");
  EXPECT_EQ(error_of(nlohmann::json::array()), "request: must be a JSON object");
}

}  // namespace
}  // namespace wafleet::sender
