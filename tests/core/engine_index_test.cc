// Job indexes, ListJobs and CountJobs: randomized comparison against a brute-force scan of the
// same jobs (fixed seeds), paging while writes continue, tenant isolation, the cost bound of
// indexed filters (keys visited), validation, promotion lag, the scan cap and the format-1
// migration.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/merge_operator.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/test_util.h"
#include "keys.h"
#include "sluice/clock.h"
#include "sluice/engine.h"
#include "storage.pb.h"

namespace sluice {
namespace {

using testing::OpenOrDie;
using testing::TempDir;
using testing::TestOptions;

const char* const kTenants[] = {"", "t2"};
const char* const kQueues[] = {"q0", "q1", "q2", "q3"};

// The store at `path` opened straight through RocksDB (the engine closed), read-only or not;
// null, with a test failure, when it cannot be opened.
std::unique_ptr<rocksdb::DB> OpenRaw(const std::string& path, bool read_only) {
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status s = read_only ? rocksdb::DB::OpenForReadOnly(rocksdb::Options(), path, &raw)
                                      : rocksdb::DB::Open(rocksdb::Options(), path, &raw);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return std::unique_ptr<rocksdb::DB>(raw);
}

// Whether the closed store at `path` holds `key`.
bool HasKey(const std::string& path, const std::string& key) {
  auto db = OpenRaw(path, /*read_only=*/true);
  std::string v;
  return db != nullptr && db->Get(rocksdb::ReadOptions(), key, &v).ok();
}

// What the test knows of a job: where it is and its creation order.
struct Known {
  std::string tenant, id;
  uint64_t ordinal = 0;
};

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override {
    if (engine_) (void)engine_->Close();
  }
  void Open(uint32_t max_list_scan = 100'000) {
    EngineOptions o = TestOptions(dir_.path(), clock_);
    o.limits.max_list_scan = max_list_scan;
    o.default_retry.max_retries = 2;
    o.default_retry.initial_backoff_ms = 500;
    o.default_retry.jitter = false;
    engine_ = OpenOrDie(o);
  }
  void Reopen(uint32_t max_list_scan = 100'000) {
    ASSERT_TRUE(engine_->Close().ok());
    engine_.reset();
    Open(max_list_scan);
  }

