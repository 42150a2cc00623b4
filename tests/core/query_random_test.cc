// Engine::Query against a brute-force evaluation: a few thousand jobs across two tenants, with
// metadata, limits, retries, leases, completions, cancels and deletes under a ManualClock;
// then random SQL over jobs, job_metadata, attempts and queues mixing pushed-down filters with
// filters SQLite evaluates, each compared with rows computed in C++ from GetJob of every job.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/query_test_util.h"
#include "core/test_assertions.h"
#include "core/test_util.h"
#include "sluice/engine.h"

namespace sluice {
namespace {

using ::sluice::testing::BlobValue;
using ::sluice::testing::IntValue;
using ::sluice::testing::IsOk;
using ::sluice::testing::NullValue;
using ::sluice::testing::OpenOrDie;
using ::sluice::testing::Render;
using ::sluice::testing::RenderRow;
using ::sluice::testing::RenderRows;
using ::sluice::testing::SortedRows;
using ::sluice::testing::Spec;
using ::sluice::testing::TempDir;
using ::sluice::testing::TestOptions;
using ::sluice::testing::TextValue;

const std::vector<std::string> kTenants = {"", "acme"};
const std::vector<std::string> kQueues = {"q0", "q1", "q2", "q3", "emails"};
const std::vector<std::string> kStatuses = {"scheduled", "waiting", "running",
                                            "succeeded", "failed",  "cancelled"};
// Columns of jobs the comparison selects (metadata and limits are JSON: query_test.cc).
const std::vector<std::string> kJobColumns = {
    "queue",       "status",           "priority", "updated_ms",   "finished_ms",
    "start_at_ms", "next_run_ms",      "attempts", "retries_used", "max_retries",
    "lease_ms",    "cancel_requested", "payload"};

// A metadata pair when the row is one of job_metadata, else null.
struct Pair {
  const std::string* key = nullptr;
  const std::string* value = nullptr;
};

// A WHERE term and the same test in C++.
struct Pred {
  std::string sql;
  std::function<bool(const Job&, const Pair&)> match;
};

QueryValue JobValue(const Job& j, const std::string& column) {
  if (column == "id") return TextValue(j.id);
  if (column == "queue") return TextValue(j.queue);
  if (column == "status") return TextValue(JobStatusName(j.status));
  if (column == "priority") return IntValue(j.priority);
  if (column == "created_ms") return IntValue(j.created_ms);
  if (column == "updated_ms") return IntValue(j.updated_ms);
  if (column == "finished_ms") {
    return IsTerminal(j.status) && j.finished_ms != 0 ? IntValue(j.finished_ms) : NullValue();
  }
  if (column == "start_at_ms") return IntValue(j.start_at_ms);
  if (column == "next_run_ms") return j.next_run_ms != 0 ? IntValue(j.next_run_ms) : NullValue();
  if (column == "attempts") return IntValue(j.attempt_count);
  if (column == "retries_used") return IntValue(j.retries_used);
  if (column == "max_retries") return IntValue(j.retry.max_retries);
  if (column == "lease_ms") return IntValue(static_cast<int64_t>(j.lease_ms));
  if (column == "cancel_requested") return IntValue(j.cancel_requested ? 1 : 0);
  if (column == "payload") return BlobValue(j.payload);
  ADD_FAILURE() << "unknown column " << column;
  return NullValue();
}

QueryValue AttemptValue(const std::string& job_id, const Attempt& a, const std::string& column) {
  const bool failed = !a.error.code.empty();
  if (column == "job_id") return TextValue(job_id);
  if (column == "number") return IntValue(a.number);
  if (column == "worker_id") return TextValue(a.worker_id);
  if (column == "status") return TextValue(AttemptStatusName(a.status));
  if (column == "started_ms") return IntValue(a.started_ms);
  if (column == "finished_ms") return a.finished_ms != 0 ? IntValue(a.finished_ms) : NullValue();
  if (column == "result") {
    return a.status == AttemptStatus::kSucceeded ? BlobValue(a.result) : NullValue();
  }
  if (column == "error_code") return failed ? TextValue(a.error.code) : NullValue();
  if (column == "error_message") return failed ? TextValue(a.error.message) : NullValue();
  if (column == "error_data") return failed ? BlobValue(a.error.data) : NullValue();
  ADD_FAILURE() << "unknown column " << column;
  return NullValue();
}

bool StartsWithNoCase(const std::string& s, const std::string& prefix) {
  if (prefix.size() > s.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

class QueryRandomTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    rng_.seed(GetParam());
    clock_ = std::make_shared<ManualClock>();
    engine_ = OpenOrDie(TestOptions(dir_.path(), clock_));
    EnqueueWave(1500);
    RunWorkers();
    CancelAndDelete();
    EnqueueWave(300);  // created after the transitions: later times, still pending
    clock_->Advance(1);
    Load();
  }

  uint32_t Rand(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Rand(static_cast<uint32_t>(v.size()))];
  }

