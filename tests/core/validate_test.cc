// Bad input at the edge (DESIGN.md §9): every rejected call returns kInvalidArgument (malformed)
// or kTooLarge (over a SizeLimits cap), names the offending field, and changes nothing. Each
// cap is also checked at its boundary: exactly the limit is accepted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
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

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// `word` occurs in `text` not glued to other letters or digits ("id" matches "job id",
// "spec.id", "max_id_bytes", not "invalid"; "1" matches "[1]", not "16").
bool ContainsWord(const std::string& text, const std::string& word) {
  for (size_t pos = text.find(word); pos != std::string::npos; pos = text.find(word, pos + 1)) {
    const bool left = pos == 0 || !std::isalnum(static_cast<unsigned char>(text[pos - 1]));
    const size_t end = pos + word.size();
    const bool right = end == text.size() || !std::isalnum(static_cast<unsigned char>(text[end]));
    if (left && right) return true;
  }
  return false;
}

// `s` has code `want` and its message names `field` (case-insensitive).
::testing::AssertionResult Rejected(const Status& s, StatusCode want, const std::string& field) {
  if (s.code() != want) {
    return ::testing::AssertionFailure() << "want " << StatusCodeName(want) << " naming '" << field
                                         << "', got " << (s.ok() ? "ok" : s.ToString());
  }
  const std::string msg = Lower(s.message());
  if (msg.find(Lower(field)) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "message does not name '" << field << "': " << s.ToString();
  }
  return ::testing::AssertionSuccess();
}
template <typename T>
::testing::AssertionResult Rejected(const Result<T>& r, StatusCode want, const std::string& field) {
  return Rejected(r.status(), want, field);
}

// Small caps so boundary inputs stay small.
SizeLimits SmallLimits() {
  SizeLimits l;
  l.max_id_bytes = 8;
  l.max_tenant_bytes = 8;
  l.max_queue_bytes = 8;
  l.max_worker_id_bytes = 8;
  l.max_payload_bytes = 16;
  l.max_result_bytes = 16;
  l.max_error_code_bytes = 8;
  l.max_error_message_bytes = 16;
  l.max_error_data_bytes = 16;
  l.max_metadata_entries = 2;
  l.max_metadata_key_bytes = 8;
  l.max_metadata_value_bytes = 8;
  l.max_limits_per_job = 2;
  l.max_limit_key_bytes = 8;
  l.max_batch_jobs = 3;
  return l;
}

ConcurrencyLimit Fixed(const std::string& key, uint32_t max = 5) {
  ConcurrencyLimit c;
  c.kind = ConcurrencyLimit::Kind::kFixed;
  c.key = key;
  c.max = max;
  return c;
}

class ValidateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    EngineOptions o = TestOptions(dir_.path(), clock_);
    o.limits = SmallLimits();
    o.max_lease_batch = 5;
    engine_ = OpenOrDie(o);
  }

  static JobSpec Good(const std::string& id = "good") {
    JobSpec s = Spec("q", "p");
    s.id = id;
    return s;
  }

  // Enqueue of `spec` is rejected with `code` naming `field`, alone and inside a batch (at
  // index 1, naming the index), and nothing is stored.
  void ExpectEnqueueRejected(const JobSpec& spec, StatusCode code, const std::string& field) {
    const EngineStats before = engine_->Stats();
    EXPECT_TRUE(Rejected(engine_->Enqueue(spec), code, field));

    const std::vector<JobSpec> batch = {Good("b0"), spec, Good("b2")};
    auto r = engine_->EnqueueBatch(batch);
    EXPECT_TRUE(Rejected(r, code, field));
    EXPECT_TRUE(ContainsWord(r.status().message(), "1"))
        << "batch rejection must name the index: " << r.status().ToString();

    const EngineStats after = engine_->Stats();
    EXPECT_EQ(after.enqueued, before.enqueued);
    EXPECT_EQ(after.pending_tasks, before.pending_tasks);
    EXPECT_EQ(engine_->GetJob("", "b0").status().code(), StatusCode::kNotFound);
    EXPECT_EQ(engine_->GetJob("", "b2").status().code(), StatusCode::kNotFound);
    if (!spec.id.empty() && spec.id.size() <= 8 && spec.tenant.size() <= 8) {
      EXPECT_EQ(engine_->GetJob(spec.tenant, spec.id).status().code(), StatusCode::kNotFound);
    }
  }

  void ExpectEnqueueAccepted(const JobSpec& spec) {
    auto r = engine_->Enqueue(spec);
    EXPECT_TRUE(IsOk(r));
    if (r.ok()) {
      EXPECT_TRUE(r->created);
    }
  }

  // Enqueues one job on "q" and leases it as "w".
  Task LeaseOne() {
    EXPECT_TRUE(IsOk(engine_->Enqueue(Good("job"))));
    LeaseRequest req;
    req.queue = "q";
    req.worker_id = "w";
    auto r = engine_->Lease(req);
    EXPECT_TRUE(IsOk(r));
    if (!r.ok() || r->size() != 1) {
      ADD_FAILURE() << "expected one task";
      return Task{};
    }
    return (*r)[0];
  }

  LeaseRequest GoodLease() const {
    LeaseRequest req;
    req.queue = "q";
    req.worker_id = "w";
    return req;
  }

  // A bad Lease is rejected and leases nothing: the waiting job is still there afterwards.
  void ExpectLeaseRejected(const LeaseRequest& req, StatusCode code, const std::string& field) {
    EXPECT_TRUE(Rejected(engine_->Lease(req), code, field));
    EXPECT_EQ(engine_->Stats().leased, 0u);
    auto job = engine_->GetJob("", "waiting");
    ASSERT_TRUE(IsOk(job));
    EXPECT_EQ(job->status, JobStatus::kWaiting);
    EXPECT_EQ(job->attempt_count, 0u);
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
};

// ---- Enqueue ----

TEST_F(ValidateTest, EmptyQueueIsInvalid) {
  JobSpec s = Good("x");
  s.queue.clear();
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "queue");
}

TEST_F(ValidateTest, QueueSize) {
  JobSpec s = Good("x");
  s.queue = std::string(9, 'q');
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "queue");
  s.queue = std::string(8, 'q');
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, PriorityRange) {
  JobSpec s = Good("x");
  s.priority = 100;
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "priority");
  s.priority = std::numeric_limits<uint32_t>::max();
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "priority");
  s.priority = 99;
  ExpectEnqueueAccepted(s);
  JobSpec zero = Good("y");
  zero.priority = 0;
  ExpectEnqueueAccepted(zero);
}

TEST_F(ValidateTest, PayloadSize) {
  JobSpec s = Good("x");
  s.payload = std::string(17, 'p');
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "payload");
  s.payload = std::string(16, 'p');
  ExpectEnqueueAccepted(s);
  auto job = engine_->GetJob("", "x");
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->payload.size(), 16u);
}

