// The Graph API emulator over HTTP, against Meta's documented request and response shapes
// (tests/fixtures/whatsapp): every send example is accepted with Meta's success shape,
// faults answer in Meta's error shape, and the admin API signs webhooks a receiver accepts.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/crypto.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "tests/support/fixtures.h"
#include "workers/graph-emulator/emulator.h"

namespace wafleet::emulator {
namespace {

class GraphEmulatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<http::Server>(http::ServerOptions{}, [this](http::Request&& q,
                                                                           http::Responder r) {
      emulator_.handle(std::move(q), std::move(r));
    });
    ASSERT_TRUE(server_->start().has_value());
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
    emulator_.set_public_base(base_);
  }
  void TearDown() override { server_->stop(); }

  http::ClientResponse post(const std::string& path, const std::string& body,
                            const std::string& token = "emulator-token") {
    auto r = http::fetch("POST", base_ + path,
                         {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}},
                         body, std::chrono::seconds(5));
    EXPECT_TRUE(r.has_value());
    return r ? *r : http::ClientResponse{};
  }

  GraphEmulator emulator_{Options{}};
  std::unique_ptr<http::Server> server_;
  std::string base_;
};

TEST_F(GraphEmulatorTest, EverySendExampleGetsMetasSuccessShape) {
  int sends = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::fixture_path(""))) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("meta_send_") || name.find("response") != std::string::npos) {
      continue;
    }
    auto r = post("/v22.0/106540352242922/messages", test::fixture(name));
    ASSERT_EQ(r.status, 200) << name << ": " << r.body;
    auto j = nlohmann::json::parse(r.body);
    auto req = nlohmann::json::parse(test::fixture(name));
    if (req.value("status", "") == "read") {
      EXPECT_EQ(j, nlohmann::json({{"success", true}})) << name;
    } else {
      EXPECT_EQ(j["messaging_product"], "whatsapp") << name;
      EXPECT_EQ(j["contacts"][0]["input"], req["to"]) << name;
      EXPECT_TRUE(j["messages"][0]["id"].get<std::string>().starts_with("wamid.")) << name;
    }
    ++sends;
  }
  EXPECT_GE(sends, 15);
  // Every call is recorded with its JSON body.
  EXPECT_EQ(emulator_.calls().size(), static_cast<size_t>(sends));
  EXPECT_EQ(emulator_.calls()[0]["body"]["messaging_product"], "whatsapp");
}

TEST_F(GraphEmulatorTest, BusinessScopedRecipientsGetAUserIdAndNoWaId) {
  auto r = post("/v22.0/1/messages",
                R"({"messaging_product":"whatsapp","recipient":"US.13491208655302741918","type":"text","text":{"body":"hi"}})");
  ASSERT_EQ(r.status, 200);
  auto c = nlohmann::json::parse(r.body)["contacts"][0];
  EXPECT_EQ(c["user_id"], "US.13491208655302741918");
  EXPECT_EQ(c["wa_id"], "");
}

TEST_F(GraphEmulatorTest, FaultsAnswerInMetasErrorShape) {
  const auto meta = nlohmann::json::parse(test::fixture("meta_graph_error_130429.json"))["error"];
  for (int code : {130429, 131056, 131047, 131026}) {
    Fault f;
    f.endpoint = "messages";
    f.match = "+16505551234";
    f.error_code = code;
    emulator_.add_fault(f);
    auto r = post("/v22.0/1/messages", test::fixture("meta_send_text_preview_url.json"));
    EXPECT_EQ(r.status, 400);
    auto e = nlohmann::json::parse(r.body)["error"];
    EXPECT_EQ(e["code"], code);
    EXPECT_EQ(e["type"], meta["type"]);
    EXPECT_TRUE(e["message"].get<std::string>().starts_with("(#" + std::to_string(code) + ") "));
    EXPECT_EQ(e["error_data"]["messaging_product"], "whatsapp");
    EXPECT_TRUE(e.contains("fbtrace_id"));
    if (code == 130429) {
      EXPECT_EQ(e["message"], meta["message"]);
      EXPECT_EQ(e["error_data"]["details"], meta["error_data"]["details"]);
    }
  }
  // A 5xx, then normal service again (the rule was one-shot); another recipient is unaffected.
  Fault down;
  down.endpoint = "messages";
  down.http_status = 503;
  emulator_.add_fault(down);
  EXPECT_EQ(post("/v22.0/1/messages", test::fixture("meta_send_text_preview_url.json")).status, 503);
  EXPECT_EQ(post("/v22.0/1/messages", test::fixture("meta_send_text_preview_url.json")).status, 200);
  // No token: 401 with code 190.
  auto r = post("/v22.0/1/messages", test::fixture("meta_send_text_preview_url.json"), "wrong");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["code"], 190);
}

