// engine_bench: throughput of the Sluice engine over a real RocksDB store.
//
// Scenarios (one output line each, "key=value" fields, ending in jobs_per_s=N):
//   enqueue  Enqueue() of single jobs, from 1 and from N threads
//   batch    EnqueueBatch() of --batch jobs per call, from one thread
//   drain    one thread drains a stored backlog of --jobs jobs like a sluiced worker with 16
//            slots: ReportAndLease(previous round's 16 successes, max_tasks 16) per round
//   drain_ingest  drain while a second thread enqueues batches of 100 (caller-given ids) into
//            the same queue; adds the rounds' p50/p90/p99
//   e2e      enqueue -> lease -> complete: one producer enqueues in batches while N worker
//            threads Lease(max_tasks 64, wait_ms 10) and Complete(success) every task; timed
//            from the first enqueue to the last completion
//   limits_key4   e2e where every job carries one fixed concurrency limit {"hot", 4}
//   limits_10k    e2e where job i carries fixed limit {"key-<i % 10000>", 1}
//   grant_latency one fixed key with max 1 and --jobs jobs parked on it; a second thread is
//                 already blocked in Lease(wait_ms 1000) when the holder's Complete() is called;
//                 reports p50/p99/max microseconds from just before that Complete() to the
//                 moment the blocked Lease returns the next (granted) job, over every grant
//   limits        runs e2e (the baseline), limits_key4, limits_10k and grant_latency in one go
// `all` does not include the limit scenarios (run them by name or with --scenario=limits).
//
// Flags:
//   --scenario=all|enqueue|batch|drain|drain_ingest|e2e|limits_key4|limits_10k|grant_latency|limits
//                                      (default all)
//   --jobs=N            jobs per scenario; 0 = a default sized to take a few seconds
//   --threads=LIST      thread counts for enqueue and e2e, comma-separated (default 1,16)
//   --durability=sync|async|both       (default both)
//   --prefill=N         store N completed (terminal) jobs before measuring (default 0); they are
//                       enqueued in batches and completed with async durability, then the engine
//                       is reopened with the durability under test
//   --payload=BYTES     payload size (default 64)
//   --batch=N           EnqueueBatch size (default 1000)
//   --ingest_rate=N     drain_ingest's enqueue rate in jobs/s (default 50000, about what the
//                       Node.js producer of the Worker benchmark sends); 0 = as fast as it can
//   --dir=PATH          where the temporary stores go (default /tmp); each is removed after use
//
// Example: engine_bench --scenario=e2e --threads=16 --durability=async --prefill=1000000
//          engine_bench --scenario=limits --threads=16 --durability=async
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "sluice/engine.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string scenario = "all";
  uint64_t jobs = 0;
  std::vector<int> threads = {1, 16};
  std::vector<sluice::Durability> durability = {sluice::Durability::kSync,
                                                sluice::Durability::kAsync};
  uint64_t prefill = 0;
  size_t payload = 64;
  size_t batch = 1000;
  std::string dir = "/tmp";
  uint64_t ingest_rate = 50'000;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "engine_bench: %s\n", what.c_str());
  std::exit(1);
}

