// Enqueue and EnqueueBatch: generated ids, idempotency, tenant scoping, batch order and
// scheduled-vs-waiting status derived from the clock (DESIGN.md §2, §3).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cctype>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <random>
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

JobSpec SpecWithId(const std::string& queue, const std::string& id,
                   const std::string& payload = "p") {
  JobSpec s = Spec(queue, payload);
  s.id = id;
  return s;
}

// Parses the 48-bit unix-ms timestamp at the front of a UUIDv7 string.
int64_t UuidV7Millis(const std::string& id) {
  std::string hex = id.substr(0, 8) + id.substr(9, 4);
  return static_cast<int64_t>(std::stoull(hex, nullptr, 16));
}

class EnqueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  std::vector<Task> LeaseAll(const std::string& queue, const std::string& tenant = "") {
    LeaseRequest req;
    req.tenant = tenant;
    req.queue = queue;
    req.worker_id = "w";
    req.max_tasks = 100;
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    return r.ok() ? *r : std::vector<Task>{};
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EnqueueTest, GeneratedIdIsUuidV7Shaped) {
  auto r = engine_->Enqueue(Spec("q"));
  ASSERT_TRUE(IsOk(r));
  EXPECT_TRUE(r->created);
  const std::string& id = r->id;
  ASSERT_EQ(id.size(), 36u) << id;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      EXPECT_EQ(id[i], '-') << id;
    } else {
      EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(id[i]))) << id;
      EXPECT_FALSE(std::isupper(static_cast<unsigned char>(id[i]))) << "lowercase hex: " << id;
    }
  }
  EXPECT_EQ(id[14], '7') << "version nibble: " << id;
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << "RFC variant: " << id;

  auto job = engine_->GetJob("", id);
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->id, id);
}

TEST_F(EnqueueTest, GeneratedIdsAreDistinctAndTimeOrdered) {
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    auto r = engine_->Enqueue(Spec("q"));
    ASSERT_TRUE(IsOk(r));
    ids.push_back(r->id);
    clock_->Advance(1);
  }
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_LT(ids[i - 1], ids[i]) << "ids must sort in creation order";
  }
}

