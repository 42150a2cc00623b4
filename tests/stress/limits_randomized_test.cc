// Randomized multi-threaded stress test of concurrency limits over a real RocksDB store and the
// system clock (LESSONS.md "Concurrency limits").
//
// Keys, per tenant ("" and "t1"):
//   - 24 STATIC fixed keys: every job carries the same max (1..4, drawn once per seed);
//   - 16 CHANGING fixed keys: each job carries a random max 1..4 (raises and drops of the key's
//     max, which is the max of the newest job using it);
//   - 4 floating keys: default 1..3, refreshed by workers through LeaseTasks refresh tasks with
//     values 0..5 (0 rarely) or failures; the admin thread sometimes overrides them.
// Jobs carry 1..3 distinct limits in random order. Producers enqueue singles and batches
// (priorities, slightly-future start times, small-backoff retries, 150..300 ms leases); workers
// lease batches (1..16) and succeed, fail (retrying), fail without retry, report cancelled,
// heartbeat then succeed, or abandon the task so its lease expires (and later report on the
// dead lease, which must be refused); the admin thread does random Cancel / Delete / Restart /
// Expedite / SetFloatingLimit and scans ListConcurrencyKeys.
//
// Checked after every call that returned OK (for the keys of the job it touched):
//  (1) static key: engine holders <= the key's max, and the key's reported max == that max;
//  (2) static key: tasks the workers are executing (received and not yet reported, with a
//      lease known to be live when the newest one was granted) never exceed the max; only
//      tasks received no later than the newest one count (one received after it may have been
//      granted after the newest one's lease expired, when the checking thread ran late);
//  (3) changing key: holders <= 4 (the largest max any job carries), reported max in 1..4;
//  (4) floating key: holders <= the largest value it ever had (default, refreshes, overrides);
//  (5) a task just received holds a slot in every one of its keys (holders >= 1 on each) while
//      its lease is live (all-or-nothing: not only the first limit is applied);
//  (6) a report on a lease after its expiry is refused with kLeaseLost.
// At the end: producers and admin stop, every floating key is set positive, workers drain until
// every job is terminal; then every key has 0 holders and 0 waiters, Stats() limit gauges are 0,
// and they are still 0 after Close and reopen (rebuilt from the store).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/test_util.h"
#include "sluice/clock.h"
#include "sluice/engine.h"

namespace sluice {
namespace {

using Kind = ConcurrencyLimit::Kind;
using std::chrono::milliseconds;

constexpr int kProducers = 3;
constexpr int kWorkers = 6;
constexpr int64_t kProduceMs = 6000;
// Generous: a drain takes ~2 s, but sanitizer builds on a loaded 2-core machine are slower.
constexpr int64_t kDrainDeadlineMs = 60000;
constexpr size_t kMaxJobsPerProducer = 4000;
constexpr int kStaticKeys = 24;
constexpr int kChangingKeys = 16;
constexpr int kFloatingKeys = 4;
constexpr uint32_t kChangingMaxCap = 4;
// Slack for comparing lease expiry times (ms) with the wall clock.
constexpr int64_t kMarginMs = 2;

const char* const kTenants[] = {"", "t1"};
const char* const kQueues[] = {"q0", "q1"};

int64_t WallNow() {
  static const SystemClock clock;
  return clock.NowMs();
}

template <typename T>
T Uniform(std::mt19937_64& rng, T lo, T hi) {
  return static_cast<T>(std::uniform_int_distribution<int64_t>(static_cast<int64_t>(lo),
                                                               static_cast<int64_t>(hi))(rng));
}

bool Chance(std::mt19937_64& rng, double p) { return std::bernoulli_distribution(p)(rng); }

void SleepMs(int64_t ms) { std::this_thread::sleep_for(milliseconds(ms)); }

enum class Category : uint8_t { kStatic, kChanging, kFloating };

const char* CategoryName(Category c) {
  switch (c) {
    case Category::kStatic:
      return "static";
    case Category::kChanging:
      return "changing";
    case Category::kFloating:
      return "floating";
  }
  return "?";
}

// One concurrency key of the test and what the test knows about it.
struct KeyState {
  std::string tenant;
  std::string name;
  Kind kind = Kind::kFixed;
  Category category = Category::kStatic;
  uint32_t static_max = 0;            // static keys
  uint32_t default_max = 0;           // floating keys
  uint64_t refresh_interval_ms = 0;   // floating keys
  std::atomic<uint32_t> max_ever{0};  // floating: largest value ever set (bumped before the call)
  std::atomic<uint64_t> max_holders_seen{0};

  // Static keys: tasks being executed by workers (task id -> latest known lease expiry, and
  // when its lease call returned).
  struct Executing {
    int64_t expires = 0;
    int64_t received = 0;
  };
  std::mutex exec_mu;
  std::unordered_map<std::string, Executing> executing;
  uint64_t max_executing_seen = 0;