void Check(const sluice::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

uint64_t ParseU64(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') Die("bad number for " + flag + ": " + v);
  return n;
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "engine_bench "
          "--scenario=all|enqueue|batch|drain|drain_ingest|e2e|limits_key4|limits_10k|grant_"
          "latency|"
          "limits --jobs=N --threads=1,16 "
          "--durability=sync|async|both --prefill=N --payload=BYTES --batch=N --ingest_rate=N "
          "--dir=PATH\n");
      std::exit(0);
    }
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) Die("bad argument: " + arg);
    const std::string key = arg.substr(2, eq - 2), v = arg.substr(eq + 1);
    if (key == "scenario") {
      if (v != "all" && v != "enqueue" && v != "batch" && v != "drain" && v != "drain_ingest" &&
          v != "e2e" && v != "limits_key4" && v != "limits_10k" && v != "grant_latency" &&
          v != "limits") {
        Die("bad scenario " + v);
      }
      f.scenario = v;
    } else if (key == "jobs") {
      f.jobs = ParseU64(key, v);
    } else if (key == "threads") {
      f.threads.clear();
      size_t start = 0;
      while (start <= v.size()) {
        const size_t comma = std::min(v.find(',', start), v.size());
        const uint64_t t = ParseU64(key, v.substr(start, comma - start));
        if (t == 0 || t > 1024) Die("bad thread count in " + v);
        f.threads.push_back(static_cast<int>(t));
        start = comma + 1;
      }
    } else if (key == "durability") {
      if (v == "sync") {
        f.durability = {sluice::Durability::kSync};
      } else if (v == "async") {
        f.durability = {sluice::Durability::kAsync};
      } else if (v == "both") {
        f.durability = {sluice::Durability::kSync, sluice::Durability::kAsync};
      } else {
        Die("bad durability " + v);
      }
    } else if (key == "prefill") {
      f.prefill = ParseU64(key, v);
    } else if (key == "payload") {
      f.payload = static_cast<size_t>(ParseU64(key, v));
    } else if (key == "batch") {
      f.batch = static_cast<size_t>(ParseU64(key, v));
      if (f.batch == 0 || f.batch > 10000) Die("--batch must be 1..10000");
    } else if (key == "ingest_rate") {
      f.ingest_rate = ParseU64(key, v);
    } else if (key == "dir") {
      f.dir = v;
    } else {
      Die("unknown flag --" + key);
    }
  }
  return f;
}

const char* DurabilityName(sluice::Durability d) {
  return d == sluice::Durability::kSync ? "sync" : "async";
}

// Defaults sized for a few seconds per scenario on a small machine.
uint64_t DefaultJobs(const std::string& scenario, sluice::Durability d, int threads) {
  const bool sync = d == sluice::Durability::kSync;
  if (scenario == "enqueue") {
    if (sync) return threads == 1 ? 15'000 : 60'000;
    return 200'000;
  }
  if (scenario == "batch") return 300'000;
  if (scenario == "grant_latency") return 3'000;  // grants measured
  if (scenario == "limits_key4" || scenario == "limits_10k") {
    if (sync) return threads == 1 ? 15'000 : 40'000;
    return 50'000;
  }
  // e2e
  if (sync) return threads == 1 ? 15'000 : 40'000;
  return threads == 1 ? 75'000 : 100'000;
}

// A temporary store directory, removed on destruction.
class Store {
 public:
  explicit Store(const std::string& base) {
    std::string tmpl = base + "/sluice-bench-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp in " + base + ": " + std::strerror(errno));
    path_ = tmpl;
  }
  ~Store() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr const char* kQueue = "bench";

std::unique_ptr<sluice::Engine> Open(const std::string& path, sluice::Durability d) {
  sluice::EngineOptions o;
  o.path = path + "/db";
  o.durability = d;
  o.rng_seed = 1;
  auto r = sluice::Engine::Open(o);
  if (!r.ok()) Die("Engine::Open: " + r.status().ToString());
  return std::move(r).value();
}

std::vector<sluice::JobSpec> Specs(size_t n, const std::string& payload) {
  std::vector<sluice::JobSpec> specs(n);
  for (auto& s : specs) {
    s.queue = kQueue;
    s.payload = payload;
  }
  return specs;
}

// Enqueues n jobs in batches of specs.size() (the last one shorter).
void EnqueueAll(sluice::Engine& e, const std::vector<sluice::JobSpec>& specs, uint64_t n) {
  for (uint64_t sent = 0; sent < n;) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(specs.size(), n - sent));
    auto r = e.EnqueueBatch(std::span<const sluice::JobSpec>(specs.data(), k));
    if (!r.ok()) Die("EnqueueBatch: " + r.status().ToString());
    sent += k;
  }
}

