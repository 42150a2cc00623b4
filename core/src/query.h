// SQL over the engine: SQLite virtual tables backed by the engine's public read API
// (ListJobs, GetJob, CountJobs, ListFloatingLimits, ListConcurrencyKeys). docs/query.md.
#ifndef SLUICE_CORE_SRC_QUERY_H_
#define SLUICE_CORE_SRC_QUERY_H_

#include <string_view>

#include "sluice/engine.h"

namespace sluice::query {

// Runs one read-only statement for `tenant` (see Engine::Query).
Result<QueryResult> Run(Engine* engine, std::string_view tenant, std::string_view sql,
                        const QueryOptions& options);

}  // namespace sluice::query

#endif  // SLUICE_CORE_SRC_QUERY_H_
