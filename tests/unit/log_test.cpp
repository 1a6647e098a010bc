#include "common/log.h"

#include <gtest/gtest.h>

namespace wafleet::log {
namespace {

TEST(Log, PhoneNumbersKeepOnlyTheirLastFourDigits) {
  EXPECT_EQ(redact_phone("15551234567"), "*******4567");
  EXPECT_EQ(redact_phone("+1 555-123-4567"), "+* ***-***-4567");
  EXPECT_EQ(redact_phone("US.13491208655302741918"), "US.13491208655302741918");
  EXPECT_EQ(redact_phone(""), "");
  EXPECT_EQ(redact_phone("123"), "***");
}

TEST(Log, DigitRunsInFreeTextAreRedacted) {
  EXPECT_EQ(redact_digits("106540352242922:15551234567 offset 42"),
            "***********2922:*******4567 offset 42");
}

TEST(Log, ClearNumbersOnlyWhenAllowed) {
  init("test", "info", true);
  EXPECT_EQ(phone("15551234567"), "15551234567");
  init("test", "info", false);
  EXPECT_EQ(phone("15551234567"), "*******4567");
}

}  // namespace
}  // namespace wafleet::log
