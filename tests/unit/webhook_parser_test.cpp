#include "workers/receiver/webhook_parser.h"

#include <gtest/gtest.h>

#include "common/json_util.h"
#include "tests/support/fixtures.h"
#include "topics/topics.h"

namespace wafleet::receiver {
namespace {

using test::fixture;

ParseContext ctx() { return ParseContext{"meta", 1700000000123, "0af7651916cd43dd8448eb211c80319c"}; }

std::vector<WebhookEvent> parse_ok(const std::string& name) {
  auto r = parse_meta_webhook(fixture(name), ctx());
  EXPECT_TRUE(r.has_value()) << name << ": " << (r ? "" : r.error());
  return r ? *r : std::vector<WebhookEvent>{};
}

TEST(WebhookParser, TextMessageBecomesOneEventKeyedByConversation) {
  auto events = parse_ok("meta_inbound_text.json");
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.kind, EventKind::kMessage);
  EXPECT_STREQ(e.topic(), topics::kInbound);
  EXPECT_EQ(e.type, "text");
  EXPECT_FALSE(e.message_id.empty());
  EXPECT_EQ(e.event_id, "m:" + e.phone_number_id + ":" + e.message_id);
  EXPECT_EQ(e.conversation_key, e.phone_number_id + ":" + e.identity);
  EXPECT_FALSE(e.phone_number_id.empty());
  EXPECT_FALSE(e.waba_id.empty());
  EXPECT_GT(e.timestamp, 1600000000);
  EXPECT_EQ(e.received_at_ms, 1700000000123);
  EXPECT_EQ(e.source, "meta");
  EXPECT_EQ(e.trace_id, "0af7651916cd43dd8448eb211c80319c");
  EXPECT_TRUE(e.raw.contains("text"));
}

TEST(WebhookParser, PywaTextCarriesBsuidAndProfile) {
  auto events = parse_ok("pywa_inbound_text.json");
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.phone_number_id, "1122334455667");
  EXPECT_EQ(e.display_phone_number, "972123456789");
  EXPECT_EQ(e.waba_id, "1234567890987654321");
  EXPECT_EQ(e.wa_id, "972987654321");
  // The sender has a BSUID in contacts: the key uses it, the phone stays an attribute.
  EXPECT_EQ(e.user_id, "US.13491208655302741918");
  EXPECT_EQ(e.parent_user_id, "US.ENT.11815799212886844830");
  EXPECT_EQ(e.conversation_key, "1122334455667:US.13491208655302741918");
  EXPECT_EQ(e.profile_name, "Test Name");
  EXPECT_EQ(e.message_id, "wamid.xyzxyz");
  EXPECT_EQ(e.timestamp, 1697043223);
  EXPECT_EQ(e.raw["text"]["body"], "Body Text");
}

TEST(WebhookParser, BsuidOnlySenderWithoutPhoneIsKeyedByUserId) {
  auto events = parse_ok("meta_bsuid_inbound_text_username_no_phone.json");
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.wa_id, "");
  EXPECT_EQ(e.user_id, "user.93737...");
  EXPECT_EQ(e.username, "@realsheenanelson");
  EXPECT_EQ(e.profile_name, "Sheena Nelson");
  EXPECT_EQ(e.conversation_key, "106540352242922:user.93737...");
}

TEST(WebhookParser, EveryInboundFixtureParsesWithTypeIdAndKey) {
  auto names = test::fixture_names("meta_inbound_");
  auto pywa = test::fixture_names("pywa_inbound_");
  names.insert(names.end(), pywa.begin(), pywa.end());
  ASSERT_GT(names.size(), 40u);
  for (const auto& name : names) {
    auto events = parse_ok(name);
    ASSERT_FALSE(events.empty()) << name;
    for (const auto& e : events) {
      EXPECT_FALSE(e.event_id.empty()) << name;
      EXPECT_FALSE(e.conversation_key.empty()) << name;
      EXPECT_FALSE(e.phone_number_id.empty()) << name;
      if (e.kind == EventKind::kMessage) {
        // The type is Meta's own word for it, and the object under that name came along.
        EXPECT_EQ(e.type, json::str(e.raw, "type")) << name;
        EXPECT_EQ(e.message_id, json::str(e.raw, "id")) << name;
        EXPECT_NE(e.conversation_key.find(':'), std::string::npos) << name;
      }
    }
  }
}

