// SQL over the engine: SQLite virtual tables backed by the engine's public read API
// (ListJobs, GetJob, CountJobs, ListFloatingLimits, ListConcurrencyKeys). docs/query.md.
#ifndef SLUICE_CORE_SRC_QUERY_H_
#define SLUICE_CORE_SRC_QUERY_H_

#include <string_view>

#include "sluice/engine.h"
#include "sluice/options.h"

namespace sluice::query {

// Runs one read-only statement for `tenant` (see Engine::Query) through `engine`'s public read
// API. `limits` are the engine's size limits (tenant and SQL size, list page size). Thread
// rule: any thread; each call has its own SQLite connection.
Result<QueryResult> Run(Engine* engine, const SizeLimits& limits, std::string_view tenant,
                        std::string_view sql, const QueryOptions& options);

}  // namespace sluice::query

#endif  // SLUICE_CORE_SRC_QUERY_H_
