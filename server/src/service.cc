#include "service.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <system_error>

#include "convert.h"
#include "errors.h"
#include "log.h"

namespace sluice::server {
namespace {

// Long waits run in slices of this length so drains and departed callers end them quickly.
constexpr uint32_t kWaitSliceMs = 100;
// An EnqueueBatch of more jobs than this runs on the write pool, not on a callback thread
// (about 5 µs of engine work per job: a batch of 100 would hold the thread for 0.5 ms).
constexpr int kInlineBatchJobs = 16;
// How early a caller's deadline may cancel a call before the server's copy of that deadline
// (the one-way delay of the request, longer on a loaded machine).
constexpr auto kDeadlineSkew = std::chrono::milliseconds(250);
// Default and most entries of a list call.
constexpr uint32_t kDefaultListLimit = 100;
constexpr uint32_t kMaxListLimit = 1000;

uint32_t ListLimit(uint32_t requested) {
  return requested == 0 ? kDefaultListLimit : std::min(requested, kMaxListLimit);
}

ConcurrencyLimit::Kind KindFromProto(v1::ConcurrencyLimit::Kind k) {
  return k == v1::ConcurrencyLimit::FLOATING ? ConcurrencyLimit::Kind::kFloating
                                             : ConcurrencyLimit::Kind::kFixed;
}

// Page size of ListJobs: 0 is the engine's default; capped at max_list_page, and for pages with
// payloads also at how many maximal payloads fit in one maximal message (a page of 1,000 1 MiB
// payloads would be a 1 GB response).
constexpr uint32_t kDefaultJobPage = 50;

uint32_t JobPageLimit(uint32_t requested, JobView view, const NodeFacts& f) {
  uint64_t n = requested == 0 ? kDefaultJobPage : requested;
  n = std::min<uint64_t>(n, f.limits.max_list_page);
  if (view == JobView::kFull) {
    n = std::min<uint64_t>(n,
                           f.max_message_bytes / std::max<uint64_t>(1, f.limits.max_payload_bytes));
  }
  return static_cast<uint32_t>(std::max<uint64_t>(n, 1));
}

QueryOutcome OutcomeOf(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk:
      return QueryOutcome::kOk;
    case StatusCode::kTimeout:
      return QueryOutcome::kTimeout;
    case StatusCode::kCancelled:
      return QueryOutcome::kCancelled;
    case StatusCode::kTooLarge:
      return QueryOutcome::kTooLarge;
    case StatusCode::kInvalidArgument:
      return QueryOutcome::kInvalid;
    default:
      return QueryOutcome::kError;
  }
}

}  // namespace

SluiceService::SluiceService(Engine* engine, const CallPrincipals* principals, NodeFacts facts,
                             std::function<void(const Status&)> on_storage_error, Metrics* metrics,
                             size_t blocking_threads)
    : engine_(engine),
      principals_(principals),
      facts_(std::move(facts)),
      on_storage_error_(std::move(on_storage_error)),
      metrics_(metrics),
      writes_(blocking_threads),
      waits_(blocking_threads) {}

template <typename Fn>
grpc::Status SluiceService::Run(grpc::ServerContextBase* ctx, const std::string& requested_tenant,
                                Fn&& fn) {
  const std::optional<Principal> p = principals_->Get(ctx);
  if (!p) {
    return ServerError(ctx, grpc::StatusCode::UNAUTHENTICATED, "unauthenticated",
                       "the call carries no valid token");
  }
  std::string tenant = requested_tenant;
  if (p->bound) {
    if (!requested_tenant.empty() && requested_tenant != p->tenant) {
      return ServerError(ctx, grpc::StatusCode::PERMISSION_DENIED, "permission_denied",
                         "the token is bound to another tenant than the request names");
    }
    tenant = p->tenant;
  }
  const Status s = fn(static_cast<const std::string&>(tenant), *p);
  if (s.code() == StatusCode::kIoError) {
    Log(LogLevel::kError, "storage error: stopping", {{"error", s.message()}});
    on_storage_error_(s);
  }
  return ToGrpc(s, ctx);
}

bool SluiceService::StopWaiting(grpc::ServerContextBase* ctx) const {
  return draining_.load() || ctx->IsCancelled();
}

grpc::Status SluiceService::DoEnqueue(grpc::ServerContextBase* ctx, const v1::EnqueueRequest* req,
                                      v1::EnqueueResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->Enqueue(FromProto(req->job(), tenant));
    if (!r.ok()) return r.status();
    ToProto(*r, resp);
    return Status::Ok();
  });
}