TEST_F(ValidateTest, EmptyPayloadIsFine) {
  JobSpec s = Good("x");
  s.payload.clear();
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, IdSize) {
  JobSpec s = Good(std::string(9, 'i'));
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "id");
  EXPECT_TRUE(ContainsWord(Lower(engine_->Enqueue(s).status().message()), "id"));
  s.id = std::string(8, 'i');
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, TenantSize) {
  JobSpec s = Good("x");
  s.tenant = std::string(9, 't');
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "tenant");
  s.tenant = std::string(8, 't');
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, MetadataEntries) {
  JobSpec s = Good("x");
  s.metadata = {{"a", "1"}, {"b", "2"}, {"c", "3"}};
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "metadata");
  s.metadata = {{"a", "1"}, {"b", "2"}};
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, MetadataKeySize) {
  JobSpec s = Good("x");
  s.metadata = {{std::string(9, 'k'), "v"}};
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "metadata");
  s.metadata = {{std::string(8, 'k'), "v"}};
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, MetadataValueSize) {
  JobSpec s = Good("x");
  s.metadata = {{"k", std::string(9, 'v')}};
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "metadata");
  s.metadata = {{"k", std::string(8, 'v')}};
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, RetryMultiplierBelowOne) {
  JobSpec s = Good("x");
  RetryPolicy rp;
  rp.multiplier = 0.5;
  s.retry = rp;
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "multiplier");
  rp.multiplier = 0.0;
  s.retry = rp;
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "multiplier");
  rp.multiplier = -2.0;
  s.retry = rp;
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "multiplier");
  rp.multiplier = 1.0;
  s.retry = rp;
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, RetryMultiplierNotANumber) {
  JobSpec s = Good("x");
  RetryPolicy rp;
  rp.multiplier = std::numeric_limits<double>::quiet_NaN();
  s.retry = rp;
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "multiplier");
  rp.multiplier = std::numeric_limits<double>::infinity();
  s.retry = rp;
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "multiplier");
}

TEST_F(ValidateTest, LimitWithEmptyKey) {
  JobSpec s = Good("x");
  s.limits = {Fixed("")};
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "key");
  s.limits = {Fixed("ok"), Fixed("")};
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "key");
}

TEST_F(ValidateTest, LimitKeySize) {
  JobSpec s = Good("x");
  s.limits = {Fixed(std::string(9, 'k'))};
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "key");
  s.limits = {Fixed(std::string(8, 'k'))};
  ExpectEnqueueAccepted(s);
}

TEST_F(ValidateTest, TooManyLimits) {
  JobSpec s = Good("x");
  s.limits = {Fixed("a"), Fixed("b"), Fixed("c")};
  ExpectEnqueueRejected(s, StatusCode::kTooLarge, "limits");
  s.limits = {Fixed("a"), Fixed("b")};
  ExpectEnqueueAccepted(s);
  auto job = engine_->GetJob("", "x");
  ASSERT_TRUE(IsOk(job));
  ASSERT_EQ(job->limits.size(), 2u);
  EXPECT_EQ(job->limits[0].key, "a");
  EXPECT_EQ(job->limits[1].key, "b");
}

TEST_F(ValidateTest, FloatingLimitNeedsRefreshInterval) {
  JobSpec s = Good("x");
  ConcurrencyLimit f;
  f.kind = ConcurrencyLimit::Kind::kFloating;
  f.key = "f";
  f.max = 3;
  f.refresh_interval_ms = 0;
  s.limits = {f};
  ExpectEnqueueRejected(s, StatusCode::kInvalidArgument, "refresh_interval");
}

TEST_F(ValidateTest, BatchOverMaxJobs) {
  const std::vector<JobSpec> four = {Good("a"), Good("b"), Good("c"), Good("d")};
  EXPECT_TRUE(Rejected(engine_->EnqueueBatch(four), StatusCode::kTooLarge, "batch"));
  EXPECT_EQ(engine_->Stats().enqueued, 0u);
  for (const char* id : {"a", "b", "c", "d"}) {
    EXPECT_EQ(engine_->GetJob("", id).status().code(), StatusCode::kNotFound) << id;
  }
  const std::vector<JobSpec> three = {Good("a"), Good("b"), Good("c")};
  auto r = engine_->EnqueueBatch(three);
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(r->size(), 3u);
}

