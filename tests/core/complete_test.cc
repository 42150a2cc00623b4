// Complete: success, failure with and without retries (exact backoff), no_retry, worker
// cancellation, reports after a cancel request, and fencing of stale or late reports
// (DESIGN.md §2, §3; LESSONS.md "Leases and delivery").
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
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

::testing::AssertionResult HasCode(const Status& s, StatusCode want) {
  if (s.code() == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "want " << StatusCodeName(want) << ", got " << (s.ok() ? "ok" : s.ToString());
}

RetryPolicy Policy(uint32_t max_retries, uint64_t initial, uint64_t max, double multiplier) {
  RetryPolicy rp;
  rp.max_retries = max_retries;
  rp.initial_backoff_ms = initial;
  rp.max_backoff_ms = max;
  rp.multiplier = multiplier;
  rp.jitter = false;
  return rp;
}

class CompleteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  void EnqueueJob(const std::string& id, std::optional<RetryPolicy> retry = std::nullopt) {
    JobSpec s = Spec("q", "payload-" + id);
    s.id = id;
    s.lease_ms = 10'000;
    s.retry = retry;
    ASSERT_TRUE(IsOk(engine_->Enqueue(s)));
  }

  // Leases from "q"; returns the tasks (EXPECTs the call to succeed).
  std::vector<Task> LeaseQ(uint32_t max_tasks = 1, const std::string& worker = "w1") {
    LeaseRequest req;
    req.queue = "q";
    req.worker_id = worker;
    req.max_tasks = max_tasks;
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    return r.ok() ? *r : std::vector<Task>{};
  }

  Task LeaseOne() {
    auto tasks = LeaseQ();
    if (tasks.size() != 1) {
      ADD_FAILURE() << "expected one task, got " << tasks.size();
      return Task{};
    }
    return tasks[0];
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

TEST_F(CompleteTest, SuccessStoresResult) {
  EnqueueJob("j");
  const Task t = LeaseOne();
  clock_->Advance(250);
  const std::string result("res\0ult", 7);
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success(result))));

  auto r = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(r->status, JobStatus::kSucceeded);
  EXPECT_TRUE(r->finished);
  EXPECT_EQ(r->result, result);
  EXPECT_TRUE(r->error.code.empty());

  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kSucceeded);
  EXPECT_EQ(job.finished_ms, clock_->NowMs());
  EXPECT_EQ(job.next_run_ms, 0);
  ASSERT_EQ(job.attempts.size(), 1u);
  EXPECT_EQ(job.attempts[0].status, AttemptStatus::kSucceeded);
  EXPECT_EQ(job.attempts[0].result, result);
  EXPECT_EQ(job.attempts[0].finished_ms, clock_->NowMs());

  const EngineStats st = engine_->Stats();
  EXPECT_EQ(st.succeeded, 1u);
  EXPECT_EQ(st.running, 0u);
  EXPECT_EQ(st.pending_tasks, 0u);

  clock_->Advance(1'000'000);
  EXPECT_TRUE(LeaseQ().empty()) << "a succeeded job is never leased again";
}