  // Enqueues one job and remembers it.
  std::string Add(const std::string& tenant, const std::string& queue,
                  std::map<std::string, std::string> md = {}, int64_t start_in_ms = 0) {
    JobSpec s = testing::Spec(queue);
    s.tenant = tenant;
    s.metadata = std::move(md);
    if (start_in_ms > 0) s.start_at_ms = clock_->NowMs() + start_in_ms;
    auto r = engine_->Enqueue(s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return "";
    known_.push_back({tenant, r->id, next_ordinal_++});
    return r->id;
  }

  // Every job of the filter, by brute force over GetJob of every known job, in listing order.
  std::vector<Job> BruteForce(const JobFilter& f, bool newest_first) {
    std::vector<std::pair<uint64_t, Job>> hits;
    for (const Known& k : known_) {
      if (k.tenant != f.tenant) continue;
      auto j = engine_->GetJob(k.tenant, k.id);
      if (!j.ok()) {
        EXPECT_EQ(j.status().code(), StatusCode::kNotFound) << j.status().ToString();
        continue;
      }
      if (!f.queue.empty() && j->queue != f.queue) continue;
      if (!f.statuses.empty() &&
          std::find(f.statuses.begin(), f.statuses.end(), j->status) == f.statuses.end()) {
        continue;
      }
      if (!f.id.empty() && j->id != f.id) continue;
      if (!j->id.starts_with(f.id_prefix)) continue;
      bool md_ok = true;
      for (const auto& [key, v] : f.metadata) {
        auto it = j->metadata.find(key);
        md_ok = md_ok && it != j->metadata.end() && it->second == v;
      }
      if (!md_ok || j->created_ms < f.created_from_ms || j->created_ms >= f.created_to_ms) continue;
      hits.emplace_back(k.ordinal, std::move(*j));
    }
    std::sort(hits.begin(), hits.end(), [&](const auto& a, const auto& b) {
      return newest_first ? a.first > b.first : a.first < b.first;
    });
    std::vector<Job> out;
    for (auto& [o, j] : hits) out.push_back(std::move(j));
    return out;
  }

  // Every page of a listing; fails the test on a repeated id.
  struct Listing {
    std::vector<Job> jobs;
    uint64_t keys = 0;
    int pages = 0;
  };
  Listing ListAll(ListJobsRequest req) {
    Listing l;
    std::set<std::string> seen;
    for (;;) {
      auto r = engine_->ListJobs(req);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) return l;
      ++l.pages;
      l.keys += r->keys_visited;
      for (Job& j : r->jobs) {
        EXPECT_TRUE(seen.insert(j.id).second) << "job " << j.id << " listed twice";
        l.jobs.push_back(std::move(j));
      }
      EXPECT_LE(r->jobs.size(), req.limit);
      if (r->next_cursor.empty()) return l;
      req.cursor = r->next_cursor;
      if (l.pages > 100'000) {
        ADD_FAILURE() << "listing does not end";
        return l;
      }
    }
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<Engine> engine_;
  std::vector<Known> known_;
  uint64_t next_ordinal_ = 0;
};

std::string Describe(const JobFilter& f, bool newest_first) {
  std::string s = "tenant='" + f.tenant + "' queue='" + f.queue + "' statuses=[";
  for (JobStatus st : f.statuses) s += std::string(JobStatusName(st)) + " ";
  s += "] id_prefix='" + f.id_prefix + "' metadata=[";
  for (const auto& [k, v] : f.metadata) s += k + "=" + v + " ";
  s += "] created=[" + std::to_string(f.created_from_ms) + "," + std::to_string(f.created_to_ms) +
       ") " + (newest_first ? "newest first" : "oldest first");
  return s;
}

// The randomized workload: every transition, both tenants, promotion lag on and off.
class RandomizedIndexTest : public IndexTest, public ::testing::WithParamInterface<uint32_t> {};

TEST_P(RandomizedIndexTest, ListingsAndCountsMatchBruteForce) {
  std::mt19937 rng(GetParam());
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  const std::vector<std::pair<std::string, std::vector<std::string>>> md_domain = {
      {"cust", {"a", "b", "c"}}, {"region", {"eu", "us"}}, {"tier", {"1", "2"}}};
  struct Running {
    Task task;
  };
  std::vector<Task> running;
  int64_t last_promotion = clock_->NowMs();
  int checks = 0;

  for (int step = 0; step < 1500; ++step) {
    const int op = pick(100);
    if (op < 30) {  // enqueue
      std::map<std::string, std::string> md;
      for (const auto& [k, vals] : md_domain) {
        if (pick(3) != 0) md[k] = vals[static_cast<size_t>(pick(static_cast<int>(vals.size())))];
      }
      Add(kTenants[pick(2)], kQueues[pick(4)], md, pick(10) < 3 ? 1 + pick(5000) : 0);
    } else if (op < 50) {  // lease and finish some
      LeaseRequest req;
      req.tenant = kTenants[pick(2)];
      req.queue = kQueues[pick(4)];
      req.worker_id = "w";
      req.max_tasks = 1 + static_cast<uint32_t>(pick(5));
      auto r = engine_->Lease(req);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      for (Task& t : *r) running.push_back(std::move(t));
    } else if (op < 65 && !running.empty()) {  // report one running job
      const size_t i = static_cast<size_t>(pick(static_cast<int>(running.size())));
      Task t = running[i];
      running.erase(running.begin() + static_cast<long>(i));
      const int how = pick(10);
      const Outcome o = how < 5   ? Outcome::Success("r")
                        : how < 9 ? Outcome::Failure("e")
                                  : Outcome::Cancelled();
      (void)engine_->Complete(t.tenant, t.task_id, t.lease_token, o);  // may be lease_lost
    } else if (op < 85 && !known_.empty()) {  // an operator action on a random job
      const Known& k = known_[static_cast<size_t>(pick(static_cast<int>(known_.size())))];
      switch (pick(4)) {
        case 0:
          (void)engine_->Cancel(k.tenant, k.id);
          break;
        case 1:
          (void)engine_->Restart(k.tenant, k.id);
          break;
        case 2:
          (void)engine_->Expedite(k.tenant, k.id);
          break;
        default:
          (void)engine_->Delete(k.tenant, k.id);
          break;
      }
    } else if (op < 95) {
      clock_->Advance(pick(1500));
    } else {
      // Promotion (and lease expiry); skipped most of the time so that lag builds up.
      ASSERT_TRUE(engine_->ReapExpired().ok());
      last_promotion = clock_->NowMs();
    }

    if (step % 60 != 59) continue;
    const Status v = engine_->VerifyIndexes();
    ASSERT_TRUE(v.ok()) << "step " << step << ": " << v.ToString();
    // Jobs that may be filed as scheduled although due: waiting ones due after the last
    // promotion. They bound the extra keys a listing may visit.
    uint64_t lag_bound = 0;
    std::map<std::string, uint64_t> running_of;
    for (const Known& k : known_) {
      auto j = engine_->GetJob(k.tenant, k.id);
      if (j.ok() && j->status == JobStatus::kWaiting && j->next_run_ms > last_promotion) {
        ++lag_bound;
      }
      if (j.ok() && j->status == JobStatus::kRunning) ++running_of[k.tenant];
    }
    for (int q = 0; q < 12; ++q, ++checks) {
      ListJobsRequest req;
      JobFilter& f = req.filter;
      f.tenant = kTenants[pick(2)];
      if (pick(2) == 0) f.queue = kQueues[pick(4)];
      const int nst = pick(4);
      for (int i = 0; i < nst; ++i) {
        const auto st = static_cast<JobStatus>(pick(6));
        if (std::find(f.statuses.begin(), f.statuses.end(), st) == f.statuses.end()) {
          f.statuses.push_back(st);
        }
      }
      const int nmd = pick(10) < 6 ? 0 : 1 + pick(2);
      for (int i = 0; i < nmd; ++i) {
        const auto& [k, vals] = md_domain[static_cast<size_t>(pick(3))];
        f.metadata.emplace_back(k, vals[static_cast<size_t>(pick(static_cast<int>(vals.size())))]);
      }
      if (pick(10) == 0 && !known_.empty()) {
        f.id_prefix = known_[static_cast<size_t>(pick(static_cast<int>(known_.size())))].id.substr(
            0, static_cast<size_t>(8 + pick(30)));
      }
      if (pick(10) == 0 && !known_.empty()) {
        f.id = known_[static_cast<size_t>(pick(static_cast<int>(known_.size())))].id;
      }
      if (pick(5) == 0) {
        f.created_from_ms = clock_->NowMs() - pick(20'000);
        f.created_to_ms = f.created_from_ms + pick(20'000);
      }
      req.newest_first = pick(2) == 0;
      req.limit = 1 + static_cast<uint32_t>(pick(25));
      req.view = static_cast<JobView>(pick(3));

      const std::vector<Job> want = BruteForce(f, req.newest_first);
      const Listing got = ListAll(req);
      const std::string what =
          "step " + std::to_string(step) + ": " + Describe(f, req.newest_first);
      ASSERT_EQ(got.jobs.size(), want.size()) << what;
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(got.jobs[i].id, want[i].id) << what << " at row " << i;
        EXPECT_EQ(got.jobs[i].status, want[i].status) << what << " job " << want[i].id;
        EXPECT_EQ(got.jobs[i].queue, want[i].queue) << what;
        EXPECT_EQ(got.jobs[i].created_ms, want[i].created_ms) << what;
        if (req.view != JobView::kIndex) {
          EXPECT_EQ(got.jobs[i].metadata, want[i].metadata) << what;
          EXPECT_EQ(got.jobs[i].attempt_count, want[i].attempt_count) << what;
        }
        if (req.view == JobView::kFull) {
          EXPECT_EQ(got.jobs[i].payload, want[i].payload) << what;
        }
      }
      // Indexed filters visit a small multiple of what they return: one index entry per row
      // (+1 record read per row, +1 body in kFull), plus the lagging due entries a
      // waiting/scheduled split reads per page. Indexed: status, queue + status, one metadata
      // pair + status, creation range. Checked on index entries instead (not bounded): an id
      // prefix, a second metadata pair, a queue next to a metadata pair.
      if (f.id_prefix.empty() && f.metadata.size() <= 1 && f.id.empty() &&
          (f.metadata.empty() || f.queue.empty())) {
        const uint64_t per_row = req.view == JobView::kIndex     ? 1
                                 : req.view == JobView::kSummary ? 2
                                                                 : 3;
        // Per page also: one counter key per queue when no queue or metadata pair drives (the
        // listing merges the queues' ranges), and a record read per running job of the tenant
        // (running jobs stay filed as waiting; the running set and their record tell them apart).
        const uint64_t per_page = lag_bound + 1 + 4 + 2 * running_of[f.tenant];
        const uint64_t bound = per_row * got.jobs.size() + (got.pages + 1) * per_page;
        EXPECT_LE(got.keys, bound) << what << ": " << got.jobs.size() << " rows, " << got.pages
                                   << " pages, lag bound " << lag_bound;
      }
    }
    // Counts per status per queue, from the counters.
    for (const char* tenant : kTenants) {
      auto counts = engine_->CountJobs(tenant, "");
      ASSERT_TRUE(counts.ok()) << counts.status().ToString();
      std::map<std::string, std::array<uint64_t, 6>> want;
      for (const Known& k : known_) {
        if (k.tenant != tenant) continue;
        auto j = engine_->GetJob(k.tenant, k.id);
        if (!j.ok()) continue;
        auto [it, fresh] = want.try_emplace(j->queue);
        if (fresh) it->second.fill(0);
        ++it->second[static_cast<size_t>(j->status)];
      }
      for (const QueueCounts& qc : *counts) {
        std::array<uint64_t, 6> w{};
        if (auto it = want.find(qc.queue); it != want.end()) w = it->second;
        EXPECT_EQ(qc.by_status, w)
            << "step " << step << " tenant '" << tenant << "' queue " << qc.queue;
        auto one = engine_->CountJobs(tenant, qc.queue);
        ASSERT_TRUE(one.ok());
        ASSERT_EQ(one->size(), 1u);
        EXPECT_EQ((*one)[0].by_status, qc.by_status);
      }
      for (const auto& [q, w] : want) {
        EXPECT_TRUE(std::any_of(counts->begin(), counts->end(),
                                [&](const QueueCounts& c) { return c.queue == q; }))
            << "queue " << q << " missing from CountJobs";
      }
    }
  }
  EXPECT_GT(checks, 200);
  // The indexes survive a reopen unchanged.
  Reopen();
  EXPECT_TRUE(engine_->VerifyIndexes().ok());
}

INSTANTIATE_TEST_SUITE_P(Seeds, RandomizedIndexTest, ::testing::Values(1u, 2u, 3u));

TEST_F(IndexTest, PagingNeverSkipsOrRepeatsWhileWritesContinue) {
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    ids.push_back(Add("", kQueues[i % 2], {{"k", i % 3 == 0 ? "x" : "y"}}));
    if (i % 10 == 0) clock_->Advance(1);
  }
  for (bool newest_first : {false, true}) {
    for (int variant = 0; variant < 3; ++variant) {
      ListJobsRequest req;
      req.filter.statuses = {JobStatus::kWaiting};
      if (variant == 1) req.filter.queue = "q0";
      if (variant == 2) req.filter.metadata = {{"k", "y"}};
      req.newest_first = newest_first;
      req.limit = 7;
      // Jobs that match at the start and are never touched must each appear exactly once.
      std::set<std::string> untouched;
      for (const Job& j : BruteForce(req.filter, newest_first)) untouched.insert(j.id);
      std::set<std::string> seen;
      std::mt19937 rng(7 + variant);
      for (int page = 0;; ++page) {
        auto r = engine_->ListJobs(req);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        for (const Job& j : r->jobs) ASSERT_TRUE(seen.insert(j.id).second) << "repeated " << j.id;
        // Between pages: new jobs, jobs completed, and some matching jobs deleted or cancelled.
        Add("", "q0", {{"k", "y"}});
        LeaseRequest lr;
        lr.queue = kQueues[page % 2];
        lr.worker_id = "w";
        lr.max_tasks = 2;
        auto leased = engine_->Lease(lr);
        ASSERT_TRUE(leased.ok());
        for (const Task& t : *leased) {
          untouched.erase(t.job_id);
          ASSERT_TRUE(
              engine_->Complete(t.tenant, t.task_id, t.lease_token, Outcome::Success("r")).ok());
        }
        for (int n = 0; n < 2; ++n) {
          const Known& k = known_[rng() % known_.size()];
          if (seen.contains(k.id)) continue;  // only touch jobs not yet listed
          untouched.erase(k.id);
          if (rng() % 2 == 0) {
            (void)engine_->Delete(k.tenant, k.id);
          } else {
            (void)engine_->Cancel(k.tenant, k.id);
          }
        }
        clock_->Advance(1);
        if (r->next_cursor.empty()) break;
        req.cursor = r->next_cursor;
      }
      for (const std::string& id : untouched) {
        EXPECT_TRUE(seen.contains(id)) << "skipped " << id << " (variant " << variant << ")";
      }
    }
  }
}

TEST_F(IndexTest, TenantsNeverSeeEachOthersJobs) {
  const std::string a = Add("tenant-a", "q0", {{"cust", "acme"}});
  Add("tenant-a", "q1", {{"cust", "acme"}}, 10'000);
  ASSERT_FALSE(a.empty());
  ListJobsRequest req;
  req.filter.tenant = "tenant-b";
  for (int variant = 0; variant < 7; ++variant) {
    req.filter = JobFilter{};
    req.filter.tenant = "tenant-b";
    switch (variant) {
      case 1:
        req.filter.id = a;
        break;
      case 2:
        req.filter.id_prefix = a.substr(0, 4);
        break;
      case 3:
        req.filter.queue = "q0";
        break;
      case 4:
        req.filter.metadata = {{"cust", "acme"}};
        break;
      case 5:
        req.filter.statuses = {JobStatus::kWaiting};
        break;
      case 6:
        req.filter.statuses = {JobStatus::kScheduled};
        break;
      default:
        break;
    }
    for (JobView view : {JobView::kIndex, JobView::kSummary, JobView::kFull}) {
      req.view = view;
      auto r = engine_->ListJobs(req);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_TRUE(r->jobs.empty()) << "variant " << variant;
      EXPECT_TRUE(r->next_cursor.empty());
    }
  }
  auto counts = engine_->CountJobs("tenant-b", "");
  ASSERT_TRUE(counts.ok());
  EXPECT_TRUE(counts->empty());
  counts = engine_->CountJobs("tenant-b", "q0");
  ASSERT_TRUE(counts.ok());
  EXPECT_TRUE(counts->empty());
  // A cursor of tenant A's listing is refused for tenant B.
  req.filter = JobFilter{};
  req.filter.tenant = "tenant-a";
  req.limit = 1;
  auto r = engine_->ListJobs(req);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->next_cursor.empty());
  req.filter.tenant = "tenant-b";
  req.cursor = r->next_cursor;
  EXPECT_EQ(engine_->ListJobs(req).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(IndexTest, BadRequestsAreRefused) {
  Add("", "q0");
  auto code = [&](const ListJobsRequest& req) { return engine_->ListJobs(req).status().code(); };
  ListJobsRequest ok;
  EXPECT_EQ(code(ok), StatusCode::kOk);
  ListJobsRequest r = ok;
  r.limit = 0;
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r.limit = 1001;
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r = ok;
  r.cursor = "garbage";
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r = ok;
  r.filter.statuses = {static_cast<JobStatus>(9)};
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r = ok;
  r.filter.created_from_ms = 10;
  r.filter.created_to_ms = 5;
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r = ok;
  r.filter.queue = std::string(129, 'q');
  EXPECT_EQ(code(r), StatusCode::kTooLarge);
  r = ok;
  r.filter.tenant = std::string(129, 't');
  EXPECT_EQ(code(r), StatusCode::kTooLarge);
  r = ok;
  r.filter.metadata = {{"", "v"}};
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r = ok;
  r.view = static_cast<JobView>(7);
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  // A cursor from one filter or order is refused for another.
  r = ok;
  r.limit = 1;
  Add("", "q0");
  auto page = engine_->ListJobs(r);
  ASSERT_TRUE(page.ok());
  ASSERT_FALSE(page->next_cursor.empty());
  r.cursor = page->next_cursor;
  r.newest_first = true;
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r.newest_first = false;
  r.filter.queue = "q0";
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->CountJobs(std::string(129, 't'), "").status().code(), StatusCode::kTooLarge);
  EXPECT_TRUE(engine_->VerifyIndexes().ok());
}

TEST_F(IndexTest, DueJobsCountAsWaitingBeforeAndAfterPromotion) {
  const std::string later = Add("", "q0", {{"k", "v"}}, 5'000);
  Add("", "q0", {{"k", "v"}});
  auto statuses = [&](JobStatus st) {
    ListJobsRequest req;
    req.filter.statuses = {st};
    req.filter.metadata = {{"k", "v"}};
    std::vector<std::string> ids;
    for (const Job& j : ListAll(req).jobs) ids.push_back(j.id);
    return ids;
  };
  auto count = [&](JobStatus st) {
    auto c = engine_->CountJobs("", "q0");
    EXPECT_TRUE(c.ok());
    return c.ok() && !c->empty() ? (*c)[0].by_status[static_cast<size_t>(st)] : 999;
  };
  EXPECT_EQ(statuses(JobStatus::kScheduled), std::vector<std::string>{later});
  EXPECT_EQ(count(JobStatus::kScheduled), 1u);
  EXPECT_EQ(count(JobStatus::kWaiting), 1u);
  clock_->Advance(5'000);  // due now, not yet promoted
  EXPECT_TRUE(statuses(JobStatus::kScheduled).empty());
  EXPECT_EQ(statuses(JobStatus::kWaiting).size(), 2u);
  EXPECT_EQ(count(JobStatus::kScheduled), 0u);
  EXPECT_EQ(count(JobStatus::kWaiting), 2u);
  ASSERT_TRUE(engine_->ReapExpired().ok());  // promotes
  EXPECT_TRUE(statuses(JobStatus::kScheduled).empty());
  EXPECT_EQ(statuses(JobStatus::kWaiting).size(), 2u);
  EXPECT_EQ(count(JobStatus::kWaiting), 2u);
  EXPECT_TRUE(engine_->VerifyIndexes().ok());
}

TEST_F(IndexTest, ScanCapGivesShortPagesThatStillCoverEverything) {
  Reopen(/*max_list_scan=*/20);
  for (int i = 0; i < 150; ++i) Add("", "q0", {{"k", i % 50 == 0 ? "rare" : "common"}});
  ListJobsRequest req;
  req.filter.id_prefix = known_[77].id;  // matches one job; the rest is residual filtering
  req.limit = 10;
  const Listing l = ListAll(req);
  ASSERT_EQ(l.jobs.size(), 1u);
  EXPECT_EQ(l.jobs[0].id, known_[77].id);
  EXPECT_GE(l.pages, 150 / 21);
  req = ListJobsRequest{};
  req.filter.metadata = {{"k", "rare"}};
  EXPECT_EQ(ListAll(req).jobs.size(), 3u);
}

// Rewrites the store as format 1 wrote it: no indexes, metadata in the body.
void DowngradeToFormat1(const std::string& path) {
  class Any : public rocksdb::AssociativeMergeOperator {
   public:
    bool Merge(const rocksdb::Slice&, const rocksdb::Slice*, const rocksdb::Slice& v,
               std::string* out, rocksdb::Logger*) const override {
      out->assign(v.data(), v.size());
      return true;
    }
    const char* Name() const override { return "sluice.unused"; }
  };
  rocksdb::Options o;
  o.merge_operator = std::make_shared<Any>();
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, path, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(1, keys::kJob)); it->Valid() && it->key()[0] == keys::kJob;
       it->Next()) {
    storage::JobState st;
    ASSERT_TRUE(st.ParseFromString(it->value().ToString()));
    std::string_view tenant, id;
    ASSERT_TRUE(keys::ParseJobScopedKey(std::string_view(it->key().data(), it->key().size()),
                                        &tenant, &id));
    if (st.has_last_attempt()) {  // format 1 kept every attempt in its own record
      batch.Put(keys::AttemptKey(tenant, id, st.last_attempt().number()),
                st.last_attempt().SerializeAsString());
      st.clear_last_attempt();
    }
    storage::JobBody body;
    if (st.payload_inline()) {  // format 1 kept every payload in the body
      body.set_payload(st.payload());
      st.clear_payload();
      st.clear_payload_inline();
    } else {
      std::string body_raw;
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), keys::BodyKey(tenant, id), &body_raw).ok());
      ASSERT_TRUE(body.ParseFromString(body_raw));
    }
    body.mutable_metadata()->insert(st.metadata().begin(), st.metadata().end());
    st.clear_metadata();
    st.clear_indexed_as();
    st.clear_indexed_due_ms();
    batch.Put(keys::BodyKey(tenant, id), body.SerializeAsString());
    batch.Put(it->key(), st.SerializeAsString());
  }
  for (char space :
       {keys::kIdxStatus, keys::kIdxQueue, keys::kIdxMeta, keys::kIdxDue, keys::kCount}) {
    const std::string lo(1, space);
    batch.DeleteRange(lo, keys::PrefixEnd(lo));
  }
  std::string v;
  keys::PutU32(&v, 1);
  batch.Put(keys::VersionKey(), v);
  ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &batch).ok());
}

