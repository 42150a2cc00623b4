// SQL over the engine (see query.h). Placeholder until the virtual tables land.
#include "query.h"

namespace sluice::query {

Result<QueryResult> Run(Engine* /*engine*/, std::string_view /*tenant*/, std::string_view /*sql*/,
                        const QueryOptions& /*options*/) {
  return Status::FailedPrecondition("Query is not implemented yet");
}

}  // namespace sluice::query
