// Randomized multi-threaded stress test over a real RocksDB store and the system clock.
//
// Producers enqueue singles and batches (priorities, start times slightly in the future,
// small-backoff retry policies); workers lease batches and then succeed, fail, fail without
// retry, report cancelled, heartbeat then succeed, or abandon the task so its lease expires
// (and later try to report on the dead lease, which must be refused); an admin thread does
// random Cancel / Restart / Expedite / Delete / GetJob. Then producers stop, workers drain and
// every job must end terminal with a consistent history.
//
// What is checked (DESIGN.md §3 invariants, LESSONS.md "Leases and delivery"):
//  (a) a job is never held by two live leases: when a worker receives attempt n of a job while
//      another worker still holds attempt m < n whose lease had not expired by the time the
//      new grant is known to have happened, that is a violation (unless the older holder's
//      Complete was in flight and then succeeded, which released the job legitimately);
//  (b) every accepted success is for a unique (job, attempt); a job never succeeds twice;
//      a stale lease (expired, known by clock) never gets a report or heartbeat accepted, and
//      a live lease is never refused;
//  (c) every acknowledged enqueue exists at the end unless the admin thread deleted it;
//  (d) after the drain, every job is terminal and Stats() shows nothing running or pending;
//  (e) attempt histories: 1..attempt_count contiguous, at most the last running (none when
//      terminal), a succeeded job's last attempt succeeded, retries_used <= max_retries, and
//      the history matches what the workers were handed and what they reported.
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
#include <set>
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

using std::chrono::milliseconds;

constexpr int kProducers = 3;
constexpr int kWorkers = 5;
constexpr int64_t kProduceMs = 8000;
// Generous: a drain takes a few seconds, but sanitizer builds on a loaded machine are slower.
constexpr int64_t kDrainDeadlineMs = 60000;
constexpr uint64_t kDefaultLeaseMs = 200;
constexpr uint32_t kDefaultMaxRetries = 2;

const char* const kTenants[] = {"", "acme"};
const char* const kQueues[] = {"q0", "q1"};

int64_t WallNow() {
  static const SystemClock clock;
  return clock.NowMs();
}

std::string Key(std::string_view tenant, std::string_view id) {
  std::string k(tenant);
  k.push_back('\x1f');
  k.append(id);
  return k;
}

// Uniform integer in [lo, hi].
template <typename T>
T Uniform(std::mt19937_64& rng, T lo, T hi) {
  return static_cast<T>(std::uniform_int_distribution<int64_t>(static_cast<int64_t>(lo),
                                                               static_cast<int64_t>(hi))(rng));
}

bool Chance(std::mt19937_64& rng, double p) { return std::bernoulli_distribution(p)(rng); }

void SleepMs(int64_t ms) { std::this_thread::sleep_for(milliseconds(ms)); }

// One lease held (or abandoned) by a worker.
struct Hold {
  std::string key;  // tenant \x1f job id
  Task task;
  int worker = 0;
  int64_t expires_ms = 0;        // latest expiry known (lease, then heartbeats)
  int64_t granted_by_ms = 0;     // wall time just after Lease returned: the grant came before
  int64_t completing_since = 0;  // > 0 while the holder's Complete is in flight
  bool superseded_live = false;  // a newer attempt was handed out while this Complete ran
};

enum class Report : uint8_t { kSuccess, kFailure, kFailureNoRetry, kCancelled };

const char* ReportName(Report r) {
  switch (r) {
    case Report::kSuccess:
      return "success";
    case Report::kFailure:
      return "failure";
    case Report::kFailureNoRetry:
      return "failure(no_retry)";
    case Report::kCancelled:
      return "cancelled";
  }
  return "?";
}

// What the test knows about one job.
struct JobTrack {
  std::string tenant;
  std::string id;
  bool created = false;      // an enqueue acknowledged created=true
  bool deleted = false;      // Delete returned OK
  bool cancel_ever = false;  // Cancel returned OK at least once
  uint32_t max_retries = kDefaultMaxRetries;
  std::map<uint32_t, int> leased;      // attempt -> worker index that received it
  std::map<uint32_t, Report> reports;  // attempt -> accepted report
  int successes = 0;                   // accepted success reports
};

struct Counters {
  std::atomic<uint64_t> enqueue_calls{0}, batch_calls{0}, created{0}, leases{0}, tasks{0};
  std::atomic<uint64_t> successes{0}, failures{0}, cancels_reported{0}, heartbeats{0};
  std::atomic<uint64_t> abandoned{0}, zombie_refused{0}, admin_ok{0}, admin_refused{0};
  std::atomic<uint64_t> lost_live{0}, lost_expired{0};
};

class RandomizedTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    seed_ = GetParam();
    EngineOptions o = testing::TestOptions(dir_.path(), nullptr, /*reaper_interval_ms=*/20);
    o.default_lease_ms = kDefaultLeaseMs;
    o.default_retry.max_retries = kDefaultMaxRetries;
    o.default_retry.initial_backoff_ms = 10;
    o.default_retry.max_backoff_ms = 40;
    o.default_retry.multiplier = 2.0;
    o.default_retry.jitter = false;
    o.rng_seed = seed_;
    engine_ = testing::OpenOrDie(o);
  }
  void TearDown() override {
    if (engine_) (void)engine_->Close();
  }

  void Violation(const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    ViolationLocked(what);
  }
  void ViolationLocked(const std::string& what) {
    ++violation_count_;
    if (violations_.size() < 100) violations_.push_back(what);
  }

  JobTrack& TrackLocked(const std::string& tenant, const std::string& id) {
    JobTrack& t = jobs_[Key(tenant, id)];
    if (t.id.empty()) {
      t.tenant = tenant;
      t.id = id;
    }
    return t;
  }

  JobSpec RandomSpec(std::mt19937_64& rng, int producer, uint64_t& next_client_id) {
    JobSpec s;
    s.tenant = kTenants[Uniform(rng, 0, 1)];
    s.queue = kQueues[Uniform(rng, 0, 1)];
    s.priority = Uniform<uint32_t>(rng, 0, 99);
    if (Chance(rng, 0.2)) s.start_at_ms = WallNow() + Uniform<int64_t>(rng, 10, 250);
    if (Chance(rng, 0.7)) {
      RetryPolicy p;
      p.max_retries = Uniform<uint32_t>(rng, 0, 3);
      p.initial_backoff_ms = Uniform<uint64_t>(rng, 5, 20);
      p.max_backoff_ms = Uniform<uint64_t>(rng, 20, 40);
      p.multiplier = Chance(rng, 0.5) ? 1.5 : 2.0;
      p.jitter = Chance(rng, 0.3);
      s.retry = p;
    }
    if (Chance(rng, 0.5)) s.lease_ms = Uniform<uint64_t>(rng, 150, 300);
    s.payload = std::string(Uniform<size_t>(rng, 0, 64), static_cast<char>('a' + producer));
    if (Chance(rng, 0.2)) s.metadata["k"] = std::to_string(Uniform(rng, 0, 1000));
    if (Chance(rng, 0.3)) {
      s.id = "s" + std::to_string(seed_) + "-p" + std::to_string(producer) + "-" +
             std::to_string(next_client_id++);
    }
    return s;
  }

  // Records an acknowledged enqueue. fresh: the id had never been submitted before.
  void RecordEnqueue(const JobSpec& spec, const EnqueueResult& r, bool fresh) {
    std::lock_guard<std::mutex> l(mu_);
    if (r.id.empty()) {
      ViolationLocked("enqueue acknowledged with an empty id");
      return;
    }
    if (!spec.id.empty() && r.id != spec.id) {
      ViolationLocked("enqueue of id " + spec.id + " returned id " + r.id);
    }
    if (fresh && !r.created) {
      ViolationLocked("enqueue of a never-seen job " + r.id + " returned created=false");
    }
    if (!r.created) return;
    JobTrack& t = TrackLocked(spec.tenant, r.id);
    if (t.created) ViolationLocked("job " + r.id + " created twice");
    t.created = true;
    t.max_retries = spec.retry ? spec.retry->max_retries : kDefaultMaxRetries;
    admin_pool_.push_back(Key(spec.tenant, r.id));
    counters_.created.fetch_add(1);
  }

  void Producer(int p) {
    std::mt19937_64 rng(seed_ * 1000 + static_cast<uint64_t>(p));
    uint64_t next_client_id = 0;
    const int64_t end = WallNow() + kProduceMs;
    while (WallNow() < end) {
      if (Chance(rng, 0.3)) {
        const size_t n = Uniform<size_t>(rng, 2, 25);
        std::vector<JobSpec> specs;
        for (size_t i = 0; i < n; ++i) specs.push_back(RandomSpec(rng, p, next_client_id));
        // A repeated client id inside the batch resolves to the first occurrence.
        size_t dup_of = n;
        if (Chance(rng, 0.2)) {
          for (size_t i = 0; i + 1 < n; ++i) {
            if (!specs[i].id.empty()) {
              JobSpec d = specs[i];
              specs.push_back(d);
              dup_of = i;
              break;
            }
          }
        }
        auto r = engine_->EnqueueBatch(specs);
        counters_.batch_calls.fetch_add(1);
        if (!r.ok()) {
          Violation("EnqueueBatch failed: " + r.status().ToString());
          continue;
        }
        if (r->size() != specs.size()) {
          Violation("EnqueueBatch returned " + std::to_string(r->size()) + " results for " +
                    std::to_string(specs.size()) + " specs");
          continue;
        }
        for (size_t i = 0; i < n; ++i) RecordEnqueue(specs[i], (*r)[i], /*fresh=*/true);
        if (dup_of < n) {
          const EnqueueResult& d = r->back();
          if (d.created || d.id != (*r)[dup_of].id) {
            Violation("repeated id " + specs[dup_of].id +
                      " in a batch: created=" + std::to_string(d.created) + " id=" + d.id);
          }
        }
      } else {
        JobSpec s = RandomSpec(rng, p, next_client_id);
        auto r = engine_->Enqueue(s);
        counters_.enqueue_calls.fetch_add(1);
        if (!r.ok()) {
          Violation("Enqueue failed: " + r.status().ToString());
          continue;
        }
        // Idempotent resubmit, before the id is visible to the admin thread (so it cannot
        // have been deleted in between): must return the same job, created=false.
        if (!s.id.empty() && r->created && Chance(rng, 0.3)) {
          auto again = engine_->Enqueue(s);
          if (!again.ok() || again->created || again->id != s.id) {
            Violation("idempotent re-enqueue of " + s.id + ": " +
                      (again.ok() ? "created=" + std::to_string(again->created)
                                  : again.status().ToString()));
          }
        }
        RecordEnqueue(s, *r, /*fresh=*/true);
      }
      SleepMs(Uniform<int64_t>(rng, 2, 10));
    }
  }

  // Registers a task just handed to worker w. Returns its hold; stale=true when a newer
  // attempt of the job was already handed out (this lease cannot be live).
  std::shared_ptr<Hold> OnLeased(int w, const LeaseRequest& req, const Task& task,
                                 int64_t granted_by, bool& stale) {
    stale = false;
    auto h = std::make_shared<Hold>();
    h->key = Key(task.tenant, task.job_id);
    h->task = task;
    h->worker = w;
    h->expires_ms = task.lease_expires_ms;
    h->granted_by_ms = granted_by;
    const std::string who = "job " + task.job_id + " attempt " + std::to_string(task.attempt);

    std::lock_guard<std::mutex> l(mu_);
    if (task.tenant != req.tenant || task.queue != req.queue) {
      ViolationLocked(who + " handed out for tenant/queue '" + req.tenant + "'/" + req.queue +
                      " but belongs to '" + task.tenant + "'/" + task.queue);
    }
    if (task.task_id != task.job_id + "#" + std::to_string(task.attempt)) {
      ViolationLocked(who + " has task id " + task.task_id);
    }
    if (task.attempt == 0) ViolationLocked(who + ": attempt 0");
    JobTrack& t = TrackLocked(task.tenant, task.job_id);
    if (t.deleted) ViolationLocked(who + " leased after Delete returned OK");
    if (t.successes > 0 && !t.cancel_ever) {
      ViolationLocked(who + " leased after a success was accepted (never cancelled)");
    }
    auto [it, inserted] = t.leased.emplace(task.attempt, w);
    if (!inserted) {
      ViolationLocked(who + " handed out twice (workers " + std::to_string(it->second) + " and " +
                      std::to_string(w) + ")");
    }

    auto cur = held_.find(h->key);
    if (cur == held_.end()) {
      held_[h->key] = h;
      return h;
    }
    std::shared_ptr<Hold> other = cur->second;
    const bool this_is_newer = task.attempt > other->task.attempt;
    Hold& older = this_is_newer ? *other : *h;
    const Hold& newer = this_is_newer ? *h : *other;
    // The newer grant happened no later than newer.granted_by_ms; the older lease was live
    // until older.expires_ms unless released by an accepted Complete.
    if (newer.granted_by_ms < older.expires_ms) {
      std::ostringstream os;
      os << "two live leases on job " << task.job_id << ": attempt " << older.task.attempt
         << " (worker " << older.worker << ", token " << older.task.lease_token << ", expires "
         << older.expires_ms << ") and attempt " << newer.task.attempt << " (worker "
         << newer.worker << ", token " << newer.task.lease_token << ", granted by "
         << newer.granted_by_ms << ")";
      if (older.completing_since == 0 || newer.granted_by_ms < older.completing_since) {
        ViolationLocked(os.str() + (older.completing_since == 0
                                        ? "; the older holder had not reported"
                                        : "; granted before the older holder reported"));
      } else {
        older.superseded_live = true;  // decided when the older Complete returns
      }
    } else if (task.attempt == other->task.attempt) {
      ViolationLocked(who + " held twice");
    }
    if (this_is_newer) {
      held_[h->key] = h;
    } else {
      stale = true;
    }
    return h;
  }

  void Release(const std::shared_ptr<Hold>& h) {  // mu_ held
    auto it = held_.find(h->key);
    if (it != held_.end() && it->second == h) held_.erase(it);
  }

  // Reports an outcome for a task this worker holds. Returns the engine's status.
  Status ReportOutcome(const std::shared_ptr<Hold>& h, Report kind) {
    Outcome o;
    switch (kind) {
      case Report::kSuccess:
        o = Outcome::Success("r-" + h->task.task_id);
        break;
      case Report::kFailure:
        o = Outcome::Failure("boom", "randomized failure");
        break;
      case Report::kFailureNoRetry:
        o = Outcome::Failure("fatal", "randomized fatal failure");
        o.no_retry = true;
        break;
      case Report::kCancelled:
        o = Outcome::Cancelled();
        break;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      h->completing_since = WallNow();
    }
    Status st = engine_->Complete(h->task.tenant, h->task.task_id, h->task.lease_token, o);
    const int64_t after = WallNow();
    const std::string who = "job " + h->task.job_id + " attempt " + std::to_string(h->task.attempt);
    std::lock_guard<std::mutex> l(mu_);
    h->completing_since = 0;
    if (st.ok()) {
      JobTrack& t = TrackLocked(h->task.tenant, h->task.job_id);
      if (!t.reports.emplace(h->task.attempt, kind).second) {
        ViolationLocked(who + ": a second report was accepted");
      }
      if (kind == Report::kSuccess) {
        ++t.successes;
        counters_.successes.fetch_add(1);
        if (t.successes > 1 && !t.cancel_ever) {
          ViolationLocked("job " + h->task.job_id + " succeeded twice (attempt " +
                          std::to_string(h->task.attempt) + ")");
        }
      } else if (kind == Report::kCancelled) {
        counters_.cancels_reported.fetch_add(1);
      } else {
        counters_.failures.fetch_add(1);
      }
    } else {
      if (h->superseded_live) {
        ViolationLocked(who +
                        ": a newer attempt was handed out while this lease was live, "
                        "and this report was then refused: " +
                        st.ToString());
      }
      const bool lost = st.code() == StatusCode::kLeaseLost || st.code() == StatusCode::kNotFound;
      if (!lost) {
        ViolationLocked(who + ": Complete(" + ReportName(kind) + ") failed: " + st.ToString());
      } else if (after < h->expires_ms) {
        counters_.lost_live.fetch_add(1);
        ViolationLocked(who + ": Complete(" + ReportName(kind) + ") refused a live lease (" +
                        "expires " + std::to_string(h->expires_ms) + ", answered by " +
                        std::to_string(after) + "): " + st.ToString());
      } else {
        counters_.lost_expired.fetch_add(1);
      }
    }
    Release(h);
    return st;
  }

  // Heartbeats; returns true when the lease is still ours (and sets cancel_requested).
  bool DoHeartbeat(const std::shared_ptr<Hold>& h, bool& cancel_requested) {
    auto r = engine_->Heartbeat(h->task.tenant, h->task.task_id, "w" + std::to_string(h->worker),
                                h->task.lease_token);
    const int64_t after = WallNow();
    counters_.heartbeats.fetch_add(1);
    std::lock_guard<std::mutex> l(mu_);
    const std::string who = "job " + h->task.job_id + " attempt " + std::to_string(h->task.attempt);
    if (r.ok()) {
      if (r->lease_expires_ms < h->expires_ms) {
        ViolationLocked(who + ": heartbeat moved the expiry back from " +
                        std::to_string(h->expires_ms) + " to " +
                        std::to_string(r->lease_expires_ms));
      }
      h->expires_ms = std::max(h->expires_ms, r->lease_expires_ms);
      cancel_requested = r->cancel_requested;
      return true;
    }
    const StatusCode c = r.status().code();
    if (c != StatusCode::kLeaseLost && c != StatusCode::kNotFound) {
      ViolationLocked(who + ": Heartbeat failed: " + r.status().ToString());
    } else if (after < h->expires_ms) {
      counters_.lost_live.fetch_add(1);
      ViolationLocked(who + ": Heartbeat refused a live lease (expires " +
                      std::to_string(h->expires_ms) + ", answered by " + std::to_string(after) +
                      "): " + r.status().ToString());
    } else {
      counters_.lost_expired.fetch_add(1);
    }
    Release(h);
    return false;
  }

  // Reports on (or heartbeats) leases this worker abandoned once they have expired by the
  // clock: the engine must refuse them (LESSONS: a stale worker never overwrites).
  void TryZombies(std::vector<std::shared_ptr<Hold>>& zombies, std::mt19937_64& rng, bool all) {
    const int64_t now = WallNow();
    for (size_t i = 0; i < zombies.size();) {
      auto& z = zombies[i];
      if (now <= z->expires_ms || (!all && !Chance(rng, 0.5))) {
        ++i;
        continue;
      }
      const std::string who =
          "job " + z->task.job_id + " attempt " + std::to_string(z->task.attempt);
      Status st;
      if (Chance(rng, 0.5)) {
        st = engine_->Complete(z->task.tenant, z->task.task_id, z->task.lease_token,
                               Outcome::Success("zombie"));
      } else {
        auto r = engine_->Heartbeat(z->task.tenant, z->task.task_id,
                                    "w" + std::to_string(z->worker), z->task.lease_token);
        if (!r.ok()) st = r.status();
      }
      if (st.ok()) {
        Violation(who + ": a report/heartbeat on a lease expired at " +
                  std::to_string(z->expires_ms) + " (now " + std::to_string(now) +
                  ") was accepted");
      } else if (st.code() != StatusCode::kLeaseLost && st.code() != StatusCode::kNotFound) {
        Violation(who + ": stale report failed with " + st.ToString());
      } else {
        counters_.zombie_refused.fetch_add(1);
      }
      zombies[i] = zombies.back();
      zombies.pop_back();
    }
  }

  void Worker(int w) {
    std::mt19937_64 rng(seed_ * 7919 + static_cast<uint64_t>(w));
    std::vector<std::shared_ptr<Hold>> zombies;
    const std::string worker_id = "w" + std::to_string(w);
    bool sticky = false;  // keep pulling from the (tenant, queue) that last had work
    LeaseRequest req;
    while (!stop_workers_.load()) {
      if (!sticky) {
        req.tenant = kTenants[Uniform(rng, 0, 1)];
        req.queue = kQueues[Uniform(rng, 0, 1)];
      }
      req.worker_id = worker_id;
      req.max_tasks = Uniform<uint32_t>(rng, 1, 8);
      req.wait_ms = 50;
      auto r = engine_->Lease(req);
      const int64_t granted_by = WallNow();
      counters_.leases.fetch_add(1);
      if (!r.ok()) {
        Violation("Lease failed: " + r.status().ToString());
        SleepMs(10);
        continue;
      }
      if (r->size() > req.max_tasks) {
        Violation("Lease returned " + std::to_string(r->size()) + " tasks for max_tasks " +
                  std::to_string(req.max_tasks));
      }
      counters_.tasks.fetch_add(r->size());
      sticky = !r->empty() && Chance(rng, 0.8);
      std::vector<std::pair<std::shared_ptr<Hold>, bool>> got;
      for (const Task& t : *r) {
        bool stale = false;
        auto h = OnLeased(w, req, t, granted_by, stale);
        got.emplace_back(h, stale);
      }
      const bool drain = draining_.load();
      for (auto& [h, stale] : got) {
        if (stale) {  // a newer attempt exists: this lease is dead, never report on it
          zombies.push_back(h);
          continue;
        }
        const int dice = Uniform(rng, 0, 99);
        if (drain) {
          if (dice < 80) {
            (void)ReportOutcome(h, Report::kSuccess);
          } else {
            SleepMs(Uniform<int64_t>(rng, 1, 3));
            bool cancel = false;
            if (DoHeartbeat(h, cancel)) {
              (void)ReportOutcome(h, cancel ? Report::kCancelled : Report::kSuccess);
            }
          }
          continue;
        }
        if (dice < 45) {
          (void)ReportOutcome(h, Report::kSuccess);
        } else if (dice < 60) {
          (void)ReportOutcome(h, Report::kFailure);
        } else if (dice < 67) {
          (void)ReportOutcome(h, Report::kFailureNoRetry);
        } else if (dice < 72) {
          (void)ReportOutcome(h, Report::kCancelled);
        } else if (dice < 92) {
          SleepMs(Uniform<int64_t>(rng, 2, 20));
          bool cancel = false;
          if (!DoHeartbeat(h, cancel)) continue;  // lease lost: never report
          SleepMs(Uniform<int64_t>(rng, 2, 20));
          (void)ReportOutcome(h, cancel ? Report::kCancelled : Report::kSuccess);
        } else {
          counters_.abandoned.fetch_add(1);
          zombies.push_back(h);  // stays in held_: its lease runs out
        }
      }
      TryZombies(zombies, rng, /*all=*/false);
    }
    // Wait out the remaining abandoned leases and check they are all refused.
    while (!zombies.empty()) {
      SleepMs(20);
      TryZombies(zombies, rng, /*all=*/true);
    }
  }

  // Checks what must hold of a job read at any moment (no half-applied transition).
  static std::vector<std::string> CheckShape(const Job& j, const std::string& where) {
    std::vector<std::string> bad;
    auto Add = [&bad](std::string m) { bad.push_back(std::move(m)); };
    std::string who = where + " job " + j.id + " (" + std::string(JobStatusName(j.status)) + ")";
    if (j.attempts.size() != j.attempt_count) {
      Add(who + ": attempt_count " + std::to_string(j.attempt_count) + " but " +
          std::to_string(j.attempts.size()) + " attempts");
    }
    for (size_t i = 0; i < j.attempts.size(); ++i) {
      const Attempt& a = j.attempts[i];
      if (a.number != i + 1) {
        Add(who + ": attempt #" + std::to_string(i) + " numbered " + std::to_string(a.number));
      }
      const bool last = i + 1 == j.attempts.size();
      if (a.status == AttemptStatus::kRunning) {
        if (!last) Add(who + ": attempt " + std::to_string(a.number) + " running, not last");
        if (j.status != JobStatus::kRunning) {
          Add(who + ": attempt " + std::to_string(a.number) + " running in a " +
              std::string(JobStatusName(j.status)) + " job");
        }
      } else if (a.finished_ms < a.started_ms || a.finished_ms == 0) {
        Add(who + ": attempt " + std::to_string(a.number) + " finished_ms " +
            std::to_string(a.finished_ms) + " < started_ms " + std::to_string(a.started_ms));
      }
    }
    if (j.status == JobStatus::kRunning &&
        (j.attempts.empty() || j.attempts.back().status != AttemptStatus::kRunning)) {
      Add(who + ": running job without a running last attempt");
    }
    if (j.status == JobStatus::kSucceeded &&
        (j.attempts.empty() || j.attempts.back().status != AttemptStatus::kSucceeded)) {
      Add(who + ": succeeded job whose last attempt did not succeed");
    }
    if (j.retries_used > j.retry.max_retries) {
      Add(who + ": retries_used " + std::to_string(j.retries_used) + " > max_retries " +
          std::to_string(j.retry.max_retries));
    }
    if (IsTerminal(j.status) && j.finished_ms == 0) Add(who + ": terminal, finished_ms 0");
    return bad;
  }

  void Admin() {
    std::mt19937_64 rng(seed_ * 104729 + 17);
    while (!stop_admin_.load()) {
      SleepMs(Uniform<int64_t>(rng, 1, 5));
      std::string key;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (admin_pool_.empty()) continue;
        // Mostly recent jobs (they are the ones still moving).
        const size_t n = admin_pool_.size();
        const size_t back = Chance(rng, 0.8) ? std::min<size_t>(n, 200) : n;
        key = admin_pool_[n - 1 - Uniform<size_t>(rng, 0, back - 1)];
      }
      const size_t sep = key.find('\x1f');
      const std::string tenant = key.substr(0, sep), id = key.substr(sep + 1);
      const int dice = Uniform(rng, 0, 99);
      Status st;
      const char* op = "";
      if (dice < 30) {
        op = "Cancel";
        auto r = engine_->Cancel(tenant, id);
        if (r.ok()) {
          std::lock_guard<std::mutex> l(mu_);
          jobs_[key].cancel_ever = true;
        } else {
          st = r.status();
        }
      } else if (dice < 55) {
        op = "Restart";
        st = engine_->Restart(tenant, id);
      } else if (dice < 80) {
        op = "Expedite";
        st = engine_->Expedite(tenant, id);
      } else if (dice < 88) {
        op = "Delete";
        st = engine_->Delete(tenant, id);
        if (st.ok()) {
          std::lock_guard<std::mutex> l(mu_);
          jobs_[key].deleted = true;
        }
      } else {
        op = "GetJob";
        auto r = engine_->GetJob(tenant, id, true);
        if (r.ok()) {
          for (const auto& v : CheckShape(*r, "(live read)")) Violation(v);
        } else {
          st = r.status();
        }
      }
      if (st.ok()) {
        counters_.admin_ok.fetch_add(1);
      } else if (st.code() == StatusCode::kFailedPrecondition ||
                 st.code() == StatusCode::kNotFound) {
        counters_.admin_refused.fetch_add(1);
        if (st.code() == StatusCode::kNotFound) {
          std::lock_guard<std::mutex> l(mu_);
          if (!jobs_[key].deleted) {
            ViolationLocked(std::string(op) + " of an existing job " + id + ": " + st.ToString());
          }
        }
      } else {
        Violation(std::string(op) + "(" + id + ") failed: " + st.ToString());
      }
    }
  }

  void FinalCheck() {
    std::lock_guard<std::mutex> l(mu_);
    uint64_t created = 0, terminal[6] = {};
    for (auto& [key, t] : jobs_) {
      if (!t.created) {
        ViolationLocked("job " + t.id + " was leased but never acknowledged as created");
        continue;
      }
      ++created;
      auto r = engine_->GetJob(t.tenant, t.id, /*include_attempts=*/true);
      if (t.deleted) {
        if (r.ok() || r.status().code() != StatusCode::kNotFound) {
          ViolationLocked("deleted job " + t.id + " still readable: " +
                          (r.ok() ? std::string(JobStatusName(r->status)) : r.status().ToString()));
        }
        continue;
      }
      if (!r.ok()) {
        ViolationLocked("acknowledged job " + t.id + " lost: " + r.status().ToString());
        continue;
      }
      const Job& j = *r;
      const std::string who = "job " + t.id + " (" + std::string(JobStatusName(j.status)) + ", " +
                              std::to_string(j.attempt_count) + " attempts" +
                              (t.cancel_ever ? ", cancelled once" : "") + ")";
      for (const auto& v : CheckShape(j, "(final)")) ViolationLocked(v);
      if (!IsTerminal(j.status)) {
        ViolationLocked(who + " not terminal after the drain");
        continue;
      }
      ++terminal[static_cast<int>(j.status)];
      if (j.retry.max_retries != t.max_retries) {
        ViolationLocked(who + ": max_retries " + std::to_string(j.retry.max_retries) +
                        ", enqueued with " + std::to_string(t.max_retries));
      }
      if (j.attempts.size() != t.leased.size()) {
        ViolationLocked(who + ": history has " + std::to_string(j.attempts.size()) +
                        " attempts, workers were handed " + std::to_string(t.leased.size()));
      }
      int succeeded_attempts = 0;
      for (const Attempt& a : j.attempts) {
        const std::string aw = who + " attempt " + std::to_string(a.number) + " (" +
                               std::string(AttemptStatusName(a.status)) + ")";
        auto li = t.leased.find(a.number);
        if (li == t.leased.end()) {
          ViolationLocked(aw + ": never handed to a worker");
        } else if (a.worker_id != "w" + std::to_string(li->second)) {
          ViolationLocked(aw + ": worker_id " + a.worker_id + ", handed to w" +
                          std::to_string(li->second));
        }
        if (a.status == AttemptStatus::kSucceeded) ++succeeded_attempts;
        auto ri = t.reports.find(a.number);
        if (ri == t.reports.end()) {
          // Never reported: the lease expired (failure "lease_expired") or, with a cancel
          // request, the job was cancelled.
          if (a.status == AttemptStatus::kSucceeded) {
            ViolationLocked(aw + ": succeeded without an accepted success report");
          } else if (a.status == AttemptStatus::kFailed) {
            if (a.error.code != "lease_expired") {
              ViolationLocked(aw + ": unreported attempt failed with code '" + a.error.code +
                              "', want lease_expired");
            }
          } else if (!t.cancel_ever) {
            ViolationLocked(aw + ": unreported attempt ended this way without a cancel");
          }
          continue;
        }
        const bool may_cancel = t.cancel_ever && a.status == AttemptStatus::kCancelled;
        switch (ri->second) {
          case Report::kSuccess:
            if (a.status != AttemptStatus::kSucceeded && !may_cancel) {
              ViolationLocked(aw + ": success was accepted");
            }
            break;
          case Report::kFailure:
          case Report::kFailureNoRetry:
            if (a.status != AttemptStatus::kFailed && !may_cancel) {
              ViolationLocked(aw + ": failure was accepted");
            }
            break;
          case Report::kCancelled:
            if (a.status != AttemptStatus::kCancelled) {
              ViolationLocked(aw + ": cancelled report was accepted");
            }
            break;
        }
      }
      if (succeeded_attempts > 1 && !t.cancel_ever) {
        ViolationLocked(who + ": " + std::to_string(succeeded_attempts) + " succeeded attempts");
      }
      if (j.status == JobStatus::kSucceeded && t.successes == 0) {
        ViolationLocked(who + ": succeeded but no success report was accepted");
      }
      if (j.status == JobStatus::kFailed &&
          (j.attempts.empty() || j.attempts.back().status != AttemptStatus::kFailed)) {
        ViolationLocked(who + ": failed job whose last attempt did not fail");
      }
      if (!j.attempts.empty()) {
        auto ri = t.reports.find(j.attempts.back().number);
        if (ri != t.reports.end() && !t.cancel_ever) {
          const JobStatus want = ri->second == Report::kSuccess     ? JobStatus::kSucceeded
                                 : ri->second == Report::kCancelled ? JobStatus::kCancelled
                                                                    : JobStatus::kFailed;
          if (j.status != want) {
            ViolationLocked(who + ": last report " + ReportName(ri->second) + " but job is " +
                            std::string(JobStatusName(j.status)));
          }
        }
      }
    }
    std::printf(
        "[seed %llu] jobs created %llu: succeeded %llu, failed %llu, cancelled %llu; "
        "enqueue calls %llu, batches %llu, lease calls %llu, tasks %llu, successes %llu, "
        "failures %llu, cancel reports %llu, heartbeats %llu, abandoned %llu, stale refused %llu, "
        "lost(expired) %llu, admin ok %llu / refused %llu\n",
        static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(created),
        static_cast<unsigned long long>(terminal[3]), static_cast<unsigned long long>(terminal[4]),
        static_cast<unsigned long long>(terminal[5]),
        static_cast<unsigned long long>(counters_.enqueue_calls.load()),
        static_cast<unsigned long long>(counters_.batch_calls.load()),
        static_cast<unsigned long long>(counters_.leases.load()),
        static_cast<unsigned long long>(counters_.tasks.load()),
        static_cast<unsigned long long>(counters_.successes.load()),
        static_cast<unsigned long long>(counters_.failures.load()),
        static_cast<unsigned long long>(counters_.cancels_reported.load()),
        static_cast<unsigned long long>(counters_.heartbeats.load()),
        static_cast<unsigned long long>(counters_.abandoned.load()),
        static_cast<unsigned long long>(counters_.zombie_refused.load()),
        static_cast<unsigned long long>(counters_.lost_expired.load()),
        static_cast<unsigned long long>(counters_.admin_ok.load()),
        static_cast<unsigned long long>(counters_.admin_refused.load()));
  }

  uint64_t seed_ = 0;
  testing::TempDir dir_;
  std::unique_ptr<Engine> engine_;

  std::mutex mu_;
  std::unordered_map<std::string, JobTrack> jobs_;               // guarded by mu_
  std::unordered_map<std::string, std::shared_ptr<Hold>> held_;  // guarded by mu_
  std::vector<std::string> admin_pool_;                          // guarded by mu_
  std::vector<std::string> violations_;                          // guarded by mu_
  uint64_t violation_count_ = 0;                                 // guarded by mu_
  Counters counters_;

  std::atomic<bool> draining_{false}, stop_workers_{false}, stop_admin_{false};
};