TEST_F(IndexTest, Format1StoresAreMigratedAtOpen) {
  for (int i = 0; i < 40; ++i) {
    Add(kTenants[i % 2], kQueues[i % 4], {{"n", std::to_string(i % 5)}}, i % 7 == 0 ? 9'000 : 0);
  }
  LeaseRequest lr;
  lr.queue = "q0";
  lr.worker_id = "w";
  lr.max_tasks = 3;
  ASSERT_TRUE(engine_->Lease(lr).ok());
  ListJobsRequest req;
  req.limit = 1000;
  const std::vector<Job> before = BruteForce(req.filter, false);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  DowngradeToFormat1(dir_.path());
  Open();
  const Status v = engine_->VerifyIndexes();
  ASSERT_TRUE(v.ok()) << v.ToString();
  const Listing after = ListAll(req);
  ASSERT_EQ(after.jobs.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after.jobs[i].id, before[i].id);
    EXPECT_EQ(after.jobs[i].metadata, before[i].metadata);
    EXPECT_EQ(after.jobs[i].status, before[i].status);
  }
  req.filter.metadata = {{"n", "3"}};
  EXPECT_EQ(ListAll(req).jobs.size(), 4u);
}

TEST_F(IndexTest, VerifyIndexesCatchesATamperedIndex) {
  Add("", "q0", {{"k", "v"}});
  ASSERT_TRUE(engine_->VerifyIndexes().ok());
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  {
    auto db = OpenRaw(dir_.path(), /*read_only=*/false);
    ASSERT_NE(db, nullptr);
    std::string k = keys::IdxStatusPrefix("", 4);  // an extra "failed" entry
    keys::PutPos(&k, 1, 1);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), k, "x").ok());
  }
  Open();
  const Status v = engine_->VerifyIndexes();
  EXPECT_EQ(v.code(), StatusCode::kCorruption) << v.ToString();
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST_F(IndexTest, RunningJobsAreListedAfterAReopen) {
  for (int i = 0; i < 5; ++i) Add("", "q0", {{"k", "v"}});
  LeaseRequest lr;
  lr.queue = "q0";
  lr.worker_id = "w";
  lr.max_tasks = 3;
  lr.wait_ms = 0;
  auto leased = engine_->Lease(lr);
  ASSERT_TRUE(leased.ok());
  ASSERT_EQ(leased->size(), 3u);
  auto running = [&] {
    ListJobsRequest req;
    req.filter.statuses = {JobStatus::kRunning};
    return ListAll(req).jobs.size();
  };
  EXPECT_EQ(running(), 3u);
  Reopen();
  const Status v = engine_->VerifyIndexes();
  EXPECT_TRUE(v.ok()) << v.ToString();
  EXPECT_EQ(running(), 3u);
  auto c = engine_->CountJobs("", "q0");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[0].by_status[static_cast<size_t>(JobStatus::kRunning)], 3u);
  EXPECT_EQ((*c)[0].by_status[static_cast<size_t>(JobStatus::kWaiting)], 2u);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// The 'C' keys of the store at `path`: key -> decoded counts (int64 LE per status).
