// The sluice.v1.Sluice gRPC service over one Engine.
//
// Every handler starts in Run(): it fetches the call's verified Principal (set by the auth
// interceptor) and refuses to run without one, resolves the tenant (a bound token's tenant,
// never the request's), calls the engine, and maps its Status (errors.h). Long waits
// (LeaseTasks, GetJobResult) wait in slices so they end early when the server drains or the
// caller goes away; a Query polls whether its caller went away and stops (LESSONS.md: queries
// have a deadline, a result cap and stop when the caller goes away).
#ifndef SLUICE_SERVER_SRC_SERVICE_H_
#define SLUICE_SERVER_SRC_SERVICE_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <string>

#include "auth.h"
#include "blocking_pool.h"
#include "metrics.h"
#include "sluice/engine.h"
#include "sluice/v1/sluice.grpc.pb.h"

namespace sluice::server {

// What GetNodeInfo reports besides the engine's limits.
struct NodeFacts {
  std::string version;
  std::string node_id;
  std::string durability;
  int64_t started_ms = 0;
  uint32_t max_message_bytes = 0;
  SizeLimits limits;
  uint32_t max_lease_batch = 0;
  uint32_t max_wait_ms = 0;
  uint64_t default_lease_ms = 0;
  // Query bounds: a request may ask for less, never for more.
  uint32_t query_timeout_ms = 0;
  uint32_t query_max_rows = 0;
  uint64_t query_max_result_bytes = 0;
};

// The hot RPCs use the callback API, the others the synchronous one.
using ServiceBase =
    v1::Sluice::WithCallbackMethod_Enqueue<v1::Sluice::WithCallbackMethod_EnqueueBatch<
        v1::Sluice::WithCallbackMethod_LeaseTasks<v1::Sluice::WithCallbackMethod_LeaseStream<
            v1::Sluice::WithCallbackMethod_Heartbeat<v1::Sluice::WithCallbackMethod_ReportOutcome<
                v1::Sluice::WithCallbackMethod_ReportOutcomes<v1::Sluice::Service>>>>>>>;

class LeaseStreamReactor;

class SluiceService final : public ServiceBase {
 public:
  // on_storage_error runs once per storage failure (the server then stops: ENVIRONMENT.md).
  // metrics (not owned, may be null) counts queries by outcome.
  // blocking_threads bounds each of the two pools that run the blocking parts of callback
  // handlers (writes waiting for fsync; long-poll waits).
  SluiceService(Engine* engine, const CallPrincipals* principals, NodeFacts facts,
                std::function<void(const Status&)> on_storage_error, Metrics* metrics = nullptr,
                size_t blocking_threads = 1024);

  // Draining: long-polls and result waits end at their next slice (within ~100 ms), and lease
  // streams end (UNAVAILABLE) once the answers to the requests they took are written.
  void StartDraining();
  bool draining() const { return draining_.load(); }