grpc::Status SluiceService::DoEnqueueBatch(grpc::ServerContextBase* ctx,
                                           const v1::EnqueueBatchRequest* req,
                                           v1::EnqueueBatchResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    if (req->jobs_size() == 0) return Status::InvalidArgument("jobs: at least one job is required");
    std::vector<JobSpec> specs;
    specs.reserve(static_cast<size_t>(req->jobs_size()));
    for (const v1::JobSpec& j : req->jobs()) specs.push_back(FromProto(j, tenant));
    auto r = engine_->EnqueueBatch(specs);
    if (!r.ok()) return r.status();
    for (const EnqueueResult& e : *r) ToProto(e, resp->add_results());
    return Status::Ok();
  });
}

namespace {

// Wire reports -> engine completions for `tenant`; a report without an outcome gets its
// invalid_argument status in *statuses at once and is left out of *batch (index maps back).
void BuildCompletions(const google::protobuf::RepeatedPtrField<v1::ReportOutcomeRequest>& reports,
                      const std::string& tenant, std::vector<Completion>* batch,
                      std::vector<size_t>* index, std::vector<Status>* statuses) {
  statuses->assign(static_cast<size_t>(reports.size()), Status::Ok());
  batch->reserve(static_cast<size_t>(reports.size()));
  for (int i = 0; i < reports.size(); ++i) {
    const v1::ReportOutcomeRequest& r = reports.Get(i);
    Completion c;
    if (!FromProto(r.outcome(), &c.outcome)) {
      (*statuses)[static_cast<size_t>(i)] =
          Status::InvalidArgument("reports[" + std::to_string(i) +
                                  "].outcome: one of success, failure or cancelled is required");
      continue;
    }
    c.tenant = tenant;  // the reports' own tenant fields are ignored
    c.task_id = r.task_id();
    c.lease_token = r.lease_token();
    batch->push_back(std::move(c));
    index->push_back(static_cast<size_t>(i));
  }
}

void AddStatuses(const std::vector<Status>& statuses,
                 google::protobuf::RepeatedPtrField<v1::ReportStatus>* out) {
  for (const Status& s : statuses) {
    v1::ReportStatus* st = out->Add();
    st->set_code(static_cast<int32_t>(GrpcCode(s.code())));
    st->set_sluice_code(std::string(StatusCodeName(s.code())));
    st->set_message(s.message());
  }
}

}  // namespace

void SluiceService::Offload(BlockingPool* pool, grpc::ServerUnaryReactor* reactor,
                            std::function<void()> run) {
  try {
    pool->Submit([reactor, run = std::move(run)] {
      try {
        run();  // finishes the call as its last step
      } catch (const std::exception& e) {
        Log(LogLevel::kError, "handler failed", {{"error", e.what()}});
        reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "internal error"));
      }
    });
  } catch (const std::system_error& e) {
    // No thread could be started. UNAVAILABLE, which clients retry with backoff: not
    // RESOURCE_EXHAUSTED, which says the request itself is too large (docs/errors.md).
    Log(LogLevel::kWarn, "no thread for a blocking call", {{"error", e.what()}});
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "the server has no thread free for this call; retry"));
  }
}

template <typename Fn>
grpc::ServerUnaryReactor* SluiceService::Respond(grpc::CallbackServerContext* ctx, Fn&& body,
                                                 bool long_work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (WritesWaitForDisk() || long_work) {
    Offload(&writes_, reactor,
            [reactor, body = std::forward<Fn>(body)]() mutable { reactor->Finish(body()); });
  } else {
    reactor->Finish(body());
  }
  return reactor;
}

bool SluiceService::WritesWaitForDisk() const { return facts_.durability != "async"; }

grpc::ServerUnaryReactor* SluiceService::Enqueue(grpc::CallbackServerContext* ctx,
                                                 const v1::EnqueueRequest* req,
                                                 v1::EnqueueResponse* resp) {
  return Respond(ctx, [=, this] { return DoEnqueue(ctx, req, resp); });
}

grpc::ServerUnaryReactor* SluiceService::EnqueueBatch(grpc::CallbackServerContext* ctx,
                                                      const v1::EnqueueBatchRequest* req,
                                                      v1::EnqueueBatchResponse* resp) {
  // A big batch is up to milliseconds of engine work: inline it would hold one of gRPC's few
  // callback threads, and lease streams' requests would wait behind it (decisions §71).
  return Respond(
      ctx, [=, this] { return DoEnqueueBatch(ctx, req, resp); },
      req->jobs_size() > kInlineBatchJobs);
}

grpc::ServerUnaryReactor* SluiceService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                   const v1::HeartbeatRequest* req,
                                                   v1::HeartbeatResponse* resp) {
  return Respond(ctx, [=, this] { return DoHeartbeat(ctx, req, resp); });
}