TEST_F(EnqueueTest, GeneratedIdEmbedsEngineClockTime) {
  // The timestamp field of a UUIDv7 comes from the engine's (injected) clock.
  auto a = engine_->Enqueue(Spec("q"));
  ASSERT_TRUE(IsOk(a));
  clock_->Advance(5'000);
  auto b = engine_->Enqueue(Spec("q"));
  ASSERT_TRUE(IsOk(b));
  EXPECT_EQ(UuidV7Millis(a->id), clock_->NowMs() - 5'000);
  EXPECT_EQ(UuidV7Millis(b->id), clock_->NowMs());
}

TEST_F(EnqueueTest, StoresEveryField) {
  JobSpec s = SpecWithId("emails", "job-1", std::string("pay\0load", 8));
  s.tenant = "acme";
  s.priority = 7;
  s.lease_ms = 1234;
  s.metadata = {{"k1", "v1"}, {"k2", "v2"}};
  RetryPolicy rp;
  rp.max_retries = 5;
  rp.initial_backoff_ms = 10;
  rp.max_backoff_ms = 100;
  rp.multiplier = 3.0;
  s.retry = rp;
  auto r = engine_->Enqueue(s);
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(r->id, "job-1");
  EXPECT_TRUE(r->created);
  EXPECT_EQ(r->status, JobStatus::kWaiting);

  auto job = engine_->GetJob("acme", "job-1");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->id, "job-1");
  EXPECT_EQ(job->tenant, "acme");
  EXPECT_EQ(job->queue, "emails");
  EXPECT_EQ(job->priority, 7u);
  EXPECT_EQ(job->lease_ms, 1234u);
  EXPECT_EQ(job->payload, std::string("pay\0load", 8));
  EXPECT_EQ(job->metadata, s.metadata);
  EXPECT_EQ(job->retry.max_retries, 5u);
  EXPECT_EQ(job->retry.initial_backoff_ms, 10u);
  EXPECT_EQ(job->retry.max_backoff_ms, 100u);
  EXPECT_DOUBLE_EQ(job->retry.multiplier, 3.0);
  EXPECT_EQ(job->status, JobStatus::kWaiting);
  EXPECT_FALSE(job->cancel_requested);
  EXPECT_EQ(job->attempt_count, 0u);
  EXPECT_EQ(job->retries_used, 0u);
  EXPECT_EQ(job->created_ms, clock_->NowMs());
  EXPECT_EQ(job->finished_ms, 0);
  EXPECT_EQ(engine_->Stats().enqueued, 1u);
  EXPECT_EQ(engine_->Stats().pending_tasks, 1u);
}

TEST_F(EnqueueTest, DefaultsApplyWhenUnset) {
  auto r = engine_->Enqueue(SpecWithId("q", "d"));
  ASSERT_TRUE(IsOk(r));
  auto job = engine_->GetJob("", "d");
  ASSERT_TRUE(IsOk(job));
  EngineOptions defaults;
  EXPECT_EQ(job->priority, 50u);
  EXPECT_EQ(job->tenant, "");
  EXPECT_EQ(job->lease_ms, defaults.default_lease_ms);
  EXPECT_EQ(job->retry.max_retries, defaults.default_retry.max_retries);
  EXPECT_EQ(job->retry.initial_backoff_ms, defaults.default_retry.initial_backoff_ms);
  EXPECT_EQ(job->retry.max_backoff_ms, defaults.default_retry.max_backoff_ms);
  EXPECT_DOUBLE_EQ(job->retry.multiplier, defaults.default_retry.multiplier);
  EXPECT_EQ(job->next_run_ms, clock_->NowMs());
}

TEST_F(EnqueueTest, SameIdIsIdempotentAndIgnoresSecondSpec) {
  JobSpec first = SpecWithId("q", "dup", "first");
  first.priority = 10;
  first.metadata = {{"a", "1"}};
  auto r1 = engine_->Enqueue(first);
  ASSERT_TRUE(IsOk(r1));
  EXPECT_TRUE(r1->created);
  const int64_t created_ms = clock_->NowMs();

  clock_->Advance(1'000);
  JobSpec second = SpecWithId("other-queue", "dup", "second");
  second.priority = 90;
  second.metadata = {{"b", "2"}};
  second.start_at_ms = clock_->NowMs() + 60'000;
  auto r2 = engine_->Enqueue(second);
  ASSERT_TRUE(IsOk(r2));
  EXPECT_FALSE(r2->created);
  EXPECT_EQ(r2->id, "dup");
  EXPECT_EQ(r2->status, JobStatus::kWaiting) << "the existing job's status is returned";

  auto job = engine_->GetJob("", "dup");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->payload, "first");
  EXPECT_EQ(job->queue, "q");
  EXPECT_EQ(job->priority, 10u);
  EXPECT_EQ(job->metadata, first.metadata);
  EXPECT_EQ(job->created_ms, created_ms);
  EXPECT_EQ(job->updated_ms, created_ms);
  EXPECT_EQ(engine_->Stats().enqueued, 1u);
  EXPECT_EQ(engine_->Stats().pending_tasks, 1u);

  // Exactly one task exists, on the first spec's queue.
  EXPECT_TRUE(LeaseAll("other-queue").empty());
  auto tasks = LeaseAll("q");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].payload, "first");
}

TEST_F(EnqueueTest, SameIdOfRunningJobReturnsItWithoutSecondTask) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(SpecWithId("q", "r"))));
  ASSERT_EQ(LeaseAll("q").size(), 1u);
  auto again = engine_->Enqueue(SpecWithId("q", "r", "again"));
  ASSERT_TRUE(IsOk(again));
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->status, JobStatus::kRunning);
  EXPECT_TRUE(LeaseAll("q").empty()) << "idempotent enqueue must not create a second task";
  auto job = engine_->GetJob("", "r");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kRunning);
  EXPECT_EQ(job->attempt_count, 1u);
}

TEST_F(EnqueueTest, SameIdOfFinishedJobDoesNotRevive) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(SpecWithId("q", "f"))));
  auto tasks = LeaseAll("q");
  ASSERT_EQ(tasks.size(), 1u);
  ASSERT_TRUE(IsOk(
      engine_->Complete("", tasks[0].task_id, tasks[0].lease_token, Outcome::Success("done"))));
  auto again = engine_->Enqueue(SpecWithId("q", "f"));
  ASSERT_TRUE(IsOk(again));
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->status, JobStatus::kSucceeded);
  EXPECT_TRUE(LeaseAll("q").empty());
}

