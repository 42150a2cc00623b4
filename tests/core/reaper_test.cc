// ReapExpired: expired leases become failed attempts ("lease_expired") that retry or fail the
// job, or cancel it when requested; heartbeats prevent reaping; stale workers are fenced off
// (LESSONS.md: River #1302, Bull #1416, Bull #308); cost is O(expired) (DESIGN.md §5).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
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

RetryPolicy Policy(uint32_t max_retries, uint64_t backoff_ms) {
  RetryPolicy rp;
  rp.max_retries = max_retries;
  rp.initial_backoff_ms = backoff_ms;
  rp.max_backoff_ms = backoff_ms * 100;
  rp.multiplier = 2.0;
  rp.jitter = false;
  return rp;
}

constexpr int64_t kLeaseMs = 1'000;

class ReaperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  JobSpec MakeSpec(const std::string& id, uint32_t max_retries, const std::string& queue = "q") {
    JobSpec s = Spec(queue, "payload");
    s.id = id;
    s.lease_ms = kLeaseMs;
    s.retry = Policy(max_retries, 500);
    return s;
  }

  std::vector<Task> LeaseFrom(const std::string& queue, uint32_t max_tasks,
                              const std::string& worker = "w1") {
    LeaseRequest req;
    req.queue = queue;
    req.worker_id = worker;
    req.max_tasks = max_tasks;
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    return r.ok() ? *r : std::vector<Task>{};
  }

  Task EnqueueAndLease(const std::string& id, uint32_t max_retries) {
    EXPECT_TRUE(IsOk(engine_->Enqueue(MakeSpec(id, max_retries))));
    auto tasks = LeaseFrom("q", 1);
    if (tasks.size() != 1) {
      ADD_FAILURE() << "expected one task";
      return Task{};
    }
    return tasks[0];
  }

  size_t Reap() {
    auto r = engine_->ReapExpired();
    EXPECT_TRUE(IsOk(r));
    return r.ok() ? *r : 0;
  }

  Job MustGet(const std::string& id) {
    auto j = engine_->GetJob("", id, /*include_attempts=*/true);
    EXPECT_TRUE(IsOk(j));
    return j.ok() ? *j : Job{};
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(ReaperTest, NothingToReap) {
  EXPECT_EQ(Reap(), 0u);
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("waiting", 1))));
  clock_->Advance(1'000'000);
  EXPECT_EQ(Reap(), 0u) << "waiting jobs hold no lease";
}

TEST_F(ReaperTest, LiveLeaseIsNotReaped) {
  const Task t = EnqueueAndLease("j", 1);
  clock_->Set(t.lease_expires_ms - 1);
  EXPECT_EQ(Reap(), 0u);
  EXPECT_EQ(MustGet("j").status, JobStatus::kRunning);
  EXPECT_TRUE(IsOk(engine_->Heartbeat("", t.task_id, "w1", t.lease_token)));
}

TEST_F(ReaperTest, ExpiredLeaseWithRetriesLeftIsRetried) {
  const Task t = EnqueueAndLease("j", 2);
  clock_->Set(t.lease_expires_ms + 1);
  const int64_t reaped_at = clock_->NowMs();
  EXPECT_EQ(Reap(), 1u);

  Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kScheduled);
  EXPECT_EQ(job.next_run_ms, reaped_at + 500) << "retry after the first backoff";
  EXPECT_EQ(job.retries_used, 1u);
  ASSERT_EQ(job.attempts.size(), 1u);
  EXPECT_EQ(job.attempts[0].status, AttemptStatus::kFailed);
  EXPECT_EQ(job.attempts[0].error.code, "lease_expired");
  EXPECT_EQ(job.attempts[0].finished_ms, reaped_at);

  const EngineStats st = engine_->Stats();
  EXPECT_EQ(st.lease_expired, 1u);
  EXPECT_EQ(st.running, 0u);
  EXPECT_EQ(st.pending_tasks, 1u);
  EXPECT_EQ(st.retried, 1u);

  EXPECT_EQ(Reap(), 0u) << "a reaped lease is gone from the expiry index";

  EXPECT_TRUE(LeaseFrom("q", 1).empty()) << "not before the backoff";
  clock_->Set(reaped_at + 500);
  auto again = LeaseFrom("q", 1, "w2");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempt, 2u);
  EXPECT_EQ(again[0].task_id, "j#2");
  EXPECT_NE(again[0].lease_token, t.lease_token);
}

TEST_F(ReaperTest, ExpiredLeaseWithNoRetriesLeftFails) {
  const Task t = EnqueueAndLease("j", 0);
  clock_->Set(t.lease_expires_ms + 1);
  EXPECT_EQ(Reap(), 1u);
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_EQ(job.finished_ms, clock_->NowMs());
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kFailed);
  EXPECT_TRUE(res->finished);
  EXPECT_EQ(res->error.code, "lease_expired");
  clock_->Advance(1'000'000);
  EXPECT_TRUE(LeaseFrom("q", 1).empty());
}

