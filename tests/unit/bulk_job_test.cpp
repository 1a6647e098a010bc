// The bulk worker's pure rules: reading lists, validation, requests, error classes, quiet hours.
#include <gtest/gtest.h>

#include "workers/bulk/job.h"

namespace wafleet::bulk {
namespace {

using Json = nlohmann::json;

JobSpec spec() {
  JobSpec s;
  s.id = "bj_0123456789abcdef";
  s.phone_number_id = "106540352242922";
  s.template_name = "spring_sale";
  s.language = "en_US";
  return s;
}

TEST(BulkTable, ReadsCsvWithQuotesCommasNewlinesAndCrlf) {
  auto t = read_table("to,body.1,body.2\r\n+44 7700 900123,\"Ana, the \"\"first\"\"\",x\r\n\r\n"
                      "447700900124,\"two\nlines\",y\n");
  ASSERT_TRUE(t) << t.error();
  ASSERT_EQ(t->rows.size(), 2u);
  EXPECT_EQ(t->rows[0].at("body.1"), "Ana, the \"first\"");
  EXPECT_EQ(t->rows[1].at("body.1"), "two\nlines");
  EXPECT_EQ(t->lines[0], 2u);
  EXPECT_EQ(t->lines[1], 4u);
}

TEST(BulkTable, RefusesCsvWithoutToColumnOrWithTooManyFields) {
  EXPECT_FALSE(read_table("phone,body.1\n1,2\n"));
  auto t = read_table("to,body.1\n447700900123,a,b\n");
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().find("line 2"), std::string::npos);
  EXPECT_FALSE(read_table("to\n\"open"));
  EXPECT_FALSE(read_table("   "));
}

TEST(BulkTable, ReadsJsonArraysObjectsAndLines) {
  auto a = read_table(R"([{"to": "447700900123", "body": ["Ana", 3]}, {"to": "447700900124", "body": {"first_name": "Bo"}}])");
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(a->rows[0].at("body.1"), "Ana");
  EXPECT_EQ(a->rows[0].at("body.2"), "3");
  EXPECT_EQ(a->rows[1].at("body.first_name"), "Bo");
  auto l = read_table("{\"to\": \"447700900123\"}\n\n{\"to\": \"447700900124\"}\n");
  ASSERT_TRUE(l) << l.error();
  EXPECT_EQ(l->rows.size(), 2u);
  EXPECT_EQ(l->lines[1], 3u);
  EXPECT_FALSE(read_table("{\"to\": \"1\"}\n{oops}\n"));
}

TEST(BulkValidate, NormalisesRemovesDuplicatesAndCountsEveryReason) {
  Table t;
  auto row = [&](std::map<std::string, std::string> r) {
    t.rows.push_back(std::move(r));
    t.lines.push_back(t.rows.size() + 1);
  };
  row({{"to", "+44 7700 900123"}, {"body.1", "Ana"}});
  row({{"to", "0044-7700-900123"}, {"body.1", "Ana again"}});  // the same person
  row({{"to", "not a phone"}});
  row({{"to", "12025550123"}});                                 // US
  row({{"to", "14165550123"}});                                 // Toronto: not US
  row({{"to", "447700900125"}, {"body.1", "a"}, {"body.3", "c"}});  // gap
  row({{"to", "US.13491208655302741918"}});
  row({{"to", "447700900126"}, {"tz", "Mars/Olympus"}});
  auto v = validate(t, spec());
  ASSERT_EQ(v.recipients.size(), 3u);
  EXPECT_EQ(v.recipients[0].to, "447700900123");
  EXPECT_EQ(v.recipients[1].to, "14165550123");
  EXPECT_EQ(v.recipients[2].recipient, "US.13491208655302741918");
  EXPECT_EQ(v.rejected_by_reason["duplicate"], 1u);
  EXPECT_EQ(v.rejected_by_reason["invalid_recipient"], 1u);
  EXPECT_EQ(v.rejected_by_reason["us_marketing"], 1u);
  EXPECT_EQ(v.rejected_by_reason["invalid_parameter"], 1u);
  EXPECT_EQ(v.rejected_by_reason["invalid_tz"], 1u);
  EXPECT_EQ(v.rows, 8u);
  auto utility = spec();
  utility.category = "utility";
  EXPECT_EQ(validate(t, utility).rejected_by_reason.count("us_marketing"), 0u);
}

TEST(BulkValidate, PhoneNumbersAndBsuids) {
  EXPECT_EQ(normalize_phone("+1 (202) 555-0123").value_or(""), "12025550123");
  EXPECT_EQ(normalize_phone("00491701234567").value_or(""), "491701234567");
  EXPECT_FALSE(normalize_phone("1234567"));
  EXPECT_FALSE(normalize_phone("+1234567890123456"));
  EXPECT_FALSE(normalize_phone("44+7700"));
  EXPECT_FALSE(normalize_phone("07700900123"));  // a national number: no country code
  EXPECT_TRUE(is_bsuid("US.13491208655302741918"));
  EXPECT_TRUE(is_bsuid("US.ENT.11815799212886844830"));
  EXPECT_FALSE(is_bsuid("us.123"));
  EXPECT_TRUE(is_us_number("12025550123"));
  EXPECT_TRUE(is_us_number("17875550123"));  // Puerto Rico is the US
  EXPECT_FALSE(is_us_number("18765550123"));  // Jamaica
  EXPECT_FALSE(is_us_number("442025550123"));
}

TEST(BulkComponents, HeaderBodyNamedAndUrlButton) {
  auto c = components_for({{"to", "x"},
                           {"header.image", "https://example.com/a.jpg"},
                           {"body.2", "two"},
                           {"body.1", "one"},
                           {"button.0", "ORDER-7"}});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ((*c)[0]["type"], "header");
  EXPECT_EQ((*c)[0]["parameters"][0]["image"]["link"], "https://example.com/a.jpg");
  EXPECT_EQ((*c)[1]["parameters"][0]["text"], "one");
  EXPECT_EQ((*c)[1]["parameters"][1]["text"], "two");
  EXPECT_EQ((*c)[2]["sub_type"], "url");
  EXPECT_EQ((*c)[2]["index"], "0");
  auto named = components_for({{"body.first_name", "Ana"}});
  ASSERT_TRUE(named);
  EXPECT_EQ((*named)[0]["parameters"][0]["parameter_name"], "first_name");
  EXPECT_FALSE(components_for({{"body.1", "a"}, {"body.name", "b"}}));
  EXPECT_FALSE(components_for({{"body.1", "tab\there"}}));
  EXPECT_FALSE(components_for({{"header.image", "ftp://x"}}));
  EXPECT_FALSE(components_for({{"color", "red"}}));
  EXPECT_FALSE(components_for({{"body.1", ""}}));
}

TEST(BulkRequest, CarriesTheJobRecipientKeyAndPriorityBulk) {
  Recipient r;
  r.to = "447700900123";
  r.components = Json::array({{{"type", "body"}, {"parameters", {{{"type", "text"}, {"text", "Ana"}}}}}});
  auto j = outbound_request(spec(), r, 41, 1);
  EXPECT_EQ(j["idempotency_key"], "bulk:bj_0123456789abcdef:41");
  EXPECT_EQ(j["priority"], "bulk");
  EXPECT_EQ(j["to"], "447700900123");
  EXPECT_EQ(j["template"]["name"], "spring_sale");
  EXPECT_EQ(j["template"]["language"]["code"], "en_US");
  EXPECT_EQ(j["biz_opaque_callback_data"], "wafleet-bulk:bj_0123456789abcdef:41");
  auto retry = outbound_request(spec(), r, 41, 3);
  EXPECT_EQ(retry["idempotency_key"], "bulk:bj_0123456789abcdef:41:r3");
  auto ref = parse_attempt_key("bulk:bj_0123456789abcdef:41:r3");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->job, "bj_0123456789abcdef");
  EXPECT_EQ(ref->index, 41u);
  EXPECT_EQ(ref->attempt, 3);
  auto cb = parse_callback_data("wafleet-bulk:bj_0123456789abcdef:41");
  ASSERT_TRUE(cb);
  EXPECT_EQ(cb->attempt, 1);
  EXPECT_FALSE(parse_attempt_key("bridge:turn:1"));
  EXPECT_FALSE(parse_attempt_key("bulk:bj_nothex:1"));
  EXPECT_FALSE(parse_attempt_key("bulk:bj_0123456789abcdef:x"));
  EXPECT_EQ(conversation_key(spec(), r), "106540352242922:447700900123");
}

