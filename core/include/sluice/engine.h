// sluice::Engine — the durable job queue over one RocksDB directory (one shard).
//
// Thread rule: every method is safe to call from any number of threads at once. Transitions
// on the same job are serialized; transitions on different jobs commit concurrently, so
// fsyncs of concurrent callers are merged by RocksDB's group commit.
//
// Errors: every method returns Status/Result. Codes and when they occur: docs/errors.md.
// After a storage error the engine stops acknowledging: every later call returns kIoError
// until it is reopened (ENVIRONMENT.md: a failed WAL sync poisons every later write).
//
// Ids: jobs are addressed by (tenant, id); the same id in two tenants names two jobs.
#ifndef SLUICE_ENGINE_H_
#define SLUICE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "sluice/options.h"
#include "sluice/status.h"
#include "sluice/types.h"

namespace sluice {

class Engine {
 public:
  // Opens (creating when missing) the store at options.path and rebuilds the in-memory
  // indexes from it. Fails with kInvalidArgument for bad options, kCorruption or
  // kFailedPrecondition for an unreadable or newer store format, kIoError otherwise.
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options);

  // Closes the engine (see Close()).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Stores one job. When (tenant, id) already exists the existing job is returned with
  // created=false and nothing changes; decided in one RocksDB transaction. kInvalidArgument /
  // kTooLarge for bad input, nothing stored.
  Result<EnqueueResult> Enqueue(const JobSpec& spec);

  // Stores up to SizeLimits::max_batch_jobs jobs in one atomic write. Validation is
  // all-or-nothing: one bad spec rejects the batch, naming its index. Results are in input
  // order; a repeated id within the batch resolves to the first occurrence (created=false).
  Result<std::vector<EnqueueResult>> EnqueueBatch(std::span<const JobSpec> specs);

  // Leases up to max_tasks due tasks of (tenant, queue), in order priority, due time,
  // enqueue order. When none is due, waits up to wait_ms for one (woken by enqueues and
  // retries; never busy-loops) and returns an empty vector on timeout. Each task starts a new
  // attempt; its lease lasts the job's lease_ms and is extended by Heartbeat.
  Result<std::vector<Task>> Lease(const LeaseRequest& request);

  // Lease plus floating-limit refresh tasks: when a floating key used by a job in this queue
  // is due for a refresh (older than its interval, or its failure backoff has passed) and no
  // refresh of it is in flight, the response carries one refresh task for it. Returns at once
  // when it has a task or a refresh to hand out.
  Result<LeaseResponse> LeaseTasks(const LeaseRequest& request);

  // CompleteBatch(reports) then LeaseTasks(request) in one call: a worker reports what it
  // finished and fetches more in one round trip. The request is validated first (a bad one
  // changes nothing); each report gets its status in *report_statuses; when the reports fail
  // as a whole (closed, storage) nothing is leased and that status is returned.
  Result<LeaseResponse> ReportAndLease(std::span<const Completion> reports,
                                       const LeaseRequest& request,
                                       std::vector<Status>* report_statuses);

  // Extends a live lease by the job's lease_ms and reports cancel_requested. kLeaseLost when
  // the token is stale, the worker differs, or the lease has expired (nothing changes).
  Result<HeartbeatResult> Heartbeat(std::string_view tenant, std::string_view task_id,
                                    std::string_view worker_id, uint64_t lease_token);

  // Ends an attempt. Success stores the result; failure retries after backoff while retries
  // remain (never after a cancel request, never with no_retry) else fails the job; kCancelled
  // ends it cancelled. A report on a job whose cancellation was requested ends it cancelled.
  // kLeaseLost for a stale token or an expired lease (nothing changes).
  Status Complete(std::string_view tenant, std::string_view task_id, uint64_t lease_token,
                  const Outcome& outcome);

  // Ends up to max_lease_batch attempts in one atomic write (one fsync under sync durability).
  // Each report is judged like Complete and gets its own status (kLeaseLost, kInvalidArgument,
  // ...); a report of an attempt already reported earlier in the same batch is kLeaseLost.
  // The call fails as a whole (nothing written) only when the engine is closed or storage fails.
  Result<std::vector<Status>> CompleteBatch(std::span<const Completion> reports);

  // Cancels a job: a pending job ends cancelled at once (its task removed); a running job gets
  // cancel_requested (its worker learns on heartbeat). Cancelling a cancelled job is a no-op;
  // a succeeded or failed job is kFailedPrecondition.
  Result<CancelResult> Cancel(std::string_view tenant, std::string_view id);

  // Puts a failed or cancelled job back to waiting, due now, with a fresh retry budget; its
  // next attempt is numbered after the last. Other states: kFailedPrecondition.
  Status Restart(std::string_view tenant, std::string_view id);

  // Makes a scheduled job due now (found through the job->task index, no scan). A job that is
  // already waiting is a no-op; running or terminal jobs are kFailedPrecondition.
  Status Expedite(std::string_view tenant, std::string_view id);

