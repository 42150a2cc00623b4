// Close and reopen: everything durable survives (pending, scheduled, running leases with their
// tokens, terminal jobs with attempts and results) and the in-memory indexes are rebuilt;
// calls after Close() are kClosed; Close() wakes a blocked long-poll (DESIGN.md §3, §4, §5).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
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
using SteadyClock = std::chrono::steady_clock;

using ::sluice::testing::IsOk;

using ::sluice::testing::HasCode;

JobSpec MakeSpec(const std::string& queue, const std::string& id, uint32_t max_retries = 2) {
  JobSpec s = Spec(queue, "payload-" + id);
  s.id = id;
  s.lease_ms = 60'000;
  s.metadata = {{"id", id}};
  RetryPolicy rp;
  rp.max_retries = max_retries;
  rp.initial_backoff_ms = 5'000;
  rp.max_backoff_ms = 5'000;
  rp.multiplier = 1.0;
  s.retry = rp;
  return s;
}

class ReopenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    Open();
  }

  void Open() { engine_ = OpenOrDie(TestOptions(dir_.path(), clock_)); }

  void Reopen() {
    ASSERT_TRUE(IsOk(engine_->Close()));
    engine_.reset();
    Open();
  }

  std::vector<Task> LeaseFrom(const std::string& queue, uint32_t max_tasks = 10,
                              const std::string& tenant = "") {
    LeaseRequest req;
    req.tenant = tenant;
    req.queue = queue;
    req.worker_id = "w";
    req.max_tasks = max_tasks;
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    return r.ok() ? *r : std::vector<Task>{};
  }

  Task LeaseOneFrom(const std::string& queue) {
    auto tasks = LeaseFrom(queue, 1);
    if (tasks.size() != 1) {
      ADD_FAILURE() << "expected one task on " << queue;
      return Task{};
    }
    return tasks[0];
  }

  Job MustGet(const std::string& id, const std::string& tenant = "") {
    auto j = engine_->GetJob(tenant, id, /*include_attempts=*/true);
    EXPECT_TRUE(IsOk(j)) << id;
    return j.ok() ? *j : Job{};
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(ReopenTest, KeepsEveryStateAcrossReopen) {
  const int64_t t0 = clock_->NowMs();
  // waiting (two, to check order), scheduled, running, retry-pending, and the three terminals.
  JobSpec w_low = MakeSpec("work", "w-low");
  w_low.priority = 60;
  ASSERT_TRUE(IsOk(engine_->Enqueue(w_low)));
  JobSpec w_high = MakeSpec("work", "w-high");
  w_high.priority = 5;
  ASSERT_TRUE(IsOk(engine_->Enqueue(w_high)));
  JobSpec sched = MakeSpec("work", "sched");
  sched.start_at_ms = t0 + 30'000;
  ASSERT_TRUE(IsOk(engine_->Enqueue(sched)));
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("run", "running"))));
  const Task running = LeaseOneFrom("run");
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("retry", "retrying"))));
  const Task r1 = LeaseOneFrom("retry");
  ASSERT_TRUE(
      IsOk(engine_->Complete("", r1.task_id, r1.lease_token, Outcome::Failure("flaky", "once"))));
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("done", "ok"))));
  const Task ok = LeaseOneFrom("done");
  ASSERT_TRUE(IsOk(
      engine_->Complete("", ok.task_id, ok.lease_token, Outcome::Success(std::string("r\0s", 3)))));
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("done", "bad", 0))));
  const Task bad = LeaseOneFrom("done");
  ASSERT_TRUE(IsOk(engine_->Complete("", bad.task_id, bad.lease_token,
                                     Outcome::Failure("boom", "msg", "data"))));
  JobSpec cancelled = MakeSpec("work", "cancelled");
  cancelled.tenant = "t2";
  ASSERT_TRUE(IsOk(engine_->Enqueue(cancelled)));
  ASSERT_TRUE(IsOk(engine_->Cancel("t2", "cancelled")));
  ASSERT_TRUE(IsOk(engine_->Cancel("", "running")));  // cancel_requested must survive too

  const std::vector<std::pair<std::string, std::string>> ids = {
      {"", "w-low"},    {"", "w-high"}, {"", "sched"}, {"", "running"},
      {"", "retrying"}, {"", "ok"},     {"", "bad"},   {"t2", "cancelled"}};
  std::vector<Job> before;
  for (const auto& [tenant, id] : ids) before.push_back(MustGet(id, tenant));

  Reopen();

  for (size_t i = 0; i < ids.size(); ++i) {
    const Job after = MustGet(ids[i].second, ids[i].first);
    const Job& b = before[i];
    SCOPED_TRACE(b.id);
    EXPECT_EQ(after.id, b.id);
    EXPECT_EQ(after.tenant, b.tenant);
    EXPECT_EQ(after.queue, b.queue);
    EXPECT_EQ(after.status, b.status);
    EXPECT_EQ(after.priority, b.priority);
    EXPECT_EQ(after.payload, b.payload);
    EXPECT_EQ(after.metadata, b.metadata);
    EXPECT_EQ(after.start_at_ms, b.start_at_ms);
    EXPECT_EQ(after.next_run_ms, b.next_run_ms);
    EXPECT_EQ(after.lease_ms, b.lease_ms);
    EXPECT_EQ(after.retry.max_retries, b.retry.max_retries);
    EXPECT_EQ(after.cancel_requested, b.cancel_requested);
    EXPECT_EQ(after.attempt_count, b.attempt_count);
    EXPECT_EQ(after.retries_used, b.retries_used);
    EXPECT_EQ(after.created_ms, b.created_ms);
    EXPECT_EQ(after.updated_ms, b.updated_ms);
    EXPECT_EQ(after.finished_ms, b.finished_ms);
    ASSERT_EQ(after.attempts.size(), b.attempts.size());
    for (size_t a = 0; a < b.attempts.size(); ++a) {
      EXPECT_EQ(after.attempts[a].number, b.attempts[a].number);
      EXPECT_EQ(after.attempts[a].task_id, b.attempts[a].task_id);
      EXPECT_EQ(after.attempts[a].worker_id, b.attempts[a].worker_id);
      EXPECT_EQ(after.attempts[a].status, b.attempts[a].status);
      EXPECT_EQ(after.attempts[a].started_ms, b.attempts[a].started_ms);
      EXPECT_EQ(after.attempts[a].finished_ms, b.attempts[a].finished_ms);
      EXPECT_EQ(after.attempts[a].result, b.attempts[a].result);
      EXPECT_EQ(after.attempts[a].error.code, b.attempts[a].error.code);
    }
  }
  EXPECT_TRUE(MustGet("running").cancel_requested);

  auto ok_res = engine_->GetResult("", "ok");
  ASSERT_TRUE(IsOk(ok_res));
  EXPECT_EQ(ok_res->status, JobStatus::kSucceeded);
  EXPECT_EQ(ok_res->result, std::string("r\0s", 3));
  auto bad_res = engine_->GetResult("", "bad");
  ASSERT_TRUE(IsOk(bad_res));
  EXPECT_EQ(bad_res->status, JobStatus::kFailed);
  EXPECT_EQ(bad_res->error.code, "boom");
  EXPECT_EQ(bad_res->error.message, "msg");
  EXPECT_EQ(bad_res->error.data, "data");

  // In-memory indexes were rebuilt from the store.
  const EngineStats st = engine_->Stats();
  EXPECT_EQ(st.pending_tasks, 4u) << "w-low, w-high, sched, retrying";
  EXPECT_EQ(st.running, 1u);

  // Ready order is preserved; the scheduled job is not due; the running job is not re-leased.
  auto tasks = LeaseFrom("work");
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].job_id, "w-high");
  EXPECT_EQ(tasks[1].job_id, "w-low");
  EXPECT_TRUE(LeaseFrom("run").empty());
  EXPECT_TRUE(LeaseFrom("retry").empty());
  EXPECT_TRUE(LeaseFrom("work", 10, "t2").empty()) << "cancelled stays cancelled";

  clock_->Set(t0 + 30'000);
  tasks = LeaseFrom("work");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "sched");
  tasks = LeaseFrom("retry");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "retrying");
  EXPECT_EQ(tasks[0].attempt, 2u);
}