  JobSpec RandomSpec() {
    JobSpec s = Spec(Pick(kQueues), "p" + std::to_string(next_++));
    s.tenant = Pick(kTenants);
    s.priority = Rand(100);
    // Half the ids are client-given and start with digits (LIKE prefixes that can be pushed
    // down), half are generated UUIDv7s (hex letters: LIKE cuts the prefix at the first one).
    if (Rand(2) == 0) {
      s.id =
          std::to_string(10000 + next_) + "-" + static_cast<char>((Rand(2) ? 'a' : 'A') + Rand(3));
    }
    if (Rand(8) == 0) s.start_at_ms = clock_->NowMs() + 3'600'000;
    if (Rand(5) != 0) s.metadata["customer"] = "c" + std::to_string(Rand(8));
    if (Rand(2) == 0) s.metadata["region"] = "r" + std::to_string(Rand(3));
    if (Rand(10) == 0) s.metadata["vip"] = "yes";
    switch (Rand(3)) {
      case 0:
        s.retry = RetryPolicy{0, 0, 0, 1.0, false};
        break;
      case 1:
        s.retry = RetryPolicy{2, 0, 0, 1.0, false};  // retried at once: waiting again
        break;
      default:
        s.retry = RetryPolicy{2, 60'000, 60'000, 1.0, false};  // retried later: scheduled
    }
    if (Rand(20) == 0) s.limits = {testing::Fixed("k" + std::to_string(Rand(3)), 2)};
    return s;
  }

  void EnqueueWave(int n) {
    for (int i = 0; i < n; ++i) {
      JobSpec spec = RandomSpec();
      auto r = engine_->Enqueue(spec);
      ASSERT_TRUE(IsOk(r));
      refs_.emplace_back(spec.tenant, r->id);
      clock_->Advance(Rand(3));  // many jobs share a millisecond
    }
  }

  // Leases work in every queue of every tenant and ends some of it each way.
  void RunWorkers() {
    for (int round = 0; round < 3; ++round) {
      for (const std::string& tenant : kTenants) {
        for (const std::string& queue : kQueues) {
          LeaseRequest req;
          req.tenant = tenant;
          req.queue = queue;
          req.worker_id = "w" + std::to_string(Rand(4));
          req.max_tasks = 10 + Rand(50);
          auto tasks = engine_->Lease(req);
          ASSERT_TRUE(IsOk(tasks));
          for (const Task& t : *tasks) EndSome(tenant, t);
          clock_->Advance(1 + Rand(3));
        }
      }
    }
  }