// Leases and completes (success) tasks until `done` reaches `target`.
void Work(sluice::Engine& e, const std::string& worker_id, uint32_t max_tasks,
          std::atomic<uint64_t>& done, uint64_t target) {
  sluice::LeaseRequest req;
  req.queue = kQueue;
  req.worker_id = worker_id;
  req.max_tasks = max_tasks;
  req.wait_ms = 10;
  while (done.load(std::memory_order_relaxed) < target) {
    auto r = e.Lease(req);
    if (!r.ok()) Die("Lease: " + r.status().ToString());
    for (const sluice::Task& t : *r) {
      Check(e.Complete(t.tenant, t.task_id, t.lease_token, sluice::Outcome::Success()), "Complete");
      done.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

// Stores `n` completed jobs: batches enqueued by one thread while two workers complete them.
void Prefill(const std::string& path, uint64_t n, const std::string& payload, size_t batch) {
  if (n == 0) return;
  const auto t0 = Clock::now();
  auto e = Open(path, sluice::Durability::kAsync);
  std::atomic<uint64_t> done{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] { Work(*e, "prefill" + std::to_string(w), 1000, done, n); });
  }
  for (uint64_t sent = 0; sent < n;) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(batch, n - sent));
    auto r = e->EnqueueBatch(Specs(k, payload));
    if (!r.ok()) Die("prefill EnqueueBatch: " + r.status().ToString());
    sent += k;
  }
  for (auto& t : workers) t.join();
  Check(e->Close(), "Close");
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("# prefill: %llu completed jobs stored in %.1f s\n",
              static_cast<unsigned long long>(n), s);
  std::fflush(stdout);
}

void Report(const char* scenario, sluice::Durability d, int threads, const Flags& f, uint64_t jobs,
            double seconds) {
  std::printf(
      "scenario=%s durability=%s threads=%d prefill=%llu payload=%zu jobs=%llu seconds=%.3f "
      "jobs_per_s=%.0f\n",
      scenario, DurabilityName(d), threads, static_cast<unsigned long long>(f.prefill), f.payload,
      static_cast<unsigned long long>(jobs), seconds, static_cast<double>(jobs) / seconds);
  std::fflush(stdout);
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

void RunEnqueue(const Flags& f, sluice::Durability d, int threads) {
  const uint64_t n = f.jobs ? f.jobs : DefaultJobs("enqueue", d, threads);
  Store store(f.dir);
  Prefill(store.path(), f.prefill, std::string(f.payload, 'x'), f.batch);
  auto e = Open(store.path(), d);
  const std::string payload(f.payload, 'x');
  std::atomic<uint64_t> next{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      sluice::JobSpec s;
      s.queue = kQueue;
      s.payload = payload;
      while (next.fetch_add(1, std::memory_order_relaxed) < n) {
        auto r = e->Enqueue(s);
        if (!r.ok()) Die("Enqueue: " + r.status().ToString());
      }
    });
  }
  for (auto& t : ts) t.join();
  const double secs = Seconds(t0);
  Report("enqueue", d, threads, f, n, secs);
  Check(e->Close(), "Close");
}

void RunBatch(const Flags& f, sluice::Durability d) {
  const uint64_t n = f.jobs ? f.jobs : DefaultJobs("batch", d, 1);
  Store store(f.dir);
  Prefill(store.path(), f.prefill, std::string(f.payload, 'x'), f.batch);
  auto e = Open(store.path(), d);
  const std::vector<sluice::JobSpec> specs = Specs(f.batch, std::string(f.payload, 'x'));
  const auto t0 = Clock::now();
  EnqueueAll(*e, specs, n);
  const double secs = Seconds(t0);
  Report("batch", d, 1, f, n, secs);
  Check(e->Close(), "Close");
}

