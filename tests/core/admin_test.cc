// Operator transitions: Cancel, Restart, Expedite, Delete, and not-found for unknown ids and
// for other tenants' ids (DESIGN.md §3).
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>

#include <cstdint>
#include <functional>
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

using ::sluice::testing::HasCode;

constexpr char kQueue[] = "q";

// Keys and values, in every column family of the (closed) store at `path`, that contain
// `needle`; each reported as "<column family>: <key>". Opens the store read-only.
// Any merge operator lets a raw scan read the engine's counter keys (their values don't matter
// here).
class KeepLatest : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice*, const rocksdb::Slice& value,
             std::string* out, rocksdb::Logger*) const override {
    out->assign(value.data(), value.size());
    return true;
  }
  const char* Name() const override { return "sluice.unused"; }
};

std::vector<std::string> RecordsMentioning(const std::string& path, const std::string& needle) {
  std::vector<std::string> found;
  std::vector<std::string> cf_names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &cf_names);
  if (!s.ok()) {
    ADD_FAILURE() << "ListColumnFamilies: " << s.ToString();
    return found;
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.merge_operator = std::make_shared<KeepLatest>();
  for (const auto& name : cf_names) cfs.emplace_back(name, cf_options);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), path, cfs, &handles, &raw);
  if (!s.ok()) {
    ADD_FAILURE() << "OpenForReadOnly: " << s.ToString();
    return found;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string key = it->key().ToString();
      if (key.find(needle) != std::string::npos ||
          it->value().ToString().find(needle) != std::string::npos) {
        found.push_back(h->GetName() + ": " + key);
      }
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  }
  for (rocksdb::ColumnFamilyHandle* h : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  return found;
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
  }

  JobSpec MakeSpec(const std::string& id, uint32_t max_retries = 1,
                   const std::string& tenant = "") {
    JobSpec s = Spec(kQueue, "payload-" + id);
    s.id = id;
    s.tenant = tenant;
    s.lease_ms = 10'000;
    RetryPolicy rp;
    rp.max_retries = max_retries;
    rp.initial_backoff_ms = 1'000;
    rp.max_backoff_ms = 1'000;
    rp.multiplier = 1.0;
    s.retry = rp;
    return s;
  }

  std::vector<Task> LeaseQ(uint32_t max_tasks = 10, const std::string& tenant = "") {
    LeaseRequest req;
    req.tenant = tenant;
    req.queue = kQueue;
    req.worker_id = "w";
    req.max_tasks = max_tasks;
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    return r.ok() ? *r : std::vector<Task>{};
  }

  void MakeWaiting(const std::string& id, uint32_t max_retries = 1) {
    ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec(id, max_retries))));
  }

  void MakeScheduled(const std::string& id) {
    JobSpec s = MakeSpec(id);
    s.start_at_ms = clock_->NowMs() + 60'000;
    ASSERT_TRUE(IsOk(engine_->Enqueue(s)));
  }

  // Enqueues job `id` with a unique priority-0 slot at the head and leases it.
  Task MakeRunning(const std::string& id, uint32_t max_retries = 1) {
    JobSpec s = MakeSpec(id, max_retries);
    s.queue = "run-" + id;
    EXPECT_TRUE(IsOk(engine_->Enqueue(s)));
    LeaseRequest req;
    req.queue = s.queue;
    req.worker_id = "w";
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    if (!r.ok() || r->size() != 1) {
      ADD_FAILURE() << "could not lease " << id;
      return Task{};
    }
    return (*r)[0];
  }

  void Finish(const std::string& id, const Outcome& outcome) {
    const Task t = MakeRunning(id, 0);
    ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, outcome)));
  }
  void MakeSucceeded(const std::string& id) { Finish(id, Outcome::Success("r")); }
  void MakeFailed(const std::string& id) { Finish(id, Outcome::Failure("e", "m")); }
  void MakeCancelled(const std::string& id) {
    MakeWaiting(id);
    ASSERT_TRUE(IsOk(engine_->Cancel("", id)));
  }
  // Leaves `id` pending in its retry backoff (scheduled) after one failed attempt.
  void MakeRetryPending(const std::string& id) {
    const Task t = MakeRunning(id, 3);
    ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
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

// ---- Cancel ----

TEST_F(AdminTest, CancelScheduledEndsCancelledAndIsNeverLeased) {
  MakeScheduled("s");
  auto c = engine_->Cancel("", "s");
  ASSERT_TRUE(IsOk(c));
  EXPECT_EQ(c->status, JobStatus::kCancelled);
  EXPECT_FALSE(c->cancel_requested);
  const Job job = MustGet("s");
  EXPECT_EQ(job.status, JobStatus::kCancelled);
  EXPECT_EQ(job.finished_ms, clock_->NowMs());
  EXPECT_EQ(engine_->Stats().pending_tasks, 0u);
  EXPECT_EQ(engine_->Stats().cancelled, 1u);
  clock_->Advance(120'000);
  EXPECT_TRUE(LeaseQ().empty());
  auto res = engine_->GetResult("", "s");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kCancelled);
  EXPECT_TRUE(res->finished);
}

TEST_F(AdminTest, CancelWaitingEndsCancelledAndIsNeverLeased) {
  MakeWaiting("w1");
  MakeWaiting("w2");
  auto c = engine_->Cancel("", "w1");
  ASSERT_TRUE(IsOk(c));
  EXPECT_EQ(c->status, JobStatus::kCancelled);
  EXPECT_FALSE(c->cancel_requested);
  EXPECT_EQ(MustGet("w1").status, JobStatus::kCancelled);
  EXPECT_EQ(engine_->Stats().pending_tasks, 1u);
  auto tasks = LeaseQ();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "w2");
}