  void EndSome(const std::string& tenant, const Task& t) {
    const uint32_t r = Rand(10);
    Outcome o = Outcome::Success("r" + t.job_id);
    if (r == 4 || r == 5) o = Outcome::Failure("e" + std::to_string(Rand(3)), "msg", "data");
    if (r == 6) {
      o = Outcome::Failure("fatal");
      o.no_retry = true;
    }
    if (r == 7) {
      ASSERT_TRUE(IsOk(engine_->Cancel(tenant, t.job_id)));  // running: cancel_requested
      return;
    }
    if (r >= 8) return;  // stays running
    ASSERT_TRUE(IsOk(engine_->Complete(tenant, t.task_id, t.lease_token, o)));
  }

  void CancelAndDelete() {
    for (const auto& [tenant, id] : refs_) {
      const uint32_t r = Rand(50);
      if (r < 3) (void)engine_->Cancel(tenant, id);   // refused for finished jobs
      if (r == 3) (void)engine_->Delete(tenant, id);  // refused for running jobs
    }
  }

  // Reads every job back: the brute-force side of every comparison.
  void Load() {
    for (const auto& [tenant, id] : refs_) {
      auto job = engine_->GetJob(tenant, id, /*include_attempts=*/true);
      if (!job.ok() && job.status().code() == StatusCode::kNotFound) continue;  // deleted
      ASSERT_TRUE(IsOk(job));
      jobs_[tenant].push_back(std::move(*job));
    }
  }

  const Job& RandomJob() {
    const std::string& tenant = Pick(kTenants);
    return Pick(jobs_[tenant]);
  }

  // A created_ms near one of a random job's.
  int64_t RandomTime() { return RandomJob().created_ms + static_cast<int64_t>(Rand(3)) - 1; }

  Pred CreatedPred(const std::string& p) {
    const int64_t t = RandomTime();
    const std::string c = p + "created_ms";
    switch (Rand(6)) {
      case 0:
        return {c + " > " + std::to_string(t),
                [t](const Job& j, const Pair&) { return j.created_ms > t; }};
      case 1:
        return {c + " >= " + std::to_string(t),
                [t](const Job& j, const Pair&) { return j.created_ms >= t; }};
      case 2:
        return {c + " < " + std::to_string(t),
                [t](const Job& j, const Pair&) { return j.created_ms < t; }};
      case 3:
        return {c + " <= " + std::to_string(t),
                [t](const Job& j, const Pair&) { return j.created_ms <= t; }};
      case 4:
        return {c + " = " + std::to_string(t),
                [t](const Job& j, const Pair&) { return j.created_ms == t; }};
      default: {
        const int64_t u = t + Rand(40);
        return {
            c + " BETWEEN " + std::to_string(t) + " AND " + std::to_string(u),
            [t, u](const Job& j, const Pair&) { return j.created_ms >= t && j.created_ms <= u; }};
      }
    }
  }

  Pred IdPred(const std::string& p) {
    const std::string id = Rand(10) == 0 ? std::string("nope") : RandomJob().id;
    std::string prefix =
        id.substr(0, 1 + Rand(static_cast<uint32_t>(std::min<size_t>(8, id.size()))));
    if (Rand(3) == 0) {  // LIKE ignores ASCII case, GLOB does not
      for (char& c : prefix) c = static_cast<char>(Rand(2) ? std::toupper(c) : std::tolower(c));
    }
    switch (Rand(3)) {
      case 0:
        return {p + "id = " + Quote(id), [id](const Job& j, const Pair&) { return j.id == id; }};
      case 1:
        return {p + "id LIKE " + Quote(prefix + "%"),
                [prefix](const Job& j, const Pair&) { return StartsWithNoCase(j.id, prefix); }};
      default:
        return {p + "id GLOB " + Quote(prefix + "*"),
                [prefix](const Job& j, const Pair&) { return j.id.starts_with(prefix); }};
    }
  }

