#include "backoff.h"

#include <algorithm>
#include <cmath>

namespace sluice {

uint64_t BackoffMs(const RetryPolicy& policy, uint32_t retry, uint64_t random) {
  const double cap = static_cast<double>(policy.max_backoff_ms);
  const double exponent = retry == 0 ? 0.0 : static_cast<double>(retry - 1);
  double d = static_cast<double>(policy.initial_backoff_ms) * std::pow(policy.multiplier, exponent);
  if (!std::isfinite(d) || d > cap) d = cap;
  d = std::max(d, 0.0);
  auto delay = static_cast<uint64_t>(d);
  if (policy.jitter && delay > 0) delay = random % (delay + 1);
  return delay;
}

}  // namespace sluice