  std::string Label() const {
    return std::string(CategoryName(category)) + " key '" + tenant + "'/" + name;
  }
};

struct JobRec {
  std::string tenant;
  std::string id;
  std::string queue;
  std::vector<KeyState*> keys;
  std::vector<uint32_t> maxes;
  bool acked = false;    // guarded by mu_
  bool deleted = false;  // guarded by mu_
};

struct Counters {
  std::atomic<uint64_t> created{0}, tasks{0}, successes{0}, failures{0}, no_retry{0};
  std::atomic<uint64_t> cancels_reported{0}, heartbeats{0}, abandoned{0}, zombie_refused{0};
  std::atomic<uint64_t> lost_after_expiry{0}, refreshes_done{0}, refresh_failures{0};
  std::atomic<uint64_t> refreshes_abandoned{0}, refresh_zero{0}, admin_ok{0}, admin_refused{0};
  std::atomic<uint64_t> checks{0}, exec_overshoot_expired{0};
};

class LimitsRandomizedTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    seed_ = GetParam();
    options_ = testing::TestOptions(dir_.path(), nullptr, /*reaper_interval_ms=*/20);
    options_.durability = Durability::kAsync;
    options_.default_lease_ms = 200;
    options_.default_retry.max_retries = 1;
    options_.default_retry.initial_backoff_ms = 10;
    options_.default_retry.max_backoff_ms = 20;
    options_.rng_seed = seed_;
    options_.refresh_lease_ms = 300;
    options_.refresh_backoff_initial_ms = 20;
    options_.refresh_backoff_max_ms = 200;
    engine_ = testing::OpenOrDie(options_);
    MakeKeys();
  }
  void TearDown() override {
    if (engine_) (void)engine_->Close();
  }

  void MakeKeys() {
    std::mt19937_64 rng(seed_ * 7919 + 17);
    for (const char* tenant : kTenants) {
      auto& per = tenant_keys_[tenant];
      for (int i = 0; i < kStaticKeys + kChangingKeys; ++i) {
        auto k = std::make_unique<KeyState>();
        k->tenant = tenant;
        k->name = "fk" + std::to_string(i);
        k->kind = Kind::kFixed;
        k->category = i < kStaticKeys ? Category::kStatic : Category::kChanging;
        if (k->category == Category::kStatic) k->static_max = Uniform<uint32_t>(rng, 1, 4);
        (k->category == Category::kStatic ? per.statics : per.changing).push_back(k.get());
        keys_.push_back(std::move(k));
      }
      for (int i = 0; i < kFloatingKeys; ++i) {
        auto k = std::make_unique<KeyState>();
        k->tenant = tenant;
        k->name = "fl" + std::to_string(i);
        k->kind = Kind::kFloating;
        k->category = Category::kFloating;
        k->default_max = Uniform<uint32_t>(rng, 1, 3);
        k->refresh_interval_ms = Uniform<uint64_t>(rng, 100, 400);
        k->max_ever.store(k->default_max);
        per.floating.push_back(k.get());
        keys_.push_back(std::move(k));
      }
    }
    for (auto& k : keys_) key_index_[IndexKey(k->tenant, k->kind, k->name)] = k.get();
  }

  static std::string IndexKey(std::string_view tenant, Kind kind, std::string_view name) {
    std::string s(tenant);
    s.push_back('\x1f');
    s.push_back(kind == Kind::kFixed ? 'x' : 'f');
    s.append(name);
    return s;
  }

  void Violation(const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    ++violation_count_;
    if (violations_.size() < 100) violations_.push_back(what);
  }

  // ---- Checks ----

  // Bound checks (1), (3), (4) on one observed key state.
  void CheckInfo(KeyState& k, const ConcurrencyKeyInfo& info, const std::string& ctx) {
    counters_.checks.fetch_add(1, std::memory_order_relaxed);
    uint64_t seen = k.max_holders_seen.load(std::memory_order_relaxed);
    while (info.holders > seen && !k.max_holders_seen.compare_exchange_weak(seen, info.holders)) {
    }
    const bool active = info.holders + info.waiters > 0;
    std::ostringstream os;
    switch (k.category) {
      case Category::kStatic:
        if (info.holders > k.static_max) {
          os << k.Label() << " (every job carries max " << k.static_max << ") has " << info.holders
             << " holders (waiters " << info.waiters << ", reported max " << info.max << ") after "
             << ctx;
        } else if (active && info.max != k.static_max) {
          os << k.Label() << " reports max " << info.max << " but every job carries max "
             << k.static_max << " (holders " << info.holders << ", waiters " << info.waiters
             << ") after " << ctx;
        }
        break;
      case Category::kChanging:
        if (info.holders > kChangingMaxCap) {
          os << k.Label() << " has " << info.holders << " holders but no job carries a max above "
             << kChangingMaxCap << " (reported max " << info.max << ", waiters " << info.waiters
             << ") after " << ctx;
        } else if (active && (info.max < 1 || info.max > kChangingMaxCap)) {
          os << k.Label() << " reports max " << info.max << " outside 1.." << kChangingMaxCap
             << " after " << ctx;
        }
        break;
      case Category::kFloating: {
        const uint32_t ever = k.max_ever.load();  // read after the query: only grows
        if (info.holders > ever) {
          os << k.Label() << " has " << info.holders << " holders but its value was never above "
             << ever << " (reported max " << info.max << ", waiters " << info.waiters << ") after "
             << ctx;
        } else if (info.max > ever) {
          os << k.Label() << " reports max " << info.max << " but was never set above " << ever
             << " after " << ctx;
        }
        break;
      }
    }
    if (!os.str().empty()) Violation(os.str());
  }

