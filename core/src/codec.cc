#include "codec.h"

#include <charconv>

#include "keys.h"

namespace sluice::codec {

std::string EncodeLease(const LeaseValue& v) {
  std::string out;
  out.reserve(37 + v.worker_id.size());
  keys::PutU64(&out, v.token);
  keys::PutU64(&out, static_cast<uint64_t>(v.expires_ms));
  keys::PutU64(&out, static_cast<uint64_t>(v.started_ms));
  keys::PutU64(&out, v.lease_ms);
  keys::PutU32(&out, v.attempt);
  keys::PutU8(&out, v.cancel_requested ? 1 : 0);
  out.append(v.worker_id);
  return out;
}

bool DecodeLease(std::string_view in, LeaseValue* out) {
  keys::Reader r(in);
  uint64_t expires = 0, started = 0;
  uint8_t flags = 0;
  std::string_view worker;
  if (!r.GetU64(&out->token) || !r.GetU64(&expires) || !r.GetU64(&started) ||
      !r.GetU64(&out->lease_ms) || !r.GetU32(&out->attempt) || !r.GetU8(&flags) ||
      !r.GetRest(&worker)) {
    return false;
  }
  out->expires_ms = static_cast<int64_t>(expires);
  out->started_ms = static_cast<int64_t>(started);
  out->cancel_requested = (flags & 1) != 0;
  out->worker_id.assign(worker);
  return true;
}

std::string TaskId(std::string_view job_id, uint32_t attempt) {
  std::string out(job_id);
  out.push_back('#');
  out.append(std::to_string(attempt));
  return out;
}

bool ParseTaskId(std::string_view task_id, std::string_view* job_id, uint32_t* attempt) {
  const size_t hash = task_id.rfind('#');
  if (hash == std::string_view::npos || hash == 0 || hash + 1 >= task_id.size()) return false;
  const char* first = task_id.data() + hash + 1;
  const char* last = task_id.data() + task_id.size();
  uint32_t n = 0;
  auto [ptr, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || ptr != last || n == 0) return false;
  *job_id = task_id.substr(0, hash);
  *attempt = n;
  return true;
}

storage::RetryPolicyRecord ToRecord(const RetryPolicy& p) {
  storage::RetryPolicyRecord r;
  r.set_max_retries(p.max_retries);
  r.set_initial_backoff_ms(p.initial_backoff_ms);
  r.set_max_backoff_ms(p.max_backoff_ms);
  r.set_multiplier(p.multiplier);
  r.set_jitter(p.jitter);
  return r;
}

RetryPolicy FromRecord(const storage::RetryPolicyRecord& r) {
  RetryPolicy p;
  p.max_retries = r.max_retries();
  p.initial_backoff_ms = r.initial_backoff_ms();
  p.max_backoff_ms = r.max_backoff_ms();
  p.multiplier = r.multiplier();
  p.jitter = r.jitter();
  return p;
}

void ToRecord(const ConcurrencyLimit& l, storage::LimitRecord* r) {
  r->set_kind(static_cast<uint32_t>(l.kind));
  r->set_key(l.key);
  r->set_max(l.max);
  r->set_refresh_interval_ms(l.refresh_interval_ms);
  for (const auto& [k, v] : l.metadata) (*r->mutable_metadata())[k] = v;
}

ConcurrencyLimit FromRecord(const storage::LimitRecord& r) {
  ConcurrencyLimit l;
  l.kind = static_cast<ConcurrencyLimit::Kind>(r.kind());
  l.key = r.key();
  l.max = r.max();
  l.refresh_interval_ms = r.refresh_interval_ms();
  l.metadata.insert(r.metadata().begin(), r.metadata().end());
  return l;
}

Attempt FromRecord(std::string_view job_id, const storage::AttemptRecord& r) {
  Attempt a;
  a.number = r.number();
  a.task_id = TaskId(job_id, r.number());
  a.worker_id = r.worker_id();
  a.status = static_cast<AttemptStatus>(r.status());
  a.started_ms = r.started_ms();
  a.finished_ms = r.finished_ms();
  a.result = r.result();
  a.error = {r.error_code(), r.error_message(), r.error_data()};
  return a;
}

JobStatus PublicStatus(const storage::JobState& s, int64_t now_ms) {
  switch (s.status()) {
    case storage::STORED_STATUS_PENDING:
      return s.due_ms() > now_ms ? JobStatus::kScheduled : JobStatus::kWaiting;
    case storage::STORED_STATUS_RUNNING:
      return JobStatus::kRunning;
    case storage::STORED_STATUS_SUCCEEDED:
      return JobStatus::kSucceeded;
    case storage::STORED_STATUS_FAILED:
      return JobStatus::kFailed;
    case storage::STORED_STATUS_CANCELLED:
      return JobStatus::kCancelled;
    default:
      return JobStatus::kFailed;  // unreachable for records this build wrote
  }
}

Job ToJob(std::string_view tenant, std::string_view id, const storage::JobState& st,
          storage::JobBody* body, int64_t now_ms) {
  Job j;
  j.id = std::string(id);
  j.tenant = std::string(tenant);
  j.queue = st.queue();
  j.priority = st.priority();
  j.start_at_ms = st.start_at_ms();
  j.next_run_ms = st.status() == storage::STORED_STATUS_PENDING ? st.due_ms() : 0;
  j.retry = FromRecord(st.retry());
  j.lease_ms = st.lease_ms();
  if (body != nullptr) j.payload = std::move(*body->mutable_payload());
  j.metadata.insert(st.metadata().begin(), st.metadata().end());
  for (const auto& l : st.limits()) j.limits.push_back(FromRecord(l));
  j.status = PublicStatus(st, now_ms);
  j.cancel_requested = st.cancel_requested();
  j.attempt_count = st.attempts();
  j.retries_used = st.retries_used();
  j.created_ms = st.created_ms();
  j.updated_ms = st.updated_ms();
  j.finished_ms = st.finished_ms();
  return j;
}

}  // namespace sluice::codec
