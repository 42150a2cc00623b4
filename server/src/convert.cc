#include "convert.h"

#include <absl/strings/escaping.h>

#include <limits>

namespace sluice::server {
namespace {

RetryPolicy FromProto(const v1::RetryPolicy& in) {
  RetryPolicy r;
  r.max_retries = in.max_retries();
  r.initial_backoff_ms = in.initial_backoff_ms();
  r.max_backoff_ms = in.max_backoff_ms();
  r.multiplier = in.multiplier();
  r.jitter = in.jitter();
  return r;
}

void ToProto(const RetryPolicy& in, v1::RetryPolicy* out) {
  out->set_max_retries(in.max_retries);
  out->set_initial_backoff_ms(in.initial_backoff_ms);
  out->set_max_backoff_ms(in.max_backoff_ms);
  out->set_multiplier(in.multiplier);
  out->set_jitter(in.jitter);
}

void ToProto(const ErrorInfo& in, v1::ErrorInfo* out) {
  out->set_code(in.code);
  out->set_message(in.message);
  out->set_data(in.data);
}

v1::ConcurrencyLimit::Kind ToProto(ConcurrencyLimit::Kind k) {
  return k == ConcurrencyLimit::Kind::kFloating ? v1::ConcurrencyLimit::FLOATING
                                                : v1::ConcurrencyLimit::FIXED;
}

v1::AttemptStatus ToProto(AttemptStatus s) {
  switch (s) {
    case AttemptStatus::kRunning:
      return v1::ATTEMPT_RUNNING;
    case AttemptStatus::kSucceeded:
      return v1::ATTEMPT_SUCCEEDED;
    case AttemptStatus::kFailed:
      return v1::ATTEMPT_FAILED;
    case AttemptStatus::kCancelled:
      return v1::ATTEMPT_CANCELLED;
  }
  return v1::ATTEMPT_STATUS_UNSPECIFIED;
}

// Whether `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view s) {
  static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};  // by continuation bytes
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = c;
    if (c >= 0x80) {
      if ((c & 0xe0) == 0xc0) {
        n = 1;
        cp = c & 0x1fu;
      } else if ((c & 0xf0) == 0xe0) {
        n = 2;
        cp = c & 0x0fu;
      } else if ((c & 0xf8) == 0xf0) {
        n = 3;
        cp = c & 0x07u;
      } else {
        return false;
      }
    }
    if (i + n >= s.size() && n > 0) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3fu);
    }
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

Result<JobStatus> StatusFromProto(int s, int index) {
  switch (s) {
    case v1::SCHEDULED:
      return JobStatus::kScheduled;
    case v1::WAITING:
      return JobStatus::kWaiting;
    case v1::RUNNING:
      return JobStatus::kRunning;
    case v1::SUCCEEDED:
      return JobStatus::kSucceeded;
    case v1::FAILED:
      return JobStatus::kFailed;
    case v1::CANCELLED:
      return JobStatus::kCancelled;
    default:
      return Status::InvalidArgument("statuses[" + std::to_string(index) +
                                     "]: " + std::to_string(s) + " is not a job status");
  }
}

template <typename Map>
void CopyMap(const Map& in, google::protobuf::Map<std::string, std::string>* out) {
  for (const auto& [k, v] : in) (*out)[k] = v;
}

}  // namespace

JobSpec FromProto(const v1::JobSpec& in, const std::string& tenant) {
  JobSpec s;
  s.id = in.id();
  s.tenant = tenant;
  s.queue = in.queue();
  if (in.has_priority()) s.priority = in.priority();
  s.start_at_ms = in.start_at_ms();
  if (in.has_retry()) s.retry = FromProto(in.retry());
  s.lease_ms = in.lease_ms();
  s.payload = in.payload();
  s.metadata.insert(in.metadata().begin(), in.metadata().end());
  s.limits.reserve(static_cast<size_t>(in.limits_size()));
  for (const v1::ConcurrencyLimit& l : in.limits()) {
    ConcurrencyLimit c;
    c.kind = l.kind() == v1::ConcurrencyLimit::FLOATING ? ConcurrencyLimit::Kind::kFloating
                                                        : ConcurrencyLimit::Kind::kFixed;
    c.key = l.key();
    c.max = l.max();
    c.refresh_interval_ms = l.refresh_interval_ms();
    c.metadata.insert(l.metadata().begin(), l.metadata().end());
    s.limits.push_back(std::move(c));
  }
  return s;
}

