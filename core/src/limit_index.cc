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
                                  const storage::FloatingRecord* rec) {
  std::string id = Id(tenant, limkey);
  auto& slot = keys_[id];
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
  if (ks->scheduled_ms >= 0) refresh_due_.erase({ks->scheduled_ms, ks->id});
  keys_.erase(ks->id);
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
  if (ks->scheduled_ms >= 0) {
    refresh_due_.erase({ks->scheduled_ms, ks->id});
    ks->scheduled_ms = -1;
  }
  if (ks->Active() && !ks->refresh_in_flight) {
    ks->scheduled_ms = std::max<int64_t>(0, ks->RefreshDueMs());
    refresh_due_.emplace(ks->scheduled_ms, ks->id);
  }
}

KeyState* LimitIndex::IssueRefresh(std::string_view tenant, std::string_view queue, int64_t now_ms,
                                   uint64_t token, int64_t expires_ms, size_t scan) {
  size_t seen = 0;
  for (auto it = refresh_due_.begin(); it != refresh_due_.end() && seen < scan; ++it, ++seen) {
    if (it->first > now_ms) break;
    KeyState* ks = Find(it->second);
    if (ks == nullptr || ks->tenant != tenant || !ks->queues.contains(std::string(queue))) {
      continue;
    }
    refresh_due_.erase(it);
    ks->scheduled_ms = -1;
    ks->refresh_in_flight = true;
    ks->refresh_token = token;
    ks->refresh_expires_ms = expires_ms;
    refresh_expiry_.emplace(expires_ms, ks->id);
    return ks;
  }
  return nullptr;
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
    // Reissued at once: the expired lease says nothing about the value.
    if (ks->Active()) {
      if (ks->scheduled_ms >= 0) refresh_due_.erase({ks->scheduled_ms, ks->id});
      ks->scheduled_ms = 0;
      refresh_due_.emplace(0, ks->id);
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

std::vector<const KeyState*> LimitIndex::Busiest(size_t limit) const {
  std::vector<const KeyState*> all;
  all.reserve(keys_.size());
  for (const auto& [id, ks] : keys_) all.push_back(ks.get());
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