TEST(BulkClassify, EveryClassOfTheIssue) {
  for (int code : {131048, 368, 131031, 190, 10, 200, 131042}) {
    EXPECT_EQ(classify(code).action, Action::kPauseJob) << code;
  }
  for (int code : {4, 80007, 131057}) {
    EXPECT_EQ(classify(code).action, Action::kBackOff) << code;
  }
  for (int code : {131026, 131050, 130472, 132000, 132012, 132018}) {
    EXPECT_EQ(classify(code).action, Action::kSkip) << code;
  }
  for (int code : {130429, 131056, 131000}) {
    EXPECT_EQ(classify(code).action, Action::kRetryLater) << code;
  }
  EXPECT_EQ(classify(131049).action, Action::kRetryMuchLater);
  EXPECT_EQ(classify(132001).action, Action::kFailJob);
  EXPECT_EQ(classify(999999).action, Action::kFail);
}

TEST(BulkQuietHours, WrapsMidnightInTheRecipientsZone) {
  auto q = parse_quiet_hours("21:00-08:00");
  ASSERT_TRUE(q);
  const int64_t utc_2230 = *parse_iso8601("2026-12-01T22:30:00Z");
  EXPECT_EQ(quiet_until(*q, 0, utc_2230), *parse_iso8601("2026-12-02T08:00:00Z"));
  EXPECT_EQ(quiet_until(*q, 60, *parse_iso8601("2026-12-01T12:00:00Z")), 0);
  // 06:30 UTC is 07:30 in Paris in winter: quiet until 08:00 local = 07:00 UTC.
  auto paris = utc_offset_minutes("Europe/Paris", *parse_iso8601("2026-12-01T06:30:00Z"));
  ASSERT_TRUE(paris) << paris.error();
  EXPECT_EQ(*paris, 60);
  EXPECT_EQ(quiet_until(*q, *paris, *parse_iso8601("2026-12-01T06:30:00Z")),
            *parse_iso8601("2026-12-01T07:00:00Z"));
  auto summer = utc_offset_minutes("Europe/Paris", *parse_iso8601("2026-07-01T06:30:00Z"));
  ASSERT_TRUE(summer);
  EXPECT_EQ(*summer, 120);
  EXPECT_EQ(*utc_offset_minutes("+05:30", 0), 330);
  EXPECT_EQ(*utc_offset_minutes("America/New_York", *parse_iso8601("2026-12-01T00:00:00Z")), -300);
  EXPECT_FALSE(utc_offset_minutes("../etc/passwd", 0));
  EXPECT_FALSE(utc_offset_minutes("Mars/Olympus", 0));
  EXPECT_FALSE(parse_quiet_hours("9-5"));
}

