// LimitIndex: the in-memory mirror of concurrency-key holders and waiters ('H', 'W' keys),
// the floating-limit records of active keys, and the refresh schedule.
//
// Only keys with holders or waiters (or a refresh in flight) are in memory: an idle key costs
// nothing but its storage. Open rebuilds the index from 'H' and 'W' keys.
//
// Invariant with the store: a slot is reserved here before the write that takes it commits,
// and given back here only after the write that releases it commits, so the holders recorded
// in the store are always a subset of the holders here, and no key ever has more holders in
// the store than the max it had when they were granted.
//
// Not thread-safe: the engine guards it with its limits mutex.
#ifndef SLUICE_CORE_SRC_LIMIT_INDEX_H_
#define SLUICE_CORE_SRC_LIMIT_INDEX_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "storage.pb.h"

namespace sluice {

// A job's claim on a key: what it carries (its enqueue order and fixed max) and its queue.
struct LimitClaim {
  uint64_t enqueue_seq = 0;
  uint32_t max = 0;  // fixed limits only
  std::string queue;
};

// A job parked in a key's waiter queue, ordered like ready tasks.
struct LimitWaiter {
  uint32_t priority = 0;
  int64_t due_ms = 0;
  uint64_t seq = 0;  // the job's task seq
  std::string job_id;
  LimitClaim claim;
};

struct WaiterOrder {
  bool operator()(const LimitWaiter& a, const LimitWaiter& b) const {
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.due_ms != b.due_ms) return a.due_ms < b.due_ms;
    return a.seq < b.seq;
  }
};

struct KeyState {
  std::string id;  // str(tenant) str(limkey): the index's key
  std::string tenant;
  std::string limkey;  // kind byte + key
  bool floating = false;
  std::unordered_map<std::string, LimitClaim> holders;  // job id -> claim
  std::set<LimitWaiter, WaiterOrder> waiters;
  std::map<uint64_t, uint32_t> carried;    // enqueue_seq -> fixed max, of holders and waiters
  std::map<std::string, uint32_t> queues;  // queue -> holders + waiters from it

  // Floating keys only.
  storage::FloatingRecord rec;
  bool refresh_in_flight = false;
  uint64_t refresh_token = 0;
  int64_t refresh_expires_ms = 0;
  int64_t scheduled_ms = -1;                  // its entry in the refresh schedule, -1: none
  std::vector<std::string> scheduled_queues;  // the per-queue schedules it is filed in

  std::string_view key() const { return std::string_view{limkey}.substr(1); }
  // Fixed: the max carried by the newest job using the key; floating: the current max.
  uint32_t Max() const;
  bool HasRoom() const { return holders.size() < Max(); }
  // The max in force if a job with `claim` joined the key: a newer job's fixed max rules.
  uint32_t MaxWith(const LimitClaim& claim) const;
  bool HasRoomFor(const LimitClaim& claim) const { return holders.size() < MaxWith(claim); }
  bool Active() const { return !holders.empty() || !waiters.empty(); }
  // When a refresh is due (floating keys).
  int64_t RefreshDueMs() const;
};

class LimitIndex {
 public:
  static std::string Id(std::string_view tenant, std::string_view limkey);

  KeyState* Find(const std::string& id);
  // Creates the key's state when missing (then *created is true); floating keys start from
  // `rec`.
  KeyState* GetOrCreate(std::string_view tenant, std::string_view limkey,
                        const storage::FloatingRecord* rec, bool* created = nullptr);
  // Drops an idle key (no holders, waiters or refresh in flight).
  void MaybeDrop(KeyState* ks);

  void AddHolder(KeyState* ks, const std::string& job_id, const LimitClaim& claim);
  bool RemoveHolder(KeyState* ks, const std::string& job_id);
  void AddWaiter(KeyState* ks, LimitWaiter w);
  // Removes the waiter (priority, due, seq); returns whether it was there.
  bool RemoveWaiter(KeyState* ks, uint32_t priority, int64_t due_ms, uint64_t seq);

  // Refresh schedule (floating keys): re-files the key after any change of its state.
  void Reschedule(KeyState* ks);
  // Issues a refresh for the earliest due key (by now_ms) used by (tenant, queue): marks it in
  // flight with `token` until expires_ms. O(log n). nullptr: none due.
  KeyState* IssueRefresh(std::string_view tenant, std::string_view queue, int64_t now_ms,
                         uint64_t token, int64_t expires_ms);
  // Earliest time a refresh becomes due, or INT64_MAX.
  int64_t NextRefreshDueMs() const;
  // Ends the refresh in flight of keys whose refresh lease expired by now_ms (they are due
  // again at once). Returns how many.
  size_t ExpireRefreshes(int64_t now_ms);
  // Moves the refresh lease in flight of `ks` to expire at expires_ms.
  void ExtendRefresh(KeyState* ks, int64_t expires_ms);

  // Grant work: keys whose waiters may be grantable.
  void MarkDirty(const KeyState* ks);
  bool PopDirty(std::string* id);
  bool HasDirty() const { return !dirty_.empty(); }

  uint64_t keys() const { return keys_.size(); }
  uint64_t holders() const { return holders_; }
  uint64_t waiters() const { return waiters_; }
  // Up to `limit` active keys, most holders+waiters first.
  // Up to `limit` keys, most holders + waiters first; only `*tenant`'s when tenant is set.
  std::vector<const KeyState*> Busiest(size_t limit,
                                       const std::string_view* tenant = nullptr) const;

 private:
  void Claim(KeyState* ks, const LimitClaim& c);
  void Unclaim(KeyState* ks, const LimitClaim& c);

  std::unordered_map<std::string, std::unique_ptr<KeyState>> keys_;
  static std::string QueueId(std::string_view tenant, std::string_view queue);
  void Unschedule(KeyState* ks);

  std::set<std::pair<int64_t, std::string>> refresh_due_;  // (due, id), not in flight
  // The same entries filed under every (tenant, queue) whose jobs use the key, so a lease
  // finds the refreshes it may take without walking other queues' entries.
  std::unordered_map<std::string, std::set<std::pair<int64_t, std::string>>> due_by_queue_;
  std::set<std::pair<int64_t, std::string>> refresh_expiry_;  // (expires, id), in flight
  std::deque<std::string> dirty_;
  std::unordered_set<std::string> dirty_set_;
  uint64_t holders_ = 0;
  uint64_t waiters_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_CORE_SRC_LIMIT_INDEX_H_