grpc::ServerUnaryReactor* SluiceService::ReportOutcome(grpc::CallbackServerContext* ctx,
                                                       const v1::ReportOutcomeRequest* req,
                                                       v1::ReportOutcomeResponse* resp) {
  return Respond(ctx, [=, this] { return DoReportOutcome(ctx, req, resp); });
}

grpc::ServerUnaryReactor* SluiceService::ReportOutcomes(grpc::CallbackServerContext* ctx,
                                                        const v1::ReportOutcomesRequest* req,
                                                        v1::ReportOutcomesResponse* resp) {
  return Respond(ctx, [=, this] { return DoReportOutcomes(ctx, req, resp); });
}

grpc::ServerUnaryReactor* SluiceService::LeaseTasks(grpc::CallbackServerContext* ctx,
                                                    const v1::LeaseTasksRequest* req,
                                                    v1::LeaseTasksResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(std::min(req->wait_ms(), facts_.max_wait_ms));
  // The reports and a first, non-waiting lease run on gRPC's callback thread (no hand-off: the
  // hot path of a busy worker), or on the write pool when writes wait for fsync (the reports'
  // write, and the grants a lease may run). If that found nothing and the caller is willing to
  // wait, the wait runs on the wait pool.
  auto first = [this, ctx, req, resp, reactor, deadline] {
    bool wait_more = false;
    grpc::Status st = LeaseTasksSlices(ctx, req, resp, deadline, LeasePhase::kFirst, &wait_more);
    if (!wait_more) {
      reactor->Finish(st);
      return;
    }
    Offload(&waits_, reactor, [this, ctx, req, resp, reactor, deadline] {
      reactor->Finish(LeaseTasksSlices(ctx, req, resp, deadline, LeasePhase::kRest, nullptr));
    });
  };
  if (WritesWaitForDisk()) {
    Offload(&writes_, reactor, std::move(first));
  } else {
    first();
  }
  return reactor;
}

