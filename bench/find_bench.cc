// find_bench: how fast jobs are found in a store of --jobs jobs (issue 8; docs/BENCHMARKS.md).
//
// The store (built once under --data and reused; delete the directory to rebuild): --jobs jobs
// in 10 queues ("q0".."q9"), metadata {customer: c0..c999, region: r0..r4}, then 80% of them
// succeeded, 10% failed for good, 10% left waiting, plus 1% more scheduled an hour ahead.
//
// Measures (p50/p99/max in microseconds over --iterations calls; one line each):
//   list_status_meta   ListJobs first page (50, summary view) of status=failed and a random
//                      customer, newest first
//   list_waiting_queue ListJobs first page (50, summary) of status=waiting in a random queue
//   count_queue        CountJobs of one random queue (all statuses)
//   sql_count          Query "SELECT count(*) FROM jobs WHERE status = 'failed'" (~10% of jobs)
//   sql_meta_page      Query of 50 failed jobs of a random customer via job_metadata
//
// Example: find_bench --jobs=1000000 --data=/tmp/sluice-find-1m
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "sluice/engine.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  uint64_t jobs = 1'000'000;
  std::string data = "/tmp/sluice-find-bench";
  int iterations = 2000;
  int sql_iterations = 20;
};

[[noreturn]] void Die(const std::string& what, const sluice::Status& s) {
  std::fprintf(stderr, "find_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

std::string Queue(uint64_t i) { return "q" + std::to_string(i % 10); }

// Builds the store: enqueue in batches, then lease and finish 90% of each queue.
void Build(sluice::Engine* e, uint64_t n) {
  const auto t0 = Clock::now();
  std::vector<sluice::JobSpec> batch;
  for (uint64_t i = 0; i < n; ++i) {
    sluice::JobSpec s;
    s.queue = Queue(i);
    s.payload = "payload-" + std::to_string(i);
    s.metadata = {{"customer", "c" + std::to_string((i * 7919) % 1000)},
                  {"region", "r" + std::to_string(i % 5)}};
    batch.push_back(std::move(s));
    if (batch.size() == 1000 || i + 1 == n) {
      auto r = e->EnqueueBatch(batch);
      if (!r.ok()) Die("enqueue", r.status());
      batch.clear();
    }
  }
  std::fprintf(stderr, "enqueued %llu jobs in %.1f s\n", static_cast<unsigned long long>(n),
               std::chrono::duration<double>(Clock::now() - t0).count());
  const uint64_t per_queue_done = n / 10 * 9 / 10;
  uint64_t k = 0;
  for (int q = 0; q < 10; ++q) {
    uint64_t done = 0;
    while (done < per_queue_done) {
      sluice::LeaseRequest req;
      req.queue = "q" + std::to_string(q);
      req.worker_id = "builder";
      req.max_tasks = static_cast<uint32_t>(std::min<uint64_t>(1000, per_queue_done - done));
      auto tasks = e->Lease(req);
      if (!tasks.ok()) Die("lease", tasks.status());
      if (tasks->empty()) break;
      std::vector<sluice::Completion> reports;
      for (const sluice::Task& t : *tasks) {
        sluice::Outcome o = (k++ % 9 == 0) ? sluice::Outcome::Failure("boom", "failed for good")
                                           : sluice::Outcome::Success("ok");
        o.no_retry = true;
        reports.push_back({t.tenant, t.task_id, t.lease_token, o});
      }
      auto r = e->CompleteBatch(reports);
      if (!r.ok()) Die("complete", r.status());
      done += tasks->size();
    }
  }
  std::vector<sluice::JobSpec> later;
  for (uint64_t i = 0; i < n / 100; ++i) {
    sluice::JobSpec s;
    s.queue = Queue(i);
    s.start_at_ms = 4'000'000'000'000;  // far ahead: stays scheduled
    s.metadata = {{"customer", "c" + std::to_string(i % 1000)}};
    later.push_back(std::move(s));
    if (later.size() == 1000) {
      if (auto r = e->EnqueueBatch(later); !r.ok()) Die("enqueue scheduled", r.status());
      later.clear();
    }
  }
  std::fprintf(stderr, "built in %.1f s\n",
               std::chrono::duration<double>(Clock::now() - t0).count());
}

// Runs fn `iterations` times and prints latency percentiles in microseconds.
void Measure(const char* name, int iterations, const std::function<uint64_t(int)>& fn) {
  std::vector<double> us;
  uint64_t rows = 0;
  for (int i = 0; i < iterations; ++i) {
    const auto t0 = Clock::now();
    rows += fn(i);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) {
    return us[std::min(us.size() - 1, static_cast<size_t>(p * static_cast<double>(us.size())))];
  };
  std::printf("scenario=%s iterations=%d rows_per_call=%.1f p50_us=%.0f p99_us=%.0f max_us=%.0f\n",
              name, iterations, static_cast<double>(rows) / iterations, pct(0.50), pct(0.99),
              us.back());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* name) -> const char* {
      const size_t n = std::strlen(name);
      return a.compare(0, n, name) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = val("--jobs=")) {
      f.jobs = std::strtoull(v, nullptr, 10);
    } else if (const char* v2 = val("--data=")) {
      f.data = v2;
    } else if (const char* v3 = val("--iterations=")) {
      f.iterations = std::atoi(v3);
    } else if (const char* v4 = val("--sql-iterations=")) {
      f.sql_iterations = std::atoi(v4);
    } else {
      std::fprintf(stderr, "usage: find_bench [--jobs=N] [--data=DIR] [--iterations=N]\n");
      return 2;
    }
  }
  const bool fresh = !std::filesystem::exists(f.data + "/CURRENT");
  sluice::EngineOptions o;
  o.path = f.data;
  o.durability = sluice::Durability::kAsync;
  o.default_lease_ms = 3'600'000;
  auto opened = sluice::Engine::Open(o);
  if (!opened.ok()) Die("open", opened.status());
  std::unique_ptr<sluice::Engine> e = std::move(opened).value();
  if (fresh) Build(e.get(), f.jobs);
  std::printf("store=%s jobs=%llu\n", f.data.c_str(), static_cast<unsigned long long>(f.jobs));

  std::mt19937 rng(42);
  Measure("list_status_meta", f.iterations, [&](int) -> uint64_t {
    sluice::ListJobsRequest req;
    req.filter.statuses = {sluice::JobStatus::kFailed};
    req.filter.metadata = {{"customer", "c" + std::to_string(rng() % 1000)}};
    req.newest_first = true;
    req.limit = 50;
    auto r = e->ListJobs(req);
    if (!r.ok()) Die("list", r.status());
    return r->jobs.size();
  });
  Measure("list_waiting_queue", f.iterations, [&](int) -> uint64_t {
    sluice::ListJobsRequest req;
    req.filter.statuses = {sluice::JobStatus::kWaiting};
    req.filter.queue = Queue(rng());
    req.limit = 50;
    auto r = e->ListJobs(req);
    if (!r.ok()) Die("list", r.status());
    return r->jobs.size();
  });
  Measure("count_queue", f.iterations, [&](int) -> uint64_t {
    auto r = e->CountJobs("", Queue(rng()));
    if (!r.ok()) Die("count", r.status());
    uint64_t total = 0;
    for (uint64_t c : (*r)[0].by_status) total += c;
    return total;
  });
  sluice::QueryOptions qo;
  qo.timeout_ms = 60'000;
  Measure("sql_count", f.sql_iterations, [&](int) -> uint64_t {
    auto r = e->Query("", "SELECT count(*) FROM jobs WHERE status = 'failed'", qo);
    if (!r.ok()) Die("query", r.status());
    return static_cast<uint64_t>(r->rows.at(0).at(0).integer);
  });
  Measure("sql_meta_page", f.iterations / 10, [&](int) -> uint64_t {
    const std::string sql =
        "SELECT job_id, queue, created_ms FROM job_metadata WHERE key = 'customer' AND value = "
        "'c" +
        std::to_string(rng() % 1000) + "' AND status = 'failed' ORDER BY created_ms DESC LIMIT 50";
    auto r = e->Query("", sql, qo);
    if (!r.ok()) Die("query", r.status());
    return r->rows.size();
  });
  return 0;
}
