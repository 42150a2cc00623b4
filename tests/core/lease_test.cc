// Lease: ready order, batching, tenant and queue isolation, scheduling, long-poll and the
// contents of a leased task (DESIGN.md §2, §3, §5).
#include <gtest/gtest.h>
#include <time.h>

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

JobSpec SpecWithId(const std::string& queue, const std::string& id,
                   const std::string& payload = "p") {
  JobSpec s = Spec(queue, payload);
  s.id = id;
  return s;
}

LeaseRequest Request(const std::string& queue, uint32_t max_tasks = 1,
                     const std::string& tenant = "", uint32_t wait_ms = 0) {
  LeaseRequest req;
  req.tenant = tenant;
  req.queue = queue;
  req.worker_id = "worker-1";
  req.max_tasks = max_tasks;
  req.wait_ms = wait_ms;
  return req;
}

std::vector<std::string> JobIds(const std::vector<Task>& tasks) {
  std::vector<std::string> ids;
  for (const auto& t : tasks) ids.push_back(t.job_id);
  return ids;
}

int64_t MillisSince(SteadyClock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
}

int64_t ThreadCpuMillis() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  std::vector<Task> MustLease(const LeaseRequest& req) {
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    return r.ok() ? *r : std::vector<Task>{};
  }

  void MustEnqueue(const JobSpec& s) { ASSERT_TRUE(IsOk(engine_->Enqueue(s))); }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(LeaseTest, EmptyQueueReturnsNothing) {
  auto tasks = MustLease(Request("nobody-uses-this"));
  EXPECT_TRUE(tasks.empty());
}

TEST_F(LeaseTest, OrdersByPriorityFirst) {
  const std::vector<std::pair<std::string, uint32_t>> jobs = {
      {"p50", 50}, {"p10", 10}, {"p90", 90}, {"p0", 0}, {"p99", 99}, {"p11", 11}};
  for (const auto& [id, prio] : jobs) {
    JobSpec s = SpecWithId("q", id);
    s.priority = prio;
    MustEnqueue(s);
  }
  auto tasks = MustLease(Request("q", 10));
  EXPECT_EQ(JobIds(tasks), (std::vector<std::string>{"p0", "p10", "p11", "p50", "p90", "p99"}));
  for (const auto& t : tasks) {
    EXPECT_EQ(t.priority, std::stoul(t.job_id.substr(1)));
  }
}

TEST_F(LeaseTest, PriorityBeatsEarlierDueTime) {
  const int64_t t0 = clock_->NowMs();
  JobSpec low = SpecWithId("q", "low-early");
  low.priority = 90;
  MustEnqueue(low);
  JobSpec high = SpecWithId("q", "high-late");
  high.priority = 10;
  high.start_at_ms = t0 + 1'000;
  MustEnqueue(high);
  clock_->Advance(1'000);
  auto tasks = MustLease(Request("q", 1));
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "high-late");
}

TEST_F(LeaseTest, SamePriorityOrdersByDueTime) {
  const int64_t t0 = clock_->NowMs();
  // Enqueued in the reverse of their due order.
  JobSpec a = SpecWithId("q", "due-plus-2000");
  a.start_at_ms = t0 + 2'000;
  MustEnqueue(a);
  JobSpec b = SpecWithId("q", "due-plus-1000");
  b.start_at_ms = t0 + 1'000;
  MustEnqueue(b);
  clock_->Advance(500);
  MustEnqueue(SpecWithId("q", "due-plus-500"));  // start_at 0: due at enqueue
  clock_->Advance(1'500);
  auto tasks = MustLease(Request("q", 10));
  EXPECT_EQ(JobIds(tasks),
            (std::vector<std::string>{"due-plus-500", "due-plus-1000", "due-plus-2000"}));
}

TEST_F(LeaseTest, SamePriorityAndDueOrdersByEnqueueOrder) {
  const std::vector<std::string> ids = {"zeta", "alpha", "mid", "beta", "omega", "a0"};
  for (const auto& id : ids) MustEnqueue(SpecWithId("q", id));
  // One at a time: each call takes the current head.
  std::vector<std::string> got;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto tasks = MustLease(Request("q", 1));
    ASSERT_EQ(tasks.size(), 1u);
    got.push_back(tasks[0].job_id);
  }
  EXPECT_EQ(got, ids);
  EXPECT_TRUE(MustLease(Request("q", 1)).empty());
}

