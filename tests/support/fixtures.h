#pragma once
// Golden inputs: the shared WhatsApp fixtures, read as raw bytes.
#include <string>
#include <vector>

namespace wafleet::test {

std::string fixture_path(const std::string& name);
// Raw bytes of a fixture file; fails the test (ADD_FAILURE) and returns "" if missing.
std::string fixture(const std::string& name);
// File names in the fixture directory starting with prefix, sorted.
std::vector<std::string> fixture_names(const std::string& prefix);

}  // namespace wafleet::test