// One LeaseStream call. Requests are taken in order, one at a time: the reports and the first,
// non-waiting lease run on the thread that read the request (gRPC's callback thread), or on the
// write pool when writes wait for fsync; a wait runs on the wait pool. Answers are written in
// request order, one write in flight at a time. At most kMaxPending requests are read ahead;
// reading resumes as they are taken. The call finishes (once nothing is being processed or
// written) when the client half-closes (OK), a request fails (its status), a write fails, or
// the server drains (OK once the answers are written; a stream that starts while it drains ends
// UNAVAILABLE at once).
class LeaseStreamReactor final
    : public grpc::ServerBidiReactor<v1::LeaseTasksRequest, v1::LeaseTasksResponse> {
 public:
  // What to do after a state change, outside the lock (gRPC may run a reaction inline from a
  // Start call). Until Apply() has started its read or write the reactor cannot finish
  // (applying_), so it stays alive.
  struct Actions {
    const v1::LeaseTasksResponse* write = nullptr;
    bool read = false;
    std::optional<grpc::Status> finish;
  };

  LeaseStreamReactor(SluiceService* svc, grpc::CallbackServerContext* ctx) : svc_(svc), ctx_(ctx) {
    svc_->AddStream(this);  // from here on StartDraining may Drain() it
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!end_ && svc_->draining()) {
        end_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is draining");
      }
      a = SettleLocked();
    }
    Apply(a);
  }

  void OnReadDone(bool ok) override {
    bool pump = false;
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reading_ = false;
      if (!ok) {
        reads_done_ = true;
      } else if (!end_) {
        pending_.push_back(std::make_unique<v1::LeaseTasksRequest>(std::move(incoming_)));
        newer_.store(true);
      }
      incoming_.Clear();
      if (!busy_ && !pending_.empty() && !end_) busy_ = pump = true;
      a = SettleLocked();
    }
    Apply(a);
    if (pump) Pump();
  }

  void OnWriteDone(bool ok) override {
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out_.pop_front();
      writing_ = false;
      if (!ok) {
        broken_ = true;
        if (!end_) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke");
        pending_.clear();
        out_.clear();
      }
      a = SettleLocked();
    }
    Apply(a);
  }

  void OnDone() override {
    svc_->RemoveStream(this);
    delete this;
  }

  // The server drains: no further request is taken; the stream ends once the answers to the
  // requests already taken are written. It ends OK, not UNAVAILABLE: grpc-js drops messages it
  // has received but not yet delivered when an error status arrives, and the clients treat an
  // OK end with requests unanswered as UNAVAILABLE anyway. Apply the result outside any lock.
  Actions Drain() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!end_) end_ = grpc::Status::OK;
    pending_.clear();
    return SettleLocked();
  }

  void Apply(Actions a) {
    for (;;) {
      if (a.finish) {
        Finish(*a.finish);
        return;
      }
      if (a.write == nullptr && !a.read) return;
      if (a.write != nullptr) StartWrite(a.write);
      if (a.read) StartRead(&incoming_);
      std::lock_guard<std::mutex> lock(mu_);
      --applying_;
      a = SettleLocked();
    }
  }

 private:
  static constexpr size_t kMaxPending = 8;

  // Starts the next write and read when due, and finishes once nothing is left to do.
  Actions SettleLocked() {
    Actions a;
    if (finished_) return a;
    if (!writing_ && !out_.empty()) {
      writing_ = true;
      a.write = out_.front().get();
    }
    // Everything in flight counts: requests read and not yet taken, the one being worked on,
    // and answers not yet written. A client that stops reading its answers thus stops being
    // read (HTTP/2 flow control pushes back on it) instead of having the server lease for it
    // and buffer the answers without bound.
    if (!end_ && !reading_ && !reads_done_ &&
        pending_.size() + out_.size() + (busy_ ? 1 : 0) < kMaxPending) {
      reading_ = true;
      a.read = true;
    }
    if (a.write != nullptr || a.read) {
      ++applying_;
    } else if (!busy_ && !writing_ && applying_ == 0 && out_.empty() &&
               (end_ || (reads_done_ && pending_.empty()))) {
      finished_ = true;
      a.finish = end_.value_or(grpc::Status::OK);
    }
    return a;
  }

  // Takes the next request (clearing busy_ when there is none).
  std::unique_ptr<v1::LeaseTasksRequest> Take() {
    std::unique_ptr<v1::LeaseTasksRequest> req;
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!end_ && ctx_->IsCancelled()) {
        // The client went away: lease nothing more for it.
        end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the stream");
        pending_.clear();
      }
      if (!pending_.empty() && !end_) {
        req = std::move(pending_.front());
        pending_.pop_front();
        newer_.store(!pending_.empty());
      } else {
        busy_ = false;
      }
      a = SettleLocked();
    }
    Apply(a);
    return req;
  }

  // Processes requests while busy_: here, or on the write pool when writes wait for fsync.
  void Pump() {
    if (!svc_->WritesWaitForDisk()) {
      PumpHere();
      return;
    }
    Hand(&svc_->writes_, [this] { PumpHere(); });
  }

  void PumpHere() {
    while (std::unique_ptr<v1::LeaseTasksRequest> req = Take()) {
      if (!First(std::move(req))) return;  // the wait pool goes on
    }
  }

  // The reports and a non-waiting lease; false when the request went on to wait (on the
  // wait pool, which answers it and pumps on).
  bool First(std::unique_ptr<v1::LeaseTasksRequest> req) {
    auto resp = std::make_unique<v1::LeaseTasksResponse>();
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::milliseconds(std::min(req->wait_ms(), svc_->facts_.max_wait_ms));
    bool wait_more = false;
    grpc::Status st =
        svc_->LeaseTasksSlices(ctx_, req.get(), resp.get(), deadline,
                               SluiceService::LeasePhase::kFirst, &wait_more, &newer_);
    if (!wait_more) {
      Answer(std::move(resp), st);
      return true;
    }
    std::shared_ptr<v1::LeaseTasksRequest> held(std::move(req));
    std::shared_ptr<v1::LeaseTasksResponse> out(std::move(resp));
    const bool handed = Hand(
        &svc_->waits_,
        [this, held, out, deadline] {
          grpc::Status s =
              svc_->LeaseTasksSlices(ctx_, held.get(), out.get(), deadline,
                                     SluiceService::LeasePhase::kRest, nullptr, &newer_);
          Answer(std::make_unique<v1::LeaseTasksResponse>(std::move(*out)), s);
          Pump();
        },
        /*end_on_failure=*/false);
    if (!handed) {
      // No thread to wait on: answer what there is (its reports' statuses, no task), as a
      // wait that found nothing would, then end the stream once its answers are written, as
      // a drain does. Failing it would lose that answer and the ones queued before it; going
      // on would have idle workers re-poll in a tight loop. The requests not yet taken are
      // unanswered, which clients treat as UNAVAILABLE: they back off and open a new stream.
      Answer(std::make_unique<v1::LeaseTasksResponse>(std::move(*out)), grpc::Status::OK);
      Apply(Drain());
      return true;
    }
    return false;
  }

  // Queues an answer, or ends the stream with a failed request's status.
  void Answer(std::unique_ptr<v1::LeaseTasksResponse> resp, const grpc::Status& st) {
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!st.ok()) {
        if (!end_) end_ = st;
        pending_.clear();
      } else if (!broken_) {
        out_.push_back(std::move(resp));  // also while draining: its reports were applied
      }
      a = SettleLocked();
    }
    Apply(a);
  }

  // Runs fn on pool and returns true. When no thread can be started: false, after ending the
  // stream UNAVAILABLE when end_on_failure (else the caller answers as it can).
  bool Hand(BlockingPool* pool, std::function<void()> fn, bool end_on_failure = true) {
    try {
      pool->Submit([this, fn = std::move(fn)] {
        try {
          fn();
        } catch (const std::exception& e) {
          Log(LogLevel::kError, "lease stream handler failed", {{"error", e.what()}});
          Fail(grpc::Status(grpc::StatusCode::INTERNAL, "internal error"));
        }
      });
    } catch (const std::system_error& e) {
      Log(LogLevel::kWarn, "no thread for a blocking call", {{"error", e.what()}});
      if (end_on_failure) {
        Fail(grpc::Status(grpc::StatusCode::UNAVAILABLE,  // retried with backoff (see above)
                          "the server has no thread free for this call; retry"));
      }
      return false;
    }
    return true;
  }

  void Fail(const grpc::Status& st) {
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!end_) end_ = st;
      pending_.clear();
      busy_ = false;
      a = SettleLocked();
    }
    Apply(a);
  }

  SluiceService* const svc_;
  grpc::CallbackServerContext* const ctx_;
  std::mutex mu_;
  v1::LeaseTasksRequest incoming_;  // the read in flight fills it
  bool reading_ = false;
  bool reads_done_ = false;  // the client half-closed, or the stream broke
  std::deque<std::unique_ptr<v1::LeaseTasksRequest>> pending_;  // read, not yet taken
  bool busy_ = false;                                           // a request is being processed
  std::atomic<bool> newer_{false};  // a request waits behind the one processed: cut its wait
  std::deque<std::unique_ptr<v1::LeaseTasksResponse>> out_;  // the front is being written
  bool writing_ = false;
  int applying_ = 0;                 // Actions whose read or write is not started yet
  bool broken_ = false;              // a write failed
  std::optional<grpc::Status> end_;  // how the stream ends; once set no request is taken
  bool finished_ = false;
};

