#pragma once
#include <string>

#include "common/expected.h"

namespace wafleet {

// What the caller should do about a failure (STYLE.md §7). Each library's errors are mapped to
// one of these once, in its adapter.
enum class ErrorKind {
  kTransient,     // retry with backoff (broker down, Redis timeout, 5xx)
  kPermanent,     // will not succeed on retry: dead-letter and move on
  kInvalidInput,  // the input itself is bad: dead-letter with the reason
  kFatal,         // the process cannot continue: log and exit non-zero
};

const char* to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::kTransient;
  std::string message;

  static Error transient(std::string m) { return {ErrorKind::kTransient, std::move(m)}; }
  static Error permanent(std::string m) { return {ErrorKind::kPermanent, std::move(m)}; }
  static Error invalid(std::string m) { return {ErrorKind::kInvalidInput, std::move(m)}; }
  static Error fatal(std::string m) { return {ErrorKind::kFatal, std::move(m)}; }
};

template <typename T>
using Result = Expected<T, Error>;
using Status = Expected<void, Error>;

}  // namespace wafleet
