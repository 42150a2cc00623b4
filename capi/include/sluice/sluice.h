/*
 * sluice.h — the stable C ABI of the Sluice job queue engine (libsluice).
 *
 * This header is the one contract for every language that links Sluice in-process (the Node
 * and Python modules are built on it). Rules (docs/c-api.md):
 *
 *  - Status: every call returns a sluice_status. SLUICE_OK is 0; values are never renumbered or
 *    reused. When `err` is not NULL and the call fails, *err receives an error object with the
 *    message (free it with sluice_error_free). Messages never depend on the calling thread.
 *  - Strings are (pointer, length) pairs, sluice_str, and need not be NUL-terminated. Bytes are
 *    (const uint8_t *, size_t). Input memory stays the caller's; the library copies what it keeps.
 *  - Output objects (sluice_job *, sluice_lease_response *, ...) are allocated by the library
 *    as one block each and are released with sluice_free(). Their strings are NUL-terminated as
 *    well as length-counted. Output bytes (payloads, results, error data) are sluice_str too:
 *    use len, they may contain NUL bytes. Output structs may grow at the end in later versions:
 *    read them through the pointer the library returned, never copy them by value for reuse.
 *  - Input option structs start with `uint32_t version`; initialise them with their _INIT macro.
 *    They only grow at the end; a version this library does not know is SLUICE_INVALID_ARGUMENT.
 *    A NULL options pointer means defaults.
 *  - Threads: every call on an engine handle is thread-safe. sluice_engine_close() may be called
 *    from any thread while others are inside calls: they drain and later calls return
 *    SLUICE_CLOSED. sluice_engine_destroy() frees the handle and must be the last call on it.
 *  - Blocking: sluice_lease() waits for work for at most its request's wait_ms; sluice_query()
 *    runs for at most its options' timeout_ms (and stops early when its sluice_cancel_token is
 *    cancelled). Every write waits for its fsync under sync durability (about 1 ms);
 *    sluice_engine_close() and sluice_engine_destroy() wait for calls in flight (a running query
 *    included). Run these off event loops.
 *  - Lease tokens are 64-bit and exceed 2^53: JavaScript and JSON consumers need BigInt or
 *    strings for them.
 *
 * The header includes only <stdint.h>, <stddef.h> and <stdbool.h>, and compiles as C99.
 */
#ifndef SLUICE_SLUICE_H_
#define SLUICE_SLUICE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SLUICE_EXPORT __declspec(dllexport)
#else
#define SLUICE_EXPORT __attribute__((visibility("default")))
#endif

/* The library version: semantic versioning; the ABI is stable within a major version. */
#define SLUICE_VERSION_MAJOR 0
#define SLUICE_VERSION_MINOR 1
#define SLUICE_VERSION_PATCH 0

/* ---- Status and errors ---- */

/* Stable status codes. Every value the core also has (0..11, 14) equals its StatusCode; 12 and
 * 13 exist only at the C edge. Never renumbered or reused. */
typedef enum sluice_status {
  SLUICE_OK = 0,
  SLUICE_NOT_FOUND = 1,           /* no such job (or key) in this tenant */
  SLUICE_INVALID_ARGUMENT = 2,    /* malformed input; nothing changed */
  SLUICE_TOO_LARGE = 3,           /* a field exceeds its size limit; nothing changed */
  SLUICE_LEASE_LOST = 4,          /* stale token or expired lease: stop, never report */
  SLUICE_FAILED_PRECONDITION = 5, /* the job's state forbids the operation */
  SLUICE_CLOSED = 6,              /* the engine is closed or closing */
  SLUICE_IO_ERROR = 7,            /* storage failed; the engine stopped acknowledging */
  SLUICE_CORRUPTION = 8,          /* stored data could not be decoded */
  SLUICE_TIMEOUT = 9,             /* a bounded call ran out of time (sluice_query) */
  SLUICE_ALREADY_EXISTS = 10,     /* reserved */
  SLUICE_BUSY = 11,               /* transient conflict; retry the call as is */
  SLUICE_INTERNAL = 12,           /* an unexpected failure inside the library (a bug) */
  SLUICE_NO_MEMORY = 13,          /* allocation failed */
  SLUICE_CANCELLED = 14           /* the caller cancelled the call (sluice_cancel_token) */
} sluice_status;

