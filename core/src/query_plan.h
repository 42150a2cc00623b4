// Pushdown: how a WHERE clause, ORDER BY and LIMIT on the job-backed tables (jobs,
// job_metadata) become a ListJobsRequest. PlanJobScan runs in xBestIndex and encodes the plan
// in idxNum/idxStr (one character per xFilter argument); DecodeJobScan runs in xFilter and turns
// the argument values into a filter. docs/query.md lists what is pushed down.
#ifndef SLUICE_CORE_SRC_QUERY_PLAN_H_
#define SLUICE_CORE_SRC_QUERY_PLAN_H_

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/options.h"
#include "sluice/status.h"
#include "sluice/types.h"

namespace sluice::query {

// Which column of a job-backed table plays which role in pushdown (-1: the table has none).
struct JobColumns {
  int id = -1;       // = -> JobFilter.id; LIKE/GLOB prefix -> id_prefix
  int queue = -1;    // = -> JobFilter.queue
  int status = -1;   // = and IN -> JobFilter.statuses
  int created = -1;  // ranges -> created_from/to_ms; ORDER BY -> newest_first
  int key = -1;      // job_metadata: with value, -> JobFilter.metadata
  int value = -1;
  int payload = -1;            // reading it needs JobView::kFull
  uint64_t index_columns = 0;  // columns JobView::kIndex fills (bit per column)
  // Rows are metadata pairs (job_metadata): they need the job record, unless the plan fixes
  // both key and value (then every listed job has exactly that one matching pair).
  bool pair_rows = false;
};

// xBestIndex of a job-backed table: consumes the constraints it can push down, the ORDER BY
// when the listing order satisfies it, LIMIT when nothing else is left for SQLite to check,
// and picks the cheapest JobView that has every column the statement reads.
int PlanJobScan(const JobColumns& columns, sqlite3_index_info* info);

// A decoded plan with its argument values.
struct JobScan {
  ListJobsRequest request;           // filter (tenant still unset), order, view
  bool empty = false;                // the constraints contradict: no row can match
  int64_t max_rows = -1;             // rows SQLite will take at most (LIMIT + OFFSET); -1 = all
  std::optional<std::string> key;    // job_metadata: only pairs with this key
  std::optional<std::string> value;  // job_metadata: only pairs with this value
};

// Decodes xFilter's arguments of a plan made by PlanJobScan. Values that no job can have (an
// empty or oversized id, queue or key, an unknown status) make the scan empty rather than an
// error, as SQL comparisons would.
Status DecodeJobScan(int idx_num, const char* idx_str, int argc, sqlite3_value** argv,
                     const SizeLimits& limits, JobScan* out);

// The literal prefix every match of a LIKE (`like`) or GLOB pattern starts with, safe to use as
// a case-sensitive id_prefix. *exact says whether "id starts with the prefix" is the whole test
// (the pattern is "<prefix>%" or "<prefix>*"), so SQLite need not check it again.
std::string PatternPrefix(std::string_view pattern, bool like, bool* exact);

// xBestIndex for the small tables: consumes usable `column = value` constraints (binary
// collation) on the given columns and encodes them as one character each in idxStr, in the
// order of aConstraint. `codes[i]` is the character of column i (0: not pushed down).
// `base_rows` is the table's size estimate; each pushed column divides it by 100.
int PlanEqualities(const char* codes, int ncodes, double base_rows, sqlite3_index_info* info);

}  // namespace sluice::query

#endif  // SLUICE_CORE_SRC_QUERY_PLAN_H_