// One worker draining a backlog the way sluiced's workers do: each round reports the previous
// round's tasks and leases up to 16 new ones in one ReportAndLease (a worker with 16 slots and
// no-op handlers). The backlog (--jobs, enqueued in --batch batches) is stored first, untimed.
// ingest: a second thread meanwhile enqueues batches of 100 jobs with caller-given ids into the
// same queue (a producer on the clients' default path) at --ingest_rate until the drain has done
// --jobs jobs;
// rounds are timed one by one (p50/p90/p99).
void RunDrain(const Flags& f, sluice::Durability d, bool ingest = false) {
  const char* name = ingest ? "drain_ingest" : "drain";
  const uint64_t n = f.jobs ? f.jobs : 100'000;
  Store store(f.dir);
  Prefill(store.path(), f.prefill, std::string(f.payload, 'x'), f.batch);
  auto e = Open(store.path(), d);
  const std::vector<sluice::JobSpec> specs = Specs(f.batch, std::string(f.payload, 'x'));
  EnqueueAll(*e, specs, n);
  sluice::LeaseRequest req;
  req.queue = kQueue;
  req.worker_id = "drain";
  req.max_tasks = 16;
  req.wait_ms = 0;
  std::vector<sluice::Completion> reports;
  std::vector<sluice::Status> statuses;
  std::vector<double> round_us;
  uint64_t done = 0, rounds = 0;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ingested{0};
  std::thread producer;
  if (ingest) {
    producer = std::thread([&] {
      std::vector<sluice::JobSpec> batch = Specs(100, std::string(f.payload, 'x'));
      const auto start = Clock::now();
      for (uint64_t k = 0; !stop.load(std::memory_order_relaxed);) {
        if (f.ingest_rate > 0) {  // batch k/100 is due at k / rate seconds
          std::this_thread::sleep_until(start +
                                        std::chrono::microseconds(k * 1'000'000 / f.ingest_rate));
        }
        for (auto& s : batch) s.id = "ingest-" + std::to_string(k++);
        auto r = e->EnqueueBatch(batch);
        if (!r.ok()) Die("EnqueueBatch: " + r.status().ToString());
        ingested.fetch_add(batch.size(), std::memory_order_relaxed);
      }
    });
  }
  const auto t0 = Clock::now();
  for (;;) {
    const auto r0 = Clock::now();
    auto r = e->ReportAndLease(reports, req, &statuses);
    if (ingest)
      round_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - r0).count());
    if (!r.ok()) Die("ReportAndLease: " + r.status().ToString());
    for (const sluice::Status& s : statuses) Check(s, "report");
    done += reports.size();
    ++rounds;
    reports.clear();
    if (done >= n && ingest) break;  // the queue never empties while the producer runs
    for (const sluice::Task& t : r->tasks) {
      sluice::Completion c;
      c.tenant = t.tenant;
      c.task_id = t.task_id;
      c.lease_token = t.lease_token;
      c.outcome = sluice::Outcome::Success();
      reports.push_back(std::move(c));
    }
    if (reports.empty() && done >= n) break;
  }
  const double secs = Seconds(t0);
  stop.store(true);
  if (producer.joinable()) producer.join();
  Report(name, d, 1, f, done, secs);
  std::printf("# %s: %llu rounds, %.1f us per round of 16", name,
              static_cast<unsigned long long>(rounds), secs * 1e6 / static_cast<double>(rounds));
  if (ingest) {
    std::sort(round_us.begin(), round_us.end());
    auto pct = [&](double p) {
      return round_us[static_cast<size_t>(p * static_cast<double>(round_us.size() - 1))];
    };
    std::printf("; round p50 %.0f us, p90 %.0f us, p99 %.0f us; %.0f jobs/s enqueued meanwhile",
                pct(0.5), pct(0.9), pct(0.99), static_cast<double>(ingested.load()) / secs);
  }
  std::printf("\n");
  Check(e->Close(), "Close");
}

// Which concurrency limit each e2e job carries.
enum class E2ELimits { kNone, kHotKey4, kKeys10k };

const char* E2EName(E2ELimits l) {
  switch (l) {
    case E2ELimits::kNone:
      return "e2e";
    case E2ELimits::kHotKey4:
      return "limits_key4";
    case E2ELimits::kKeys10k:
      return "limits_10k";
  }
  return "?";
}

