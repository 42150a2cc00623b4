// sluiced end to end over loopback with the generated C++ stubs: lifecycle, the error-code
// contract, authentication on every RPC of the service descriptor, size caps, long-poll wake-up,
// metrics and the SIGTERM drain. The Python suites (python/) cover the same surface from grpcio.
#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <limits>
#include <set>
#include <sstream>
#include <thread>

#include "errors.h"
#include "sluiced_process.h"

namespace sluice::testing {
namespace {

using std::chrono::steady_clock;

double MsSince(steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(steady_clock::now() - t).count();
}

constexpr char kAdmin[] = "admin-token-0123456789";
constexpr char kTokA[] = "token-tenant-a-0001";
constexpr char kTokB[] = "token-tenant-b-0002";

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluiced-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--token", kAdmin,
                                     "--token", std::string(kTokA) + "@tenant-a",
                                     "--token", std::string(kTokB) + "@tenant-b"};
    args.insert(args.end(), extra.begin(), extra.end());
    server_ = std::make_unique<SluicedProcess>(dir_ + "/node", args);
    ASSERT_TRUE(server_->ok()) << server_->failure();
    stub_ = server_->Stub();
  }

  // The `sluice-code` trailer of a finished call.
  static std::string SluiceCode(const grpc::ClientContext& ctx) {
    const auto& md = ctx.GetServerTrailingMetadata();
    auto it = md.find("sluice-code");
    return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
  }

  v1::EnqueueResponse MustEnqueue(const std::string& token, v1::JobSpec spec) {
    v1::EnqueueRequest req;
    *req.mutable_job() = std::move(spec);
    v1::EnqueueResponse resp;
    auto ctx = Authed(token);
    grpc::Status s = stub_->Enqueue(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  // A lease request of worker w1.
  static v1::LeaseTasksRequest LeaseReq(const std::string& queue, uint32_t max_tasks,
                                        uint32_t wait_ms = 0) {
    v1::LeaseTasksRequest req;
    req.set_queue(queue);
    req.set_worker_id("w1");
    req.set_max_tasks(max_tasks);
    req.set_wait_ms(wait_ms);
    return req;
  }

  v1::LeaseTasksResponse Lease(const std::string& token, const std::string& queue,
                               uint32_t max_tasks = 10, uint32_t wait_ms = 0) {
    const v1::LeaseTasksRequest req = LeaseReq(queue, max_tasks, wait_ms);
    v1::LeaseTasksResponse resp;
    auto ctx = Authed(token, static_cast<int>(wait_ms) + 10'000);
    grpc::Status s = stub_->LeaseTasks(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  static v1::JobSpec Spec(const std::string& queue, const std::string& id = "") {
    v1::JobSpec j;
    j.set_queue(queue);
    j.set_id(id);
    return j;
  }

  // One GetJob call as `token`; the job lands in *out.
  grpc::Status GetJob(const std::string& token, const std::string& id, v1::GetJobResponse* out) {
    v1::GetJobRequest g;
    g.set_id(id);
    auto ctx = Authed(token);
    return stub_->GetJob(ctx.get(), g, out);
  }

  // One ListJobs call (the request's tenant stays as given).
  grpc::Status List(const std::string& token, const v1::ListJobsRequest& req,
                    v1::ListJobsResponse* resp) {
    auto ctx = Authed(token);
    return stub_->ListJobs(ctx.get(), req, resp);
  }

  // Every job of a listing, paging with next_cursor (bounded: a broken cursor fails the test).
  std::vector<v1::Job> ListAll(const std::string& token, v1::ListJobsRequest req,
                               int* pages = nullptr) {
    std::vector<v1::Job> out;
    for (int page = 1; page <= 1000; ++page) {
      v1::ListJobsResponse resp;
      const grpc::Status s = List(token, req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) break;
      out.insert(out.end(), resp.jobs().begin(), resp.jobs().end());
      if (pages != nullptr) *pages = page;
      if (resp.next_cursor().empty()) return out;
      req.set_cursor(resp.next_cursor());
    }
    ADD_FAILURE() << "the listing did not end";
    return out;
  }

  static std::vector<std::string> Ids(const std::vector<v1::Job>& jobs) {
    std::vector<std::string> ids;
    for (const v1::Job& j : jobs) ids.push_back(j.id());
    return ids;
  }

  // One Query; *ctx_out (when given) receives the finished call's context for its trailers.
  grpc::Status RunQuery(const std::string& token, const std::string& sql, v1::QueryResponse* resp,
                        uint32_t timeout_ms = 0, uint32_t max_rows = 0, int deadline_ms = 10'000,
                        std::string* sluice_code = nullptr, const std::string& tenant = "") {
    v1::QueryRequest req;
    req.set_tenant(tenant);
    req.set_sql(sql);
    req.set_timeout_ms(timeout_ms);
    req.set_max_rows(max_rows);
    auto ctx = Authed(token, deadline_ms);
    grpc::Status s = stub_->Query(ctx.get(), req, resp);
    if (sluice_code != nullptr) *sluice_code = SluiceCode(*ctx);
    return s;
  }

  double Queries(const std::string& outcome) {
    return Metric("sluice_queries_total", {"outcome=\"" + outcome + "\""});
  }

  // The value of one sample of /metrics, matched by name and label set (any label order);
  // -1 when absent.
  double Metric(const std::string& name, const std::set<std::string>& labels = {}) {
    std::string body;
    EXPECT_EQ(server_->HttpGet("/metrics", &body), 200);
    std::istringstream lines(body);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.empty() || line[0] == '#') continue;
      const auto brace = line.find('{');
      const auto space = line.rfind(' ');
      const std::string n = line.substr(0, std::min(brace, space));
      if (n != name) continue;
      std::set<std::string> got;
      if (brace != std::string::npos) {
        std::istringstream ls(line.substr(brace + 1, line.rfind('}') - brace - 1));
        std::string l;
        while (std::getline(ls, l, ',')) got.insert(l);
      }
      if (got == labels) return std::stod(line.substr(space + 1));
    }
    return -1;
  }

  std::string dir_;
  std::unique_ptr<SluicedProcess> server_;
  std::unique_ptr<v1::Sluice::Stub> stub_;
};

TEST_F(ServerTest, LifecycleEnqueueLeaseHeartbeatSucceed) {
  Start();
  v1::JobSpec spec = Spec("emails", "job-1");
  spec.set_payload("hello");
  (*spec.mutable_metadata())["customer"] = "42";
  const v1::EnqueueResponse e = MustEnqueue(kAdmin, spec);
  EXPECT_EQ(e.id(), "job-1");
  EXPECT_TRUE(e.created());
  EXPECT_EQ(e.status(), v1::WAITING);
  // Idempotent: the same id again changes nothing.
  const v1::EnqueueResponse again = MustEnqueue(kAdmin, spec);
  EXPECT_FALSE(again.created());

  const v1::LeaseTasksResponse l = Lease(kAdmin, "emails");
  ASSERT_EQ(l.tasks_size(), 1);
  const v1::Task& t = l.tasks(0);
  EXPECT_EQ(t.job_id(), "job-1");
  EXPECT_EQ(t.payload(), "hello");
  EXPECT_EQ(t.metadata().at("customer"), "42");
  EXPECT_EQ(t.attempt(), 1u);
  EXPECT_GT(t.lease_ms(), 20'000u);

  v1::HeartbeatRequest hb;
  hb.set_task_id(t.task_id());
  hb.set_worker_id("w1");
  hb.set_lease_token(t.lease_token());
  v1::HeartbeatResponse hbr;
  auto c1 = Authed(kAdmin);
  ASSERT_TRUE(stub_->Heartbeat(c1.get(), hb, &hbr).ok());
  EXPECT_FALSE(hbr.cancel_requested());
  EXPECT_GE(hbr.lease_expires_ms(), t.lease_expires_ms());

  v1::ReportOutcomeRequest rep;
  rep.set_task_id(t.task_id());
  rep.set_lease_token(t.lease_token());
  rep.mutable_outcome()->mutable_success()->set_result("done");
  v1::ReportOutcomeResponse repr;
  auto c2 = Authed(kAdmin);
  ASSERT_TRUE(stub_->ReportOutcome(c2.get(), rep, &repr).ok());

  v1::GetJobRequest gj;
  gj.set_id("job-1");
  gj.set_include_attempts(true);
  v1::GetJobResponse job;
  auto c3 = Authed(kAdmin);
  ASSERT_TRUE(stub_->GetJob(c3.get(), gj, &job).ok());
  EXPECT_EQ(job.job().status(), v1::SUCCEEDED);
  ASSERT_EQ(job.job().attempts_size(), 1);
  EXPECT_EQ(job.job().attempts(0).status(), v1::ATTEMPT_SUCCEEDED);
  EXPECT_EQ(job.job().attempts(0).result(), "done");
  EXPECT_EQ(job.job().priority(), 50u) << "an unset priority is the engine default";

  v1::GetJobResultRequest gr;
  gr.set_id("job-1");
  v1::GetJobResultResponse res;
  auto c4 = Authed(kAdmin);
  ASSERT_TRUE(stub_->GetJobResult(c4.get(), gr, &res).ok());
  EXPECT_TRUE(res.finished());
  EXPECT_EQ(res.result(), "done");
}

// LeaseTasks carries the outcomes of earlier attempts: report and fetch in one round trip.
TEST_F(ServerTest, LeaseTasksAppliesPiggybackedReportsFirst) {
  Start();
  for (int i = 0; i < 4; ++i) MustEnqueue(kAdmin, Spec("pb", "pb-" + std::to_string(i)));
  const v1::LeaseTasksResponse first = Lease(kAdmin, "pb", 2);
  ASSERT_EQ(first.tasks_size(), 2);
  auto report = [](const v1::Task& t, uint64_t token) {
    v1::ReportOutcomeRequest r;
    r.set_task_id(t.task_id());
    r.set_lease_token(token);
    r.mutable_outcome()->mutable_success()->set_result("ok");
    return r;
  };
  // A bad lease request applies none of its reports.
  {
    v1::LeaseTasksRequest bad;
    bad.set_worker_id("w1");
    bad.set_max_tasks(2);
    *bad.add_reports() = report(first.tasks(0), first.tasks(0).lease_token());
    v1::LeaseTasksResponse resp;
    auto ctx = Authed(kAdmin);
    EXPECT_EQ(stub_->LeaseTasks(ctx.get(), bad, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    v1::GetJobResponse gr;
    ASSERT_TRUE(GetJob(kAdmin, first.tasks(0).job_id(), &gr).ok());
    EXPECT_EQ(gr.job().status(), v1::RUNNING);
  }
  v1::LeaseTasksRequest req = LeaseReq("pb", 2);
  *req.add_reports() = report(first.tasks(0), first.tasks(0).lease_token());
  *req.add_reports() = report(first.tasks(1), first.tasks(1).lease_token() + 1);  // stale
  req.add_reports()->set_task_id(first.tasks(1).task_id());                       // no outcome
  v1::LeaseTasksResponse resp;
  auto ctx = Authed(kAdmin);
  ASSERT_TRUE(stub_->LeaseTasks(ctx.get(), req, &resp).ok());
  ASSERT_EQ(resp.report_statuses_size(), 3);
  EXPECT_EQ(resp.report_statuses(0).code(), 0);
  EXPECT_EQ(resp.report_statuses(1).sluice_code(), "lease_lost");
  EXPECT_EQ(resp.report_statuses(1).code(),
            static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  EXPECT_EQ(resp.report_statuses(2).sluice_code(), "invalid_argument");
  EXPECT_EQ(resp.tasks_size(), 2) << "the lease part still leased";
  v1::GetJobResultRequest gr;
  gr.set_id(first.tasks(0).job_id());
  v1::GetJobResultResponse res;
  auto c3 = Authed(kAdmin);
  ASSERT_TRUE(stub_->GetJobResult(c3.get(), gr, &res).ok());
  EXPECT_EQ(res.status(), v1::SUCCEEDED);
}

TEST_F(ServerTest, GetJobResultWaitsServerSideForTheOutcome) {
  Start();
  MustEnqueue(kAdmin, Spec("q", "waited"));
  auto waiter = std::async(std::launch::async, [&] {
    v1::GetJobResultRequest gr;
    gr.set_id("waited");
    gr.set_wait_ms(10'000);
    v1::GetJobResultResponse res;
    auto ctx = Authed(kAdmin, 20'000);
    grpc::Status s = stub_->GetJobResult(ctx.get(), gr, &res);
    return std::make_pair(s.ok(), res);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const v1::LeaseTasksResponse l = Lease(kAdmin, "q");
  ASSERT_EQ(l.tasks_size(), 1);
  v1::ReportOutcomeRequest rep;
  rep.set_task_id(l.tasks(0).task_id());
  rep.set_lease_token(l.tasks(0).lease_token());
  rep.mutable_outcome()->mutable_success()->set_result("r");
  v1::ReportOutcomeResponse repr;
  auto ctx = Authed(kAdmin);
  ASSERT_TRUE(stub_->ReportOutcome(ctx.get(), rep, &repr).ok());
  const auto done = steady_clock::now();
  auto [ok, res] = waiter.get();
  const auto waited_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - done).count();
  ASSERT_TRUE(ok);
  EXPECT_TRUE(res.finished());
  EXPECT_EQ(res.status(), v1::SUCCEEDED);
  EXPECT_EQ(res.result(), "r");
  EXPECT_LT(waited_ms, 1000) << "woken by the completion, not by the 10 s timeout";
}

TEST_F(ServerTest, ErrorCodesAndTheirSluiceCodeTrailer) {
  Start();
  struct Case {
    std::string name;
    grpc::StatusCode code;
    std::string sluice_code;
    std::function<grpc::Status(grpc::ClientContext*)> call;
  };
  MustEnqueue(kAdmin, Spec("q", "done-job"));
  const v1::LeaseTasksResponse l = Lease(kAdmin, "q");
  ASSERT_EQ(l.tasks_size(), 1);
  {
    v1::ReportOutcomeRequest rep;
    rep.set_task_id(l.tasks(0).task_id());
    rep.set_lease_token(l.tasks(0).lease_token());
    rep.mutable_outcome()->mutable_success();
    v1::ReportOutcomeResponse r;
    auto ctx = Authed(kAdmin);
    ASSERT_TRUE(stub_->ReportOutcome(ctx.get(), rep, &r).ok());
  }
  std::vector<Case> cases = {
      {"missing job", grpc::StatusCode::NOT_FOUND, "not_found",
       [&](grpc::ClientContext* c) {
         v1::GetJobRequest r;
         r.set_id("nope");
         v1::GetJobResponse o;
         return stub_->GetJob(c, r, &o);
       }},
      {"empty queue", grpc::StatusCode::INVALID_ARGUMENT, "invalid_argument",
       [&](grpc::ClientContext* c) {
         v1::EnqueueRequest r;
         r.mutable_job()->set_queue("");
         v1::EnqueueResponse o;
         return stub_->Enqueue(c, r, &o);
       }},
      {"priority 100", grpc::StatusCode::INVALID_ARGUMENT, "invalid_argument",
       [&](grpc::ClientContext* c) {
         v1::EnqueueRequest r;
         r.mutable_job()->set_queue("q");
         r.mutable_job()->set_priority(100);
         v1::EnqueueResponse o;
         return stub_->Enqueue(c, r, &o);
       }},
      {"outcome without a kind", grpc::StatusCode::INVALID_ARGUMENT, "invalid_argument",
       [&](grpc::ClientContext* c) {
         v1::ReportOutcomeRequest r;
         r.set_task_id("x#1");
         v1::ReportOutcomeResponse o;
         return stub_->ReportOutcome(c, r, &o);
       }},
      {"id too long", grpc::StatusCode::RESOURCE_EXHAUSTED, "too_large",
       [&](grpc::ClientContext* c) {
         v1::EnqueueRequest r;
         r.mutable_job()->set_queue("q");
         r.mutable_job()->set_id(std::string(129, 'x'));
         v1::EnqueueResponse o;
         return stub_->Enqueue(c, r, &o);
       }},
      {"stale lease", grpc::StatusCode::FAILED_PRECONDITION, "lease_lost",
       [&](grpc::ClientContext* c) {
         v1::ReportOutcomeRequest r;
         r.set_task_id(l.tasks(0).task_id());
         r.set_lease_token(l.tasks(0).lease_token());
         r.mutable_outcome()->mutable_success();
         v1::ReportOutcomeResponse o;
         return stub_->ReportOutcome(c, r, &o);
       }},
      {"restart a succeeded job", grpc::StatusCode::FAILED_PRECONDITION, "failed_precondition",
       [&](grpc::ClientContext* c) {
         v1::RestartJobRequest r;
         r.set_id("done-job");
         v1::RestartJobResponse o;
         return stub_->RestartJob(c, r, &o);
       }},
  };
  for (const Case& k : cases) {
    auto ctx = Authed(kAdmin);
    grpc::Status s = k.call(ctx.get());
    EXPECT_EQ(s.error_code(), k.code) << k.name << ": " << s.error_message();
    EXPECT_EQ(SluiceCode(*ctx), k.sluice_code) << k.name;
    EXPECT_FALSE(s.error_message().empty()) << k.name;
  }
  // Server-side codes.
  {
    grpc::ClientContext ctx;
    v1::GetNodeInfoResponse o;
    grpc::Status s = stub_->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &o);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(SluiceCode(ctx), "unauthenticated");
  }
  {
    auto ctx = Authed(kTokA);
    v1::GetJobRequest r;
    r.set_tenant("tenant-b");
    r.set_id("x");
    v1::GetJobResponse o;
    grpc::Status s = stub_->GetJob(ctx.get(), r, &o);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(SluiceCode(*ctx), "permission_denied");
  }
}

// Every engine code maps to one documented gRPC code (docs/errors.md); lease_lost and
// failed_precondition share FAILED_PRECONDITION and differ by the trailer.
TEST(ErrorMapping, EveryEngineCodeHasItsGrpcCode) {
  using server::GrpcCode;
  EXPECT_EQ(GrpcCode(StatusCode::kOk), grpc::StatusCode::OK);
  EXPECT_EQ(GrpcCode(StatusCode::kNotFound), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GrpcCode(StatusCode::kInvalidArgument), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GrpcCode(StatusCode::kTooLarge), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(GrpcCode(StatusCode::kLeaseLost), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(GrpcCode(StatusCode::kFailedPrecondition), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(GrpcCode(StatusCode::kClosed), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(GrpcCode(StatusCode::kIoError), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(GrpcCode(StatusCode::kCorruption), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(GrpcCode(StatusCode::kTimeout), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(GrpcCode(StatusCode::kAlreadyExists), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(GrpcCode(StatusCode::kBusy), grpc::StatusCode::ABORTED);
  EXPECT_EQ(GrpcCode(StatusCode::kCancelled), grpc::StatusCode::CANCELLED);
  grpc::ServerContext ctx;  // collects trailers; never sent
  const grpc::Status s = server::ToGrpc(Status::LeaseLost("gone"), &ctx);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "gone");
}

// Every RPC in the service descriptor refuses calls without a valid token: a new RPC cannot
// skip the check. Each is called with an empty request through the generic stub.
TEST_F(ServerTest, EveryRpcRequiresAValidToken) {
  Start();
  const auto* svc = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      v1::Sluice::service_full_name());
  ASSERT_NE(svc, nullptr);
  ASSERT_GE(svc->method_count(), 23);
  grpc::GenericStub generic(server_->Channel());
  auto call = [&](const std::string& method, const std::string& auth_header) {
    grpc::ClientContext ctx;
    if (!auth_header.empty()) ctx.AddMetadata("authorization", auth_header);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Slice empty;
    grpc::ByteBuffer req(&empty, 1);
    grpc::ByteBuffer resp;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp,
                      [&](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  };
  std::set<std::string> checked;
  for (int i = 0; i < svc->method_count(); ++i) {
    const std::string method = "/" + svc->full_name() + "/" + svc->method(i)->name();
    for (const std::string& bad :
         {std::string(), std::string("Bearer wrong-token-xyz"), std::string("Bearer "),
          std::string("Basic ") + kAdmin, std::string(kAdmin)}) {
      const grpc::Status s = call(method, bad);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << method << " with authorization '" << bad << "'";
    }
    const grpc::Status ok = call(method, std::string("Bearer ") + kAdmin);
    EXPECT_NE(ok.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
    checked.insert(method);
  }
  EXPECT_EQ(checked.size(), static_cast<size_t>(svc->method_count()));
  for (const char* rpc : {"ListJobs", "CountJobs", "Query"}) {
    EXPECT_EQ(checked.count("/sluice.v1.Sluice/" + std::string(rpc)), 1u) << rpc;
  }
  // The refused calls wrote nothing: the only job-creating call that passed auth (an empty
  // Enqueue) is invalid, so no job exists.
  EXPECT_EQ(Metric("sluice_jobs_enqueued_total"), 0);
}

TEST_F(ServerTest, TenantBoundTokensSeeOnlyTheirTenant) {
  Start();
  MustEnqueue(kTokB, Spec("shared", "b-job"));
  // A's view of B's job is exactly the view of a job that does not exist.
  auto get_code = [&](const std::string& id) {
    v1::GetJobRequest r;
    r.set_id(id);
    v1::GetJobResponse o;
    auto ctx = Authed(kTokA);
    grpc::Status s = stub_->GetJob(ctx.get(), r, &o);
    return std::make_tuple(s.error_code(), SluiceCode(*ctx));
  };
  EXPECT_EQ(get_code("b-job"), get_code("never-existed"));
  EXPECT_EQ(std::get<0>(get_code("b-job")), grpc::StatusCode::NOT_FOUND);
  {
    v1::CancelJobRequest r;
    r.set_id("b-job");
    v1::CancelJobResponse o;
    auto ctx = Authed(kTokA);
    EXPECT_EQ(stub_->CancelJob(ctx.get(), r, &o).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // A leasing the same queue name sees none of B's tasks.
  EXPECT_EQ(Lease(kTokA, "shared").tasks_size(), 0);
  const v1::LeaseTasksResponse lb = Lease(kTokB, "shared");
  ASSERT_EQ(lb.tasks_size(), 1);
  // A cannot report or heartbeat B's task even with its token.
  {
    v1::ReportOutcomeRequest r;
    r.set_task_id(lb.tasks(0).task_id());
    r.set_lease_token(lb.tasks(0).lease_token());
    r.mutable_outcome()->mutable_success();
    v1::ReportOutcomeResponse o;
    auto ctx = Authed(kTokA);
    EXPECT_EQ(stub_->ReportOutcome(ctx.get(), r, &o).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  // The operator token acts for the tenant the request names.
  {
    v1::GetJobRequest r;
    r.set_tenant("tenant-b");
    r.set_id("b-job");
    v1::GetJobResponse o;
    auto ctx = Authed(kAdmin);
    ASSERT_TRUE(stub_->GetJob(ctx.get(), r, &o).ok());
    EXPECT_EQ(o.job().status(), v1::RUNNING) << "A's report changed nothing";
    EXPECT_EQ(o.job().tenant(), "tenant-b");
  }
}

TEST_F(ServerTest, PayloadCapAtLimitMinusOneLimitAndPlusOne) {
  constexpr uint64_t kCap = 64 * 1024;
  Start({"--max-payload-bytes", std::to_string(kCap)});
  for (uint64_t size : {kCap - 1, kCap, kCap + 1}) {
    v1::EnqueueRequest r;
    r.mutable_job()->set_queue("caps");
    r.mutable_job()->set_id("p" + std::to_string(size));
    r.mutable_job()->set_payload(std::string(size, 'x'));
    v1::EnqueueResponse o;
    auto ctx = Authed(kAdmin);
    grpc::Status s = stub_->Enqueue(ctx.get(), r, &o);
    if (size <= kCap) {
      EXPECT_TRUE(s.ok()) << size << ": " << s.error_message();
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << size;
      EXPECT_NE(s.error_message().find("payload"), std::string::npos) << s.error_message();
    }
  }
  // Nothing of the rejected call was written.
  v1::GetJobResponse gr;
  EXPECT_EQ(GetJob(kAdmin, "p" + std::to_string(kCap + 1), &gr).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Lease(kAdmin, "caps").tasks_size(), 2);
  EXPECT_EQ(Metric("sluice_jobs_enqueued_total"), 2);
}

TEST_F(ServerTest, MessagesOverTheMaxMessageSizeAreRefused) {
  Start({"--max-message-bytes", "65536", "--max-payload-bytes", "1048576"});
  v1::EnqueueRequest r;
  r.mutable_job()->set_queue("big");
  r.mutable_job()->set_payload(std::string(70'000, 'x'));
  v1::EnqueueResponse o;
  auto ctx = Authed(kAdmin);
  EXPECT_EQ(stub_->Enqueue(ctx.get(), r, &o).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Lease(kAdmin, "big").tasks_size(), 0);
}

TEST_F(ServerTest, WaitingLeaseReturnsWithinTenMillisecondsOfAnEnqueue) {
  Start({"--durability", "async"});
  std::vector<double> lags;
  for (int i = 0; i < 15; ++i) {
    const std::string queue = "wake-" + std::to_string(i);
    auto lease = std::async(std::launch::async, [&] {
      const v1::LeaseTasksResponse l = Lease(kAdmin, queue, 1, 5000);
      return std::make_pair(l.tasks_size(), steady_clock::now());
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the lease is waiting
    MustEnqueue(kAdmin, Spec(queue));
    const auto acked = steady_clock::now();
    auto [n, returned] = lease.get();
    ASSERT_EQ(n, 1);
    lags.push_back(std::chrono::duration<double, std::milli>(returned - acked).count());
  }
  std::sort(lags.begin(), lags.end());
  EXPECT_LE(lags[lags.size() / 2], 10.0) << "median wake-up lag";
  EXPECT_LE(lags.back(), 50.0) << "worst wake-up lag";
}

// Long-poll waits and writes that wait for fsync run on separate pools of --max-threads threads
// each: with every wait thread taken (and more long-polls queued for one), a sync-durability
// enqueue is still answered at once, the queued long-polls are served when a thread frees up,
// and a waiting long-poll still wakes for its job.
TEST_F(ServerTest, WaitingWorkersNeverHoldUpWrites) {
  Start({"--durability", "sync", "--max-threads", "3"});
  std::vector<std::future<std::pair<int, steady_clock::time_point>>> polls;
  const auto t0 = steady_clock::now();
  for (int i = 0; i < 5; ++i) {  // 3 hold the wait threads, 2 queue for one
    polls.push_back(std::async(std::launch::async, [&, i] {
      const v1::LeaseTasksResponse l = Lease(kAdmin, "idle-" + std::to_string(i), 1, 1500);
      return std::make_pair(l.tasks_size(), steady_clock::now());
    }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // all five are in
  const auto e0 = steady_clock::now();
  MustEnqueue(kAdmin, Spec("busy"));
  const double enqueue_ms =
      std::chrono::duration<double, std::milli>(steady_clock::now() - e0).count();
  EXPECT_LT(enqueue_ms, 500.0) << "a write waited behind the long-polls";
  // A job for one of the waiting polls wakes it (it holds a wait thread or gets one).
  MustEnqueue(kAdmin, Spec("idle-0"));
  int got = 0;
  for (auto& p : polls) {
    auto [n, returned] = p.get();
    got += n;
    // A queued poll's deadline runs from its arrival: it ends soon after a thread frees up.
    const double ended_ms = std::chrono::duration<double, std::milli>(returned - t0).count();
    EXPECT_LT(ended_ms, 3 * 1500.0 + 1000);
  }
  EXPECT_EQ(got, 1);
  EXPECT_EQ(Lease(kAdmin, "busy", 10, 0).tasks_size(), 1);
}

TEST_F(ServerTest, MetricsCountersMoveAndHealthEndpointsAnswer) {
  Start();
  std::string body;
  EXPECT_EQ(server_->HttpGet("/healthz", &body), 200);
  EXPECT_EQ(server_->HttpGet("/readyz", &body), 200);
  MustEnqueue(kAdmin, Spec("m"));
  MustEnqueue(kAdmin, Spec("m"));
  EXPECT_EQ(Metric("sluice_jobs_enqueued_total"), 2);
  EXPECT_EQ(Metric("sluice_queue_depth", {"tenant=\"\"", "queue=\"m\"", "state=\"waiting\""}), 2);
  EXPECT_EQ(Lease(kAdmin, "m").tasks_size(), 2);
  EXPECT_EQ(Metric("sluice_tasks_leased_total"), 2);
  EXPECT_EQ(Metric("sluice_running_tasks"), 2);
  EXPECT_GE(Metric("sluice_rpc_duration_seconds_count", {"method=\"Enqueue\"", "code=\"OK\""}), 2);
}

// LeaseStream: requests are answered one each, in order, also when the worker sends several
// before reading; reports ride on them like on LeaseTasks.
TEST_F(ServerTest, LeaseStreamAnswersPipelinedRequestsInOrder) {
  for (const std::string dur : {"async", "sync"}) {  // inline, and on the write pool
    SCOPED_TRACE(dur);
    server_.reset();
    Start({"--durability", dur});
    const std::string q = "ls-" + dur;
    for (int i = 0; i < 12; ++i) MustEnqueue(kAdmin, Spec(q, q + std::to_string(i)));
    auto ctx = Authed(kAdmin, 30'000);
    auto stream = stub_->LeaseStream(ctx.get());
    for (uint32_t n : {2u, 3u, 4u}) {
      v1::LeaseTasksRequest req = LeaseReq(q, n);
      ASSERT_TRUE(stream->Write(req));
    }
    std::vector<v1::Task> tasks;
    for (int n : {2, 3, 4}) {
      v1::LeaseTasksResponse resp;
      ASSERT_TRUE(stream->Read(&resp));
      EXPECT_EQ(resp.tasks_size(), n);
      EXPECT_EQ(resp.report_statuses_size(), 0);
      tasks.insert(tasks.end(), resp.tasks().begin(), resp.tasks().end());
    }
    // Report the 9 (one of them twice: its second report is refused) and lease 5 more: only 3
    // are left.
    v1::LeaseTasksRequest req = LeaseReq(q, 5);
    for (size_t i = 0; i <= tasks.size(); ++i) {
      const v1::Task& t = tasks[std::min(i, tasks.size() - 1)];
      v1::ReportOutcomeRequest* r = req.add_reports();
      r->set_task_id(t.task_id());
      r->set_lease_token(t.lease_token());
      r->mutable_outcome()->mutable_success();
    }
    ASSERT_TRUE(stream->Write(req));
    v1::LeaseTasksResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.tasks_size(), 3);
    ASSERT_EQ(resp.report_statuses_size(), 10);
    for (int i = 0; i < 9; ++i) EXPECT_EQ(resp.report_statuses(i).code(), 0) << i;
    EXPECT_EQ(resp.report_statuses(9).sluice_code(), "lease_lost");
    ASSERT_TRUE(stream->WritesDone());
    EXPECT_FALSE(stream->Read(&resp));
    const grpc::Status st = stream->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    std::set<std::string> ids;
    for (const v1::Task& t : tasks) ids.insert(t.job_id());
    EXPECT_EQ(ids.size(), 9u);
    for (const std::string& id : ids) {
      v1::GetJobResponse gr;
      ASSERT_TRUE(GetJob(kAdmin, id, &gr).ok());
      EXPECT_EQ(gr.job().status(), v1::SUCCEEDED) << id;
    }
  }
}

// A request that fails ends the stream with its status and sluice-code; the requests after it
// are not applied.
TEST_F(ServerTest, LeaseStreamEndsWithTheStatusOfAFailedRequest) {
  Start({"--durability", "async"});
  MustEnqueue(kAdmin, Spec("lf", "lf-1"));
  auto ctx = Authed(kAdmin, 30'000);
  auto stream = stub_->LeaseStream(ctx.get());
  const v1::LeaseTasksRequest bad = LeaseReq("lf", 0);  // max_tasks 0: invalid
  const v1::LeaseTasksRequest good = LeaseReq("lf", 1);
  ASSERT_TRUE(stream->Write(good));
  v1::LeaseTasksResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.tasks_size(), 1);  // the only job
  MustEnqueue(kAdmin, Spec("lf", "lf-2"));
  stream->Write(bad);
  stream->Write(good);  // never applied: lf-2 stays waiting
  stream->WritesDone();
  EXPECT_FALSE(stream->Read(&resp));
  const grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_EQ(SluiceCode(*ctx), "invalid_argument");
  v1::GetJobResponse gr;
  ASSERT_TRUE(GetJob(kAdmin, "lf-2", &gr).ok());
  EXPECT_EQ(gr.job().status(), v1::WAITING);
  // A stream without a valid token is refused.
  auto anon = std::make_unique<grpc::ClientContext>();
  auto refused = stub_->LeaseStream(anon.get());
  refused->Write(good);
  refused->WritesDone();
  EXPECT_FALSE(refused->Read(&resp));
  EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// A waiting request wakes for an enqueue like LeaseTasks does, and a request sent behind a
// waiting one ends that wait early.
TEST_F(ServerTest, LeaseStreamWaitsWakeOnEnqueueAndEndForANewerRequest) {
  Start({"--durability", "async"});
  auto ctx = Authed(kAdmin, 60'000);
  auto stream = stub_->LeaseStream(ctx.get());
  v1::LeaseTasksRequest wait = LeaseReq("lw", 1, 20'000);
  ASSERT_TRUE(stream->Write(wait));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // it waits
  MustEnqueue(kAdmin, Spec("lw"));
  const auto acked = steady_clock::now();
  v1::LeaseTasksResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.tasks_size(), 1);
  EXPECT_LT(MsSince(acked), 50.0);
  // Cut short: a second request sent 100 ms into a 20 s wait.
  ASSERT_TRUE(stream->Write(wait));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = steady_clock::now();
  v1::LeaseTasksRequest now = wait;
  now.set_wait_ms(0);
  ASSERT_TRUE(stream->Write(now));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.tasks_size(), 0);
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.tasks_size(), 0);
  EXPECT_LT(MsSince(t0), 1000.0);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// A client that sends requests but does not read its answers stops being read once a few are
// in flight: the server does not lease for it, nor buffer the answers, without bound.
TEST_F(ServerTest, LeaseStreamStopsReadingAClientThatReadsNoAnswers) {
  Start({"--durability", "async"});
  // 256 KiB per task: the client's receive window (a few MiB) holds a dozen or so answers.
  const std::string big(256 << 10, 'p');
  constexpr int kJobs = 100;
  for (int i = 0; i < kJobs; i += 25) {
    v1::EnqueueBatchRequest req;
    for (int k = 0; k < 25; ++k) {
      v1::JobSpec* j = req.add_jobs();
      *j = Spec("lr", "lr-" + std::to_string(i + k));
      j->set_payload(big);
    }
    v1::EnqueueBatchResponse resp;
    auto ctx = Authed(kAdmin);
    ASSERT_TRUE(stub_->EnqueueBatch(ctx.get(), req, &resp).ok());
  }
  auto ctx = Authed(kAdmin, 60'000);
  auto stream = stub_->LeaseStream(ctx.get());
  for (int i = 0; i < kJobs; ++i) ASSERT_TRUE(stream->Write(LeaseReq("lr", 1)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  const double leased = Metric("sluice_running_tasks");
  EXPECT_GT(leased, 0);
  EXPECT_LE(leased, kJobs / 2) << "leased for requests whose answers nobody reads";
  // Reading resumes the stream: every request is answered, in order.
  int answered = 0;
  v1::LeaseTasksResponse resp;
  while (answered < kJobs && stream->Read(&resp)) {
    EXPECT_EQ(resp.tasks_size(), 1);
    ++answered;
  }
  EXPECT_EQ(answered, kJobs);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// Draining ends an idle lease stream at once (OK: it answered every request it took) instead of
// holding the drain.
TEST_F(ServerTest, SigtermEndsIdleLeaseStreams) {
  Start({"--drain-timeout-ms", "10000"});
  auto ctx = Authed(kAdmin, 60'000);
  auto stream = stub_->LeaseStream(ctx.get());
  v1::LeaseTasksRequest req = LeaseReq("ld", 1);
  ASSERT_TRUE(stream->Write(req));
  v1::LeaseTasksResponse resp;
  ASSERT_TRUE(stream->Read(&resp));  // open and idle now
  // A second stream has a request waiting: it is answered (empty) before its stream ends.
  auto ctx2 = Authed(kAdmin, 60'000);
  auto waiting = stub_->LeaseStream(ctx2.get());
  req.set_wait_ms(30'000);
  ASSERT_TRUE(waiting->Write(req));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto t0 = steady_clock::now();
  EXPECT_EQ(server_->Terminate(), 0);
  EXPECT_LT(MsSince(t0), 3000.0);
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::OK);
  ASSERT_TRUE(waiting->Read(&resp));
  EXPECT_EQ(resp.tasks_size(), 0);
  EXPECT_FALSE(waiting->Read(&resp));
  EXPECT_EQ(waiting->Finish().error_code(), grpc::StatusCode::OK);
}

TEST_F(ServerTest, SigtermEndsLongPollsAndDrainsCleanly) {
  Start({"--drain-timeout-ms", "5000"});
  MustEnqueue(kAdmin, Spec("kept", "kept-job"));
  auto lease = std::async(std::launch::async, [&] {
    v1::LeaseTasksRequest req;
    req.set_queue("idle");
    req.set_worker_id("w");
    req.set_max_tasks(1);
    req.set_wait_ms(30'000);
    v1::LeaseTasksResponse resp;
    auto ctx = Authed(kAdmin, 60'000);
    grpc::Status s = stub_->LeaseTasks(ctx.get(), req, &resp);
    return s.error_code();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = steady_clock::now();
  EXPECT_EQ(server_->Terminate(), 0);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();
  EXPECT_LT(ms, 3000) << "the long-poll ended early instead of holding the drain";
  const grpc::StatusCode code = lease.get();
  EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::UNAVAILABLE) << code;
  // The data survives the restart.
  Start();
  v1::GetJobResponse gr;
  ASSERT_TRUE(GetJob(kAdmin, "kept-job", &gr).ok());
  EXPECT_EQ(gr.job().status(), v1::WAITING);
}

TEST_F(ServerTest, ConfigFileEnvironmentAndFlagsInThatPrecedence) {
  const std::string conf = dir_ + "/sluiced.conf";
  {
    std::ofstream out(conf);
    out << "# comment\n"
        << "durability = \"async\"\n"
        << "max-payload-bytes = 2048\n"
        << "max-result-bytes = 3000\n"
        << "query-timeout-ms = 1234\n";
  }
  ::setenv("SLUICE_MAX_PAYLOAD_BYTES", "4096", 1);          // env beats the file
  Start({"--config", conf, "--max-result-bytes", "5000"});  // a flag beats the file
  ::unsetenv("SLUICE_MAX_PAYLOAD_BYTES");
  v1::GetNodeInfoResponse info;
  auto ctx = Authed(kAdmin);
  ASSERT_TRUE(stub_->GetNodeInfo(ctx.get(), v1::GetNodeInfoRequest(), &info).ok());
  EXPECT_EQ(info.durability(), "async");
  EXPECT_EQ(info.limits().max_payload_bytes(), 4096u);
  EXPECT_EQ(info.limits().max_result_bytes(), 5000u);
  EXPECT_EQ(info.limits().query_timeout_ms(), 1234u);
  EXPECT_EQ(info.limits().query_max_rows(), 10'000u);
  EXPECT_EQ(info.limits().query_max_result_bytes(), 4u << 20);
  EXPECT_EQ(info.limits().max_list_page(), 1000u);
  EXPECT_EQ(info.limits().max_query_bytes(), 64u << 10);
  EXPECT_EQ(info.version(), SLUICE_VERSION);
  EXPECT_FALSE(info.node_id().empty());
}

TEST_F(ServerTest, NoConfiguredTokenGeneratesAnOperatorTokenInTheDataDirectory) {
  server_ = std::make_unique<SluicedProcess>(dir_ + "/node", std::vector<std::string>{});
  ASSERT_TRUE(server_->ok()) << server_->failure();
  stub_ = server_->Stub();
  std::ifstream in(dir_ + "/node/admin.token");
  std::string token;
  ASSERT_TRUE(std::getline(in, token));
  EXPECT_GE(token.size(), 32u);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/node/admin.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  v1::GetNodeInfoResponse info;
  auto ok = Authed(token);
  EXPECT_TRUE(stub_->GetNodeInfo(ok.get(), v1::GetNodeInfoRequest(), &info).ok());
  grpc::ClientContext none;
  EXPECT_EQ(stub_->GetNodeInfo(&none, v1::GetNodeInfoRequest(), &info).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerTest, BadOptionsExitWithCodeTwo) {
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--durability", "sometimes"},
                                              std::vector<std::string>{"--token", "short"},
                                              std::vector<std::string>{"--query-timeout-ms", "0"},
                                              std::vector<std::string>{"--tls-cert", "/x.pem"}}) {
    SluicedProcess p(dir_ + "/bad", bad);
    EXPECT_FALSE(p.ok()) << bad[0];
    EXPECT_NE(p.failure().find("status 512"), std::string::npos) << p.failure();  // exit 2
  }
}

// ---- Finding jobs: ListJobs, CountJobs, Query -----------------------------------------------

// Ten jobs over two queues with metadata, states and creation times to filter on.
TEST_F(ServerTest, ListJobsFiltersByQueueStatusMetadataIdAndTime) {
  Start({"--durability", "async"});
  std::vector<std::string> mail;
  for (int i = 0; i < 6; ++i) {
    v1::JobSpec s = Spec("mail", "mail-" + std::to_string(i));
    s.set_payload("body-" + std::to_string(i));
    (*s.mutable_metadata())["customer"] = i % 2 == 0 ? "even" : "odd";
    (*s.mutable_metadata())["region"] = i < 3 ? "eu" : "us";
    MustEnqueue(kAdmin, s);
    mail.push_back(s.id());
    std::this_thread::sleep_for(std::chrono::milliseconds(3));  // distinct created_ms
  }
  for (int i = 0; i < 3; ++i) MustEnqueue(kAdmin, Spec("sms", "sms-" + std::to_string(i)));
  v1::JobSpec later = Spec("sms", "sms-later");
  later.set_start_at_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count() +
                        3'600'000);
  MustEnqueue(kAdmin, later);
  // mail-0 runs, mail-1 succeeds, mail-2 is cancelled; the rest of mail waits.
  const v1::LeaseTasksResponse l = Lease(kAdmin, "mail", 2);
  ASSERT_EQ(l.tasks_size(), 2);
  {
    v1::ReportOutcomeRequest rep;
    rep.set_task_id(l.tasks(1).task_id());
    rep.set_lease_token(l.tasks(1).lease_token());
    rep.mutable_outcome()->mutable_success();
    v1::ReportOutcomeResponse r;
    auto ctx = Authed(kAdmin);
    ASSERT_TRUE(stub_->ReportOutcome(ctx.get(), rep, &r).ok());
    v1::CancelJobRequest c;
    c.set_id("mail-2");
    v1::CancelJobResponse cr;
    auto c2 = Authed(kAdmin);
    ASSERT_TRUE(stub_->CancelJob(c2.get(), c, &cr).ok());
  }
  using Names = std::vector<std::string>;
  auto list = [&](const std::function<void(v1::ListJobsRequest*)>& f) {
    v1::ListJobsRequest req;
    f(&req);
    return Ids(ListAll(kAdmin, req));
  };
  // Everything, in creation order; then newest first.
  EXPECT_EQ(list([](auto*) {}), (Names{"mail-0", "mail-1", "mail-2", "mail-3", "mail-4", "mail-5",
                                       "sms-0", "sms-1", "sms-2", "sms-later"}))
      << "creation order, then enqueue order";
  EXPECT_EQ(list([](auto* r) { r->set_newest_first(true); }),
            (Names{"sms-later", "sms-2", "sms-1", "sms-0", "mail-5", "mail-4", "mail-3", "mail-2",
                   "mail-1", "mail-0"}));
  EXPECT_EQ(list([](auto* r) { r->set_queue("mail"); }), mail);
  // Statuses (waiting vs scheduled is derived from the clock).
  EXPECT_EQ(list([](auto* r) {
              r->set_queue("mail");
              r->add_statuses(v1::WAITING);
            }),
            (Names{"mail-3", "mail-4", "mail-5"}));
  EXPECT_EQ(list([](auto* r) {
              r->add_statuses(v1::RUNNING);
              r->add_statuses(v1::SUCCEEDED);
              r->add_statuses(v1::CANCELLED);
            }),
            (Names{"mail-0", "mail-1", "mail-2"}));
  EXPECT_EQ(list([](auto* r) { r->add_statuses(v1::SCHEDULED); }), (Names{"sms-later"}));
  EXPECT_EQ(list([](auto* r) { r->add_statuses(v1::FAILED); }), Names{});
  // Metadata pairs: every pair must match.
  EXPECT_EQ(list([](auto* r) {
              auto* m = r->add_metadata();
              m->set_key("customer");
              m->set_value("even");
            }),
            (Names{"mail-0", "mail-2", "mail-4"}));
  EXPECT_EQ(list([](auto* r) {
              auto* m = r->add_metadata();
              m->set_key("customer");
              m->set_value("even");
              auto* m2 = r->add_metadata();
              m2->set_key("region");
              m2->set_value("us");
            }),
            (Names{"mail-4"}));
  // Ids.
  EXPECT_EQ(list([](auto* r) { r->set_id("sms-1"); }), (Names{"sms-1"}));
  EXPECT_EQ(list([](auto* r) { r->set_id("no-such-job"); }), Names{});
  EXPECT_EQ(list([](auto* r) { r->set_id_prefix("sms-"); }),
            (Names{"sms-0", "sms-1", "sms-2", "sms-later"}));
  // Creation time: [from, to), 0 = unbounded.
  v1::ListJobsRequest all;
  all.set_queue("mail");
  const std::vector<v1::Job> jobs = ListAll(kAdmin, all);
  ASSERT_EQ(jobs.size(), 6u);
  const int64_t t3 = jobs[3].created_ms();
  Names from;
  Names before;
  for (const v1::Job& j : jobs) (j.created_ms() >= t3 ? from : before).push_back(j.id());
  EXPECT_EQ(list([&](auto* r) {
              r->set_queue("mail");
              r->set_created_from_ms(t3);
            }),
            from);
  EXPECT_EQ(list([&](auto* r) {
              r->set_queue("mail");
              r->set_created_to_ms(t3);
            }),
            before);
  EXPECT_FALSE(from.empty());
  EXPECT_FALSE(before.empty());
}

TEST_F(ServerTest, ListJobsViewsAndPagingWithACursor) {
  Start({"--durability", "async"});
  std::vector<std::string> ids;
  for (int i = 0; i < 23; ++i) {
    v1::JobSpec s = Spec("paged", "p-" + std::string(i < 10 ? "0" : "") + std::to_string(i));
    s.set_payload("payload-" + std::to_string(i));
    (*s.mutable_metadata())["k"] = "v";
    MustEnqueue(kAdmin, s);
    ids.push_back(s.id());
  }
  // Pages of 5: every job once, in order, and the last page ends the listing.
  v1::ListJobsRequest req;
  req.set_queue("paged");
  req.set_limit(5);
  int pages = 0;
  std::vector<v1::Job> got = ListAll(kAdmin, req, &pages);
  EXPECT_EQ(Ids(got), ids);
  EXPECT_GE(pages, 5);
  {
    v1::ListJobsResponse first;
    ASSERT_TRUE(List(kAdmin, req, &first).ok());
    EXPECT_EQ(first.jobs_size(), 5);
    EXPECT_FALSE(first.next_cursor().empty());
    EXPECT_GT(first.keys_visited(), 0u);
    // A cursor only works with the filter and order that produced it.
    v1::ListJobsRequest other = req;
    other.set_cursor(first.next_cursor());
    other.set_newest_first(true);
    v1::ListJobsResponse o;
    auto ctx = Authed(kAdmin);
    EXPECT_EQ(stub_->ListJobs(ctx.get(), other, &o).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(SluiceCode(*ctx), "invalid_argument");
  }
  // Writes between pages neither skip nor repeat jobs that match throughout.
  {
    v1::ListJobsRequest r = req;
    std::vector<std::string> seen;
    for (int page = 0; page < 100; ++page) {
      v1::ListJobsResponse resp;
      ASSERT_TRUE(List(kAdmin, r, &resp).ok());
      for (const v1::Job& j : resp.jobs()) seen.push_back(j.id());
      if (page == 0) MustEnqueue(kAdmin, Spec("paged", "p-99-new"));
      if (resp.next_cursor().empty()) break;
      r.set_cursor(resp.next_cursor());
    }
    std::vector<std::string> want = ids;
    want.push_back("p-99-new");
    EXPECT_EQ(seen, want);
  }
  // Views: SUMMARY (default) has no payload, INDEX only id/queue/status/created, FULL all.
  req.set_limit(1);
  req.set_id("p-03");
  v1::ListJobsResponse summary;
  ASSERT_TRUE(List(kAdmin, req, &summary).ok());
  ASSERT_EQ(summary.jobs_size(), 1);
  EXPECT_EQ(summary.jobs(0).payload(), "");
  EXPECT_EQ(summary.jobs(0).metadata().at("k"), "v");
  EXPECT_EQ(summary.jobs(0).priority(), 50u);
  EXPECT_EQ(summary.jobs(0).status(), v1::WAITING);
  req.set_view(v1::ListJobsRequest::INDEX);
  v1::ListJobsResponse index;
  ASSERT_TRUE(List(kAdmin, req, &index).ok());
  ASSERT_EQ(index.jobs_size(), 1);
  EXPECT_EQ(index.jobs(0).id(), "p-03");
  EXPECT_EQ(index.jobs(0).queue(), "paged");
  EXPECT_EQ(index.jobs(0).status(), v1::WAITING);
  EXPECT_EQ(index.jobs(0).created_ms(), summary.jobs(0).created_ms());
  EXPECT_TRUE(index.jobs(0).metadata().empty()) << "the index view reads no record";
  req.set_view(v1::ListJobsRequest::FULL);
  v1::ListJobsResponse full;
  ASSERT_TRUE(List(kAdmin, req, &full).ok());
  ASSERT_EQ(full.jobs_size(), 1);
  EXPECT_EQ(full.jobs(0).payload(), "payload-3");
  EXPECT_EQ(full.jobs(0).attempts_size(), 0) << "attempts are never listed";
  // Bad input: an unknown status, a cursor the server never handed out.
  {
    v1::ListJobsRequest bad;
    bad.add_statuses(v1::JOB_STATUS_UNSPECIFIED);
    v1::ListJobsResponse o;
    auto ctx = Authed(kAdmin);
    EXPECT_EQ(stub_->ListJobs(ctx.get(), bad, &o).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(SluiceCode(*ctx), "invalid_argument");
  }
  {
    v1::ListJobsRequest bad;
    bad.set_cursor("not a cursor!");
    v1::ListJobsResponse o;
    auto ctx = Authed(kAdmin);
    EXPECT_EQ(stub_->ListJobs(ctx.get(), bad, &o).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

// A batch of more than 16 jobs runs on the write pool in async durability too (decisions §71):
// results in order, a bad job refuses the whole batch with nothing enqueued, and a lease stream
// keeps working while batches are taken.
TEST_F(ServerTest, BigEnqueueBatchesRunOffTheCallbackThreads) {
  Start({"--durability", "async"});
  auto stream_ctx = Authed(kAdmin, 30'000);
  auto stream = stub_->LeaseStream(stream_ctx.get());
  size_t leased = 0;
  for (int size : {16, 17, 200}) {
    SCOPED_TRACE(size);
    v1::EnqueueBatchRequest batch;
    for (int i = 0; i < size; ++i) {
      *batch.add_jobs() = Spec("big", "b" + std::to_string(size) + "-" + std::to_string(i));
    }
    v1::EnqueueBatchResponse br;
    auto ctx = Authed(kAdmin);
    ASSERT_TRUE(stub_->EnqueueBatch(ctx.get(), batch, &br).ok());
    ASSERT_EQ(br.results_size(), size);
    for (int i = 0; i < size; ++i) {
      EXPECT_EQ(br.results(i).id(), batch.jobs(i).id());
      EXPECT_TRUE(br.results(i).created()) << i;
    }
    // The same batch again: every id exists, nothing new (idempotent enqueue).
    v1::EnqueueBatchResponse again;
    auto ctx2 = Authed(kAdmin);
    ASSERT_TRUE(stub_->EnqueueBatch(ctx2.get(), batch, &again).ok());
    ASSERT_EQ(again.results_size(), size);
    for (int i = 0; i < size; ++i) EXPECT_FALSE(again.results(i).created()) << i;
    // A bad job at the end refuses the batch: none of its jobs is stored.
    v1::EnqueueBatchRequest bad;
    for (int i = 0; i < size; ++i) {
      *bad.add_jobs() = Spec("big", "bad" + std::to_string(size) + "-" + std::to_string(i));
    }
    bad.mutable_jobs(size - 1)->set_queue("");
    v1::EnqueueBatchResponse none;
    auto ctx3 = Authed(kAdmin);
    EXPECT_EQ(stub_->EnqueueBatch(ctx3.get(), bad, &none).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    v1::GetJobResponse gr;
    EXPECT_EQ(GetJob(kAdmin, bad.jobs(0).id(), &gr).error_code(), grpc::StatusCode::NOT_FOUND);
    // The stream leases what the batch stored.
    v1::LeaseTasksRequest req = LeaseReq("big", 1000);
    ASSERT_TRUE(stream->Write(req));
    v1::LeaseTasksResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.tasks_size(), size);
    leased += static_cast<size_t>(resp.tasks_size());
  }
  EXPECT_EQ(leased, 16u + 17u + 200u);
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ServerTest, ListJobsPageSizesAreCapped) {
  // FULL pages also fit max_message_bytes / max_payload_bytes = 4 maximal payloads.
  Start({"--durability", "async", "--max-list-page", "7", "--max-message-bytes", "65536",
         "--max-payload-bytes", "16384"});
  std::vector<v1::JobSpec> specs;
  v1::EnqueueBatchRequest batch;
  for (int i = 0; i < 12; ++i) {
    v1::JobSpec* j = batch.add_jobs();
    j->set_queue("capped");
    j->set_payload(std::string(1000, 'x'));
  }
  v1::EnqueueBatchResponse br;
  auto ctx = Authed(kAdmin);
  ASSERT_TRUE(stub_->EnqueueBatch(ctx.get(), batch, &br).ok());
  v1::ListJobsRequest req;
  req.set_limit(1000);
  v1::ListJobsResponse page;
  ASSERT_TRUE(List(kAdmin, req, &page).ok());
  EXPECT_LE(page.jobs_size(), 7);
  EXPECT_GE(page.jobs_size(), 1);
  req.set_view(v1::ListJobsRequest::FULL);
  v1::ListJobsResponse full;
  ASSERT_TRUE(List(kAdmin, req, &full).ok());
  EXPECT_LE(full.jobs_size(), 4);
  EXPECT_GE(full.jobs_size(), 1);
  req.set_limit(0);  // the default page (50) capped at 7
  EXPECT_EQ(ListAll(kAdmin, req).size(), 12u);
}

TEST_F(ServerTest, CountJobsByQueueAndStatus) {
  Start({"--durability", "async"});
  for (int i = 0; i < 6; ++i) MustEnqueue(kAdmin, Spec("a", "a-" + std::to_string(i)));
  v1::JobSpec later = Spec("a", "a-later");
  later.set_start_at_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count() +
                        3'600'000);
  MustEnqueue(kAdmin, later);
  MustEnqueue(kAdmin, Spec("b", "b-0"));
  // a: 3 leased -> 1 running, 1 succeeded, 1 failed; 1 cancelled; 2 waiting; 1 scheduled.
  const v1::LeaseTasksResponse l = Lease(kAdmin, "a", 3);
  ASSERT_EQ(l.tasks_size(), 3);
  auto report = [&](const v1::Task& t, bool ok) {
    v1::ReportOutcomeRequest rep;
    rep.set_task_id(t.task_id());
    rep.set_lease_token(t.lease_token());
    if (ok) {
      rep.mutable_outcome()->mutable_success();
    } else {
      rep.mutable_outcome()->mutable_failure()->mutable_error()->set_code("boom");
      rep.mutable_outcome()->mutable_failure()->set_no_retry(true);
    }
    v1::ReportOutcomeResponse r;
    auto ctx = Authed(kAdmin);
    ASSERT_TRUE(stub_->ReportOutcome(ctx.get(), rep, &r).ok());
  };
  report(l.tasks(1), true);
  report(l.tasks(2), false);
  {
    v1::CancelJobRequest c;
    c.set_id("a-5");
    v1::CancelJobResponse cr;
    auto ctx = Authed(kAdmin);
    ASSERT_TRUE(stub_->CancelJob(ctx.get(), c, &cr).ok());
  }
  auto count = [&](const std::string& queue) {
    v1::CountJobsRequest req;
    req.set_queue(queue);
    v1::CountJobsResponse resp;
    auto ctx = Authed(kAdmin);
    const grpc::Status s = stub_->CountJobs(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  };
  const v1::CountJobsResponse a = count("a");
  ASSERT_EQ(a.queues_size(), 1);
  const v1::QueueCounts& qa = a.queues(0);
  EXPECT_EQ(qa.queue(), "a");
  EXPECT_EQ(qa.waiting(), 2u);
  EXPECT_EQ(qa.scheduled(), 1u);
  EXPECT_EQ(qa.running(), 1u);
  EXPECT_EQ(qa.succeeded(), 1u);
  EXPECT_EQ(qa.failed(), 1u);
  EXPECT_EQ(qa.cancelled(), 1u);
  const v1::CountJobsResponse every = count("");
  ASSERT_EQ(every.queues_size(), 2);
  EXPECT_EQ(every.queues(0).queue(), "a");
  EXPECT_EQ(every.queues(0).SerializeAsString(), qa.SerializeAsString());
  EXPECT_EQ(every.queues(1).queue(), "b");
  EXPECT_EQ(every.queues(1).waiting(), 1u);
}

TEST_F(ServerTest, QueryReturnsTypedRows) {
  Start({"--durability", "async"});
  v1::QueryResponse r;
  ASSERT_TRUE(RunQuery(kAdmin,
                       "SELECT 1 AS i, 2.5 AS r, 'h\xc3\xa9llo' AS t, x'00ff' AS b, NULL AS n, "
                       "9007199254740993 AS big, -9223372036854775808 AS minimum",
                       &r)
                  .ok());
  ASSERT_EQ(r.columns_size(), 7);
  EXPECT_EQ(r.columns(0), "i");
  EXPECT_EQ(r.columns(6), "minimum");
  ASSERT_EQ(r.rows_size(), 1);
  const v1::QueryRow& row = r.rows(0);
  ASSERT_EQ(row.values_size(), 7);
  EXPECT_EQ(row.values(0).value_case(), v1::QueryValue::kInteger);
  EXPECT_EQ(row.values(0).integer(), 1);
  EXPECT_EQ(row.values(1).value_case(), v1::QueryValue::kReal);
  EXPECT_EQ(row.values(1).real(), 2.5);
  EXPECT_EQ(row.values(2).value_case(), v1::QueryValue::kText);
  EXPECT_EQ(row.values(2).text(), "h\xc3\xa9llo");
  EXPECT_EQ(row.values(3).value_case(), v1::QueryValue::kBlob);
  EXPECT_EQ(row.values(3).blob(), std::string("\x00\xff", 2));
  EXPECT_EQ(row.values(4).value_case(), v1::QueryValue::kNull);
  EXPECT_EQ(row.values(5).integer(), 9007199254740993);
  EXPECT_EQ(row.values(6).integer(), std::numeric_limits<int64_t>::min());
  // TEXT that is not UTF-8 cannot travel in a proto string: it arrives as a blob.
  ASSERT_TRUE(RunQuery(kAdmin, "SELECT CAST(x'ff00fe' AS TEXT)", &r).ok());
  ASSERT_EQ(r.rows_size(), 1);
  EXPECT_EQ(r.rows(0).values(0).value_case(), v1::QueryValue::kBlob);
  EXPECT_EQ(r.rows(0).values(0).blob(), std::string("\xff\x00\xfe", 3));
  // The tables: jobs of the tenant.
  MustEnqueue(kAdmin, Spec("qq", "q-1"));
  MustEnqueue(kAdmin, Spec("qq", "q-2"));
  ASSERT_TRUE(RunQuery(kAdmin, "SELECT id, queue FROM jobs ORDER BY id", &r).ok());
  ASSERT_EQ(r.rows_size(), 2);
  EXPECT_EQ(r.rows(0).values(0).text(), "q-1");
  EXPECT_EQ(r.rows(1).values(0).text(), "q-2");
  EXPECT_EQ(r.rows(1).values(1).text(), "qq");
  EXPECT_GT(r.keys_visited(), 0u);
  // Bad SQL and writes are invalid_argument.
  std::string code;
  EXPECT_EQ(RunQuery(kAdmin, "SELEKT nothing", &r, 0, 0, 10'000, &code).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code, "invalid_argument");
  EXPECT_EQ(RunQuery(kAdmin, "DELETE FROM jobs", &r, 0, 0, 10'000, &code).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code, "invalid_argument");
  EXPECT_EQ(RunQuery(kAdmin, "", &r, 0, 0, 10'000, &code).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(RunQuery(kAdmin, "SELECT count(*) FROM jobs", &r).ok());
  EXPECT_EQ(r.rows(0).values(0).integer(), 2) << "the refused write changed nothing";
  EXPECT_EQ(Queries("ok"), 4);
  EXPECT_EQ(Queries("invalid"), 3);
  EXPECT_EQ(Queries("timeout"), 0);
}

TEST_F(ServerTest, ListCountAndQuerySeeOnlyTheTokensTenant) {
  Start({"--durability", "async"});
  MustEnqueue(kTokB, Spec("shared", "b-1"));
  MustEnqueue(kTokB, Spec("shared", "b-2"));
  MustEnqueue(kTokA, Spec("shared", "a-1"));
  // ListJobs.
  v1::ListJobsRequest req;
  EXPECT_EQ(Ids(ListAll(kTokA, req)), std::vector<std::string>{"a-1"});
  req.set_id("b-1");
  EXPECT_TRUE(ListAll(kTokA, req).empty()) << "B's id looks like a missing one";
  req.clear_id();
  req.set_id_prefix("b-");
  EXPECT_TRUE(ListAll(kTokA, req).empty());
  req.clear_id_prefix();
  req.set_tenant("tenant-b");
  {
    v1::ListJobsResponse o;
    auto ctx = Authed(kTokA);
    EXPECT_EQ(stub_->ListJobs(ctx.get(), req, &o).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(SluiceCode(*ctx), "permission_denied");
  }
  EXPECT_EQ(Ids(ListAll(kAdmin, req)), (std::vector<std::string>{"b-1", "b-2"}))
      << "the operator acts for the tenant it names";
  // CountJobs.
  auto count = [&](const std::string& token, const std::string& tenant, grpc::Status* st) {
    v1::CountJobsRequest r;
    r.set_tenant(tenant);
    v1::CountJobsResponse resp;
    auto ctx = Authed(token);
    *st = stub_->CountJobs(ctx.get(), r, &resp);
    return resp;
  };
  grpc::Status st;
  v1::CountJobsResponse ca = count(kTokA, "", &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(ca.queues_size(), 1);
  EXPECT_EQ(ca.queues(0).waiting(), 1u);
  count(kTokA, "tenant-b", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::CountJobsResponse cb = count(kAdmin, "tenant-b", &st);
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(cb.queues_size(), 1);
  EXPECT_EQ(cb.queues(0).waiting(), 2u);
  // Query: the tenant is the token's, whatever the SQL says.
  v1::QueryResponse r;
  ASSERT_TRUE(RunQuery(kTokA, "SELECT id FROM jobs ORDER BY id", &r).ok());
  ASSERT_EQ(r.rows_size(), 1);
  EXPECT_EQ(r.rows(0).values(0).text(), "a-1");
  ASSERT_TRUE(RunQuery(kTokA, "SELECT count(*) FROM jobs WHERE id LIKE 'b-%'", &r).ok());
  EXPECT_EQ(r.rows(0).values(0).integer(), 0);
  std::string code;
  EXPECT_EQ(RunQuery(kTokA, "SELECT 1", &r, 0, 0, 10'000, &code, "tenant-b").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code, "permission_denied");
  ASSERT_TRUE(
      RunQuery(kAdmin, "SELECT id FROM jobs ORDER BY id", &r, 0, 0, 10'000, nullptr, "tenant-b")
          .ok());
  ASSERT_EQ(r.rows_size(), 2);
  EXPECT_EQ(r.rows(0).values(0).text(), "b-1");
}

// An endless recursive CTE: runs until its time budget or its caller stops it.
constexpr char kEndless[] =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

TEST_F(ServerTest, QueryTimeoutIsDeadlineExceededWithSluiceCodeTimeout) {
  Start({"--durability", "async", "--query-timeout-ms", "400"});
  v1::QueryResponse r;
  std::string code;
  for (uint32_t asked : {0u, 60'000u}) {  // 0: the server's maximum; more is capped at it
    const auto t0 = steady_clock::now();
    const grpc::Status s = RunQuery(kAdmin, kEndless, &r, asked, 0, 20'000, &code);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
    EXPECT_EQ(code, "timeout") << "the server's timeout, not the client's deadline";
    EXPECT_GE(ms, 350);
    EXPECT_LT(ms, 3000);
  }
  // A shorter budget in the request wins.
  const auto t0 = steady_clock::now();
  EXPECT_EQ(RunQuery(kAdmin, kEndless, &r, 100, 0, 20'000, &code).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(code, "timeout");
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count(),
            380);
  EXPECT_EQ(Queries("timeout"), 3);
}

TEST_F(ServerTest, QueryIsBoundedByTheCallsDeadline) {
  Start({"--durability", "async", "--query-timeout-ms", "60000"});
  v1::QueryResponse r;
  const auto t0 = steady_clock::now();
  EXPECT_EQ(RunQuery(kAdmin, kEndless, &r, 0, 0, 500).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count(),
            2000);
  // The server stopped too (counted as a timeout, not left running for 60 s).
  const auto deadline = steady_clock::now() + std::chrono::seconds(3);
  while (Queries("timeout") < 1 && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(Queries("timeout"), 1);
  EXPECT_EQ(Queries("cancelled"), 0);
}

TEST_F(ServerTest, QueryCancelledByItsCallerStopsPromptlyAndTheServerKeepsServing) {
  Start({"--durability", "async", "--query-timeout-ms", "60000"});
  constexpr int kCalls = 3;
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::future<grpc::Status>> calls;
  for (int i = 0; i < kCalls; ++i) {
    ctxs.push_back(Authed(kAdmin, 120'000));
    grpc::ClientContext* ctx = ctxs.back().get();
    calls.push_back(std::async(std::launch::async, [this, ctx] {
      v1::QueryRequest req;
      req.set_sql(kEndless);
      v1::QueryResponse resp;
      return stub_->Query(ctx, req, &resp);
    }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the queries are running
  EXPECT_EQ(Queries("cancelled"), 0);
  const auto cancelled_at = steady_clock::now();
  for (auto& c : ctxs) c->TryCancel();
  for (auto& c : calls) EXPECT_EQ(c.get().error_code(), grpc::StatusCode::CANCELLED);
  // The server notices within moments (not at the 60 s timeout) and says so in /metrics.
  while (Queries("cancelled") < kCalls &&
         steady_clock::now() < cancelled_at + std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto noticed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - cancelled_at)
          .count();
  EXPECT_EQ(Queries("cancelled"), kCalls);
  EXPECT_LT(noticed_ms, 2000);
  EXPECT_EQ(Queries("timeout"), 0);
  // It keeps serving: a query and an enqueue answer at once.
  v1::QueryResponse r;
  const auto t0 = steady_clock::now();
  ASSERT_TRUE(RunQuery(kAdmin, "SELECT 42", &r).ok());
  EXPECT_EQ(r.rows(0).values(0).integer(), 42);
  MustEnqueue(kAdmin, Spec("after-cancel"));
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count(),
            1000);
}

TEST_F(ServerTest, QueryResultOverItsCapsIsResourceExhausted) {
  Start({"--durability", "async", "--query-max-result-bytes", "100000", "--query-max-rows", "500"});
  const std::string rows =
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) "
      "SELECT x, randomblob(%d) FROM c";
  auto sql = [&](int n, int blob) {
    std::string s = rows;
    s.replace(s.find("%d"), 2, std::to_string(n));
    s.replace(s.find("%d"), 2, std::to_string(blob));
    return s;
  };
  v1::QueryResponse r;
  std::string code;
  // About 1 MB of blobs against a 100 kB cap.
  EXPECT_EQ(RunQuery(kAdmin, sql(1000, 1000), &r, 0, 0, 10'000, &code).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code, "too_large");
  EXPECT_EQ(r.rows_size(), 0) << "nothing partial is sent";
  // Rows: over the request's cap, over the server's cap; at the cap it is fine.
  EXPECT_EQ(RunQuery(kAdmin, sql(11, 1), &r, 0, 10, 10'000, &code).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code, "too_large");
  EXPECT_EQ(RunQuery(kAdmin, sql(501, 1), &r, 0, 100'000, 10'000, &code).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(RunQuery(kAdmin, sql(10, 1), &r, 0, 10).ok());
  EXPECT_EQ(r.rows_size(), 10);
  ASSERT_TRUE(RunQuery(kAdmin, sql(500, 1), &r).ok());
  EXPECT_EQ(r.rows_size(), 500);
  EXPECT_EQ(Queries("too_large"), 3);
  EXPECT_EQ(Queries("ok"), 2);
}

#ifdef SLUICE_FAULT_FSYNC_LIB
// A failed WAL sync poisons RocksDB (ENVIRONMENT.md): the node must refuse the write with
// INTERNAL (io_error), stop acknowledging, exit 1, and recover everything acknowledged on restart.
TEST_F(ServerTest, StorageErrorStopsTheNodeAndARestartRecovers) {
  const std::string trigger = dir_ + "/fail-fsync";
  ::setenv("LD_PRELOAD", SLUICE_FAULT_FSYNC_LIB, 1);
  ::setenv("SLUICE_FAULT_FSYNC_FILE", trigger.c_str(), 1);
  Start();
  ::unsetenv("LD_PRELOAD");
  ::unsetenv("SLUICE_FAULT_FSYNC_FILE");
  MustEnqueue(kAdmin, Spec("q", "before"));
  { std::ofstream(trigger) << "1"; }
  v1::EnqueueRequest req;
  *req.mutable_job() = Spec("q", "during");
  v1::EnqueueResponse resp;
  auto ctx = Authed(kAdmin);
  const grpc::Status s = stub_->Enqueue(ctx.get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL) << s.error_message();
  EXPECT_EQ(SluiceCode(*ctx), "io_error");
  // The node stops by itself with exit code 1.
  int status = 0;
  const auto deadline = steady_clock::now() + std::chrono::seconds(20);
  pid_t done = 0;
  while ((done = ::waitpid(server_->pid(), &status, WNOHANG)) == 0 &&
         steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(done, server_->pid()) << "sluiced kept running after a storage error";
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  server_->Forget();
  std::filesystem::remove(trigger);
  Start();
  v1::GetJobResponse gr;
  EXPECT_TRUE(GetJob(kAdmin, "before", &gr).ok()) << "an acknowledged job was lost";
  MustEnqueue(kAdmin, Spec("q", "after"));
}
#endif

}  // namespace
}  // namespace sluice::testing
