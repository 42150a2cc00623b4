// Value types exchanged with the engine: job specs, jobs, attempts, tasks and outcomes.
// Plain structs, copyable, no behaviour. Bytes (payload, result, error data) are std::string
// used as byte buffers.
#ifndef SLUICE_TYPES_H_
#define SLUICE_TYPES_H_

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// How a failed attempt is retried. Backoff before retry r (1-based) is
//   d(r) = min(max_backoff_ms, initial_backoff_ms * multiplier^(r-1))
// and, when jitter is set, a uniform draw from [0, d(r)] ("full jitter"). docs/decisions.md.
struct RetryPolicy {
  uint32_t max_retries = 3;  // retries after the first attempt; 0 = never retry
  uint64_t initial_backoff_ms = 1000;
  uint64_t max_backoff_ms = 60'000;
  double multiplier = 2.0;  // >= 1.0
  bool jitter = false;
};

// One concurrency limit of a job. Limits are acquired in list order before the job runs
// (enforced by the concurrency-limit layer).
struct ConcurrencyLimit {
  // Fixed: `max` is the limit. Floating: worker code computes the limit (refresh tasks).
  enum class Kind : uint8_t { kFixed = 0, kFloating = 1 };
  Kind kind = Kind::kFixed;
  std::string key;                              // non-empty
  uint32_t max = 1;                             // fixed: the max; floating: the default max
  uint64_t refresh_interval_ms = 0;             // floating only; > 0
  std::map<std::string, std::string> metadata;  // floating only: handed to refresh handlers
};

// What a producer submits.
struct JobSpec {
  std::string id;                    // empty: the engine generates a time-ordered UUIDv7
  std::string tenant;                // "" is the default tenant; every key is tenant-scoped
  std::string queue;                 // required, non-empty
  uint32_t priority = 50;            // 0..99, 0 runs first
  int64_t start_at_ms = 0;           // 0 or past: due now
  std::optional<RetryPolicy> retry;  // unset: EngineOptions::default_retry
  uint64_t lease_ms = 0;             // 0: EngineOptions::default_lease_ms
  std::string payload;               // opaque bytes
  std::map<std::string, std::string> metadata;
  std::vector<ConcurrencyLimit> limits;
};

// Public job status. kScheduled vs kWaiting is derived from the clock at read time.
enum class JobStatus : uint8_t {
  kScheduled = 0,  // pending, start time in the future
  kWaiting = 1,    // pending and due, not leased
  kRunning = 2,
  kSucceeded = 3,
  kFailed = 4,
  kCancelled = 5,
};
// The stable lowercase name ("scheduled", "waiting", ...).
std::string_view JobStatusName(JobStatus s);
// Succeeded, failed or cancelled: the job will not run again unless restarted.
inline bool IsTerminal(JobStatus s) {
  return s == JobStatus::kSucceeded || s == JobStatus::kFailed || s == JobStatus::kCancelled;
}

// Result of one enqueue. created=false means a job with this id already existed and was
// returned unchanged (idempotent enqueue).
struct EnqueueResult {
  std::string id;
  bool created = false;
  JobStatus status = JobStatus::kWaiting;
};

// A failure reported by a worker (or by the engine: code "lease_expired").
struct ErrorInfo {
  std::string code;
  std::string message;
  std::string data;  // opaque bytes
};

// How one attempt ended (kRunning while its lease is live).
enum class AttemptStatus : uint8_t { kRunning = 0, kSucceeded = 1, kFailed = 2, kCancelled = 3 };
// The stable lowercase name ("running", "succeeded", ...).
std::string_view AttemptStatusName(AttemptStatus s);

// One run of a job.
struct Attempt {
  uint32_t number = 0;  // 1-based
  std::string task_id;
  std::string worker_id;
  AttemptStatus status = AttemptStatus::kRunning;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;  // 0 while running
  std::string result;       // success only
  ErrorInfo error;          // failure only
};

// A stored job as read back.
struct Job {
  std::string id;
  std::string tenant;
  std::string queue;
  uint32_t priority = 0;
  int64_t start_at_ms = 0;  // as enqueued (0 = immediately)
  int64_t next_run_ms = 0;  // pending: when it becomes due; else 0
  RetryPolicy retry;
  uint64_t lease_ms = 0;
  std::string payload;
  std::map<std::string, std::string> metadata;
  std::vector<ConcurrencyLimit> limits;
  JobStatus status = JobStatus::kWaiting;
  bool cancel_requested = false;
  uint32_t attempt_count = 0;  // attempts opened so far
  uint32_t retries_used = 0;   // failed attempts retried since enqueue or last restart
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t finished_ms = 0;        // terminal only
  std::vector<Attempt> attempts;  // filled only when asked for
};

// The final result of a job: result bytes on success, the last error on failure.
struct JobResult {
  JobStatus status = JobStatus::kWaiting;
  bool finished = false;  // status is terminal
  std::string result;
  ErrorInfo error;
};