TEST_F(LeaseTest, MaxTasksIsHonoured) {
  for (int i = 0; i < 5; ++i) MustEnqueue(SpecWithId("q", "j" + std::to_string(i)));
  EXPECT_EQ(MustLease(Request("q", 2)).size(), 2u);
  EXPECT_EQ(MustLease(Request("q", 2)).size(), 2u);
  EXPECT_EQ(MustLease(Request("q", 2)).size(), 1u);
  EXPECT_EQ(MustLease(Request("q", 2)).size(), 0u);
  EXPECT_EQ(engine_->Stats().leased, 5u);
  EXPECT_EQ(engine_->Stats().running, 5u);
  EXPECT_EQ(engine_->Stats().pending_tasks, 0u);
}

TEST_F(LeaseTest, ALeasedJobIsNotLeasedAgain) {
  MustEnqueue(SpecWithId("q", "once"));
  ASSERT_EQ(MustLease(Request("q", 5)).size(), 1u);
  EXPECT_TRUE(MustLease(Request("q", 5)).empty());
  clock_->Advance(10'000);  // well inside the default 30 s lease
  EXPECT_TRUE(MustLease(Request("q", 5)).empty());
}

TEST_F(LeaseTest, TenantsAreIsolatedOnTheSameQueueName) {
  JobSpec a = SpecWithId("q", "job-a", "a");
  a.tenant = "tenant-a";
  JobSpec b = SpecWithId("q", "job-b", "b");
  b.tenant = "tenant-b";
  b.priority = 0;  // would be first if tenants were mixed
  MustEnqueue(a);
  MustEnqueue(b);

  auto ta = MustLease(Request("q", 10, "tenant-a"));
  ASSERT_EQ(ta.size(), 1u);
  EXPECT_EQ(ta[0].job_id, "job-a");
  EXPECT_EQ(ta[0].tenant, "tenant-a");
  EXPECT_TRUE(MustLease(Request("q", 10, "tenant-a")).empty());
  EXPECT_TRUE(MustLease(Request("q", 10, "")).empty()) << "default tenant sees neither";

  auto tb = MustLease(Request("q", 10, "tenant-b"));
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(tb[0].job_id, "job-b");
  EXPECT_EQ(tb[0].tenant, "tenant-b");
}

TEST_F(LeaseTest, QueuesAreIsolated) {
  MustEnqueue(SpecWithId("emails", "e1"));
  MustEnqueue(SpecWithId("reports", "r1"));
  auto t = MustLease(Request("reports", 10));
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].job_id, "r1");
  EXPECT_EQ(t[0].queue, "reports");
  EXPECT_TRUE(MustLease(Request("email", 10)).empty()) << "no prefix match";
  auto e = MustLease(Request("emails", 10));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].job_id, "e1");
}

TEST_F(LeaseTest, ScheduledJobIsNotLeasedUntilDue) {
  JobSpec s = SpecWithId("q", "later");
  s.start_at_ms = clock_->NowMs() + 1'000;
  MustEnqueue(s);
  EXPECT_TRUE(MustLease(Request("q")).empty());
  clock_->Advance(999);
  EXPECT_TRUE(MustLease(Request("q")).empty());
  clock_->Advance(1);
  auto tasks = MustLease(Request("q"));
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "later");
}

TEST_F(LeaseTest, ScheduledJobDoesNotBlockDueJobsBehindIt) {
  JobSpec s = SpecWithId("q", "later");
  s.priority = 0;
  s.start_at_ms = clock_->NowMs() + 1'000;
  MustEnqueue(s);
  MustEnqueue(SpecWithId("q", "now"));
  auto tasks = MustLease(Request("q", 10));
  EXPECT_EQ(JobIds(tasks), (std::vector<std::string>{"now"}));
}

