#include "sluice/types.h"

namespace sluice {

std::string_view JobStatusName(JobStatus s) {
  switch (s) {
    case JobStatus::kScheduled:
      return "scheduled";
    case JobStatus::kWaiting:
      return "waiting";
    case JobStatus::kRunning:
      return "running";
    case JobStatus::kSucceeded:
      return "succeeded";
    case JobStatus::kFailed:
      return "failed";
    case JobStatus::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string_view AttemptStatusName(AttemptStatus s) {
  switch (s) {
    case AttemptStatus::kRunning:
      return "running";
    case AttemptStatus::kSucceeded:
      return "succeeded";
    case AttemptStatus::kFailed:
      return "failed";
    case AttemptStatus::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

}  // namespace sluice