/* An error: its status and message. Created by the library, freed by sluice_error_free. */
typedef struct sluice_error sluice_error;

/* The status of an error (SLUICE_INTERNAL for NULL). */
SLUICE_EXPORT sluice_status sluice_error_status(const sluice_error *error);
/* The NUL-terminated message, owned by the error ("" for NULL). */
SLUICE_EXPORT const char *sluice_error_message(const sluice_error *error);
/* Frees an error. NULL is a no-op. */
SLUICE_EXPORT void sluice_error_free(sluice_error *error);
/* The stable lowercase name of a status ("not_found", ...); "unknown" for other values. */
SLUICE_EXPORT const char *sluice_status_name(sluice_status status);

/* Frees any output object or buffer the library returned. NULL is a no-op. */
SLUICE_EXPORT void sluice_free(void *ptr);

/* "0.1.0": the library's version, static storage. */
SLUICE_EXPORT const char *sluice_version(void);

/* ---- Small value types ---- */

/* A borrowed string or byte range: `len` bytes at `ptr` (ptr may be NULL when len is 0). */
typedef struct sluice_str {
  const char *ptr;
  size_t len;
} sluice_str;

/* One metadata entry. */
typedef struct sluice_kv {
  sluice_str key;
  sluice_str value;
} sluice_kv;

/* ---- Engine ---- */

typedef struct sluice_engine sluice_engine;

#define SLUICE_DURABILITY_SYNC 0  /* fsync before acknowledging (default) */
#define SLUICE_DURABILITY_ASYNC 1 /* WAL without fsync: survives kill -9, not power loss */

#define SLUICE_ENGINE_OPTIONS_VERSION 1
/* Options of sluice_engine_open. Zero means the engine default for every numeric field. */
typedef struct sluice_engine_options {
  uint32_t version;            /* SLUICE_ENGINE_OPTIONS_VERSION */
  uint32_t durability;         /* SLUICE_DURABILITY_* */
  uint64_t default_lease_ms;   /* 0: 30000 */
  uint32_t reaper_interval_ms; /* 0: 100; the background reaper always runs */
  uint32_t max_lease_batch;    /* 0: 1000 */
  uint64_t max_payload_bytes;  /* 0: 1 MiB; also caps results */
} sluice_engine_options;
#define SLUICE_ENGINE_OPTIONS_INIT \
  { SLUICE_ENGINE_OPTIONS_VERSION, SLUICE_DURABILITY_SYNC, 0, 0, 0, 0 }

/* Opens (creating when missing) the store in directory `path`. On success *out is a handle to
 * release with sluice_engine_destroy. `options` may be NULL. */
SLUICE_EXPORT sluice_status sluice_engine_open(sluice_engine **out, sluice_str path,
                                               const sluice_engine_options *options,
                                               sluice_error **err);

/* Stops the engine: calls in flight drain (a waiting lease returns SLUICE_CLOSED), later calls
 * return SLUICE_CLOSED, the store is closed. Thread-safe and idempotent. */
SLUICE_EXPORT sluice_status sluice_engine_close(sluice_engine *engine, sluice_error **err);

/* Closes (if needed) and frees the handle. Must be the last call on it. NULL is a no-op. */
SLUICE_EXPORT void sluice_engine_destroy(sluice_engine *engine);

/* ---- Enqueue ---- */

#define SLUICE_LIMIT_FIXED 0
#define SLUICE_LIMIT_FLOATING 1

/* One concurrency limit of a job. */
typedef struct sluice_limit {
  uint32_t kind; /* SLUICE_LIMIT_FIXED or SLUICE_LIMIT_FLOATING */
  sluice_str key;
  uint32_t max;                 /* fixed: max; floating: default max */
  uint64_t refresh_interval_ms; /* floating only */
  const sluice_kv *metadata;    /* floating only */
  size_t metadata_len;
} sluice_limit;

/* A retry policy; see docs/decisions.md for the backoff formula. */
typedef struct sluice_retry_policy {
  uint32_t max_retries;
  uint64_t initial_backoff_ms;
  uint64_t max_backoff_ms;
  double multiplier;
  bool jitter;
} sluice_retry_policy;
/* The engine's default policy: 3 retries, 1 s initial backoff, x2, capped at 60 s, no jitter.
 * This struct is frozen (it is embedded in sluice_job); new retry settings would come as a new
 * struct. */
