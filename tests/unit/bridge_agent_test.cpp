// The agent bridge's pure rules (workers/bridge/agent.h): what the model reads for a turn, what
// an answer means, how long answers are split, and the wa.outbound requests an answer becomes.
#include "workers/bridge/agent.h"

#include <gtest/gtest.h>

namespace wafleet::bridge {
namespace {

using Json = nlohmann::json;

Json turn_of(Json items, const std::string& id = "t1") {
  Json ids = Json::array();
  for (const auto& i : items) {
    ids.push_back(i.value("message_id", "m"));
  }
  return {{"turn_id", id},
          {"conversation_key", "106540352242922:15550100001"},
          {"phone_number_id", "106540352242922"},
          {"wa_id", "15550100001"},
          {"identity", "15550100001"},
          {"items", items},
          {"message_ids", ids}};
}

Json text(const std::string& id, const std::string& body) {
  return {{"kind", "text"}, {"message_id", id}, {"text", body}};
}

Json photo(const std::string& id, const std::string& uri, const std::string& caption) {
  return {{"kind", "image"}, {"message_id", id}, {"mime_type", "image/jpeg"}, {"caption", caption},
          {"media", {{"status", "stored"}, {"storage_uri", uri}, {"mime_type", "image/jpeg"},
                     {"size", 3}}}};
}

TEST(BridgeAgent, ATurnReachesTheModelAsContentPartsInItsOrder) {
  const Json t = turn_of(
      {text("m1", "Hi\nI was charged twice"), photo("m2", "file:///s/a", "the receipt"),
       {{"kind", "audio"}, {"message_id", "m3"}, {"voice", true},
        {"media", {{"status", "stored"}, {"transcript", "order 5521 please"}}}},
       {{"kind", "location"}, {"message_id", "m4"},
        {"location", {{"latitude", 38.7}, {"longitude", -9.1}, {"name", "Home"}}}},
       {{"kind", "interactive"}, {"message_id", "m5"}, {"reply_type", "button_reply"},
        {"reply", {{"id", "refund"}, {"title", "Refund"}}}},
       {{"kind", "reaction"}, {"message_id", "m6"}, {"target_message_id", "wamid.B"}, {"emoji", "👍"}},
       {{"kind", "text"}, {"message_id", "m7"}, {"text", "this one"},
        {"context", {{"id", "wamid.OUR"}}}}});
  PromptOptions o;
  o.system_prompt = "You are helpful.";
  o.model = "test-model";
  o.read_media = [](const std::string& uri) -> std::optional<std::string> {
    return uri == "file:///s/a" ? std::optional<std::string>("abc") : std::nullopt;
  };
  const Json body = chat_request({t}, {{"user", "earlier question"}, {"assistant", "earlier answer"}}, o);
  EXPECT_EQ(body["model"], "test-model");
  ASSERT_EQ(body["messages"].size(), 4u);
  EXPECT_EQ(body["messages"][0], (Json{{"role", "system"}, {"content", "You are helpful."}}));
  EXPECT_EQ(body["messages"][1]["role"], "user");
  EXPECT_EQ(body["messages"][2]["role"], "assistant");
  const Json& parts = body["messages"][3]["content"];
  ASSERT_EQ(parts.size(), 3u) << parts.dump(1);
  EXPECT_EQ(parts[0], (Json{{"type", "text"}, {"text", "Hi\nI was charged twice\n[image: the receipt]"}}));
  EXPECT_EQ(parts[1], (Json{{"type", "image_url"}, {"image_url", {{"url", "data:image/jpeg;base64,YWJj"}}}}));
  EXPECT_EQ(parts[2]["text"],
            "[voice note] order 5521 please\n[location: Home (38.7, -9.1)]\n[chose: Refund]\n"
            "[reacted 👍 to message wamid.B]\n(replying to message wamid.OUR) this one");
  EXPECT_EQ(body["tools"][0]["function"]["name"], "handoff_to_human");
}

TEST(BridgeAgent, ImagesCanBeLinksOrLeftOutAndTextOnlyIsAPlainString) {
  const Json t = turn_of({text("m1", "look"), photo("m2", "s3://b/k", "")});
  PromptOptions o;
  o.images = Images::kLink;
  o.link_for = [](const std::string& uri) { return "https://media.example/" + uri.substr(5); };
  const Json parts = user_content({t}, o);
  EXPECT_EQ(parts[1]["image_url"]["url"], "https://media.example/b/k");
  o.images = Images::kOff;
  EXPECT_EQ(user_content({t}, o), "look\n[image]");
  // Two turns answered at once: one user message, oldest first.
  EXPECT_EQ(user_content({turn_of({text("a", "first")}), turn_of({text("b", "second")})}, o),
            "first\nsecond");
}

TEST(BridgeAgent, ChatCompletionsAnswersAreTextOrAHandoff) {
  auto a = parse_chat_completion(
      Json::parse(R"({"choices":[{"message":{"role":"assistant","content":"Refund on its way."},"finish_reason":"stop"}]})"));
  ASSERT_TRUE(a.has_value()) << a.error();
  ASSERT_EQ(a->replies.size(), 1u);
  EXPECT_EQ(a->replies[0]["text"]["body"], "Refund on its way.");
  EXPECT_FALSE(a->handoff);
  auto h = parse_chat_completion(Json::parse(
      R"({"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"handoff_to_human","arguments":"{\"reason\":\"wants a person\"}"}}]},"finish_reason":"tool_calls"}]})"));
  ASSERT_TRUE(h.has_value()) << h.error();
  ASSERT_TRUE(h->handoff);
  EXPECT_EQ(h->handoff->reason, "wants a person");
  EXPECT_TRUE(h->replies.empty());
  auto empty = parse_chat_completion(Json::parse(R"({"choices":[{"message":{"content":""},"finish_reason":"length"}]})"));
  ASSERT_FALSE(empty.has_value());
  EXPECT_NE(empty.error().find("neither content nor a tool call"), std::string::npos);
  EXPECT_FALSE(parse_chat_completion(Json::parse(R"({"choices":[]})")).has_value());
}

