// The public facade: every Engine method admits the call (CallGuard) and forwards to Impl.
#include "sluice/engine.h"

#include "engine_impl.h"
#include "query.h"
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

#define SLUICE_ADMIT()                \
  Impl::CallGuard guard(impl_.get()); \
  if (!guard.status().ok()) return guard.status()

namespace {

// Runs the grant passes a call left (releases, raises), after its stripe locks are gone.
template <typename R>
R WithGrants(Engine::Impl* impl, R result, size_t budget) {
  impl->RunGrants(budget);
  return result;
}

}  // namespace

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
  return WithGrants(impl_.get(), impl_->Complete(tenant, task_id, lease_token, outcome),
                    impl_->GrantBudget());
}

Result<LeaseResponse> Engine::LeaseTasks(const LeaseRequest& request) {
  SLUICE_ADMIT();
  return impl_->LeaseTasks(request, /*with_refreshes=*/true);
}

Result<LeaseResponse> Engine::ReportAndLease(std::span<const Completion> reports,
                                             const LeaseRequest& request,
                                             std::vector<Status>* report_statuses) {
  SLUICE_ADMIT();
  report_statuses->clear();
  if (!reports.empty()) {
    Status s = validate::LeaseRequest(request, impl_->options());
    if (!s.ok()) return s;
    auto r = WithGrants(impl_.get(), impl_->CompleteBatch(reports), impl_->GrantBudget());
    if (!r.ok()) return r.status();
    *report_statuses = std::move(*r);
  }
  return impl_->LeaseTasks(request, /*with_refreshes=*/true);
}

Result<int64_t> Engine::HeartbeatRefresh(std::string_view tenant, std::string_view key,
                                         uint64_t lease_token) {
  SLUICE_ADMIT();
  return impl_->HeartbeatRefresh(tenant, key, lease_token);
}

Status Engine::CompleteRefresh(std::string_view tenant, std::string_view key, uint64_t lease_token,
                               const RefreshOutcome& outcome) {
  SLUICE_ADMIT();
  return WithGrants(impl_.get(), impl_->CompleteRefresh(tenant, key, lease_token, outcome),
                    impl_->GrantBudget());
}

Result<FloatingLimitState> Engine::GetFloatingLimit(std::string_view tenant, std::string_view key) {
  SLUICE_ADMIT();
  return impl_->GetFloatingLimit(tenant, key);
}

Result<std::vector<FloatingLimitState>> Engine::ListFloatingLimits(std::string_view tenant,
                                                                   std::string_view after_key,
                                                                   uint32_t limit) {
  SLUICE_ADMIT();
  return impl_->ListFloatingLimits(tenant, after_key, limit);
}

Status Engine::SetFloatingLimit(std::string_view tenant, std::string_view key, uint32_t max) {
  SLUICE_ADMIT();
  return WithGrants(impl_.get(), impl_->SetFloatingLimit(tenant, key, max), impl_->GrantBudget());
}

Result<ConcurrencyKeyInfo> Engine::GetConcurrencyKey(std::string_view tenant,
                                                     ConcurrencyLimit::Kind kind,
                                                     std::string_view key) {
  SLUICE_ADMIT();
  return impl_->GetConcurrencyKey(tenant, kind, key);
}

std::vector<ConcurrencyKeyInfo> Engine::ListConcurrencyKeys(uint32_t limit) const {
  return impl_->ListConcurrencyKeys(limit, nullptr);
}

std::vector<ConcurrencyKeyInfo> Engine::ListConcurrencyKeys(std::string_view tenant,
                                                            uint32_t limit) const {
  return impl_->ListConcurrencyKeys(limit, &tenant);
}

std::vector<QueueDepth> Engine::QueueDepths(uint32_t limit, size_t* total_queues) const {
  return impl_->QueueDepths(limit, total_queues);
}

Result<std::vector<Status>> Engine::CompleteBatch(std::span<const Completion> reports) {
  SLUICE_ADMIT();
  return WithGrants(impl_.get(), impl_->CompleteBatch(reports), impl_->GrantBudget());
}

Result<CancelResult> Engine::Cancel(std::string_view tenant, std::string_view id) {
  SLUICE_ADMIT();
  return WithGrants(impl_.get(), impl_->Cancel(tenant, id), impl_->GrantBudget());
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
  return WithGrants(impl_.get(), impl_->Delete(tenant, id), impl_->GrantBudget());
}

Result<Job> Engine::GetJob(std::string_view tenant, std::string_view id, bool include_attempts) {
  SLUICE_ADMIT();
  return impl_->GetJob(tenant, id, include_attempts);
}

Result<JobResult> Engine::GetResult(std::string_view tenant, std::string_view id,
                                    uint32_t wait_ms) {
  SLUICE_ADMIT();
  if (wait_ms > 0) return impl_->WaitResult(tenant, id, wait_ms);
  return impl_->GetResult(tenant, id);
}

Result<ListJobsResult> Engine::ListJobs(const ListJobsRequest& request) {
  SLUICE_ADMIT();
  return impl_->ListJobs(request);
}

Result<std::vector<QueueCounts>> Engine::CountJobs(std::string_view tenant,
                                                   std::string_view queue) {
  SLUICE_ADMIT();
  return impl_->CountJobs(tenant, queue);
}

Result<QueryResult> Engine::Query(std::string_view tenant, std::string_view sql,
                                  const QueryOptions& options) {
  SLUICE_ADMIT();
  return query::Run(this, impl_->options().limits, tenant, sql, options);
}

Status Engine::VerifyIndexes() {
  SLUICE_ADMIT();
  return impl_->VerifyIndexes();
}

Result<size_t> Engine::ReapExpired() {
  SLUICE_ADMIT();
  return impl_->ReapExpired();
}

EngineStats Engine::Stats() const { return impl_->Stats(); }

Status Engine::Close() { return impl_->Close(); }

#undef SLUICE_ADMIT

}  // namespace sluice