TEST_F(AdminTest, CancelRetryPendingEndsCancelled) {
  MakeRetryPending("p");
  ASSERT_EQ(MustGet("p").status, JobStatus::kScheduled);
  auto c = engine_->Cancel("", "p");
  ASSERT_TRUE(IsOk(c));
  EXPECT_EQ(c->status, JobStatus::kCancelled);
  EXPECT_EQ(MustGet("p").status, JobStatus::kCancelled);
  clock_->Advance(120'000);
  LeaseRequest req;
  req.queue = "run-p";
  req.worker_id = "w";
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  EXPECT_TRUE(r->empty());
}

TEST_F(AdminTest, CancelRunningRequestsCancellation) {
  const Task t = MakeRunning("r");
  auto c = engine_->Cancel("", "r");
  ASSERT_TRUE(IsOk(c));
  EXPECT_EQ(c->status, JobStatus::kRunning);
  EXPECT_TRUE(c->cancel_requested);
  Job job = MustGet("r");
  EXPECT_EQ(job.status, JobStatus::kRunning);
  EXPECT_TRUE(job.cancel_requested);
  // Repeating it is harmless.
  auto again = engine_->Cancel("", "r");
  ASSERT_TRUE(IsOk(again));
  EXPECT_EQ(again->status, JobStatus::kRunning);
  EXPECT_TRUE(again->cancel_requested);
  // The lease is still live until the worker reports.
  EXPECT_TRUE(IsOk(engine_->Heartbeat("", t.task_id, "w", t.lease_token)));
}

TEST_F(AdminTest, CancelCancelledIsNoOp) {
  MakeCancelled("c");
  const Job before = MustGet("c");
  clock_->Advance(5'000);
  auto c = engine_->Cancel("", "c");
  ASSERT_TRUE(IsOk(c));
  EXPECT_EQ(c->status, JobStatus::kCancelled);
  const Job after = MustGet("c");
  EXPECT_EQ(after.status, JobStatus::kCancelled);
  EXPECT_EQ(after.updated_ms, before.updated_ms) << "a no-op must not write";
  EXPECT_EQ(after.finished_ms, before.finished_ms);
  EXPECT_EQ(engine_->Stats().cancelled, 1u);
}

TEST_F(AdminTest, CancelSucceededOrFailedIsFailedPrecondition) {
  MakeSucceeded("ok");
  MakeFailed("bad");
  EXPECT_TRUE(HasCode(engine_->Cancel("", "ok"), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(engine_->Cancel("", "bad"), StatusCode::kFailedPrecondition));
  EXPECT_EQ(MustGet("ok").status, JobStatus::kSucceeded);
  EXPECT_EQ(MustGet("bad").status, JobStatus::kFailed);
  EXPECT_EQ(engine_->Stats().cancelled, 0u);
}

// ---- Restart ----

TEST_F(AdminTest, RestartFailedGoesWaitingWithNextAttemptAndFreshBudget) {
  // max_retries 1: attempt 1 fails and retries, attempt 2 fails the job.
  const Task t1 = MakeRunning("f", 1);
  ASSERT_TRUE(IsOk(engine_->Complete("", t1.task_id, t1.lease_token, Outcome::Failure("e"))));
  clock_->Advance(1'000);
  LeaseRequest req;
  req.queue = "run-f";
  req.worker_id = "w";
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  const Task t2 = (*r)[0];
  ASSERT_TRUE(IsOk(engine_->Complete("", t2.task_id, t2.lease_token, Outcome::Failure("e"))));
  ASSERT_EQ(MustGet("f").status, JobStatus::kFailed);
  ASSERT_EQ(MustGet("f").retries_used, 1u);

  clock_->Advance(7'000);
  ASSERT_TRUE(IsOk(engine_->Restart("", "f")));
  Job job = MustGet("f");
  EXPECT_EQ(job.status, JobStatus::kWaiting);
  EXPECT_EQ(job.next_run_ms, clock_->NowMs());
  EXPECT_EQ(job.retries_used, 0u) << "restart gives a fresh retry budget";
  EXPECT_EQ(job.finished_ms, 0);
  EXPECT_EQ(job.attempts.size(), 2u) << "history is kept";
  auto res = engine_->GetResult("", "f");
  ASSERT_TRUE(IsOk(res));
  EXPECT_FALSE(res->finished);

  // Attempt 3 fails: with a fresh budget it is retried, not failed.
  r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  const Task t3 = (*r)[0];
  EXPECT_EQ(t3.attempt, 3u);
  EXPECT_EQ(t3.task_id, "f#3");
  EXPECT_NE(t3.lease_token, t2.lease_token);
  ASSERT_TRUE(IsOk(engine_->Complete("", t3.task_id, t3.lease_token, Outcome::Failure("e"))));
  job = MustGet("f");
  EXPECT_EQ(job.status, JobStatus::kScheduled);
  EXPECT_EQ(job.retries_used, 1u);

  // Attempt 4 exhausts the fresh budget.
  clock_->Advance(1'000);
  r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].attempt, 4u);
  ASSERT_TRUE(
      IsOk(engine_->Complete("", (*r)[0].task_id, (*r)[0].lease_token, Outcome::Failure("e"))));
  EXPECT_EQ(MustGet("f").status, JobStatus::kFailed);
  EXPECT_EQ(MustGet("f").attempts.size(), 4u);
}

TEST_F(AdminTest, RestartCancelledPendingJobGoesWaiting) {
  MakeCancelled("c");
  ASSERT_TRUE(IsOk(engine_->Restart("", "c")));
  EXPECT_EQ(MustGet("c").status, JobStatus::kWaiting);
  auto tasks = LeaseQ();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "c");
  EXPECT_EQ(tasks[0].attempt, 1u) << "it never ran: its first attempt is number 1";
}

TEST_F(AdminTest, RestartClearsCancelRequest) {
  const Task t = MakeRunning("x", 2);
  ASSERT_TRUE(IsOk(engine_->Cancel("", "x")));
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
  ASSERT_EQ(MustGet("x").status, JobStatus::kCancelled);

  ASSERT_TRUE(IsOk(engine_->Restart("", "x")));
  Job job = MustGet("x");
  EXPECT_EQ(job.status, JobStatus::kWaiting);
  EXPECT_FALSE(job.cancel_requested);
  LeaseRequest req;
  req.queue = "run-x";
  req.worker_id = "w";
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].attempt, 2u);
  auto hb = engine_->Heartbeat("", (*r)[0].task_id, "w", (*r)[0].lease_token);
  ASSERT_TRUE(IsOk(hb));
  EXPECT_FALSE(hb->cancel_requested);
  // A failure now retries: the old cancel request is gone.
  ASSERT_TRUE(
      IsOk(engine_->Complete("", (*r)[0].task_id, (*r)[0].lease_token, Outcome::Failure("e"))));
  EXPECT_EQ(MustGet("x").status, JobStatus::kScheduled);
}

TEST_F(AdminTest, RestartOfNonFinishedOrSucceededIsFailedPrecondition) {
  MakeRunning("r");
  MakeSucceeded("ok");
  MakeWaiting("w");
  MakeScheduled("s");
  MakeRetryPending("p");
  for (const char* id : {"r", "ok", "w", "s", "p"}) {
    const Job before = MustGet(id);
    EXPECT_TRUE(HasCode(engine_->Restart("", id), StatusCode::kFailedPrecondition)) << id;
    const Job after = MustGet(id);
    EXPECT_EQ(after.status, before.status) << id;
    EXPECT_EQ(after.updated_ms, before.updated_ms) << id;
  }
}

// ---- Expedite ----

TEST_F(AdminTest, ExpediteScheduledMakesItDueNow) {
  MakeScheduled("s");
  EXPECT_TRUE(LeaseQ().empty());
  clock_->Advance(10);
  ASSERT_TRUE(IsOk(engine_->Expedite("", "s")));
  const Job job = MustGet("s");
  EXPECT_EQ(job.status, JobStatus::kWaiting);
  EXPECT_EQ(job.next_run_ms, clock_->NowMs());
  auto tasks = LeaseQ();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "s");
  EXPECT_EQ(engine_->Stats().pending_tasks, 0u) << "the old scheduled task is gone";
}

