/* Compiled as C99 with -pedantic -Werror: the header must be plain, portable C. */
#include "sluice/sluice.h"

int sluice_header_c99_check(void);
int sluice_header_c99_check(void) {
  sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
  sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
  sluice_outcome outcome = SLUICE_OUTCOME_INIT;
  sluice_engine_options options = SLUICE_ENGINE_OPTIONS_INIT;
  sluice_list_request list = SLUICE_LIST_REQUEST_INIT;
  sluice_query_options query = SLUICE_QUERY_OPTIONS_INIT;
  sluice_value_type type = SLUICE_VALUE_BLOB;
  sluice_status cancelled = SLUICE_CANCELLED;
  sluice_queue_count count = {{NULL, 0}, {0, 0, 0, 0, 0, 0}};
  return (int)(spec.version + req.version + outcome.version + options.version + list.version +
               query.version + (uint32_t)type + (uint32_t)cancelled + list.limit +
               (uint32_t)count.counts[SLUICE_JOB_CANCELLED] + (list.created_to_ms == INT64_MAX));
}