std::map<std::string, std::vector<int64_t>> CounterKeys(const std::string& path) {
  std::map<std::string, std::vector<int64_t>> out;
  auto db = OpenRaw(path, /*read_only=*/true);
  if (db == nullptr) return out;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(1, keys::kCount)); it->Valid() && it->key()[0] == keys::kCount;
       it->Next()) {
    std::vector<int64_t> c(6);
    for (size_t s = 0; s < 6; ++s) {
      uint64_t u = 0;
      for (int i = 7; i >= 0; --i) u = (u << 8) | static_cast<uint8_t>(it->value()[8 * s + i]);
      c[s] = static_cast<int64_t>(u);
    }
    out.emplace(it->key().ToString(), std::move(c));
  }
  return out;
}

// Counters live in a few slots (one per write running at the time), are folded into one key per
// queue at open, and a store whose counts are spread over many shards (as format 2 first wrote
// them, one per job stripe) opens with the same totals.
TEST_F(IndexTest, CounterSlotsStayFewAndAreFoldedAtOpen) {
  constexpr int kThreads = 6;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        JobSpec s = testing::Spec(kQueues[(t + i) % 2]);
        ASSERT_TRUE(engine_->Enqueue(s).ok());
        LeaseRequest lr;
        lr.queue = s.queue;
        lr.worker_id = "w" + std::to_string(t);
        lr.max_tasks = 1;
        lr.wait_ms = 0;
        auto got = engine_->Lease(lr);
        ASSERT_TRUE(got.ok());
        for (const Task& task : *got) {
          if (i % 3 == 0) continue;  // some stay running
          ASSERT_TRUE(
              engine_->Complete("", task.task_id, task.lease_token, Outcome::Success("")).ok());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(engine_->VerifyIndexes().ok());
  auto totals = [&] {
    std::map<std::string, std::vector<uint64_t>> out;
    auto c = engine_->CountJobs("", "");
    EXPECT_TRUE(c.ok());
    if (c.ok()) {
      for (const QueueCounts& q : *c) {
        out[q.queue] = std::vector<uint64_t>(q.by_status.begin(), q.by_status.end());
      }
    }
    return out;
  };
  const auto want = totals();
  ASSERT_EQ(want.size(), 2u);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();

  // At most one slot per write that ran at once (the threads, plus the reaper).
  auto stored = CounterKeys(dir_.path());
  EXPECT_GE(stored.size(), 2u);
  EXPECT_LE(stored.size(), 2u * (kThreads + 1));

  // Spread q0's counts over two other shards, as the stripe-sharded format 2 stored them: its
  // keys are replaced by shard 900 = total - x and shard 901 = x, so that a fold that dropped
  // shards instead of adding them up would lose x.
  {
    auto db = OpenRaw(dir_.path(), /*read_only=*/false);
    ASSERT_NE(db, nullptr);
    std::vector<int64_t> total(6, 0);
    for (const auto& [key, counts] : stored) {
      if (key.find("q0") == std::string::npos) continue;
      for (size_t s = 0; s < 6; ++s) total[s] += counts[s];
      ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), key).ok());
    }
    auto put = [&](uint16_t shard, std::vector<int64_t> c) {
      std::string v(48, '\0');
      for (size_t s = 0; s < 6; ++s) {
        for (int i = 0; i < 8; ++i) {
          v[8 * s + i] = static_cast<char>((static_cast<uint64_t>(c[s]) >> (8 * i)) & 0xff);
        }
      }
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), keys::CountKey("", "q0", shard), v).ok());
    };
    const std::vector<int64_t> x = {5, 0, 3, 0, 0, 7};
    std::vector<int64_t> rest(6);
    for (size_t s = 0; s < 6; ++s) rest[s] = total[s] - x[s];
    put(900, rest);
    put(901, x);
  }
  Open();
  EXPECT_EQ(totals(), want);
  Status v = engine_->VerifyIndexes();
  EXPECT_TRUE(v.ok()) << v.ToString();
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  stored = CounterKeys(dir_.path());
  ASSERT_EQ(stored.size(), 2u);  // folded: one key per queue, in slot 0
  for (const auto& [key, counts] : stored)
    EXPECT_EQ(key.substr(key.size() - 2), std::string(2, '\0'));
  Open();
  EXPECT_EQ(totals(), want);
  // Writes after the fold start from the folded totals (slot 0 was loaded with them).
  JobSpec s = testing::Spec("q0");
  ASSERT_TRUE(engine_->Enqueue(s).ok());
  LeaseRequest lr;
  lr.queue = "q0";
  lr.worker_id = "w";
  lr.max_tasks = 1;
  lr.wait_ms = 0;
  auto got = engine_->Lease(lr);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  ASSERT_TRUE(
      engine_->Complete("", got->front().task_id, got->front().lease_token, Outcome::Success(""))
          .ok());
  v = engine_->VerifyIndexes();
  EXPECT_TRUE(v.ok()) << v.ToString();
  auto after = totals();
  after["q0"][static_cast<size_t>(JobStatus::kSucceeded)] -= 1;
  EXPECT_EQ(after, want);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// Whether the store at `path` holds a body record ('B') for the job.
