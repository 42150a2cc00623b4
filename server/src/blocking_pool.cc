#include "blocking_pool.h"

#include <utility>

namespace sluice::server {

BlockingPool::BlockingPool(size_t max_threads) : max_threads_(max_threads > 0 ? max_threads : 1) {}

BlockingPool::~BlockingPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void BlockingPool::Submit(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  // A thread is started first, so that when it cannot be (std::system_error) nothing was queued
  // and the caller still owns the work. The new thread waits for mu_ before taking a task.
  if (idle_ < queue_.size() + 1 && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { Loop(); });
  }
  queue_.push_back(std::move(task));
  cv_.notify_one();
}

void BlockingPool::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_;
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (queue_.empty()) return;  // stopping, nothing left to run
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

}  // namespace sluice::server