TEST_F(AdminTest, ExpediteRetryBackoffMakesItDueNow) {
  MakeRetryPending("p");
  ASSERT_TRUE(IsOk(engine_->Expedite("", "p")));
  EXPECT_EQ(MustGet("p").status, JobStatus::kWaiting);
  LeaseRequest req;
  req.queue = "run-p";
  req.worker_id = "w";
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].attempt, 2u);
}

TEST_F(AdminTest, ExpediteLeavesOneTaskOnly) {
  MakeScheduled("s");
  ASSERT_TRUE(IsOk(engine_->Expedite("", "s")));
  ASSERT_EQ(LeaseQ().size(), 1u);
  clock_->Advance(120'000);  // past the original start time
  EXPECT_TRUE(LeaseQ().empty()) << "the original scheduled task must have been removed";
}

TEST_F(AdminTest, ExpediteWaitingIsOkNoOp) {
  MakeWaiting("w");
  const Job before = MustGet("w");
  clock_->Advance(10);
  ASSERT_TRUE(IsOk(engine_->Expedite("", "w")));
  const Job after = MustGet("w");
  EXPECT_EQ(after.status, JobStatus::kWaiting);
  EXPECT_EQ(after.next_run_ms, before.next_run_ms);
  EXPECT_EQ(LeaseQ().size(), 1u);
  EXPECT_TRUE(LeaseQ().empty());
}

TEST_F(AdminTest, ExpediteRunningOrTerminalIsFailedPrecondition) {
  MakeRunning("r");
  MakeSucceeded("ok");
  MakeFailed("bad");
  MakeCancelled("c");
  for (const char* id : {"r", "ok", "bad", "c"}) {
    const Job before = MustGet(id);
    EXPECT_TRUE(HasCode(engine_->Expedite("", id), StatusCode::kFailedPrecondition)) << id;
    EXPECT_EQ(MustGet(id).status, before.status) << id;
  }
}

// ---- Delete ----

class AdminDeleteTest : public AdminTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(AdminDeleteTest, DeleteRemovesJobEntirely) {
  const std::string state = GetParam();
  const std::string id = "d";
  if (state == "scheduled") MakeScheduled(id);
  if (state == "waiting") MakeWaiting(id);
  if (state == "retry_pending") MakeRetryPending(id);
  if (state == "succeeded") MakeSucceeded(id);
  if (state == "failed") MakeFailed(id);
  if (state == "cancelled") MakeCancelled(id);
  const JobSpec original = MakeSpec(id);
  const std::string queue = MustGet(id).queue;

  ASSERT_TRUE(IsOk(engine_->Delete("", id)));
  EXPECT_TRUE(HasCode(engine_->GetJob("", id), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->GetResult("", id), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->Delete("", id), StatusCode::kNotFound));
  EXPECT_EQ(engine_->Stats().pending_tasks, 0u);

  clock_->Advance(120'000);
  LeaseRequest req;
  req.queue = queue;
  req.worker_id = "w";
  req.max_tasks = 10;
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  EXPECT_TRUE(r->empty()) << "a deleted job's task must be gone";

  // Re-enqueueing the same id creates a brand-new job with no attempt history.
  auto again = engine_->Enqueue(original);
  ASSERT_TRUE(IsOk(again));
  EXPECT_TRUE(again->created);
  const Job fresh = MustGet(id);
  EXPECT_EQ(fresh.status, JobStatus::kWaiting);
  EXPECT_EQ(fresh.attempt_count, 0u);
  EXPECT_EQ(fresh.retries_used, 0u);
  EXPECT_TRUE(fresh.attempts.empty()) << "attempts of the deleted job survived";
  auto res = engine_->GetResult("", id);
  ASSERT_TRUE(IsOk(res));
  EXPECT_FALSE(res->finished);
  EXPECT_TRUE(res->result.empty());
  EXPECT_TRUE(res->error.code.empty());
  auto tasks = LeaseQ();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].attempt, 1u);
}

