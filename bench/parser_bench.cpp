// Parser cost per webhook (Google Benchmark): the CPU the receiver spends besides I/O.
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>

#include "common/crypto.h"
#include "workers/receiver/webhook_parser.h"

namespace {

std::string body() {
  return R"({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},"field":"messages"}]}]})";
}

void BM_ParseTextWebhook(benchmark::State& state) {
  const std::string b = body();
  wafleet::receiver::ParseContext ctx{"meta", 1, "t"};
  for (auto _ : state) {
    auto r = wafleet::receiver::parse_meta_webhook(b, ctx);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_ParseTextWebhook);

void BM_VerifySignature(benchmark::State& state) {
  const std::string b = body();
  const std::string sig = "sha256=" + wafleet::crypto::hmac_sha256_hex("secret", b);
  for (auto _ : state) {
    benchmark::DoNotOptimize(wafleet::crypto::verify_hub_signature(sig, {"secret"}, b));
  }
}
BENCHMARK(BM_VerifySignature);

void BM_EncodeEvent(benchmark::State& state) {
  wafleet::receiver::ParseContext ctx{"meta", 1, "t"};
  auto events = wafleet::receiver::parse_meta_webhook(body(), ctx).value();
  for (auto _ : state) {
    auto s = events[0].encode();
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_EncodeEvent);

}  // namespace

BENCHMARK_MAIN();
