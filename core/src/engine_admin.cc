// Operator transitions (cancel, restart, expedite, delete) and reads (job, result).
#include "engine_impl.h"
#include "keys.h"
#include "validate.h"

namespace sluice {
namespace {

std::string StateName(const storage::JobState& st, int64_t now) {
  return std::string(JobStatusName(codec::PublicStatus(st, now)));
}

}  // namespace

void Engine::Impl::RemovePending(std::string_view tenant, std::string_view id,
                                 storage::JobState* st, rocksdb::WriteBatchBase* batch) {
  if (st->waiting_on() > 0) {
    DeleteWaiter(tenant, *st, batch);  // parked on a full key: it has no task key
    st->set_waiting_on(0);
    return;
  }
  const std::string qp = keys::QueuePrefix(tenant, st->queue());
  batch->Delete(keys::TaskKey(qp, st->priority(), st->due_ms(), st->task_seq()));
  if (st->holds_limits()) PutRelease(tenant, id, st, batch);  // granted, not yet leased
}

void Engine::Impl::RemovePendingCommitted(std::string_view tenant, std::string_view id,
                                          const storage::JobState& before) {
  if (before.waiting_on() > 0) {
    UnparkCommitted(tenant, before, static_cast<int>(before.waiting_on()) - 1);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(index_mu_);
    index_.RemoveTask(keys::QueuePrefix(tenant, before.queue()), before.priority(), before.due_ms(),
                      before.task_seq());
  }
  if (before.holds_limits()) ReleaseCommitted(tenant, id, before);
}

Result<CancelResult> Engine::Impl::Cancel(std::string_view tenant, std::string_view id) {
  Status s = validate::JobRef(tenant, id, options_.limits);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> stripe(Stripe(tenant, id));
  storage::JobState st;
  s = ReadJobState(tenant, id, &st);
  if (!s.ok()) return s;
  const int64_t now = Now();
  JobBatch batch;
  switch (st.status()) {
    case storage::STORED_STATUS_PENDING: {
      const std::string qp = keys::QueuePrefix(tenant, st.queue());
      const int64_t due = st.due_ms();
      const uint64_t seq = st.task_seq();
      const storage::JobState before = st;
      RemovePending(tenant, id, &st, &batch);
      st.set_status(storage::STORED_STATUS_CANCELLED);
      st.set_due_ms(0);
      st.set_task_seq(0);
      st.set_updated_ms(now);
      st.set_finished_ms(now);
      PutJob(tenant, id, &st, now, &batch);
      s = Write(&batch);
      if (!s.ok()) return s;
      RemovePendingCommitted(tenant, id, before);
      (void)qp;
      (void)due;
      (void)seq;
      counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
      NotifyFinished(tenant, id);
      return CancelResult{JobStatus::kCancelled, false};
    }
    case storage::STORED_STATUS_RUNNING: {
      if (st.cancel_requested()) return CancelResult{JobStatus::kRunning, true};
      const std::string lease_key = keys::LeaseKey(tenant, id);
      codec::LeaseValue lv;
      s = ReadLease(lease_key, &lv);
      if (!s.ok()) {
        return s.code() == StatusCode::kNotFound
                   ? Status::Corruption("running job \"" + std::string(id) + "\" has no lease")
                   : s;
      }
      lv.cancel_requested = true;
      st.set_cancel_requested(true);
      st.set_updated_ms(now);
      batch.Put(lease_key, codec::EncodeLease(lv));
      PutJob(tenant, id, &st, now, &batch);
      s = Write(&batch);
      if (!s.ok()) return s;
      return CancelResult{JobStatus::kRunning, true};
    }
    case storage::STORED_STATUS_CANCELLED:
      return CancelResult{JobStatus::kCancelled, false};
    default:
      return Status::FailedPrecondition("job \"" + std::string(id) + "\" is " + StateName(st, now) +
                                        "; only scheduled, waiting or running jobs can be "
                                        "cancelled");
  }
}

Status Engine::Impl::Restart(std::string_view tenant, std::string_view id) {
  Status s = validate::JobRef(tenant, id, options_.limits);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> stripe(Stripe(tenant, id));
  storage::JobState st;
  s = ReadJobState(tenant, id, &st);
  if (!s.ok()) return s;
  const int64_t now = Now();
  if (st.status() != storage::STORED_STATUS_FAILED &&
      st.status() != storage::STORED_STATUS_CANCELLED) {
    return Status::FailedPrecondition("job \"" + std::string(id) + "\" is " + StateName(st, now) +
                                      "; only failed or cancelled jobs can be restarted");
  }
  JobBatch batch;
  std::vector<std::pair<std::string, TaskRef>> published(1);
  if (st.has_last_attempt()) {  // history: the next attempt may end up in the record
    batch.Put(keys::AttemptKey(tenant, id, st.last_attempt().number()),
              st.last_attempt().SerializeAsString());
    st.clear_last_attempt();
  }
  st.set_retries_used(0);
  st.set_cancel_requested(false);
  st.set_finished_ms(0);
  st.set_updated_ms(now);
  published[0].second = PutTask(tenant, id, &st, now, &batch, &published[0].first);
  PutJob(tenant, id, &st, now, &batch);
  s = Write(&batch);
  if (!s.ok()) return s;
  PublishTasks(&published, now);
  return Status::Ok();
}

Status Engine::Impl::Expedite(std::string_view tenant, std::string_view id) {
  Status s = validate::JobRef(tenant, id, options_.limits);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> stripe(Stripe(tenant, id));
  storage::JobState st;
  s = ReadJobState(tenant, id, &st);
  if (!s.ok()) return s;
  const int64_t now = Now();
  if (st.status() != storage::STORED_STATUS_PENDING) {
    return Status::FailedPrecondition("job \"" + std::string(id) + "\" is " + StateName(st, now) +
                                      "; only scheduled jobs can be expedited");
  }
  // Already waiting (due, parked on a full key, or granted): nothing to move. A parked or
  // granted job is due by construction even if the wall clock stepped back since.
  if (st.due_ms() <= now || st.waiting_on() > 0 || st.holds_limits()) return Status::Ok();
  // The job->task index (due_ms, task_seq in the job record) names the task key: no scan.
  const std::string qp = keys::QueuePrefix(tenant, st.queue());
  const int64_t old_due = st.due_ms();
  const uint64_t seq = st.task_seq();
  JobBatch batch;
  batch.Delete(keys::TaskKey(qp, st.priority(), old_due, seq));
  batch.Put(keys::TaskKey(qp, st.priority(), now, seq), id);
  st.set_due_ms(now);
  st.set_updated_ms(now);
  PutJob(tenant, id, &st, now, &batch);
  s = Write(&batch);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(index_mu_);
  index_.RemoveTask(qp, st.priority(), old_due, seq);
  index_.AddTask(qp, TaskRef{st.priority(), now, seq, std::string(id)}, now);
  index_.Queue(qp)->cv.notify_all();
  return Status::Ok();
}

Status Engine::Impl::Delete(std::string_view tenant, std::string_view id) {
  Status s = validate::JobRef(tenant, id, options_.limits);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> stripe(Stripe(tenant, id));
  storage::JobState st;
  s = ReadJobState(tenant, id, &st);
  if (!s.ok()) return s;
  if (st.status() == storage::STORED_STATUS_RUNNING) {
    return Status::FailedPrecondition("job \"" + std::string(id) +
                                      "\" is running; cancel it and wait for it to end first");
  }
  JobBatch batch;
  const bool pending = st.status() == storage::STORED_STATUS_PENDING;
  const storage::JobState before = st;
  if (pending) RemovePending(tenant, id, &st, &batch);
  // Attempts are numbered 1..attempts: deleted by key, no scan.
  for (uint32_t a = 1; a <= st.attempts(); ++a) {
    if (!st.has_last_attempt() || st.last_attempt().number() != a) {
      batch.Delete(keys::AttemptKey(tenant, id, a));
    }
  }
  if (!st.payload_inline()) batch.Delete(keys::BodyKey(tenant, id));
  batch.Delete(keys::JobKey(tenant, id));
  LiveOf(tenant, id).erase(keys::LeaseKey(tenant, id));  // none for a job that is not running
  UnfileJob(tenant, id, before, &batch);
  s = Write(&batch);
  if (!s.ok()) return s;
  if (pending) RemovePendingCommitted(tenant, id, before);
  NotifyFinished(tenant, id);  // a waiter learns the job is gone (kNotFound)
  return Status::Ok();
}

Result<Job> Engine::Impl::GetJob(std::string_view tenant, std::string_view id,
                                 bool include_attempts) {
  Status s = validate::JobRef(tenant, id, options_.limits);
  if (!s.ok()) return s;
  // A consistent view of the job's records without taking its stripe.
  const SnapshotRead view(db_.get(), read_options_);
  const rocksdb::ReadOptions& ro = view.options();

  std::string raw;
  rocksdb::Status rs = db_->Get(ro, keys::JobKey(tenant, id), &raw);
  if (rs.IsNotFound()) return Status::NotFound("job \"" + std::string(id) + "\" not found");
  if (!rs.ok()) return StorageError(rs, "read job");
  storage::JobState st;
  if (!st.ParseFromString(raw)) return Status::Corruption("job record is malformed");
  storage::JobBody body;
  if (Status b = ReadBody(ro, tenant, id, st, &body); !b.ok()) return b;

  Job j = codec::ToJob(tenant, id, st, &body, Now());
  if (include_attempts) {
    for (uint32_t a = 1; a <= st.attempts(); ++a) {
      if (a == st.attempts() && st.status() == storage::STORED_STATUS_RUNNING) {
        // The open attempt is described by the live lease.
        rs = db_->Get(ro, keys::LeaseKey(tenant, id), &raw);
        codec::LeaseValue lv;
        if (!rs.ok() || !codec::DecodeLease(raw, &lv)) {
          return rs.ok() || rs.IsNotFound() ? Status::Corruption("a running job has no lease")
                                            : StorageError(rs, "read lease");
        }
        Attempt open;
        open.number = a;
        open.task_id = codec::TaskId(id, a);
        open.worker_id = lv.worker_id;
        open.status = AttemptStatus::kRunning;
        open.started_ms = lv.started_ms;
        j.attempts.push_back(std::move(open));
        break;
      }
      storage::AttemptRecord ar;
      if (Status as = ReadAttempt(ro, tenant, id, st, a, &ar); !as.ok()) return as;
      j.attempts.push_back(codec::FromRecord(id, ar));
    }
  }
  return j;
}

Result<JobResult> Engine::Impl::GetResult(std::string_view tenant, std::string_view id) {
  Status s = validate::JobRef(tenant, id, options_.limits);
  if (!s.ok()) return s;
  storage::JobState st;
  s = ReadJobState(tenant, id, &st);
  if (!s.ok()) return s;
  JobResult r;
  r.status = codec::PublicStatus(st, Now());
  r.finished = IsTerminal(r.status);
  if (!r.finished || st.attempts() == 0) return r;
  storage::AttemptRecord ar;
  if (Status as = ReadAttempt(read_options_, tenant, id, st, st.attempts(), &ar); !as.ok()) {
    return as;
  }
  r.result = ar.result();
  r.error = {ar.error_code(), ar.error_message(), ar.error_data()};
  return r;
}

}  // namespace sluice