INSTANTIATE_TEST_SUITE_P(States, AdminDeleteTest,
                         ::testing::Values("scheduled", "waiting", "retry_pending", "succeeded",
                                           "failed", "cancelled"));

TEST_F(AdminTest, DeleteRunningIsFailedPrecondition) {
  const Task t = MakeRunning("r");
  EXPECT_TRUE(HasCode(engine_->Delete("", "r"), StatusCode::kFailedPrecondition));
  ASSERT_TRUE(IsOk(engine_->Cancel("", "r")));
  EXPECT_TRUE(HasCode(engine_->Delete("", "r"), StatusCode::kFailedPrecondition))
      << "a cancel request is not enough: the job must have ended";
  EXPECT_EQ(MustGet("r").status, JobStatus::kRunning);
  EXPECT_TRUE(IsOk(engine_->Heartbeat("", t.task_id, "w", t.lease_token)));
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Cancelled())));
  EXPECT_TRUE(IsOk(engine_->Delete("", "r")));
  EXPECT_TRUE(HasCode(engine_->GetJob("", "r"), StatusCode::kNotFound));
}

TEST_F(AdminTest, DeleteOneJobLeavesOthers) {
  MakeWaiting("a");
  MakeWaiting("b");
  ASSERT_TRUE(IsOk(engine_->Delete("", "a")));
  EXPECT_EQ(MustGet("b").status, JobStatus::kWaiting);
  auto tasks = LeaseQ();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "b");
}

