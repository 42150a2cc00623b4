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
#include <future>
#include <set>
#include <sstream>
#include <thread>

#include "errors.h"
#include "sluiced_process.h"

namespace sluice::testing {
namespace {

using std::chrono::steady_clock;

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

  v1::LeaseTasksResponse Lease(const std::string& token, const std::string& queue,
                               uint32_t max_tasks = 10, uint32_t wait_ms = 0) {
    v1::LeaseTasksRequest req;
    req.set_queue(queue);
    req.set_worker_id("w1");
    req.set_max_tasks(max_tasks);
    req.set_wait_ms(wait_ms);
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
    v1::GetJobRequest g;
    g.set_id(first.tasks(0).job_id());
    v1::GetJobResponse gr;
    auto c2 = Authed(kAdmin);
    ASSERT_TRUE(stub_->GetJob(c2.get(), g, &gr).ok());
    EXPECT_EQ(gr.job().status(), v1::RUNNING);
  }
  v1::LeaseTasksRequest req;
  req.set_queue("pb");
  req.set_worker_id("w1");
  req.set_max_tasks(2);
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
  ASSERT_GE(svc->method_count(), 20);
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
  v1::GetJobRequest g;
  g.set_id("p" + std::to_string(kCap + 1));
  v1::GetJobResponse gr;
  auto ctx = Authed(kAdmin);
  EXPECT_EQ(stub_->GetJob(ctx.get(), g, &gr).error_code(), grpc::StatusCode::NOT_FOUND);
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
  v1::GetJobRequest g;
  g.set_id("kept-job");
  v1::GetJobResponse gr;
  auto ctx = Authed(kAdmin);
  ASSERT_TRUE(stub_->GetJob(ctx.get(), g, &gr).ok());
  EXPECT_EQ(gr.job().status(), v1::WAITING);
}

TEST_F(ServerTest, ConfigFileEnvironmentAndFlagsInThatPrecedence) {
  const std::string conf = dir_ + "/sluiced.conf";
  {
    std::ofstream out(conf);
    out << "# comment\n"
        << "durability = \"async\"\n"
        << "max-payload-bytes = 2048\n"
        << "max-result-bytes = 3000\n";
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
                                              std::vector<std::string>{"--tls-cert", "/x.pem"}}) {
    SluicedProcess p(dir_ + "/bad", bad);
    EXPECT_FALSE(p.ok()) << bad[0];
    EXPECT_NE(p.failure().find("status 512"), std::string::npos) << p.failure();  // exit 2
  }
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
  v1::GetJobRequest g;
  g.set_id("before");
  v1::GetJobResponse gr;
  auto c2 = Authed(kAdmin);
  EXPECT_TRUE(stub_->GetJob(c2.get(), g, &gr).ok()) << "an acknowledged job was lost";
  MustEnqueue(kAdmin, Spec("q", "after"));
}
#endif

}  // namespace
}  // namespace sluice::testing