  ConcurrencyKeyInfo CheckKey(KeyState& k, const std::string& ctx) {
    auto r = engine_->GetConcurrencyKey(k.tenant, k.kind, k.name);
    if (!r.ok()) {
      Violation("GetConcurrencyKey(" + k.Label() + ") failed: " + r.status().ToString());
      return {};
    }
    CheckInfo(k, *r, ctx);
    return *r;
  }

  void CheckJobKeys(const JobRec& j, const std::string& ctx) {
    for (KeyState* k : j.keys) CheckKey(*k, ctx + " of job " + j.id);
  }

  // Check (2) on receipt of a task; registers it as executing on its static keys.
  void OnReceived(const JobRec& j, const Task& t, int64_t t_ret) {
    for (KeyState* k : j.keys) {
      if (k->category != Category::kStatic) continue;
      std::lock_guard<std::mutex> l(k->exec_mu);
      k->executing[t.task_id] = KeyState::Executing{t.lease_expires_ms, t_ret};
      uint64_t live = 0;
      for (const auto& [id, e] : k->executing) {
        // A task received by t_ret whose lease is still live at t_ret held its slot at t_ret,
        // as this one did (granted <= t_ret). A task received after t_ret proves nothing: under
        // a slow checker (sanitizers) it may have been granted after this lease expired.
        if (id == t.task_id || (e.received <= t_ret && e.expires > t_ret + kMarginMs)) ++live;
      }
      k->max_executing_seen = std::max<uint64_t>(k->max_executing_seen, live);
      if (k->executing.size() > k->static_max && live <= k->static_max) {
        counters_.exec_overshoot_expired.fetch_add(1, std::memory_order_relaxed);
      }
      if (live > k->static_max) {
        std::ostringstream os;
        os << k->Label() << " (max " << k->static_max << "): workers execute " << live
           << " tasks with live leases after receiving " << t.task_id << " at " << t_ret << ":";
        for (const auto& [id, e] : k->executing) {
          os << " " << id << "(received " << e.received << ", exp " << e.expires << ")";
        }
        Violation(os.str());
      }
    }
  }

  void OnHeartbeat(const JobRec& j, const Task& t, int64_t new_expiry) {
    for (KeyState* k : j.keys) {
      if (k->category != Category::kStatic) continue;
      std::lock_guard<std::mutex> l(k->exec_mu);
      auto it = k->executing.find(t.task_id);
      if (it != k->executing.end()) it->second.expires = new_expiry;
    }
  }

  void StopExecuting(const JobRec& j, const Task& t) {
    for (KeyState* k : j.keys) {
      if (k->category != Category::kStatic) continue;
      std::lock_guard<std::mutex> l(k->exec_mu);
      k->executing.erase(t.task_id);
    }
  }

  // ---- Producers ----

  JobRec* NewJob(std::mt19937_64& rng, int producer, uint64_t n, JobSpec& s) {
    auto j = std::make_unique<JobRec>();
    j->tenant = kTenants[Uniform(rng, 0, 1)];
    j->queue = kQueues[Uniform(rng, 0, 1)];
    j->id = "s" + std::to_string(seed_) + "-p" + std::to_string(producer) + "-" + std::to_string(n);
    s = JobSpec{};
    s.id = j->id;
    s.tenant = j->tenant;
    s.queue = j->queue;
    s.priority = Uniform<uint32_t>(rng, 0, 99);
    if (Chance(rng, 0.15)) s.start_at_ms = WallNow() + Uniform<int64_t>(rng, 10, 200);
    RetryPolicy p;
    p.max_retries = Uniform<uint32_t>(rng, 0, 3);
    p.initial_backoff_ms = Uniform<uint64_t>(rng, 5, 20);
    p.max_backoff_ms = Uniform<uint64_t>(rng, 20, 40);
    p.multiplier = 2.0;
    p.jitter = Chance(rng, 0.3);
    s.retry = p;
    s.lease_ms = Uniform<uint64_t>(rng, 150, 300);
    s.payload = "x";

    // 1..3 distinct keys; producer 2 is the "limit change" producer: it always carries a
    // changing key (random max), so raises and drops are frequent.
    const auto& tk = tenant_keys_.at(j->tenant);
    const size_t nlimits = Uniform<size_t>(rng, 1, 3);
    std::vector<KeyState*> chosen;
    while (chosen.size() < nlimits) {
      KeyState* k = nullptr;
      const double r = std::uniform_real_distribution<double>(0, 1)(rng);
      if ((producer == 2 && chosen.empty()) || (r >= 0.55 && r < 0.8)) {
        k = tk.changing[Uniform<size_t>(rng, 0, tk.changing.size() - 1)];
      } else if (r < 0.55) {
        k = tk.statics[Uniform<size_t>(rng, 0, tk.statics.size() - 1)];
      } else {
        k = tk.floating[Uniform<size_t>(rng, 0, tk.floating.size() - 1)];
      }
      if (std::find(chosen.begin(), chosen.end(), k) == chosen.end()) chosen.push_back(k);
    }
    for (KeyState* k : chosen) {
      ConcurrencyLimit l;
      l.kind = k->kind;
      l.key = k->name;
      switch (k->category) {
        case Category::kStatic:
          l.max = k->static_max;
          break;
        case Category::kChanging:
          l.max = Uniform<uint32_t>(rng, 1, kChangingMaxCap);
          break;
        case Category::kFloating:
          l.max = k->default_max;
          l.refresh_interval_ms = k->refresh_interval_ms;
          l.metadata = {{"key", k->name}};
          break;
      }
      j->keys.push_back(k);
      j->maxes.push_back(l.max);
      s.limits.push_back(std::move(l));
    }
    JobRec* raw = j.get();
    std::lock_guard<std::mutex> l(mu_);
    by_id_[IndexJob(raw->tenant, raw->id)] = raw;
    all_jobs_.push_back(std::move(j));
    return raw;
  }