// A unit of work handed to a worker by Lease: run attempt `attempt` of job `job_id`.
// Present (task_id, lease_token) on Heartbeat and Complete.
struct Task {
  std::string task_id;  // "<job_id>#<attempt>"
  std::string job_id;
  std::string tenant;
  std::string queue;
  uint32_t attempt = 0;
  uint32_t priority = 0;
  std::string payload;
  std::map<std::string, std::string> metadata;
  uint64_t lease_token = 0;
  int64_t lease_expires_ms = 0;
  uint64_t lease_ms = 0;  // the lease's length (each heartbeat extends it by this much)
};

// Arguments of Engine::Lease.
struct LeaseRequest {
  std::string tenant;
  std::string queue;       // required
  std::string worker_id;   // required; recorded on the attempt
  uint32_t max_tasks = 1;  // 1..EngineOptions::max_lease_batch
  uint32_t wait_ms = 0;    // long-poll bound; capped at EngineOptions::max_wait_ms
};

// What Heartbeat returns: the new expiry and whether the job's cancellation was requested.
struct HeartbeatResult {
  int64_t lease_expires_ms = 0;
  bool cancel_requested = false;
};

// What a worker reports at the end of an attempt.
struct Outcome {
  // Success stores `result`; failure records `error` and may retry; cancelled ends the job.
  enum class Kind : uint8_t { kSuccess = 0, kFailure = 1, kCancelled = 2 };
  Kind kind = Kind::kSuccess;
  std::string result;     // kSuccess
  ErrorInfo error;        // kFailure (code required)
  bool no_retry = false;  // kFailure: fail the job now even if retries are left

  static Outcome Success(std::string result = {}) {
    Outcome o;
    o.result = std::move(result);
    return o;
  }
  static Outcome Failure(std::string code, std::string message = {}, std::string data = {}) {
    Outcome o;
    o.kind = Kind::kFailure;
    o.error = {std::move(code), std::move(message), std::move(data)};
    return o;
  }
  static Outcome Cancelled() {
    Outcome o;
    o.kind = Kind::kCancelled;
    return o;
  }
};

// One report of Engine::CompleteBatch: the same arguments as Complete.
struct Completion {
  std::string tenant;
  std::string task_id;
  uint64_t lease_token = 0;
  Outcome outcome;
};

// What Cancel did: cancelled at once, or (running job) cancellation requested.
struct CancelResult {
  JobStatus status = JobStatus::kCancelled;
  bool cancel_requested = false;
};

// Engine-wide counters and gauges (for metrics and tests). A snapshot; thread-safe to take.
struct EngineStats {
  uint64_t enqueued = 0;  // jobs created since open
  uint64_t leased = 0;    // tasks handed out since open
  uint64_t succeeded = 0;
  uint64_t failed = 0;         // attempts that failed (retried or not)
  uint64_t cancelled = 0;      // jobs that ended cancelled
  uint64_t retried = 0;        // failed attempts rescheduled
  uint64_t lease_expired = 0;  // leases reaped
  uint64_t pending_tasks = 0;  // gauge: scheduled + waiting tasks in the in-memory index
  uint64_t running = 0;        // gauge: live leases
  uint64_t limit_keys = 0;     // gauge: concurrency keys with holders or waiters
  uint64_t limit_holders = 0;  // gauge: slots held, summed over keys
  uint64_t limit_waiters = 0;  // gauge: jobs parked in key waiter queues
  uint64_t grants = 0;         // waiters granted since open
  uint64_t refreshes_issued = 0;
};

// A floating-limit refresh handed to a worker by Engine::LeaseTasks: compute the key's current
// max and report it with CompleteRefresh (heartbeat it with HeartbeatRefresh while it runs).
struct RefreshTask {
  std::string tenant;
  std::string key;
  std::map<std::string, std::string> metadata;
  uint32_t current_max = 0;
  uint32_t default_max = 0;
  int64_t last_refreshed_ms = 0;  // 0: never refreshed
  uint64_t lease_token = 0;
  int64_t lease_expires_ms = 0;
  uint64_t lease_ms = 0;  // the refresh lease's length (HeartbeatRefresh extends it by this)
};

// What Engine::LeaseTasks returns: job tasks and floating-limit refresh tasks.
struct LeaseResponse {
  std::vector<Task> tasks;
  std::vector<RefreshTask> refreshes;
};

// A worker's report of a refresh: a new max (0 pauses the key) or a failure.
struct RefreshOutcome {
  bool ok = true;
  uint32_t new_max = 0;
  ErrorInfo error;  // !ok: code required

  static RefreshOutcome Success(uint32_t new_max) {
    RefreshOutcome o;
    o.new_max = new_max;
    return o;
  }
  static RefreshOutcome Failure(std::string code, std::string message = {}) {
    RefreshOutcome o;
    o.ok = false;
    o.error = {std::move(code), std::move(message), {}};
    return o;
  }
};