TEST_F(EnqueueTest, SameIdInTwoTenantsIsTwoJobs) {
  JobSpec a = SpecWithId("q", "shared", "from-a");
  a.tenant = "a";
  JobSpec b = SpecWithId("q", "shared", "from-b");
  b.tenant = "b";
  auto ra = engine_->Enqueue(a);
  auto rb = engine_->Enqueue(b);
  ASSERT_TRUE(IsOk(ra));
  ASSERT_TRUE(IsOk(rb));
  EXPECT_TRUE(ra->created);
  EXPECT_TRUE(rb->created);
  EXPECT_EQ(engine_->Stats().enqueued, 2u);

  auto ja = engine_->GetJob("a", "shared");
  auto jb = engine_->GetJob("b", "shared");
  ASSERT_TRUE(IsOk(ja));
  ASSERT_TRUE(IsOk(jb));
  EXPECT_EQ(ja->payload, "from-a");
  EXPECT_EQ(jb->payload, "from-b");
  EXPECT_EQ(engine_->GetJob("", "shared").status().code(), StatusCode::kNotFound);

  auto ta = LeaseAll("q", "a");
  ASSERT_EQ(ta.size(), 1u);
  EXPECT_EQ(ta[0].payload, "from-a");
  auto tb = LeaseAll("q", "b");
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(tb[0].payload, "from-b");
}

TEST_F(EnqueueTest, BatchReturnsResultsInInputOrder) {
  std::vector<JobSpec> specs;
  // Ids chosen so that id order is the reverse of input order.
  for (const char* id : {"e", "d", "c", "b", "a"}) specs.push_back(SpecWithId("q", id, id));
  auto r = engine_->EnqueueBatch(specs);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 5u);
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ((*r)[i].id, specs[i].id);
    EXPECT_TRUE((*r)[i].created);
    EXPECT_EQ((*r)[i].status, JobStatus::kWaiting);
  }
  EXPECT_EQ(engine_->Stats().enqueued, 5u);
  // Same priority, same due time: enqueue order is batch order.
  auto tasks = LeaseAll("q");
  ASSERT_EQ(tasks.size(), 5u);
  for (size_t i = 0; i < specs.size(); ++i) EXPECT_EQ(tasks[i].job_id, specs[i].id);
}

TEST_F(EnqueueTest, BatchGeneratesDistinctOrderedIds) {
  std::vector<JobSpec> specs(20, Spec("q"));
  auto r = engine_->EnqueueBatch(specs);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 20u);
  std::vector<std::string> ids;
  for (const auto& e : *r) {
    EXPECT_EQ(e.id.size(), 36u);
    EXPECT_TRUE(e.created);
    ids.push_back(e.id);
  }
  std::vector<std::string> unique = ids;
  std::sort(unique.begin(), unique.end());
  EXPECT_EQ(std::unique(unique.begin(), unique.end()), unique.end()) << "ids must be distinct";
  auto tasks = LeaseAll("q");
  ASSERT_EQ(tasks.size(), 20u);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(tasks[i].job_id, ids[i]);
}

TEST_F(EnqueueTest, BatchDuplicateIdResolvesToFirst) {
  std::vector<JobSpec> specs = {SpecWithId("q", "x", "first"), SpecWithId("q", "y", "y"),
                                SpecWithId("q", "x", "second")};
  specs[2].priority = 0;
  auto r = engine_->EnqueueBatch(specs);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].id, "x");
  EXPECT_TRUE((*r)[0].created);
  EXPECT_EQ((*r)[1].id, "y");
  EXPECT_TRUE((*r)[1].created);
  EXPECT_EQ((*r)[2].id, "x");
  EXPECT_FALSE((*r)[2].created);
  EXPECT_EQ(engine_->Stats().enqueued, 2u);

  auto job = engine_->GetJob("", "x");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->payload, "first");
  EXPECT_EQ(job->priority, 50u);
  EXPECT_EQ(LeaseAll("q").size(), 2u);
}

TEST_F(EnqueueTest, BatchWithExistingIdReturnsExisting) {
  ASSERT_TRUE(IsOk(engine_->Enqueue(SpecWithId("q", "old", "old"))));
  std::vector<JobSpec> specs = {SpecWithId("q", "new", "new"), SpecWithId("q", "old", "x")};
  auto r = engine_->EnqueueBatch(specs);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 2u);
  EXPECT_TRUE((*r)[0].created);
  EXPECT_FALSE((*r)[1].created);
  EXPECT_EQ((*r)[1].id, "old");
  auto job = engine_->GetJob("", "old");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->payload, "old");
  EXPECT_EQ(engine_->Stats().enqueued, 2u);
}

