// Input validation at the engine's edge (DESIGN.md §9). Each check returns kInvalidArgument or
// kTooLarge with a message naming the field and the limit; callers validate everything before
// they write anything, so a rejected call changes nothing.
#ifndef SLUICE_CORE_SRC_VALIDATE_H_
#define SLUICE_CORE_SRC_VALIDATE_H_

#include <string_view>

#include "sluice/options.h"
#include "sluice/status.h"
#include "sluice/types.h"

namespace sluice::validate {

// A job spec; `where` prefixes messages (e.g. "jobs[3]: ") for batches.
Status Spec(const JobSpec& spec, const SizeLimits& limits, std::string_view where = {});
// (tenant, id) of an existing job.
Status JobRef(std::string_view tenant, std::string_view id, const SizeLimits& limits);
// (tenant, key) of a concurrency key (capped by max_limit_key_bytes).
Status LimitKey(std::string_view tenant, std::string_view key, const SizeLimits& limits);
Status LeaseRequest(const sluice::LeaseRequest& r, const EngineOptions& options);
Status WorkerId(std::string_view worker_id, const SizeLimits& limits);
// A tenant name / a queue name (non-empty) within their caps.
Status Tenant(std::string_view tenant, const SizeLimits& limits);
Status Queue(std::string_view queue, const SizeLimits& limits);
// A ListJobs filter: caps on every string, known statuses, a non-empty creation range.
Status JobFilter(const sluice::JobFilter& f, const SizeLimits& limits);
Status TaskOutcome(const Outcome& outcome, const SizeLimits& limits);
Status Retry(const RetryPolicy& p, std::string_view where);
Status Options(const EngineOptions& options);

}  // namespace sluice::validate

#endif  // SLUICE_CORE_SRC_VALIDATE_H_
