// engine_bench: throughput of the Sluice engine over a real RocksDB store.
//
// Scenarios (one output line each, "key=value" fields, ending in jobs_per_s=N):
//   enqueue  Enqueue() of single jobs, from 1 and from N threads
//   batch    EnqueueBatch() of --batch jobs per call, from one thread
//   e2e      enqueue -> lease -> complete: one producer enqueues in batches while N worker
//            threads Lease(max_tasks 64, wait_ms 10) and Complete(success) every task; timed
//            from the first enqueue to the last completion
//
// Flags:
//   --scenario=all|enqueue|batch|e2e   (default all)
//   --jobs=N            jobs per scenario; 0 = a default sized to take a few seconds
//   --threads=LIST      thread counts for enqueue and e2e, comma-separated (default 1,16)
//   --durability=sync|async|both       (default both)
//   --prefill=N         store N completed (terminal) jobs before measuring (default 0); they are
//                       enqueued in batches and completed with async durability, then the engine
//                       is reopened with the durability under test
//   --payload=BYTES     payload size (default 64)
//   --batch=N           EnqueueBatch size (default 1000)
//   --dir=PATH          where the temporary stores go (default /tmp); each is removed after use
//
// Example: engine_bench --scenario=e2e --threads=16 --durability=async --prefill=1000000
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
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
          "engine_bench --scenario=all|enqueue|batch|e2e --jobs=N --threads=1,16 "
          "--durability=sync|async|both --prefill=N --payload=BYTES --batch=N --dir=PATH\n");
      std::exit(0);
    }
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) Die("bad argument: " + arg);
    const std::string key = arg.substr(2, eq - 2), v = arg.substr(eq + 1);
    if (key == "scenario") {
      if (v != "all" && v != "enqueue" && v != "batch" && v != "e2e") Die("bad scenario " + v);
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
      Check(e.Complete(t.tenant, t.task_id, t.lease_token, sluice::Outcome::Success()),
            "Complete");
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

void Report(const char* scenario, sluice::Durability d, int threads, const Flags& f,
            uint64_t jobs, double seconds) {
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
  for (uint64_t sent = 0; sent < n;) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(f.batch, n - sent));
    auto r = e->EnqueueBatch(std::span<const sluice::JobSpec>(specs.data(), k));
    if (!r.ok()) Die("EnqueueBatch: " + r.status().ToString());
    sent += k;
  }
  const double secs = Seconds(t0);
  Report("batch", d, 1, f, n, secs);
  Check(e->Close(), "Close");
}

void RunE2E(const Flags& f, sluice::Durability d, int threads) {
  const uint64_t n = f.jobs ? f.jobs : DefaultJobs("e2e", d, threads);
  Store store(f.dir);
  Prefill(store.path(), f.prefill, std::string(f.payload, 'x'), f.batch);
  auto e = Open(store.path(), d);
  const std::vector<sluice::JobSpec> specs = Specs(f.batch, std::string(f.payload, 'x'));
  std::atomic<uint64_t> done{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] { Work(*e, "w" + std::to_string(t), 64, done, n); });
  }
  for (uint64_t sent = 0; sent < n;) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(f.batch, n - sent));
    auto r = e->EnqueueBatch(std::span<const sluice::JobSpec>(specs.data(), k));
    if (!r.ok()) Die("EnqueueBatch: " + r.status().ToString());
    sent += k;
  }
  for (auto& t : ts) t.join();
  const double secs = Seconds(t0);
  Report("e2e", d, threads, f, n, secs);
  const sluice::EngineStats s = e->Stats();
  if (s.running != 0 || s.pending_tasks != 0) {
    Die("e2e ended with running " + std::to_string(s.running) + ", pending " +
        std::to_string(s.pending_tasks));
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
    if (all || f.scenario == "e2e") {
      for (int t : f.threads) RunE2E(f, d, t);
    }
  }
  return 0;
}