TEST_F(AdminTest, DeleteLeavesNoRecordInTheStore) {
  // A job with history: attempt 1 fails and is retried, expedited, attempt 2 fails for good.
  JobSpec s = MakeSpec("zq-del-7", 3);
  s.queue = "dq";
  s.metadata = {{"mk", "mv"}};
  ASSERT_TRUE(IsOk(engine_->Enqueue(s)));
  LeaseRequest req;
  req.queue = "dq";
  req.worker_id = "w";
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  ASSERT_TRUE(
      IsOk(engine_->Complete("", (*r)[0].task_id, (*r)[0].lease_token, Outcome::Failure("e"))));
  ASSERT_TRUE(IsOk(engine_->Expedite("", "zq-del-7")));
  r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  Outcome fatal = Outcome::Failure("e");
  fatal.no_retry = true;
  ASSERT_TRUE(IsOk(engine_->Complete("", (*r)[0].task_id, (*r)[0].lease_token, fatal)));
  // And a scheduled job, deleted while pending.
  JobSpec later = MakeSpec("zq-del-8");
  later.start_at_ms = clock_->NowMs() + 60'000;
  ASSERT_TRUE(IsOk(engine_->Enqueue(later)));
  MakeWaiting("keep-me");

  ASSERT_TRUE(IsOk(engine_->Delete("", "zq-del-7")));
  ASSERT_TRUE(IsOk(engine_->Delete("", "zq-del-8")));
  ASSERT_TRUE(IsOk(engine_->Close()));
  engine_.reset();

  EXPECT_FALSE(RecordsMentioning(dir_.path(), "keep-me").empty()) << "the scan sees records";
  for (const char* id : {"zq-del-7", "zq-del-8"}) {
    const std::vector<std::string> left = RecordsMentioning(dir_.path(), id);
    EXPECT_TRUE(left.empty()) << id << ": " << left.size()
                              << " records survive, first: " << (left.empty() ? "" : left[0]);
  }
}