TEST(BridgeAgent, WebhookAnswersMapOneToOneAndABadBodyIsAnErrorWithAReason) {
  auto a = parse_webhook_answer(Json::parse(R"({
    "replies": [
      {"type": "text", "text": "Hello!"},
      {"type": "image", "link": "https://cdn.example/a.jpg", "caption": "your plan"},
      {"type": "buttons", "text": "Anything else?", "buttons": [{"id": "yes", "title": "Yes"}, {"title": "No"}]},
      {"type": "reaction", "emoji": "👍"}
    ],
    "handoff": null, "end_session": false, "session_id": "s-42"})"));
  ASSERT_TRUE(a.has_value()) << a.error();
  ASSERT_EQ(a->replies.size(), 4u);
  EXPECT_EQ(a->session_id, "s-42");
  EXPECT_EQ(a->replies[1], (Json{{"type", "image"}, {"image", {{"link", "https://cdn.example/a.jpg"}, {"caption", "your plan"}}}}));
  EXPECT_EQ(a->replies[2]["interactive"]["action"]["buttons"][1]["reply"],
            (Json{{"id", "No"}, {"title", "No"}}));
  auto handoff = parse_webhook_answer(Json::parse(R"({"replies": [], "handoff": {"reason": "billing", "queue": "tier2"}})"));
  ASSERT_TRUE(handoff.has_value()) << handoff.error();
  EXPECT_EQ(handoff->handoff->queue, "tier2");
  EXPECT_EQ(parse_webhook_answer(Json::parse(R"({"answer": "hi"})")).error(),
            "replies: required, an array (it may be empty)");
  EXPECT_EQ(parse_webhook_answer(Json::parse(R"({"replies": [{"type": "poll"}]})")).error(),
            "replies[0].type: expected text, image, video, document, audio, buttons, list or "
            "reaction, got 'poll'");
  EXPECT_FALSE(parse_webhook_answer(Json::parse(R"({"replies": []})")).has_value())
      << "2xx with nothing to do is a failure, not a silent nothing";
}