  // A WHERE term on a job (columns prefixed with `p`, e.g. "j.").
  Pred JobPred(const std::string& p) {
    const std::string s1 = Pick(kStatuses);
    const std::string s2 = Pick(kStatuses);
    const std::string q1 = Rand(10) == 0 ? std::string("nope") : Pick(kQueues);
    const std::string q2 = Pick(kQueues);
    const auto status_is = [](const Job& j, const std::string& s) {
      return JobStatusName(j.status) == s;
    };
    switch (Rand(14)) {
      case 0:
      case 1:
        return {p + "status = " + Quote(s1),
                [=](const Job& j, const Pair&) { return status_is(j, s1); }};
      case 2:
        return {p + "status IN (" + Quote(s1) + ", " + Quote(s2) + ")",
                [=](const Job& j, const Pair&) { return status_is(j, s1) || status_is(j, s2); }};
      case 3:
      case 4:
        return {p + "queue = " + Quote(q1),
                [=](const Job& j, const Pair&) { return j.queue == q1; }};
      case 5:
        return {p + "queue IN (" + Quote(q1) + ", " + Quote(q2) + ")",
                [=](const Job& j, const Pair&) { return j.queue == q1 || j.queue == q2; }};
      case 6:
      case 7:
        return CreatedPred(p);
      case 8:
        return IdPred(p);
      case 9: {
        const uint32_t pr = Rand(100);
        return {p + "priority < " + std::to_string(pr),
                [=](const Job& j, const Pair&) { return j.priority < pr; }};
      }
      case 10:
        return {
            p + "attempts >= 1 AND " + p + "cancel_requested = 0",
            [](const Job& j, const Pair&) { return j.attempt_count >= 1 && !j.cancel_requested; }};
      case 11: {
        const std::string c = "c" + std::to_string(Rand(8));
        return {"json_extract(" + p + "metadata, '$.customer') = " + Quote(c),
                [=](const Job& j, const Pair&) {
                  auto it = j.metadata.find("customer");
                  return it != j.metadata.end() && it->second == c;
                }};
      }
      case 12:
        return {"(" + p + "status = " + Quote(s1) + " OR " + p + "queue = " + Quote(q1) + ")",
                [=](const Job& j, const Pair&) { return status_is(j, s1) || j.queue == q1; }};
      default:
        return {p + "status <> 'waiting'",
                [](const Job& j, const Pair&) { return j.status != JobStatus::kWaiting; }};
    }
  }

  // A WHERE term on a job_metadata row.
  Pred MetadataPred() {
    const std::string key = Pick(std::vector<std::string>{"customer", "region", "vip"});
    const std::string value = key == "customer"
                                  ? "c" + std::to_string(Rand(8))
                                  : (key == "region" ? "r" + std::to_string(Rand(3)) : "yes");
    switch (Rand(5)) {
      case 0:
        return {"key = " + Quote(key), [=](const Job&, const Pair& m) { return *m.key == key; }};
      case 1:
        return {"value = " + Quote(value),
                [=](const Job&, const Pair& m) { return *m.value == value; }};
      case 2:
      case 3:
        return {"key = " + Quote(key) + " AND value = " + Quote(value),
                [=](const Job&, const Pair& m) { return *m.key == key && *m.value == value; }};
      default:
        return {"value LIKE 'c1%'",
                [](const Job&, const Pair& m) { return StartsWithNoCase(*m.value, "c1"); }};
    }
  }

  std::vector<Pred> RandomPreds(int max, const std::function<Pred()>& make) {
    std::vector<Pred> preds;
    const int n = static_cast<int>(Rand(static_cast<uint32_t>(max) + 1));
    for (int i = 0; i < n; ++i) preds.push_back(make());
    return preds;
  }

  static std::string Where(const std::vector<Pred>& preds) {
    std::string sql;
    for (const Pred& p : preds) sql += (sql.empty() ? " WHERE " : " AND ") + p.sql;
    return sql;
  }

  static bool MatchAll(const std::vector<Pred>& preds, const Job& j, const Pair& m = {}) {
    return std::all_of(preds.begin(), preds.end(), [&](const Pred& p) { return p.match(j, m); });
  }