  static std::string IndexJob(std::string_view tenant, std::string_view id) {
    std::string s(tenant);
    s.push_back('\x1f');
    s.append(id);
    return s;
  }

  JobRec* FindJob(std::string_view tenant, std::string_view id) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = by_id_.find(IndexJob(tenant, id));
    return it == by_id_.end() ? nullptr : it->second;
  }

  void Acked(JobRec* j, const EnqueueResult& r) {
    std::lock_guard<std::mutex> l(mu_);
    if (r.id != j->id || !r.created) {
      ++violation_count_;
      violations_.push_back("enqueue of fresh id " + j->id + " returned id " + r.id +
                            " created=" + std::to_string(r.created));
      return;
    }
    j->acked = true;
    admin_pool_.push_back(j);
    counters_.created.fetch_add(1);
  }

  void Producer(int p) {
    std::mt19937_64 rng(seed_ * 1000 + static_cast<uint64_t>(p));
    uint64_t n = 0;
    const int64_t end = WallNow() + kProduceMs;
    while (WallNow() < end && n < kMaxJobsPerProducer) {
      if (Chance(rng, 0.3)) {
        const size_t k = Uniform<size_t>(rng, 2, 20);
        std::vector<JobSpec> specs(k);
        std::vector<JobRec*> recs;
        for (size_t i = 0; i < k; ++i) recs.push_back(NewJob(rng, p, n++, specs[i]));
        auto r = engine_->EnqueueBatch(specs);
        if (!r.ok() || r->size() != k) {
          Violation("EnqueueBatch failed: " +
                    (r.ok() ? std::to_string(r->size()) + " results" : r.status().ToString()));
          continue;
        }
        for (size_t i = 0; i < k; ++i) Acked(recs[i], (*r)[i]);
      } else {
        JobSpec s;
        JobRec* j = NewJob(rng, p, n++, s);
        auto r = engine_->Enqueue(s);
        if (!r.ok()) {
          Violation("Enqueue failed: " + r.status().ToString());
          continue;
        }
        Acked(j, *r);
      }
      SleepMs(Uniform<int64_t>(rng, 2, 8));
    }
  }

  // ---- Workers ----

  struct Zombie {
    Task task;
    int64_t expires_ms = 0;
  };

  void HandleTask(std::mt19937_64& rng, int w, const Task& t, int64_t t_ret,
                  std::vector<Zombie>& zombies) {
    counters_.tasks.fetch_add(1, std::memory_order_relaxed);
    JobRec* j = FindJob(t.tenant, t.job_id);
    if (j == nullptr) {
      Violation("task " + t.task_id + " of unknown job '" + t.tenant + "'/" + t.job_id);
      return;
    }
    OnReceived(*j, t, t_ret);
    // (5): while this lease is live the job holds a slot in every one of its keys.
    for (size_t i = 0; i < j->keys.size(); ++i) {
      KeyState& k = *j->keys[i];
      const ConcurrencyKeyInfo info = CheckKey(k, "lease of " + t.task_id);
      if (info.holders == 0 && WallNow() + kMarginMs < t.lease_expires_ms) {
        Violation("task " + t.task_id + " is leased (lease live until " +
                  std::to_string(t.lease_expires_ms) + ") but " + k.Label() + " (limit #" +
                  std::to_string(i + 1) + " of " + std::to_string(j->keys.size()) +
                  ") has 0 holders");
      }
    }
    if (Chance(rng, 0.2)) SleepMs(Uniform<int64_t>(rng, 0, 2));

    const bool draining = draining_.load();
    const int roll = Uniform(rng, 0, 99);
    Outcome out;
    if (roll < 7 && !draining) {  // abandon: the lease expires
      StopExecuting(*j, t);
      counters_.abandoned.fetch_add(1, std::memory_order_relaxed);
      zombies.push_back({t, t.lease_expires_ms});
      return;
    }
    int64_t expires = t.lease_expires_ms;
    if (roll < 15) {  // heartbeat, then succeed
      auto hb = engine_->Heartbeat(t.tenant, t.task_id, "w" + std::to_string(w), t.lease_token);
      if (hb.ok()) {
        counters_.heartbeats.fetch_add(1, std::memory_order_relaxed);
        expires = hb->lease_expires_ms;
        OnHeartbeat(*j, t, expires);
        CheckJobKeys(*j, "heartbeat of " + t.task_id);
      } else if (hb.status().code() != StatusCode::kLeaseLost || WallNow() + kMarginMs < expires) {
        Violation("Heartbeat(" + t.task_id + ") on a live lease: " + hb.status().ToString());
      }
      out = Outcome::Success("ok");
    } else if (roll < 60) {
      out = Outcome::Success("ok");
    } else if (roll < 80) {
      out = Outcome::Failure("boom", "retry me");
    } else if (roll < 90) {
      out = Outcome::Failure("fatal", "no retry");
      out.no_retry = true;
    } else {
      out = Outcome::Cancelled();
    }
    StopExecuting(*j, t);  // decremented just before reporting
    const int64_t called = WallNow();
    Status s = engine_->Complete(t.tenant, t.task_id, t.lease_token, out);
    // The engine reads its clock somewhere inside the call (after waiting for the job's stripe,
    // which can take a while under TSan): the lease may expire before it looks.
    const int64_t returned = WallNow();
    if (s.ok()) {
      switch (out.kind) {
        case Outcome::Kind::kSuccess:
          counters_.successes.fetch_add(1);
          break;
        case Outcome::Kind::kFailure:
          (out.no_retry ? counters_.no_retry : counters_.failures).fetch_add(1);
          break;
        case Outcome::Kind::kCancelled:
          counters_.cancels_reported.fetch_add(1);
          break;
      }
      CheckJobKeys(*j, "Complete of " + t.task_id);
    } else if (s.code() == StatusCode::kLeaseLost && returned + kMarginMs >= expires) {
      counters_.lost_after_expiry.fetch_add(1, std::memory_order_relaxed);
    } else {
      Violation("Complete(" + t.task_id + ") called at " + std::to_string(called) +
                " and returned at " + std::to_string(returned) + " on a lease live until " +
                std::to_string(expires) + ": " + s.ToString());
    }
  }

  void HandleRefresh(std::mt19937_64& rng, const RefreshTask& rt) {
    KeyState* k = nullptr;
    auto it = key_index_.find(IndexKey(rt.tenant, Kind::kFloating, rt.key));
    if (it == key_index_.end()) {
      Violation("refresh task for unknown floating key '" + rt.tenant + "'/" + rt.key);
      return;
    }
    k = it->second;
    if (rt.metadata.count("key") == 0 || rt.metadata.at("key") != rt.key) {
      Violation("refresh task for " + k->Label() + " lacks the key's metadata");
    }
    const int roll = Uniform(rng, 0, 99);
    if (roll < 5 && !draining_.load()) {
      counters_.refreshes_abandoned.fetch_add(1, std::memory_order_relaxed);
      return;  // its refresh lease expires and the refresh is reissued
    }
    int64_t expires = rt.lease_expires_ms;
    if (roll < 15) {
      auto hb = engine_->HeartbeatRefresh(rt.tenant, rt.key, rt.lease_token);
      if (hb.ok()) {
        expires = *hb;
      } else if (hb.status().code() != StatusCode::kLeaseLost || WallNow() + kMarginMs < expires) {
        Violation("HeartbeatRefresh(" + k->Label() +
                  ") on a live lease: " + hb.status().ToString());
      }
    }
    RefreshOutcome out;
    std::shared_lock<std::shared_mutex> l(refresh_mu_);
    if (roll >= 85) {
      out = RefreshOutcome::Failure("upstream_down");
    } else {
      uint32_t v = Uniform<uint32_t>(rng, 1, 5);
      if (!draining_.load() && Chance(rng, 0.03)) v = 0;
      out = RefreshOutcome::Success(v);
      RaiseEver(*k, v);
    }
    const int64_t called = WallNow();
    Status s = engine_->CompleteRefresh(rt.tenant, rt.key, rt.lease_token, out);
    const int64_t returned = WallNow();  // the engine's clock is read inside the call
    if (s.ok()) {
      if (out.ok) {
        counters_.refreshes_done.fetch_add(1, std::memory_order_relaxed);
        if (out.new_max == 0) counters_.refresh_zero.fetch_add(1, std::memory_order_relaxed);
      } else {
        counters_.refresh_failures.fetch_add(1, std::memory_order_relaxed);
      }
      CheckKey(*k, "CompleteRefresh(" + std::to_string(out.new_max) + ")");
    } else if (s.code() != StatusCode::kLeaseLost || returned + kMarginMs < expires) {
      Violation("CompleteRefresh(" + k->Label() + ") called at " + std::to_string(called) +
                " and returned at " + std::to_string(returned) + " on a refresh lease live until " +
                std::to_string(expires) + ": " + s.ToString());
    }
  }

  static void RaiseEver(KeyState& k, uint32_t v) {
    uint32_t cur = k.max_ever.load();
    while (v > cur && !k.max_ever.compare_exchange_weak(cur, v)) {
    }
  }

  void Worker(int w) {
    std::mt19937_64 rng(seed_ * 2000 + static_cast<uint64_t>(w));
    std::vector<Zombie> zombies;
    while (!stop_workers_.load()) {
      // (6): reports on dead leases are refused.
      for (size_t i = 0; i < zombies.size();) {
        if (WallNow() <= zombies[i].expires_ms + 10) {
          ++i;
          continue;
        }
        const Task& t = zombies[i].task;
        Status s = engine_->Complete(t.tenant, t.task_id, t.lease_token, Outcome::Success("z"));
        if (s.code() == StatusCode::kLeaseLost) {
          counters_.zombie_refused.fetch_add(1, std::memory_order_relaxed);
        } else {
          Violation("report on abandoned " + t.task_id + " after its lease expired (" +
                    std::to_string(zombies[i].expires_ms) + ") returned " + s.ToString());
        }
        zombies[i] = zombies.back();
        zombies.pop_back();
      }

      LeaseRequest req;
      req.tenant = kTenants[Uniform(rng, 0, 1)];
      req.queue = kQueues[Uniform(rng, 0, 1)];
      req.worker_id = "w" + std::to_string(w);
      req.max_tasks = Uniform<uint32_t>(rng, 1, 16);
      req.wait_ms = 50;
      LeaseResponse resp;
      if (Chance(rng, 0.8)) {
        auto r = engine_->LeaseTasks(req);
        if (!r.ok()) {
          Violation("LeaseTasks failed: " + r.status().ToString());
          continue;
        }
        resp = std::move(*r);
      } else {
        auto r = engine_->Lease(req);
        if (!r.ok()) {
          Violation("Lease failed: " + r.status().ToString());
          continue;
        }
        resp.tasks = std::move(*r);
      }
      const int64_t t_ret = WallNow();
      for (const RefreshTask& rt : resp.refreshes) HandleRefresh(rng, rt);
      for (const Task& t : resp.tasks) HandleTask(rng, w, t, t_ret, zombies);
    }
  }

  // ---- Admin ----

  void ScanActiveKeys() {
    const auto list = engine_->ListConcurrencyKeys(1000);
    for (const ConcurrencyKeyInfo& info : list) {
      auto it = key_index_.find(IndexKey(info.tenant, info.kind, info.key));
      if (it == key_index_.end()) {
        Violation("ListConcurrencyKeys lists unknown key '" + info.tenant + "'/" + info.key);
        continue;
      }
      CheckInfo(*it->second, info, "ListConcurrencyKeys");
    }
  }

  void Admin() {
    std::mt19937_64 rng(seed_ * 3000 + 7);
    while (!stop_admin_.load()) {
      SleepMs(Uniform<int64_t>(rng, 1, 4));
      const int roll = Uniform(rng, 0, 99);
      if (roll < 5) {
        ScanActiveKeys();
        continue;
      }
      if (roll < 10) {
        const char* tenant = kTenants[Uniform(rng, 0, 1)];
        KeyState* k = tenant_keys_.at(tenant).floating[Uniform<size_t>(rng, 0, kFloatingKeys - 1)];
        std::shared_lock<std::shared_mutex> l(refresh_mu_);
        const uint32_t v = Chance(rng, 0.1) ? 0 : Uniform<uint32_t>(rng, 1, 5);
        RaiseEver(*k, v);
        Status s = engine_->SetFloatingLimit(k->tenant, k->name, v);
        if (s.ok()) {
          counters_.admin_ok.fetch_add(1);
          CheckKey(*k, "SetFloatingLimit(" + std::to_string(v) + ")");
        } else if (s.code() == StatusCode::kNotFound) {
          counters_.admin_refused.fetch_add(1);
        } else {
          Violation("SetFloatingLimit(" + k->Label() + ") failed: " + s.ToString());
        }
        continue;
      }
      JobRec* j = nullptr;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (admin_pool_.empty()) continue;
        j = admin_pool_[Uniform<size_t>(rng, 0, admin_pool_.size() - 1)];
        if (j->deleted) continue;
      }
      Status s;
      std::string what;
      if (roll < 35) {
        what = "Cancel";
        auto r = engine_->Cancel(j->tenant, j->id);
        s = r.status();
      } else if (roll < 45) {
        what = "Delete";
        s = engine_->Delete(j->tenant, j->id);
        if (s.ok()) {
          std::lock_guard<std::mutex> l(mu_);
          j->deleted = true;
        }
      } else if (roll < 75) {
        what = "Restart";
        s = engine_->Restart(j->tenant, j->id);
      } else {
        what = "Expedite";
        s = engine_->Expedite(j->tenant, j->id);
      }
      if (s.ok()) {
        counters_.admin_ok.fetch_add(1);
        CheckJobKeys(*j, what);
      } else if (s.code() == StatusCode::kFailedPrecondition) {
        counters_.admin_refused.fetch_add(1);
      } else {
        Violation(what + "(" + j->id + ") failed: " + s.ToString());
      }
    }
  }

  // ---- End ----

  std::string DescribeKeys(const JobRec& j) {
    std::ostringstream os;
    for (size_t i = 0; i < j.keys.size(); ++i) {
      KeyState& k = *j.keys[i];
      auto r = engine_->GetConcurrencyKey(k.tenant, k.kind, k.name);
      os << " [" << k.Label() << " carried max " << j.maxes[i];
      if (r.ok()) {
        os << ": holders " << r->holders << " waiters " << r->waiters << " max " << r->max;
      }
      if (k.kind == Kind::kFloating) {
        auto f = engine_->GetFloatingLimit(k.tenant, k.name);
        if (f.ok()) {
          os << " current " << f->current_max << " in_flight " << f->refresh_in_flight;
        }
      }
      os << "]";
    }
    return os.str();
  }

  void ExpectLimitGaugesZero(const std::string& when) {
    const EngineStats s = engine_->Stats();
    EXPECT_EQ(s.limit_keys, 0u) << when;
    EXPECT_EQ(s.limit_holders, 0u) << when;
    EXPECT_EQ(s.limit_waiters, 0u) << when;
    EXPECT_EQ(s.running, 0u) << when;
    EXPECT_EQ(s.pending_tasks, 0u) << when;
    for (auto& k : keys_) {
      auto r = engine_->GetConcurrencyKey(k->tenant, k->kind, k->name);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->holders, 0u) << k->Label() << " " << when;
      EXPECT_EQ(r->waiters, 0u) << k->Label() << " " << when;
      if (k->kind == Kind::kFloating) {
        auto f = engine_->GetFloatingLimit(k->tenant, k->name);
        if (f.ok()) {
          EXPECT_EQ(f->holders, 0u) << k->Label() << " " << when;
          EXPECT_EQ(f->waiters, 0u) << k->Label() << " " << when;
        } else {
          EXPECT_EQ(f.status().code(), StatusCode::kNotFound) << f.status().ToString();
        }
      }
    }
  }

  uint64_t seed_ = 0;
  testing::TempDir dir_;
  EngineOptions options_;
  std::unique_ptr<Engine> engine_;

  struct TenantKeys {
    std::vector<KeyState*> statics, changing, floating;
  };
  std::vector<std::unique_ptr<KeyState>> keys_;
  std::map<std::string, TenantKeys> tenant_keys_;
  std::unordered_map<std::string, KeyState*> key_index_;  // immutable after SetUp

  std::mutex mu_;
  std::vector<std::unique_ptr<JobRec>> all_jobs_;
  std::unordered_map<std::string, JobRec*> by_id_;
  std::vector<JobRec*> admin_pool_;
  uint64_t violation_count_ = 0;
  std::vector<std::string> violations_;

  std::shared_mutex refresh_mu_;  // exclusive: flipping draining_ (no 0 reported after it)
  std::atomic<bool> draining_{false};
  std::atomic<bool> stop_admin_{false};
  std::atomic<bool> stop_workers_{false};
  Counters counters_;
};