TEST_P(RandomizedTest, InvariantsHoldUnderConcurrentLoad) {
  std::vector<std::thread> producers, workers;
  for (int w = 0; w < kWorkers; ++w) workers.emplace_back([this, w] { Worker(w); });
  std::thread admin([this] { Admin(); });
  for (int p = 0; p < kProducers; ++p) producers.emplace_back([this, p] { Producer(p); });
  for (auto& t : producers) t.join();

  // Drain: no more abandoning, no more admin (nothing is restarted), let everything finish.
  stop_admin_ = true;
  admin.join();
  draining_ = true;
  const int64_t drain_start = WallNow();
  int quiet = 0;
  EngineStats s;
  while (WallNow() - drain_start < kDrainDeadlineMs) {
    s = engine_->Stats();
    quiet = (s.running == 0 && s.pending_tasks == 0) ? quiet + 1 : 0;
    if (quiet >= 3) break;
    SleepMs(50);
  }
  const int64_t drain_ms = WallNow() - drain_start;
  stop_workers_ = true;
  for (auto& t : workers) t.join();
  std::printf("[seed %llu] drained in %lld ms\n", static_cast<unsigned long long>(seed_),
              static_cast<long long>(drain_ms));
  EXPECT_GE(quiet, 3) << "not drained after " << kDrainDeadlineMs << " ms: running " << s.running
                      << ", pending_tasks " << s.pending_tasks;

  FinalCheck();
  // Every index entry and counter matches the job records after the concurrent load.
  EXPECT_TRUE(engine_->VerifyIndexes().ok()) << engine_->VerifyIndexes().ToString();

  s = engine_->Stats();
  EXPECT_EQ(s.running, 0u);
  EXPECT_EQ(s.pending_tasks, 0u);
  EXPECT_EQ(s.enqueued, counters_.created.load()) << "jobs created vs acknowledged";
  EXPECT_EQ(s.leased, counters_.tasks.load()) << "tasks handed out vs received";

  std::lock_guard<std::mutex> l(mu_);
  // Enough work to mean anything. How many jobs the timed producers make depends on the machine
  // (1,000 to 3,200 under TSan on a slow 2-core machine); most of them succeed, whatever their
  // number.
  EXPECT_GT(counters_.successes.load(), 100u) << "too little work done to mean anything";
  EXPECT_GE(counters_.successes.load() * 2, counters_.created.load())
      << "half of the jobs or fewer succeeded: " << counters_.successes.load() << " of "
      << counters_.created.load();
  EXPECT_EQ(violation_count_, 0u) << "first violations:\n"
                                  << [&] {
                                       std::string all;
                                       for (const auto& v : violations_) all += "  " + v + "\n";
                                       return all;
                                     }();
}

INSTANTIATE_TEST_SUITE_P(Seeds, RandomizedTest, ::testing::Values(1u, 2u, 3u),
                         [](const ::testing::TestParamInfo<uint64_t>& i) {
                           return "seed" + std::to_string(i.param);
                         });

}  // namespace
}  // namespace sluice
