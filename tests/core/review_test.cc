// Review regressions: each test demonstrates a correctness bug found in review of the engine.
// Every test here fails against the code it was written for; see the comment on each.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
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

ConcurrencyLimit Fixed(const std::string& key, uint32_t max) {
  ConcurrencyLimit l;
  l.key = key;
  l.max = max;
  return l;
}

ConcurrencyLimit Floating(const std::string& key, uint32_t default_max, uint64_t interval_ms) {
  ConcurrencyLimit l;
  l.kind = Kind::kFloating;
  l.key = key;
  l.max = default_max;
  l.refresh_interval_ms = interval_ms;
  return l;
}

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
  Status s = engine_->CompleteRefresh("", key, r.refreshes[0].lease_token,
                                      RefreshOutcome::Success(5));
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
  ASSERT_TRUE(engine_
                  ->CompleteRefresh("", "api", r.refreshes[0].lease_token,
                                    RefreshOutcome::Success(1))
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
  ASSERT_TRUE(
      engine_->Complete("", t[0].task_id, t[0].lease_token, Outcome::Failure("boom")).ok());
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
  ASSERT_TRUE(engine->Complete("", (*first)[0].task_id, (*first)[0].lease_token,
                               Outcome::Success())
                  .ok());
  ASSERT_TRUE(engine->ReapExpired().ok());
  auto second = engine->Lease(req);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->size(), 1u) << "the parked job is never granted";
}

}  // namespace
}  // namespace sluice
