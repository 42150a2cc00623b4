// BlockingPool: at most max_threads run at once, every submitted task runs (also the ones
// queued while all threads were busy, and those still queued at destruction), and threads are
// reused rather than started per task.
#include "blocking_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

namespace sluice::server {
namespace {

TEST(BlockingPool, NeverRunsMoreThanItsThreadsAndRunsEverything) {
  std::atomic<int> running{0}, peak{0}, done{0};
  {
    BlockingPool pool(3);
    for (int i = 0; i < 40; ++i) {
      pool.Submit([&] {
        const int now = ++running;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        --running;
        ++done;
      });
    }
  }  // the destructor runs what is still queued, then joins
  EXPECT_EQ(done.load(), 40);
  EXPECT_EQ(peak.load(), 3);
}

TEST(BlockingPool, ReusesIdleThreads) {
  BlockingPool pool(8);
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::thread::id> ids;
  int done = 0;
  for (int i = 0; i < 50; ++i) {  // one at a time: an idle thread is always there to take it
    pool.Submit([&] {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
      ++done;
      cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return done == i + 1; }));
    lock.unlock();
    // Let the thread get back to waiting for work (it signals before it is idle again).
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_LE(ids.size(), 2u);
}

TEST(BlockingPool, ATaskMaySubmitToAnotherPool) {
  BlockingPool a(1), b(1);
  std::atomic<bool> ran{false};
  std::mutex mu;
  std::condition_variable cv;
  a.Submit([&] {
    b.Submit([&] {
      ran = true;
      cv.notify_all();
    });
  });
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return ran.load(); }));
}

}  // namespace
}  // namespace sluice::server