grpc::ServerBidiReactor<v1::LeaseTasksRequest, v1::LeaseTasksResponse>* SluiceService::LeaseStream(
    grpc::CallbackServerContext* ctx) {
  return new LeaseStreamReactor(this, ctx);
}

void SluiceService::AddStream(LeaseStreamReactor* s) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_.insert(s);
}

void SluiceService::RemoveStream(LeaseStreamReactor* s) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  streams_.erase(s);
}

void SluiceService::StartDraining() {
  draining_.store(true);
  // Applied outside the registry's lock: a finished stream's OnDone takes it. A stream with an
  // operation still to apply cannot finish (and be deleted) before it is applied.
  std::vector<std::pair<LeaseStreamReactor*, LeaseStreamReactor::Actions>> todo;
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    for (LeaseStreamReactor* s : streams_) todo.emplace_back(s, s->Drain());
  }
  for (auto& [s, a] : todo) {
    if (a.write != nullptr || a.read || a.finish) s->Apply(std::move(a));
  }
}

grpc::Status SluiceService::LeaseTasksSlices(grpc::ServerContextBase* ctx,
                                             const v1::LeaseTasksRequest* req,
                                             v1::LeaseTasksResponse* resp,
                                             std::chrono::steady_clock::time_point deadline,
                                             LeasePhase phase, bool* wait_more,
                                             const std::atomic<bool>* cut) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    LeaseRequest lr;
    lr.tenant = tenant;
    lr.queue = req->queue();
    lr.worker_id = req->worker_id();
    lr.max_tasks = req->max_tasks();
    // Reports ride on the first slice (which also validates the request when wait_ms is 0).
    std::vector<Completion> batch;
    std::vector<size_t> index;
    std::vector<Status> statuses;
    bool first = phase != LeasePhase::kRest;
    if (first) BuildCompletions(req->reports(), tenant, &batch, &index, &statuses);
    while (true) {
      // A wait taken up late (the wait pool was full) ends at once if its reason is gone.
      if (phase == LeasePhase::kRest && (StopWaiting(ctx) || (cut != nullptr && cut->load()))) {
        return Status::Ok();
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      lr.wait_ms = phase == LeasePhase::kFirst
                       ? 0
                       : static_cast<uint32_t>(std::clamp<int64_t>(left, 0, kWaitSliceMs));
      auto lease = [&]() -> Result<LeaseResponse> {
        if (!first || req->reports().empty()) return engine_->LeaseTasks(lr);
        std::vector<Status> applied;
        Result<LeaseResponse> out = engine_->ReportAndLease(batch, lr, &applied);
        for (size_t k = 0; k < applied.size(); ++k) statuses[index[k]] = applied[k];
        if (out.ok()) AddStatuses(statuses, resp->mutable_report_statuses());
        return out;
      };
      Result<LeaseResponse> r = lease();
      first = false;
      if (!r.ok()) return r.status();
      if (!r->tasks.empty() || !r->refreshes.empty()) {
        for (const Task& t : r->tasks) ToProto(t, resp->add_tasks());
        for (const RefreshTask& rt : r->refreshes) ToProto(rt, resp->add_refreshes());
        if (ctx->IsCancelled()) {
          // The caller left after the lease: its tasks come back when the leases expire.
          Log(LogLevel::kWarn, "lease caller went away; tasks wait for lease expiry",
              {{"tasks", std::to_string(r->tasks.size())}, {"queue", req->queue()}});
        }
        return Status::Ok();
      }
      if (left <= 0 || StopWaiting(ctx) || (cut != nullptr && cut->load())) return Status::Ok();
      if (phase == LeasePhase::kFirst) {
        *wait_more = true;  // the rest of the wait runs on the blocking pool
        return Status::Ok();
      }
    }
  });
}