// Producers racing on the same ids, while a worker leases and completes the jobs they create:
// every id becomes exactly one job, no call fails, and each job runs once. Each round, every
// producer enqueues the round's 20 new ids (in its own order) at the same moment, plus 5 ids
// of the round before (which exist by then): creations race on every id.
TEST_F(EnqueueTest, ConcurrentBatchesWithSharedIdsCreateEachJobOnce) {
  constexpr int kProducers = 4, kRounds = 150, kNew = 20, kOld = 5;
  std::mutex mu;
  std::map<std::string, int> created;  // id -> results with created = true
  std::atomic<int> errors{0};
  std::atomic<bool> producing{true};
  std::barrier round_start(kProducers);
  auto id_of = [](int round, int i) {
    return "job-" + std::to_string(round) + "-" + std::to_string(i);
  };
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      std::mt19937 rng(static_cast<uint32_t>(1000 + p));
      for (int round = 0; round < kRounds; ++round) {
        std::vector<JobSpec> specs;
        for (int i = 0; i < kNew; ++i) specs.push_back(SpecWithId("q", id_of(round, i)));
        for (int i = 0; round > 0 && i < kOld; ++i) {
          specs.push_back(SpecWithId("q", id_of(round - 1, static_cast<int>(rng() % kNew))));
        }
        std::shuffle(specs.begin(), specs.end(), rng);
        round_start.arrive_and_wait();
        auto r = engine_->EnqueueBatch(specs);
        if (!r.ok()) {
          ++errors;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        for (const EnqueueResult& e : *r) created[e.id] += e.created ? 1 : 0;
      }
    });
  }
  std::map<std::string, int> ran;  // job id -> times leased
  std::thread worker([&] {
    LeaseRequest req;
    req.queue = "q";
    req.worker_id = "w";
    req.max_tasks = 16;
    for (;;) {
      const bool last = !producing.load();
      auto r = engine_->Lease(req);
      if (!r.ok()) {
        ++errors;
        return;
      }
      for (const Task& t : *r) {
        ++ran[t.job_id];
        if (!engine_->Complete(t.tenant, t.task_id, t.lease_token, Outcome::Success()).ok()) {
          ++errors;
        }
      }
      if (last && r->empty()) return;
      if (r->empty()) std::this_thread::yield();
    }
  });
  for (auto& t : producers) t.join();
  producing.store(false);
  worker.join();

  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(created.size(), static_cast<size_t>(kRounds * kNew));
  EXPECT_EQ(engine_->Stats().enqueued, created.size());
  for (const auto& [id, n] : created) {
    EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(ran[id], 1) << id;
  }
  EXPECT_EQ(ran.size(), created.size());
  EXPECT_TRUE(IsOk(engine_->VerifyIndexes()));
}

TEST_F(EnqueueTest, EmptyBatchIsOk) {
  auto r = engine_->EnqueueBatch({});
  ASSERT_TRUE(IsOk(r));
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(engine_->Stats().enqueued, 0u);
}

TEST_F(EnqueueTest, FutureStartIsScheduledThenWaitingWithoutAWrite) {
  const int64_t t0 = clock_->NowMs();
  JobSpec s = SpecWithId("q", "later");
  s.start_at_ms = t0 + 5'000;
  auto r = engine_->Enqueue(s);
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(r->status, JobStatus::kScheduled);

  auto job = engine_->GetJob("", "later");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kScheduled);
  EXPECT_EQ(job->start_at_ms, t0 + 5'000);
  EXPECT_EQ(job->next_run_ms, t0 + 5'000);
  const int64_t updated = job->updated_ms;

  clock_->Advance(4'999);
  job = engine_->GetJob("", "later");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kScheduled);

  clock_->Advance(1);  // now == start_at: no longer in the future
  job = engine_->GetJob("", "later");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kWaiting);
  EXPECT_EQ(job->updated_ms, updated) << "waiting vs scheduled is derived, not written";
  auto res = engine_->GetResult("", "later");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kWaiting);
  EXPECT_FALSE(res->finished);
}

TEST_F(EnqueueTest, PastOrZeroStartIsWaiting) {
  JobSpec past = SpecWithId("q", "past");
  past.start_at_ms = clock_->NowMs() - 10'000;
  auto r = engine_->Enqueue(past);
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(r->status, JobStatus::kWaiting);
  auto job = engine_->GetJob("", "past");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kWaiting);
  EXPECT_EQ(LeaseAll("q").size(), 1u);
}

TEST_F(EnqueueTest, BatchMixesScheduledAndWaiting) {
  std::vector<JobSpec> specs = {SpecWithId("q", "now"), SpecWithId("q", "soon")};
  specs[1].start_at_ms = clock_->NowMs() + 100;
  auto r = engine_->EnqueueBatch(specs);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].status, JobStatus::kWaiting);
  EXPECT_EQ((*r)[1].status, JobStatus::kScheduled);
}

}  // namespace
}  // namespace sluice
