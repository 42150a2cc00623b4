// BlockingPool: threads for the parts of callback-API handlers that block (long-poll waits,
// writes that wait for fsync). gRPC's callback threads must never block, so a handler runs
// its fast path inline and hands the rest here (service.cc, decisions §69).
#ifndef SLUICE_SERVER_SRC_BLOCKING_POOL_H_
#define SLUICE_SERVER_SRC_BLOCKING_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice::server {

class BlockingPool {
 public:
  // At most max_threads threads, started on demand and kept for reuse. A task submitted while
  // all of them are busy waits for one to free up.
  explicit BlockingPool(size_t max_threads);
  // Runs the queued tasks to the end, then joins every thread.
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Runs task on a pool thread. Throws std::system_error, and queues nothing, when a needed
  // thread cannot be started.
  void Submit(std::function<void()> task);

 private:
  void Loop();

  const size_t max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_BLOCKING_POOL_H_
