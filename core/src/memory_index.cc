#include "memory_index.h"

#include <limits>

namespace sluice {

QueueIndex* MemoryIndex::Queue(const std::string& queue_prefix) {
  auto& slot = queues_[queue_prefix];
  if (!slot) slot = std::make_unique<QueueIndex>();
  return slot.get();
}

QueueIndex* MemoryIndex::FindQueue(const std::string& queue_prefix) {
  auto it = queues_.find(queue_prefix);
  return it == queues_.end() ? nullptr : it->second.get();
}

void MemoryIndex::MaybeDropQueue(const std::string& queue_prefix) {
  auto it = queues_.find(queue_prefix);
  if (it == queues_.end()) return;
  const QueueIndex& q = *it->second;
  if (q.waiters == 0 && q.ready.empty() && q.scheduled.empty()) queues_.erase(it);
}

void MemoryIndex::AddTask(const std::string& queue_prefix, TaskRef ref, int64_t now_ms) {
  QueueIndex* q = Queue(queue_prefix);
  bool inserted = ref.due_ms <= now_ms ? q->ready.insert(std::move(ref)).second
                                       : q->scheduled.insert(std::move(ref)).second;
  if (inserted) ++pending_;
}

bool MemoryIndex::RemoveTask(const std::string& queue_prefix, uint32_t priority, int64_t due_ms,
                             uint64_t seq) {
  QueueIndex* q = FindQueue(queue_prefix);
  if (q == nullptr) return false;
  TaskRef probe{priority, due_ms, seq, {}};
  bool removed = q->ready.erase(probe) > 0 || q->scheduled.erase(probe) > 0;
  if (removed) {
    --pending_;
    MaybeDropQueue(queue_prefix);
  }
  return removed;
}

std::vector<TaskRef> MemoryIndex::Pop(QueueIndex* q, size_t n, int64_t now_ms) {
  while (!q->scheduled.empty() && q->scheduled.begin()->due_ms <= now_ms) {
    auto node = q->scheduled.extract(q->scheduled.begin());
    q->ready.insert(std::move(node.value()));
  }
  std::vector<TaskRef> out;
  out.reserve(std::min(n, q->ready.size()));
  while (out.size() < n && !q->ready.empty()) {
    auto node = q->ready.extract(q->ready.begin());
    out.push_back(std::move(node.value()));
  }
  pending_ -= out.size();
  return out;
}

int64_t MemoryIndex::NextDue(const QueueIndex& q) {
  return q.scheduled.empty() ? std::numeric_limits<int64_t>::max() : q.scheduled.begin()->due_ms;
}

void MemoryIndex::NotifyAll() {
  for (auto& [name, q] : queues_) q->cv.notify_all();
}

void MemoryIndex::AddLease(int64_t expires_ms, const std::string& lease_key) {
  expiries_.emplace(expires_ms, lease_key);
}

void MemoryIndex::RemoveLease(int64_t expires_ms, const std::string& lease_key) {
  expiries_.erase({expires_ms, lease_key});
}

std::vector<std::pair<int64_t, std::string>> MemoryIndex::Expired(int64_t now_ms,
                                                                  size_t max) const {
  std::vector<std::pair<int64_t, std::string>> out;
  for (auto it = expiries_.begin(); it != expiries_.end() && out.size() < max; ++it) {
    if (it->first > now_ms) break;
    out.push_back(*it);
  }
  return out;
}

}  // namespace sluice