TEST_F(ReaperTest, RetriesRunOutAcrossRepeatedExpiry) {
  Task t = EnqueueAndLease("j", 1);
  clock_->Set(t.lease_expires_ms + 1);
  EXPECT_EQ(Reap(), 1u);
  EXPECT_EQ(MustGet("j").status, JobStatus::kScheduled);
  clock_->Advance(500);
  auto tasks = LeaseFrom("q", 1);
  ASSERT_EQ(tasks.size(), 1u);
  t = tasks[0];
  clock_->Set(t.lease_expires_ms + 1);
  EXPECT_EQ(Reap(), 1u);
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_EQ(job.retries_used, 1u);
  ASSERT_EQ(job.attempts.size(), 2u);
  EXPECT_EQ(job.attempts[1].error.code, "lease_expired");
  EXPECT_EQ(engine_->Stats().lease_expired, 2u);
}

TEST_F(ReaperTest, CancelRequestedAndExpiredIsCancelled) {
  const Task t = EnqueueAndLease("j", 5);
  auto c = engine_->Cancel("", "j");
  ASSERT_TRUE(IsOk(c));
  ASSERT_TRUE(c->cancel_requested);
  clock_->Set(t.lease_expires_ms + 1);
  EXPECT_EQ(Reap(), 1u);
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kCancelled);
  EXPECT_EQ(job.retries_used, 0u);
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kCancelled);
  EXPECT_TRUE(res->finished);
  clock_->Advance(1'000'000);
  EXPECT_TRUE(LeaseFrom("q", 1).empty()) << "a cancelled job is never retried";
}

TEST_F(ReaperTest, HeartbeatBeforeExpiryPreventsReaping) {
  const Task t = EnqueueAndLease("j", 1);
  for (int i = 0; i < 5; ++i) {
    clock_->Advance(kLeaseMs - 100);
    ASSERT_TRUE(IsOk(engine_->Heartbeat("", t.task_id, "w1", t.lease_token)));
    EXPECT_EQ(Reap(), 0u) << "round " << i;
  }
  EXPECT_EQ(MustGet("j").status, JobStatus::kRunning);
  EXPECT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("ok"))));
  EXPECT_EQ(MustGet("j").status, JobStatus::kSucceeded);
}

TEST_F(ReaperTest, ReturnsHowManyExpired) {
  JobSpec a = MakeSpec("a", 1);
  JobSpec b = MakeSpec("b", 1);
  JobSpec c = MakeSpec("c", 1);
  c.lease_ms = 100'000;
  JobSpec d = MakeSpec("d", 1);
  d.lease_ms = 2'000;
  for (const auto& s : {a, b, c, d}) ASSERT_TRUE(IsOk(engine_->Enqueue(s)));
  ASSERT_EQ(LeaseFrom("q", 10).size(), 4u);
  clock_->Advance(kLeaseMs + 1);
  EXPECT_EQ(Reap(), 2u);
  EXPECT_EQ(Reap(), 0u);
  clock_->Advance(1'000);
  EXPECT_EQ(Reap(), 1u);
  EXPECT_EQ(MustGet("c").status, JobStatus::kRunning);
  EXPECT_EQ(engine_->Stats().running, 1u);
  EXPECT_EQ(engine_->Stats().lease_expired, 3u);
}

TEST_F(ReaperTest, StaleWorkerCannotOverwriteNewAttempt) {
  // Worker 1 leases attempt 1 and stalls; its lease is reaped; worker 2 runs attempt 2.
  const Task stale = EnqueueAndLease("j", 3);
  clock_->Set(stale.lease_expires_ms + 1);
  EXPECT_EQ(Reap(), 1u);
  clock_->Advance(500);
  auto tasks = LeaseFrom("q", 1, "w2");
  ASSERT_EQ(tasks.size(), 1u);
  const Task fresh = tasks[0];
  ASSERT_EQ(fresh.attempt, 2u);

  // Every report of worker 1 is fenced off (Bull #1416, #308).
  EXPECT_TRUE(
      HasCode(engine_->Complete("", stale.task_id, stale.lease_token, Outcome::Success("stale")),
              StatusCode::kLeaseLost));
  EXPECT_TRUE(
      HasCode(engine_->Complete("", stale.task_id, stale.lease_token, Outcome::Failure("stale")),
              StatusCode::kLeaseLost));
  EXPECT_TRUE(HasCode(engine_->Heartbeat("", stale.task_id, "w1", stale.lease_token),
                      StatusCode::kLeaseLost));
  // Guessing the new task id with the old token does not help either.
  EXPECT_TRUE(
      HasCode(engine_->Complete("", fresh.task_id, stale.lease_token, Outcome::Success("stale")),
              StatusCode::kLeaseLost));
  EXPECT_TRUE(HasCode(engine_->Heartbeat("", fresh.task_id, "w1", stale.lease_token),
                      StatusCode::kLeaseLost));

  Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kRunning);
  ASSERT_EQ(job.attempts.size(), 2u);
  EXPECT_EQ(job.attempts[0].status, AttemptStatus::kFailed);
  EXPECT_EQ(job.attempts[0].error.code, "lease_expired");
  EXPECT_EQ(job.attempts[1].status, AttemptStatus::kRunning);
  EXPECT_EQ(job.attempts[1].worker_id, "w2");

  // Worker 2 finishes normally and its result is the one kept.
  ASSERT_TRUE(IsOk(engine_->Heartbeat("", fresh.task_id, "w2", fresh.lease_token)));
  ASSERT_TRUE(
      IsOk(engine_->Complete("", fresh.task_id, fresh.lease_token, Outcome::Success("fresh"))));
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kSucceeded);
  EXPECT_EQ(res->result, "fresh");
  job = MustGet("j");
  EXPECT_EQ(job.attempts[0].status, AttemptStatus::kFailed) << "old attempt not rewritten";
  EXPECT_TRUE(job.attempts[0].result.empty());
}

