// The hot transitions: enqueue, lease, heartbeat, complete, and lease expiry.
// Each is one atomic RocksDB write under the job's stripe lock (engine_impl.h).
#include <rocksdb/utilities/transaction.h>

#include <chrono>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "backoff.h"
#include "engine_impl.h"
#include "keys.h"
#include "validate.h"

namespace sluice {
namespace {

void ApplyDefaults(const JobSpec& spec, const EngineOptions& o, storage::JobState* st) {
  st->set_queue(spec.queue);
  st->set_priority(spec.priority);
  st->set_start_at_ms(spec.start_at_ms);
  *st->mutable_retry() = codec::ToRecord(spec.retry ? *spec.retry : o.default_retry);
  st->set_lease_ms(spec.lease_ms != 0 ? spec.lease_ms : o.default_lease_ms);
  for (const auto& l : spec.limits) codec::ToRecord(l, st->add_limits());
  st->mutable_metadata()->insert(spec.metadata.begin(), spec.metadata.end());
  st->set_status(storage::STORED_STATUS_PENDING);
}

Status LeaseLost(std::string_view task_id, std::string_view why) {
  return Status::LeaseLost("task \"" + std::string(task_id) + "\": " + std::string(why));
}

}  // namespace

TaskRef Engine::Impl::NewTask(storage::JobState* state, int64_t due_ms) {
  TaskRef ref{state->priority(), due_ms, NextSeq(), {}};
  state->set_status(storage::STORED_STATUS_PENDING);
  state->set_due_ms(due_ms);
  state->set_task_seq(ref.seq);
  return ref;
}

TaskRef Engine::Impl::PutTask(std::string_view tenant, std::string_view id,
                              storage::JobState* state, int64_t due_ms,
                              rocksdb::WriteBatchBase* batch, std::string* queue_prefix) {
  TaskRef ref{state->priority(), due_ms, NextSeq(), std::string(id)};
  state->set_status(storage::STORED_STATUS_PENDING);
  state->set_due_ms(due_ms);
  state->set_task_seq(ref.seq);
  *queue_prefix = keys::QueuePrefix(tenant, state->queue());
  batch->Put(keys::TaskKey(*queue_prefix, ref.priority, due_ms, ref.seq), id);
  return ref;
}

void Engine::Impl::PublishTasks(std::vector<std::pair<std::string, TaskRef>>* tasks, int64_t now) {
  if (tasks->empty()) return;
  std::lock_guard<std::mutex> lock(index_mu_);
  const std::string* last = nullptr;
  for (auto& [qp, ref] : *tasks) {
    index_.AddTask(qp, std::move(ref), now);
    if (last == nullptr || *last != qp) {
      index_.Queue(qp)->cv.notify_all();
      last = &qp;
    }
  }
}

Result<std::vector<EnqueueResult>> Engine::Impl::EnqueueMany(std::span<const JobSpec> specs,
                                                             bool batch) {
  const SizeLimits& lim = options_.limits;
  if (batch && specs.size() > lim.max_batch_jobs) {
    return Status::TooLarge("batch has " + std::to_string(specs.size()) + " jobs; the limit is " +
                            std::to_string(lim.max_batch_jobs) + " (max_batch_jobs)");
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    Status s = validate::Spec(specs[i], lim, batch ? "jobs[" + std::to_string(i) + "]: " : "");
    if (!s.ok()) return s;
  }
  const int64_t now = Now();
  std::vector<std::string> ids(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    ids[i] = specs[i].id.empty() ? ids_.Next(now) : specs[i].id;
  }
  // The first attempt reads and builds without stripes. A conflict means another call created
  // one of these ids between this one's read and its commit (or the memtable that would tell was
  // flushed). The attempts after it hold every stripe of the call from before the read, as one
  // that always wins must: nobody else can then create or delete these jobs until it has
  // committed, so only a flushed memtable (TryAgain, rare) can fail it again.
  constexpr int kAttempts = 4;
  for (int attempt = 1;; ++attempt) {
    bool conflicted = false;
    auto r = EnqueueOnce(specs, ids, now, /*lock_all=*/attempt > 1, &conflicted);
    if (!conflicted || attempt == kAttempts) return r;
  }
}

Result<std::vector<EnqueueResult>> Engine::Impl::EnqueueOnce(std::span<const JobSpec> specs,
                                                             const std::vector<std::string>& ids,
                                                             int64_t now, bool lock_all,
                                                             bool* conflicted) {
  // Both vectors are allocated before the batch is built. Allocated after it, they would sit
  // above the batch's buffers on the heap, and glibc's malloc would give those pages back to
  // the system when all are freed, and fault them in again for the next call (engine_bench
  // batch: 8% slower, 50% more page faults; jemalloc, sluiced's, does not mind).
  std::vector<size_t> stripes;  // the new jobs' (all jobs' with lock_all)
  stripes.reserve(specs.size());
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(specs.size());
  if (lock_all) {
    for (size_t i = 0; i < ids.size(); ++i) stripes.push_back(StripeOf(specs[i].tenant, ids[i]));
    LockStripes(&stripes, &locks);
  }
  std::vector<EnqueueResult> results(specs.size());
  std::vector<std::pair<std::string, TaskRef>> published;
  std::unordered_map<std::string, size_t> first_of;  // job key -> first index in this batch
  std::unique_ptr<rocksdb::Transaction> txn(db_->BeginTransaction(write_options_));
  // Reads never need this transaction's own writes (in-batch repeats are resolved by
  // first_of), so skip indexing them; writes are untracked: only the keys of jobs this call
  // creates (read with GetForUpdate and found absent) are validated at commit.
  txn->DisableIndexing();
  TxnSink sink(txn.get());
  // Writes grouped by key space: consecutive memtable inserts land next to each other.
  std::vector<std::pair<std::string, std::string>> bodies, tasks;
  std::string existing;
  for (size_t i = 0; i < specs.size(); ++i) {
    const JobSpec& spec = specs[i];
    std::string job_key = keys::JobKey(spec.tenant, ids[i]);
    results[i].id = ids[i];
    if (auto it = first_of.find(job_key); it != first_of.end()) {
      results[i].created = false;
      results[i].status = results[it->second].status;
      continue;
    }
    // A caller-given id may exist. Unless lock_all, no stripe is held here: the commit fails
    // if another call created the job meanwhile (GetForUpdate), and the caller tries again. A
    // job found is returned as it was read, and its key is not validated (nothing here writes
    // it). A generated UUIDv7 is new by construction.
    if (!specs[i].id.empty()) {
      rocksdb::Status rs = txn->GetForUpdate(read_options_, job_key, &existing);
      if (rs.ok()) {
        txn->UndoGetForUpdate(job_key);
        storage::JobState st;
        if (!st.ParseFromString(existing)) {
          return Status::Corruption("job \"" + ids[i] + "\" record is malformed");
        }
        results[i].created = false;
        results[i].status = codec::PublicStatus(st, now);
        first_of.emplace(std::move(job_key), i);
        continue;
      }
      if (!rs.IsNotFound()) return StorageError(rs, "enqueue read");
    }

    storage::JobState st;
    ApplyDefaults(spec, options_, &st);
    st.set_created_ms(now);
    st.set_updated_ms(now);
    const int64_t due = spec.start_at_ms > now ? spec.start_at_ms : now;
    std::string qp;
    TaskRef ref = NewTask(&st, due);
    qp = keys::QueuePrefix(spec.tenant, st.queue());
    tasks.emplace_back(keys::TaskKey(qp, ref.priority, due, ref.seq), ids[i]);
    st.set_enqueue_seq(ref.seq);
    const bool inline_payload = spec.payload.size() <= kInlinePayloadBytes;
    if (inline_payload) {
      st.set_payload(spec.payload);
      st.set_payload_inline(true);
    }
    FileJob(spec.tenant, ids[i], &st, now, &sink);
    rocksdb::Status rs = sink.status();
    if (rs.ok()) rs = txn->PutUntracked(job_key, st.SerializeAsString());
    if (!rs.ok()) return StorageError(rs, "enqueue write");
    if (!inline_payload) {
      storage::JobBody body;
      body.set_payload(spec.payload);
      bodies.emplace_back(keys::BodyKey(spec.tenant, ids[i]), body.SerializeAsString());
    }
    results[i].created = true;
    results[i].status = due > now ? JobStatus::kScheduled : JobStatus::kWaiting;
    ref.job_id = ids[i];
    published.emplace_back(std::move(qp), std::move(ref));
    first_of.emplace(std::move(job_key), i);
    if (!lock_all) stripes.push_back(StripeOf(spec.tenant, ids[i]));
  }
  for (auto* group : {&bodies, &tasks}) {
    for (const auto& [k, v] : *group) {
      rocksdb::Status rs = txn->PutUntracked(k, v);
      if (!rs.ok()) return StorageError(rs, "enqueue write");
    }
  }
  // The new jobs' stripes are held from the commit until their tasks are published, so that a
  // call on one of them (cancel, expedite, delete) sees either no job or a job whose task is in
  // the ready index. Held only this long: a lease whose jobs hash to the same stripes waits for
  // the commit, not for the whole batch to be built (docs/decisions.md §78). Stripes before the
  // counter slot, as every writer takes them.
  if (!lock_all) LockStripes(&stripes, &locks);
  CounterWrite counted = FlushCounts(&sink);
  if (!sink.status().ok()) return StorageError(sink.status(), "enqueue write");
  rocksdb::Status rs = txn->Commit();
  if (rs.ok()) counted.Commit();
  if (rs.IsBusy() || rs.IsTryAgain()) {
    // Another call created one of these ids since it was read (Busy), or the memtable that
    // would tell was flushed (TryAgain). The caller tries again; past its attempts it is
    // retryable for the client.
    *conflicted = true;
    return Status::Busy("enqueue conflicted with a concurrent write; retry: " + rs.ToString());
  }
  if (!rs.ok()) return StorageError(rs, "enqueue commit");
  counters_.enqueued.fetch_add(published.size(), std::memory_order_relaxed);
  PublishTasks(&published, now);
  return results;
}

Result<LeaseResponse> Engine::Impl::LeaseTasks(const LeaseRequest& request, bool with_refreshes) {
  Status s = validate::LeaseRequest(request, options_);
  if (!s.ok()) return s;
  const auto wait = std::chrono::milliseconds(std::min(request.wait_ms, options_.max_wait_ms));
  const auto deadline = std::chrono::steady_clock::now() + wait;
  const std::string qp = keys::QueuePrefix(request.tenant, request.queue);
  LeaseResponse resp;
  for (;;) {
    std::vector<TaskRef> refs;
    {
      std::lock_guard<std::mutex> lock(index_mu_);
      if (closed_.load()) return Status::Closed("the engine closed while waiting");
      if (QueueIndex* q = index_.FindQueue(qp)) {
        refs = index_.Pop(q, request.max_tasks - resp.tasks.size(), Now());
        index_.MaybeDropQueue(qp);
      }
    }
    const bool popped = !refs.empty();
    if (popped) {
      Status status;
      std::vector<Task> tasks = LeaseRefs(qp, std::move(refs), request, Now(), &status);
      if (!status.ok()) return status;
      for (auto& t : tasks) resp.tasks.push_back(std::move(t));
      RunGrants(GrantBudget());
    }
    // After the pop: the jobs just parked on floating keys make those keys' refreshes due.
    int64_t next_refresh = std::numeric_limits<int64_t>::max();
    if (with_refreshes) {
      if (resp.refreshes.empty()) {
        if (auto r = IssueRefresh(request, Now())) resp.refreshes.push_back(std::move(*r));
      }
      std::lock_guard<std::mutex> lock(limits_mu_);
      next_refresh = limits_.NextRefreshDueMs();
    }
    if (!resp.tasks.empty() || !resp.refreshes.empty()) return resp;
    if (popped) continue;  // every popped task had moved on or parked: look again

    std::unique_lock<std::mutex> lock(index_mu_);
    QueueIndex* q = index_.Queue(qp);
    const int64_t now = Now();
    if (closed_.load()) {
      index_.MaybeDropQueue(qp);
      return Status::Closed("the engine closed while waiting");
    }
    if (!q->ready.empty() || MemoryIndex::NextDue(*q) <= now) continue;  // arrived meanwhile
    const auto steady_now = std::chrono::steady_clock::now();
    if (steady_now >= deadline) {
      index_.MaybeDropQueue(qp);
      return resp;
    }
    auto until = deadline;
    for (int64_t at : {MemoryIndex::NextDue(*q), next_refresh}) {
      // A refresh already due belongs to another queue: it is no reason to wake.
      if (at > now && at - now < wait.count()) {
        until = std::min(until, steady_now + std::chrono::milliseconds(at - now));
      }
    }
    ++q->waiters;
    q->cv.wait_until(lock, until);
    --q->waiters;
    index_.MaybeDropQueue(qp);
  }
}

Result<std::vector<Task>> Engine::Impl::Lease(const LeaseRequest& request) {
  auto r = LeaseTasks(request, /*with_refreshes=*/false);
  if (!r.ok()) return r.status();
  return std::move(r->tasks);
}

std::vector<Task> Engine::Impl::LeaseRefs(const std::string& queue_prefix,
                                          std::vector<TaskRef> refs, const LeaseRequest& req,
                                          int64_t now, Status* status) {
  std::vector<size_t> stripes;
  stripes.reserve(refs.size());
  for (const auto& r : refs) stripes.push_back(StripeOf(req.tenant, r.job_id));
  auto locks = LockStripes(std::move(stripes));

  // 1. Re-check each popped task against its job record: RocksDB is the truth.
  struct Candidate {
    TaskRef ref;
    storage::JobState st;
    std::vector<storage::FloatingRecord> floating;  // by limit index, when acquiring
    Acquire acquire;
  };
  std::vector<Candidate> cands;
  cands.reserve(refs.size());
  bool any_acquire = false;
  for (TaskRef& ref : refs) {
    Candidate c;
    Status s = ReadJobState(req.tenant, ref.job_id, &c.st);
    if (s.code() == StatusCode::kNotFound) continue;  // deleted since it was indexed
    if (!s.ok()) {
      *status = Fatal(s);
      return {};
    }
    if (c.st.status() != storage::STORED_STATUS_PENDING || c.st.task_seq() != ref.seq ||
        c.st.due_ms() != ref.due_ms) {
      continue;  // the job moved on; its current task (if any) is indexed separately
    }
    if (c.st.limits_size() > 0 && !c.st.holds_limits()) {
      s = EnsureFloating(req.tenant, c.st, &c.floating);
      if (!s.ok()) {
        *status = Fatal(s);
        return {};
      }
      any_acquire = true;
    }
    c.ref = std::move(ref);
    cands.push_back(std::move(c));
  }
  // 2. Jobs with limits acquire every slot now (reserve when due), or park on the first full key.
  if (any_acquire) {
    std::lock_guard<std::mutex> lock(limits_mu_);
    for (Candidate& c : cands) {
      if (c.st.limits_size() > 0 && !c.st.holds_limits()) {
        c.acquire = DecideAcquire(req.tenant, c.ref.job_id, c.st, c.floating);
      } else {
        c.acquire.granted = true;
      }
    }
  }

  JobBatch batch;
  std::vector<Task> tasks;
  std::vector<std::pair<int64_t, std::string>> leases;
  std::vector<std::pair<std::string, LiveJob>> live;  // lease key -> as written
  tasks.reserve(cands.size());
  bool wrote = false;
  for (Candidate& c : cands) {
    TaskRef& ref = c.ref;
    storage::JobState& st = c.st;
    const std::string task_key = keys::TaskKey(queue_prefix, ref.priority, ref.due_ms, ref.seq);
    batch.Delete(task_key);
    wrote = true;
    if (any_acquire && !c.acquire.granted) {
      PutWaiter(req.tenant, ref.job_id, &st, c.acquire.blocked, &batch);
      st.set_updated_ms(now);
      PutJob(req.tenant, ref.job_id, &st, now, &batch);
      continue;
    }
    if (st.limits_size() > 0 && !st.holds_limits()) PutHolds(req.tenant, ref.job_id, &st, &batch);
    storage::JobBody body;
    if (Status b = ReadBody(read_options_, req.tenant, ref.job_id, st, &body); !b.ok()) {
      // Popped tasks and reserved slots cannot be put back consistently: stop the engine
      // (reopening rebuilds everything from the store).
      *status = Fatal(b);
      return {};
    }
    const uint32_t attempt = st.attempts() + 1;
    codec::LeaseValue lv;
    lv.token = NextSeq();
    lv.expires_ms = now + static_cast<int64_t>(st.lease_ms());
    lv.started_ms = now;
    lv.lease_ms = st.lease_ms();
    lv.attempt = attempt;
    lv.worker_id = req.worker_id;

    st.set_status(storage::STORED_STATUS_RUNNING);
    st.set_attempts(attempt);
    st.set_lease_token(lv.token);
    st.set_due_ms(0);
    st.set_task_seq(0);
    st.set_updated_ms(now);
    PutJob(req.tenant, ref.job_id, &st, now, &batch);
    AddRunning(req.tenant, ref.job_id, st);  // before the write: see running_
    // The open attempt lives in the lease record (worker, start); its 'A' record is written
    // once, when the attempt ends.
    std::string lease_key = keys::LeaseKey(req.tenant, ref.job_id);
    batch.Put(lease_key, codec::EncodeLease(lv));
    leases.emplace_back(lv.expires_ms, lease_key);

    Task t;
    t.task_id = codec::TaskId(ref.job_id, attempt);
    t.job_id = std::move(ref.job_id);
    t.tenant = req.tenant;
    t.queue = req.queue;
    t.attempt = attempt;
    t.priority = st.priority();
    t.payload = std::move(*body.mutable_payload());
    t.metadata.insert(st.metadata().begin(), st.metadata().end());
    t.lease_token = lv.token;
    t.lease_expires_ms = lv.expires_ms;
    t.lease_ms = lv.lease_ms;
    tasks.push_back(std::move(t));
    live.emplace_back(std::move(lease_key), LiveJob{std::move(st), std::move(lv)});
  }
  if (!wrote) return tasks;
  // A lease is not fsynced (decisions §44): losing it to power loss re-delivers the job.
  *status = Write(&batch, /*fsync=*/false);
  if (!status->ok()) return {};
  for (size_t i = 0; i < live.size(); ++i) {  // still under the stripes
    LiveOf(req.tenant, tasks[i].job_id)
        .insert_or_assign(std::move(live[i].first), std::move(live[i].second));
  }
  if (!leases.empty()) {
    std::lock_guard<std::mutex> lock(index_mu_);
    for (const auto& [expiry, key] : leases) index_.AddLease(expiry, key);
  }
  counters_.leased.fetch_add(tasks.size(), std::memory_order_relaxed);
  return tasks;
}

Status Engine::Impl::ParseTask(std::string_view tenant, std::string_view task_id,
                               std::string_view* id, uint32_t* attempt) {
  if (!codec::ParseTaskId(task_id, id, attempt)) {
    return Status::InvalidArgument("task_id \"" + std::string(task_id) + "\" is malformed");
  }
  return validate::JobRef(tenant, *id, options_.limits);
}

Status Engine::Impl::CheckLease(const std::string& lease_key, std::string_view task_id,
                                uint32_t attempt, uint64_t token, int64_t now,
                                codec::LeaseValue* lv) {
  Status s = ReadLease(lease_key, lv);
  if (s.code() == StatusCode::kNotFound) return LeaseLost(task_id, "no live lease");
  if (!s.ok()) return s;
  if (lv->attempt != attempt || lv->token != token) return LeaseLost(task_id, "the token is stale");
  if (lv->expires_ms <= now) return LeaseLost(task_id, "the lease expired");
  return Status::Ok();
}

std::unordered_map<std::string, Engine::Impl::LiveJob>& Engine::Impl::LiveOf(
    std::string_view tenant, std::string_view id) {
  return live_[StripeOf(tenant, id)];
}

Status Engine::Impl::LoadRunning(std::string_view tenant, std::string_view id,
                                 const std::string& lease_key, std::string_view task_id,
                                 uint32_t attempt, uint64_t token, int64_t now,
                                 codec::LeaseValue* lv, storage::JobState* st) {
  auto& live = LiveOf(tenant, id);
  if (auto it = live.find(lease_key); it != live.end()) {
    // The entry is the stored lease and record: the same checks, without the reads.
    const LiveJob& j = it->second;
    if (j.lease.attempt != attempt || j.lease.token != token) {
      return LeaseLost(task_id, "the token is stale");
    }
    if (j.lease.expires_ms <= now) return LeaseLost(task_id, "the lease expired");
    *lv = j.lease;
    *st = j.st;
  } else {
    Status s = CheckLease(lease_key, task_id, attempt, token, now, lv);
    if (s.ok()) s = ReadJobState(tenant, id, st);
    if (!s.ok()) return s;
  }
  if (st->status() != storage::STORED_STATUS_RUNNING || st->lease_token() != token) {
    return Status::Corruption("job \"" + std::string(id) + "\" has a lease but is not running it");
  }
  return Status::Ok();
}

Result<HeartbeatResult> Engine::Impl::Heartbeat(std::string_view tenant, std::string_view task_id,
                                                std::string_view worker_id, uint64_t token) {
  std::string_view id;
  uint32_t attempt = 0;
  Status s = ParseTask(tenant, task_id, &id, &attempt);
  if (s.ok()) s = validate::WorkerId(worker_id, options_.limits);
  if (!s.ok()) return s;

  std::lock_guard<std::mutex> stripe(Stripe(tenant, id));
  const std::string lease_key = keys::LeaseKey(tenant, id);
  codec::LeaseValue lv;
  const int64_t now = Now();
  s = CheckLease(lease_key, task_id, attempt, token, now, &lv);
  if (!s.ok()) return s;
  if (lv.worker_id != worker_id) return LeaseLost(task_id, "leased by another worker");

  const int64_t old_expiry = lv.expires_ms;
  lv.expires_ms = now + static_cast<int64_t>(lv.lease_ms);
  JobBatch batch;
  batch.Put(lease_key, codec::EncodeLease(lv));
  s = Write(&batch);
  if (!s.ok()) return s;
  auto& live = LiveOf(tenant, id);
  if (auto it = live.find(lease_key); it != live.end()) it->second.lease = lv;
  {
    std::lock_guard<std::mutex> lock(index_mu_);
    index_.RemoveLease(old_expiry, lease_key);
    index_.AddLease(lv.expires_ms, lease_key);
  }
  return HeartbeatResult{lv.expires_ms, lv.cancel_requested};
}

Engine::Impl::Finish Engine::Impl::FinishAttempt(std::string_view tenant, std::string_view id,
                                                 storage::JobState* st,
                                                 const codec::LeaseValue& lease,
                                                 const Outcome& outcome, int64_t now,
                                                 JobBatch* batch) {
  storage::AttemptRecord ar;
  ar.set_number(lease.attempt);
  ar.set_worker_id(lease.worker_id);
  ar.set_started_ms(lease.started_ms);
  ar.set_finished_ms(now);
  switch (outcome.kind) {
    case Outcome::Kind::kSuccess:
      ar.set_status(static_cast<uint32_t>(AttemptStatus::kSucceeded));
      ar.set_result(outcome.result);
      break;
    case Outcome::Kind::kFailure:
      ar.set_status(static_cast<uint32_t>(AttemptStatus::kFailed));
      ar.set_error_code(outcome.error.code);
      ar.set_error_message(outcome.error.message);
      ar.set_error_data(outcome.error.data);
      break;
    case Outcome::Kind::kCancelled:
      ar.set_status(static_cast<uint32_t>(AttemptStatus::kCancelled));
      break;
  }
  batch->Delete(keys::LeaseKey(tenant, id));

  Finish f;
  if (st->holds_limits()) {
    // Every end or pause of an attempt gives its slots back in this same write.
    PutRelease(tenant, id, st, batch);
    f.released = true;
  }
  const bool cancel = st->cancel_requested() || lease.cancel_requested;
  st->set_lease_token(0);
  st->set_updated_ms(now);
  if (cancel || outcome.kind == Outcome::Kind::kCancelled) {
    f.job_status = JobStatus::kCancelled;
  } else if (outcome.kind == Outcome::Kind::kSuccess) {
    f.job_status = JobStatus::kSucceeded;
  } else if (!outcome.no_retry && st->retries_used() < st->retry().max_retries()) {
    st->set_retries_used(st->retries_used() + 1);
    const uint64_t delay =
        BackoffMs(codec::FromRecord(st->retry()), st->retries_used(), NextRandom());
    // delay <= 30 days (validated): now + delay cannot overflow.
    f.task = PutTask(tenant, id, st, now + static_cast<int64_t>(delay), batch, &f.queue_prefix);
    f.requeued = true;
    f.job_status = delay > 0 ? JobStatus::kScheduled : JobStatus::kWaiting;
  } else {
    f.job_status = JobStatus::kFailed;
  }
  if (!f.requeued) {
    st->set_status(f.job_status == JobStatus::kSucceeded   ? storage::STORED_STATUS_SUCCEEDED
                   : f.job_status == JobStatus::kCancelled ? storage::STORED_STATUS_CANCELLED
                                                           : storage::STORED_STATUS_FAILED);
    st->set_finished_ms(now);
    st->set_cancel_requested(false);
  }
  // The attempt that ends the job stays in its record when small (one entry less per job).
  if (!f.requeued && ar.ByteSizeLong() <= kInlinePayloadBytes) {
    *st->mutable_last_attempt() = std::move(ar);
  } else {
    batch->Put(keys::AttemptKey(tenant, id, lease.attempt), ar.SerializeAsString());
  }
  PutJob(tenant, id, st, now, batch);
  return f;
}

void Engine::Impl::ApplyFinish(const Finish& f, std::string_view tenant, std::string_view id,
                               const storage::JobState& st, int64_t lease_expires_ms,
                               const std::string& lease_key, int64_t now) {
  RemoveRunning(tenant, st);
  if (f.released) ReleaseCommitted(tenant, id, st);
  {
    std::lock_guard<std::mutex> lock(index_mu_);
    index_.RemoveLease(lease_expires_ms, lease_key);
    if (f.requeued) {
      index_.AddTask(f.queue_prefix, f.task, now);
      index_.Queue(f.queue_prefix)->cv.notify_all();
    }
  }
  if (f.requeued) {
    counters_.retried.fetch_add(1, std::memory_order_relaxed);
  } else {
    NotifyFinished(tenant, id);
  }
  switch (f.job_status) {
    case JobStatus::kSucceeded:
      counters_.succeeded.fetch_add(1, std::memory_order_relaxed);
      break;
    case JobStatus::kCancelled:
      counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      counters_.failed.fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

Status Engine::Impl::Complete(std::string_view tenant, std::string_view task_id, uint64_t token,
                              const Outcome& outcome) {
  std::string_view id;
  uint32_t attempt = 0;
  Status s = ParseTask(tenant, task_id, &id, &attempt);
  if (s.ok()) s = validate::TaskOutcome(outcome, options_.limits);
  if (!s.ok()) return s;

  std::lock_guard<std::mutex> stripe(Stripe(tenant, id));
  const std::string lease_key = keys::LeaseKey(tenant, id);
  codec::LeaseValue lv;
  storage::JobState st;
  const int64_t now = Now();
  s = LoadRunning(tenant, id, lease_key, task_id, attempt, token, now, &lv, &st);
  if (!s.ok()) return s;
  JobBatch batch;
  Finish f = FinishAttempt(tenant, id, &st, lv, outcome, now, &batch);
  s = Write(&batch);
  if (!s.ok()) return s;
  ApplyFinish(f, tenant, id, st, lv.expires_ms, lease_key, now);
  return Status::Ok();
}

Result<std::vector<Status>> Engine::Impl::CompleteBatch(std::span<const Completion> reports) {
  if (reports.size() > options_.max_lease_batch) {
    return Status::TooLarge("batch has " + std::to_string(reports.size()) +
                            " reports; the limit is " + std::to_string(options_.max_lease_batch) +
                            " (max_lease_batch)");
  }
  std::vector<Status> out(reports.size());
  std::vector<std::string_view> ids(reports.size());
  std::vector<uint32_t> attempts(reports.size());
  std::vector<size_t> stripes;
  for (size_t i = 0; i < reports.size(); ++i) {
    out[i] = ParseTask(reports[i].tenant, reports[i].task_id, &ids[i], &attempts[i]);
    if (out[i].ok()) out[i] = validate::TaskOutcome(reports[i].outcome, options_.limits);
    if (out[i].ok()) stripes.push_back(StripeOf(reports[i].tenant, ids[i]));
  }
  auto locks = LockStripes(std::move(stripes));

  struct Done {
    size_t index = 0;
    Finish finish;
    storage::JobState st;
    codec::LeaseValue lease;
    std::string lease_key;
  };
  std::vector<Done> done;
  std::unordered_set<std::string> finished;  // lease keys ended earlier in this batch
  JobBatch batch;
  const int64_t now = Now();
  for (size_t i = 0; i < reports.size(); ++i) {
    if (!out[i].ok()) continue;
    const Completion& r = reports[i];
    Done d;
    d.index = i;
    d.lease_key = keys::LeaseKey(r.tenant, ids[i]);
    if (finished.contains(d.lease_key)) {
      out[i] = LeaseLost(r.task_id, "already reported in this batch");
      continue;
    }
    Status s = LoadRunning(r.tenant, ids[i], d.lease_key, r.task_id, attempts[i], r.lease_token,
                           now, &d.lease, &d.st);
    if (s.code() == StatusCode::kIoError) return s;  // the engine has stopped
    out[i] = s;
    if (!s.ok()) continue;
    d.finish = FinishAttempt(r.tenant, ids[i], &d.st, d.lease, r.outcome, now, &batch);
    finished.insert(d.lease_key);
    done.push_back(std::move(d));
  }
  if (done.empty()) return out;
  Status s = Write(&batch);
  if (!s.ok()) return s;
  for (const Done& d : done) {
    ApplyFinish(d.finish, reports[d.index].tenant, ids[d.index], d.st, d.lease.expires_ms,
                d.lease_key, now);
  }
  return out;
}

Result<size_t> Engine::Impl::ReapExpired() {
  size_t reaped = 0;
  {
    // Refresh leases live in memory only: an expired one is simply due again.
    size_t expired = 0;
    {
      std::lock_guard<std::mutex> lock(limits_mu_);
      expired = limits_.ExpireRefreshes(Now());
    }
    if (expired > 0) {
      std::lock_guard<std::mutex> lock(index_mu_);
      index_.NotifyAll();  // long-polls pick the reissued refreshes up
    }
  }
  RunGrants(64 * static_cast<size_t>(options_.max_grants_per_key_per_pass));
  if (auto promoted = PromoteDue(Now()); !promoted.ok()) return promoted.status();
  for (;;) {
    const int64_t now = Now();
    std::vector<std::pair<int64_t, std::string>> expired;
    {
      std::lock_guard<std::mutex> lock(index_mu_);
      expired = index_.Expired(now, 256);
    }
    if (expired.empty()) return reaped;
    for (const auto& [expiry, lease_key] : expired) {
      Status s = ReapOne(lease_key, now);
      {
        // Whatever happened, this (expiry, key) entry is stale now.
        std::lock_guard<std::mutex> lock(index_mu_);
        index_.RemoveLease(expiry, lease_key);
      }
      if (s.ok()) {
        ++reaped;
      } else if (s.code() != StatusCode::kNotFound) {
        return s;
      }
    }
    RunGrants(GrantBudget());
  }
}

Status Engine::Impl::ReapOne(const std::string& lease_key, int64_t now) {
  std::string_view tenant, id;
  if (!keys::ParseJobScopedKey(lease_key, &tenant, &id)) {
    return Status::Corruption("malformed lease key in the expiry index");
  }
  std::lock_guard<std::mutex> stripe(Stripe(tenant, id));
  codec::LeaseValue lv;
  Status s = ReadLease(lease_key, &lv);
  if (!s.ok()) return s;  // NotFound: completed since it was listed
  if (lv.expires_ms > now) return Status::NotFound("lease was extended");
  storage::JobState st;
  s = ReadJobState(tenant, id, &st);
  if (!s.ok()) return s;
  JobBatch batch;
  Outcome expired =
      Outcome::Failure("lease_expired", "the lease expired before the worker reported an outcome");
  Finish f = FinishAttempt(tenant, id, &st, lv, expired, now, &batch);
  s = Write(&batch);
  if (!s.ok()) return s;
  ApplyFinish(f, tenant, id, st, lv.expires_ms, lease_key, now);
  counters_.lease_expired.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

}  // namespace sluice