#define SLUICE_RETRY_POLICY_INIT \
  { 3, 1000, 60000, 2.0, false }

#define SLUICE_JOB_SPEC_VERSION 1
/* A job to enqueue. */
typedef struct sluice_job_spec {
  uint32_t version;                 /* SLUICE_JOB_SPEC_VERSION */
  sluice_str id;                    /* empty: a UUIDv7 is generated */
  sluice_str tenant;                /* empty: the default tenant */
  sluice_str queue;                 /* required */
  uint32_t priority;                /* 0..99, 0 first; the INIT value is 50 */
  int64_t start_at_ms;              /* 0: now */
  const sluice_retry_policy *retry; /* NULL: the engine default */
  uint64_t lease_ms;                /* 0: the engine default */
  const uint8_t *payload;
  size_t payload_len;
  const sluice_kv *metadata;
  size_t metadata_len;
  const sluice_limit *limits;
  size_t limits_len;
} sluice_job_spec;
#define SLUICE_JOB_SPEC_INIT                                                                    \
  {                                                                                             \
    SLUICE_JOB_SPEC_VERSION, {NULL, 0}, {NULL, 0}, {NULL, 0}, 50, 0, NULL, 0, NULL, 0, NULL, 0, \
        NULL, 0                                                                                 \
  }

/* Job status (scheduled vs waiting is derived from the clock when read). */
#define SLUICE_JOB_SCHEDULED 0
#define SLUICE_JOB_WAITING 1
#define SLUICE_JOB_RUNNING 2
#define SLUICE_JOB_SUCCEEDED 3
#define SLUICE_JOB_FAILED 4
#define SLUICE_JOB_CANCELLED 5

/* Result of one enqueue. created is false when the id existed (the job is unchanged). */
typedef struct sluice_enqueue_result {
  sluice_str id;
  bool created;
  uint32_t status; /* SLUICE_JOB_* */
} sluice_enqueue_result;

/* Results of a batch, in input order. Free with sluice_free. */
typedef struct sluice_enqueue_results {
  const sluice_enqueue_result *items;
  size_t len;
} sluice_enqueue_results;

/* Enqueues one job. *out (free with sluice_free) says whether it was created. */
SLUICE_EXPORT sluice_status sluice_enqueue(sluice_enqueue_result **out, sluice_engine *engine,
                                           const sluice_job_spec *spec, sluice_error **err);

/* Enqueues `len` jobs in one atomic write; one bad spec rejects the batch (nothing stored).
 * `specs` is an array of pointers so each spec carries its own version. */
SLUICE_EXPORT sluice_status sluice_enqueue_batch(sluice_enqueue_results **out,
                                                 sluice_engine *engine,
                                                 const sluice_job_spec *const *specs, size_t len,
                                                 sluice_error **err);

/* ---- Leasing and reporting ---- */

#define SLUICE_LEASE_REQUEST_VERSION 1
typedef struct sluice_lease_request {
  uint32_t version; /* SLUICE_LEASE_REQUEST_VERSION */
  sluice_str tenant;
  sluice_str queue;     /* required */
  sluice_str worker_id; /* required */
  uint32_t max_tasks;   /* 1..max_lease_batch */
  uint32_t wait_ms;     /* long-poll bound */
  bool with_refreshes;  /* also hand out floating-limit refresh tasks */
} sluice_lease_request;
#define SLUICE_LEASE_REQUEST_INIT \
  { SLUICE_LEASE_REQUEST_VERSION, {NULL, 0}, {NULL, 0}, {NULL, 0}, 1, 0, false }

/* A leased attempt of a job. Present task_id and lease_token to heartbeat and complete. */
typedef struct sluice_task {
  sluice_str task_id;
  sluice_str job_id;
  sluice_str tenant;
  sluice_str queue;
  uint32_t attempt;
  uint32_t priority;
  sluice_str payload;
  const sluice_kv *metadata;
  size_t metadata_len;
  uint64_t lease_token;
  int64_t lease_expires_ms;
  sluice_str worker_id; /* the worker that leased it (present it to sluice_heartbeat) */
} sluice_task;