TEST_F(ReopenTest, RunningLeaseTokenStaysValid) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "j"))));
  const Task t = LeaseOneFrom("q");
  Reopen();
  clock_->Advance(10'000);
  auto hb = engine_->Heartbeat("", t.task_id, "w", t.lease_token);
  ASSERT_TRUE(IsOk(hb)) << "the lease survives reopen";
  EXPECT_EQ(hb->lease_expires_ms, clock_->NowMs() + 60'000);
  EXPECT_TRUE(
      HasCode(engine_->Heartbeat("", t.task_id, "w", t.lease_token + 1), StatusCode::kLeaseLost));
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success("after"))));
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kSucceeded);
  EXPECT_EQ(res->result, "after");
}

TEST_F(ReopenTest, NewLeaseTokensAfterReopenDoNotCollideWithOldOnes) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "j"))));
  const Task first = LeaseOneFrom("q");
  clock_->Set(first.lease_expires_ms + 1);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  ASSERT_EQ(*reaped, 1u);
  Reopen();
  clock_->Advance(5'000);
  const Task second = LeaseOneFrom("q");
  ASSERT_EQ(second.attempt, 2u);
  EXPECT_NE(second.lease_token, first.lease_token)
      << "a fencing token reused after restart would let a stale worker through";
  EXPECT_TRUE(
      HasCode(engine_->Complete("", first.task_id, first.lease_token, Outcome::Success("stale")),
              StatusCode::kLeaseLost));
  EXPECT_TRUE(
      HasCode(engine_->Complete("", second.task_id, first.lease_token, Outcome::Success("stale")),
              StatusCode::kLeaseLost));
}

