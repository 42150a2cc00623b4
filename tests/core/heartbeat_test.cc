// Heartbeat: extends a live lease, rejects stale tokens, other workers and expired leases
// without changing anything, and reports cancel requests (DESIGN.md §2, §3; LESSONS.md).
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/test_assertions.h"
#include "core/test_util.h"
#include "sluice/clock.h"
#include "sluice/engine.h"

namespace sluice {

namespace {

using ::sluice::testing::OpenOrDie;
using ::sluice::testing::Spec;
using ::sluice::testing::TempDir;
using ::sluice::testing::TestOptions;

using ::sluice::testing::IsOk;

using ::sluice::testing::HasCode;

constexpr uint64_t kLeaseMs = 10'000;
constexpr char kWorker[] = "worker-1";

class HeartbeatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  // Enqueues job `id` (lease kLeaseMs, no retries) and leases it as kWorker.
  Task EnqueueAndLease(const std::string& id, const std::string& tenant = "") {
    JobSpec s = Spec("q");
    s.id = id;
    s.tenant = tenant;
    s.lease_ms = kLeaseMs;
    RetryPolicy rp;
    rp.max_retries = 0;
    s.retry = rp;
    EXPECT_TRUE(IsOk(engine_->Enqueue(s)));
    LeaseRequest req;
    req.tenant = tenant;
    req.queue = "q";
    req.worker_id = kWorker;
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    if (!r.ok() || r->size() != 1) {
      ADD_FAILURE() << "expected exactly one task";
      return Task{};
    }
    return (*r)[0];
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(HeartbeatTest, ExtendsExpiryByLeaseMs) {
  const Task t = EnqueueAndLease("j");
  const int64_t t0 = clock_->NowMs();
  ASSERT_EQ(t.lease_expires_ms, t0 + static_cast<int64_t>(kLeaseMs));

  clock_->Advance(4'000);
  auto hb = engine_->Heartbeat("", t.task_id, kWorker, t.lease_token);
  ASSERT_TRUE(IsOk(hb));
  EXPECT_EQ(hb->lease_expires_ms, t0 + 4'000 + static_cast<int64_t>(kLeaseMs));
  EXPECT_FALSE(hb->cancel_requested);

  // Past the original expiry but inside the extended one: still live, nothing reaped.
  clock_->Advance(8'000);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  EXPECT_EQ(*reaped, 0u);
  auto hb2 = engine_->Heartbeat("", t.task_id, kWorker, t.lease_token);
  ASSERT_TRUE(IsOk(hb2));
  EXPECT_EQ(hb2->lease_expires_ms, t0 + 12'000 + static_cast<int64_t>(kLeaseMs));

  auto job = engine_->GetJob("", "j");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kRunning);
  EXPECT_EQ(job->attempt_count, 1u);

  // The extended lease is the one the reaper sees.
  clock_->Advance(static_cast<int64_t>(kLeaseMs) + 1);
  reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  EXPECT_EQ(*reaped, 1u);
}

TEST_F(HeartbeatTest, ExtensionUsesPerJobLeaseMs) {
  JobSpec s = Spec("q");
  s.id = "short";
  s.lease_ms = 1'500;
  ASSERT_TRUE(IsOk(engine_->Enqueue(s)));
  LeaseRequest req;
  req.queue = "q";
  req.worker_id = kWorker;
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  clock_->Advance(1'000);
  auto hb = engine_->Heartbeat("", (*r)[0].task_id, kWorker, (*r)[0].lease_token);
  ASSERT_TRUE(IsOk(hb));
  EXPECT_EQ(hb->lease_expires_ms, clock_->NowMs() + 1'500);
}

TEST_F(HeartbeatTest, StaleTokenIsLeaseLostAndChangesNothing) {
  const Task t = EnqueueAndLease("j");
  clock_->Advance(5'000);
  EXPECT_TRUE(HasCode(engine_->Heartbeat("", t.task_id, kWorker, t.lease_token + 1),
                      StatusCode::kLeaseLost));
  EXPECT_TRUE(HasCode(engine_->Heartbeat("", t.task_id, kWorker, 0), StatusCode::kLeaseLost));

  // The rejected heartbeat did not extend the lease: it expires at its original time.
  clock_->Set(t.lease_expires_ms + 1);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  EXPECT_EQ(*reaped, 1u);
}

TEST_F(HeartbeatTest, WrongWorkerIsLeaseLostAndChangesNothing) {
  const Task t = EnqueueAndLease("j");
  clock_->Advance(5'000);
  EXPECT_TRUE(HasCode(engine_->Heartbeat("", t.task_id, "worker-2", t.lease_token),
                      StatusCode::kLeaseLost));
  clock_->Set(t.lease_expires_ms + 1);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  EXPECT_EQ(*reaped, 1u) << "a heartbeat from another worker must not extend the lease";
}

TEST_F(HeartbeatTest, WrongAttemptNumberIsRejected) {
  const Task t = EnqueueAndLease("j");
  auto hb = engine_->Heartbeat("", "j#2", kWorker, t.lease_token);
  EXPECT_FALSE(hb.ok());
  EXPECT_TRUE(hb.status().code() == StatusCode::kLeaseLost ||
              hb.status().code() == StatusCode::kNotFound)
      << hb.status().ToString();
  EXPECT_TRUE(IsOk(engine_->Heartbeat("", t.task_id, kWorker, t.lease_token)));
}

TEST_F(HeartbeatTest, OtherTenantCannotHeartbeat) {
  const Task t = EnqueueAndLease("j", "a");
  auto hb = engine_->Heartbeat("b", t.task_id, kWorker, t.lease_token);
  EXPECT_FALSE(hb.ok());
  EXPECT_TRUE(hb.status().code() == StatusCode::kLeaseLost ||
              hb.status().code() == StatusCode::kNotFound)
      << hb.status().ToString();
  EXPECT_TRUE(IsOk(engine_->Heartbeat("a", t.task_id, kWorker, t.lease_token)));
}

TEST_F(HeartbeatTest, AfterExpiryIsLeaseLostAndChangesNothing) {
  const Task t = EnqueueAndLease("j");
  clock_->Set(t.lease_expires_ms + 1);  // expired, not reaped yet
  EXPECT_TRUE(
      HasCode(engine_->Heartbeat("", t.task_id, kWorker, t.lease_token), StatusCode::kLeaseLost));
  auto job = engine_->GetJob("", "j", /*include_attempts=*/true);
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kRunning) << "the heartbeat itself changes nothing";
  ASSERT_EQ(job->attempts.size(), 1u);
  EXPECT_EQ(job->attempts[0].status, AttemptStatus::kRunning);

  // The lease was not revived: the reaper still finds it expired.
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  EXPECT_EQ(*reaped, 1u);
  EXPECT_TRUE(
      HasCode(engine_->Heartbeat("", t.task_id, kWorker, t.lease_token), StatusCode::kLeaseLost));
}

TEST_F(HeartbeatTest, AfterCompleteIsLeaseLost) {
  const Task t = EnqueueAndLease("j");
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success())));
  EXPECT_TRUE(
      HasCode(engine_->Heartbeat("", t.task_id, kWorker, t.lease_token), StatusCode::kLeaseLost));
  auto job = engine_->GetJob("", "j");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kSucceeded);
}

TEST_F(HeartbeatTest, ReportsCancelRequested) {
  const Task t = EnqueueAndLease("j");
  auto before = engine_->Heartbeat("", t.task_id, kWorker, t.lease_token);
  ASSERT_TRUE(IsOk(before));
  EXPECT_FALSE(before->cancel_requested);

  auto c = engine_->Cancel("", "j");
  ASSERT_TRUE(IsOk(c));
  EXPECT_TRUE(c->cancel_requested);

  clock_->Advance(1'000);
  auto after = engine_->Heartbeat("", t.task_id, kWorker, t.lease_token);
  ASSERT_TRUE(IsOk(after)) << "a cancel request does not revoke the lease";
  EXPECT_TRUE(after->cancel_requested);
  EXPECT_EQ(after->lease_expires_ms, clock_->NowMs() + static_cast<int64_t>(kLeaseMs));
}

TEST_F(HeartbeatTest, CancelRequestOnOneJobDoesNotLeakToAnother) {
  const Task a = EnqueueAndLease("a");
  const Task b = EnqueueAndLease("b");
  ASSERT_TRUE(IsOk(engine_->Cancel("", "a")));
  auto hb = engine_->Heartbeat("", b.task_id, kWorker, b.lease_token);
  ASSERT_TRUE(IsOk(hb));
  EXPECT_FALSE(hb->cancel_requested);
  auto ha = engine_->Heartbeat("", a.task_id, kWorker, a.lease_token);
  ASSERT_TRUE(IsOk(ha));
  EXPECT_TRUE(ha->cancel_requested);
}

}  // namespace
}  // namespace sluice