void RunE2E(const Flags& f, sluice::Durability d, int threads,
            E2ELimits limits = E2ELimits::kNone) {
  const char* name = E2EName(limits);
  const uint64_t n = f.jobs ? f.jobs : DefaultJobs(name, d, threads);
  Store store(f.dir);
  Prefill(store.path(), f.prefill, std::string(f.payload, 'x'), f.batch);
  auto e = Open(store.path(), d);
  std::vector<sluice::JobSpec> specs = Specs(f.batch, std::string(f.payload, 'x'));
  if (limits != E2ELimits::kNone) {
    for (auto& s : specs) {
      sluice::ConcurrencyLimit l;
      l.key = "hot";
      l.max = limits == E2ELimits::kHotKey4 ? 4 : 1;
      s.limits = {l};
    }
  }
  std::atomic<uint64_t> done{0};
  const uint64_t grants0 = e->Stats().grants;
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] { Work(*e, "w" + std::to_string(t), 64, done, n); });
  }
  for (uint64_t sent = 0; sent < n;) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(f.batch, n - sent));
    if (limits == E2ELimits::kKeys10k) {
      // Job i (counting from 0 over the whole run) carries key-<i % 10000>, max 1.
      for (size_t i = 0; i < k; ++i) {
        specs[i].limits[0].key = "key-" + std::to_string((sent + i) % 10'000);
      }
    }
    auto r = e->EnqueueBatch(std::span<const sluice::JobSpec>(specs.data(), k));
    if (!r.ok()) Die("EnqueueBatch: " + r.status().ToString());
    sent += k;
  }
  for (auto& t : ts) t.join();
  const double secs = Seconds(t0);
  Report(name, d, threads, f, n, secs);
  const sluice::EngineStats s = e->Stats();
  if (limits != E2ELimits::kNone) {
    std::printf("# %s: %llu grants (waiters granted on release)\n", name,
                static_cast<unsigned long long>(s.grants - grants0));
  }
  if (s.running != 0 || s.pending_tasks != 0 || s.limit_keys != 0 || s.limit_holders != 0 ||
      s.limit_waiters != 0) {
    Die(std::string(name) + " ended with running " + std::to_string(s.running) + ", pending " +
        std::to_string(s.pending_tasks) + ", limit keys/holders/waiters " +
        std::to_string(s.limit_keys) + "/" + std::to_string(s.limit_holders) + "/" +
        std::to_string(s.limit_waiters));
  }
  Check(e->Close(), "Close");
}

