/* Compiled as C99 with -pedantic -Werror: the header must be plain, portable C. */
#include "sluice/sluice.h"

int sluice_header_c99_check(void);
int sluice_header_c99_check(void) {
  sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
  sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
  sluice_outcome outcome = SLUICE_OUTCOME_INIT;
  sluice_engine_options options = SLUICE_ENGINE_OPTIONS_INIT;
  return (int)(spec.version + req.version + outcome.version + options.version);
}