TEST_F(AdminTest, DeleteThenReenqueueFencesTheOldIncarnationsWorker) {
  const Task old = MakeRunning("re", 0);
  clock_->Set(old.lease_expires_ms + 1);
  auto reaped = engine_->ReapExpired();
  ASSERT_TRUE(IsOk(reaped));
  ASSERT_EQ(*reaped, 1u);
  ASSERT_TRUE(IsOk(engine_->Delete("", "re")));
  JobSpec s = MakeSpec("re");
  s.queue = "run-re";
  ASSERT_TRUE(IsOk(engine_->Enqueue(s)));
  LeaseRequest req;
  req.queue = "run-re";
  req.worker_id = "w";
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  ASSERT_EQ((*r)[0].task_id, old.task_id) << "same id, first attempt again";
  EXPECT_NE((*r)[0].lease_token, old.lease_token);
  EXPECT_TRUE(HasCode(engine_->Complete("", old.task_id, old.lease_token, Outcome::Success("x")),
                      StatusCode::kLeaseLost));
  EXPECT_TRUE(
      HasCode(engine_->Heartbeat("", old.task_id, "w", old.lease_token), StatusCode::kLeaseLost));
  EXPECT_EQ(MustGet("re").status, JobStatus::kRunning);
}

// ---- Not found ----

TEST_F(AdminTest, UnknownIdIsNotFoundOnEveryOperation) {
  MakeWaiting("exists");
  EXPECT_TRUE(HasCode(engine_->GetJob("", "nope"), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->GetJob("", "nope", true), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->GetResult("", "nope"), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->Cancel("", "nope"), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->Restart("", "nope"), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->Expedite("", "nope"), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->Delete("", "nope"), StatusCode::kNotFound));
  // A prefix of an existing id is not that id.
  EXPECT_TRUE(HasCode(engine_->GetJob("", "exist"), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(engine_->Delete("", "exist"), StatusCode::kNotFound));
  EXPECT_EQ(MustGet("exists").status, JobStatus::kWaiting);
}

TEST_F(AdminTest, OtherTenantsIdIsNotFoundAndUntouched) {
  // One job per state in tenant "a"; tenant "b" can neither see nor touch any of them.
  ASSERT_TRUE(IsOk(engine_->Enqueue(MakeSpec("waiting", 1, "a"))));
  JobSpec sched = MakeSpec("scheduled", 1, "a");
  sched.start_at_ms = clock_->NowMs() + 60'000;
  ASSERT_TRUE(IsOk(engine_->Enqueue(sched)));
  JobSpec fail = MakeSpec("failed", 0, "a");
  fail.queue = "other";
  ASSERT_TRUE(IsOk(engine_->Enqueue(fail)));
  LeaseRequest req;
  req.tenant = "a";
  req.queue = "other";
  req.worker_id = "w";
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  ASSERT_EQ(r->size(), 1u);
  ASSERT_TRUE(
      IsOk(engine_->Complete("a", (*r)[0].task_id, (*r)[0].lease_token, Outcome::Failure("e"))));

  for (const char* id : {"waiting", "scheduled", "failed"}) {
    const Job before = MustGet(id, "a");
    for (const std::string tenant : {"b", ""}) {
      EXPECT_TRUE(HasCode(engine_->GetJob(tenant, id), StatusCode::kNotFound)) << id;
      EXPECT_TRUE(HasCode(engine_->GetResult(tenant, id), StatusCode::kNotFound)) << id;
      EXPECT_TRUE(HasCode(engine_->Cancel(tenant, id), StatusCode::kNotFound)) << id;
      EXPECT_TRUE(HasCode(engine_->Restart(tenant, id), StatusCode::kNotFound)) << id;
      EXPECT_TRUE(HasCode(engine_->Expedite(tenant, id), StatusCode::kNotFound)) << id;
      EXPECT_TRUE(HasCode(engine_->Delete(tenant, id), StatusCode::kNotFound)) << id;
    }
    const Job after = MustGet(id, "a");
    EXPECT_EQ(after.status, before.status) << id;
    EXPECT_EQ(after.updated_ms, before.updated_ms) << id;
    EXPECT_EQ(after.next_run_ms, before.next_run_ms) << id;
  }
  auto tasks = LeaseQ(10, "a");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].job_id, "waiting");
}

}  // namespace
}  // namespace sluice
