#include "sluice/status.h"

namespace sluice {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kTooLarge:
      return "too_large";
    case StatusCode::kLeaseLost:
      return "lease_lost";
    case StatusCode::kFailedPrecondition:
      return "failed_precondition";
    case StatusCode::kClosed:
      return "closed";
    case StatusCode::kIoError:
      return "io_error";
    case StatusCode::kCorruption:
      return "corruption";
    case StatusCode::kTimeout:
      return "timeout";
    case StatusCode::kAlreadyExists:
      return "already_exists";
    case StatusCode::kBusy:
      return "busy";
    case StatusCode::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s(StatusCodeName(code_));
  s.append(": ");
  s.append(message_);
  return s;
}

}  // namespace sluice
