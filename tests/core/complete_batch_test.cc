// CompleteBatch: many reports in one atomic write, each judged like Complete.
#include <gtest/gtest.h>

#include <vector>

#include "core/test_assertions.h"
#include "core/test_util.h"
#include "sluice/engine.h"

namespace sluice {
namespace {

using testing::Fixed;
using testing::HasCode;
using testing::IsOk;

class CompleteBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = testing::OpenOrDie(testing::TestOptions(dir_.path(), clock_));
  }
  std::vector<Task> EnqueueAndLease(int n, std::vector<ConcurrencyLimit> limits = {}) {
    for (int i = 0; i < n; ++i) {
      JobSpec s = testing::Spec("q");
      s.limits = limits;
      RetryPolicy p;
      p.max_retries = 1;
      p.initial_backoff_ms = 100;
      s.retry = p;
      EXPECT_TRUE(IsOk(engine_->Enqueue(s)));
    }
    LeaseRequest req;
    req.queue = "q";
    req.worker_id = "w";
    req.max_tasks = 100;
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    return r.ok() ? *r : std::vector<Task>{};
  }
  static Completion Report(const Task& t, Outcome o) {
    return Completion{t.tenant, t.task_id, t.lease_token, std::move(o)};
  }

  testing::TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(CompleteBatchTest, EachReportIsJudgedAndAppliedLikeComplete) {
  auto tasks = EnqueueAndLease(4);
  ASSERT_EQ(tasks.size(), 4u);
  std::vector<Completion> reports = {
      Report(tasks[0], Outcome::Success("r0")),
      Report(tasks[1], Outcome::Failure("boom")),  // retried
      Report(tasks[2], Outcome::Cancelled()),
      Completion{tasks[3].tenant, tasks[3].task_id, tasks[3].lease_token + 1, Outcome::Success()},
      Report(tasks[0], Outcome::Success("again")),             // same attempt twice in one batch
      Completion{"", "not-a-task-id", 1, Outcome::Success()},  // malformed
  };
  auto r = engine_->CompleteBatch(reports);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), reports.size());
  EXPECT_TRUE(IsOk((*r)[0]));
  EXPECT_TRUE(IsOk((*r)[1]));
  EXPECT_TRUE(IsOk((*r)[2]));
  EXPECT_TRUE(HasCode((*r)[3], StatusCode::kLeaseLost));
  EXPECT_TRUE(HasCode((*r)[4], StatusCode::kLeaseLost));
  EXPECT_TRUE(HasCode((*r)[5], StatusCode::kInvalidArgument));

  EXPECT_EQ(engine_->GetResult("", tasks[0].job_id)->result, "r0");
  EXPECT_EQ(engine_->GetJob("", tasks[1].job_id)->status, JobStatus::kScheduled);
  EXPECT_EQ(engine_->GetJob("", tasks[2].job_id)->status, JobStatus::kCancelled);
  EXPECT_EQ(engine_->GetJob("", tasks[3].job_id)->status, JobStatus::kRunning);  // refused
  EXPECT_EQ(engine_->Stats().running, 1u);
}

TEST_F(CompleteBatchTest, ReleasesLimitsAndGrantsWaiters) {
  auto tasks = EnqueueAndLease(4, {Fixed("k", 2)});
  ASSERT_EQ(tasks.size(), 2u);
  std::vector<Completion> reports = {Report(tasks[0], Outcome::Success()),
                                     Report(tasks[1], Outcome::Success())};
  auto r = engine_->CompleteBatch(reports);
  ASSERT_TRUE(IsOk(r));
  LeaseRequest req;
  req.queue = "q";
  req.worker_id = "w";
  req.max_tasks = 10;
  auto next = engine_->Lease(req);
  ASSERT_TRUE(IsOk(next));
  EXPECT_EQ(next->size(), 2u);  // both waiters were granted by the batch's releases
}

TEST_F(CompleteBatchTest, TooManyReportsIsRejectedWhole) {
  std::vector<Completion> reports(1001);
  EXPECT_TRUE(HasCode(engine_->CompleteBatch(reports), StatusCode::kTooLarge));
}

TEST_F(CompleteBatchTest, ClosedEngineRejectsTheBatch) {
  auto tasks = EnqueueAndLease(1);
  ASSERT_TRUE(IsOk(engine_->Close()));
  std::vector<Completion> reports = {Report(tasks[0], Outcome::Success())};
  EXPECT_TRUE(HasCode(engine_->CompleteBatch(reports), StatusCode::kClosed));
}

}  // namespace
}  // namespace sluice