namespace sluice {

Result<JobResult> Engine::Impl::WaitResult(std::string_view tenant, std::string_view id,
                                           uint32_t wait_ms) {
  Status s = validate::JobRef(tenant, id, options_.limits);
  if (!s.ok()) return s;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(std::min(wait_ms, options_.max_wait_ms));
  const std::string key = keys::JobKey(tenant, id);
  uint64_t seen = 0;
  // Register before the first read: a final transition that commits after the read bumps the
  // generation this waiter watches; one that committed before it is visible to the read.
  {
    std::lock_guard<std::mutex> lock(result_mu_);
    ++result_waiters_[key];
    result_waiter_count_.fetch_add(1, std::memory_order_seq_cst);
    seen = finished_gen_;
  }
  Result<JobResult> r = GetResult(tenant, id);
  while (r.ok() && !r->finished && !closed_.load()) {
    bool woke = false;
    {
      std::unique_lock<std::mutex> lock(result_mu_);
      woke = result_cv_.wait_until(lock, deadline,
                                   [&] { return finished_gen_ != seen || closed_.load(); });
      seen = finished_gen_;
    }
    if (closed_.load()) break;
    r = GetResult(tenant, id);
    if (!woke) break;  // the wait ended: answer with the state as it is
  }
  {
    std::lock_guard<std::mutex> lock(result_mu_);
    auto it = result_waiters_.find(key);
    if (--it->second == 0) result_waiters_.erase(it);
    result_waiter_count_.fetch_sub(1, std::memory_order_seq_cst);
  }
  if (closed_.load() && r.ok() && !r->finished) return Status::Closed("the engine is closing");
  return r;
}

void Engine::Impl::NotifyFinished(std::string_view tenant, std::string_view id) {
  if (result_waiter_count_.load(std::memory_order_seq_cst) == 0) return;
  {
    std::lock_guard<std::mutex> lock(result_mu_);
    if (result_waiters_.find(keys::JobKey(tenant, id)) == result_waiters_.end()) return;
    ++finished_gen_;
  }
  result_cv_.notify_all();
}

std::vector<QueueDepth> Engine::Impl::QueueDepths(uint32_t limit, size_t* total_queues) const {
  struct Entry {
    const std::string* prefix;
    uint64_t waiting;
    uint64_t scheduled;
  };
  std::vector<Entry> all;
  const int64_t now = Now();
  {
    std::lock_guard<std::mutex> lock(index_mu_);
    all.reserve(index_.queues().size());
    for (const auto& [prefix, q] : index_.queues()) {
      if (q->ready.empty() && q->scheduled.empty()) continue;
      // Future tasks already due (not yet moved by a Pop) count as waiting.
      const auto first_future = q->scheduled.lower_bound(TaskRef{0, now + 1, 0, {}});
      const auto due = static_cast<uint64_t>(std::distance(q->scheduled.begin(), first_future));
      all.push_back({&prefix, q->ready.size() + due, q->scheduled.size() - due});
    }
    if (total_queues != nullptr) *total_queues = all.size();
    const size_t n = std::min<size_t>(limit, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                      [](const Entry& a, const Entry& b) {
                        return a.waiting + a.scheduled > b.waiting + b.scheduled;
                      });
    all.resize(n);
    std::vector<QueueDepth> out;
    out.reserve(n);
    for (const Entry& e : all) {
      // 'T' str(tenant) str(queue)
      const std::string_view prefix = *e.prefix;
      keys::Reader rd(prefix.substr(1));
      std::string_view tenant;
      std::string_view queue;
      if (!rd.GetStr(&tenant) || !rd.GetStr(&queue)) continue;
      out.push_back({std::string(tenant), std::string(queue), e.waiting, e.scheduled});
    }
    return out;
  }
}

}  // namespace sluice