TEST_F(GraphEmulatorTest, LatencyFaultsDelayTheAnswer) {
  Fault f;
  f.endpoint = "messages";
  f.latency_ms = 400;
  emulator_.add_fault(f);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(post("/v22.0/1/messages", test::fixture("meta_send_text_preview_url.json")).status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(400));
}

TEST_F(GraphEmulatorTest, MediaUrlsNeedTheTokenAndExpire) {
  Options short_lived;
  short_lived.url_ttl_ms = 300;
  GraphEmulator emu(short_lived);
  http::Server srv(http::ServerOptions{}, [&](http::Request&& q, http::Responder r) {
    emu.handle(std::move(q), std::move(r));
  });
  ASSERT_TRUE(srv.start().has_value());
  const std::string base = "http://127.0.0.1:" + std::to_string(srv.port());
  emu.set_public_base(base);
  emu.add_media({"m1", "image/jpeg", "jpeg bytes", "", ""});
  auto info = http::fetch("GET", base + "/v22.0/m1", {{"Authorization", "Bearer emulator-token"}},
                          "", std::chrono::seconds(5));
  ASSERT_TRUE(info && info->status == 200);
  auto j = nlohmann::json::parse(info->body);
  EXPECT_EQ(j["sha256"], crypto::sha256_hex("jpeg bytes"));
  EXPECT_EQ(j["file_size"], 10);
  const std::string url = j["url"];
  auto anonymous = http::fetch("GET", url, {}, "", std::chrono::seconds(5));
  EXPECT_EQ(anonymous->status, 401);
  auto ok = http::fetch("GET", url, {{"Authorization", "Bearer emulator-token"}}, "",
                        std::chrono::seconds(5));
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "jpeg bytes");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto expired = http::fetch("GET", url, {{"Authorization", "Bearer emulator-token"}}, "",
                             std::chrono::seconds(5));
  EXPECT_EQ(expired->status, 404);
  srv.stop();
}

TEST_F(GraphEmulatorTest, SignsWebhooksForAReceiver) {
  // The receiving end: checks the signature the way Meta's receivers must.
  std::string got_signature;
  std::string got_body;
  http::Server receiver(http::ServerOptions{}, [&](http::Request&& q, http::Responder r) {
    got_signature = std::string(q["X-Hub-Signature-256"]);
    got_body = q.body();
    r(http::make_response(q, 200, "ok"));
  });
  ASSERT_TRUE(receiver.start().has_value());
  const std::string hook = test::fixture("meta_inbound_text.json");
  nlohmann::json req = {{"url", "http://127.0.0.1:" + std::to_string(receiver.port()) + "/webhook"},
                        {"app_secret", "s3cret"},
                        {"body", hook}};
  auto r = post("/_emulator/webhook", req.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["status"], 200);
  EXPECT_EQ(got_body, hook);
  EXPECT_TRUE(crypto::verify_hub_signature(got_signature, {std::string("s3cret")}, got_body));
  receiver.stop();
}