TEST_F(ReopenTest, LeaseExpiryIndexIsRebuilt) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "j", 0))));
  const Task t = LeaseOneFrom("q");
  Reopen();
  clock_->Set(t.lease_expires_ms + 1);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  EXPECT_EQ(*reaped, 1u);
  auto res = engine_->GetResult("", "j");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kFailed);
  EXPECT_EQ(res->error.code, "lease_expired");
}

TEST_F(ReopenTest, IdempotentEnqueueAfterReopen) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "j"))));
  Reopen();
  auto again = engine_->Enqueue(MakeSpec("q", "j"));
  ASSERT_TRUE(IsOk(again));
  EXPECT_FALSE(again->created);
  EXPECT_EQ(LeaseFrom("q").size(), 1u);
}

TEST_F(ReopenTest, GeneratedIdsStayOrderedAcrossReopen) {
  auto a = engine_->Enqueue(Spec("q"));
  ASSERT_TRUE(IsOk(a));
  Reopen();
  clock_->Advance(1);
  auto b = engine_->Enqueue(Spec("q"));
  ASSERT_TRUE(IsOk(b));
  EXPECT_LT(a->id, b->id);
  // Same priority and due order: enqueue order survives too.
  clock_->Advance(1);
  auto tasks = LeaseFrom("q");
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].job_id, a->id);
  EXPECT_EQ(tasks[1].job_id, b->id);
}

TEST_F(ReopenTest, EnqueueOrderSurvivesReopenForEqualPriorityAndDue) {
  // Jobs enqueued in the same millisecond before and after a reopen keep enqueue order.
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "zz-first"))));
  Reopen();
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "aa-second"))));
  auto tasks = LeaseFrom("q");
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].job_id, "zz-first");
  EXPECT_EQ(tasks[1].job_id, "aa-second");
}