struct TypeCase {
  const char* fixture;
  const char* type;
  const char* field;  // object that must travel in raw
};

class InboundTypes : public ::testing::TestWithParam<TypeCase> {};

TEST_P(InboundTypes, KeepsTypeAndOriginalObject) {
  auto events = parse_ok(GetParam().fixture);
  ASSERT_GE(events.size(), 1u);
  EXPECT_EQ(events[0].kind, EventKind::kMessage);
  EXPECT_EQ(events[0].type, GetParam().type);
  EXPECT_TRUE(events[0].raw.contains(GetParam().field)) << events[0].raw.dump();
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, InboundTypes,
    ::testing::Values(TypeCase{"meta_inbound_image.json", "image", "image"},
                      TypeCase{"meta_inbound_audio_voice.json", "audio", "audio"},
                      TypeCase{"meta_inbound_video.json", "video", "video"},
                      TypeCase{"meta_inbound_document.json", "document", "document"},
                      TypeCase{"meta_inbound_sticker_animated.json", "sticker", "sticker"},
                      TypeCase{"meta_inbound_location.json", "location", "location"},
                      TypeCase{"meta_inbound_contacts.json", "contacts", "contacts"},
                      TypeCase{"meta_inbound_interactive_button_reply.json", "interactive",
                               "interactive"},
                      TypeCase{"meta_inbound_interactive_list_reply.json", "interactive",
                               "interactive"},
                      TypeCase{"meta_inbound_button_template_quick_reply.json", "button",
                               "button"},
                      TypeCase{"meta_inbound_order.json", "order", "order"},
                      TypeCase{"meta_inbound_system_user_changed_number.json", "system", "system"},
                      TypeCase{"meta_inbound_unsupported.json", "unsupported", "errors"},
                      TypeCase{"pywa_inbound_reaction.json", "reaction", "reaction"},
                      TypeCase{"pywa_inbound_reaction_removed_no_emoji.json", "reaction",
                               "reaction"},
                      TypeCase{"pywa_inbound_text_reply_context.json", "text", "context"},
                      TypeCase{"pywa_inbound_referral_ctwa.json", "text", "referral"},
                      TypeCase{"pywa_inbound_interactive_nfm_reply_flow.json", "interactive",
                               "interactive"},
                      TypeCase{"pywa_inbound_edit.json", "edit", "edit"},
                      TypeCase{"pywa_inbound_revoke.json", "revoke", "revoke"}));

TEST(WebhookParser, StatusEventsGoToStatusTopicWithIdPlusStatus) {
  auto events = parse_ok("meta_status_sent.json");
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.kind, EventKind::kStatus);
  EXPECT_STREQ(e.topic(), topics::kStatus);
  EXPECT_EQ(e.type, "sent");
  EXPECT_EQ(e.wa_id, "16505551234");
  EXPECT_EQ(e.conversation_key, "106540352242922:16505551234");
  EXPECT_EQ(e.event_id, "s:106540352242922:" + e.message_id + ":sent");
  EXPECT_EQ(e.timestamp, 1750030073);
  EXPECT_TRUE(e.raw.contains("pricing"));
}

TEST(WebhookParser, StatusToBsuidIsKeyedLikeTheInboundMessages) {
  auto events = parse_ok("meta_bsuid_status_delivered_to_bsuid.json");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, "delivered");
  EXPECT_EQ(events[0].conversation_key,
            "106540352242922:user.9373795779eb6441c8adb2eaee5b848e7dd174ddd302d7db62142f4722d574b6");
}