  QueryResult Run(const std::string& tenant, const std::string& sql) {
    QueryOptions options;
    options.max_rows = 100'000;
    options.max_result_bytes = 64 << 20;
    auto r = engine_->Query(tenant, sql, options);
    EXPECT_TRUE(IsOk(r)) << sql;
    ++queries_;
    return r.ok() ? std::move(*r) : QueryResult{};
  }

  void CheckJobsQuery();
  void CheckMetadataQuery();
  void CheckAttemptsQuery();
  void CheckQueues(const std::string& tenant);

  TempDir dir_;
  std::mt19937_64 rng_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Engine> engine_;
  int next_ = 0;
  std::vector<std::pair<std::string, std::string>> refs_;  // (tenant, id), enqueue order
  std::map<std::string, std::vector<Job>> jobs_;           // by tenant, enqueue order
  int queries_ = 0;
};

// Rows of an ORDER BY created_ms [DESC] LIMIT n: any order among equal created_ms is right,
// so the rows before the last created_ms must match exactly and the rest come from its ties.
// Column 1 of every row is created_ms.
void ExpectTieAwarePrefix(std::vector<std::vector<QueryValue>> expected,
                          const std::vector<std::vector<QueryValue>>& actual, bool desc,
                          size_t limit, const std::string& sql) {
  std::stable_sort(expected.begin(), expected.end(), [desc](const auto& a, const auto& b) {
    return desc ? a[1].integer > b[1].integer : a[1].integer < b[1].integer;
  });
  const size_t n = std::min(limit, expected.size());
  ASSERT_EQ(actual.size(), n) << sql;
  for (size_t i = 1; i < actual.size(); ++i) {
    ASSERT_TRUE(desc ? actual[i - 1][1].integer >= actual[i][1].integer
                     : actual[i - 1][1].integer <= actual[i][1].integer)
        << sql << " not ordered at row " << i;
  }
  if (n == 0) return;
  const int64_t boundary = expected[n - 1][1].integer;
  std::multiset<std::string> before, ties, got_before, got_ties;
  for (const auto& row : expected) {
    if (row[1].integer == boundary) {
      ties.insert(RenderRow(row));
    } else if (desc ? row[1].integer > boundary : row[1].integer < boundary) {
      before.insert(RenderRow(row));
    }
  }
  for (const auto& row : actual) {
    (row[1].integer == boundary ? got_ties : got_before).insert(RenderRow(row));
  }
  EXPECT_EQ(got_before, before) << sql;
  EXPECT_TRUE(std::includes(ties.begin(), ties.end(), got_ties.begin(), got_ties.end())) << sql;
}

void QueryRandomTest::CheckJobsQuery() {
  const std::string& tenant = Pick(kTenants);
  const std::vector<Pred> preds = RandomPreds(3, [this] { return JobPred(""); });
  std::vector<std::string> columns = {"id", "created_ms"};
  const bool index_only = Rand(2) == 0;
  for (uint32_t i = Rand(4); i > 0; --i) {
    columns.push_back(index_only ? (Rand(2) ? "queue" : "status") : Pick(kJobColumns));
  }
  std::vector<std::vector<QueryValue>> expected;
  for (const Job& j : jobs_[tenant]) {
    if (!MatchAll(preds, j)) continue;
    std::vector<QueryValue> row;
    for (const std::string& c : columns) row.push_back(JobValue(j, c));
    expected.push_back(std::move(row));
  }
  std::string select;
  for (const std::string& c : columns) select += (select.empty() ? "" : ", ") + c;
  const std::string from = " FROM jobs" + Where(preds);
  const size_t limit = Rand(30);
  const bool desc = Rand(2) == 0;
  switch (Rand(6)) {
    case 0: {
      QueryResult r = Run(tenant, "SELECT count(*)" + from);
      ASSERT_EQ(r.rows.size(), 1u);
      EXPECT_EQ(r.rows[0][0].integer, static_cast<int64_t>(expected.size())) << from;
      return;
    }
    case 1: {
      const std::string sql = "SELECT " + select + from;
      EXPECT_EQ(SortedRows(Run(tenant, sql).rows), SortedRows(expected)) << sql;
      return;
    }
    case 2: {
      const std::string sql =
          "SELECT " + select + from + " ORDER BY created_ms" + (desc ? " DESC" : "");
      ExpectTieAwarePrefix(expected, Run(tenant, sql).rows, desc, expected.size(), sql);
      return;
    }
    case 3: {
      const std::string sql = "SELECT " + select + from + " ORDER BY created_ms" +
                              (desc ? " DESC" : "") + " LIMIT " + std::to_string(limit);
      ExpectTieAwarePrefix(expected, Run(tenant, sql).rows, desc, limit, sql);
      return;
    }
    case 4: {
      const size_t offset = Rand(10);
      const std::string sql = "SELECT " + select + from + " ORDER BY created_ms, id LIMIT " +
                              std::to_string(limit) + " OFFSET " + std::to_string(offset);
      std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
        return std::tie(a[1].integer, a[0].bytes) < std::tie(b[1].integer, b[0].bytes);
      });
      std::vector<std::string> want = RenderRows(expected);
      want.erase(want.begin(), want.begin() + static_cast<long>(std::min(offset, want.size())));
      if (want.size() > limit) want.resize(limit);
      EXPECT_EQ(RenderRows(Run(tenant, sql).rows), want) << sql;
      return;
    }
    default: {
      const std::string sql = "SELECT " + select + from + " LIMIT " + std::to_string(limit);
      std::vector<std::string> got = SortedRows(Run(tenant, sql).rows);
      std::vector<std::string> all = SortedRows(expected);
      EXPECT_EQ(got.size(), std::min(limit, all.size())) << sql;
      EXPECT_TRUE(std::includes(all.begin(), all.end(), got.begin(), got.end())) << sql;
    }
  }
}

