// Crash test: acknowledged writes survive kill -9 (DESIGN.md §3-4, LESSONS.md "Delivery
// deleted the job from durable state, so kill -9 lost it").
//
// The test re-executes its own binary as a child (`--crash-child DB LOG SEED ROUND`) that opens
// an engine with Durability::kSync and runs producers and workers under load. After the engine
// acknowledges a write the child appends one line to LOG (O_APPEND, one write() per line):
//   O <round>                          the engine opened
//   E <tenant> <id>                    an enqueue was acknowledged
//   S <tenant> <id> <attempt>          a Complete(success) was acknowledged
//   V <text>                           the child saw a violation itself
// The parent SIGKILLs the child at a random moment, repeats on the same directory (every round
// must reopen cleanly; the previous round's leases are still held and must be reaped), then
// opens the store itself and checks: every acknowledged enqueue exists, every acknowledged
// success is succeeded with that attempt succeeded, no job has two succeeded attempts, attempt
// histories are well-formed, and after a drain every job is terminal.
//
// The log needs no fsync: only the process is killed, the page cache survives, and a line is
// written only after the engine call returned. A torn last line is ignored.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/test_util.h"
#include "sluice/clock.h"
#include "sluice/engine.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;

constexpr int kRounds = 8;
constexpr uint64_t kSeed = 20240611;
constexpr int64_t kMinKillMs = 200;
constexpr int64_t kMaxKillMs = 1500;
constexpr uint64_t kLeaseMs = 300;
const char* const kTenants[] = {"", "t1"};
const char* const kQueue = "crashq";

int64_t WallNow() {
  static const SystemClock clock;
  return clock.NowMs();
}

template <typename T>
T Uniform(std::mt19937_64& rng, T lo, T hi) {
  return static_cast<T>(std::uniform_int_distribution<int64_t>(static_cast<int64_t>(lo),
                                                               static_cast<int64_t>(hi))(rng));
}