TEST_F(LeaseTest, TaskCarriesEverything) {
  JobSpec s = SpecWithId("q", "job-7", std::string("bin\0ary", 7));
  s.tenant = "t";
  s.priority = 33;
  s.lease_ms = 5'000;
  s.metadata = {{"trace", "abc"}, {"user", "42"}};
  MustEnqueue(s);
  const int64_t now = clock_->NowMs();
  auto tasks = MustLease(Request("q", 1, "t"));
  ASSERT_EQ(tasks.size(), 1u);
  const Task& t = tasks[0];
  EXPECT_EQ(t.task_id, "job-7#1");
  EXPECT_EQ(t.job_id, "job-7");
  EXPECT_EQ(t.tenant, "t");
  EXPECT_EQ(t.queue, "q");
  EXPECT_EQ(t.attempt, 1u);
  EXPECT_EQ(t.priority, 33u);
  EXPECT_EQ(t.payload, std::string("bin\0ary", 7));
  EXPECT_EQ(t.metadata, s.metadata);
  EXPECT_NE(t.lease_token, 0u);
  EXPECT_EQ(t.lease_expires_ms, now + 5'000);
}

TEST_F(LeaseTest, DefaultLeaseLengthComesFromOptions) {
  MustEnqueue(SpecWithId("q", "d"));
  auto tasks = MustLease(Request("q"));
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].lease_expires_ms, clock_->NowMs() + 30'000);
}

TEST_F(LeaseTest, DistinctTasksGetDistinctTokens) {
  for (int i = 0; i < 10; ++i) MustEnqueue(SpecWithId("q", "j" + std::to_string(i)));
  auto tasks = MustLease(Request("q", 10));
  ASSERT_EQ(tasks.size(), 10u);
  for (size_t i = 0; i < tasks.size(); ++i) {
    for (size_t j = i + 1; j < tasks.size(); ++j) {
      EXPECT_NE(tasks[i].lease_token, tasks[j].lease_token);
    }
  }
}

TEST_F(LeaseTest, JobBecomesRunningWithAnOpenAttempt) {
  MustEnqueue(SpecWithId("q", "r"));
  const int64_t now = clock_->NowMs();
  auto tasks = MustLease(Request("q"));
  ASSERT_EQ(tasks.size(), 1u);
  auto job = engine_->GetJob("", "r", /*include_attempts=*/true);
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kRunning);
  EXPECT_EQ(job->attempt_count, 1u);
  EXPECT_EQ(job->retries_used, 0u);
  EXPECT_FALSE(job->cancel_requested);
  EXPECT_EQ(job->next_run_ms, 0);
  ASSERT_EQ(job->attempts.size(), 1u);
  const Attempt& a = job->attempts[0];
  EXPECT_EQ(a.number, 1u);
  EXPECT_EQ(a.task_id, "r#1");
  EXPECT_EQ(a.worker_id, "worker-1");
  EXPECT_EQ(a.status, AttemptStatus::kRunning);
  EXPECT_EQ(a.started_ms, now);
  EXPECT_EQ(a.finished_ms, 0);

  auto without = engine_->GetJob("", "r");
  ASSERT_TRUE(IsOk(without));
  EXPECT_TRUE(without->attempts.empty()) << "attempts only when asked for";

  auto res = engine_->GetResult("", "r");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kRunning);
  EXPECT_FALSE(res->finished);
}

// ---- Long-poll, on the real system clock. ----

class LeaseLongPollTest : public ::testing::Test {
 protected:
  void SetUp() override { engine_ = OpenOrDie(TestOptions(dir_.path())); }
  TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(LeaseLongPollTest, WakesPromptlyOnEnqueue) {
  SteadyClock::time_point enqueued_at;
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto r = engine_->Enqueue(SpecWithId("q", "wake"));
    enqueued_at = SteadyClock::now();
    EXPECT_TRUE(IsOk(r));
  });
  const auto start = SteadyClock::now();
  auto r = engine_->Lease(Request("q", 1, "", 2'000));
  const auto returned_at = SteadyClock::now();
  producer.join();
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].job_id, "wake");
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(returned_at - start);
  EXPECT_GE(waited.count(), 250) << "returned before anything was enqueued";
  const auto latency =
      std::chrono::duration_cast<std::chrono::milliseconds>(returned_at - enqueued_at);
  EXPECT_LT(latency.count(), 150) << "long-poll must wake on enqueue, not at its deadline";
}