/* A floating-limit refresh: compute the key's max and report it with sluice_refresh_complete. */
typedef struct sluice_refresh_task {
  sluice_str tenant;
  sluice_str key;
  const sluice_kv *metadata;
  size_t metadata_len;
  uint32_t current_max;
  uint32_t default_max;
  int64_t last_refreshed_ms;
  uint64_t lease_token;
  int64_t lease_expires_ms;
} sluice_refresh_task;

/* What sluice_lease returns. Free with sluice_free. */
typedef struct sluice_lease_response {
  const sluice_task *tasks;
  size_t tasks_len;
  const sluice_refresh_task *refreshes;
  size_t refreshes_len;
} sluice_lease_response;

/* Leases due tasks (long-polls up to wait_ms when none is due; an empty response on timeout).
 * wait_ms is capped at 60 s; only closing the engine interrupts a wait early, so keep waits
 * short where the caller must react to its own signals. */
SLUICE_EXPORT sluice_status sluice_lease(sluice_lease_response **out, sluice_engine *engine,
                                         const sluice_lease_request *request, sluice_error **err);

/* Extends a lease. *out_expires_ms is the new expiry; *out_cancel_requested tells the worker to
 * stop. SLUICE_LEASE_LOST when the token is stale or the lease expired. */
SLUICE_EXPORT sluice_status sluice_heartbeat(int64_t *out_expires_ms, bool *out_cancel_requested,
                                             sluice_engine *engine, sluice_str tenant,
                                             sluice_str task_id, sluice_str worker_id,
                                             uint64_t lease_token, sluice_error **err);

#define SLUICE_OUTCOME_SUCCESS 0
#define SLUICE_OUTCOME_FAILURE 1
#define SLUICE_OUTCOME_CANCELLED 2

#define SLUICE_OUTCOME_VERSION 1
/* How an attempt ended. */
typedef struct sluice_outcome {
  uint32_t version;      /* SLUICE_OUTCOME_VERSION */
  uint32_t kind;         /* SLUICE_OUTCOME_* */
  const uint8_t *result; /* success */
  size_t result_len;
  sluice_str error_code; /* failure: required */
  sluice_str error_message;
  const uint8_t *error_data;
  size_t error_data_len;
  bool no_retry; /* failure: fail now even with retries left */
} sluice_outcome;
#define SLUICE_OUTCOME_INIT \
  { SLUICE_OUTCOME_VERSION, SLUICE_OUTCOME_SUCCESS, NULL, 0, {NULL, 0}, {NULL, 0}, NULL, 0, false }

/* Ends an attempt. SLUICE_LEASE_LOST when the token is stale or the lease expired. */
SLUICE_EXPORT sluice_status sluice_complete(sluice_engine *engine, sluice_str tenant,
                                            sluice_str task_id, uint64_t lease_token,
                                            const sluice_outcome *outcome, sluice_error **err);

/* One report of sluice_complete_batch (a fixed struct: the outcome carries the version). */
typedef struct sluice_completion {
  sluice_str tenant;
  sluice_str task_id;
  uint64_t lease_token;
  const sluice_outcome *outcome;
} sluice_completion;

/* Ends up to max_lease_batch attempts in ONE atomic write (one fsync under sync durability).
 * out_statuses[i] (an array of `len` the caller provides) receives each report's status:
 * SLUICE_OK, or why it was refused (SLUICE_LEASE_LOST, SLUICE_INVALID_ARGUMENT, ...; a second
 * report of the same attempt in one batch is SLUICE_LEASE_LOST). The call itself returns
 * SLUICE_OK when the batch was processed; any other status means nothing was written. */
SLUICE_EXPORT sluice_status sluice_complete_batch(sluice_status *out_statuses,
                                                  sluice_engine *engine,
                                                  const sluice_completion *items, size_t len,
                                                  sluice_error **err);

/* ---- Operators ---- */

/* Cancels a job: pending jobs end cancelled at once (*out_status SLUICE_JOB_CANCELLED); a
 * running job gets cancel_requested (*out_status SLUICE_JOB_RUNNING). Either out may be NULL. */
SLUICE_EXPORT sluice_status sluice_cancel(uint32_t *out_status, bool *out_cancel_requested,
                                          sluice_engine *engine, sluice_str tenant, sluice_str id,
                                          sluice_error **err);
