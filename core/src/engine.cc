// The public facade: every Engine method admits the call (CallGuard) and forwards to Impl.
#include "sluice/engine.h"

#include "engine_impl.h"
#include "validate.h"

namespace sluice {

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() {
  if (impl_) (void)impl_->Close();
}

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  Status s = validate::Options(options);
  if (!s.ok()) return s;
  auto impl = std::make_unique<Impl>(options);
  s = impl->OpenStore();
  if (!s.ok()) return s;
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

#define SLUICE_ADMIT()                     \
  Impl::CallGuard guard(impl_.get());      \
  if (!guard.status().ok()) return guard.status()

Result<EnqueueResult> Engine::Enqueue(const JobSpec& spec) {
  SLUICE_ADMIT();
  auto r = impl_->EnqueueMany(std::span<const JobSpec>(&spec, 1), /*batch=*/false);
  if (!r.ok()) return r.status();
  return std::move(r->front());
}

Result<std::vector<EnqueueResult>> Engine::EnqueueBatch(std::span<const JobSpec> specs) {
  SLUICE_ADMIT();
  return impl_->EnqueueMany(specs, /*batch=*/true);
}

Result<std::vector<Task>> Engine::Lease(const LeaseRequest& request) {
  SLUICE_ADMIT();
  return impl_->Lease(request);
}

Result<HeartbeatResult> Engine::Heartbeat(std::string_view tenant, std::string_view task_id,
                                          std::string_view worker_id, uint64_t lease_token) {
  SLUICE_ADMIT();
  return impl_->Heartbeat(tenant, task_id, worker_id, lease_token);
}

Status Engine::Complete(std::string_view tenant, std::string_view task_id, uint64_t lease_token,
                        const Outcome& outcome) {
  SLUICE_ADMIT();
  return impl_->Complete(tenant, task_id, lease_token, outcome);
}

Result<CancelResult> Engine::Cancel(std::string_view tenant, std::string_view id) {
  SLUICE_ADMIT();
  return impl_->Cancel(tenant, id);
}

Status Engine::Restart(std::string_view tenant, std::string_view id) {
  SLUICE_ADMIT();
  return impl_->Restart(tenant, id);
}

Status Engine::Expedite(std::string_view tenant, std::string_view id) {
  SLUICE_ADMIT();
  return impl_->Expedite(tenant, id);
}

Status Engine::Delete(std::string_view tenant, std::string_view id) {
  SLUICE_ADMIT();
  return impl_->Delete(tenant, id);
}

Result<Job> Engine::GetJob(std::string_view tenant, std::string_view id, bool include_attempts) {
  SLUICE_ADMIT();
  return impl_->GetJob(tenant, id, include_attempts);
}

Result<JobResult> Engine::GetResult(std::string_view tenant, std::string_view id) {
  SLUICE_ADMIT();
  return impl_->GetResult(tenant, id);
}

Result<size_t> Engine::ReapExpired() {
  SLUICE_ADMIT();
  return impl_->ReapExpired();
}

EngineStats Engine::Stats() const { return impl_->Stats(); }

Status Engine::Close() { return impl_->Close(); }

#undef SLUICE_ADMIT

}  // namespace sluice