bool FromProto(const v1::Outcome& in, Outcome* out) {
  switch (in.kind_case()) {
    case v1::Outcome::kSuccess:
      *out = Outcome::Success(in.success().result());
      return true;
    case v1::Outcome::kFailure:
      *out = Outcome::Failure(in.failure().error().code(), in.failure().error().message(),
                              in.failure().error().data());
      out->no_retry = in.failure().no_retry();
      return true;
    case v1::Outcome::kCancelled:
      *out = Outcome::Cancelled();
      return true;
    case v1::Outcome::KIND_NOT_SET:
      break;
  }
  return false;
}

v1::JobStatus ToProto(JobStatus s) {
  switch (s) {
    case JobStatus::kScheduled:
      return v1::SCHEDULED;
    case JobStatus::kWaiting:
      return v1::WAITING;
    case JobStatus::kRunning:
      return v1::RUNNING;
    case JobStatus::kSucceeded:
      return v1::SUCCEEDED;
    case JobStatus::kFailed:
      return v1::FAILED;
    case JobStatus::kCancelled:
      return v1::CANCELLED;
  }
  return v1::JOB_STATUS_UNSPECIFIED;
}

void ToProto(const EnqueueResult& in, v1::EnqueueResponse* out) {
  out->set_id(in.id);
  out->set_created(in.created);
  out->set_status(ToProto(in.status));
}

void ToProto(const Job& in, v1::Job* out) {
  out->set_id(in.id);
  out->set_tenant(in.tenant);
  out->set_queue(in.queue);
  out->set_priority(in.priority);
  out->set_start_at_ms(in.start_at_ms);
  out->set_next_run_ms(in.next_run_ms);
  ToProto(in.retry, out->mutable_retry());
  out->set_lease_ms(in.lease_ms);
  out->set_payload(in.payload);
  CopyMap(in.metadata, out->mutable_metadata());
  for (const ConcurrencyLimit& l : in.limits) {
    v1::ConcurrencyLimit* p = out->add_limits();
    p->set_kind(ToProto(l.kind));
    p->set_key(l.key);
    p->set_max(l.max);
    p->set_refresh_interval_ms(l.refresh_interval_ms);
    CopyMap(l.metadata, p->mutable_metadata());
  }
  out->set_status(ToProto(in.status));
  out->set_cancel_requested(in.cancel_requested);
  out->set_attempt_count(in.attempt_count);
  out->set_retries_used(in.retries_used);
  out->set_created_ms(in.created_ms);
  out->set_updated_ms(in.updated_ms);
  out->set_finished_ms(in.finished_ms);
  for (const Attempt& a : in.attempts) {
    v1::Attempt* p = out->add_attempts();
    p->set_number(a.number);
    p->set_task_id(a.task_id);
    p->set_worker_id(a.worker_id);
    p->set_status(ToProto(a.status));
    p->set_started_ms(a.started_ms);
    p->set_finished_ms(a.finished_ms);
    p->set_result(a.result);
    if (a.status == AttemptStatus::kFailed) ToProto(a.error, p->mutable_error());
  }
}

void ToProto(const Task& in, v1::Task* out) {
  out->set_task_id(in.task_id);
  out->set_job_id(in.job_id);
  out->set_queue(in.queue);
  out->set_attempt(in.attempt);
  out->set_priority(in.priority);
  out->set_payload(in.payload);
  CopyMap(in.metadata, out->mutable_metadata());
  out->set_lease_token(in.lease_token);
  out->set_lease_expires_ms(in.lease_expires_ms);
  out->set_lease_ms(in.lease_ms);
}

void ToProto(const RefreshTask& in, v1::RefreshTask* out) {
  out->set_key(in.key);
  CopyMap(in.metadata, out->mutable_metadata());
  out->set_current_max(in.current_max);
  out->set_default_max(in.default_max);
  out->set_last_refreshed_ms(in.last_refreshed_ms);
  out->set_lease_token(in.lease_token);
  out->set_lease_expires_ms(in.lease_expires_ms);
  out->set_lease_ms(in.lease_ms);
}

void ToProto(const JobResult& in, v1::GetJobResultResponse* out) {
  out->set_status(ToProto(in.status));
  out->set_finished(in.finished);
  out->set_result(in.result);
  if (in.status == JobStatus::kFailed) ToProto(in.error, out->mutable_error());
}