TEST(BridgeAgent, LongAnswersSplitOnParagraphsThenSentencesInOrder) {
  std::string p1(3000, 'a');
  std::string p2(3000, 'b');
  auto parts = split_text(p1 + "\n\n" + p2, 4096);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], p1);
  EXPECT_EQ(parts[1], p2);
  std::string sentences;
  for (int i = 0; i < 300; ++i) {
    sentences += "Sentence number " + std::to_string(i) + " is here. ";
  }
  parts = split_text(sentences, 4096);
  ASSERT_GE(parts.size(), 2u);
  std::string joined;
  for (const auto& p : parts) {
    EXPECT_LE(p.size(), 4096u);
    EXPECT_EQ(p.back(), '.') << "cut at a sentence end";
    joined += p + " ";
  }
  EXPECT_EQ(joined, sentences) << "nothing lost, nothing reordered";
  // No boundary at all: cut by characters, never inside a UTF-8 sequence.
  std::string accents;
  for (int i = 0; i < 5000; ++i) {
    accents += "\xc3\xa9";
  }
  parts = split_text(accents, 4096);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].size(), 8192u);
  EXPECT_EQ(parts[1].size(), 1808u);
  EXPECT_EQ(split_text("   short  "), std::vector<std::string>{"short"});
  EXPECT_TRUE(split_text("  \n ").empty());
}

TEST(BridgeAgent, AnAnswerBecomesOrderedRequestsKeyedByTurnAndPart) {
  const Json t = turn_of({text("wamid.1", "hi"), text("wamid.2", "refund?")}, "abc");
  Answer a;
  a.replies.push_back({{"type", "text"}, {"text", {{"body", std::string(4090, 'x') + "\n\n" + "second part"}}}});
  a.replies.push_back({{"type", "reaction"}, {"reaction", {{"emoji", "👍"}, {"message_id", ""}}}});
  const auto reqs = outbound_requests(t, a);
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0]["request_id"], "bridge:abc:0");
  EXPECT_EQ(reqs[0]["idempotency_key"], "bridge:abc:0");
  EXPECT_EQ(reqs[1]["text"]["body"], "second part");
  EXPECT_EQ(reqs[1]["request_id"], "bridge:abc:1");
  EXPECT_EQ(reqs[2]["reaction"]["message_id"], "wamid.2") << "the person's last message";
  for (const auto& r : reqs) {
    EXPECT_EQ(r["to"], "15550100001");
    EXPECT_EQ(r["priority"], "reply");
    EXPECT_EQ(r["phone_number_id"], "106540352242922");
    EXPECT_EQ(r["wafleet"]["turn_id"], "abc");
  }
  Json bsuid = t;
  bsuid["wa_id"] = "";
  bsuid["user_id"] = "US.13491208655302741918";
  EXPECT_EQ(outbound_requests(bsuid, a)[0]["recipient"], "US.13491208655302741918");
  const Json typing = typing_request(t, 0);
  EXPECT_EQ(typing["type"], "typing");
  EXPECT_EQ(typing["message_id"], "wamid.2");
  EXPECT_FALSE(typing.contains("to"));
}

TEST(BridgeAgent, AHandoffKeywordIsAWholeMessageInAnyCase) {
  const auto k = default_handoff_keywords();
  EXPECT_TRUE(asks_for_human(turn_of({text("1", "Human!")}), k));
  EXPECT_TRUE(asks_for_human(turn_of({text("1", "hello\n  ATENDENTE ")}), k)) << "one line of a joined text";
  EXPECT_TRUE(asks_for_human(turn_of({text("1", "¿humano?")}), k));
  EXPECT_FALSE(asks_for_human(turn_of({text("1", "my human resources manager said hi")}), k));
  EXPECT_FALSE(asks_for_human(turn_of({photo("1", "file:///x", "agent")}), k)) << "captions are not requests";
}

}  // namespace
}  // namespace wafleet::bridge