EngineOptions CrashOptions(const std::string& db) {
  EngineOptions o;
  o.path = db;
  o.durability = Durability::kSync;
  o.reaper_interval_ms = 20;
  o.default_lease_ms = kLeaseMs;
  o.default_retry.max_retries = 3;
  o.default_retry.initial_backoff_ms = 10;
  o.default_retry.max_backoff_ms = 50;
  o.block_cache_bytes = 8 << 20;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Child role.

int log_fd = -1;

void LogLine(const std::string& line) {
  const std::string l = line + "\n";
  // One write() per line: the line is either whole or torn at the very end of the file.
  const ssize_t n = ::write(log_fd, l.data(), l.size());
  if (n != static_cast<ssize_t>(l.size())) {
    std::perror("crash child: write log");
    std::_Exit(4);
  }
}

struct LogRecords {
  std::vector<std::pair<std::string, std::string>> enqueued;  // (tenant, id)
  std::vector<std::tuple<std::string, std::string, uint32_t>> succeeded;
  std::vector<std::string> violations;
  std::set<int> opened_rounds;
  size_t torn = 0;
};

std::vector<std::string> SplitTabs(const std::string& line) {
  std::vector<std::string> f;
  size_t start = 0;
  while (true) {
    const size_t t = line.find('\t', start);
    f.push_back(line.substr(start, t == std::string::npos ? std::string::npos : t - start));
    if (t == std::string::npos) break;
    start = t + 1;
  }
  return f;
}

LogRecords ReadLog(const std::string& path) {
  LogRecords r;
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  size_t pos = 0;
  while (pos < all.size()) {
    const size_t nl = all.find('\n', pos);
    if (nl == std::string::npos) {  // torn last line
      ++r.torn;
      break;
    }
    const std::string line = all.substr(pos, nl - pos);
    const std::vector<std::string> f = SplitTabs(line);
    pos = nl + 1;
    if (f[0] == "O" && f.size() == 2) {
      r.opened_rounds.insert(std::atoi(f[1].c_str()));
    } else if (f[0] == "E" && f.size() == 3) {
      r.enqueued.emplace_back(f[1], f[2]);
    } else if (f[0] == "S" && f.size() == 4) {
      r.succeeded.emplace_back(f[1], f[2], static_cast<uint32_t>(std::stoul(f[3])));
    } else if (f[0] == "V") {
      r.violations.push_back(line);
    } else {
      r.violations.push_back("malformed log line: " + line);
    }
  }
  return r;
}

int RunChild(const std::string& db, const std::string& log, uint64_t seed, int round) {
  log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    std::perror("crash child: open log");
    return 2;
  }
  const LogRecords before = ReadLog(log);
  auto opened = Engine::Open(CrashOptions(db));
  if (!opened.ok()) {
    std::fprintf(stderr, "crash child round %d: Engine::Open failed: %s\n", round,
                 opened.status().ToString().c_str());
    return 3;
  }
  std::unique_ptr<Engine> engine = std::move(opened).value();
  LogLine("O\t" + std::to_string(round));

  // Idempotent resubmits of ids acknowledged in earlier rounds: must exist (created=false).
  {
    std::mt19937_64 rng(seed ^ 0x5eed);
    for (int i = 0; i < 50 && !before.enqueued.empty(); ++i) {
      const auto& [tenant, id] =
          before.enqueued[Uniform<size_t>(rng, 0, before.enqueued.size() - 1)];
      if (id.rfind("c", 0) != 0) continue;  // engine-generated ids cannot be resubmitted as such
      JobSpec s;
      s.tenant = tenant;
      s.id = id;
      s.queue = kQueue;
      auto r = engine->Enqueue(s);
      if (!r.ok()) {
        LogLine("V\tresubmit of " + id + " failed: " + r.status().ToString());
      } else if (r->created) {
        LogLine("V\tacknowledged job '" + tenant + "'/" + id +
                " was lost: resubmitting it created it again");
      }
    }
  }

  std::atomic<uint64_t> next_id{0};
  auto producer = [&](int p) {
    std::mt19937_64 rng(seed * 31 + static_cast<uint64_t>(p));
    while (true) {
      const size_t n = Uniform(rng, 0, 1) == 0 ? 1 : Uniform<size_t>(rng, 2, 40);
      std::vector<JobSpec> specs(n);
      for (JobSpec& s : specs) {
        s.tenant = kTenants[Uniform(rng, 0, 1)];
        s.queue = kQueue;
        s.priority = Uniform<uint32_t>(rng, 0, 9);
        s.payload = std::string(Uniform<size_t>(rng, 0, 200), 'x');
        if (Uniform(rng, 0, 9) < 4) {
          s.id = "c" + std::to_string(round) + "-" + std::to_string(p) + "-" +
                 std::to_string(next_id.fetch_add(1));
        }
        if (Uniform(rng, 0, 9) == 0) {
          RetryPolicy rp;
          rp.max_retries = Uniform<uint32_t>(rng, 0, 2);
          rp.initial_backoff_ms = 5;
          rp.max_backoff_ms = 20;
          s.retry = rp;
        }
      }
      std::vector<EnqueueResult> acked;
      if (n == 1) {
        auto r = engine->Enqueue(specs[0]);
        if (r.ok())
          acked.push_back(*r);
        else
          LogLine("V\tEnqueue failed: " + r.status().ToString());
      } else {
        auto r = engine->EnqueueBatch(specs);
        if (r.ok())
          acked = *r;
        else
          LogLine("V\tEnqueueBatch failed: " + r.status().ToString());
      }
      for (size_t i = 0; i < acked.size(); ++i) {
        LogLine("E\t" + specs[i].tenant + "\t" + acked[i].id);
      }
      std::this_thread::sleep_for(milliseconds(Uniform(rng, 0, 3)));
    }
  };
  auto worker = [&](int w) {
    std::mt19937_64 rng(seed * 131 + static_cast<uint64_t>(w));
    const std::string worker_id = "r" + std::to_string(round) + "w" + std::to_string(w);
    while (true) {
      LeaseRequest req;
      req.tenant = kTenants[Uniform(rng, 0, 1)];
      req.queue = kQueue;
      req.worker_id = worker_id;
      req.max_tasks = 16;
      req.wait_ms = 50;
      auto r = engine->Lease(req);
      if (!r.ok()) {
        LogLine("V\tLease failed: " + r.status().ToString());
        continue;
      }
      for (const Task& t : *r) {
        const int dice = Uniform(rng, 0, 99);
        if (dice < 10) continue;  // abandon: the lease expires (maybe in a later round)
        if (dice < 20) {
          (void)engine->Complete(t.tenant, t.task_id, t.lease_token,
                                 Outcome::Failure("crash_test", "planned failure"));
          continue;
        }
        if (dice < 25) {
          auto hb = engine->Heartbeat(t.tenant, t.task_id, worker_id, t.lease_token);
          if (!hb.ok()) continue;
        }
        Status st = engine->Complete(t.tenant, t.task_id, t.lease_token, Outcome::Success("ok"));
        if (st.ok()) {
          LogLine("S\t" + t.tenant + "\t" + t.job_id + "\t" + std::to_string(t.attempt));
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (int p = 0; p < 2; ++p) threads.emplace_back(producer, p);
  for (int w = 0; w < 3; ++w) threads.emplace_back(worker, w);
  for (auto& t : threads) t.join();  // never returns: the parent kills us
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Parent role.

std::string ReadTail(const std::string& path, size_t max = 4000) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

std::vector<std::string> CheckHistory(const Job& j) {
  std::vector<std::string> bad;
  const std::string who =
      "job '" + j.tenant + "'/" + j.id + " (" + std::string(JobStatusName(j.status)) + ")";
  if (j.attempts.size() != j.attempt_count) {
    bad.push_back(who + ": attempt_count " + std::to_string(j.attempt_count) + " but " +
                  std::to_string(j.attempts.size()) + " attempts");
  }
  int succeeded = 0;
  for (size_t i = 0; i < j.attempts.size(); ++i) {
    const Attempt& a = j.attempts[i];
    if (a.number != i + 1) {
      bad.push_back(who + ": attempt #" + std::to_string(i) + " numbered " +
                    std::to_string(a.number));
    }
    if (a.status == AttemptStatus::kSucceeded) ++succeeded;
    if (a.status == AttemptStatus::kRunning &&
        (i + 1 != j.attempts.size() || j.status != JobStatus::kRunning)) {
      bad.push_back(who + ": attempt " + std::to_string(a.number) + " is running");
    }
  }
  if (succeeded > 1) bad.push_back(who + ": " + std::to_string(succeeded) + " succeeded attempts");
  if (j.status == JobStatus::kRunning &&
      (j.attempts.empty() || j.attempts.back().status != AttemptStatus::kRunning)) {
    bad.push_back(who + ": running without a running last attempt");
  }
  if (j.status == JobStatus::kSucceeded &&
      (j.attempts.empty() || j.attempts.back().status != AttemptStatus::kSucceeded)) {
    bad.push_back(who + ": succeeded but its last attempt did not succeed");
  }
  if (j.status == JobStatus::kFailed &&
      (j.attempts.empty() || j.attempts.back().status != AttemptStatus::kFailed)) {
    bad.push_back(who + ": failed but its last attempt did not fail");
  }
  if (j.retries_used > j.retry.max_retries) {
    bad.push_back(who + ": retries_used " + std::to_string(j.retries_used) + " > max_retries " +
                  std::to_string(j.retry.max_retries));
  }
  return bad;
}

// Whether the child of `round` has written its "O\t<round>" line past `from` in the log.
bool OpenedIn(const std::string& log, uint64_t from, int round) {
  std::ifstream in(log, std::ios::binary);
  if (!in) return false;
  in.seekg(static_cast<std::streamoff>(from));
  const std::string want = "O\t" + std::to_string(round);
  std::string line;
  while (std::getline(in, line)) {
    if (line == want) return true;
  }
  return false;
}

std::string Join(const std::vector<std::string>& v, size_t max = 30) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += "  " + v[i] + "\n";
  if (v.size() > max) s += "  ... and " + std::to_string(v.size() - max) + " more\n";
  return s;
}

TEST(CrashTest, AcknowledgedWritesSurviveKill9) {
  testing::TempDir dir;
  const std::string db = dir.path() + "/db";
  const std::string log = dir.path() + "/acks.log";
  const std::string out = dir.path() + "/child.out";
  std::mt19937_64 rng(kSeed);

  for (int round = 0; round < kRounds; ++round) {
    const int64_t kill_after = Uniform(rng, kMinKillMs, kMaxKillMs);
    const std::string seed = std::to_string(kSeed + static_cast<uint64_t>(round));
    const std::string round_s = std::to_string(round);
    std::fflush(nullptr);
    std::error_code size_ec;
    const auto log_size = std::filesystem::file_size(log, size_ec);
    const uint64_t log_start = size_ec ? 0 : static_cast<uint64_t>(log_size);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      const char* argv[] = {"sluice_crash_tests", "--crash-child", db.c_str(), log.c_str(),
                            seed.c_str(),         round_s.c_str(), nullptr};
      ::execv("/proc/self/exe", const_cast<char* const*>(argv));
      std::_Exit(127);
    }
    // The kill delay counts from the moment the child has the engine open (its "O" line), so
    // that a slow open (sanitizers, a big WAL to replay) does not turn load rounds into open
    // rounds; round 3 alone is killed on the clock from the fork instead, which may land in
    // the middle of recovery.
    int status = 0;
    pid_t done = 0;
    if (round != 3) {
      const int64_t open_deadline = WallNow() + 30'000;
      while (WallNow() < open_deadline && done == 0 && !OpenedIn(log, log_start, round)) {
        std::this_thread::sleep_for(milliseconds(5));
        done = ::waitpid(pid, &status, WNOHANG);
      }
    }
    // Kill at the chosen moment, unless the child dies on its own first (it never should).
    const int64_t deadline = WallNow() + kill_after;
    while (WallNow() < deadline && done == 0) {
      std::this_thread::sleep_for(milliseconds(5));
      done = ::waitpid(pid, &status, WNOHANG);
    }
    if (done == 0) {
      ::kill(pid, SIGKILL);
      done = ::waitpid(pid, &status, 0);
    }
    ASSERT_EQ(done, pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "round " << round << ": child ended on its own (exit "
        << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << ") before the kill at " << kill_after
        << " ms; its output:\n"
        << ReadTail(out);
    const LogRecords so_far = ReadLog(log);
    std::printf("round %d: killed after %lld ms; log so far: %zu enqueues, %zu successes\n", round,
                static_cast<long long>(kill_after), so_far.enqueued.size(),
                so_far.succeeded.size());
  }

  const LogRecords recs = ReadLog(log);
  std::printf(
      "%d rounds, %zu opened; %zu acknowledged enqueues, %zu acknowledged successes, "
      "%zu torn line(s)\n",
      kRounds, recs.opened_rounds.size(), recs.enqueued.size(), recs.succeeded.size(), recs.torn);
  EXPECT_TRUE(recs.violations.empty()) << "child-side violations:\n" << Join(recs.violations);
  EXPECT_GE(recs.opened_rounds.size(), static_cast<size_t>(kRounds - 1))
      << "the child did not get the engine open in most rounds:\n"
      << ReadTail(out);
  EXPECT_GT(recs.enqueued.size(), 200u) << "too little load to mean anything";
  EXPECT_GT(recs.succeeded.size(), 50u) << "too little load to mean anything";

  // Reopen in this process: the store must open cleanly after the last kill.
  EngineOptions o = CrashOptions(db);
  auto opened = Engine::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Engine> engine = std::move(opened).value();
  {
    // Right after the last kill: every index entry and counter matches the job records.
    const Status verified = engine->VerifyIndexes();
    EXPECT_TRUE(verified.ok()) << "after the last kill -9: " << verified.ToString();
  }

  std::vector<std::string> bad;
  std::set<std::pair<std::string, std::string>> jobs(recs.enqueued.begin(), recs.enqueued.end());
  for (const auto& [tenant, id] : jobs) {
    auto r = engine->GetJob(tenant, id, true);
    if (!r.ok()) {
      bad.push_back("acknowledged enqueue '" + tenant + "'/" + id +
                    " lost: " + r.status().ToString());
      continue;
    }
    for (auto& v : CheckHistory(*r)) bad.push_back("after the kills: " + v);
  }
  std::map<std::pair<std::string, std::string>, uint32_t> success_of;
  for (const auto& [tenant, id, attempt] : recs.succeeded) {
    auto [it, inserted] = success_of.emplace(std::make_pair(tenant, id), attempt);
    if (!inserted) {
      bad.push_back("job '" + tenant + "'/" + id + " acknowledged success twice (attempts " +
                    std::to_string(it->second) + " and " + std::to_string(attempt) + ")");
    }
    // (A success may be logged for a job whose enqueue line was not: the child can die between
    // the engine's ack and the producer's log write while a worker already ran the job.)
    auto r = engine->GetJob(tenant, id, true);
    if (!r.ok()) {
      bad.push_back("job '" + tenant + "'/" + id +
                    " with an acknowledged success lost: " + r.status().ToString());
      continue;
    }
    if (r->status != JobStatus::kSucceeded) {
      bad.push_back("job '" + tenant + "'/" + id + " acknowledged success of attempt " +
                    std::to_string(attempt) + " but is " + std::string(JobStatusName(r->status)));
    }
    if (attempt == 0 || attempt > r->attempts.size() ||
        r->attempts[attempt - 1].status != AttemptStatus::kSucceeded) {
      bad.push_back("job '" + tenant + "'/" + id + ": acknowledged success of attempt " +
                    std::to_string(attempt) + " not recorded as succeeded (" +
                    std::to_string(r->attempts.size()) + " attempts)");
    }
  }
  EXPECT_TRUE(bad.empty()) << bad.size() << " problem(s) after " << kRounds << " kills:\n"
                           << Join(bad);

  // Drain: leases from the killed rounds must be reaped and every job must be able to finish.
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  const int64_t drain_start = WallNow();
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      for (int t = 0; !stop.load(); t = 1 - t) {
        LeaseRequest req;
        req.tenant = kTenants[t];
        req.queue = kQueue;
        req.worker_id = "drain" + std::to_string(w);
        req.max_tasks = 64;
        req.wait_ms = 20;
        auto r = engine->Lease(req);
        if (!r.ok()) continue;
        for (const Task& task : *r) {
          (void)engine->Complete(task.tenant, task.task_id, task.lease_token,
                                 Outcome::Success("drained"));
        }
      }
    });
  }
  const int64_t drain_deadline = WallNow() + 60000;
  int quiet = 0;
  int64_t last_progress = 0;
  EngineStats s;
  while (WallNow() < drain_deadline && quiet < 3) {
    std::this_thread::sleep_for(milliseconds(50));
    s = engine->Stats();
    quiet = (s.running == 0 && s.pending_tasks == 0) ? quiet + 1 : 0;
    if (WallNow() - last_progress >= 2000) {
      last_progress = WallNow();
      std::printf("draining: running %llu, pending %llu, leased %llu, succeeded %llu\n",
                  static_cast<unsigned long long>(s.running),
                  static_cast<unsigned long long>(s.pending_tasks),
                  static_cast<unsigned long long>(s.leased),
                  static_cast<unsigned long long>(s.succeeded));
    }
  }
  stop = true;
  for (auto& t : workers) t.join();
  std::printf("drained in %lld ms\n", static_cast<long long>(WallNow() - drain_start));
  EXPECT_GE(quiet, 3) << "not drained: running " << s.running << ", pending " << s.pending_tasks;

  bad.clear();
  size_t by_status[6] = {};
  for (const auto& [tenant, id] : jobs) {
    auto r = engine->GetJob(tenant, id, true);
    if (!r.ok()) {
      bad.push_back("job '" + tenant + "'/" + id + " lost in the drain: " + r.status().ToString());
      continue;
    }
    ++by_status[static_cast<int>(r->status)];
    if (!IsTerminal(r->status)) {
      bad.push_back(
          "job '" + tenant + "'/" + id + " not terminal: " + std::string(JobStatusName(r->status)) +
          ", next_run_ms - now " + std::to_string(r->next_run_ms - WallNow()) + ", priority " +
          std::to_string(r->priority) + ", " + std::to_string(r->attempt_count) + " attempts" +
          (r->attempts.empty()
               ? std::string()
               : ", last " + std::string(AttemptStatusName(r->attempts.back().status))));
    }
    for (auto& v : CheckHistory(*r)) bad.push_back("after the drain: " + v);
    auto si = success_of.find({tenant, id});
    if (si != success_of.end() && r->status != JobStatus::kSucceeded) {
      bad.push_back("job '" + tenant + "'/" + id + " lost its acknowledged success");
    }
  }
  std::printf("after the drain: %zu succeeded, %zu failed, %zu cancelled\n", by_status[3],
              by_status[4], by_status[5]);
  EXPECT_TRUE(bad.empty()) << bad.size() << " problem(s) after the drain:\n" << Join(bad);
  s = engine->Stats();
  EXPECT_EQ(s.running, 0u);
  EXPECT_EQ(s.pending_tasks, 0u);
  // The job indexes and counters survived every kill -9 exactly (one write per transition).
  const Status verified = engine->VerifyIndexes();
  EXPECT_TRUE(verified.ok()) << verified.ToString();
  EXPECT_TRUE(engine->Close().ok());
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--crash-child") == 0) {
    if (argc != 6) {
      std::fprintf(stderr, "usage: %s --crash-child DB LOG SEED ROUND\n", argv[0]);
      return 2;
    }
    return sluice::RunChild(argv[2], argv[3], std::strtoull(argv[4], nullptr, 10),
                            std::atoi(argv[5]));
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