void QueryRandomTest::CheckMetadataQuery() {
  const std::string& tenant = Pick(kTenants);
  std::vector<Pred> preds = RandomPreds(2, [this] { return MetadataPred(); });
  for (const Pred& p : RandomPreds(2, [this] { return JobPred(""); })) {
    // job_metadata has the job's id (as job_id), queue, status and created_ms.
    if (p.sql.find("priority") != std::string::npos ||
        p.sql.find("attempts") != std::string::npos ||
        p.sql.find("metadata") != std::string::npos) {
      continue;
    }
    Pred q = p;
    if (q.sql.starts_with("id ")) q.sql = "job_" + q.sql;
    preds.push_back(q);
  }
  std::vector<std::vector<QueryValue>> expected;
  for (const Job& j : jobs_[tenant]) {
    for (const auto& [key, value] : j.metadata) {
      if (!MatchAll(preds, j, Pair{&key, &value})) continue;
      expected.push_back({TextValue(j.id), TextValue(key), TextValue(value), TextValue(j.queue),
                          TextValue(JobStatusName(j.status)), IntValue(j.created_ms)});
    }
  }
  const std::string where = Where(preds);
  if (Rand(3) == 0) {
    QueryResult r = Run(tenant, "SELECT count(*) FROM job_metadata" + where);
    ASSERT_EQ(r.rows.size(), 1u);
    EXPECT_EQ(r.rows[0][0].integer, static_cast<int64_t>(expected.size())) << where;
    return;
  }
  const std::string sql =
      "SELECT job_id, key, value, queue, status, created_ms FROM job_metadata" + where;
  EXPECT_EQ(SortedRows(Run(tenant, sql).rows), SortedRows(expected)) << sql;
}

