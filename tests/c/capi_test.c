/* The C ABI from plain C99: the whole lifecycle and the error paths, against a real store.
 * Usage: sluice_capi_test <scratch dir>. Prints "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L /* pthreads, nanosleep, clock_gettime: the cancel test */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/sluice.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      ++passed;                                                                \
    } else {                                                                   \
      ++failed;                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

static sluice_str S(const char *s) {
  sluice_str r;
  r.ptr = s;
  r.len = strlen(s);
  return r;
}

/* Expects `st` with an error object (*errp, read after the call) of the same status and a
 * non-empty message; frees it and resets *errp. */
static void expect_error(sluice_status st, sluice_error **errp, sluice_status want) {
  sluice_error *err = *errp;
  CHECK(st == want);
  CHECK(err != NULL);
  if (err != NULL) {
    CHECK(sluice_error_status(err) == want);
    CHECK(strlen(sluice_error_message(err)) > 0);
    sluice_error_free(err);
  }
  *errp = NULL;
}

static void test_lifecycle(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_kv md[1];
  sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
  sluice_enqueue_result *res = NULL;
  sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
  sluice_lease_response *lease = NULL;
  sluice_outcome outcome = SLUICE_OUTCOME_INIT;
  sluice_job *job = NULL;
  sluice_job_result *result = NULL;
  int64_t expires = 0;
  bool cancel = true;
  char id[64];

  md[0].key = S("customer");
  md[0].value = S("acme");
  spec.queue = S("email");
  spec.payload = (const uint8_t *)"hello";
  spec.payload_len = 5;
  spec.metadata = md;
  spec.metadata_len = 1;
  CHECK(sluice_enqueue(&res, e, &spec, &err) == SLUICE_OK);
  CHECK(err == NULL);
  CHECK(res != NULL && res->created && res->status == SLUICE_JOB_WAITING);
  CHECK(res->id.len == 36 && res->id.ptr[36] == '\0');
  snprintf(id, sizeof id, "%s", res->id.ptr);
  sluice_free(res);

  /* Idempotent enqueue with a client id. */
  spec.id = S("client-1");
  CHECK(sluice_enqueue(&res, e, &spec, NULL) == SLUICE_OK && res->created);
  sluice_free(res);
  CHECK(sluice_enqueue(&res, e, &spec, NULL) == SLUICE_OK && !res->created);
  sluice_free(res);

  req.queue = S("email");
  req.worker_id = S("c-worker");
  req.max_tasks = 10;
  CHECK(sluice_lease(&lease, e, &req, &err) == SLUICE_OK);
  CHECK(lease != NULL && lease->tasks_len == 2);
  if (lease == NULL || lease->tasks_len != 2) return;
  CHECK(lease->tasks[0].payload.len == 5 && memcmp(lease->tasks[0].payload.ptr, "hello", 5) == 0);
  CHECK(lease->tasks[0].metadata_len == 1 &&
        strcmp(lease->tasks[0].metadata[0].value.ptr, "acme") == 0);
  CHECK(lease->tasks[0].attempt == 1);
  CHECK(strcmp(lease->tasks[0].worker_id.ptr, "c-worker") == 0);
  CHECK(sluice_heartbeat(&expires, &cancel, e, lease->tasks[0].tenant, lease->tasks[0].task_id,
                         S("c-worker"), lease->tasks[0].lease_token, &err) == SLUICE_OK);
  CHECK(expires > 0 && !cancel);

  outcome.result = (const uint8_t *)"sent";
  outcome.result_len = 4;
  CHECK(sluice_complete(e, lease->tasks[0].tenant, lease->tasks[0].task_id,
                        lease->tasks[0].lease_token, &outcome, &err) == SLUICE_OK);
  /* A second report with the same token: the lease is gone. */
  expect_error(sluice_complete(e, lease->tasks[0].tenant, lease->tasks[0].task_id,
                               lease->tasks[0].lease_token, &outcome, &err),
               &err, SLUICE_LEASE_LOST);
  err = NULL;

  /* Fail the other one without retries left. */
  {
    sluice_outcome fail = SLUICE_OUTCOME_INIT;
    fail.kind = SLUICE_OUTCOME_FAILURE;
    fail.error_code = S("smtp_down");
    fail.no_retry = true;
    CHECK(sluice_complete(e, lease->tasks[1].tenant, lease->tasks[1].task_id,
                          lease->tasks[1].lease_token, &fail, &err) == SLUICE_OK);
  }
  {
    const char *first = lease->tasks[0].job_id.ptr;
    CHECK(sluice_get_job(&job, e, S(""), S(first), true, &err) == SLUICE_OK);
    CHECK(job != NULL && job->status == SLUICE_JOB_SUCCEEDED && job->attempts_len == 1);
    if (job != NULL && job->attempts_len == 1) {
      CHECK(job->attempts[0].status == SLUICE_ATTEMPT_SUCCEEDED);
      CHECK(strcmp(job->attempts[0].worker_id.ptr, "c-worker") == 0);
    }
    sluice_free(job);
    CHECK(sluice_get_result(&result, e, S(""), S(first), &err) == SLUICE_OK);
    CHECK(result != NULL && result->finished && result->result.len == 4);
    sluice_free(result);
  }
  CHECK(sluice_get_result(&result, e, S(""), lease->tasks[1].job_id, &err) == SLUICE_OK);
  CHECK(result != NULL && result->status == SLUICE_JOB_FAILED &&
        strcmp(result->error_code.ptr, "smtp_down") == 0);
  sluice_free(result);
  {
    sluice_str failed_id = lease->tasks[1].job_id;
    CHECK(sluice_restart(e, S(""), failed_id, &err) == SLUICE_OK);
    {
      uint32_t status = 99;
      CHECK(sluice_cancel(&status, NULL, e, S(""), failed_id, &err) == SLUICE_OK);
      CHECK(status == SLUICE_JOB_CANCELLED);
    }
    CHECK(sluice_delete(e, S(""), failed_id, &err) == SLUICE_OK);
    expect_error(sluice_get_job(&job, e, S(""), failed_id, false, &err), &err, SLUICE_NOT_FOUND);
    CHECK(job == NULL);
    err = NULL;
  }
  sluice_free(lease);
  (void)id;
}

static void test_batch_and_scheduling(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_job_spec a = SLUICE_JOB_SPEC_INIT, b = SLUICE_JOB_SPEC_INIT;
  const sluice_job_spec *specs[2];
  sluice_enqueue_results *rs = NULL;
  a.queue = S("batch");
  b.queue = S("batch");
  b.start_at_ms = (int64_t)time(NULL) * 1000 + 3600 * 1000;
  specs[0] = &a;
  specs[1] = &b;
  CHECK(sluice_enqueue_batch(&rs, e, specs, 2, &err) == SLUICE_OK);
  CHECK(rs != NULL && rs->len == 2);
  if (rs == NULL || rs->len != 2) return;
  CHECK(rs->items[0].status == SLUICE_JOB_WAITING);
  CHECK(rs->items[1].status == SLUICE_JOB_SCHEDULED);
  CHECK(sluice_expedite(e, S(""), rs->items[1].id, &err) == SLUICE_OK);
  {
    sluice_job *j = NULL;
    CHECK(sluice_get_job(&j, e, S(""), rs->items[1].id, false, &err) == SLUICE_OK);
    CHECK(j != NULL && j->status == SLUICE_JOB_WAITING);
    sluice_free(j);
  }
  sluice_free(rs);
}

static void test_complete_batch(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
  sluice_enqueue_result *res = NULL;
  sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
  sluice_lease_response *lease = NULL;
  sluice_outcome ok = SLUICE_OUTCOME_INIT, bad = SLUICE_OUTCOME_INIT;
  sluice_completion items[4];
  sluice_status statuses[4];
  int i;
  spec.queue = S("batch-complete");
  for (i = 0; i < 2; ++i) {
    CHECK(sluice_enqueue(&res, e, &spec, &err) == SLUICE_OK);
    sluice_free(res);
  }
  req.queue = S("batch-complete");
  req.worker_id = S("w");
  req.max_tasks = 10;
  CHECK(sluice_lease(&lease, e, &req, &err) == SLUICE_OK);
  CHECK(lease != NULL && lease->tasks_len == 2);
  if (lease == NULL || lease->tasks_len != 2) return;
  bad.version = 77;
  for (i = 0; i < 4; ++i) {
    const sluice_task *t = &lease->tasks[i % 2];
    items[i].tenant = t->tenant;
    items[i].task_id = t->task_id;
    items[i].lease_token = t->lease_token;
    items[i].outcome = &ok;
  }
  items[2].outcome = &bad; /* malformed outcome: refused alone */
  /* items[3] repeats task 1: already reported in this batch */
  CHECK(sluice_complete_batch(statuses, e, items, 4, &err) == SLUICE_OK);
  CHECK(statuses[0] == SLUICE_OK);
  CHECK(statuses[1] == SLUICE_OK);
  CHECK(statuses[2] == SLUICE_INVALID_ARGUMENT);
  CHECK(statuses[3] == SLUICE_LEASE_LOST);
  {
    sluice_job *j = NULL;
    CHECK(sluice_get_job(&j, e, S(""), lease->tasks[1].job_id, false, &err) == SLUICE_OK);
    CHECK(j != NULL && j->status == SLUICE_JOB_SUCCEEDED);
    sluice_free(j);
  }
  sluice_free(lease);
}

static void test_errors(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
  sluice_enqueue_result *res = NULL;
  sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
  sluice_lease_response *lease = NULL;
  sluice_outcome outcome = SLUICE_OUTCOME_INIT;
  static uint8_t big[2 << 20];

  /* Empty queue. */
  expect_error(sluice_enqueue(&res, e, &spec, &err), &err, SLUICE_INVALID_ARGUMENT);
  CHECK(res == NULL);
  /* Unknown struct version. */
  spec.queue = S("q");
  spec.version = 999;
  expect_error(sluice_enqueue(&res, e, &spec, &err), &err, SLUICE_INVALID_ARGUMENT);
  spec.version = SLUICE_JOB_SPEC_VERSION;
  /* Priority out of range. */
  spec.priority = 100;
  expect_error(sluice_enqueue(&res, e, &spec, &err), &err, SLUICE_INVALID_ARGUMENT);
  spec.priority = 50;
  /* Payload over the limit. */
  spec.payload = big;
  spec.payload_len = sizeof big;
  expect_error(sluice_enqueue(&res, e, &spec, &err), &err, SLUICE_TOO_LARGE);
  spec.payload_len = 0;
  /* NULL pointers. */
  expect_error(sluice_enqueue(NULL, e, &spec, &err), &err, SLUICE_INVALID_ARGUMENT);
  expect_error(sluice_enqueue(&res, NULL, &spec, &err), &err, SLUICE_INVALID_ARGUMENT);
  /* Not found, failed precondition, lease lost with a made-up token. */
  expect_error(sluice_restart(e, S(""), S("nope"), &err), &err, SLUICE_NOT_FOUND);
  spec.id = S("pending-1");
  CHECK(sluice_enqueue(&res, e, &spec, NULL) == SLUICE_OK);
  sluice_free(res);
  expect_error(sluice_restart(e, S(""), S("pending-1"), &err), &err, SLUICE_FAILED_PRECONDITION);
  expect_error(sluice_complete(e, S(""), S("pending-1#1"), 12345, &outcome, &err), &err,
               SLUICE_LEASE_LOST);
  /* Errors are optional: a NULL err still returns the status. */
  CHECK(sluice_restart(e, S(""), S("nope"), NULL) == SLUICE_NOT_FOUND);
  /* Lease request validation. */
  req.queue = S("q");
  expect_error(sluice_lease(&lease, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  CHECK(strcmp(sluice_status_name(SLUICE_LEASE_LOST), "lease_lost") == 0);
  CHECK(strcmp(sluice_status_name(SLUICE_INTERNAL), "internal") == 0);
  CHECK(strcmp(sluice_status_name((sluice_status)77), "unknown") == 0);
}

static void test_limits(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_limit lim;
  sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
  sluice_enqueue_result *res = NULL;
  sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
  sluice_lease_response *lease = NULL;
  uint64_t holders = 0, waiters = 0;
  uint32_t max = 0;
  int i;
  memset(&lim, 0, sizeof lim);
  lim.kind = SLUICE_LIMIT_FLOATING;
  lim.key = S("api");
  lim.max = 1;
  lim.refresh_interval_ms = 60000;
  spec.queue = S("limited");
  spec.limits = &lim;
  spec.limits_len = 1;
  for (i = 0; i < 3; ++i) {
    CHECK(sluice_enqueue(&res, e, &spec, &err) == SLUICE_OK);
    sluice_free(res);
  }
  req.queue = S("limited");
  req.worker_id = S("w");
  req.max_tasks = 10;
  req.with_refreshes = true;
  CHECK(sluice_lease(&lease, e, &req, &err) == SLUICE_OK);
  CHECK(lease != NULL && lease->tasks_len == 1 && lease->refreshes_len == 1);
  if (lease == NULL || lease->refreshes_len != 1) return;
  CHECK(sluice_concurrency_key_get(&holders, &waiters, &max, e, S(""), SLUICE_LIMIT_FLOATING,
                                   S("api"), &err) == SLUICE_OK);
  CHECK(holders == 1 && waiters == 2 && max == 1);
  CHECK(sluice_refresh_complete(e, S(""), S("api"), lease->refreshes[0].lease_token, true, 3, S(""),
                                S(""), &err) == SLUICE_OK);
  CHECK(sluice_concurrency_key_get(&holders, &waiters, &max, e, S(""), SLUICE_LIMIT_FLOATING,
                                   S("api"), &err) == SLUICE_OK);
  CHECK(holders == 3 && waiters == 0 && max == 3);
  {
    sluice_floating_limit *fl = NULL;
    CHECK(sluice_floating_limit_get(&fl, e, S(""), S("api"), &err) == SLUICE_OK);
    CHECK(fl != NULL && fl->current_max == 3 && fl->default_max == 1);
    sluice_free(fl);
    CHECK(sluice_floating_limit_set(e, S(""), S("api"), 2, &err) == SLUICE_OK);
  }
  {
    sluice_floating_limits *all = NULL;
    CHECK(sluice_floating_limit_list(&all, e, S(""), S(""), 10, &err) == SLUICE_OK);
    CHECK(all != NULL && all->len == 1 && strcmp(all->items[0].key.ptr, "api") == 0 &&
          all->items[0].current_max == 2);
    sluice_free(all);
  }
  sluice_free(lease);
}

/* ---- Finding jobs ---- */

#define LIST_TENANT "lst"
#define LIST_JOBS 30

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* The state the listing tests set up: job-NN in tenant "lst", even NN on queue "a", odd on
 * "b"; metadata color=red when NN % 3 == 0 else blue; payload "pNN"; NN >= 25 scheduled an hour
 * ahead; job-00 succeeded, job-02 running. Created in three bursts (0-9, 10-19, 20-29) a few
 * milliseconds apart so that creation-time ranges have exact edges. */
static uint32_t list_status(int i) {
  if (i == 0) return SLUICE_JOB_SUCCEEDED;
  if (i == 2) return SLUICE_JOB_RUNNING;
  if (i >= 25) return SLUICE_JOB_SCHEDULED;
  return SLUICE_JOB_WAITING;
}

static void setup_list_jobs(sluice_engine *e) {
  sluice_error *err = NULL;
  int i;
  for (i = 0; i < LIST_JOBS; ++i) {
    char id[16], payload[16];
    sluice_kv md[1];
    sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
    sluice_enqueue_result *res = NULL;
    if (i == 10 || i == 20) sleep_ms(5);
    snprintf(id, sizeof id, "job-%02d", i);
    snprintf(payload, sizeof payload, "p%02d", i);
    md[0].key = S("color");
    md[0].value = S(i % 3 == 0 ? "red" : "blue");
    spec.id = S(id);
    spec.tenant = S(LIST_TENANT);
    spec.queue = S(i % 2 == 0 ? "a" : "b");
    spec.payload = (const uint8_t *)payload;
    spec.payload_len = strlen(payload);
    spec.metadata = md;
    spec.metadata_len = 1;
    if (i >= 25) spec.start_at_ms = now_ms() + 3600 * 1000;
    CHECK(sluice_enqueue(&res, e, &spec, &err) == SLUICE_OK && res->created);
    sluice_free(res);
  }
  {
    /* Same id, other tenant: never listed, counted or queried with "lst". */
    sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
    sluice_enqueue_result *res = NULL;
    spec.id = S("job-00");
    spec.tenant = S("other");
    spec.queue = S("a");
    CHECK(sluice_enqueue(&res, e, &spec, &err) == SLUICE_OK && res->created);
    sluice_free(res);
  }
  {
    sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
    sluice_lease_response *lease = NULL;
    sluice_outcome ok = SLUICE_OUTCOME_INIT;
    req.tenant = S(LIST_TENANT);
    req.queue = S("a");
    req.worker_id = S("w");
    req.max_tasks = 2;
    CHECK(sluice_lease(&lease, e, &req, &err) == SLUICE_OK);
    CHECK(lease != NULL && lease->tasks_len == 2);
    if (lease == NULL || lease->tasks_len != 2) return;
    CHECK(strcmp(lease->tasks[0].job_id.ptr, "job-00") == 0);
    CHECK(strcmp(lease->tasks[1].job_id.ptr, "job-02") == 0);
    CHECK(sluice_complete(e, lease->tasks[0].tenant, lease->tasks[0].task_id,
                          lease->tasks[0].lease_token, &ok, &err) == SLUICE_OK);
    sluice_free(lease);
  }
}

/* Pages through `req` (its cursor is overwritten) `limit` jobs at a time and writes the job
 * numbers in listing order to out[]; returns how many, or -1 when a page broke a rule. */
static int list_all(sluice_engine *e, sluice_list_request *req, int *out, int max) {
  char cursor[1024];
  size_t cursor_len = 0;
  int n = 0, pages = 0;
  for (;;) {
    sluice_job_list *page = NULL;
    sluice_error *err = NULL;
    size_t i;
    req->cursor.ptr = cursor;
    req->cursor.len = cursor_len;
    if (sluice_list_jobs(&page, e, req, &err) != SLUICE_OK) {
      fprintf(stderr, "list_jobs: %s\n", sluice_error_message(err));
      sluice_error_free(err);
      return -1;
    }
    if (page->jobs_len > req->limit || ++pages > 200) {
      sluice_free(page);
      return -1;
    }
    for (i = 0; i < page->jobs_len; ++i) {
      const sluice_job *j = &page->jobs[i];
      if (n == max || j->id.len != 6 || strncmp(j->id.ptr, "job-", 4) != 0 ||
          j->status != list_status(atoi(j->id.ptr + 4))) {
        sluice_free(page);
        return -1;
      }
      out[n++] = atoi(j->id.ptr + 4);
    }
    if (page->jobs_len > 0) CHECK(page->keys_visited > 0);
    cursor_len = page->next_cursor.len;
    CHECK(cursor_len < sizeof cursor);
    if (cursor_len >= sizeof cursor) cursor_len = 0;
    memcpy(cursor, page->next_cursor.ptr, cursor_len);
    sluice_free(page);
    if (cursor_len == 0) break;
  }
  req->cursor.ptr = NULL;
  req->cursor.len = 0;
  return n;
}

/* Checks that listing `req` yields exactly the jobs i for which want(i) holds, oldest first
 * (then newest first), in pages of 4. */
static void expect_listing(sluice_engine *e, sluice_list_request *req, int (*want)(int),
                           const char *what) {
  int got[64], expected[64];
  int n = 0, i, k;
  for (i = 0; i < LIST_JOBS; ++i) {
    if (want(i)) expected[n++] = i;
  }
  req->limit = 4;
  for (k = 0; k < 2; ++k) {
    int m;
    req->newest_first = k == 1;
    m = list_all(e, req, got, 64);
    if (m != n) {
      fprintf(stderr, "listing %s (%s): %d jobs, want %d\n", what, k ? "newest" : "oldest", m, n);
      CHECK(m == n);
      continue;
    }
    for (i = 0; i < n; ++i) {
      int ok = got[i] == (k == 0 ? expected[i] : expected[n - 1 - i]);
      if (!ok) fprintf(stderr, "listing %s: position %d is job %d\n", what, i, got[i]);
      CHECK(ok);
    }
  }
  req->newest_first = false;
}

static int want_queue_a(int i) { return i % 2 == 0; }
static int want_waiting(int i) { return list_status(i) == SLUICE_JOB_WAITING; }
static int want_sched_or_done(int i) {
  return list_status(i) == SLUICE_JOB_SCHEDULED || list_status(i) == SLUICE_JOB_SUCCEEDED;
}
static int want_red(int i) { return i % 3 == 0; }
static int want_red_b_waiting(int i) { return i % 3 == 0 && i % 2 == 1 && i < 25; }
static int want_teens(int i) { return i >= 10 && i < 20; }
static int want_seven(int i) { return i == 7; }
static int want_all(int i) { return i >= 0; }

static int64_t created_ms_of(sluice_engine *e, const char *id) {
  sluice_job *j = NULL;
  int64_t ms = -1;
  if (sluice_get_job(&j, e, S(LIST_TENANT), S(id), false, NULL) == SLUICE_OK) ms = j->created_ms;
  sluice_free(j);
  return ms;
}

static void test_list_jobs(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_list_request req = SLUICE_LIST_REQUEST_INIT;
  sluice_job_list *page = NULL;
  uint32_t statuses[2];
  sluice_kv md[2];

  req.tenant = S(LIST_TENANT);
  expect_listing(e, &req, want_all, "everything");
  req.queue = S("a");
  expect_listing(e, &req, want_queue_a, "queue a");
  req.queue = S("");
  statuses[0] = SLUICE_JOB_WAITING;
  req.statuses = statuses;
  req.statuses_len = 1;
  expect_listing(e, &req, want_waiting, "waiting");
  statuses[0] = SLUICE_JOB_SCHEDULED;
  statuses[1] = SLUICE_JOB_SUCCEEDED;
  req.statuses_len = 2;
  expect_listing(e, &req, want_sched_or_done, "scheduled or succeeded");
  req.statuses = NULL;
  req.statuses_len = 0;
  md[0].key = S("color");
  md[0].value = S("red");
  req.metadata = md;
  req.metadata_len = 1;
  expect_listing(e, &req, want_red, "red");
  req.queue = S("b");
  statuses[0] = SLUICE_JOB_WAITING;
  req.statuses = statuses;
  req.statuses_len = 1;
  expect_listing(e, &req, want_red_b_waiting, "red, queue b, waiting");
  req.queue = S("");
  req.statuses_len = 0;
  req.statuses = NULL;
  md[1].key = S("color");
  md[1].value = S("blue");
  req.metadata_len = 2; /* red and blue: nothing */
  CHECK(list_all(e, &req, (int[64]){0}, 64) == 0);
  req.metadata = NULL;
  req.metadata_len = 0;
  req.id_prefix = S("job-1");
  expect_listing(e, &req, want_teens, "id prefix job-1");
  req.id_prefix = S("");
  req.id = S("job-07");
  expect_listing(e, &req, want_seven, "id job-07");
  req.id = S("");
  req.created_from_ms = created_ms_of(e, "job-10");
  req.created_to_ms = created_ms_of(e, "job-20");
  CHECK(req.created_from_ms > 0 && req.created_to_ms > req.created_from_ms);
  expect_listing(e, &req, want_teens, "created range");
  req.created_from_ms = 0;
  req.created_to_ms = 0; /* 0: no upper bound, like INT64_MAX */
  expect_listing(e, &req, want_all, "created_to_ms 0");
  req.created_to_ms = INT64_MAX;

  /* Views: index rows carry no payload or metadata; summary adds metadata; full the payload. */
  req.id = S("job-07");
  req.view = SLUICE_VIEW_INDEX;
  CHECK(sluice_list_jobs(&page, e, &req, &err) == SLUICE_OK && page->jobs_len == 1);
  if (page != NULL && page->jobs_len == 1) {
    const sluice_job *j = &page->jobs[0];
    CHECK(strcmp(j->id.ptr, "job-07") == 0 && strcmp(j->queue.ptr, "b") == 0);
    CHECK(j->status == SLUICE_JOB_WAITING && j->created_ms > 0);
    CHECK(j->payload.len == 0 && j->attempts_len == 0);
  }
  sluice_free(page);
  req.view = SLUICE_VIEW_SUMMARY;
  CHECK(sluice_list_jobs(&page, e, &req, &err) == SLUICE_OK && page->jobs_len == 1);
  if (page != NULL && page->jobs_len == 1) {
    const sluice_job *j = &page->jobs[0];
    CHECK(strcmp(j->tenant.ptr, LIST_TENANT) == 0 && j->payload.len == 0);
    CHECK(j->metadata_len == 1 && strcmp(j->metadata[0].value.ptr, "blue") == 0);
  }
  sluice_free(page);
  req.view = SLUICE_VIEW_FULL;
  CHECK(sluice_list_jobs(&page, e, &req, &err) == SLUICE_OK && page->jobs_len == 1);
  if (page != NULL && page->jobs_len == 1) {
    CHECK(page->jobs[0].payload.len == 3 && memcmp(page->jobs[0].payload.ptr, "p07", 3) == 0);
    CHECK(page->jobs[0].metadata_len == 1 && page->next_cursor.len == 0);
  }
  sluice_free(page);
  req.view = SLUICE_VIEW_SUMMARY;
  req.id = S("");

  /* Another tenant sees only its own job-00. */
  req.tenant = S("other");
  req.limit = 50;
  CHECK(sluice_list_jobs(&page, e, &req, &err) == SLUICE_OK);
  CHECK(page != NULL && page->jobs_len == 1 && page->next_cursor.len == 0 &&
        strcmp(page->jobs[0].tenant.ptr, "other") == 0);
  sluice_free(page);
  req.tenant = S(LIST_TENANT);

  /* A cursor only continues the listing it came from. */
  req.queue = S("a");
  req.limit = 2;
  CHECK(sluice_list_jobs(&page, e, &req, &err) == SLUICE_OK);
  CHECK(page != NULL && page->next_cursor.len > 0);
  if (page != NULL && page->next_cursor.len > 0) {
    sluice_job_list *other = NULL;
    req.cursor = page->next_cursor;
    req.newest_first = true;
    expect_error(sluice_list_jobs(&other, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
    CHECK(other == NULL);
    req.newest_first = false;
    req.queue = S("b");
    expect_error(sluice_list_jobs(&other, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
    req.queue = S("a");
    CHECK(sluice_list_jobs(&other, e, &req, &err) == SLUICE_OK); /* the right listing: fine */
    sluice_free(other);
  }
  sluice_free(page);
  req.cursor = S("not a cursor");
  page = (sluice_job_list *)&req; /* must be reset to NULL on failure */
  expect_error(sluice_list_jobs(&page, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  CHECK(page == NULL);
  req.cursor = S("");
  req.queue = S("");
}

static void test_list_jobs_invalid(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_list_request req = SLUICE_LIST_REQUEST_INIT;
  sluice_job_list *page = NULL;
  uint32_t bad_status = 6;
  req.tenant = S(LIST_TENANT);
  expect_error(sluice_list_jobs(NULL, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  expect_error(sluice_list_jobs(&page, NULL, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  expect_error(sluice_list_jobs(&page, e, NULL, &err), &err, SLUICE_INVALID_ARGUMENT);
  req.version = 99;
  expect_error(sluice_list_jobs(&page, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  req.version = SLUICE_LIST_REQUEST_VERSION;
  req.statuses = &bad_status;
  req.statuses_len = 1;
  expect_error(sluice_list_jobs(&page, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  req.statuses = NULL;
  req.statuses_len = 2;
  expect_error(sluice_list_jobs(&page, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  req.statuses_len = 0;
  req.metadata_len = 1;
  expect_error(sluice_list_jobs(&page, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  req.metadata_len = 0;
  req.view = 3;
  expect_error(sluice_list_jobs(&page, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  req.view = SLUICE_VIEW_SUMMARY;
  req.limit = 0;
  expect_error(sluice_list_jobs(&page, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  req.limit = 1000000;
  expect_error(sluice_list_jobs(&page, e, &req, &err), &err, SLUICE_INVALID_ARGUMENT);
  CHECK(page == NULL);
}

static const sluice_queue_count *find_queue(const sluice_queue_counts *c, const char *queue) {
  size_t i;
  for (i = 0; c != NULL && i < c->len; ++i) {
    if (strcmp(c->items[i].queue.ptr, queue) == 0) return &c->items[i];
  }
  return NULL;
}

static void test_count_jobs(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_queue_counts *c = NULL;
  const sluice_queue_count *a, *b;
  /* Queue a: 0 succeeded, 2 running, 26 28 scheduled, 4..24 even waiting. */
  CHECK(sluice_count_jobs(&c, e, S(LIST_TENANT), S("a"), &err) == SLUICE_OK);
  CHECK(c != NULL && c->len == 1);
  a = find_queue(c, "a");
  CHECK(a != NULL);
  if (a != NULL) {
    CHECK(a->counts[SLUICE_JOB_SCHEDULED] == 2 && a->counts[SLUICE_JOB_WAITING] == 11);
    CHECK(a->counts[SLUICE_JOB_RUNNING] == 1 && a->counts[SLUICE_JOB_SUCCEEDED] == 1);
    CHECK(a->counts[SLUICE_JOB_FAILED] == 0 && a->counts[SLUICE_JOB_CANCELLED] == 0);
  }
  sluice_free(c);
  /* Cancelling job-01 moves it from waiting to cancelled in queue b's counts. */
  CHECK(sluice_cancel(NULL, NULL, e, S(LIST_TENANT), S("job-01"), &err) == SLUICE_OK);
  CHECK(sluice_count_jobs(&c, e, S(LIST_TENANT), S(""), &err) == SLUICE_OK);
  CHECK(c != NULL && c->len == 2);
  a = find_queue(c, "a");
  b = find_queue(c, "b");
  CHECK(a != NULL && b != NULL);
  if (a != NULL && b != NULL) {
    CHECK(a->counts[SLUICE_JOB_WAITING] == 11 && a->counts[SLUICE_JOB_RUNNING] == 1);
    CHECK(b->counts[SLUICE_JOB_SCHEDULED] == 3 && b->counts[SLUICE_JOB_WAITING] == 11);
    CHECK(b->counts[SLUICE_JOB_CANCELLED] == 1 && b->counts[SLUICE_JOB_RUNNING] == 0);
  }
  sluice_free(c);
  CHECK(sluice_count_jobs(&c, e, S("other"), S(""), &err) == SLUICE_OK);
  CHECK(c != NULL && c->len == 1 && find_queue(c, "a") != NULL &&
        find_queue(c, "a")->counts[SLUICE_JOB_WAITING] == 1);
  sluice_free(c);
  CHECK(sluice_count_jobs(&c, e, S("nobody"), S(""), &err) == SLUICE_OK);
  CHECK(c != NULL && c->len == 0);
  sluice_free(c);
  expect_error(sluice_count_jobs(NULL, e, S(LIST_TENANT), S(""), &err), &err,
               SLUICE_INVALID_ARGUMENT);
  c = (sluice_queue_counts *)&err;
  expect_error(sluice_count_jobs(&c, NULL, S(LIST_TENANT), S(""), &err), &err,
               SLUICE_INVALID_ARGUMENT);
  CHECK(c == NULL);
  CHECK(sluice_verify_indexes(e, &err) == SLUICE_OK);
  expect_error(sluice_verify_indexes(NULL, &err), &err, SLUICE_INVALID_ARGUMENT);
}

/* ---- Queries ---- */

#define ENDLESS_SQL \
  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"

/* Runs `sql` for tenant "lst"; returns the status (the result in *out, the error freed). */
static sluice_status query(sluice_query_result **out, sluice_engine *e, const char *tenant,
                           const char *sql, const sluice_query_options *opts) {
  sluice_error *err = NULL;
  sluice_status st = sluice_query(out, e, S(tenant), S(sql), opts, &err);
  if (st != SLUICE_OK) {
    CHECK(err != NULL && sluice_error_status(err) == st);
    if (st != SLUICE_TIMEOUT && st != SLUICE_CANCELLED && st != SLUICE_INVALID_ARGUMENT &&
        st != SLUICE_TOO_LARGE) {
      fprintf(stderr, "query %s: %s\n", sql, sluice_error_message(err));
    }
  }
  sluice_error_free(err);
  return st;
}

static int64_t count_jobs_sql(sluice_engine *e, const char *tenant) {
  sluice_query_result *r = NULL;
  int64_t n = -1;
  if (query(&r, e, tenant, "SELECT count(*) FROM jobs", NULL) == SLUICE_OK &&
      sluice_query_result_row_count(r) == 1 &&
      sluice_query_result_type(r, 0, 0) == SLUICE_VALUE_INTEGER) {
    n = sluice_query_result_int64(r, 0, 0);
  }
  sluice_query_result_free(r);
  return n;
}

static void test_query_cells(sluice_engine *e) {
  sluice_query_result *r = NULL;
  sluice_str s;
  CHECK(query(&r, e, LIST_TENANT,
              "SELECT 42 AS i, 1.5 AS r, 'h\xc3\xa9llo' AS t, x'00ff01' AS b, NULL AS n, "
              "9007199254740993 AS big, -7 AS neg",
              NULL) == SLUICE_OK);
  CHECK(sluice_query_result_column_count(r) == 7 && sluice_query_result_row_count(r) == 1);
  if (sluice_query_result_column_count(r) == 7 && sluice_query_result_row_count(r) == 1) {
    CHECK(strcmp(sluice_query_result_column_name(r, 0).ptr, "i") == 0);
    CHECK(strcmp(sluice_query_result_column_name(r, 5).ptr, "big") == 0);
    CHECK(sluice_query_result_type(r, 0, 0) == SLUICE_VALUE_INTEGER);
    CHECK(sluice_query_result_int64(r, 0, 0) == 42);
    CHECK(sluice_query_result_double(r, 0, 0) == 42.0);
    CHECK(sluice_query_result_type(r, 0, 1) == SLUICE_VALUE_REAL);
    CHECK(sluice_query_result_double(r, 0, 1) == 1.5 && sluice_query_result_int64(r, 0, 1) == 0);
    CHECK(sluice_query_result_type(r, 0, 2) == SLUICE_VALUE_TEXT);
    s = sluice_query_result_bytes(r, 0, 2);
    CHECK(s.len == 6 && memcmp(s.ptr, "h\xc3\xa9llo", 6) == 0 && s.ptr[6] == '\0');
    CHECK(sluice_query_result_type(r, 0, 3) == SLUICE_VALUE_BLOB);
    s = sluice_query_result_bytes(r, 0, 3);
    CHECK(s.len == 3 && memcmp(s.ptr, "\0\xff\x01", 3) == 0);
    CHECK(sluice_query_result_type(r, 0, 4) == SLUICE_VALUE_NULL);
    CHECK(sluice_query_result_bytes(r, 0, 4).len == 0);
    CHECK(sluice_query_result_int64(r, 0, 5) == INT64_C(9007199254740993));
    CHECK(sluice_query_result_int64(r, 0, 6) == -7);
    /* Out of range reads as NULL / 0 / empty. */
    CHECK(sluice_query_result_type(r, 1, 0) == SLUICE_VALUE_NULL);
    CHECK(sluice_query_result_type(r, 0, 7) == SLUICE_VALUE_NULL);
    CHECK(sluice_query_result_int64(r, 9, 9) == 0);
    CHECK(sluice_query_result_column_name(r, 7).len == 0);
  }
  sluice_query_result_free(r);

  /* Many rows, in order. */
  r = NULL;
  CHECK(query(&r, e, LIST_TENANT,
              "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100) "
              "SELECT x, x * 0.5 FROM c",
              NULL) == SLUICE_OK);
  CHECK(sluice_query_result_row_count(r) == 100 && sluice_query_result_column_count(r) == 2);
  if (sluice_query_result_row_count(r) == 100) {
    CHECK(sluice_query_result_int64(r, 0, 0) == 1 && sluice_query_result_int64(r, 99, 0) == 100);
    CHECK(sluice_query_result_double(r, 99, 1) == 50.0);
  }
  sluice_query_result_free(r);
}

static void test_query_tables(sluice_engine *e) {
  sluice_query_result *r = NULL;
  /* The tenant is the caller's, never the SQL's. */
  CHECK(count_jobs_sql(e, LIST_TENANT) == LIST_JOBS);
  CHECK(count_jobs_sql(e, "other") == 1);
  CHECK(count_jobs_sql(e, "nobody") == 0);
  CHECK(query(&r, e, LIST_TENANT, "SELECT id FROM jobs WHERE queue = 'a' ORDER BY id", NULL) ==
        SLUICE_OK);
  CHECK(sluice_query_result_row_count(r) == LIST_JOBS / 2);
  if (sluice_query_result_row_count(r) == LIST_JOBS / 2) {
    CHECK(strcmp(sluice_query_result_bytes(r, 0, 0).ptr, "job-00") == 0);
    CHECK(strcmp(sluice_query_result_bytes(r, 14, 0).ptr, "job-28") == 0);
  }
  CHECK(sluice_query_result_keys_visited(r) > 0);
  sluice_query_result_free(r);
}

static void test_query_errors(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_query_result *r = NULL;
  sluice_query_options opts = SLUICE_QUERY_OPTIONS_INIT;
  const char *hundred =
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100) SELECT x FROM c";
  /* Writes and bad SQL change nothing. */
  CHECK(query(&r, e, LIST_TENANT, "DELETE FROM jobs", NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(r == NULL);
  CHECK(query(&r, e, LIST_TENANT, "SELEC 1", NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(query(&r, e, LIST_TENANT, "", NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(count_jobs_sql(e, LIST_TENANT) == LIST_JOBS);
  /* Bounds. */
  opts.max_rows = 10;
  CHECK(query(&r, e, LIST_TENANT, hundred, &opts) == SLUICE_TOO_LARGE);
  CHECK(r == NULL);
  opts.max_rows = 0;
  opts.max_result_bytes = 64;
  CHECK(query(&r, e, LIST_TENANT, hundred, &opts) == SLUICE_TOO_LARGE);
  opts.max_result_bytes = 0;
  /* Arguments. */
  expect_error(sluice_query(NULL, e, S(LIST_TENANT), S("SELECT 1"), NULL, &err), &err,
               SLUICE_INVALID_ARGUMENT);
  expect_error(sluice_query(&r, NULL, S(LIST_TENANT), S("SELECT 1"), NULL, &err), &err,
               SLUICE_INVALID_ARGUMENT);
  opts.version = 2;
  expect_error(sluice_query(&r, e, S(LIST_TENANT), S("SELECT 1"), &opts, &err), &err,
               SLUICE_INVALID_ARGUMENT);
  CHECK(r == NULL);
  sluice_query_result_free(NULL);
  CHECK(sluice_query_result_row_count(NULL) == 0 && sluice_query_result_column_count(NULL) == 0);
}

static void test_query_timeout(sluice_engine *e) {
  sluice_query_result *r = NULL;
  sluice_query_options opts = SLUICE_QUERY_OPTIONS_INIT;
  int64_t start = monotonic_ms(), took;
  opts.timeout_ms = 300;
  CHECK(query(&r, e, LIST_TENANT, ENDLESS_SQL, &opts) == SLUICE_TIMEOUT);
  took = monotonic_ms() - start;
  CHECK(r == NULL);
  CHECK(took >= 250 && took < 10000);
}

static void *cancel_later(void *token) {
  sleep_ms(200);
  sluice_cancel_token_cancel((sluice_cancel_token *)token);
  return NULL;
}

static void test_query_cancel(sluice_engine *e) {
  sluice_error *err = NULL;
  sluice_query_result *r = NULL;
  sluice_query_options opts = SLUICE_QUERY_OPTIONS_INIT;
  sluice_cancel_token *token = NULL;
  pthread_t thread;
  int64_t start, took;
  CHECK(sluice_cancel_token_create(&token, &err) == SLUICE_OK && token != NULL);
  CHECK(!sluice_cancel_token_is_cancelled(token));
  opts.timeout_ms = 60000;
  opts.cancel_token = token;
  /* An uncancelled token changes nothing. */
  CHECK(query(&r, e, LIST_TENANT, "SELECT 1", &opts) == SLUICE_OK);
  sluice_query_result_free(r);
  r = NULL;
  /* Cancelled from another thread while the query runs. */
  start = monotonic_ms();
  CHECK(pthread_create(&thread, NULL, cancel_later, token) == 0);
  CHECK(query(&r, e, LIST_TENANT, ENDLESS_SQL, &opts) == SLUICE_CANCELLED);
  took = monotonic_ms() - start;
  pthread_join(thread, NULL);
  CHECK(r == NULL);
  CHECK(took >= 150 && took < 10000);
  CHECK(sluice_cancel_token_is_cancelled(token));
  /* A cancelled token stays cancelled: the next call stops at once. */
  CHECK(query(&r, e, LIST_TENANT, "SELECT 1", &opts) == SLUICE_CANCELLED);
  sluice_cancel_token_cancel(token); /* idempotent */
  sluice_cancel_token_destroy(token);
  sluice_cancel_token_destroy(NULL);
  sluice_cancel_token_cancel(NULL);
  CHECK(!sluice_cancel_token_is_cancelled(NULL));
  expect_error(sluice_cancel_token_create(NULL, &err), &err, SLUICE_INVALID_ARGUMENT);
  CHECK(strcmp(sluice_status_name(SLUICE_CANCELLED), "cancelled") == 0);
  CHECK(strcmp(sluice_status_name(SLUICE_TIMEOUT), "timeout") == 0);
  CHECK(strcmp(sluice_status_name((sluice_status)15), "unknown") == 0);
}

int main(int argc, char **argv) {
  sluice_engine *e = NULL;
  sluice_error *err = NULL;
  sluice_engine_options opts = SLUICE_ENGINE_OPTIONS_INIT;
  sluice_stats *stats = NULL;
  if (argc != 2) {
    fprintf(stderr, "usage: %s <scratch dir>\n", argv[0]);
    return 2;
  }
  CHECK(strcmp(sluice_version(), "0.1.0") == 0);
  opts.durability = SLUICE_DURABILITY_ASYNC;
  opts.version = 42;
  expect_error(sluice_engine_open(&e, S(argv[1]), &opts, &err), &err, SLUICE_INVALID_ARGUMENT);
  err = NULL;
  opts.version = SLUICE_ENGINE_OPTIONS_VERSION;
  if (sluice_engine_open(&e, S(argv[1]), &opts, &err) != SLUICE_OK) {
    fprintf(stderr, "open: %s\n", sluice_error_message(err));
    return 1;
  }
  test_lifecycle(e);
  test_batch_and_scheduling(e);
  test_complete_batch(e);
  test_errors(e);
  test_limits(e);
  setup_list_jobs(e);
  test_list_jobs(e);
  test_list_jobs_invalid(e);
  test_count_jobs(e);
  test_query_cells(e);
  test_query_tables(e);
  test_query_errors(e);
  test_query_timeout(e);
  test_query_cancel(e);
  CHECK(sluice_engine_stats(&stats, e, &err) == SLUICE_OK);
  CHECK(stats != NULL && stats->enqueued >= 5);
  sluice_free(stats);
  CHECK(sluice_engine_close(e, &err) == SLUICE_OK);
  expect_error(sluice_engine_stats(&stats, e, &err), &err, SLUICE_CLOSED);
  /* After close, calls return SLUICE_CLOSED. */
  expect_error(sluice_restart(e, S(""), S("x"), &err), &err, SLUICE_CLOSED);
  sluice_engine_destroy(e);
  sluice_engine_destroy(NULL);
  sluice_free(NULL);
  sluice_error_free(NULL);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