TEST(WebhookParser, EveryStatusFixtureParses) {
  auto names = test::fixture_names("meta_status_");
  auto pywa = test::fixture_names("pywa_status_");
  names.insert(names.end(), pywa.begin(), pywa.end());
  ASSERT_GE(names.size(), 10u);
  for (const auto& name : names) {
    auto events = parse_ok(name);
    ASSERT_EQ(events.size(), 1u) << name;
    EXPECT_EQ(events[0].kind, EventKind::kStatus) << name;
    EXPECT_EQ(events[0].type, json::str(events[0].raw, "status")) << name;
  }
}

TEST(WebhookParser, GroupStatusIsKeyedByGroup) {
  auto events = parse_ok("pywa_status_group.json");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].conversation_key, "<BUSINESS_PHONE_NUMBER_ID>:fowefinoewcnw");
}

TEST(WebhookParser, ValueLevelErrorsAreKeptAsErrorEvents) {
  auto events = parse_ok("meta_value_errors_130429.json");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, EventKind::kError);
  EXPECT_STREQ(events[0].topic(), topics::kStatus);
  EXPECT_EQ(json::int_or(events[0].raw, "code"), 130429);
  // Same body, same id: a redelivery is recognisable.
  auto again = parse_ok("meta_value_errors_130429.json");
  EXPECT_EQ(again[0].event_id, events[0].event_id);
}

TEST(WebhookParser, MixedBatchKeepsEveryMessageStatusAndChangeInOrder) {
  nlohmann::json body = nlohmann::json::parse(fixture("meta_inbound_text.json"));
  auto status = nlohmann::json::parse(fixture("meta_status_sent.json"));
  auto image = nlohmann::json::parse(fixture("meta_inbound_image.json"));
  body["entry"][0]["changes"].push_back(status["entry"][0]["changes"][0]);
  body["entry"].push_back(image["entry"][0]);
  body["entry"][0]["changes"].push_back(
      {{"field", "account_update"}, {"value", {{"event", "VERIFIED_ACCOUNT"}}}});
  auto r = parse_meta_webhook(body.dump(), ctx());
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].type, "text");
  EXPECT_EQ((*r)[1].kind, EventKind::kStatus);
  EXPECT_EQ((*r)[2].kind, EventKind::kChange);
  EXPECT_EQ((*r)[2].type, "account_update");
  EXPECT_STREQ((*r)[2].topic(), topics::kAccountEvents);
  EXPECT_EQ((*r)[3].type, "image");
}

TEST(WebhookParser, ThousandMessagesInOneBodyGiveThousandEvents) {
  nlohmann::json body = nlohmann::json::parse(fixture("pywa_inbound_text.json"));
  auto& messages = body["entry"][0]["changes"][0]["value"]["messages"];
  auto one = messages[0];
  messages = nlohmann::json::array();
  for (int i = 0; i < 1000; ++i) {
    one["id"] = "wamid." + std::to_string(i);
    messages.push_back(one);
  }
  auto r = parse_meta_webhook(body.dump(), ctx());
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 1000u);
  EXPECT_EQ((*r)[999].message_id, "wamid.999");
}

TEST(WebhookParser, UnknownMessageTypePassesThroughAsItself) {
  nlohmann::json body = nlohmann::json::parse(fixture("pywa_inbound_text.json"));
  auto& m = body["entry"][0]["changes"][0]["value"]["messages"][0];
  m.erase("text");
  m["type"] = "hologram";
  m["hologram"] = {{"depth", 3}};
  auto r = parse_meta_webhook(body.dump(), ctx());
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].type, "hologram");
  EXPECT_EQ((*r)[0].raw["hologram"]["depth"], 3);
}