// The stored state of a floating limit key, plus its live holders and waiters.
struct FloatingLimitState {
  std::string tenant;
  std::string key;
  uint32_t current_max = 0;
  uint32_t default_max = 0;
  uint64_t refresh_interval_ms = 0;
  int64_t last_refreshed_ms = 0;  // 0: never refreshed
  std::map<std::string, std::string> metadata;
  uint32_t consecutive_failures = 0;
  int64_t next_refresh_ms = 0;  // when a refresh is next due (if jobs use the key)
  bool refresh_in_flight = false;
  uint64_t holders = 0;
  uint64_t waiters = 0;
};

// Pending tasks of one (tenant, queue), from memory (for metrics and operators).
struct QueueDepth {
  std::string tenant;
  std::string queue;
  uint64_t waiting = 0;    // due now (including retries whose backoff has passed)
  uint64_t scheduled = 0;  // start time or retry backoff in the future
};

// Live state of one concurrency key (idle keys report zeros).
struct ConcurrencyKeyInfo {
  std::string tenant;
  std::string key;
  ConcurrencyLimit::Kind kind = ConcurrencyLimit::Kind::kFixed;
  uint64_t holders = 0;
  uint64_t waiters = 0;
  uint32_t max = 0;  // fixed: the max carried by the newest job using the key; floating: current
};

// ---- Finding jobs: ListJobs, CountJobs, Query -------------------------------------------------

// Which jobs a listing returns. Always scoped to one tenant; every other field narrows it.
// Indexed (no full scan): metadata pairs, queue, statuses and the creation-time range; the
// first metadata pair drives the scan when there is one, then the queue, then the statuses.
// id_prefix and further metadata pairs are checked on the rows the index yields.
struct JobFilter {
  std::string tenant;
  std::string queue;                // "" = every queue
  std::vector<JobStatus> statuses;  // empty = every status; waiting/scheduled are derived
  std::string id;                   // "" = any; else exactly this job
  std::string id_prefix;            // "" = any; else ids starting with it
  std::vector<std::pair<std::string, std::string>> metadata;    // every pair must match
  int64_t created_from_ms = 0;                                  // inclusive
  int64_t created_to_ms = std::numeric_limits<int64_t>::max();  // exclusive
};

// How much of each listed job to return.
enum class JobView : uint8_t {
  kIndex = 0,    // id, queue, status, created_ms only: read from the index, no record read
  kSummary = 1,  // every field except payload and attempts
  kFull = 2,     // with payload (attempts are never listed: GetJob has them)
};

// Arguments of Engine::ListJobs: a filter, an order and a page.
struct ListJobsRequest {
  JobFilter filter;
  bool newest_first = false;  // order by creation time (then enqueue order), descending
  uint32_t limit = 50;        // page size, 1..SizeLimits::max_list_page
  std::string cursor;         // "" for the first page, else the previous page's next_cursor
  JobView view = JobView::kSummary;
};

// One page of jobs. A page may be shorter than the limit (even empty) while more remain: a
// call visits at most SizeLimits::max_list_scan keys. Keep paging while next_cursor is set.
// Paging never skips or repeats a job that matches throughout, while writes continue.
struct ListJobsResult {
  std::vector<Job> jobs;
  std::string next_cursor;    // "" when the listing is complete
  uint64_t keys_visited = 0;  // index entries and records read (cost; for tests and operators)
};

// Jobs of one queue by status (index [JobStatus]), kept as counters in the same writes.
struct QueueCounts {
  std::string queue;
  std::array<uint64_t, 6> by_status{};  // indexed by static_cast<size_t>(JobStatus)
};

// One value of a query result cell (SQLite's storage classes).
struct QueryValue {
  enum class Type : uint8_t { kNull = 0, kInteger = 1, kReal = 2, kText = 3, kBlob = 4 };
  Type type = Type::kNull;
  int64_t integer = 0;
  double real = 0;
  std::string bytes;  // kText (UTF-8) or kBlob
};

// Bounds of one Engine::Query call (LESSONS: a query has a deadline, a result cap and stops
// when its caller goes away).
struct QueryOptions {
  uint32_t timeout_ms = 5'000;          // kTimeout after this long
  uint64_t max_result_bytes = 4 << 20;  // kTooLarge when the rows would exceed this
  uint32_t max_rows = 10'000;           // kTooLarge beyond this many rows
  // Polled while the query runs (every few thousand steps); true ends it with kCancelled.
  // Called on the querying thread; must be cheap and thread-safe. Empty: never cancelled.
  std::function<bool()> cancelled;
};

// What a query returned: column names and rows of typed values.
struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<QueryValue>> rows;
  uint64_t keys_visited = 0;  // index entries and records the virtual tables read
};

}  // namespace sluice

#endif  // SLUICE_TYPES_H_