  // Removes a job with its attempts, task and index entries. A running job is refused with
  // kFailedPrecondition until it is cancelled and has ended.
  Status Delete(std::string_view tenant, std::string_view id);

  // Extends a refresh lease by refresh_lease_ms. kLeaseLost when the token is not the live
  // refresh's or it expired.
  Result<int64_t> HeartbeatRefresh(std::string_view tenant, std::string_view key,
                                   uint64_t lease_token);

  // Ends a refresh. Success sets the key's max at once (a raise grants waiters right away; 0
  // pauses the key); failure keeps the last good value and backs off exponentially.
  // kLeaseLost when the token is stale or expired.
  Status CompleteRefresh(std::string_view tenant, std::string_view key, uint64_t lease_token,
                         const RefreshOutcome& outcome);

  // Reads a floating limit key's state. kNotFound when no job ever used the key.
  Result<FloatingLimitState> GetFloatingLimit(std::string_view tenant, std::string_view key);

  // Floating limit keys of a tenant in key order, starting after `after_key`, at most `limit`.
  Result<std::vector<FloatingLimitState>> ListFloatingLimits(std::string_view tenant,
                                                             std::string_view after_key,
                                                             uint32_t limit);

  // Operator override: sets a floating key's current max now (as if refreshed now); a raise
  // grants waiters at once. kNotFound when no job ever used the key.
  Status SetFloatingLimit(std::string_view tenant, std::string_view key, uint32_t max);

  // Live holders, waiters and max of one key (zeros when idle). Served from memory.
  Result<ConcurrencyKeyInfo> GetConcurrencyKey(std::string_view tenant, ConcurrencyLimit::Kind kind,
                                               std::string_view key);

  // Up to `limit` active keys (with holders or waiters), busiest first; for metrics.
  std::vector<ConcurrencyKeyInfo> ListConcurrencyKeys(uint32_t limit) const;
  // The same for one tenant only.
  std::vector<ConcurrencyKeyInfo> ListConcurrencyKeys(std::string_view tenant,
                                                      uint32_t limit) const;

  // Up to `limit` queues with pending tasks, deepest first, and the number of queues with
  // pending tasks in total (for bounded-cardinality metrics). Served from memory.
  std::vector<QueueDepth> QueueDepths(uint32_t limit, size_t* total_queues = nullptr) const;

  // Reads a job; with include_attempts, its attempt history (oldest first).
  Result<Job> GetJob(std::string_view tenant, std::string_view id, bool include_attempts = false);

  // Reads a job's result: status, and result bytes or last error once terminal. With
  // wait_ms > 0 (capped at EngineOptions::max_wait_ms) waits until the job is terminal or the
  // wait ends, woken by the job's final transition (no polling); then returns the state as it
  // is (finished=false on timeout). kNotFound when the job does not exist (or is deleted while
  // waited on); kClosed when the engine closes during the wait.
  Result<JobResult> GetResult(std::string_view tenant, std::string_view id, uint32_t wait_ms = 0);

  // One page of a tenant's jobs matching request.filter, in creation order (see
  // ListJobsRequest). Indexed filters visit a small multiple of the rows they return.
  // kInvalidArgument for a bad filter, page size or cursor (a cursor from another filter or
  // order is refused).
  Result<ListJobsResult> ListJobs(const ListJobsRequest& request);

  // Job counts by status for one queue of a tenant (queue != ""), or for every queue of the
  // tenant that ever had jobs (queue == ""), from counters kept in the same writes as the
  // transitions: no scan of jobs.
  Result<std::vector<QueueCounts>> CountJobs(std::string_view tenant, std::string_view queue);

  // Runs one read-only SQL statement (SQLite dialect) over the tenant's virtual tables jobs,
  // job_metadata, attempts, queues, concurrency_keys and floating_limits (docs/query.md).
  // The tenant is fixed by the caller, never by the SQL. kInvalidArgument for SQL that does not
  // parse or would write; kTimeout, kTooLarge, kCancelled when options bound it.
  Result<QueryResult> Query(std::string_view tenant, std::string_view sql,
                            const QueryOptions& options = {});

  // Operator check (fsck): scans every job and verifies that each index entry and counter
  // matches the job records exactly. kCorruption naming the first mismatch. O(jobs).
  Status VerifyIndexes();

  // Reaps every job lease and refresh lease that has expired by now and returns how many job
  // leases it reaped; also runs grant passes left over from bounded passes. The background
  // reaper calls this; tests with a ManualClock call it directly.
  Result<size_t> ReapExpired();

  // Counters and gauges since open.
  EngineStats Stats() const;

  // Stops new calls (they return kClosed), wakes long-polls (they return kClosed), waits for
  // calls in flight, stops the reaper and closes the store. Idempotent.
  Status Close();

  // The implementation (core/src/engine_impl.h); public so private files can name it.
  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice

#endif  // SLUICE_ENGINE_H_