grpc::Status SluiceService::DoHeartbeat(grpc::ServerContextBase* ctx,
                                        const v1::HeartbeatRequest* req,
                                        v1::HeartbeatResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->Heartbeat(tenant, req->task_id(), req->worker_id(), req->lease_token());
    if (!r.ok()) return r.status();
    resp->set_lease_expires_ms(r->lease_expires_ms);
    resp->set_cancel_requested(r->cancel_requested);
    return Status::Ok();
  });
}

grpc::Status SluiceService::DoReportOutcome(grpc::ServerContextBase* ctx,
                                            const v1::ReportOutcomeRequest* req,
                                            v1::ReportOutcomeResponse* /*resp*/) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    Outcome o;
    if (!FromProto(req->outcome(), &o)) {
      return Status::InvalidArgument("outcome: one of success, failure or cancelled is required");
    }
    return engine_->Complete(tenant, req->task_id(), req->lease_token(), o);
  });
}

grpc::Status SluiceService::DoReportOutcomes(grpc::ServerContextBase* ctx,
                                             const v1::ReportOutcomesRequest* req,
                                             v1::ReportOutcomesResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    std::vector<Completion> batch;
    std::vector<size_t> index;  // batch entry -> report
    std::vector<Status> statuses;
    BuildCompletions(req->reports(), tenant, &batch, &index, &statuses);
    if (!batch.empty()) {
      auto r = engine_->CompleteBatch(batch);
      if (!r.ok()) return r.status();
      for (size_t k = 0; k < r->size(); ++k) statuses[index[k]] = (*r)[k];
    }
    AddStatuses(statuses, resp->mutable_statuses());
    return Status::Ok();
  });
}

grpc::Status SluiceService::HeartbeatRefresh(grpc::ServerContext* ctx,
                                             const v1::HeartbeatRefreshRequest* req,
                                             v1::HeartbeatRefreshResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->HeartbeatRefresh(tenant, req->key(), req->lease_token());
    if (!r.ok()) return r.status();
    resp->set_lease_expires_ms(*r);
    return Status::Ok();
  });
}

grpc::Status SluiceService::ReportRefreshOutcome(grpc::ServerContext* ctx,
                                                 const v1::ReportRefreshOutcomeRequest* req,
                                                 v1::ReportRefreshOutcomeResponse* /*resp*/) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    RefreshOutcome o;
    switch (req->outcome_case()) {
      case v1::ReportRefreshOutcomeRequest::kNewMax:
        o = RefreshOutcome::Success(req->new_max());
        break;
      case v1::ReportRefreshOutcomeRequest::kError:
        o = RefreshOutcome::Failure(req->error().code(), req->error().message());
        break;
      case v1::ReportRefreshOutcomeRequest::OUTCOME_NOT_SET:
        return Status::InvalidArgument("outcome: one of new_max or error is required");
    }
    return engine_->CompleteRefresh(tenant, req->key(), req->lease_token(), o);
  });
}

grpc::Status SluiceService::GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
                                   v1::GetJobResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->GetJob(tenant, req->id(), req->include_attempts());
    if (!r.ok()) return r.status();
    ToProto(*r, resp->mutable_job());
    return Status::Ok();
  });
}