TEST_F(CompleteTest, FailureWithRetriesLeftReschedulesWithExactBackoff) {
  // d(r) = min(5000, 1000 * 3^(r-1)): 1000, 3000, 5000 (capped).
  EnqueueJob("j", Policy(3, 1'000, 5'000, 3.0));
  const std::vector<int64_t> backoffs = {1'000, 3'000, 5'000};
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    const Task t = LeaseOne();
    ASSERT_EQ(t.attempt, attempt);
    ASSERT_EQ(t.task_id, "j#" + std::to_string(attempt));
    clock_->Advance(100);
    const int64_t failed_at = clock_->NowMs();
    const Outcome failure = Outcome::Failure("boom", "try " + std::to_string(attempt));
    ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, failure)));
    const int64_t due = failed_at + backoffs[attempt - 1];

    Job job = MustGet("j");
    EXPECT_EQ(job.status, JobStatus::kScheduled) << "attempt " << attempt;
    EXPECT_EQ(job.next_run_ms, due) << "attempt " << attempt;
    EXPECT_EQ(job.retries_used, attempt);
    EXPECT_EQ(job.attempt_count, attempt);
    EXPECT_FALSE(IsTerminal(job.status));
    ASSERT_EQ(job.attempts.size(), attempt);
    EXPECT_EQ(job.attempts.back().status, AttemptStatus::kFailed);
    EXPECT_EQ(job.attempts.back().error.code, "boom");
    EXPECT_EQ(job.attempts.back().error.message, "try " + std::to_string(attempt));
    auto res = engine_->GetResult("", "j");
    ASSERT_TRUE(IsOk(res));
    EXPECT_FALSE(res->finished);

    clock_->Set(due - 1);
    EXPECT_TRUE(LeaseQ().empty()) << "leasable before its backoff ended (attempt " << attempt
                                  << ")";
    EXPECT_EQ(MustGet("j").status, JobStatus::kScheduled);
    clock_->Set(due);
    EXPECT_EQ(MustGet("j").status, JobStatus::kWaiting);
  }
  // Fourth attempt: no retries left.
  const Task last = LeaseOne();
  ASSERT_EQ(last.attempt, 4u);
  ASSERT_TRUE(IsOk(engine_->Complete("", last.task_id, last.lease_token,
                                     Outcome::Failure("final", "gave up", "details"))));
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_EQ(job.retries_used, 3u);
  EXPECT_EQ(job.attempt_count, 4u);
  EXPECT_EQ(job.finished_ms, clock_->NowMs());
  ASSERT_EQ(job.attempts.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(job.attempts[i].number, i + 1);
    EXPECT_EQ(job.attempts[i].status, AttemptStatus::kFailed);
  }
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kFailed);
  EXPECT_TRUE(res->finished);
  EXPECT_EQ(res->error.code, "final");
  EXPECT_EQ(res->error.message, "gave up");
  EXPECT_EQ(res->error.data, "details");

  const EngineStats st = engine_->Stats();
  EXPECT_EQ(st.failed, 4u);
  EXPECT_EQ(st.retried, 3u);
  clock_->Advance(1'000'000);
  EXPECT_TRUE(LeaseQ().empty());
}

TEST_F(CompleteTest, DefaultRetryPolicyComesFromOptions) {
  EnqueueJob("j");  // default_retry: 3 retries, 1000 ms, x2, cap 60 s
  Task t = LeaseOne();
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
  EXPECT_EQ(MustGet("j").next_run_ms, clock_->NowMs() + 1'000);
  clock_->Advance(1'000);
  t = LeaseOne();
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
  EXPECT_EQ(MustGet("j").next_run_ms, clock_->NowMs() + 2'000);
}

TEST_F(CompleteTest, MultiplierOneGivesConstantBackoff) {
  EnqueueJob("j", Policy(2, 700, 10'000, 1.0));
  for (int i = 0; i < 2; ++i) {
    const Task t = LeaseOne();
    ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
    EXPECT_EQ(MustGet("j").next_run_ms, clock_->NowMs() + 700);
    clock_->Advance(700);
  }
}

TEST_F(CompleteTest, RetriedFailureIsLeasedWithIncreasingAttemptNumbers) {
  EnqueueJob("j", Policy(2, 10, 10, 1.0));
  uint64_t prev_token = 0;
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    const Task t = LeaseOne();
    EXPECT_EQ(t.attempt, attempt);
    EXPECT_EQ(t.task_id, "j#" + std::to_string(attempt));
    EXPECT_EQ(t.payload, "payload-j");
    EXPECT_NE(t.lease_token, prev_token) << "each attempt gets a fresh fencing token";
    prev_token = t.lease_token;
    ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
    clock_->Advance(10);
  }
  EXPECT_EQ(MustGet("j").status, JobStatus::kFailed);
}

TEST_F(CompleteTest, NoRetriesLeftFailsAtOnce) {
  EnqueueJob("j", Policy(0, 1'000, 1'000, 2.0));
  const Task t = LeaseOne();
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token,
                                     Outcome::Failure("bad", "msg", std::string("d\0a", 3)))));
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_EQ(job.retries_used, 0u);
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kFailed);
  EXPECT_TRUE(res->finished);
  EXPECT_EQ(res->error.code, "bad");
  EXPECT_EQ(res->error.message, "msg");
  EXPECT_EQ(res->error.data, std::string("d\0a", 3));
  EXPECT_EQ(engine_->Stats().retried, 0u);
}