bool HasBody(const std::string& path, const std::string& id) {
  return HasKey(path, keys::BodyKey("", id));
}

// Payloads up to 1 KiB live in the job record, larger ones in a body record of their own; both
// reach the worker, GetJob and full listings intact through every transition, and a deleted job
// leaves no body behind.
TEST_F(IndexTest, SmallPayloadsLiveInTheJobRecordAndLargeOnesInTheirBody) {
  const std::vector<size_t> sizes = {0, 1, 1023, 1024, 1025, 200'000};
  std::map<std::string, std::string> payload_of;
  for (size_t n : sizes) {
    JobSpec s = testing::Spec("pq");
    s.payload.resize(n);
    for (size_t i = 0; i < n; ++i) s.payload[i] = static_cast<char>('a' + (i * 7 + n) % 26);
    auto r = engine_->Enqueue(s);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    payload_of[r->id] = s.payload;
  }
  auto check_reads = [&] {
    for (const auto& [id, payload] : payload_of) {
      auto j = engine_->GetJob("", id);
      ASSERT_TRUE(j.ok()) << j.status().ToString();
      EXPECT_EQ(j->payload, payload) << payload.size();
    }
    ListJobsRequest req;
    req.filter.queue = "pq";
    req.view = JobView::kFull;
    req.limit = 100;
    auto page = engine_->ListJobs(req);
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->jobs.size(), sizes.size());
    for (const Job& j : page->jobs) EXPECT_EQ(j.payload, payload_of[j.id]);
  };
  check_reads();
  // Leased, failed for good, restarted, leased again: the payload rides along.
  for (int round = 0; round < 2; ++round) {
    LeaseRequest lr;
    lr.queue = "pq";
    lr.worker_id = "w";
    lr.max_tasks = 100;
    lr.wait_ms = 0;
    auto tasks = engine_->Lease(lr);
    ASSERT_TRUE(tasks.ok());
    ASSERT_EQ(tasks->size(), sizes.size());
    for (const Task& t : *tasks) {
      EXPECT_EQ(t.payload, payload_of[t.job_id]) << payload_of[t.job_id].size();
      ASSERT_TRUE(engine_->Complete("", t.task_id, t.lease_token, Outcome::Cancelled()).ok());
    }
    check_reads();
    for (const auto& [id, payload] : payload_of) ASSERT_TRUE(engine_->Restart("", id).ok());
  }
  ASSERT_TRUE(engine_->VerifyIndexes().ok());
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  for (const auto& [id, payload] : payload_of) {
    EXPECT_EQ(HasBody(dir_.path(), id), payload.size() > 1024) << payload.size();
  }
  Open();
  check_reads();
  for (const auto& [id, payload] : payload_of) ASSERT_TRUE(engine_->Delete("", id).ok());
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  for (const auto& [id, payload] : payload_of) EXPECT_FALSE(HasBody(dir_.path(), id));
  Open();
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// A format-2 store (every payload in a body record) opens as it is: its payloads read back, its
// jobs run, and the store is stamped format 3 so that an older build refuses it.
TEST_F(IndexTest, Format2StoresOpenAsTheyAre) {
  std::map<std::string, std::string> payload_of;
  for (int i = 0; i < 5; ++i) {
    JobSpec s = testing::Spec("q0");
    s.payload = "payload-" + std::to_string(i);
    auto r = engine_->Enqueue(s);
    ASSERT_TRUE(r.ok());
    payload_of[r->id] = s.payload;
  }
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  auto version = [&] {
    auto db = OpenRaw(dir_.path(), /*read_only=*/true);
    if (db == nullptr) return 0u;
    std::string v;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), keys::VersionKey(), &v).ok());
    keys::Reader r(v);
    uint32_t n = 0;
    EXPECT_TRUE(r.GetU32(&n));
    return n;
  };
  EXPECT_EQ(version(), 3u);
  {  // Rewrite as format 2 wrote it.
    auto db = OpenRaw(dir_.path(), /*read_only=*/false);
    ASSERT_NE(db, nullptr);
    rocksdb::WriteBatch batch;
    for (const auto& [id, payload] : payload_of) {
      std::string v;
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), keys::JobKey("", id), &v).ok());
      storage::JobState st;
      ASSERT_TRUE(st.ParseFromString(v));
      ASSERT_TRUE(st.payload_inline());
      storage::JobBody body;
      body.set_payload(st.payload());
      st.clear_payload();
      st.clear_payload_inline();
      batch.Put(keys::JobKey("", id), st.SerializeAsString());
      batch.Put(keys::BodyKey("", id), body.SerializeAsString());
    }
    std::string v;
    keys::PutU32(&v, 2);
    batch.Put(keys::VersionKey(), v);
    ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &batch).ok());
  }
  Open();
  EXPECT_TRUE(engine_->VerifyIndexes().ok());
  for (const auto& [id, payload] : payload_of) {
    auto j = engine_->GetJob("", id);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ(j->payload, payload);
  }
  LeaseRequest lr;
  lr.queue = "q0";
  lr.worker_id = "w";
  lr.max_tasks = 10;
  lr.wait_ms = 0;
  auto tasks = engine_->Lease(lr);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), payload_of.size());
  for (const Task& t : *tasks) EXPECT_EQ(t.payload, payload_of[t.job_id]);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  EXPECT_EQ(version(), 3u);
  Open();
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// A store from a newer build is refused with a clear error, and left as it was.
TEST_F(IndexTest, AStoreOfANewerFormatIsRefused) {
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  {
    auto db = OpenRaw(dir_.path(), /*read_only=*/false);
    ASSERT_NE(db, nullptr);
    std::string v;
    keys::PutU32(&v, keys::kFormatVersion + 1);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), keys::VersionKey(), v).ok());
  }
  auto r = Engine::Open(TestOptions(dir_.path(), clock_));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("not supported by this build"), std::string::npos);
  {
    auto db = OpenRaw(dir_.path(), /*read_only=*/true);
    ASSERT_NE(db, nullptr);
    std::string v;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), keys::VersionKey(), &v).ok());
    keys::Reader rd(v);
    uint32_t n = 0;
    ASSERT_TRUE(rd.GetU32(&n));
    EXPECT_EQ(n, keys::kFormatVersion + 1);
  }
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// Whether the store at `path` holds attempt record `n` ('A') of the job.
bool HasAttemptRecord(const std::string& path, const std::string& id, uint32_t n) {
  return HasKey(path, keys::AttemptKey("", id, n));
}