grpc::Status SluiceService::GetJobResult(grpc::ServerContext* ctx,
                                         const v1::GetJobResultRequest* req,
                                         v1::GetJobResultResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(std::min(req->wait_ms(), facts_.max_wait_ms));
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      const auto slice = static_cast<uint32_t>(std::clamp<int64_t>(left, 0, kWaitSliceMs));
      auto r = engine_->GetResult(tenant, req->id(), slice);
      if (!r.ok()) return r.status();
      if (r->finished || left <= 0 || StopWaiting(ctx)) {
        ToProto(*r, resp);
        return Status::Ok();
      }
    }
  });
}

grpc::Status SluiceService::CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                                      v1::CancelJobResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->Cancel(tenant, req->id());
    if (!r.ok()) return r.status();
    resp->set_status(ToProto(r->status));
    resp->set_cancel_requested(r->cancel_requested);
    return Status::Ok();
  });
}

grpc::Status SluiceService::RestartJob(grpc::ServerContext* ctx, const v1::RestartJobRequest* req,
                                       v1::RestartJobResponse* /*resp*/) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    return engine_->Restart(tenant, req->id());
  });
}

grpc::Status SluiceService::ExpediteJob(grpc::ServerContext* ctx, const v1::ExpediteJobRequest* req,
                                        v1::ExpediteJobResponse* /*resp*/) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    return engine_->Expedite(tenant, req->id());
  });
}

grpc::Status SluiceService::DeleteJob(grpc::ServerContext* ctx, const v1::DeleteJobRequest* req,
                                      v1::DeleteJobResponse* /*resp*/) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    return engine_->Delete(tenant, req->id());
  });
}

grpc::Status SluiceService::GetFloatingLimit(grpc::ServerContext* ctx,
                                             const v1::GetFloatingLimitRequest* req,
                                             v1::GetFloatingLimitResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->GetFloatingLimit(tenant, req->key());
    if (!r.ok()) return r.status();
    ToProto(*r, resp->mutable_limit());
    return Status::Ok();
  });
}

grpc::Status SluiceService::ListFloatingLimits(grpc::ServerContext* ctx,
                                               const v1::ListFloatingLimitsRequest* req,
                                               v1::ListFloatingLimitsResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->ListFloatingLimits(tenant, req->after_key(), ListLimit(req->limit()));
    if (!r.ok()) return r.status();
    for (const FloatingLimitState& f : *r) ToProto(f, resp->add_limits());
    return Status::Ok();
  });
}

grpc::Status SluiceService::SetFloatingLimit(grpc::ServerContext* ctx,
                                             const v1::SetFloatingLimitRequest* req,
                                             v1::SetFloatingLimitResponse* /*resp*/) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    return engine_->SetFloatingLimit(tenant, req->key(), req->max());
  });
}

grpc::Status SluiceService::GetConcurrencyKey(grpc::ServerContext* ctx,
                                              const v1::GetConcurrencyKeyRequest* req,
                                              v1::GetConcurrencyKeyResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->GetConcurrencyKey(tenant, KindFromProto(req->kind()), req->key());
    if (!r.ok()) return r.status();
    ToProto(*r, resp->mutable_key());
    return Status::Ok();
  });
}

grpc::Status SluiceService::ListConcurrencyKeys(grpc::ServerContext* ctx,
                                                const v1::ListConcurrencyKeysRequest* req,
                                                v1::ListConcurrencyKeysResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    for (const ConcurrencyKeyInfo& k :
         engine_->ListConcurrencyKeys(tenant, ListLimit(req->limit()))) {
      ToProto(k, resp->add_keys());
    }
    return Status::Ok();
  });
}

grpc::Status SluiceService::GetNodeInfo(grpc::ServerContext* ctx,
                                        const v1::GetNodeInfoRequest* /*req*/,
                                        v1::GetNodeInfoResponse* resp) {
  return Run(ctx, std::string(), [&](const std::string& /*tenant*/, const Principal& p) {
    resp->set_version(facts_.version);
    resp->set_node_id(facts_.node_id);
    resp->set_durability(facts_.durability);
    resp->set_started_ms(facts_.started_ms);
    resp->set_caller_tenant(p.tenant);
    resp->set_caller_tenant_bound(p.bound);
    resp->set_default_lease_ms(facts_.default_lease_ms);
    v1::GetNodeInfoResponse::Limits* l = resp->mutable_limits();
    const SizeLimits& s = facts_.limits;
    l->set_max_message_bytes(facts_.max_message_bytes);
    l->set_max_id_bytes(s.max_id_bytes);
    l->set_max_tenant_bytes(s.max_tenant_bytes);
    l->set_max_queue_bytes(s.max_queue_bytes);
    l->set_max_worker_id_bytes(s.max_worker_id_bytes);
    l->set_max_payload_bytes(s.max_payload_bytes);
    l->set_max_result_bytes(s.max_result_bytes);
    l->set_max_error_code_bytes(s.max_error_code_bytes);
    l->set_max_error_message_bytes(s.max_error_message_bytes);
    l->set_max_error_data_bytes(s.max_error_data_bytes);
    l->set_max_metadata_entries(s.max_metadata_entries);
    l->set_max_metadata_key_bytes(s.max_metadata_key_bytes);
    l->set_max_metadata_value_bytes(s.max_metadata_value_bytes);
    l->set_max_limits_per_job(s.max_limits_per_job);
    l->set_max_limit_key_bytes(s.max_limit_key_bytes);
    l->set_max_batch_jobs(s.max_batch_jobs);
    l->set_max_lease_batch(facts_.max_lease_batch);
    l->set_max_wait_ms(facts_.max_wait_ms);
    l->set_max_list_page(s.max_list_page);
    l->set_max_query_bytes(s.max_query_bytes);
    l->set_query_timeout_ms(facts_.query_timeout_ms);
    l->set_query_max_rows(facts_.query_max_rows);
    l->set_query_max_result_bytes(facts_.query_max_result_bytes);
    return Status::Ok();
  });
}