TEST_F(ReaperTest, StaleReportBetweenReapAndReleaseChangesNothing) {
  const Task stale = EnqueueAndLease("j", 3);
  clock_->Set(stale.lease_expires_ms + 1);
  EXPECT_EQ(Reap(), 1u);
  const Job before = MustGet("j");
  ASSERT_EQ(before.status, JobStatus::kScheduled);
  EXPECT_TRUE(
      HasCode(engine_->Complete("", stale.task_id, stale.lease_token, Outcome::Success("late")),
              StatusCode::kLeaseLost));
  EXPECT_TRUE(
      HasCode(engine_->Complete("", stale.task_id, stale.lease_token, Outcome::Failure("late")),
              StatusCode::kLeaseLost));
  const Job after = MustGet("j");
  EXPECT_EQ(after.status, JobStatus::kScheduled);
  EXPECT_EQ(after.next_run_ms, before.next_run_ms);
  EXPECT_EQ(after.retries_used, before.retries_used);
  EXPECT_EQ(engine_->Stats().succeeded, 0u);
  EXPECT_EQ(engine_->Stats().retried, 1u);
}

TEST_F(ReaperTest, CompleteBeforeReapWinsAndReapFindsNothing) {
  // River #1302: a completion that lands first must not be reset by the reaper.
  const Task t = EnqueueAndLease("j", 3);
  clock_->Set(t.lease_expires_ms - 1);
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("done"))));
  clock_->Set(t.lease_expires_ms + 10'000);
  EXPECT_EQ(Reap(), 0u);
  EXPECT_EQ(MustGet("j").status, JobStatus::kSucceeded);
}

TEST_F(ReaperTest, CostIsProportionalToExpiredNotToLiveLeases) {
  // 1000 live leases with a long expiry and 3 short ones: the reaper reaps exactly 3.
  std::vector<JobSpec> live;
  for (int i = 0; i < 1000; ++i) {
    JobSpec s = MakeSpec("live-" + std::to_string(i), 1, "long");
    s.lease_ms = 3'600'000;
    live.push_back(std::move(s));
  }
  ASSERT_TRUE(IsOk(engine_->EnqueueBatch(live)));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("short-" + std::to_string(i), 1, "short"))));
  }
  ASSERT_EQ(LeaseFrom("long", 1000).size(), 1000u);
  ASSERT_EQ(LeaseFrom("short", 10).size(), 3u);
  ASSERT_EQ(engine_->Stats().running, 1003u);

  EXPECT_EQ(Reap(), 0u);
  clock_->Advance(kLeaseMs + 1);
  EXPECT_EQ(Reap(), 3u);
  EXPECT_EQ(Reap(), 0u);
  EXPECT_EQ(engine_->Stats().running, 1000u);
  EXPECT_EQ(MustGet("live-0").status, JobStatus::kRunning);
  EXPECT_EQ(MustGet("live-999").status, JobStatus::kRunning);
  EXPECT_EQ(MustGet("short-1").status, JobStatus::kScheduled);
}

// The background reaper (reaper_interval_ms > 0) reaps on its own, on the system clock.
TEST(ReaperBackgroundTest, BackgroundThreadReapsExpiredLeases) {
  TempDir dir;
  auto engine = OpenOrDie(TestOptions(dir.path(), nullptr, /*reaper_interval_ms=*/20));
  JobSpec s = Spec("q");
  s.id = "bg";
  s.lease_ms = 50;
  RetryPolicy rp;
  rp.max_retries = 0;
  s.retry = rp;
  ASSERT_TRUE(IsOk(engine->Enqueue(s)));
  LeaseRequest req;
  req.queue = "q";
  req.worker_id = "w";
  auto r = engine->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  JobStatus status = JobStatus::kRunning;
  for (int i = 0; i < 200 && status == JobStatus::kRunning; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto job = engine->GetJob("", "bg");
    ASSERT_TRUE(IsOk(job));
    status = job->status;
  }
  EXPECT_EQ(status, JobStatus::kFailed) << "the background reaper never reaped the lease";
  EXPECT_EQ(engine->Stats().lease_expired, 1u);
}

}  // namespace
}  // namespace sluice