// The attempt that ends a job stays in its record when small (no 'A' record), a large one gets
// its own record, a restart moves the inline one out so that the history keeps every attempt,
// and GetJob, GetResult and delete see the same history either way.
TEST_F(IndexTest, TheFinalAttemptLivesInTheJobRecordWhenSmall) {
  const std::string small_result = "ok";
  const std::string big_result(5000, 'r');
  auto lease_one = [&](const std::string& queue) {
    LeaseRequest lr;
    lr.queue = queue;
    lr.worker_id = "w";
    lr.max_tasks = 1;
    lr.wait_ms = 0;
    auto t = engine_->Lease(lr);
    EXPECT_TRUE(t.ok());
    EXPECT_EQ(t->size(), 1u);
    return t->empty() ? Task{} : t->front();
  };
  // a: fails for good (no retries), is restarted, then succeeds with a small result.
  JobSpec sa = testing::Spec("fa");
  sa.retry = RetryPolicy{};
  sa.retry->max_retries = 0;
  const std::string a = engine_->Enqueue(sa)->id;
  Task t = lease_one("fa");
  ASSERT_TRUE(
      engine_->Complete("", t.task_id, t.lease_token, Outcome::Failure("boom", "first")).ok());
  ASSERT_TRUE(engine_->Restart("", a).ok());
  t = lease_one("fa");
  ASSERT_TRUE(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success(small_result)).ok());
  // b: succeeds with a result too large to stay in the record.
  const std::string b = engine_->Enqueue(testing::Spec("fb"))->id;
  t = lease_one("fb");
  ASSERT_TRUE(engine_->Complete("", t.task_id, t.lease_token, Outcome::Success(big_result)).ok());

  auto check = [&] {
    auto ja = engine_->GetJob("", a, /*include_attempts=*/true);
    ASSERT_TRUE(ja.ok()) << ja.status().ToString();
    ASSERT_EQ(ja->attempts.size(), 2u);
    EXPECT_EQ(ja->attempts[0].number, 1u);
    EXPECT_EQ(ja->attempts[0].status, AttemptStatus::kFailed);
    EXPECT_EQ(ja->attempts[0].error.message, "first");
    EXPECT_EQ(ja->attempts[1].number, 2u);
    EXPECT_EQ(ja->attempts[1].status, AttemptStatus::kSucceeded);
    EXPECT_EQ(ja->attempts[1].result, small_result);
    auto ra = engine_->GetResult("", a);
    ASSERT_TRUE(ra.ok());
    EXPECT_EQ(ra->result, small_result);
    auto rb = engine_->GetResult("", b);
    ASSERT_TRUE(rb.ok());
    EXPECT_EQ(rb->result, big_result);
    auto jb = engine_->GetJob("", b, /*include_attempts=*/true);
    ASSERT_TRUE(jb.ok());
    ASSERT_EQ(jb->attempts.size(), 1u);
    EXPECT_EQ(jb->attempts[0].result, big_result);
  };
  check();
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  EXPECT_TRUE(HasAttemptRecord(dir_.path(), a, 1));   // moved out by the restart
  EXPECT_FALSE(HasAttemptRecord(dir_.path(), a, 2));  // in the job record
  EXPECT_TRUE(HasAttemptRecord(dir_.path(), b, 1));   // too large for the record
  Open();
  check();
  ASSERT_TRUE(engine_->Delete("", a).ok());
  ASSERT_TRUE(engine_->Delete("", b).ok());
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  for (uint32_t n = 1; n <= 2; ++n) {
    EXPECT_FALSE(HasAttemptRecord(dir_.path(), a, n));
    EXPECT_FALSE(HasAttemptRecord(dir_.path(), b, n));
  }
  Open();
}

}  // namespace
}  // namespace sluice