TEST_F(CompleteTest, NoRetryFailsAtOnceDespiteRetriesLeft) {
  EnqueueJob("j", Policy(5, 1'000, 1'000, 2.0));
  const Task t = LeaseOne();
  Outcome o = Outcome::Failure("fatal", "do not retry");
  o.no_retry = true;
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, o)));
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_EQ(job.retries_used, 0u);
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->error.code, "fatal");
  clock_->Advance(1'000'000);
  EXPECT_TRUE(LeaseQ().empty());
}

TEST_F(CompleteTest, CancelledOutcomeEndsJobCancelled) {
  EnqueueJob("j", Policy(5, 1'000, 1'000, 2.0));
  const Task t = LeaseOne();
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Cancelled())));
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kCancelled);
  EXPECT_EQ(job.finished_ms, clock_->NowMs());
  ASSERT_EQ(job.attempts.size(), 1u);
  EXPECT_EQ(job.attempts[0].status, AttemptStatus::kCancelled);
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kCancelled);
  EXPECT_TRUE(res->finished);
  EXPECT_EQ(engine_->Stats().cancelled, 1u);
  clock_->Advance(1'000'000);
  EXPECT_TRUE(LeaseQ().empty());
}

TEST_F(CompleteTest, FailureAfterCancelRequestEndsCancelledNeverRetried) {
  EnqueueJob("j", Policy(5, 1'000, 1'000, 2.0));
  const Task t = LeaseOne();
  auto c = engine_->Cancel("", "j");
  ASSERT_TRUE(IsOk(c));
  ASSERT_TRUE(c->cancel_requested);
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kCancelled);
  EXPECT_EQ(job.retries_used, 0u);
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kCancelled);
  EXPECT_TRUE(res->finished);
  EXPECT_EQ(engine_->Stats().retried, 0u);
  clock_->Advance(1'000'000);
  EXPECT_TRUE(LeaseQ().empty()) << "a failure after a cancel request must never retry";
}

TEST_F(CompleteTest, SuccessAfterCancelRequestEndsCancelled) {
  EnqueueJob("j");
  const Task t = LeaseOne();
  ASSERT_TRUE(IsOk(engine_->Cancel("", "j")));
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("r"))));
  const Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kCancelled);
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kCancelled);
  EXPECT_TRUE(res->finished);
  EXPECT_EQ(engine_->Stats().cancelled, 1u);
}

TEST_F(CompleteTest, StaleTokenIsLeaseLostAndChangesNothing) {
  EnqueueJob("j");
  const Task t = LeaseOne();
  EXPECT_TRUE(HasCode(engine_->Complete("", t.task_id, t.lease_token + 1, Outcome::Success("x")),
                      StatusCode::kLeaseLost));
  EXPECT_TRUE(
      HasCode(engine_->Complete("", t.task_id, t.lease_token ^ 0xFFFF, Outcome::Failure("e")),
              StatusCode::kLeaseLost));
  Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kRunning);
  ASSERT_EQ(job.attempts.size(), 1u);
  EXPECT_EQ(job.attempts[0].status, AttemptStatus::kRunning);
  EXPECT_EQ(job.retries_used, 0u);
  EXPECT_EQ(engine_->Stats().succeeded, 0u);
  EXPECT_EQ(engine_->Stats().failed, 0u);

  // The real holder is unaffected.
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("real"))));
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->result, "real");
}

