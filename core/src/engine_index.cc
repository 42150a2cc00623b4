// Job indexes (status, queue, metadata, creation time), ListJobs and CountJobs.
#include "engine_impl.h"

namespace sluice {

Result<ListJobsResult> Engine::Impl::ListJobs(const ListJobsRequest& /*request*/) {
  return Status::FailedPrecondition("ListJobs is not implemented yet");
}

Result<std::vector<QueueCounts>> Engine::Impl::CountJobs(std::string_view /*tenant*/,
                                                         std::string_view /*queue*/) {
  return Status::FailedPrecondition("CountJobs is not implemented yet");
}

Status Engine::Impl::VerifyIndexes() { return Status::Ok(); }

}  // namespace sluice