grpc::Status SluiceService::ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    ListJobsRequest lr;
    if (Status s = FromProto(*req, tenant, &lr); !s.ok()) return s;
    lr.limit = JobPageLimit(req->limit(), lr.view, facts_);
    auto r = engine_->ListJobs(lr);
    if (!r.ok()) return r.status();
    resp->mutable_jobs()->Reserve(static_cast<int>(r->jobs.size()));
    for (const Job& j : r->jobs) ToProto(j, resp->add_jobs());
    resp->set_next_cursor(EncodeCursor(r->next_cursor));
    resp->set_keys_visited(r->keys_visited);
    return Status::Ok();
  });
}

grpc::Status SluiceService::CountJobs(grpc::ServerContext* ctx, const v1::CountJobsRequest* req,
                                      v1::CountJobsResponse* resp) {
  return Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    auto r = engine_->CountJobs(tenant, req->queue());
    if (!r.ok()) return r.status();
    for (const QueueCounts& c : *r) ToProto(c, resp->add_queues());
    return Status::Ok();
  });
}

QueryOptions SluiceService::QueryBounds(const grpc::ServerContext& ctx,
                                        const v1::QueryRequest& req) const {
  auto capped = [](uint32_t asked, uint32_t max) {
    return asked == 0 ? max : std::min(asked, max);
  };
  QueryOptions o;
  o.max_rows = capped(req.max_rows(), facts_.query_max_rows);
  o.max_result_bytes = facts_.query_max_result_bytes;
  // No deadline is time_point::max(): `left` is then huge and the budget decides.
  const int64_t left = std::chrono::duration_cast<std::chrono::milliseconds>(
                           ctx.deadline() - std::chrono::system_clock::now())
                           .count();
  o.timeout_ms = static_cast<uint32_t>(
      std::clamp<int64_t>(left, 0, capped(req.timeout_ms(), facts_.query_timeout_ms)));
  return o;
}

grpc::Status SluiceService::Query(grpc::ServerContext* ctx, const v1::QueryRequest* req,
                                  v1::QueryResponse* resp) {
  std::optional<QueryOutcome> outcome;  // set once the call got past authentication
  grpc::Status st = Run(ctx, req->tenant(), [&](const std::string& tenant, const Principal&) {
    QueryOptions o = QueryBounds(*ctx, *req);
    Status s;
    if (o.timeout_ms == 0) {
      s = Status::Timeout("query: the call's deadline passed before the query started");
    } else {
      // Polled by the engine while the statement runs: a caller that cancelled, disconnected
      // or whose deadline passed stops the query within a few thousand steps.
      o.cancelled = [ctx] { return ctx->IsCancelled(); };
      Result<QueryResult> r = engine_->Query(tenant, req->sql(), o);
      if (r.ok()) ToProto(*r, resp);
      s = r.status();
    }
    // A passed deadline cancels the call too: that is a timeout, not a caller that went away.
    // The caller's own deadline fires first (ours runs from the request's arrival), and its
    // cancellation can reach us a moment before our deadline: within kDeadlineSkew of it, a
    // cancellation is the deadline's.
    if (s.code() == StatusCode::kCancelled &&
        std::chrono::system_clock::now() + kDeadlineSkew >= ctx->deadline()) {
      s = Status::Timeout("query: the call's deadline passed while the query ran");
    }
    outcome = OutcomeOf(s);
    return s;
  });
  if (outcome && metrics_ != nullptr) metrics_->CountQuery(*outcome);
  return st;
}

}  // namespace sluice::server