/* Failed or cancelled -> waiting, with a fresh retry budget. */
SLUICE_EXPORT sluice_status sluice_restart(sluice_engine *engine, sluice_str tenant, sluice_str id,
                                           sluice_error **err);
/* Scheduled -> due now. */
SLUICE_EXPORT sluice_status sluice_expedite(sluice_engine *engine, sluice_str tenant, sluice_str id,
                                            sluice_error **err);
/* Removes a job that is not running. */
SLUICE_EXPORT sluice_status sluice_delete(sluice_engine *engine, sluice_str tenant, sluice_str id,
                                          sluice_error **err);

#define SLUICE_ATTEMPT_RUNNING 0
#define SLUICE_ATTEMPT_SUCCEEDED 1
#define SLUICE_ATTEMPT_FAILED 2
#define SLUICE_ATTEMPT_CANCELLED 3

/* One attempt of a job. */
typedef struct sluice_attempt {
  uint32_t number;
  sluice_str task_id;
  sluice_str worker_id;
  uint32_t status; /* SLUICE_ATTEMPT_* */
  int64_t started_ms;
  int64_t finished_ms;
  sluice_str result;
  sluice_str error_code;
  sluice_str error_message;
  sluice_str error_data;
} sluice_attempt;

/* A job as read back. Free with sluice_free. */
typedef struct sluice_job {
  sluice_str id;
  sluice_str tenant;
  sluice_str queue;
  uint32_t priority;
  uint32_t status; /* SLUICE_JOB_* */
  bool cancel_requested;
  int64_t start_at_ms;
  int64_t next_run_ms;
  uint64_t lease_ms;
  sluice_retry_policy retry;
  sluice_str payload;
  const sluice_kv *metadata;
  size_t metadata_len;
  const sluice_limit *limits;
  size_t limits_len;
  uint32_t attempt_count;
  uint32_t retries_used;
  int64_t created_ms;
  int64_t updated_ms;
  int64_t finished_ms;
  const sluice_attempt *attempts; /* only when asked for */
  size_t attempts_len;
} sluice_job;

/* Reads a job (with its attempts when include_attempts). */
SLUICE_EXPORT sluice_status sluice_get_job(sluice_job **out, sluice_engine *engine,
                                           sluice_str tenant, sluice_str id, bool include_attempts,
                                           sluice_error **err);

/* A job's result: finished tells whether status is terminal. Free with sluice_free. */
typedef struct sluice_job_result {
  uint32_t status;
  bool finished;
  sluice_str result;
  sluice_str error_code;
  sluice_str error_message;
  sluice_str error_data;
} sluice_job_result;

SLUICE_EXPORT sluice_status sluice_get_result(sluice_job_result **out, sluice_engine *engine,
                                              sluice_str tenant, sluice_str id, sluice_error **err);

/* Reaps expired leases now (the background reaper does this too); *out_reaped may be NULL. */
SLUICE_EXPORT sluice_status sluice_reap_expired(size_t *out_reaped, sluice_engine *engine,
                                                sluice_error **err);

/* Operator check (fsck): scans every job and verifies that each index entry and counter matches
 * the job records exactly. SLUICE_CORRUPTION naming the first mismatch. O(jobs): it reads the
 * whole store, so run it off the hot path. */
SLUICE_EXPORT sluice_status sluice_verify_indexes(sluice_engine *engine, sluice_error **err);

/* ---- Concurrency limits ---- */

/* Extends a refresh lease; *out_expires_ms may be NULL. */
SLUICE_EXPORT sluice_status sluice_refresh_heartbeat(int64_t *out_expires_ms, sluice_engine *engine,
                                                     sluice_str tenant, sluice_str key,
                                                     uint64_t lease_token, sluice_error **err);

/* Reports a refresh: ok with new_max (0 pauses the key), or a failure with error_code. */
SLUICE_EXPORT sluice_status sluice_refresh_complete(sluice_engine *engine, sluice_str tenant,
                                                    sluice_str key, uint64_t lease_token, bool ok,
                                                    uint32_t new_max, sluice_str error_code,
                                                    sluice_str error_message, sluice_error **err);

