// MemoryIndex: the in-memory mirror of the ready range and the lease-expiry index.
//
// RocksDB is the truth (DESIGN.md §5): the 'T' and 'L' key spaces hold every pending task and
// live lease, and Open rebuilds this index from them. Keeping the mirror in memory means the
// hot path never iterates RocksDB ranges full of deletion tombstones (every lease deletes the
// head of the ready range), and the reaper walks expiries from the earliest: O(expired).
// Cost: about 100 bytes per pending task and per live lease (docs/decisions.md).
//
// Not thread-safe: the engine guards it with its index mutex, and mutates it only after the
// matching RocksDB write committed, while holding the job's stripe lock, so index order of
// changes to one job equals commit order.
#ifndef SLUICE_CORE_SRC_MEMORY_INDEX_H_
#define SLUICE_CORE_SRC_MEMORY_INDEX_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice {

// A pending task of one queue. (due_ms, seq) identifies it: seq is unique engine-wide.
struct TaskRef {
  uint32_t priority = 0;
  int64_t due_ms = 0;
  uint64_t seq = 0;
  std::string job_id;
};

// Ready order: priority, then due time, then enqueue order.
struct ReadyOrder {
  bool operator()(const TaskRef& a, const TaskRef& b) const {
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.due_ms != b.due_ms) return a.due_ms < b.due_ms;
    return a.seq < b.seq;
  }
};

// Timer order for tasks not yet due.
struct DueOrder {
  bool operator()(const TaskRef& a, const TaskRef& b) const {
    if (a.due_ms != b.due_ms) return a.due_ms < b.due_ms;
    return a.seq < b.seq;
  }
};

// One (tenant, queue): its due tasks, its future tasks, and the long-polls waiting on it.
struct QueueIndex {
  std::set<TaskRef, ReadyOrder> ready;
  std::set<TaskRef, DueOrder> scheduled;
  std::condition_variable cv;  // waited on with the engine's index mutex
  int waiters = 0;
};

class MemoryIndex {
 public:
  // The queue's index, created on first use. The pointer stays valid while waiters > 0 or the
  // queue holds tasks.
  QueueIndex* Queue(const std::string& queue_prefix);
  QueueIndex* FindQueue(const std::string& queue_prefix);
  // Drops a queue's index when it is empty and nobody waits on it.
  void MaybeDropQueue(const std::string& queue_prefix);

  void AddTask(const std::string& queue_prefix, TaskRef ref, int64_t now_ms);
  // Removes the task (priority, due_ms, seq) if present; returns whether it was.
  bool RemoveTask(const std::string& queue_prefix, uint32_t priority, int64_t due_ms, uint64_t seq);
  // Moves tasks due by now_ms to ready, then removes and returns up to n in ready order.
  std::vector<TaskRef> Pop(QueueIndex* q, size_t n, int64_t now_ms);
  // Earliest due time of a future task, or INT64_MAX.
  static int64_t NextDue(const QueueIndex& q);
  // Wakes every long-poll on every queue (used by Close).
  void NotifyAll();

  void AddLease(int64_t expires_ms, const std::string& lease_key);
  void RemoveLease(int64_t expires_ms, const std::string& lease_key);
  // Up to max leases expired by now_ms, earliest first (not removed).
  std::vector<std::pair<int64_t, std::string>> Expired(int64_t now_ms, size_t max) const;

  uint64_t pending_tasks() const { return pending_; }
  // Every queue with an index (queue prefix -> index), for depth reports.
  const std::unordered_map<std::string, std::unique_ptr<QueueIndex>>& queues() const {
    return queues_;
  }
  uint64_t leases() const { return expiries_.size(); }

 private:
  std::unordered_map<std::string, std::unique_ptr<QueueIndex>> queues_;
  std::set<std::pair<int64_t, std::string>> expiries_;
  uint64_t pending_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_CORE_SRC_MEMORY_INDEX_H_
