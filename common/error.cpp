#include "common/error.h"

namespace wafleet {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kTransient:
      return "transient";
    case ErrorKind::kPermanent:
      return "permanent";
    case ErrorKind::kInvalidInput:
      return "invalid_input";
    case ErrorKind::kFatal:
      return "fatal";
  }
  return "unknown";
}

}  // namespace wafleet