/* A floating key's state. Free with sluice_free. */
typedef struct sluice_floating_limit {
  sluice_str tenant;
  sluice_str key;
  uint32_t current_max;
  uint32_t default_max;
  uint64_t refresh_interval_ms;
  int64_t last_refreshed_ms;
  const sluice_kv *metadata;
  size_t metadata_len;
  uint32_t consecutive_failures;
  int64_t next_refresh_ms;
  bool refresh_in_flight;
  uint64_t holders;
  uint64_t waiters;
} sluice_floating_limit;

SLUICE_EXPORT sluice_status sluice_floating_limit_get(sluice_floating_limit **out,
                                                      sluice_engine *engine, sluice_str tenant,
                                                      sluice_str key, sluice_error **err);
/* A page of floating keys of a tenant, in key order. Free with sluice_free. */
typedef struct sluice_floating_limits {
  const sluice_floating_limit *items;
  size_t len;
} sluice_floating_limits;

/* Lists up to `limit` (1..10000) floating keys of `tenant` after `after_key` ("" = first). */
SLUICE_EXPORT sluice_status sluice_floating_limit_list(sluice_floating_limits **out,
                                                       sluice_engine *engine, sluice_str tenant,
                                                       sluice_str after_key, uint32_t limit,
                                                       sluice_error **err);

/* Operator override: sets the current max now; a raise grants waiters at once. */
SLUICE_EXPORT sluice_status sluice_floating_limit_set(sluice_engine *engine, sluice_str tenant,
                                                      sluice_str key, uint32_t max,
                                                      sluice_error **err);

/* Live holders, waiters and max of a key (zeros when idle). Outputs may be NULL. */
SLUICE_EXPORT sluice_status sluice_concurrency_key_get(uint64_t *out_holders, uint64_t *out_waiters,
                                                       uint32_t *out_max, sluice_engine *engine,
                                                       sluice_str tenant, uint32_t kind,
                                                       sluice_str key, sluice_error **err);

/* Engine counters and gauges. Free with sluice_free. SLUICE_CLOSED after close. */
typedef struct sluice_stats {
  uint64_t enqueued;
  uint64_t leased;
  uint64_t succeeded;
  uint64_t failed;
  uint64_t cancelled;
  uint64_t retried;
  uint64_t lease_expired;
  uint64_t pending_tasks;
  uint64_t running;
  uint64_t limit_keys;
  uint64_t limit_holders;
  uint64_t limit_waiters;
} sluice_stats;

SLUICE_EXPORT sluice_status sluice_engine_stats(sluice_stats **out, sluice_engine *engine,
                                                sluice_error **err);

/* ---- Finding jobs ---- */

/* How much of each listed job sluice_list_jobs returns. */
#define SLUICE_VIEW_INDEX 0   /* id, queue, status, created_ms only (no record read) */
#define SLUICE_VIEW_SUMMARY 1 /* every field except payload and attempts */
#define SLUICE_VIEW_FULL 2    /* with payload (attempts are never listed: sluice_get_job) */

/* The number of job statuses: SLUICE_JOB_SCHEDULED .. SLUICE_JOB_CANCELLED. */
#define SLUICE_JOB_STATUS_COUNT 6

#define SLUICE_LIST_REQUEST_VERSION 1
/* One page of a listing: a filter, an order and a page. Always scoped to one tenant; every
 * other filter field narrows it (empty / NULL / 0-length: no restriction). The filter fields
 * are inline (not a nested struct) so that new filters can be appended at the end.
 * Indexed (no full scan): metadata pairs, queue, statuses and the creation-time range; the first
 * metadata pair drives the scan when there is one, then the queue, then the statuses. */
