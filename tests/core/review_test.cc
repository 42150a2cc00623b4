// Review regressions: each test demonstrates a correctness bug found in review of the engine.
// Every test here fails against the code it was written for; see the comment on each.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
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
using testing::Floating;

RetryPolicy NoRetry() {
  RetryPolicy p;
  p.max_retries = 0;
  return p;
}

class ReviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  void Reopen() {
    engine_.reset();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  std::string Enqueue(std::vector<ConcurrencyLimit> limits, RetryPolicy retry = NoRetry()) {
    JobSpec s = Spec("q");
    s.limits = std::move(limits);
    s.retry = retry;
    auto r = engine_->Enqueue(s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->id : "";
  }

  LeaseRequest Req(uint32_t n = 10) {
    LeaseRequest req;
    req.queue = "q";
    req.worker_id = "w";
    req.max_tasks = n;
    return req;
  }

  std::vector<Task> Lease(uint32_t n = 10) {
    auto r = engine_->Lease(Req(n));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<Task>{};
  }

  LeaseResponse LeaseTasks(uint32_t n = 10) {
    auto r = engine_->LeaseTasks(Req(n));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : LeaseResponse{};
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

// HeartbeatRefresh moves ks->refresh_expires_ms but never files the new expiry in
// LimitIndex::refresh_expiry_ (engine_limits.cc HeartbeatRefresh). When the old entry comes
// up, ExpireRefreshes skips it as stale, so a refresh lease that was heartbeated once never
// expires: if its worker dies, the key stays "in flight" forever and is never refreshed again.
TEST_F(ReviewTest, HeartbeatedRefreshLeaseStillExpires) {
  Enqueue({Floating("api", 1, 60'000)});
  Enqueue({Floating("api", 1, 60'000)});
  LeaseResponse r = LeaseTasks();
  ASSERT_EQ(r.refreshes.size(), 1u);
  const uint64_t token = r.refreshes[0].lease_token;
  clock_->Advance(10'000);
  auto hb = engine_->HeartbeatRefresh("", "api", token);
  ASSERT_TRUE(hb.ok()) << hb.status().ToString();
  EXPECT_EQ(*hb, clock_->NowMs() + 30'000);
  // The refresh worker dies. Past the extended expiry its token is dead...
  clock_->Advance(30'001);
  EXPECT_EQ(engine_->HeartbeatRefresh("", "api", token).status().code(), StatusCode::kLeaseLost);
  ASSERT_TRUE(engine_->ReapExpired().ok());
  // ...so the key must not stay in flight, and the next lease must reissue its refresh.
  auto st = engine_->GetFloatingLimit("", "api");
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(st->refresh_in_flight);
  LeaseResponse again = LeaseTasks();
  EXPECT_EQ(again.refreshes.size(), 1u) << "the refresh of \"api\" was never reissued";
}

// Floating keys may be up to max_limit_key_bytes (256) long, but GetFloatingLimit,
// SetFloatingLimit, CompleteRefresh and GetConcurrencyKey validate the key with
// validate::JobRef, i.e. against max_id_bytes (128). A refresh of a 200-byte key can be issued
// but never completed (kTooLarge "id is 200 bytes"), so it is reissued forever and the key
// keeps its default max; operators cannot read or override it either.
TEST_F(ReviewTest, LongFloatingKeyCanBeRefreshedAndManaged) {
  const std::string key(200, 'k');
  Enqueue({Floating(key, 1, 60'000)});
  Enqueue({Floating(key, 1, 60'000)});
  LeaseResponse r = LeaseTasks();
  ASSERT_EQ(r.refreshes.size(), 1u);
  EXPECT_EQ(r.refreshes[0].key, key);
  Status s =
      engine_->CompleteRefresh("", key, r.refreshes[0].lease_token, RefreshOutcome::Success(5));
  EXPECT_TRUE(s.ok()) << s.ToString();
  auto st = engine_->GetFloatingLimit("", key);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  s = engine_->SetFloatingLimit("", key, 3);
  EXPECT_TRUE(s.ok()) << s.ToString();
  auto info = engine_->GetConcurrencyKey("", Kind::kFloating, key);
  EXPECT_TRUE(info.ok()) << info.status().ToString();
}

// refresh_interval_ms is only checked to be > 0. KeyState::RefreshDueMs computes
// last_refreshed_ms + static_cast<int64_t>(refresh_interval_ms); for an interval >= 2^63 that
// is in the past, so a key refreshed a moment ago is due again at once: every LeaseTasks of the
// queue hands out another refresh (a refresh storm instead of "practically never").
TEST_F(ReviewTest, HugeRefreshIntervalDoesNotRefreshAgainAtOnce) {
  JobSpec spec = Spec("q");
  spec.limits = {Floating("api", 1, std::numeric_limits<uint64_t>::max())};
  spec.retry = NoRetry();
  auto e1 = engine_->Enqueue(spec);
  if (!e1.ok()) {
    // Rejecting the interval at the edge is an acceptable fix.
    EXPECT_EQ(e1.status().code(), StatusCode::kInvalidArgument);
    return;
  }
  ASSERT_TRUE(engine_->Enqueue(spec).ok());
  LeaseResponse r = LeaseTasks(1);
  ASSERT_EQ(r.refreshes.size(), 1u);
  ASSERT_TRUE(
      engine_->CompleteRefresh("", "api", r.refreshes[0].lease_token, RefreshOutcome::Success(1))
          .ok());
  auto st = engine_->GetFloatingLimit("", "api");
  ASSERT_TRUE(st.ok());
  EXPECT_GE(st->next_refresh_ms, clock_->NowMs()) << "next refresh is in the past";
  LeaseResponse again = LeaseTasks(1);
  EXPECT_TRUE(again.refreshes.empty()) << "refreshed again right after a successful refresh";
}

// RetryPolicy backoffs are not bounded by validation. FinishAttempt computes
// now + static_cast<int64_t>(delay); a delay of 2^63 ms wraps to a due time far in the past.
// The retry runs at once instead of (practically) never, and because TaskKey clamps a negative
// due time to 0 while the job record keeps the negative value, after a reopen the rebuilt index
// entry no longer matches the record: the job reads "waiting" but can never be leased.
TEST_F(ReviewTest, HugeBackoffDoesNotRetryAtOnceNorStrandTheJob) {
  RetryPolicy retry;
  retry.max_retries = 1;
  retry.initial_backoff_ms = uint64_t{1} << 63;
  retry.max_backoff_ms = uint64_t{1} << 63;
  retry.multiplier = 1.0;
  JobSpec spec = Spec("q");
  spec.retry = retry;
  auto e = engine_->Enqueue(spec);
  if (!e.ok()) {
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);  // rejecting it is a fix too
    return;
  }
  auto t = Lease(1);
  ASSERT_EQ(t.size(), 1u);
  ASSERT_TRUE(engine_->Complete("", t[0].task_id, t[0].lease_token, Outcome::Failure("boom")).ok());
  auto job = engine_->GetJob("", e->id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->status, JobStatus::kScheduled) << "next_run_ms=" << job->next_run_ms;
  EXPECT_GE(job->next_run_ms, clock_->NowMs());

  // Whatever the status says, after a reopen it must agree with what Lease does.
  Reopen();
  job = engine_->GetJob("", e->id);
  ASSERT_TRUE(job.ok());
  auto again = Lease(1);
  if (job->status == JobStatus::kWaiting) {
    EXPECT_EQ(again.size(), 1u) << "job reads waiting but can never be leased";
  } else {
    EXPECT_TRUE(again.empty());
  }
}

// EngineOptions::max_grants_per_key_per_pass is not validated. With 0, RunGrants never grants
// (every parked job waits forever), and at Open `while (RunGrants(1 << 16))` never terminates
// when the store has waiters: the key is re-marked dirty on every turn with done == 0.
// (This test does not reopen with waiters, which would hang.)
TEST(ReviewOptionsTest, ZeroGrantsPerPassIsRejectedOrStillGrants) {
  TempDir dir;
  auto clock = std::make_shared<ManualClock>();
  EngineOptions o = TestOptions(dir.path(), clock);
  o.max_grants_per_key_per_pass = 0;
  auto opened = Engine::Open(o);
  if (!opened.ok()) {
    EXPECT_EQ(opened.status().code(), StatusCode::kInvalidArgument);
    return;
  }
  std::unique_ptr<Engine> engine = std::move(opened).value();
  for (int i = 0; i < 2; ++i) {
    JobSpec s = Spec("q");
    s.limits = {Fixed("k", 1)};
    s.retry = NoRetry();
    ASSERT_TRUE(engine->Enqueue(s).ok());
  }
  LeaseRequest req;
  req.queue = "q";
  req.worker_id = "w";
  req.max_tasks = 10;
  auto first = engine->Lease(req);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  ASSERT_TRUE(
      engine->Complete("", (*first)[0].task_id, (*first)[0].lease_token, Outcome::Success()).ok());
  ASSERT_TRUE(engine->ReapExpired().ok());
  auto second = engine->Lease(req);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->size(), 1u) << "the parked job is never granted";
}

// SetFloatingLimit on a key that is not in memory reads the 'F' record, writes the new value,
// and updates memory only if the key is in memory by then (engine_limits.cc ApplyFloating).
// LeaseRefs reads the same record earlier (EnsureFloating, outside limits_mu_) and creates the
// in-memory key later (DecideAcquire -> GetOrCreate) from that stale copy. When the override
// commits between the two, memory keeps the old max while the store has the new one: the
// operator's override (e.g. 0 to pause the key) is silently not enforced while the key stays
// active, and the next refresh writes the stale base back. A batch lease of many jobs widens
// the window; the override is issued the moment the 'F' record appears.
TEST_F(ReviewTest, OverrideRacingFirstLeaseIsNotLost) {
  int lost = 0;
  for (int round = 0; round < 100; ++round) {
    const std::string key = "api" + std::to_string(round);
    const std::string queue = "q" + std::to_string(round);
    std::vector<JobSpec> specs;
    for (int i = 0; i < 300; ++i) {
      JobSpec s = Spec(queue);
      s.limits = {Floating(key, 1, 60'000)};
      s.retry = NoRetry();
      specs.push_back(std::move(s));
    }
    ASSERT_TRUE(engine_->EnqueueBatch(specs).ok());
    std::atomic<bool> stop{false};
    Status set_status;
    std::thread overrider([&] {
      for (;;) {
        set_status = engine_->SetFloatingLimit("", key, 7);
        if (set_status.code() != StatusCode::kNotFound || stop.load()) return;
      }
    });
    LeaseRequest req;
    req.queue = queue;
    req.worker_id = "w";
    req.max_tasks = 300;
    auto leased = engine_->Lease(req);
    ASSERT_TRUE(leased.ok()) << leased.status().ToString();
    stop = true;
    overrider.join();
    // The overrider may not have run before the lease ended (this round did not race): the
    // record exists now, so the override must succeed.
    if (set_status.code() == StatusCode::kNotFound)
      set_status = engine_->SetFloatingLimit("", key, 7);
    ASSERT_TRUE(set_status.ok()) << set_status.ToString();
    auto st = engine_->GetFloatingLimit("", key);
    ASSERT_TRUE(st.ok());
    // The override committed (OK) after the record existed; the key must now enforce 7.
    if (st->current_max != 7u) ++lost;
  }
  EXPECT_EQ(lost, 0) << "SetFloatingLimit returned OK but the in-memory max kept the old value";
}

// LimitIndex::IssueRefresh looks at no more than 64 due entries of the engine-wide refresh
// schedule (ordered by due time) and skips those of other tenants/queues. Entries of keys whose
// queue has no polling worker stay due at the front forever, so once 64 of them exist, no other
// queue ever gets a refresh again (a paused key, max 0, then never resumes).
TEST_F(ReviewTest, DueRefreshesOfOtherQueuesDoNotStarveThisQueue) {
  for (int i = 0; i < 70; ++i) {
    JobSpec s = Spec("other");
    s.limits = {Floating("a" + std::to_string(i), 1, 60'000)};
    s.lease_ms = 3'600'000;
    ASSERT_TRUE(engine_->Enqueue(s).ok());
  }
  LeaseRequest other;
  other.queue = "other";
  other.worker_id = "w-other";
  other.max_tasks = 100;
  auto r = engine_->LeaseTasks(other);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->tasks.size(), 70u);  // 70 active floating keys, 69 refreshes now due
  // The "other" worker is busy (or gone) and does not poll. A worker of "q" leases its own job.
  Enqueue({Floating("zzz", 1, 60'000)});
  LeaseResponse mine = LeaseTasks();
  ASSERT_EQ(mine.tasks.size(), 1u);
  ASSERT_EQ(mine.refreshes.size(), 1u) << "the due refresh of \"zzz\" was never issued";
  EXPECT_EQ(mine.refreshes[0].key, "zzz");
}

// Expedite treats any pending job with due_ms > now as scheduled. A job parked on a full key
// (waiting_on > 0, a 'W' entry, no 'T' key) has due_ms in the past, unless the wall clock
// stepped back (ManualClock::Set models that). Then Expedite writes a 'T' key for it while its
// 'W' entry stays: the job is in the ready range and in the waiter queue at once. The next
// lease parks it a second time (two waiter entries for one job), and the first 'W' key is never
// deleted from the store (a grant deletes the 'W' key named by the new due time).
TEST_F(ReviewTest, ExpediteOfParkedJobAfterClockStepBackKeepsOneWaiterEntry) {
  Enqueue({Fixed("k", 1)});
  const std::string b = Enqueue({Fixed("k", 1)});
  auto t = Lease();
  ASSERT_EQ(t.size(), 1u);
  auto info = engine_->GetConcurrencyKey("", Kind::kFixed, "k");
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->waiters, 1u);
  clock_->Set(clock_->NowMs() - 10'000);  // wall-clock step back
  ASSERT_TRUE(engine_->Expedite("", b).ok());
  EXPECT_TRUE(Lease().empty());  // k is still full
  info = engine_->GetConcurrencyKey("", Kind::kFixed, "k");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->waiters, 1u) << "one parked job, counted as several waiters";
  EXPECT_EQ(engine_->Stats().limit_waiters, 1u);
}

}  // namespace
}  // namespace sluice