void ToProto(const FloatingLimitState& in, v1::FloatingLimit* out) {
  out->set_key(in.key);
  out->set_current_max(in.current_max);
  out->set_default_max(in.default_max);
  out->set_refresh_interval_ms(in.refresh_interval_ms);
  out->set_last_refreshed_ms(in.last_refreshed_ms);
  CopyMap(in.metadata, out->mutable_metadata());
  out->set_consecutive_failures(in.consecutive_failures);
  out->set_next_refresh_ms(in.next_refresh_ms);
  out->set_refresh_in_flight(in.refresh_in_flight);
  out->set_holders(in.holders);
  out->set_waiters(in.waiters);
}

void ToProto(const ConcurrencyKeyInfo& in, v1::ConcurrencyKey* out) {
  out->set_key(in.key);
  out->set_kind(ToProto(in.kind));
  out->set_holders(in.holders);
  out->set_waiters(in.waiters);
  out->set_max(in.max);
}

}  // namespace sluice::server

namespace sluice::server {

Status FromProto(const v1::ListJobsRequest& in, const std::string& tenant, ListJobsRequest* out) {
  JobFilter& f = out->filter;
  f.tenant = tenant;
  f.queue = in.queue();
  for (int i = 0; i < in.statuses_size(); ++i) {
    Result<JobStatus> s = StatusFromProto(in.statuses(i), i);
    if (!s.ok()) return s.status();
    f.statuses.push_back(*s);
  }
  f.id = in.id();
  f.id_prefix = in.id_prefix();
  for (const v1::MetadataPair& p : in.metadata()) f.metadata.emplace_back(p.key(), p.value());
  f.created_from_ms = in.created_from_ms();
  f.created_to_ms =
      in.created_to_ms() == 0 ? std::numeric_limits<int64_t>::max() : in.created_to_ms();
  out->newest_first = in.newest_first();
  switch (in.view()) {
    case v1::ListJobsRequest::SUMMARY:
      out->view = JobView::kSummary;
      break;
    case v1::ListJobsRequest::INDEX:
      out->view = JobView::kIndex;
      break;
    case v1::ListJobsRequest::FULL:
      out->view = JobView::kFull;
      break;
    default:
      return Status::InvalidArgument("view: " + std::to_string(in.view()) + " is not a view");
  }
  out->cursor.clear();
  if (!in.cursor().empty() && !absl::WebSafeBase64Unescape(in.cursor(), &out->cursor)) {
    return Status::InvalidArgument("cursor: not a cursor this server handed out");
  }
  return Status::Ok();
}

std::string EncodeCursor(std::string_view engine_cursor) {
  std::string out;
  // Debian's Abseil has its own string_view (not std's): convert explicitly.
  absl::WebSafeBase64Escape(absl::string_view(engine_cursor.data(), engine_cursor.size()), &out);
  return out;
}

void ToProto(const QueueCounts& in, v1::QueueCounts* out) {
  auto n = [&](JobStatus s) { return in.by_status[static_cast<size_t>(s)]; };
  out->set_queue(in.queue);
  out->set_scheduled(n(JobStatus::kScheduled));
  out->set_waiting(n(JobStatus::kWaiting));
  out->set_running(n(JobStatus::kRunning));
  out->set_succeeded(n(JobStatus::kSucceeded));
  out->set_failed(n(JobStatus::kFailed));
  out->set_cancelled(n(JobStatus::kCancelled));
}

void ToProto(const QueryResult& in, v1::QueryResponse* out) {
  for (const std::string& c : in.columns) out->add_columns(c);
  out->mutable_rows()->Reserve(static_cast<int>(in.rows.size()));
  for (const std::vector<QueryValue>& row : in.rows) {
    v1::QueryRow* r = out->add_rows();
    r->mutable_values()->Reserve(static_cast<int>(row.size()));
    for (const QueryValue& v : row) {
      v1::QueryValue* p = r->add_values();
      switch (v.type) {
        case QueryValue::Type::kNull:
          p->set_null(true);
          break;
        case QueryValue::Type::kInteger:
          p->set_integer(v.integer);
          break;
        case QueryValue::Type::kReal:
          p->set_real(v.real);
          break;
        case QueryValue::Type::kText:
          if (IsValidUtf8(v.bytes)) {
            p->set_text(v.bytes);
          } else {
            p->set_blob(v.bytes);
          }
          break;
        case QueryValue::Type::kBlob:
          p->set_blob(v.bytes);
          break;
      }
    }
  }
  out->set_keys_visited(in.keys_visited);
}

}  // namespace sluice::server
