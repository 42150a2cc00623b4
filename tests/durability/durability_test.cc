// Durability modes, observed at the system-call boundary: this test binary interposes fsync,
// fdatasync and sync_file_range (it is linked with -rdynamic, so librocksdb's calls resolve
// here first), counts them, and forwards to libc.
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <vector>

#include "core/test_util.h"
#include "sluice/engine.h"

namespace {
std::atomic<int> g_syncs{0};
std::atomic<bool> g_fail_syncs{false};  // when set, fsync/fdatasync fail with EIO

template <typename F>
F Next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}
}  // namespace

extern "C" int fsync(int fd) {
  g_syncs.fetch_add(1);
  if (g_fail_syncs.load()) {
    errno = EIO;
    return -1;
  }
  static auto real = Next<int (*)(int)>("fsync");
  return real(fd);
}

extern "C" int fdatasync(int fd) {
  g_syncs.fetch_add(1);
  if (g_fail_syncs.load()) {
    errno = EIO;
    return -1;
  }
  static auto real = Next<int (*)(int)>("fdatasync");
  return real(fd);
}

namespace sluice {
namespace {

int SyncsForEnqueues(Durability d, int n) {
  testing::TempDir dir;
  EngineOptions o = testing::TestOptions(dir.path());
  o.durability = d;
  auto engine = testing::OpenOrDie(o);
  const int before = g_syncs.load();
  for (int i = 0; i < n; ++i) {
    EXPECT_TRUE(engine->Enqueue(testing::Spec("q")).ok());
  }
  const int after = g_syncs.load();
  return after - before;
}

TEST(DurabilityTest, SyncFsyncsEveryAcknowledgedWrite) {
  // Sequential calls cannot share a group commit: each one waits for its own fsync.
  EXPECT_GE(SyncsForEnqueues(Durability::kSync, 20), 20);
}

// Leases are not fsynced even under sync durability (decisions §44): losing one to power loss
// only re-delivers its job. The completion that follows is fsynced and carries it to disk.
TEST(DurabilityTest, SyncLeasesAreNotFsyncedButCompletionsAre) {
  testing::TempDir dir;
  EngineOptions o = testing::TestOptions(dir.path());
  o.durability = Durability::kSync;
  auto engine = testing::OpenOrDie(o);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(engine->Enqueue(testing::Spec("q")).ok());
  LeaseRequest req;
  req.queue = "q";
  req.worker_id = "w";
  std::vector<Task> tasks;
  int before = g_syncs.load();
  for (int i = 0; i < 20; ++i) {
    auto r = engine->Lease(req);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->size(), 1u);
    tasks.push_back(r->front());
  }
  EXPECT_LE(g_syncs.load() - before, 1);
  before = g_syncs.load();
  for (const Task& t : tasks) {
    ASSERT_TRUE(engine->Complete("", t.task_id, t.lease_token, Outcome::Success()).ok());
  }
  EXPECT_GE(g_syncs.load() - before, 20);
}

TEST(DurabilityTest, AsyncNeverFsyncsOnTheWritePath) {
  EXPECT_LE(SyncsForEnqueues(Durability::kAsync, 20), 1);
}

// A failed WAL sync poisons the engine: later calls fail, Close does not sync again (RocksDB
// asserts on a sync after a failed one) and a reopen recovers every acknowledged write.
TEST(DurabilityTest, FailedSyncStopsAcknowledgingAndReopenRecovers) {
  testing::TempDir dir;
  EngineOptions o = testing::TestOptions(dir.path());
  o.durability = Durability::kSync;
  std::string acked;
  {
    auto engine = testing::OpenOrDie(o);
    auto first = engine->Enqueue(testing::Spec("q"));
    ASSERT_TRUE(first.ok());
    acked = first->id;
    g_fail_syncs.store(true);
    auto second = engine->Enqueue(testing::Spec("q"));
    EXPECT_EQ(second.status().code(), StatusCode::kIoError);
    g_fail_syncs.store(false);
    // Poisoned: even with a healthy disk again, nothing more is acknowledged.
    EXPECT_EQ(engine->Enqueue(testing::Spec("q")).status().code(), StatusCode::kIoError);
    EXPECT_TRUE(engine->Close().ok());
  }
  auto engine = testing::OpenOrDie(o);
  EXPECT_TRUE(engine->GetJob("", acked).ok());
  EXPECT_TRUE(engine->Enqueue(testing::Spec("q")).ok());
}

TEST(DurabilityTest, InterpositionWorks) {
  const int before = g_syncs.load();
  testing::TempDir dir;
  const std::string path = dir.path() + "/f";
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fdatasync(fd), 0);
  ::close(fd);
  EXPECT_EQ(g_syncs.load(), before + 1);
}

}  // namespace
}  // namespace sluice