TEST_F(LeaseLongPollTest, ReturnsAtOnceWhenWorkIsDue) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(SpecWithId("q", "ready"))));
  const auto start = SteadyClock::now();
  auto r = engine_->Lease(Request("q", 5, "", 2'000));
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(r->size(), 1u) << "returns the due work without waiting to fill max_tasks";
  EXPECT_LT(MillisSince(start), 500);
}

TEST_F(LeaseLongPollTest, TimesOutEmptyAfterWaitWithoutBusyLooping) {
  constexpr int64_t kWaitMs = 400;
  const int64_t cpu_start = ThreadCpuMillis();
  const auto start = SteadyClock::now();
  auto r = engine_->Lease(Request("q", 1, "", static_cast<uint32_t>(kWaitMs)));
  const int64_t elapsed = MillisSince(start);
  const int64_t cpu = ThreadCpuMillis() - cpu_start;
  ASSERT_TRUE(IsOk(r));
  EXPECT_TRUE(r->empty());
  EXPECT_GE(elapsed, kWaitMs - 20) << "must wait roughly wait_ms";
  EXPECT_LT(elapsed, kWaitMs + 1'000);
  EXPECT_LT(cpu, elapsed / 4) << "the waiting thread burned CPU: busy loop?";
}

TEST_F(LeaseLongPollTest, EnqueueOnOtherQueueOrTenantDoesNotSatisfyTheWait) {
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_TRUE(IsOk(engine_->Enqueue(SpecWithId("other", "o"))));
    JobSpec t = SpecWithId("q", "other-tenant");
    t.tenant = "someone-else";
    EXPECT_TRUE(IsOk(engine_->Enqueue(t)));
  });
  const auto start = SteadyClock::now();
  auto r = engine_->Lease(Request("q", 1, "", 500));
  const int64_t elapsed = MillisSince(start);
  producer.join();
  ASSERT_TRUE(IsOk(r));
  EXPECT_TRUE(r->empty());
  EXPECT_GE(elapsed, 480);
}

TEST_F(LeaseLongPollTest, WakesWhenAScheduledJobBecomesDue) {
  JobSpec s = SpecWithId("q", "soon");
  s.start_at_ms = SystemClock().NowMs() + 300;
  ASSERT_TRUE(IsOk(engine_->Enqueue(s)));
  const auto start = SteadyClock::now();
  auto r = engine_->Lease(Request("q", 1, "", 3'000));
  const int64_t elapsed = MillisSince(start);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u) << "a job that falls due during the wait is handed out";
  EXPECT_GE(elapsed, 250);
  EXPECT_LT(elapsed, 1'500);
}

TEST_F(LeaseLongPollTest, EachEnqueueWakesOneOfSeveralWaiters) {
  constexpr int kWaiters = 3;
  std::vector<std::thread> workers;
  std::vector<size_t> got(kWaiters, 0);
  for (int i = 0; i < kWaiters; ++i) {
    workers.emplace_back([&, i] {
      LeaseRequest req = Request("q", 1, "", 3'000);
      req.worker_id = "w" + std::to_string(i);
      auto r = engine_->Lease(req);
      EXPECT_TRUE(IsOk(r));
      if (r.ok()) got[static_cast<size_t>(i)] = r->size();
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto start = SteadyClock::now();
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_TRUE(IsOk(engine_->Enqueue(SpecWithId("q", "j" + std::to_string(i)))));
  }
  for (auto& w : workers) w.join();
  EXPECT_LT(MillisSince(start), 1'500) << "every waiter should be woken, not time out";
  size_t total = 0;
  for (size_t n : got) {
    EXPECT_EQ(n, 1u);
    total += n;
  }
  EXPECT_EQ(total, 3u);
}

}  // namespace
}  // namespace sluice
