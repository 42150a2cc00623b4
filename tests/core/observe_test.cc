// Observation APIs the server builds on: GetResult with a server-side wait, per-queue depths
// and tenant-scoped concurrency-key listing.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "core/test_assertions.h"
#include "core/test_util.h"
#include "sluice/engine.h"

namespace sluice {
namespace {

using ::sluice::testing::Fixed;
using ::sluice::testing::HasCode;
using ::sluice::testing::IsOk;
using ::sluice::testing::OpenOrDie;
using ::sluice::testing::Spec;
using ::sluice::testing::TempDir;
using ::sluice::testing::TestOptions;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

class ObserveTest : public ::testing::Test {
 protected:
  void SetUp() override { engine_ = OpenOrDie(TestOptions(dir_.path())); }

  Task LeaseOne(const std::string& queue) {
    LeaseRequest req;
    req.queue = queue;
    req.worker_id = "w";
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r.status()));
    EXPECT_EQ(r->size(), 1u);
    return r->empty() ? Task{} : r->front();
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(ObserveTest, WaitingGetResultWakesOnTheJobsCompletion) {
  auto e = engine_->Enqueue(Spec("q"));
  ASSERT_TRUE(IsOk(e.status()));
  const std::string id = e->id;
  auto waiter = std::async(std::launch::async, [&] {
    auto r = engine_->GetResult("", id, 10'000);
    return std::make_pair(std::move(r), steady_clock::now());
  });
  std::this_thread::sleep_for(milliseconds(100));
  const Task t = LeaseOne("q");
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("out"))));
  const auto done = steady_clock::now();
  auto [r, woke] = waiter.get();
  ASSERT_TRUE(IsOk(r.status()));
  EXPECT_TRUE(r->finished);
  EXPECT_EQ(r->status, JobStatus::kSucceeded);
  EXPECT_EQ(r->result, "out");
  EXPECT_LT(woke - done, milliseconds(500)) << "woken by the completion, not the timeout";
}

TEST_F(ObserveTest, WaitingGetResultIgnoresRetriesAndOtherJobs) {
  JobSpec spec = Spec("q");
  spec.retry = RetryPolicy{1, 0, 0, 1.0, false};
  auto e = engine_->Enqueue(spec);
  ASSERT_TRUE(IsOk(e.status()));
  ASSERT_TRUE(IsOk(engine_->Enqueue(Spec("other")).status()));
  auto waiter = std::async(std::launch::async, [&] { return engine_->GetResult("", e->id, 400); });
  std::this_thread::sleep_for(milliseconds(50));
  // Another job finishing and this job's retried failure do not end the wait as finished.
  const Task other = LeaseOne("other");
  ASSERT_TRUE(IsOk(engine_->Complete("", other.task_id, other.lease_token, Outcome::Success())));
  const Task t = LeaseOne("q");
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("boom"))));
  auto r = waiter.get();
  ASSERT_TRUE(IsOk(r.status()));
  EXPECT_FALSE(r->finished) << "a retry is not an end";
  EXPECT_EQ(r->status, JobStatus::kWaiting);
}

TEST_F(ObserveTest, WaitingGetResultTimesOutWithTheCurrentState) {
  auto e = engine_->Enqueue(Spec("q"));
  ASSERT_TRUE(IsOk(e.status()));
  const auto t0 = steady_clock::now();
  auto r = engine_->GetResult("", e->id, 150);
  const auto waited = steady_clock::now() - t0;
  ASSERT_TRUE(IsOk(r.status()));
  EXPECT_FALSE(r->finished);
  EXPECT_GE(waited, milliseconds(140));
  EXPECT_LT(waited, milliseconds(2000));
}