TEST_F(ValidateTest, OneBadSpecRejectsWholeBatchNamingIndex) {
  JobSpec bad = Good("c");
  bad.priority = 100;
  const std::vector<JobSpec> batch = {Good("a"), Good("b"), bad};
  auto r = engine_->EnqueueBatch(batch);
  EXPECT_TRUE(Rejected(r, StatusCode::kInvalidArgument, "priority"));
  EXPECT_TRUE(ContainsWord(r.status().message(), "2")) << r.status().ToString();
  EXPECT_EQ(engine_->Stats().enqueued, 0u);
  EXPECT_EQ(engine_->Stats().pending_tasks, 0u);
  for (const char* id : {"a", "b", "c"}) {
    EXPECT_EQ(engine_->GetJob("", id).status().code(), StatusCode::kNotFound) << id;
  }
  LeaseRequest req = GoodLease();
  req.max_tasks = 5;
  auto leased = engine_->Lease(req);
  ASSERT_TRUE(IsOk(leased));
  EXPECT_TRUE(leased->empty());
}

// ---- Lease ----

class ValidateLeaseTest : public ValidateTest {
 protected:
  void SetUp() override {
    ValidateTest::SetUp();
    ASSERT_TRUE(IsOk(engine_->Enqueue(Good("waiting"))));
  }
};

TEST_F(ValidateLeaseTest, EmptyQueue) {
  LeaseRequest req = GoodLease();
  req.queue.clear();
  ExpectLeaseRejected(req, StatusCode::kInvalidArgument, "queue");
}

TEST_F(ValidateLeaseTest, QueueSize) {
  LeaseRequest req = GoodLease();
  req.queue = std::string(9, 'q');
  ExpectLeaseRejected(req, StatusCode::kTooLarge, "queue");
}

TEST_F(ValidateLeaseTest, TenantSize) {
  LeaseRequest req = GoodLease();
  req.tenant = std::string(9, 't');
  ExpectLeaseRejected(req, StatusCode::kTooLarge, "tenant");
}

TEST_F(ValidateLeaseTest, EmptyWorker) {
  LeaseRequest req = GoodLease();
  req.worker_id.clear();
  ExpectLeaseRejected(req, StatusCode::kInvalidArgument, "worker");
}

TEST_F(ValidateLeaseTest, WorkerSize) {
  LeaseRequest req = GoodLease();
  req.worker_id = std::string(9, 'w');
  ExpectLeaseRejected(req, StatusCode::kTooLarge, "worker");
  req.worker_id = std::string(8, 'w');
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(r->size(), 1u);
}

TEST_F(ValidateLeaseTest, MaxTasksZero) {
  LeaseRequest req = GoodLease();
  req.max_tasks = 0;
  ExpectLeaseRejected(req, StatusCode::kInvalidArgument, "max_tasks");
}

TEST_F(ValidateLeaseTest, MaxTasksOverMaxLeaseBatch) {
  LeaseRequest req = GoodLease();
  req.max_tasks = 6;
  ExpectLeaseRejected(req, StatusCode::kInvalidArgument, "max_tasks");
  req.max_tasks = 5;
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(r->size(), 1u);
}

TEST_F(ValidateLeaseTest, UnknownQueueIsFine) {
  LeaseRequest req = GoodLease();
  req.queue = "unknown";
  auto r = engine_->Lease(req);
  ASSERT_TRUE(IsOk(r));
  EXPECT_TRUE(r->empty());
}

// ---- Heartbeat and Complete ----

TEST_F(ValidateTest, HeartbeatBadInput) {
  const Task t = LeaseOne();
  EXPECT_TRUE(Rejected(engine_->Heartbeat("", t.task_id, "", t.lease_token),
                       StatusCode::kInvalidArgument, "worker"));
  EXPECT_TRUE(Rejected(engine_->Heartbeat("", t.task_id, std::string(9, 'w'), t.lease_token),
                       StatusCode::kTooLarge, "worker"));
  EXPECT_TRUE(Rejected(engine_->Heartbeat("", "", "w", t.lease_token), StatusCode::kInvalidArgument,
                       "task"));
  EXPECT_TRUE(IsOk(engine_->Heartbeat("", t.task_id, "w", t.lease_token)));
}