TEST(BulkTime, Iso8601AndEstimates) {
  EXPECT_EQ(*parse_iso8601("2026-12-01T09:30:00Z"), 1796117400000);
  EXPECT_EQ(*parse_iso8601("2026-12-01T10:30:00+01:00"), 1796117400000);
  EXPECT_EQ(*parse_iso8601("2026-12-01T09:30"), 1796117400000);
  EXPECT_EQ(format_iso8601(1796117400000), "2026-12-01T09:30:00Z");
  EXPECT_FALSE(parse_iso8601("tomorrow"));
  EXPECT_FALSE(parse_iso8601("2026-13-01T09:30:00Z"));
  auto fits = estimate(700, 70, 1000, 800);
  EXPECT_EQ(fits.windows, 0);
  EXPECT_DOUBLE_EQ(fits.seconds, 10);
  auto over = estimate(2500, 70, 1000, 500);
  EXPECT_EQ(over.windows, 2);
  EXPECT_NE(over.text.find("1000 new people per 24 hours"), std::string::npos);
}

TEST(BulkState, NamesRoundTrip) {
  for (State s : {State::kPending, State::kScheduled, State::kInProgress, State::kPaused,
                  State::kCompleted, State::kCancelled, State::kFailed}) {
    EXPECT_EQ(parse_state(to_string(s)), s);
  }
  EXPECT_TRUE(terminal(State::kCancelled));
  EXPECT_FALSE(terminal(State::kPaused));
  EXPECT_TRUE(valid_job_id(new_job_id()));
  EXPECT_FALSE(valid_job_id("bj_0123456789ABCDEF"));
}

}  // namespace
}  // namespace wafleet::bulk