// Grant latency: one fixed key with max 1; every job but the holder is parked on it. A waiter
// thread sits in Lease(wait_ms 1000); the main thread calls Complete() on the holder, which
// releases the slot and grants the oldest waiter, and the blocked Lease must return it.
// Measured: from just before Complete() to the moment that Lease returns (steady clock).
void RunGrantLatency(const Flags& f, sluice::Durability d) {
  const uint64_t grants = f.jobs ? f.jobs : DefaultJobs("grant_latency", d, 1);
  Store store(f.dir);
  Prefill(store.path(), f.prefill, std::string(f.payload, 'x'), f.batch);
  auto e = Open(store.path(), d);
  std::vector<sluice::JobSpec> specs = Specs(f.batch, std::string(f.payload, 'x'));
  for (auto& s : specs) {
    sluice::ConcurrencyLimit l;
    l.key = "one";
    l.max = 1;
    s.limits = {l};
  }
  const uint64_t n = grants + 1;
  EnqueueAll(*e, specs, n);
  sluice::LeaseRequest req;
  req.queue = kQueue;
  req.worker_id = "holder";
  req.max_tasks = 1;
  auto first = e->Lease(req);
  if (!first.ok() || first->size() != 1) Die("grant_latency: first Lease did not return 1 task");
  sluice::Task holder = (*first)[0];
  // Park every other job in the key's waiter queue (Lease pops them; the key is full).
  req.max_tasks = 1000;
  for (;;) {
    auto r = e->Lease(req);
    if (!r.ok()) Die("Lease: " + r.status().ToString());
    if (!r->empty()) Die("grant_latency: a second job was leased while the key (max 1) was held");
    if (e->Stats().limit_waiters >= grants) break;
  }

  std::mutex mu;
  std::condition_variable cv;
  bool waiter_calling = false;  // the waiter is about to call (or is in) Lease
  bool have_result = false;
  sluice::Task next;
  Clock::time_point returned_at;
  bool stop = false;
  std::atomic<uint64_t> granted_so_far{0};
  std::thread waiter([&] {
    sluice::LeaseRequest wr;
    wr.queue = kQueue;
    wr.worker_id = "waiter";
    wr.max_tasks = 1;
    wr.wait_ms = 1000;
    for (uint64_t i = 0; i < grants; ++i) {
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return stop || !have_result; });
        if (stop) return;
        waiter_calling = true;
      }
      cv.notify_all();
      auto r = e->Lease(wr);
      const auto at = Clock::now();
      if (!r.ok()) Die("waiter Lease: " + r.status().ToString());
      if (r->empty()) {
        const sluice::EngineStats s = e->Stats();
        Die("grant_latency: the blocked Lease timed out (1 s) without a grant after " +
            std::to_string(granted_so_far.load()) + " grants (stats: grants " +
            std::to_string(s.grants) + ", pending_tasks " + std::to_string(s.pending_tasks) +
            ", running " + std::to_string(s.running) + ", limit holders " +
            std::to_string(s.limit_holders) + ", waiters " + std::to_string(s.limit_waiters) + ")");
      }
      {
        std::lock_guard<std::mutex> l(mu);
        next = (*r)[0];
        returned_at = at;
        have_result = true;
        waiter_calling = false;
      }
      cv.notify_all();
    }
  });

  std::vector<double> lat_us, complete_us;
  lat_us.reserve(grants);
  complete_us.reserve(grants);
  const auto t_all = Clock::now();
  for (uint64_t i = 0; i < grants; ++i) {
    {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return waiter_calling; });
    }
    // Let the waiter get into its long-poll (nothing is leasable until the Complete below).
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto t0 = Clock::now();
    Check(
        e->Complete(holder.tenant, holder.task_id, holder.lease_token, sluice::Outcome::Success()),
        "Complete");
    const auto t1 = Clock::now();
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return have_result; });
    lat_us.push_back(std::chrono::duration<double, std::micro>(returned_at - t0).count());
    complete_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    holder = next;
    have_result = false;
    granted_so_far.fetch_add(1, std::memory_order_relaxed);
    l.unlock();
    cv.notify_all();
  }
  {
    std::lock_guard<std::mutex> l(mu);
    stop = true;
  }
  cv.notify_all();
  waiter.join();
  const double secs = Seconds(t_all);
  Check(e->Complete(holder.tenant, holder.task_id, holder.lease_token, sluice::Outcome::Success()),
        "Complete");

  auto pct = [](std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
    return v[i];
  };
  std::printf(
      "scenario=grant_latency durability=%s prefill=%llu payload=%zu grants=%llu seconds=%.3f "
      "complete_p50_us=%.0f grant_p50_us=%.0f grant_p99_us=%.0f grant_max_us=%.0f\n",
      DurabilityName(d), static_cast<unsigned long long>(f.prefill), f.payload,
      static_cast<unsigned long long>(grants), secs, pct(complete_us, 0.5), pct(lat_us, 0.5),
      pct(lat_us, 0.99), pct(lat_us, 1.0));
  std::fflush(stdout);
  const sluice::EngineStats s = e->Stats();
  if (s.running != 0 || s.pending_tasks != 0 || s.limit_keys != 0) {
    Die("grant_latency ended with running " + std::to_string(s.running) + ", pending " +
        std::to_string(s.pending_tasks) + ", limit keys " + std::to_string(s.limit_keys));
  }
  Check(e->Close(), "Close");
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = ParseFlags(argc, argv);
  const bool all = f.scenario == "all";
  for (sluice::Durability d : f.durability) {
    if (all || f.scenario == "enqueue") {
      for (int t : f.threads) RunEnqueue(f, d, t);
    }
    if (all || f.scenario == "batch") RunBatch(f, d);
    if (all || f.scenario == "drain") RunDrain(f, d);
    if (f.scenario == "drain_ingest") RunDrain(f, d, /*ingest=*/true);
    const bool limits = f.scenario == "limits";
    if (all || limits || f.scenario == "e2e") {
      for (int t : f.threads) RunE2E(f, d, t);
    }
    if (limits || f.scenario == "limits_key4") {
      for (int t : f.threads) RunE2E(f, d, t, E2ELimits::kHotKey4);
    }
    if (limits || f.scenario == "limits_10k") {
      for (int t : f.threads) RunE2E(f, d, t, E2ELimits::kKeys10k);
    }
    if (limits || f.scenario == "grant_latency") RunGrantLatency(f, d);
  }
  return 0;
}
