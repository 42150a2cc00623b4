// Concurrency limits: fixed and floating keys, every release path, grants, refreshes.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/test_util.h"
#include "sluice/engine.h"

namespace sluice {
namespace {

using testing::OpenOrDie;
using testing::Spec;
using testing::TempDir;
using testing::TestOptions;
using Kind = ConcurrencyLimit::Kind;

using testing::Fixed;

ConcurrencyLimit Floating(const std::string& key, uint32_t default_max, uint64_t interval_ms) {
  return testing::Floating(key, default_max, interval_ms, {{"region", "eu"}});
}

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  std::string Enqueue(std::vector<ConcurrencyLimit> limits, uint32_t priority = 50,
                      const std::string& queue = "q", RetryPolicy retry = NoRetry()) {
    JobSpec s = Spec(queue);
    s.limits = std::move(limits);
    s.priority = priority;
    s.retry = retry;
    auto r = engine_->Enqueue(s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->id : "";
  }

  static RetryPolicy NoRetry() {
    RetryPolicy p;
    p.max_retries = 0;
    return p;
  }

  std::vector<Task> Lease(uint32_t n = 10, const std::string& queue = "q") {
    LeaseRequest req;
    req.queue = queue;
    req.worker_id = "w";
    req.max_tasks = n;
    auto r = engine_->Lease(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<Task>{};
  }

  LeaseResponse LeaseTasks(uint32_t n = 10, const std::string& queue = "q") {
    LeaseRequest req;
    req.queue = queue;
    req.worker_id = "w";
    req.max_tasks = n;
    auto r = engine_->LeaseTasks(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : LeaseResponse{};
  }

  ConcurrencyKeyInfo Key(const std::string& key, Kind kind = Kind::kFixed) {
    auto r = engine_->GetConcurrencyKey("", kind, key);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : ConcurrencyKeyInfo{};
  }

  void Succeed(const Task& t) {
    ASSERT_TRUE(engine_->Complete(t.tenant, t.task_id, t.lease_token, Outcome::Success()).ok());
  }

  void ExpectIdle() {
    EngineStats s = engine_->Stats();
    EXPECT_EQ(s.limit_keys, 0u);
    EXPECT_EQ(s.limit_holders, 0u);
    EXPECT_EQ(s.limit_waiters, 0u);
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(LimitsTest, FixedMaxOneRunsOneAtATimeAndParksTheRest) {
  for (int i = 0; i < 3; ++i) Enqueue({Fixed("k", 1)});
  auto tasks = Lease();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(Key("k").holders, 1u);
  EXPECT_EQ(Key("k").waiters, 2u);
  EXPECT_EQ(Key("k").max, 1u);
  EXPECT_TRUE(Lease().empty());  // parked jobs are not in the ready range
  Succeed(tasks[0]);
  // The release granted the next waiter in the same call: it is leasable now.
  auto next = Lease();
  ASSERT_EQ(next.size(), 1u);
  Succeed(next[0]);
  next = Lease();
  ASSERT_EQ(next.size(), 1u);
  Succeed(next[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, MaxFourHoldsUnderBatchLease) {
  for (int i = 0; i < 10; ++i) Enqueue({Fixed("k", 4)});
  auto tasks = Lease(100);
  EXPECT_EQ(tasks.size(), 4u);
  EXPECT_EQ(Key("k").holders, 4u);
  EXPECT_EQ(Key("k").waiters, 6u);
}

TEST_F(LimitsTest, ReleaseOnFailureRetryWaitsWithoutHolding) {
  RetryPolicy retry;
  retry.max_retries = 1;
  retry.initial_backoff_ms = 1000;
  std::string a = Enqueue({Fixed("k", 1)}, 10, "q", retry);
  std::string b = Enqueue({Fixed("k", 1)}, 20);
  auto t = Lease();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].job_id, a);
  ASSERT_TRUE(engine_->Complete("", t[0].task_id, t[0].lease_token, Outcome::Failure("boom")).ok());
  // a is in backoff and holds nothing; b got the slot.
  EXPECT_EQ(Key("k").holders, 1u);
  auto tb = Lease();
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(tb[0].job_id, b);
  Succeed(tb[0]);
  clock_->Advance(1000);
  auto ta = Lease();
  ASSERT_EQ(ta.size(), 1u);
  EXPECT_EQ(ta[0].job_id, a);
  EXPECT_EQ(ta[0].attempt, 2u);
  Succeed(ta[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, ReleaseOnFinalFailure) {
  Enqueue({Fixed("k", 1)});
  std::string b = Enqueue({Fixed("k", 1)});
  auto t = Lease();
  ASSERT_TRUE(engine_->Complete("", t[0].task_id, t[0].lease_token, Outcome::Failure("boom")).ok());
  auto tb = Lease();
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(tb[0].job_id, b);
  Succeed(tb[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, ReleaseOnLeaseExpiry) {
  Enqueue({Fixed("k", 1)});
  std::string b = Enqueue({Fixed("k", 1)});
  auto t = Lease();
  ASSERT_EQ(t.size(), 1u);
  clock_->Advance(31'000);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(reaped.ok());
  EXPECT_EQ(*reaped, 1u);
  auto tb = Lease();
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(tb[0].job_id, b);
  Succeed(tb[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, ReleaseOnCancelOfRunningJob) {
  std::string a = Enqueue({Fixed("k", 1)});
  std::string b = Enqueue({Fixed("k", 1)});
  auto t = Lease();
  ASSERT_TRUE(engine_->Cancel("", a).ok());
  EXPECT_EQ(Key("k").holders, 1u);  // still running until its worker reports
  ASSERT_TRUE(engine_->Complete("", t[0].task_id, t[0].lease_token, Outcome::Cancelled()).ok());
  auto tb = Lease();
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(tb[0].job_id, b);
  Succeed(tb[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, ReleaseOnCancelOfGrantedJobNotYetLeased) {
  std::string a = Enqueue({Fixed("k", 1)});
  std::string b = Enqueue({Fixed("k", 1)});
  std::string c = Enqueue({Fixed("k", 1)});
  auto t = Lease(1);
  ASSERT_EQ(t[0].job_id, a);
  Lease(1);  // pops b: parked
  Lease(1);  // pops c: parked
  EXPECT_EQ(Key("k").waiters, 2u);
  Succeed(t[0]);  // grants b: back in the ready range holding the slot
  EXPECT_EQ(Key("k").holders, 1u);
  EXPECT_EQ(Key("k").waiters, 1u);
  ASSERT_TRUE(engine_->Cancel("", b).ok());  // releases b's slot and grants c
  auto tc = Lease();
  ASSERT_EQ(tc.size(), 1u);
  EXPECT_EQ(tc[0].job_id, c);
  Succeed(tc[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, CancelOfParkedWaiterRemovesIt) {
  Enqueue({Fixed("k", 1)});
  std::string b = Enqueue({Fixed("k", 1)});
  auto t = Lease();
  EXPECT_EQ(Key("k").waiters, 1u);
  auto c = engine_->Cancel("", b);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status, JobStatus::kCancelled);
  EXPECT_EQ(Key("k").waiters, 0u);
  Succeed(t[0]);
  EXPECT_TRUE(Lease().empty());
  ExpectIdle();
}

TEST_F(LimitsTest, DeleteOfParkedAndOfGrantedJobs) {
  std::string a = Enqueue({Fixed("k", 1)});
  std::string b = Enqueue({Fixed("k", 1)});
  std::string c = Enqueue({Fixed("k", 1)});
  auto t = Lease(1);
  Lease(1);
  Lease(1);
  ASSERT_TRUE(engine_->Delete("", c).ok());  // parked
  EXPECT_EQ(Key("k").waiters, 1u);
  Succeed(t[0]);                             // grants b
  ASSERT_TRUE(engine_->Delete("", b).ok());  // granted, not leased: slot released
  EXPECT_TRUE(Lease().empty());
  ExpectIdle();
  (void)a;
}

TEST_F(LimitsTest, RestartReacquires) {
  std::string a = Enqueue({Fixed("k", 1)});
  auto t = Lease();
  ASSERT_TRUE(engine_->Complete("", t[0].task_id, t[0].lease_token, Outcome::Failure("x")).ok());
  ExpectIdle();
  std::string b = Enqueue({Fixed("k", 1)});
  auto tb = Lease();
  ASSERT_EQ(tb[0].job_id, b);
  ASSERT_TRUE(engine_->Restart("", a).ok());
  EXPECT_TRUE(Lease().empty());  // a parks behind b's slot
  EXPECT_EQ(Key("k").waiters, 1u);
  Succeed(tb[0]);
  auto ta = Lease();
  ASSERT_EQ(ta.size(), 1u);
  EXPECT_EQ(ta[0].job_id, a);
  Succeed(ta[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, AllLimitsMustGrantAndNoneIsHeldWhileWaiting) {
  std::string x = Enqueue({Fixed("b", 1)});
  auto tx = Lease();  // holds b
  std::string j = Enqueue({Fixed("a", 1), Fixed("b", 1)});
  EXPECT_TRUE(Lease().empty());
  EXPECT_EQ(Key("a").holders, 0u);  // not held while parked on b
  EXPECT_EQ(Key("b").waiters, 1u);
  // Another job can take a meanwhile.
  std::string y = Enqueue({Fixed("a", 1)});
  auto ty = Lease();
  ASSERT_EQ(ty.size(), 1u);
  EXPECT_EQ(ty[0].job_id, y);
  Succeed(tx[0]);  // b frees; j now waits on a (held by y)
  EXPECT_EQ(Key("a").waiters, 1u);
  EXPECT_EQ(Key("b").holders, 0u);
  EXPECT_TRUE(Lease().empty());
  Succeed(ty[0]);
  auto tj = Lease();
  ASSERT_EQ(tj.size(), 1u);
  EXPECT_EQ(tj[0].job_id, j);
  EXPECT_EQ(Key("a").holders, 1u);
  EXPECT_EQ(Key("b").holders, 1u);
  Succeed(tj[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, ThreeLimitsEndToEnd) {
  std::vector<Task> running;
  for (int i = 0; i < 6; ++i) Enqueue({Fixed("a", 3), Fixed("b", 2), Fixed("c", 1)});
  auto t = Lease(10);
  ASSERT_EQ(t.size(), 1u);  // c max 1 rules
  EXPECT_EQ(Key("a").holders, 1u);
  EXPECT_EQ(Key("b").holders, 1u);
  EXPECT_EQ(Key("c").holders, 1u);
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(t.size(), 1u) << i;
    Succeed(t[0]);
    t = Lease(10);
  }
  EXPECT_TRUE(t.empty());
  ExpectIdle();
}

TEST_F(LimitsTest, ParkedJobDoesNotDelayReadyJobOnAnotherKey) {
  Enqueue({Fixed("full", 1)}, 0);
  auto holder = Lease(1);
  ASSERT_EQ(holder.size(), 1u);
  for (int i = 0; i < 50; ++i) Enqueue({Fixed("full", 1)}, 0);  // ahead in priority
  std::string free_job = Enqueue({Fixed("other", 1)}, 90);
  std::string plain = Enqueue({}, 99);
  auto t = Lease(1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].job_id, free_job);
  t = Lease(1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].job_id, plain);
  EXPECT_EQ(Key("full").waiters, 50u);
}

TEST_F(LimitsTest, GrantsFollowWaiterOrderAndKeepPosition) {
  Enqueue({Fixed("k", 1)}, 50);
  auto holder = Lease(1);
  std::string low = Enqueue({Fixed("k", 1)}, 90);
  std::string high = Enqueue({Fixed("k", 1)}, 5);
  std::string mid = Enqueue({Fixed("k", 1)}, 40);
  EXPECT_TRUE(Lease(10).empty());
  std::vector<std::string> order;
  Succeed(holder[0]);
  for (int i = 0; i < 3; ++i) {
    auto t = Lease(10);
    ASSERT_EQ(t.size(), 1u);
    order.push_back(t[0].job_id);
    Succeed(t[0]);
  }
  EXPECT_EQ(order, (std::vector<std::string>{high, mid, low}));
}

TEST_F(LimitsTest, HigherMaxOnNewerJobGrantsWaitersAtOnce) {
  for (int i = 0; i < 4; ++i) Enqueue({Fixed("k", 1)});
  auto t = Lease(10);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(Key("k").waiters, 3u);
  Enqueue({Fixed("k", 3)});
  auto more = Lease(10);  // the newer job's max 3 rules: two waiters and... the new job parks
  EXPECT_EQ(Key("k").max, 3u);
  EXPECT_EQ(Key("k").holders, 3u);
  EXPECT_EQ(more.size() + t.size(), 3u);
}

TEST_F(LimitsTest, LowerMaxOnNewerJobStopsGrantsUntilHoldersDrain) {
  for (int i = 0; i < 3; ++i) Enqueue({Fixed("k", 3)});
  auto t = Lease(10);
  ASSERT_EQ(t.size(), 3u);
  Enqueue({Fixed("k", 1)});
  EXPECT_TRUE(Lease(10).empty());
  EXPECT_EQ(Key("k").max, 1u);
  Succeed(t[0]);
  EXPECT_TRUE(Lease(10).empty());  // 2 holders >= 1
  Succeed(t[1]);
  EXPECT_TRUE(Lease(10).empty());  // 1 holder >= 1
  Succeed(t[2]);
  auto last = Lease(10);
  ASSERT_EQ(last.size(), 1u);
  Succeed(last[0]);
  ExpectIdle();
}

TEST_F(LimitsTest, ScheduledJobsReserveOnlyWhenDue) {
  JobSpec future = Spec("q");
  future.limits = {Fixed("k", 1)};
  future.start_at_ms = clock_->NowMs() + 10'000;
  ASSERT_TRUE(engine_->Enqueue(future).ok());
  EXPECT_EQ(Key("k").holders, 0u);
  std::string now_job = Enqueue({Fixed("k", 1)});
  auto t = Lease();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].job_id, now_job);
}

TEST_F(LimitsTest, ReopenRebuildsHoldersAndWaiters) {
  Enqueue({Fixed("k", 1)});
  Enqueue({Fixed("k", 1)});
  auto t = Lease();
  ASSERT_EQ(t.size(), 1u);
  Lease();
  ASSERT_TRUE(engine_->Close().ok());
  engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  EXPECT_EQ(Key("k").holders, 1u);
  EXPECT_EQ(Key("k").waiters, 1u);
  Succeed(t[0]);
  auto next = Lease();
  ASSERT_EQ(next.size(), 1u);
  Succeed(next[0]);
  ExpectIdle();
  ASSERT_TRUE(engine_->Close().ok());
  engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  ExpectIdle();
}

TEST_F(LimitsTest, IdleKeysCostNoMemory) {
  for (int i = 0; i < 1000; ++i) {
    JobSpec s = Spec("q");
    s.limits = {Fixed("key-" + std::to_string(i), 1)};
    ASSERT_TRUE(engine_->Enqueue(s).ok());
  }
  for (;;) {
    auto t = Lease(100);
    if (t.empty()) break;
    for (const auto& x : t) Succeed(x);
  }
  ExpectIdle();
}

// ---- Floating limits ----

TEST_F(LimitsTest, RefreshIssuedOnlyWhileJobsAreEnqueuedAndOnlyOneAtATime) {
  EXPECT_TRUE(LeaseTasks().refreshes.empty());
  std::string a = Enqueue({Floating("api", 1, 1000)});
  std::string b = Enqueue({Floating("api", 1, 1000)});
  LeaseResponse r = LeaseTasks();
  ASSERT_EQ(r.tasks.size(), 1u);      // default max 1
  ASSERT_EQ(r.refreshes.size(), 1u);  // never refreshed: due at once
  const RefreshTask rt = r.refreshes[0];
  EXPECT_EQ(rt.key, "api");
  EXPECT_EQ(rt.current_max, 1u);
  EXPECT_EQ(rt.metadata.at("region"), "eu");
  EXPECT_TRUE(LeaseTasks().refreshes.empty());  // one in flight at a time
  ASSERT_TRUE(engine_->CompleteRefresh("", "api", rt.lease_token, RefreshOutcome::Success(2)).ok());
  // The raise granted the waiter at once.
  auto next = LeaseTasks();
  ASSERT_EQ(next.tasks.size(), 1u);
  EXPECT_TRUE(next.refreshes.empty());  // fresh value, not due
  clock_->Advance(1000);
  auto due = LeaseTasks();
  ASSERT_EQ(due.refreshes.size(), 1u);  // older than its interval, jobs still hold the key
  ASSERT_TRUE(
      engine_->CompleteRefresh("", "api", due.refreshes[0].lease_token, RefreshOutcome::Success(2))
          .ok());
  Succeed(r.tasks[0]);
  Succeed(next.tasks[0]);
  ExpectIdle();
  clock_->Advance(5000);
  EXPECT_TRUE(LeaseTasks().refreshes.empty());  // no enqueued job uses the key
  (void)a;
  (void)b;
}

TEST_F(LimitsTest, RefreshRaiseGrantsWaitersAtOnce) {
  for (int i = 0; i < 5; ++i) Enqueue({Floating("api", 1, 60'000)});
  LeaseResponse r = LeaseTasks();
  ASSERT_EQ(r.tasks.size(), 1u);
  ASSERT_EQ(r.refreshes.size(), 1u);
  EXPECT_EQ(Key("api", Kind::kFloating).waiters, 4u);
  ASSERT_TRUE(
      engine_->CompleteRefresh("", "api", r.refreshes[0].lease_token, RefreshOutcome::Success(5))
          .ok());
  EXPECT_EQ(Key("api", Kind::kFloating).holders, 5u);
  EXPECT_EQ(Key("api", Kind::kFloating).waiters, 0u);
  EXPECT_EQ(LeaseTasks().tasks.size(), 4u);
}

TEST_F(LimitsTest, RefreshFailureBacksOffAndKeepsValue) {
  Enqueue({Floating("api", 3, 60'000)});
  LeaseResponse r = LeaseTasks();
  ASSERT_EQ(r.refreshes.size(), 1u);
  ASSERT_TRUE(engine_
                  ->CompleteRefresh("", "api", r.refreshes[0].lease_token,
                                    RefreshOutcome::Failure("upstream_down"))
                  .ok());
  auto st = engine_->GetFloatingLimit("", "api");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->current_max, 3u);
  EXPECT_EQ(st->consecutive_failures, 1u);
  EXPECT_EQ(st->next_refresh_ms, clock_->NowMs() + 1000);
  clock_->Advance(999);
  EXPECT_TRUE(LeaseTasks().refreshes.empty());
  clock_->Advance(1);
  r = LeaseTasks();
  ASSERT_EQ(r.refreshes.size(), 1u);
  ASSERT_TRUE(engine_
                  ->CompleteRefresh("", "api", r.refreshes[0].lease_token,
                                    RefreshOutcome::Failure("upstream_down"))
                  .ok());
  st = engine_->GetFloatingLimit("", "api");
  EXPECT_EQ(st->consecutive_failures, 2u);
  EXPECT_EQ(st->next_refresh_ms, clock_->NowMs() + 2000);
  EXPECT_EQ(st->current_max, 3u);
  clock_->Advance(2000);
  r = LeaseTasks();
  ASSERT_EQ(r.refreshes.size(), 1u);
  ASSERT_TRUE(
      engine_->CompleteRefresh("", "api", r.refreshes[0].lease_token, RefreshOutcome::Success(7))
          .ok());
  st = engine_->GetFloatingLimit("", "api");
  EXPECT_EQ(st->consecutive_failures, 0u);
  EXPECT_EQ(st->current_max, 7u);
}

TEST_F(LimitsTest, ExpiredRefreshLeaseIsReissuedAndOldTokenIsLost) {
  // Two jobs: when the running one's lease expires too, the waiter keeps the key in use.
  Enqueue({Floating("api", 1, 60'000)});
  Enqueue({Floating("api", 1, 60'000)});
  LeaseResponse r = LeaseTasks();
  ASSERT_EQ(r.refreshes.size(), 1u);
  const uint64_t old_token = r.refreshes[0].lease_token;
  auto hb = engine_->HeartbeatRefresh("", "api", old_token);
  ASSERT_TRUE(hb.ok());
  clock_->Advance(30'001);
  EXPECT_EQ(engine_->HeartbeatRefresh("", "api", old_token).status().code(),
            StatusCode::kLeaseLost);
  ASSERT_TRUE(engine_->ReapExpired().ok());
  LeaseResponse again = LeaseTasks();
  ASSERT_EQ(again.refreshes.size(), 1u);
  EXPECT_NE(again.refreshes[0].lease_token, old_token);
  EXPECT_EQ(engine_->CompleteRefresh("", "api", old_token, RefreshOutcome::Success(9)).code(),
            StatusCode::kLeaseLost);
  EXPECT_EQ(engine_->GetFloatingLimit("", "api")->current_max, 1u);
}

TEST_F(LimitsTest, ManualOverrideAppliesAndZeroPauses) {
  for (int i = 0; i < 3; ++i) Enqueue({Floating("api", 1, 60'000)});
  LeaseResponse r = LeaseTasks();
  ASSERT_EQ(r.tasks.size(), 1u);
  ASSERT_TRUE(engine_->SetFloatingLimit("", "api", 0).ok());
  Succeed(r.tasks[0]);
  EXPECT_TRUE(LeaseTasks().tasks.empty());  // paused: nothing granted
  EXPECT_EQ(Key("api", Kind::kFloating).waiters, 2u);
  ASSERT_TRUE(engine_->SetFloatingLimit("", "api", 2).ok());
  EXPECT_EQ(LeaseTasks().tasks.size(), 2u);
  auto st = engine_->GetFloatingLimit("", "api");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->current_max, 2u);
  EXPECT_EQ(st->holders, 2u);
  auto list = engine_->ListFloatingLimits("", "", 10);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].key, "api");
  EXPECT_EQ(engine_->SetFloatingLimit("", "nope", 1).code(), StatusCode::kNotFound);
}

TEST_F(LimitsTest, RefreshGoesOnlyToQueuesThatUseTheKey) {
  Enqueue({Floating("api", 1, 1000)}, 50, "a");
  LeaseResponse other = LeaseTasks(10, "b");
  EXPECT_TRUE(other.refreshes.empty());
  LeaseResponse mine = LeaseTasks(10, "a");
  EXPECT_EQ(mine.refreshes.size(), 1u);
}

TEST_F(LimitsTest, FixedAndFloatingKeysWithTheSameNameAreDistinct) {
  Enqueue({Fixed("k", 1), Floating("k", 1, 60'000)});
  auto r = LeaseTasks();
  ASSERT_EQ(r.tasks.size(), 1u);
  EXPECT_EQ(Key("k", Kind::kFixed).holders, 1u);
  EXPECT_EQ(Key("k", Kind::kFloating).holders, 1u);
}

}  // namespace
}  // namespace sluice