TEST_F(GraphEmulatorTest, MessagesAreAsStrictAsMetaWhereTheContractSaysSo) {
  auto too_long = post("/v22.0/106540352242922/messages",
                       nlohmann::json{{"messaging_product", "whatsapp"}, {"to", "16505551234"},
                                      {"type", "text"}, {"text", {{"body", std::string(4097, 'a')}}}}
                           .dump());
  EXPECT_EQ(too_long.status, 400);
  EXPECT_EQ(nlohmann::json::parse(too_long.body)["error"]["code"], 100) << too_long.body;
  auto unknown = post("/v22.0/106540352242922/messages",
                      nlohmann::json{{"messaging_product", "whatsapp"}, {"to", "16505551234"},
                                     {"type", "poll"}, {"poll", {{"q", "?"}}}}
                          .dump());
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(nlohmann::json::parse(unknown.body)["error"]["code"], 100) << unknown.body;
  auto group = post("/v22.0/106540352242922/messages", test::fixture("wafleet_send_text_group.json"));
  ASSERT_EQ(group.status, 200) << group.body;
  const auto answer = nlohmann::json::parse(group.body);
  EXPECT_EQ(answer["contacts"][0],
            nlohmann::json({{"input", "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"}}))
      << "a group has no wa_id: no digits are taken out of its id";
  EXPECT_TRUE(answer["messages"][0]["id"].get<std::string>().starts_with("wamid."));
}

TEST_F(GraphEmulatorTest, UploadedMediaCanBeLookedUpAndDeletedPerTheContract) {
  auto multipart = [&](const std::vector<std::pair<std::string, std::string>>& fields,
                       const std::string& file, const std::string& file_type) {
    const std::string boundary = "----wafleet-test-boundary";
    std::string body;
    for (const auto& [k, v] : fields) {
      body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + k + "\"\r\n\r\n" +
              v + "\r\n";
    }
    body += "--" + boundary +
            "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: " +
            file_type + "\r\n\r\n" + file + "\r\n--" + boundary + "--\r\n";
    return http::fetch("POST", base_ + "/v22.0/106540352242922/media",
                       {{"Content-Type", "multipart/form-data; boundary=" + boundary},
                        {"Authorization", "Bearer emulator-token"}},
                       body, std::chrono::seconds(5));
  };
  const std::string png = "\x89PNG\r\n\x1a\n fake image bytes";
  auto up = multipart({{"messaging_product", "whatsapp"}, {"type", "image/png"}}, png, "image/png");
  ASSERT_TRUE(up && up->status == 200) << (up ? up->body : up.error().message);
  const std::string id = nlohmann::json::parse(up->body)["id"];
  auto info = http::fetch("GET", base_ + "/v22.0/" + id, {{"Authorization", "Bearer emulator-token"}},
                          "", std::chrono::seconds(5));
  ASSERT_TRUE(info && info->status == 200);
  EXPECT_EQ(nlohmann::json::parse(info->body)["mime_type"], "image/png");
  EXPECT_EQ(nlohmann::json::parse(info->body)["file_size"], png.size());
  auto del = http::fetch("DELETE", base_ + "/v22.0/" + id, {{"Authorization", "Bearer emulator-token"}},
                         "", std::chrono::seconds(5));
  ASSERT_TRUE(del && del->status == 200);
  EXPECT_EQ(nlohmann::json::parse(del->body), nlohmann::json({{"success", true}}));
  auto gone = http::fetch("GET", base_ + "/v22.0/" + id, {{"Authorization", "Bearer emulator-token"}},
                          "", std::chrono::seconds(5));
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(nlohmann::json::parse(gone->body)["error"]["code"], 100);
  auto gif = multipart({{"messaging_product", "whatsapp"}, {"type", "image/gif"}}, "GIF89a", "image/gif");
  ASSERT_TRUE(gif.has_value());
  EXPECT_EQ(gif->status, 400) << "Meta takes jpeg and png images only";
  auto bare = multipart({{"type", "image/png"}}, png, "image/png");
  ASSERT_TRUE(bare.has_value());
  EXPECT_EQ(nlohmann::json::parse(bare->body)["error"]["code"], 100) << "messaging_product is required";
}

}  // namespace
}  // namespace wafleet::emulator
