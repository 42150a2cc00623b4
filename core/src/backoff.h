// Retry backoff: the one formula, documented in docs/decisions.md.
#ifndef SLUICE_CORE_SRC_BACKOFF_H_
#define SLUICE_CORE_SRC_BACKOFF_H_

#include <cstdint>

#include "sluice/types.h"

namespace sluice {

// Delay before retry number `retry` (1-based):
//   d = min(max_backoff_ms, initial_backoff_ms * multiplier^(retry-1)), computed without overflow;
// with policy.jitter, a uniform draw from [0, d] using `random` (any 64-bit random value).
uint64_t BackoffMs(const RetryPolicy& policy, uint32_t retry, uint64_t random);

}  // namespace sluice

#endif  // SLUICE_CORE_SRC_BACKOFF_H_