// A rejected Complete leaves the lease valid: the job is still running and a later good
// Complete succeeds.
void ExpectCompleteRejected(Engine& engine, const Task& t, const Outcome& o, StatusCode code,
                            const std::string& field) {
  EXPECT_TRUE(Rejected(engine.Complete("", t.task_id, t.lease_token, o), code, field));
  auto job = engine.GetJob("", t.job_id, /*include_attempts=*/true);
  ASSERT_TRUE(IsOk(job));
  EXPECT_EQ(job->status, JobStatus::kRunning);
  ASSERT_EQ(job->attempts.size(), 1u);
  EXPECT_EQ(job->attempts[0].status, AttemptStatus::kRunning);
  EXPECT_TRUE(IsOk(engine.Heartbeat("", t.task_id, "w", t.lease_token)));
}

TEST_F(ValidateTest, CompleteResultSize) {
  const Task t = LeaseOne();
  ExpectCompleteRejected(*engine_, t, Outcome::Success(std::string(17, 'r')), StatusCode::kTooLarge,
                         "result");
  ASSERT_TRUE(IsOk(
      engine_->Complete("", t.task_id, t.lease_token, Outcome::Success(std::string(16, 'r')))));
  auto res = engine_->GetResult("", "job");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kSucceeded);
  EXPECT_EQ(res->result, std::string(16, 'r'));
}

TEST_F(ValidateTest, CompleteErrorCodeRequired) {
  const Task t = LeaseOne();
  ExpectCompleteRejected(*engine_, t, Outcome::Failure(""), StatusCode::kInvalidArgument, "code");
  EXPECT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("e"))));
}

TEST_F(ValidateTest, CompleteErrorCodeSize) {
  const Task t = LeaseOne();
  ExpectCompleteRejected(*engine_, t, Outcome::Failure(std::string(9, 'c')), StatusCode::kTooLarge,
                         "code");
  EXPECT_TRUE(
      IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure(std::string(8, 'c')))));
}

TEST_F(ValidateTest, CompleteErrorMessageSize) {
  const Task t = LeaseOne();
  ExpectCompleteRejected(*engine_, t, Outcome::Failure("c", std::string(17, 'm')),
                         StatusCode::kTooLarge, "message");
  EXPECT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token,
                                     Outcome::Failure("c", std::string(16, 'm')))));
}

TEST_F(ValidateTest, CompleteErrorDataSize) {
  const Task t = LeaseOne();
  ExpectCompleteRejected(*engine_, t, Outcome::Failure("c", "m", std::string(17, 'd')),
                         StatusCode::kTooLarge, "data");
  Outcome good = Outcome::Failure("c", "m", std::string(16, 'd'));
  good.no_retry = true;
  ASSERT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, good)));
  auto res = engine_->GetResult("", "job");
  ASSERT_TRUE(IsOk(res));
  EXPECT_EQ(res->status, JobStatus::kFailed);
  EXPECT_EQ(res->error.data, std::string(16, 'd'));
}

TEST_F(ValidateTest, CompleteEmptyTaskId) {
  const Task t = LeaseOne();
  EXPECT_TRUE(Rejected(engine_->Complete("", "", t.lease_token, Outcome::Success()),
                       StatusCode::kInvalidArgument, "task"));
  EXPECT_TRUE(IsOk(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success())));
}

// ---- Open ----

TEST(ValidateOpenTest, EmptyPathIsInvalid) {
  EngineOptions o = TestOptions("");
  auto r = Engine::Open(o);
  EXPECT_TRUE(Rejected(r, StatusCode::kInvalidArgument, "path"));
}

TEST(ValidateOpenTest, BadDefaultRetryIsInvalid) {
  TempDir dir;
  EngineOptions o = TestOptions(dir.path());
  o.default_retry.multiplier = 0.5;
  auto r = Engine::Open(o);
  EXPECT_TRUE(Rejected(r, StatusCode::kInvalidArgument, "multiplier"));
}

}  // namespace
}  // namespace sluice