TEST_F(ReopenTest, StoreHoldsNoStaleTasksOrLeasesAfterTransitions) {
  // Every transition must remove the task and lease records it supersedes, or a reopen would
  // resurrect them into the in-memory indexes.
  const int64_t t0 = clock_->NowMs();
  auto enqueue = [&](const std::string& id, int64_t start_at = 0) {
    JobSpec s = MakeSpec(id, id);  // one queue per job
    s.start_at_ms = start_at;
    ASSERT_TRUE(IsOk(engine_->Enqueue(s)));
  };
  enqueue("a", t0 + 30'000);  // scheduled -> expedited: pending
  ASSERT_TRUE(IsOk(engine_->Expedite("", "a")));
  enqueue("b");  // waiting -> cancelled
  ASSERT_TRUE(IsOk(engine_->Cancel("", "b")));
  enqueue("c");  // waiting -> deleted
  ASSERT_TRUE(IsOk(engine_->Delete("", "c")));
  enqueue("i", t0 + 30'000);  // scheduled -> deleted
  ASSERT_TRUE(IsOk(engine_->Delete("", "i")));
  enqueue("d");  // fail, expedite the retry, succeed
  Task t = LeaseOneFrom("d");
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
  ASSERT_TRUE(IsOk(engine_->Expedite("", "d")));
  t = LeaseOneFrom("d");
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success())));
  enqueue("e");  // cancel while running, report, restart: pending
  t = LeaseOneFrom("e");
  ASSERT_TRUE(IsOk(engine_->Cancel("", "e")));
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
  ASSERT_TRUE(IsOk(engine_->Restart("", "e")));
  enqueue("h");  // heartbeats, then success
  const Task h = LeaseOneFrom("h");
  enqueue("f");                         // expires and is reaped: pending retry
  JobSpec g_spec = MakeSpec("g", "g");  // stays running with a long lease
  g_spec.lease_ms = 36'000'000;
  ASSERT_TRUE(IsOk(engine_->Enqueue(g_spec)));
  const Task g = LeaseOneFrom("g");
  const Task f = LeaseOneFrom("f");
  for (int i = 0; i < 3; ++i) {
    clock_->Advance(30'000);
    ASSERT_TRUE(IsOk(engine_->Heartbeat("", h.task_id, "w", h.lease_token)));
  }
  ASSERT_GT(clock_->NowMs(), f.lease_expires_ms);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  ASSERT_EQ(*reaped, 1u);
  ASSERT_TRUE(IsOk(engine_->Complete("", h.task_id, h.lease_token, Outcome::Success())));

  EXPECT_EQ(engine_->Stats().pending_tasks, 3u) << "a, e, f";
  EXPECT_EQ(engine_->Stats().running, 1u) << "g";
  Reopen();
  EXPECT_EQ(engine_->Stats().pending_tasks, 3u) << "stale task records survived in the store";
  EXPECT_EQ(engine_->Stats().running, 1u) << "stale lease records survived in the store";

  clock_->Advance(3'600'000);
  size_t leased = 0;
  for (const char* q : {"a", "b", "c", "d", "e", "f", "h", "i"}) {
    auto tasks = LeaseFrom(q);
    leased += tasks.size();
    for (const auto& task : tasks) {
      EXPECT_TRUE(task.job_id == "a" || task.job_id == "e" || task.job_id == "f") << task.job_id;
    }
  }
  EXPECT_EQ(leased, 3u);
  EXPECT_TRUE(IsOk(engine_->Heartbeat("", g.task_id, "w", g.lease_token)));
}

TEST_F(ReopenTest, FencingTokensStayUniqueWhenTheClockStepsBackAcrossReopen) {
  // A wall-clock step backwards across a restart must not reissue an old fencing token: here
  // the same task id ("j#1") exists again after delete and re-enqueue of the same id, so a
  // reissued token would let the old incarnation's stale worker complete the new job.
  const int64_t t0 = clock_->NowMs();
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "j", 0))));
  const Task old = LeaseOneFrom("q");
  clock_->Set(old.lease_expires_ms + 1);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  ASSERT_EQ(*reaped, 1u);
  ASSERT_TRUE(IsOk(engine_->Delete("", "j")));
  ASSERT_TRUE(IsOk(engine_->Close()));
  engine_.reset();
  clock_->Set(t0);  // the wall clock stepped back while the server was down
  Open();
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "j", 0))));
  const Task fresh = LeaseOneFrom("q");
  ASSERT_EQ(fresh.task_id, old.task_id);
  EXPECT_NE(fresh.lease_token, old.lease_token);
  EXPECT_TRUE(
      HasCode(engine_->Complete("", old.task_id, old.lease_token, Outcome::Success("stale")),
              StatusCode::kLeaseLost));
}