TEST_P(LimitsRandomizedTest, LimitsHoldAndDrainToZero) {
  const int64_t t0 = WallNow();
  std::vector<std::thread> workers, producers;
  for (int w = 0; w < kWorkers; ++w) workers.emplace_back([this, w] { Worker(w); });
  for (int p = 0; p < kProducers; ++p) producers.emplace_back([this, p] { Producer(p); });
  std::thread admin([this] { Admin(); });
  for (auto& t : producers) t.join();
  stop_admin_.store(true);
  admin.join();

  // Drain: no more zeros, no abandonment; every floating key positive so parked jobs can run.
  {
    std::unique_lock<std::shared_mutex> l(refresh_mu_);
    draining_.store(true);
  }
  for (auto& k : keys_) {
    if (k->kind != Kind::kFloating) continue;
    RaiseEver(*k, 3);
    Status s = engine_->SetFloatingLimit(k->tenant, k->name, 3);
    EXPECT_TRUE(s.ok() || s.code() == StatusCode::kNotFound) << s.ToString();
  }
  const int64_t drain_start = WallNow();
  std::vector<JobRec*> open;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& j : all_jobs_) {
      if (j->acked && !j->deleted) open.push_back(j.get());
    }
  }
  std::vector<std::pair<JobRec*, Job>> stuck;
  while (true) {
    stuck.clear();
    std::vector<JobRec*> still;
    for (JobRec* j : open) {
      auto r = engine_->GetJob(j->tenant, j->id);
      if (!r.ok()) {
        Violation("GetJob(" + j->id + ") in drain: " + r.status().ToString());
        continue;
      }
      if (!IsTerminal(r->status)) {
        still.push_back(j);
        if (stuck.size() < 10) stuck.emplace_back(j, *r);
      }
    }
    open.swap(still);
    if (open.empty() || WallNow() - drain_start > kDrainDeadlineMs) break;
    SleepMs(100);
  }
  const int64_t drain_ms = WallNow() - drain_start;
  stop_workers_.store(true);
  for (auto& t : workers) t.join();

  if (!open.empty()) {
    std::ostringstream os;
    os << open.size() << " jobs not terminal " << drain_ms << " ms into the drain; first:\n";
    for (auto& [j, job] : stuck) {
      os << "  " << j->id << " status " << JobStatusName(job.status) << " next_run_ms "
         << job.next_run_ms << " attempts " << job.attempt_count << DescribeKeys(*j) << "\n";
    }
    const EngineStats s = engine_->Stats();
    os << "  stats: running " << s.running << " pending " << s.pending_tasks << " limit_keys "
       << s.limit_keys << " holders " << s.limit_holders << " waiters " << s.limit_waiters;
    ADD_FAILURE() << os.str();
  }

  // Deleted jobs are gone.
  {
    std::vector<JobRec*> deleted;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& j : all_jobs_) {
        if (j->deleted) deleted.push_back(j.get());
      }
    }
    for (JobRec* j : deleted) {
      EXPECT_EQ(engine_->GetJob(j->tenant, j->id).status().code(), StatusCode::kNotFound)
          << "deleted job " << j->id;
    }
  }

  const EngineStats s = engine_->Stats();
  ExpectLimitGaugesZero("after the drain");

  uint64_t max_exec = 0, max_static = 0, max_changing = 0, max_floating = 0, max_float_val = 0;
  for (auto& k : keys_) {
    const uint64_t h = k->max_holders_seen.load();
    switch (k->category) {
      case Category::kStatic: {
        max_static = std::max(max_static, h);
        std::lock_guard<std::mutex> l(k->exec_mu);
        max_exec = std::max(max_exec, k->max_executing_seen);
        break;
      }
      case Category::kChanging:
        max_changing = std::max(max_changing, h);
        break;
      case Category::kFloating:
        max_floating = std::max(max_floating, h);
        max_float_val = std::max<uint64_t>(max_float_val, k->max_ever.load());
        break;
    }
  }
  std::printf(
      "[limits seed %llu] jobs %llu tasks %llu succeeded %llu failed %llu no_retry %llu "
      "cancel_reports %llu abandoned %llu zombies_refused %llu | grants %llu refreshes_issued "
      "%llu refreshes_done %llu (zero %llu) refresh_failures %llu refresh_abandoned %llu | "
      "admin ok %llu refused %llu | checks %llu | max holders static %llu changing %llu "
      "floating %llu (max value %llu) max executing %llu | drain %lld ms total %lld ms\n",
      static_cast<unsigned long long>(seed_),
      static_cast<unsigned long long>(counters_.created.load()),
      static_cast<unsigned long long>(counters_.tasks.load()),
      static_cast<unsigned long long>(counters_.successes.load()),
      static_cast<unsigned long long>(counters_.failures.load()),
      static_cast<unsigned long long>(counters_.no_retry.load()),
      static_cast<unsigned long long>(counters_.cancels_reported.load()),
      static_cast<unsigned long long>(counters_.abandoned.load()),
      static_cast<unsigned long long>(counters_.zombie_refused.load()),
      static_cast<unsigned long long>(s.grants),
      static_cast<unsigned long long>(s.refreshes_issued),
      static_cast<unsigned long long>(counters_.refreshes_done.load()),
      static_cast<unsigned long long>(counters_.refresh_zero.load()),
      static_cast<unsigned long long>(counters_.refresh_failures.load()),
      static_cast<unsigned long long>(counters_.refreshes_abandoned.load()),
      static_cast<unsigned long long>(counters_.admin_ok.load()),
      static_cast<unsigned long long>(counters_.admin_refused.load()),
      static_cast<unsigned long long>(counters_.checks.load()),
      static_cast<unsigned long long>(max_static), static_cast<unsigned long long>(max_changing),
      static_cast<unsigned long long>(max_floating), static_cast<unsigned long long>(max_float_val),
      static_cast<unsigned long long>(max_exec), static_cast<long long>(drain_ms),
      static_cast<long long>(WallNow() - t0));
  std::fflush(stdout);

  // Every index entry and counter matches the job records after the concurrent load.
  EXPECT_TRUE(engine_->VerifyIndexes().ok()) << engine_->VerifyIndexes().ToString();
  // Rebuilt from the store: still idle.
  ASSERT_TRUE(engine_->Close().ok());
  engine_ = testing::OpenOrDie(options_);
  ExpectLimitGaugesZero("after Close and reopen");

  // Enough work to mean anything. How many jobs kProduceMs makes depends on the machine (12,000,
  // the cap, in an optimized build; 600 to 2,400 under TSan on a slow 2-core machine); the mix of
  // outcomes makes half to two thirds of them succeed, whatever their number.
  EXPECT_GT(counters_.successes.load(), 100u) << "too little work done to mean anything";
  EXPECT_GE(counters_.successes.load() * 4, counters_.created.load())
      << "a quarter of the jobs or fewer succeeded: " << counters_.successes.load() << " of "
      << counters_.created.load();
  EXPECT_GT(s.grants, 100u) << "too few grants: limits were hardly contended";
  EXPECT_GT(counters_.refreshes_done.load(), 10u) << "too few refreshes";
  std::lock_guard<std::mutex> l(mu_);
  EXPECT_EQ(violation_count_, 0u) << "first violations:\n"
                                  << [&] {
                                       std::string all;
                                       for (const auto& v : violations_) all += "  " + v + "\n";
                                       return all;
                                     }();
}

INSTANTIATE_TEST_SUITE_P(Seeds, LimitsRandomizedTest, ::testing::Values(11u, 22u, 33u),
                         [](const ::testing::TestParamInfo<uint64_t>& i) {
                           return "seed" + std::to_string(i.param);
                         });

}  // namespace
}  // namespace sluice