  // Callback API (decisions §69): the hot RPCs run on gRPC's callback threads without a
  // thread hand-off; whatever may block (fsync waits in sync durability, long-poll waits)
  // runs on the blocking pool.
  grpc::ServerUnaryReactor* Enqueue(grpc::CallbackServerContext* ctx, const v1::EnqueueRequest* req,
                                    v1::EnqueueResponse* resp) override;
  grpc::ServerUnaryReactor* EnqueueBatch(grpc::CallbackServerContext* ctx,
                                         const v1::EnqueueBatchRequest* req,
                                         v1::EnqueueBatchResponse* resp) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override;
  grpc::ServerUnaryReactor* ReportOutcome(grpc::CallbackServerContext* ctx,
                                          const v1::ReportOutcomeRequest* req,
                                          v1::ReportOutcomeResponse* resp) override;
  grpc::ServerUnaryReactor* ReportOutcomes(grpc::CallbackServerContext* ctx,
                                           const v1::ReportOutcomesRequest* req,
                                           v1::ReportOutcomesResponse* resp) override;
  grpc::ServerUnaryReactor* LeaseTasks(grpc::CallbackServerContext* ctx,
                                       const v1::LeaseTasksRequest* req,
                                       v1::LeaseTasksResponse* resp) override;
  // LeaseTasks requests over one stream, answered in order (decisions §70).
  grpc::ServerBidiReactor<v1::LeaseTasksRequest, v1::LeaseTasksResponse>* LeaseStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::Status HeartbeatRefresh(grpc::ServerContext* ctx, const v1::HeartbeatRefreshRequest* req,
                                v1::HeartbeatRefreshResponse* resp) override;
  grpc::Status ReportRefreshOutcome(grpc::ServerContext* ctx,
                                    const v1::ReportRefreshOutcomeRequest* req,
                                    v1::ReportRefreshOutcomeResponse* resp) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
                      v1::GetJobResponse* resp) override;
  grpc::Status GetJobResult(grpc::ServerContext* ctx, const v1::GetJobResultRequest* req,
                            v1::GetJobResultResponse* resp) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                         v1::CancelJobResponse* resp) override;
  grpc::Status RestartJob(grpc::ServerContext* ctx, const v1::RestartJobRequest* req,
                          v1::RestartJobResponse* resp) override;
  grpc::Status ExpediteJob(grpc::ServerContext* ctx, const v1::ExpediteJobRequest* req,
                           v1::ExpediteJobResponse* resp) override;
  grpc::Status DeleteJob(grpc::ServerContext* ctx, const v1::DeleteJobRequest* req,
                         v1::DeleteJobResponse* resp) override;
  grpc::Status GetFloatingLimit(grpc::ServerContext* ctx, const v1::GetFloatingLimitRequest* req,
                                v1::GetFloatingLimitResponse* resp) override;
  grpc::Status ListFloatingLimits(grpc::ServerContext* ctx,
                                  const v1::ListFloatingLimitsRequest* req,
                                  v1::ListFloatingLimitsResponse* resp) override;
  grpc::Status SetFloatingLimit(grpc::ServerContext* ctx, const v1::SetFloatingLimitRequest* req,
                                v1::SetFloatingLimitResponse* resp) override;
  grpc::Status GetConcurrencyKey(grpc::ServerContext* ctx, const v1::GetConcurrencyKeyRequest* req,
                                 v1::GetConcurrencyKeyResponse* resp) override;
  grpc::Status ListConcurrencyKeys(grpc::ServerContext* ctx,
                                   const v1::ListConcurrencyKeysRequest* req,
                                   v1::ListConcurrencyKeysResponse* resp) override;
  grpc::Status GetNodeInfo(grpc::ServerContext* ctx, const v1::GetNodeInfoRequest* req,
                           v1::GetNodeInfoResponse* resp) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                        v1::ListJobsResponse* resp) override;
  grpc::Status CountJobs(grpc::ServerContext* ctx, const v1::CountJobsRequest* req,
                         v1::CountJobsResponse* resp) override;
  grpc::Status Query(grpc::ServerContext* ctx, const v1::QueryRequest* req,
                     v1::QueryResponse* resp) override;

 private:
  friend class LeaseStreamReactor;
  // Authenticates, resolves the tenant and runs fn(tenant, principal) -> Status.
  template <typename Fn>
  grpc::Status Run(grpc::ServerContextBase* ctx, const std::string& requested_tenant, Fn&& fn);
  // The hot RPCs' bodies (run by the callback handlers above).
  grpc::Status DoEnqueue(grpc::ServerContextBase* ctx, const v1::EnqueueRequest* req,
                         v1::EnqueueResponse* resp);
  grpc::Status DoEnqueueBatch(grpc::ServerContextBase* ctx, const v1::EnqueueBatchRequest* req,
                              v1::EnqueueBatchResponse* resp);
  grpc::Status DoHeartbeat(grpc::ServerContextBase* ctx, const v1::HeartbeatRequest* req,
                           v1::HeartbeatResponse* resp);
  grpc::Status DoReportOutcome(grpc::ServerContextBase* ctx, const v1::ReportOutcomeRequest* req,
                               v1::ReportOutcomeResponse* resp);
  grpc::Status DoReportOutcomes(grpc::ServerContextBase* ctx, const v1::ReportOutcomesRequest* req,
                                v1::ReportOutcomesResponse* resp);
  // Runs run() (which finishes the call) on pool; finishes the call UNAVAILABLE when the pool
  // cannot start a thread (clients retry it), INTERNAL when run() throws.
  void Offload(BlockingPool* pool, grpc::ServerUnaryReactor* reactor, std::function<void()> run);
  // Runs body() -> grpc::Status and finishes the call: inline, or on the write pool when
  // writes wait for the disk or the call is too much work for a callback thread (long).
  template <typename Fn>
  grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* ctx, Fn&& body,
                                    bool long_work = false);
  bool WritesWaitForDisk() const;
  // Which part of a LeaseTasks call LeaseTasksSlices runs: the reports and one non-waiting
  // lease (setting *wait_more when the call should go on waiting), or the wait. The wait also
  // ends at a slice boundary once *cut (if given) is true.
  enum class LeasePhase { kFirst, kRest };
  grpc::Status LeaseTasksSlices(grpc::ServerContextBase* ctx, const v1::LeaseTasksRequest* req,
                                v1::LeaseTasksResponse* resp,
                                std::chrono::steady_clock::time_point deadline, LeasePhase phase,
                                bool* wait_more, const std::atomic<bool>* cut = nullptr);
  // Lease streams alive now (StartDraining ends them).
  void AddStream(LeaseStreamReactor* s);
  void RemoveStream(LeaseStreamReactor* s);
  // Whether a slice-waiting call should stop now.
  bool StopWaiting(grpc::ServerContextBase* ctx) const;
  // The bounds of one Query: the request's asks capped by the server's, and the time budget
  // also by what is left of the call's deadline (0 ms when it has passed).
  QueryOptions QueryBounds(const grpc::ServerContext& ctx, const v1::QueryRequest& req) const;

  Engine* engine_;
  const CallPrincipals* principals_;
  NodeFacts facts_;
  std::function<void(const Status&)> on_storage_error_;
  Metrics* metrics_;
  std::atomic<bool> draining_{false};
  std::mutex streams_mu_;
  std::set<LeaseStreamReactor*> streams_;
  // Last: destroyed (their threads joined) before anything their tasks use. Writes that wait
  // for fsync and long-poll waits have a pool each, so that waiting workers never hold up a
  // write.
  BlockingPool writes_;
  BlockingPool waits_;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_SERVICE_H_