TEST_F(CompleteTest, WrongAttemptOrTenantIsRejectedAndChangesNothing) {
  EnqueueJob("j");
  const Task t = LeaseOne();
  Status wrong_attempt = engine_->Complete("", "j#2", t.lease_token, Outcome::Success());
  EXPECT_TRUE(wrong_attempt.code() == StatusCode::kLeaseLost ||
              wrong_attempt.code() == StatusCode::kNotFound)
      << wrong_attempt.ToString();
  Status wrong_tenant = engine_->Complete("other", t.task_id, t.lease_token, Outcome::Success());
  EXPECT_TRUE(wrong_tenant.code() == StatusCode::kLeaseLost ||
              wrong_tenant.code() == StatusCode::kNotFound)
      << wrong_tenant.ToString();
  EXPECT_EQ(MustGet("j").status, JobStatus::kRunning);
  EXPECT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success())));
}

TEST_F(CompleteTest, AfterLeaseExpiryIsLeaseLostAndChangesNothing) {
  EnqueueJob("j", Policy(1, 1'000, 1'000, 1.0));
  const Task t = LeaseOne();
  clock_->Set(t.lease_expires_ms + 1);  // expired, not yet reaped
  EXPECT_TRUE(HasCode(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("late")),
                      StatusCode::kLeaseLost));
  Job job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kRunning);
  ASSERT_EQ(job.attempts.size(), 1u);
  EXPECT_EQ(job.attempts[0].status, AttemptStatus::kRunning);
  EXPECT_TRUE(job.attempts[0].result.empty());

  // The reaper then handles it as an expired lease.
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  EXPECT_EQ(*reaped, 1u);
  job = MustGet("j");
  EXPECT_EQ(job.status, JobStatus::kScheduled);
  ASSERT_EQ(job.attempts.size(), 1u);
  EXPECT_EQ(job.attempts[0].error.code, "lease_expired");
}

TEST_F(CompleteTest, DoubleCompleteIsLeaseLostTheSecondTime) {
  EnqueueJob("j");
  const Task t = LeaseOne();
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("first"))));
  EXPECT_TRUE(HasCode(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("second")),
                      StatusCode::kLeaseLost));
  EXPECT_TRUE(HasCode(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e")),
                      StatusCode::kLeaseLost));
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kSucceeded);
  EXPECT_EQ(res->result, "first");
  EXPECT_EQ(engine_->Stats().succeeded, 1u);
  EXPECT_EQ(engine_->Stats().failed, 0u);
}

TEST_F(CompleteTest, DoubleCompleteAfterRetriedFailureIsLeaseLost) {
  EnqueueJob("j", Policy(3, 1'000, 1'000, 1.0));
  const Task t = LeaseOne();
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
  const Job before = MustGet("j");
  ASSERT_EQ(before.status, JobStatus::kScheduled);
  EXPECT_TRUE(HasCode(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e")),
                      StatusCode::kLeaseLost));
  EXPECT_TRUE(HasCode(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("s")),
                      StatusCode::kLeaseLost));
  const Job after = MustGet("j");
  EXPECT_EQ(after.status, JobStatus::kScheduled);
  EXPECT_EQ(after.retries_used, 1u);
  EXPECT_EQ(after.next_run_ms, before.next_run_ms);
  EXPECT_EQ(engine_->Stats().retried, 1u);
}

TEST_F(CompleteTest, CompletionsOfDifferentJobsAreIndependent) {
  EnqueueJob("a");
  EnqueueJob("b");
  auto tasks = LeaseQ(2);
  ASSERT_EQ(tasks.size(), 2u);
  // The token of one job does not complete the other.
  EXPECT_FALSE(
      engine_->Complete("", tasks[0].task_id, tasks[1].lease_token, Outcome::Success()).ok());
  ASSERT_TRUE(
      IsOk(engine_->Complete("", tasks[1].task_id, tasks[1].lease_token, Outcome::Success("b"))));
  EXPECT_EQ(MustGet(tasks[0].job_id).status, JobStatus::kRunning);
  EXPECT_EQ(MustGet(tasks[1].job_id).status, JobStatus::kSucceeded);
}

}  // namespace
}  // namespace sluice
