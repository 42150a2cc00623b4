#include "validate.h"

#include <cmath>
#include <set>
#include <string>

namespace sluice::validate {
namespace {

constexpr uint64_t kMaxLeaseMs = 24ULL * 3600 * 1000;
// Backoffs and refresh intervals: 30 days, far from any overflow of now + delay.
constexpr uint64_t kMaxDelayMs = 30ULL * 24 * 3600 * 1000;
constexpr uint32_t kMaxRetries = 100'000;
constexpr uint32_t kMaxPriority = 99;

std::string Prefix(std::string_view where, std::string_view field) {
  std::string s(where);
  s.append(field);
  return s;
}

Status CheckSize(std::string_view where, std::string_view field, uint64_t size, uint64_t limit,
                 std::string_view limit_name) {
  if (size <= limit) return Status::Ok();
  return Status::TooLarge(Prefix(where, field) + " is " + std::to_string(size) +
                          " bytes; the limit is " + std::to_string(limit) + " (" +
                          std::string(limit_name) + ")");
}

Status Required(std::string_view where, std::string_view field, std::string_view value) {
  if (!value.empty()) return Status::Ok();
  return Status::InvalidArgument(Prefix(where, field) + " must not be empty");
}

Status Metadata(const std::map<std::string, std::string>& md, const SizeLimits& limits,
                std::string_view where, std::string_view field) {
  if (md.size() > limits.max_metadata_entries) {
    return Status::TooLarge(
        Prefix(where, field) + " has " + std::to_string(md.size()) + " entries; the limit is " +
        std::to_string(limits.max_metadata_entries) + " (max_metadata_entries)");
  }
  for (const auto& [k, v] : md) {
    if (k.empty()) return Status::InvalidArgument(Prefix(where, field) + " key must not be empty");
    Status s = CheckSize(where, std::string(field) + " key \"" + k.substr(0, 32) + "\"", k.size(),
                         limits.max_metadata_key_bytes, "max_metadata_key_bytes");
    if (!s.ok()) return s;
    s = CheckSize(where, std::string(field) + " value of \"" + k.substr(0, 32) + "\"", v.size(),
                  limits.max_metadata_value_bytes, "max_metadata_value_bytes");
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status Limits(const std::vector<ConcurrencyLimit>& ls, const SizeLimits& limits,
              std::string_view where) {
  if (ls.size() > limits.max_limits_per_job) {
    return Status::TooLarge(Prefix(where, "limits") + " has " + std::to_string(ls.size()) +
                            " entries; the limit is " + std::to_string(limits.max_limits_per_job) +
                            " (max_limits_per_job)");
  }
  std::set<std::pair<ConcurrencyLimit::Kind, std::string_view>> seen;
  for (size_t i = 0; i < ls.size(); ++i) {
    const ConcurrencyLimit& l = ls[i];
    const std::string field = "limits[" + std::to_string(i) + "]";
    Status s = Required(where, field + ".key", l.key);
    if (!s.ok()) return s;
    s = CheckSize(where, field + ".key", l.key.size(), limits.max_limit_key_bytes,
                  "max_limit_key_bytes");
    if (!s.ok()) return s;
    if (!seen.insert({l.kind, l.key}).second) {
      return Status::InvalidArgument(Prefix(where, field) + ".key \"" + l.key +
                                     "\" appears twice in one job");
    }
    if (l.kind == ConcurrencyLimit::Kind::kFixed) {
      if (l.max == 0) {
        return Status::InvalidArgument(Prefix(where, field) + ".max must be at least 1");
      }
    } else if (l.kind == ConcurrencyLimit::Kind::kFloating) {
      if (l.refresh_interval_ms == 0 || l.refresh_interval_ms > kMaxDelayMs) {
        return Status::InvalidArgument(Prefix(where, field) + ".refresh_interval_ms must be 1.." +
                                       std::to_string(kMaxDelayMs) + " (30 days)");
      }
      s = Metadata(l.metadata, limits, where, field + ".metadata");
      if (!s.ok()) return s;
    } else {
      return Status::InvalidArgument(Prefix(where, field) + ".kind is not fixed or floating");
    }
  }
  return Status::Ok();
}

}  // namespace

Status Retry(const RetryPolicy& p, std::string_view where) {
  if (!std::isfinite(p.multiplier) || p.multiplier < 1.0) {
    return Status::InvalidArgument(Prefix(where, "retry.multiplier") + " must be >= 1.0");
  }
  if (p.initial_backoff_ms > kMaxDelayMs || p.max_backoff_ms > kMaxDelayMs) {
    return Status::InvalidArgument(Prefix(where, "retry") + " backoffs must be <= " +
                                   std::to_string(kMaxDelayMs) + " ms (30 days)");
  }
  if (p.max_retries > kMaxRetries) {
    return Status::InvalidArgument(Prefix(where, "retry.max_retries") +
                                   " must be <= " + std::to_string(kMaxRetries));
  }
  return Status::Ok();
}

Status Spec(const JobSpec& spec, const SizeLimits& limits, std::string_view where) {
  Status s = CheckSize(where, "id", spec.id.size(), limits.max_id_bytes, "max_id_bytes");
  if (s.ok())
    s = CheckSize(where, "tenant", spec.tenant.size(), limits.max_tenant_bytes, "max_tenant_bytes");
  if (s.ok()) s = Required(where, "queue", spec.queue);
  if (s.ok())
    s = CheckSize(where, "queue", spec.queue.size(), limits.max_queue_bytes, "max_queue_bytes");
  if (s.ok())
    s = CheckSize(where, "payload", spec.payload.size(), limits.max_payload_bytes,
                  "max_payload_bytes");
  if (!s.ok()) return s;
  if (spec.priority > kMaxPriority) {
    return Status::InvalidArgument(Prefix(where, "priority") + " is " +
                                   std::to_string(spec.priority) + "; it must be 0..99");
  }
  if (spec.start_at_ms < 0) {
    return Status::InvalidArgument(Prefix(where, "start_at_ms") + " must not be negative");
  }
  if (spec.lease_ms > kMaxLeaseMs) {
    return Status::InvalidArgument(Prefix(where, "lease_ms") +
                                   " must be <= " + std::to_string(kMaxLeaseMs) + " (24 h)");
  }
  if (spec.retry) {
    s = Retry(*spec.retry, where);
    if (!s.ok()) return s;
  }
  s = Metadata(spec.metadata, limits, where, "metadata");
  if (!s.ok()) return s;
  return Limits(spec.limits, limits, where);
}

Status JobRef(std::string_view tenant, std::string_view id, const SizeLimits& limits) {
  Status s = CheckSize({}, "tenant", tenant.size(), limits.max_tenant_bytes, "max_tenant_bytes");
  if (s.ok()) s = Required({}, "id", id);
  if (s.ok()) s = CheckSize({}, "id", id.size(), limits.max_id_bytes, "max_id_bytes");
  return s;
}

Status Tenant(std::string_view tenant, const SizeLimits& limits) {
  return CheckSize({}, "tenant", tenant.size(), limits.max_tenant_bytes, "max_tenant_bytes");
}

Status Queue(std::string_view queue, const SizeLimits& limits) {
  Status s = Required({}, "queue", queue);
  if (s.ok()) s = CheckSize({}, "queue", queue.size(), limits.max_queue_bytes, "max_queue_bytes");
  return s;
}

Status JobFilter(const sluice::JobFilter& f, const SizeLimits& limits) {
  Status s = Tenant(f.tenant, limits);
  if (s.ok() && !f.queue.empty()) s = Queue(f.queue, limits);
  if (s.ok()) s = CheckSize({}, "id", f.id.size(), limits.max_id_bytes, "max_id_bytes");
  if (s.ok()) {
    s = CheckSize({}, "id_prefix", f.id_prefix.size(), limits.max_id_bytes, "max_id_bytes");
  }
  if (!s.ok()) return s;
  if (f.statuses.size() > 6) return Status::InvalidArgument("statuses lists more than 6 statuses");
  for (JobStatus st : f.statuses) {
    if (static_cast<int>(st) > static_cast<int>(JobStatus::kCancelled)) {
      return Status::InvalidArgument("statuses has an unknown status " +
                                     std::to_string(static_cast<int>(st)));
    }
  }
  if (f.metadata.size() > limits.max_metadata_entries) {
    return Status::TooLarge("metadata filter has " + std::to_string(f.metadata.size()) +
                            " pairs; the limit is " + std::to_string(limits.max_metadata_entries) +
                            " (max_metadata_entries)");
  }
  for (const auto& [k, v] : f.metadata) {
    if (k.empty()) return Status::InvalidArgument("metadata filter key must not be empty");
    s = CheckSize({}, "metadata filter key", k.size(), limits.max_metadata_key_bytes,
                  "max_metadata_key_bytes");
    if (s.ok()) {
      s = CheckSize({}, "metadata filter value", v.size(), limits.max_metadata_value_bytes,
                    "max_metadata_value_bytes");
    }
    if (!s.ok()) return s;
  }
  if (f.created_from_ms < 0 || f.created_to_ms < f.created_from_ms) {
    return Status::InvalidArgument("created range [" + std::to_string(f.created_from_ms) + ", " +
                                   std::to_string(f.created_to_ms) +
                                   ") is invalid: need 0 <= created_from_ms <= created_to_ms");
  }
  return Status::Ok();
}

Status LimitKey(std::string_view tenant, std::string_view key, const SizeLimits& limits) {
  Status s = CheckSize({}, "tenant", tenant.size(), limits.max_tenant_bytes, "max_tenant_bytes");
  if (s.ok()) s = Required({}, "key", key);
  if (s.ok()) {
    s = CheckSize({}, "key", key.size(), limits.max_limit_key_bytes, "max_limit_key_bytes");
  }
  return s;
}

Status WorkerId(std::string_view worker_id, const SizeLimits& limits) {
  Status s = Required({}, "worker_id", worker_id);
  if (s.ok())
    s = CheckSize({}, "worker_id", worker_id.size(), limits.max_worker_id_bytes,
                  "max_worker_id_bytes");
  return s;
}

Status LeaseRequest(const sluice::LeaseRequest& r, const EngineOptions& options) {
  const SizeLimits& limits = options.limits;
  Status s = CheckSize({}, "tenant", r.tenant.size(), limits.max_tenant_bytes, "max_tenant_bytes");
  if (s.ok()) s = Required({}, "queue", r.queue);
  if (s.ok()) s = CheckSize({}, "queue", r.queue.size(), limits.max_queue_bytes, "max_queue_bytes");
  if (s.ok()) s = WorkerId(r.worker_id, limits);
  if (!s.ok()) return s;
  if (r.max_tasks == 0 || r.max_tasks > options.max_lease_batch) {
    return Status::InvalidArgument("max_tasks is " + std::to_string(r.max_tasks) +
                                   "; it must be 1.." + std::to_string(options.max_lease_batch) +
                                   " (max_lease_batch)");
  }
  return Status::Ok();
}

Status TaskOutcome(const Outcome& o, const SizeLimits& limits) {
  switch (o.kind) {
    case Outcome::Kind::kSuccess:
      return CheckSize({}, "result", o.result.size(), limits.max_result_bytes, "max_result_bytes");
    case Outcome::Kind::kFailure: {
      Status s = Required({}, "error.code", o.error.code);
      if (s.ok())
        s = CheckSize({}, "error.code", o.error.code.size(), limits.max_error_code_bytes,
                      "max_error_code_bytes");
      if (s.ok())
        s = CheckSize({}, "error.message", o.error.message.size(), limits.max_error_message_bytes,
                      "max_error_message_bytes");
      if (s.ok())
        s = CheckSize({}, "error.data", o.error.data.size(), limits.max_error_data_bytes,
                      "max_error_data_bytes");
      return s;
    }
    case Outcome::Kind::kCancelled:
      return Status::Ok();
  }
  return Status::InvalidArgument("outcome.kind is not success, failure or cancelled");
}

Status Options(const EngineOptions& o) {
  if (o.path.empty()) return Status::InvalidArgument("options.path must not be empty");
  if (o.default_lease_ms == 0 || o.default_lease_ms > kMaxLeaseMs) {
    return Status::InvalidArgument("options.default_lease_ms must be 1..86400000");
  }
  if (o.max_grants_per_key_per_pass == 0) {
    return Status::InvalidArgument("options.max_grants_per_key_per_pass must be positive");
  }
  if (o.refresh_lease_ms == 0 || o.refresh_lease_ms > kMaxLeaseMs) {
    return Status::InvalidArgument("options.refresh_lease_ms must be 1..86400000");
  }
  if (o.refresh_backoff_initial_ms == 0 || o.refresh_backoff_max_ms > kMaxDelayMs ||
      o.refresh_backoff_initial_ms > o.refresh_backoff_max_ms) {
    return Status::InvalidArgument(
        "options.refresh_backoff_initial_ms must be >= 1 and <= refresh_backoff_max_ms, which "
        "must be <= 30 days");
  }
  if (o.max_lease_batch == 0) {
    return Status::InvalidArgument("options.max_lease_batch must be positive");
  }
  if (o.limits.max_id_bytes > 4096 || o.limits.max_tenant_bytes > 4096 ||
      o.limits.max_queue_bytes > 4096 || o.limits.max_limit_key_bytes > 4096) {
    return Status::InvalidArgument(
        "options.limits: id, tenant, queue and limit keys are capped "
        "at 4096 bytes");
  }
  return Retry(o.default_retry, "options.default_");
}

}  // namespace sluice::validate
