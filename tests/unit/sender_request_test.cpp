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
  EXPECT_EQ(error_of(j), "priority: expected reply, human or bulk, got 'urgent'");
  j = base("text", {{"body", "x"}});
  j.erase("text");
  EXPECT_EQ(error_of(j), "text: the 'text' object is required");
  EXPECT_EQ(error_of({{"request_id", "r"}, {"phone_number_id", "1"}, {"type", "read"}}),
            "read: message_id (the inbound wamid) is required");
  EXPECT_EQ(error_of(nlohmann::json::array()), "request: must be a JSON object");
}

TEST(SenderRequest, EveryInteractiveTypeMetaDocumentsPassesThroughUnchanged) {
  for (const char* name :
       {"wafleet_send_interactive_flow.json", "wafleet_send_interactive_location_request.json",
        "wafleet_send_interactive_voice_call.json",
        "wafleet_send_interactive_call_permission_request.json",
        "wafleet_send_interactive_product.json", "wafleet_send_interactive_product_list.json",
        "wafleet_send_interactive_catalog_message.json",
        "wafleet_send_interactive_carousel.json"}) {
    const auto meta = nlohmann::json::parse(test::fixture(name));
    auto r = parse_request(base("interactive", meta["interactive"]));
    ASSERT_TRUE(r.has_value()) << name << ": " << r.error();
    EXPECT_EQ(r->graph_body["interactive"], meta["interactive"]) << name;
  }
}

TEST(SenderRequest, InteractiveTypesAreCheckedForTheirStructure) {
  auto carousel = nlohmann::json::parse(
      test::fixture("wafleet_send_interactive_carousel.json"))["interactive"];
  carousel["action"]["cards"].erase(1);
  EXPECT_EQ(error_of(base("interactive", carousel)),
            "interactive.action.cards: 1 cards, Meta allows 2 to 10");
  auto flow = nlohmann::json::parse(test::fixture("wafleet_send_interactive_flow.json"))["interactive"];
  flow["action"]["parameters"].erase("flow_id");
  EXPECT_EQ(error_of(base("interactive", flow)),
            "interactive.action.parameters: flow_id or flow_name is required");
  auto location = nlohmann::json::parse(
      test::fixture("wafleet_send_interactive_location_request.json"))["interactive"];
  location["action"]["name"] = "send_place";
  EXPECT_EQ(error_of(base("interactive", location)), "interactive.action.name: must be send_location");
  auto list = nlohmann::json::parse(
      test::fixture("wafleet_send_interactive_product_list.json"))["interactive"];
  list.erase("header");
  EXPECT_EQ(error_of(base("interactive", list)),
            "interactive.header: a text header is required for product_list");
  EXPECT_NE(error_of(base("interactive", {{"type", "poll"}, {"body", {{"text", "x"}}}})), "");
}

TEST(SenderRequest, EnvelopeFieldsArePassedThroughOrRefusedNeverDropped) {
  auto j = base("text", {{"body", "x"}});
  j["recipient_identity_key_hash"] = "DF2lS5v2W6x=";
  auto r = parse_request(j);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->graph_body["recipient_identity_key_hash"], "DF2lS5v2W6x=");
  j = base("text", {{"body", "x"}});
  j["preview"] = true;  // a misspelt field Meta would not know
  EXPECT_EQ(error_of(j), "'preview': not a field of Meta's /messages request (for type 'text') nor "
                         "of wafleet's envelope; refused rather than dropped");
  j = base("text", {{"body", "x"}});
  j["image"] = {{"id", "1"}};  // another type's object
  EXPECT_NE(error_of(j), "");
  j = base("text", {{"body", "x"}});
  j["messaging_product"] = "sms";
  EXPECT_EQ(error_of(j), "messaging_product: must be \"whatsapp\"");
  j = base("text", {{"body", "x"}});
  j["wafleet"] = {{"turn_id", "t1"}, {"source", "bridge"}};  // the producer's own, never sent
  r = parse_request(j);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_FALSE(r->graph_body.contains("wafleet"));
  // A client library's own mark-as-read body is a receipt.
  r = parse_request({{"request_id", "r"}, {"phone_number_id", "1"}, {"messaging_product", "whatsapp"},
                     {"status", "read"}, {"message_id", "wamid.X"},
                     {"typing_indicator", {{"type", "text"}}}});
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->type, "typing");
}

TEST(SenderRequest, GroupsAreSentByGroupIdAndNeedNoPersonsWindow) {
  const auto meta = nlohmann::json::parse(test::fixture("wafleet_send_text_group.json"));
  auto j = meta;
  j["request_id"] = "g1";
  j["phone_number_id"] = "106540352242922";
  auto r = parse_request(j);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_TRUE(r->group);
  EXPECT_EQ(r->graph_body, meta);
  j["recipient_type"] = "broadcast";
  EXPECT_EQ(error_of(j), "recipient_type: expected individual or group, got 'broadcast'");
  j["recipient_type"] = "group";
  j.erase("to");
  j["recipient"] = "US.1";
  EXPECT_EQ(error_of(j), "recipient_type group: `to` is the group id (no recipient)");
}

TEST(SenderRequest, StoredMediaNamesItsObjectAndAMimeTypeMetaAccepts) {
  auto r = parse_request(base("image", {{"storage_uri", "file:///srv/media/sha256/ab/abc"},
                                        {"mime_type", "image/jpeg"},
                                        {"caption", "your receipt"}}));
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->upload_uri, "file:///srv/media/sha256/ab/abc");
  EXPECT_EQ(r->upload_mime, "image/jpeg");
  EXPECT_EQ(r->graph_body["image"], (nlohmann::json{{"caption", "your receipt"}}))
      << "storage_uri and mime_type never reach Meta; the id is set after the upload";
  EXPECT_EQ(error_of(base("image", {{"storage_uri", "s3://b/k"}})),
            "image.mime_type: required with storage_uri (the upload names it)");
  EXPECT_EQ(error_of(base("image", {{"storage_uri", "s3://b/k"}, {"mime_type", "image/gif"}})),
            "image.mime_type: 'image/gif' is not a type Meta accepts for image");
  EXPECT_NE(error_of(base("image", {{"storage_uri", "s3://b/k"}, {"id", "1"}})), "");
  EXPECT_NE(error_of(base("image", {{"storage_uri", "http://x/y"}, {"mime_type", "image/png"}})), "");
  EXPECT_EQ(error_of(base("audio", {{"storage_uri", "/srv/a.ogg"},
                                     {"mime_type", "audio/ogg; codecs=opus"},
                                     {"voice", true}})),
            "");
}

}  // namespace
}  // namespace wafleet::sender