TEST(WebhookParser, RejectsWhatIsNotAWabaWebhook) {
  EXPECT_FALSE(parse_meta_webhook("not json", ctx()).has_value());
  EXPECT_FALSE(parse_meta_webhook("[1,2]", ctx()).has_value());
  EXPECT_FALSE(parse_meta_webhook(R"({"object":"page","entry":[]})", ctx()).has_value());
  EXPECT_FALSE(parse_meta_webhook(R"({"object":"whatsapp_business_account"})", ctx()).has_value());
  EXPECT_FALSE(
      parse_meta_webhook(R"({"object":"whatsapp_business_account","entry":[{"id":"1"}]})", ctx())
          .has_value());
  auto empty = parse_meta_webhook(R"({"object":"whatsapp_business_account","entry":[]})", ctx());
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST(WebhookParser, WrongFieldTypesDoNotThrow) {
  const char* body = R"({"object":"whatsapp_business_account","entry":[{"id":7,"changes":[
    {"field":"messages","value":{"metadata":{"phone_number_id":5},"contacts":"x",
     "messages":[{"from":12,"id":["a"],"timestamp":{},"type":3},"str"],"statuses":{}}}]}]})";
  auto r = parse_meta_webhook(body, ctx());
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].waba_id, "7");
  EXPECT_EQ((*r)[0].type, "unknown");
  // No wamid: the id falls back to a hash of the object, so it is still deterministic.
  EXPECT_NE((*r)[0].event_id.find("sha256:"), std::string::npos);
}

TEST(WebhookParser, EumEventUnwrapsTheEntryString) {
  auto r = parse_eum_event(fixture("aws_eum_sns_message_inbound_text_redacted.json"),
                           ParseContext{"eum", 1, "t"});
  ASSERT_TRUE(r.has_value()) << r.error();
  ASSERT_EQ(r->size(), 1u);
  const auto& e = (*r)[0];
  EXPECT_EQ(e.source, "eum");
  EXPECT_EQ(e.waba_id, "509609192225796");
  EXPECT_EQ(e.phone_number_id, "503650672828631");
  EXPECT_EQ(e.wa_id, "14157470265");
  EXPECT_EQ(e.profile_name, "Kike");
  EXPECT_EQ(e.conversation_key, "503650672828631:14157470265");
  EXPECT_EQ(e.raw["text"]["body"], "BB");
  EXPECT_EQ(e.timestamp, 1762827867);
}

TEST(WebhookParser, EumEventWithoutEntryIsAnError) {
  EXPECT_FALSE(parse_eum_event(R"({"context":{}})", ParseContext{}).has_value());
  EXPECT_FALSE(parse_eum_event(R"({"whatsAppWebhookEntry":"{bad"})", ParseContext{}).has_value());
}

TEST(WebhookEvent, DirectEncodingEqualsTheJsonDocument) {
  auto names = test::fixture_names("pywa_");
  auto meta = test::fixture_names("meta_inbound_");
  names.insert(names.end(), meta.begin(), meta.end());
  for (const auto& name : names) {
    for (auto& e : parse_ok(name)) {
      e.profile_name = "Quote \" back\\slash \n\t\x01 caf\xc3\xa9";
      auto decoded = nlohmann::json::parse(e.encode(), nullptr, false);
      ASSERT_FALSE(decoded.is_discarded()) << name << ": " << e.encode();
      EXPECT_EQ(decoded, e.to_json()) << name;
    }
  }
}

TEST(WebhookEvent, RoundTripsThroughJson) {
  auto events = parse_ok("pywa_inbound_text.json");
  ASSERT_EQ(events.size(), 1u);
  auto back = WebhookEvent::from_json(events[0].to_json());
  ASSERT_TRUE(back.has_value()) << back.error();
  EXPECT_EQ(back->event_id, events[0].event_id);
  EXPECT_EQ(back->conversation_key, events[0].conversation_key);
  EXPECT_EQ(back->user_id, events[0].user_id);
  EXPECT_EQ(back->timestamp, events[0].timestamp);
  EXPECT_EQ(back->raw, events[0].raw);
  EXPECT_FALSE(WebhookEvent::from_json(nlohmann::json::object()).has_value());
}

}  // namespace
}  // namespace wafleet::receiver