typedef struct sluice_list_request {
  uint32_t version; /* SLUICE_LIST_REQUEST_VERSION */
  sluice_str tenant;
  sluice_str queue;          /* empty: every queue */
  const uint32_t *statuses;  /* SLUICE_JOB_* values; none: every status */
  size_t statuses_len;       /* waiting vs scheduled is derived from the clock */
  sluice_str id;             /* empty: any; else exactly this job */
  sluice_str id_prefix;      /* empty: any; else ids starting with it */
  const sluice_kv *metadata; /* every pair must match */
  size_t metadata_len;
  int64_t created_from_ms; /* inclusive; the INIT value 0 is no lower bound */
  int64_t created_to_ms;   /* exclusive; the INIT value INT64_MAX (or 0) is no upper bound */
  bool newest_first;       /* order by creation time (then enqueue order), descending */
  uint32_t limit;          /* page size, 1..1000; the INIT value is 50 */
  sluice_str cursor;       /* empty: the first page; else the previous page's next_cursor */
  uint32_t view;           /* SLUICE_VIEW_*; the INIT value is SLUICE_VIEW_SUMMARY */
} sluice_list_request;
#define SLUICE_LIST_REQUEST_INIT                                                                  \
  {                                                                                               \
    SLUICE_LIST_REQUEST_VERSION, {NULL, 0}, {NULL, 0}, NULL, 0, {NULL, 0}, {NULL, 0}, NULL, 0, 0, \
        INT64_MAX, false, 50, {NULL, 0}, SLUICE_VIEW_SUMMARY                                      \
  }

/* One page of jobs. Free with sluice_free. Each job is laid out like sluice_get_job's, with the
 * fields its view leaves out zeroed or empty (attempts are always empty). A page may be shorter
 * than the limit (even empty) while more remain: one call visits a bounded number of keys.
 * Keep paging while next_cursor is not empty; paging never skips or repeats a job that matches
 * throughout, while writes continue. */
typedef struct sluice_job_list {
  const sluice_job *jobs;
  size_t jobs_len;
  sluice_str next_cursor; /* empty when the listing is complete; opaque bytes otherwise */
  uint64_t keys_visited;  /* index entries and records read (the call's cost) */
} sluice_job_list;

/* Lists one page of a tenant's jobs matching `request`, in creation order. *out (free with
 * sluice_free) holds the page. SLUICE_INVALID_ARGUMENT for a NULL or unknown-version request,
 * a status or view value out of range, a bad page size, or a cursor that is malformed or comes
 * from another filter or order; SLUICE_TOO_LARGE for oversized filter strings. Thread-safe;
 * never blocks on other calls beyond reading the store. */
SLUICE_EXPORT sluice_status sluice_list_jobs(sluice_job_list **out, sluice_engine *engine,
                                             const sluice_list_request *request,
                                             sluice_error **err);

/* Job counts of one queue, by status. */
typedef struct sluice_queue_count {
  sluice_str queue;
  uint64_t counts[SLUICE_JOB_STATUS_COUNT]; /* indexed by SLUICE_JOB_* */
} sluice_queue_count;

/* What sluice_count_jobs returns. Free with sluice_free. */
typedef struct sluice_queue_counts {
  const sluice_queue_count *items;
  size_t len;
} sluice_queue_counts;

/* Job counts by status for one queue of `tenant` (queue not empty), or for every queue of the
 * tenant that ever had jobs (queue empty). Read from counters kept in the same writes as the
 * transitions: no scan of jobs. *out is freed with sluice_free. */
SLUICE_EXPORT sluice_status sluice_count_jobs(sluice_queue_counts **out, sluice_engine *engine,
                                              sluice_str tenant, sluice_str queue,
                                              sluice_error **err);

/* ---- Queries ---- */

/* A cancellation flag for long calls (sluice_query). Create one, pass it in the call's options,
 * and call sluice_cancel_token_cancel from any thread to stop the call: it then returns
 * SLUICE_CANCELLED within a few milliseconds. A token stays cancelled once cancelled; it may be
 * shared by several calls. */
typedef struct sluice_cancel_token sluice_cancel_token;

/* Creates an uncancelled token; *out is released with sluice_cancel_token_destroy. */
SLUICE_EXPORT sluice_status sluice_cancel_token_create(sluice_cancel_token **out,
                                                       sluice_error **err);
/* Cancels every call using the token, now and later. Thread-safe, idempotent; NULL is a no-op. */
SLUICE_EXPORT void sluice_cancel_token_cancel(sluice_cancel_token *token);
/* Whether the token was cancelled (false for NULL). Thread-safe. */
SLUICE_EXPORT bool sluice_cancel_token_is_cancelled(const sluice_cancel_token *token);
/* Frees the token. Only after every call using it has returned. NULL is a no-op. */
SLUICE_EXPORT void sluice_cancel_token_destroy(sluice_cancel_token *token);

