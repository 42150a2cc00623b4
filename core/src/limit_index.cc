#include "limit_index.h"

#include <algorithm>
#include <limits>

#include "keys.h"

namespace sluice {

uint32_t KeyState::Max() const {
  if (floating) return rec.current_max();
  return carried.empty() ? 0 : carried.rbegin()->second;
}

uint32_t KeyState::MaxWith(const LimitClaim& claim) const {
  if (floating) return rec.current_max();
  const uint64_t newest = carried.empty() ? 0 : carried.rbegin()->first;
  return claim.enqueue_seq >= newest ? claim.max : carried.rbegin()->second;
}

int64_t KeyState::RefreshDueMs() const {
  if (rec.failures() > 0) return rec.next_retry_ms();
  if (rec.last_refreshed_ms() == 0) return 0;
  return rec.last_refreshed_ms() + static_cast<int64_t>(rec.refresh_interval_ms());
}

std::string LimitIndex::Id(std::string_view tenant, std::string_view limkey) {
  std::string id;
  keys::PutStr(&id, tenant);
  keys::PutStr(&id, limkey);
  return id;
}

KeyState* LimitIndex::Find(const std::string& id) {
  auto it = keys_.find(id);
  return it == keys_.end() ? nullptr : it->second.get();
}

KeyState* LimitIndex::GetOrCreate(std::string_view tenant, std::string_view limkey,
                                  const storage::FloatingRecord* rec, bool* created) {
  std::string id = Id(tenant, limkey);
  auto& slot = keys_[id];
  if (created != nullptr) *created = !slot;
  if (!slot) {
    slot = std::make_unique<KeyState>();
    slot->id = std::move(id);
    slot->tenant = std::string(tenant);
    slot->limkey = std::string(limkey);
    slot->floating = !limkey.empty() && limkey[0] == 'f';
    if (slot->floating && rec != nullptr) slot->rec = *rec;
  }
  return slot.get();
}

void LimitIndex::MaybeDrop(KeyState* ks) {
  if (ks->Active() || ks->refresh_in_flight) return;
  Unschedule(ks);
  keys_.erase(ks->id);
}

std::string LimitIndex::QueueId(std::string_view tenant, std::string_view queue) {
  std::string q;
  keys::PutStr(&q, tenant);
  keys::PutStr(&q, queue);
  return q;
}

void LimitIndex::Unschedule(KeyState* ks) {
  if (ks->scheduled_ms < 0) return;
  refresh_due_.erase({ks->scheduled_ms, ks->id});
  for (const std::string& q : ks->scheduled_queues) {
    auto it = due_by_queue_.find(q);
    if (it == due_by_queue_.end()) continue;
    it->second.erase({ks->scheduled_ms, ks->id});
    if (it->second.empty()) due_by_queue_.erase(it);
  }
  ks->scheduled_queues.clear();
  ks->scheduled_ms = -1;
}

void LimitIndex::Claim(KeyState* ks, const LimitClaim& c) {
  if (!ks->floating) ks->carried[c.enqueue_seq] = c.max;
  ++ks->queues[c.queue];
}

void LimitIndex::Unclaim(KeyState* ks, const LimitClaim& c) {
  if (!ks->floating) ks->carried.erase(c.enqueue_seq);
  auto it = ks->queues.find(c.queue);
  if (it != ks->queues.end() && --it->second == 0) ks->queues.erase(it);
}

void LimitIndex::AddHolder(KeyState* ks, const std::string& job_id, const LimitClaim& claim) {
  if (ks->holders.emplace(job_id, claim).second) {
    ++holders_;
    Claim(ks, claim);
    Reschedule(ks);
  }
}

bool LimitIndex::RemoveHolder(KeyState* ks, const std::string& job_id) {
  auto it = ks->holders.find(job_id);
  if (it == ks->holders.end()) return false;
  Unclaim(ks, it->second);
  ks->holders.erase(it);
  --holders_;
  Reschedule(ks);
  return true;
}

void LimitIndex::AddWaiter(KeyState* ks, LimitWaiter w) {
  const LimitClaim claim = w.claim;
  if (ks->waiters.insert(std::move(w)).second) {
    ++waiters_;
    Claim(ks, claim);
    Reschedule(ks);
  }
}

bool LimitIndex::RemoveWaiter(KeyState* ks, uint32_t priority, int64_t due_ms, uint64_t seq) {
  LimitWaiter probe;
  probe.priority = priority;
  probe.due_ms = due_ms;
  probe.seq = seq;
  auto it = ks->waiters.find(probe);
  if (it == ks->waiters.end()) return false;
  Unclaim(ks, it->claim);
  ks->waiters.erase(it);
  --waiters_;
  Reschedule(ks);
  return true;
}

void LimitIndex::Reschedule(KeyState* ks) {
  if (!ks->floating) return;
  Unschedule(ks);
  if (ks->Active() && !ks->refresh_in_flight) {
    ks->scheduled_ms = std::max<int64_t>(0, ks->RefreshDueMs());
    refresh_due_.emplace(ks->scheduled_ms, ks->id);
    for (const auto& [queue, count] : ks->queues) {
      std::string q = QueueId(ks->tenant, queue);
      due_by_queue_[q].emplace(ks->scheduled_ms, ks->id);
      ks->scheduled_queues.push_back(std::move(q));
    }
  }
}

KeyState* LimitIndex::IssueRefresh(std::string_view tenant, std::string_view queue, int64_t now_ms,
                                   uint64_t token, int64_t expires_ms) {
  auto qit = due_by_queue_.find(QueueId(tenant, queue));
  if (qit == due_by_queue_.end() || qit->second.empty()) return nullptr;
  if (qit->second.begin()->first > now_ms) return nullptr;
  KeyState* ks = Find(qit->second.begin()->second);
  if (ks == nullptr) return nullptr;  // unreachable: dropped keys are unscheduled
  Unschedule(ks);                     // invalidates qit
  ks->refresh_in_flight = true;
  ks->refresh_token = token;
  ks->refresh_expires_ms = expires_ms;
  refresh_expiry_.emplace(expires_ms, ks->id);
  return ks;
}

void LimitIndex::ExtendRefresh(KeyState* ks, int64_t expires_ms) {
  // The old (expiry, id) entry stays and is skipped as stale when it comes up.
  ks->refresh_expires_ms = expires_ms;
  refresh_expiry_.emplace(expires_ms, ks->id);
}

int64_t LimitIndex::NextRefreshDueMs() const {
  return refresh_due_.empty() ? std::numeric_limits<int64_t>::max() : refresh_due_.begin()->first;
}

size_t LimitIndex::ExpireRefreshes(int64_t now_ms) {
  size_t n = 0;
  while (!refresh_expiry_.empty() && refresh_expiry_.begin()->first <= now_ms) {
    auto [expires, id] = *refresh_expiry_.begin();
    refresh_expiry_.erase(refresh_expiry_.begin());
    KeyState* ks = Find(id);
    if (ks == nullptr || !ks->refresh_in_flight || ks->refresh_expires_ms != expires) continue;
    ks->refresh_in_flight = false;
    ks->refresh_token = 0;
    ++n;
    // Due again as its record says (at once unless freshly set): an expired refresh lease
    // says nothing about the value.
    if (ks->Active()) {
      Reschedule(ks);
    } else {
      MaybeDrop(ks);
    }
  }
  return n;
}

void LimitIndex::MarkDirty(const KeyState* ks) {
  if (dirty_set_.insert(ks->id).second) dirty_.push_back(ks->id);
}

bool LimitIndex::PopDirty(std::string* id) {
  if (dirty_.empty()) return false;
  *id = std::move(dirty_.front());
  dirty_.pop_front();
  dirty_set_.erase(*id);
  return true;
}

std::vector<const KeyState*> LimitIndex::Busiest(size_t limit,
                                                 const std::string_view* tenant) const {
  std::vector<const KeyState*> all;
  all.reserve(tenant ? 16 : keys_.size());
  for (const auto& [id, ks] : keys_) {
    if (tenant == nullptr || ks->tenant == *tenant) all.push_back(ks.get());
  }
  const size_t n = std::min(limit, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                    [](const KeyState* a, const KeyState* b) {
                      return a->holders.size() + a->waiters.size() >
                             b->holders.size() + b->waiters.size();
                    });
  all.resize(n);
  return all;
}

}  // namespace sluice
