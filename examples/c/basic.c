/* A complete Sluice program in C: open a store, enqueue a job, lease it, report success.
 *
 *   cc basic.c $(pkg-config --cflags --libs sluice) -o basic && ./basic /tmp/sluice-demo
 */
#include <stdio.h>
#include <string.h>

#include "sluice/sluice.h"

static sluice_str str(const char *s) {
  sluice_str r;
  r.ptr = s;
  r.len = strlen(s);
  return r;
}

static int die(sluice_error *err) {
  fprintf(stderr, "sluice: %s: %s\n", sluice_status_name(sluice_error_status(err)),
          sluice_error_message(err));
  sluice_error_free(err);
  return 1;
}

int main(int argc, char **argv) {
  sluice_engine *engine = NULL;
  sluice_error *err = NULL;
  sluice_job_spec job = SLUICE_JOB_SPEC_INIT;
  sluice_enqueue_result *enqueued = NULL;
  sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
  sluice_lease_response *leased = NULL;
  sluice_outcome done = SLUICE_OUTCOME_INIT;
  size_t i;

  if (sluice_engine_open(&engine, str(argc > 1 ? argv[1] : "sluice-data"), NULL, &err)) {
    return die(err);
  }
  job.queue = str("email");
  job.payload = (const uint8_t *)"{\"to\":\"ada@example.com\"}";
  job.payload_len = strlen((const char *)job.payload);
  if (sluice_enqueue(&enqueued, engine, &job, &err)) return die(err);
  printf("enqueued %s\n", enqueued->id.ptr);
  sluice_free(enqueued);

  req.queue = str("email");
  req.worker_id = str("example-worker");
  req.max_tasks = 16;
  req.wait_ms = 1000;
  if (sluice_lease(&leased, engine, &req, &err)) return die(err);
  for (i = 0; i < leased->tasks_len; ++i) {
    const sluice_task *t = &leased->tasks[i];
    printf("working on %s: %.*s\n", t->task_id.ptr, (int)t->payload.len, t->payload.ptr);
    done.result = (const uint8_t *)"sent";
    done.result_len = 4;
    if (sluice_complete(engine, t->tenant, t->task_id, t->lease_token, &done, &err)) {
      sluice_free(leased);
      return die(err);
    }
  }
  sluice_free(leased);
  sluice_engine_destroy(engine);
  return 0;
}