#define SLUICE_QUERY_OPTIONS_VERSION 1
/* Bounds of one sluice_query. Zero means the engine default for every numeric field. */
typedef struct sluice_query_options {
  uint32_t version;                        /* SLUICE_QUERY_OPTIONS_VERSION */
  uint32_t timeout_ms;                     /* 0: 5000; SLUICE_TIMEOUT after this long */
  uint32_t max_rows;                       /* 0: 10000; SLUICE_TOO_LARGE beyond this many rows */
  uint64_t max_result_bytes;               /* 0: 4 MiB; SLUICE_TOO_LARGE beyond this size */
  const sluice_cancel_token *cancel_token; /* NULL: not cancellable */
} sluice_query_options;
#define SLUICE_QUERY_OPTIONS_INIT \
  { SLUICE_QUERY_OPTIONS_VERSION, 0, 0, 0, NULL }

/* The type of a query result cell (SQLite's storage classes). */
typedef enum sluice_value_type {
  SLUICE_VALUE_NULL = 0,
  SLUICE_VALUE_INTEGER = 1, /* sluice_query_result_int64 */
  SLUICE_VALUE_REAL = 2,    /* sluice_query_result_double */
  SLUICE_VALUE_TEXT = 3,    /* sluice_query_result_bytes: UTF-8 */
  SLUICE_VALUE_BLOB = 4     /* sluice_query_result_bytes */
} sluice_value_type;

/* The columns and typed rows a query returned: an opaque handle read through the accessors
 * below and released with sluice_query_result_free. Immutable: safe to read from several
 * threads at once. */
typedef struct sluice_query_result sluice_query_result;

/* Runs one read-only SQL statement (SQLite dialect) over `tenant`'s virtual tables jobs,
 * job_metadata, attempts, queues, concurrency_keys and floating_limits (docs/query.md). The
 * tenant is fixed here, never by the SQL. `options` may be NULL (defaults, not cancellable).
 * Blocks for at most options->timeout_ms. On success *out holds the rows (free with
 * sluice_query_result_free). SLUICE_INVALID_ARGUMENT for SQL that does not parse or would
 * write; SLUICE_TIMEOUT, SLUICE_TOO_LARGE and SLUICE_CANCELLED when its bounds stop it. */
SLUICE_EXPORT sluice_status sluice_query(sluice_query_result **out, sluice_engine *engine,
                                         sluice_str tenant, sluice_str sql,
                                         const sluice_query_options *options, sluice_error **err);

/* The number of result columns (0 for NULL). */
SLUICE_EXPORT size_t sluice_query_result_column_count(const sluice_query_result *result);
/* The name of column `column`, NUL-terminated, owned by the result ({"", 0} when out of range). */
SLUICE_EXPORT sluice_str sluice_query_result_column_name(const sluice_query_result *result,
                                                         size_t column);
/* The number of result rows (0 for NULL). */
SLUICE_EXPORT size_t sluice_query_result_row_count(const sluice_query_result *result);
/* Index entries and records the query's virtual tables read (its cost). */
SLUICE_EXPORT uint64_t sluice_query_result_keys_visited(const sluice_query_result *result);
/* The type of cell (row, column); SLUICE_VALUE_NULL when out of range. */
SLUICE_EXPORT sluice_value_type sluice_query_result_type(const sluice_query_result *result,
                                                         size_t row, size_t column);
/* An INTEGER cell's value; 0 for other types and out of range. */
SLUICE_EXPORT int64_t sluice_query_result_int64(const sluice_query_result *result, size_t row,
                                                size_t column);
/* A REAL cell's value, or an INTEGER cell's converted to double; 0 otherwise. */
SLUICE_EXPORT double sluice_query_result_double(const sluice_query_result *result, size_t row,
                                                size_t column);
/* A TEXT or BLOB cell's bytes, owned by the result and NUL-terminated (use len: blobs may hold
 * NUL bytes); {"", 0} for other types and out of range. */
SLUICE_EXPORT sluice_str sluice_query_result_bytes(const sluice_query_result *result, size_t row,
                                                   size_t column);
/* Frees a query result and everything read from it. NULL is a no-op. */
SLUICE_EXPORT void sluice_query_result_free(sluice_query_result *result);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SLUICE_SLUICE_H_ */