void QueryRandomTest::CheckAttemptsQuery() {
  const std::string& tenant = Pick(kTenants);
  const std::vector<std::string> columns = {
      "job_id",      "number", "worker_id",  "status",        "started_ms",
      "finished_ms", "result", "error_code", "error_message", "error_data"};
  std::string select;
  for (const std::string& c : columns) select += (select.empty() ? "a." : ", a.") + c;
  std::vector<Pred> preds;
  std::string sql;
  switch (Rand(3)) {
    case 0: {  // one job's history
      const std::string id = RandomJob().id;
      preds.push_back({"", [id](const Job& j, const Pair&) { return j.id == id; }});
      sql = "SELECT " + select + " FROM attempts a WHERE a.job_id = " + Quote(id);
      break;
    }
    case 1:  // a join driven by the jobs side
      preds = RandomPreds(2, [this] { return JobPred("j."); });
      sql = "SELECT " + select + " FROM jobs j JOIN attempts a ON a.job_id = j.id" + Where(preds);
      break;
    default:  // every attempt of the tenant
      sql = "SELECT " + select + " FROM attempts a";
  }
  std::vector<std::vector<QueryValue>> expected;
  for (const Job& j : jobs_[tenant]) {
    if (!MatchAll(preds, j)) continue;
    for (const Attempt& a : j.attempts) {
      std::vector<QueryValue> row;
      for (const std::string& c : columns) row.push_back(AttemptValue(j.id, a, c));
      expected.push_back(std::move(row));
    }
  }
  EXPECT_EQ(SortedRows(Run(tenant, sql).rows), SortedRows(expected)) << sql;
}

void QueryRandomTest::CheckQueues(const std::string& tenant) {
  std::map<std::string, std::array<int64_t, 6>> counts;
  for (const Job& j : jobs_[tenant]) ++counts[j.queue][static_cast<size_t>(j.status)];
  std::vector<std::string> want;
  for (const auto& [queue, c] : counts) {
    std::vector<QueryValue> row = {TextValue(queue)};
    int64_t total = 0;
    for (int64_t n : c) {
      row.push_back(IntValue(n));
      total += n;
    }
    row.push_back(IntValue(total));
    want.push_back(RenderRow(row));
    const std::string one = "SELECT * FROM queues WHERE queue = " + Quote(queue);
    EXPECT_EQ(RenderRows(Run(tenant, one).rows), std::vector<std::string>{want.back()}) << one;
  }
  // Queues whose jobs were all deleted still have (zero) counters: compare the non-empty ones.
  EXPECT_EQ(RenderRows(Run(tenant, "SELECT * FROM queues WHERE total > 0 ORDER BY queue").rows),
            want);
  // The same numbers by grouping the jobs table.
  std::vector<std::string> grouped;
  for (const auto& [queue, c] : counts) {
    for (size_t s = 0; s < c.size(); ++s) {
      if (c[s] == 0) continue;
      grouped.push_back(RenderRow({TextValue(queue), TextValue(kStatuses[s]), IntValue(c[s])}));
    }
  }
  EXPECT_EQ(RenderRows(Run(tenant,
                           "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status "
                           "ORDER BY queue, CASE status WHEN 'scheduled' THEN 0 WHEN 'waiting' "
                           "THEN 1 WHEN 'running' THEN 2 WHEN 'succeeded' THEN 3 WHEN 'failed' "
                           "THEN 4 ELSE 5 END")
                           .rows),
            grouped);
}

TEST_P(QueryRandomTest, MatchesBruteForce) {
  ASSERT_GT(jobs_[""].size(), 500u);
  ASSERT_GT(jobs_["acme"].size(), 500u);
  for (const std::string& tenant : kTenants) CheckQueues(tenant);
  for (int i = 0; i < 300 && !HasFailure(); ++i) CheckJobsQuery();
  for (int i = 0; i < 100 && !HasFailure(); ++i) CheckMetadataQuery();
  for (int i = 0; i < 40 && !HasFailure(); ++i) CheckAttemptsQuery();
  RecordProperty("queries", queries_);
}

INSTANTIATE_TEST_SUITE_P(Seeds, QueryRandomTest, ::testing::Values(1u, 2u, 3u));

}  // namespace
}  // namespace sluice