TEST_F(ObserveTest, WaitingGetResultSeesCancelDeleteAndClose) {
  auto a = engine_->Enqueue(Spec("q"));
  auto b = engine_->Enqueue(Spec("q"));
  auto c = engine_->Enqueue(Spec("q"));
  ASSERT_TRUE(IsOk(a.status()));
  auto wa = std::async(std::launch::async, [&] { return engine_->GetResult("", a->id, 10'000); });
  auto wb = std::async(std::launch::async, [&] { return engine_->GetResult("", b->id, 10'000); });
  auto wc = std::async(std::launch::async, [&] { return engine_->GetResult("", c->id, 10'000); });
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(IsOk(engine_->Cancel("", a->id).status()));
  auto ra = wa.get();
  ASSERT_TRUE(IsOk(ra.status()));
  EXPECT_EQ(ra->status, JobStatus::kCancelled);
  ASSERT_TRUE(IsOk(engine_->Delete("", b->id)));
  EXPECT_TRUE(HasCode(wb.get().status(), StatusCode::kNotFound));
  const auto t0 = steady_clock::now();
  ASSERT_TRUE(IsOk(engine_->Close()));
  EXPECT_TRUE(HasCode(wc.get().status(), StatusCode::kClosed));
  EXPECT_LT(steady_clock::now() - t0, milliseconds(2000));
}

TEST_F(ObserveTest, WaitingGetResultOfAMissingJobIsNotFoundAtOnce) {
  const auto t0 = steady_clock::now();
  EXPECT_TRUE(HasCode(engine_->GetResult("", "missing", 5000).status(), StatusCode::kNotFound));
  EXPECT_LT(steady_clock::now() - t0, milliseconds(500));
}

TEST_F(ObserveTest, QueueDepthsSplitWaitingAndScheduledDeepestFirst) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(IsOk(engine_->Enqueue(Spec("deep")).status()));
  JobSpec later = Spec("deep");
  later.start_at_ms = 4'000'000'000'000;
  ASSERT_TRUE(IsOk(engine_->Enqueue(later).status()));
  JobSpec other = Spec("shallow");
  other.tenant = "t2";
  ASSERT_TRUE(IsOk(engine_->Enqueue(other).status()));
  size_t total = 0;
  std::vector<QueueDepth> d = engine_->QueueDepths(10, &total);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(total, 2u);
  EXPECT_EQ(d[0].queue, "deep");
  EXPECT_EQ(d[0].tenant, "");
  EXPECT_EQ(d[0].waiting, 3u);
  EXPECT_EQ(d[0].scheduled, 1u);
  EXPECT_EQ(d[1].queue, "shallow");
  EXPECT_EQ(d[1].tenant, "t2");
  // Bounded: only the deepest, but the total still counts every queue.
  d = engine_->QueueDepths(1, &total);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].queue, "deep");
  EXPECT_EQ(total, 2u);
  // Leased tasks are no longer pending.
  LeaseRequest req;
  req.queue = "deep";
  req.worker_id = "w";
  req.max_tasks = 10;
  ASSERT_TRUE(IsOk(engine_->Lease(req).status()));
  d = engine_->QueueDepths(10);
  ASSERT_EQ(d.size(), 2u);
  for (const QueueDepth& q : d) {
    if (q.queue == "deep") {
      EXPECT_EQ(q.waiting, 0u);
      EXPECT_EQ(q.scheduled, 1u);
    }
  }
}

TEST_F(ObserveTest, ListConcurrencyKeysOfOneTenant) {
  JobSpec a = Spec("q");
  a.tenant = "ta";
  a.limits = {Fixed("k", 1)};
  JobSpec b = Spec("q");
  b.tenant = "tb";
  b.limits = {Fixed("k", 1)};
  ASSERT_TRUE(IsOk(engine_->Enqueue(a).status()));
  ASSERT_TRUE(IsOk(engine_->Enqueue(b).status()));
  LeaseRequest req;
  req.queue = "q";
  req.worker_id = "w";
  req.tenant = "ta";
  ASSERT_TRUE(IsOk(engine_->Lease(req).status()));
  req.tenant = "tb";
  ASSERT_TRUE(IsOk(engine_->Lease(req).status()));
  EXPECT_EQ(engine_->ListConcurrencyKeys(10).size(), 2u);
  const std::vector<ConcurrencyKeyInfo> ta = engine_->ListConcurrencyKeys("ta", 10);
  ASSERT_EQ(ta.size(), 1u);
  EXPECT_EQ(ta[0].tenant, "ta");
  EXPECT_EQ(ta[0].holders, 1u);
  EXPECT_TRUE(engine_->ListConcurrencyKeys("nobody", 10).empty());
}

}  // namespace
}  // namespace sluice