TEST_F(ReopenTest, CallsAfterCloseAreClosed) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "j"))));
  const Task t = LeaseOneFrom("q");
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "other"))));
  ASSERT_TRUE(IsOk(engine_->Close()));
  EXPECT_TRUE(IsOk(engine_->Close())) << "Close is idempotent";

  const StatusCode kClosed = StatusCode::kClosed;
  EXPECT_TRUE(HasCode(engine_->Enqueue(MakeSpec("q", "new")), kClosed));
  const std::vector<JobSpec> batch = {MakeSpec("q", "b")};
  EXPECT_TRUE(HasCode(engine_->EnqueueBatch(batch), kClosed));
  LeaseRequest req;
  req.queue = "q";
  req.worker_id = "w";
  EXPECT_TRUE(HasCode(engine_->Lease(req), kClosed));
  req.wait_ms = 1'000;
  EXPECT_TRUE(HasCode(engine_->Lease(req), kClosed));
  EXPECT_TRUE(HasCode(engine_->Heartbeat("", t.task_id, "w", t.lease_token), kClosed));
  EXPECT_TRUE(
      HasCode(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success()), kClosed));
  EXPECT_TRUE(HasCode(engine_->Cancel("", "other"), kClosed));
  EXPECT_TRUE(HasCode(engine_->Restart("", "other"), kClosed));
  EXPECT_TRUE(HasCode(engine_->Expedite("", "other"), kClosed));
  EXPECT_TRUE(HasCode(engine_->Delete("", "other"), kClosed));
  EXPECT_TRUE(HasCode(engine_->GetJob("", "j"), kClosed));
  EXPECT_TRUE(HasCode(engine_->GetResult("", "j"), kClosed));
  EXPECT_TRUE(HasCode(engine_->ReapExpired(), kClosed));
  (void)engine_->Stats();  // a snapshot stays readable and must not crash

  // None of the refused calls reached the store.
  engine_.reset();
  Open();
  EXPECT_TRUE(HasCode(engine_->GetJob("", "new"), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->GetJob("", "b"), StatusCode::kNotFound));
  EXPECT_EQ(MustGet("j").status, JobStatus::kRunning);
  EXPECT_EQ(MustGet("other").status, JobStatus::kWaiting);
  EXPECT_TRUE(IsOk(engine_->Heartbeat("", t.task_id, "w", t.lease_token)));
}

TEST_F(ReopenTest, DestructorWithoutCloseStillPersists) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("q", "j"))));
  engine_.reset();
  Open();
  EXPECT_EQ(MustGet("j").status, JobStatus::kWaiting);
}

TEST(ReopenCloseTest, CloseWakesBlockedLongPollWithClosed) {
  TempDir dir;
  auto engine = OpenOrDie(TestOptions(dir.path()));
  Status lease_status;
  SteadyClock::time_point returned_at;
  std::thread poller([&] {
    LeaseRequest req;
    req.queue = "q";
    req.worker_id = "w";
    req.wait_ms = 10'000;
    auto r = engine->Lease(req);
    returned_at = SteadyClock::now();
    lease_status = r.status();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto closed_at = SteadyClock::now();
  ASSERT_TRUE(IsOk(engine->Close()));
  const auto close_took = SteadyClock::now() - closed_at;
  poller.join();
  EXPECT_TRUE(HasCode(lease_status, StatusCode::kClosed));
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(returned_at - closed_at).count(),
            1'000)
      << "Close() must wake the long-poll, not wait out its 10 s";
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(close_took).count(), 2'000);
}

TEST(ReopenCloseTest, CloseWakesEveryBlockedLongPoll) {
  TempDir dir;
  auto engine = OpenOrDie(TestOptions(dir.path()));
  constexpr int kPollers = 4;
  std::vector<StatusCode> codes(kPollers, StatusCode::kOk);
  std::vector<std::thread> pollers;
  for (int i = 0; i < kPollers; ++i) {
    pollers.emplace_back([&, i] {
      LeaseRequest req;
      req.queue = "q" + std::to_string(i % 2);
      req.worker_id = "w" + std::to_string(i);
      req.wait_ms = 10'000;
      codes[static_cast<size_t>(i)] = engine->Lease(req).status().code();
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto start = SteadyClock::now();
  ASSERT_TRUE(IsOk(engine->Close()));
  for (auto& p : pollers) p.join();
  EXPECT_LT(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count(),
      2'000);
  for (StatusCode c : codes) EXPECT_EQ(c, StatusCode::kClosed);
}

TEST(OpenTest, CreatesMissingParentDirectories) {
  testing::TempDir dir;
  auto engine = testing::OpenOrDie(testing::TestOptions(dir.path() + "/a/b/c"));
  EXPECT_TRUE(engine->Enqueue(testing::Spec("q")).ok());
}

}  // namespace
}  // namespace sluice
