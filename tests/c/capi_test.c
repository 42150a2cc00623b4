/* The C ABI from plain C99: the whole lifecycle and the error paths, against a real store.
 * Usage: sluice_capi_test <scratch dir>. Prints "N passed, N failed". */
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
