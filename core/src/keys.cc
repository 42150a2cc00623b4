#include "keys.h"

namespace sluice::keys {

void PutU8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }

void PutU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

void PutU64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

void PutStr(std::string* out, std::string_view s) {
  // Callers validate sizes first (SizeLimits caps every string far below 64 KiB).
  const auto n = static_cast<uint16_t>(s.size());
  out->push_back(static_cast<char>(n >> 8));
  out->push_back(static_cast<char>(n & 0xff));
  out->append(s);
}

bool Reader::GetU8(uint8_t* v) {
  if (in_.empty()) return false;
  *v = static_cast<uint8_t>(in_[0]);
  in_.remove_prefix(1);
  return true;
}

bool Reader::GetU32(uint32_t* v) {
  if (in_.size() < 4) return false;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r = (r << 8) | static_cast<uint8_t>(in_[i]);
  *v = r;
  in_.remove_prefix(4);
  return true;
}

bool Reader::GetU64(uint64_t* v) {
  if (in_.size() < 8) return false;
  uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r = (r << 8) | static_cast<uint8_t>(in_[i]);
  *v = r;
  in_.remove_prefix(8);
  return true;
}

bool Reader::GetStr(std::string_view* s) {
  if (in_.size() < 2) return false;
  const size_t n =
      (static_cast<size_t>(static_cast<uint8_t>(in_[0])) << 8) | static_cast<uint8_t>(in_[1]);
  if (in_.size() < 2 + n) return false;
  *s = in_.substr(2, n);
  in_.remove_prefix(2 + n);
  return true;
}

bool Reader::GetRest(std::string_view* s) {
  *s = in_;
  in_ = {};
  return true;
}

std::string VersionKey() { return std::string(1, kVersion); }

static std::string JobScoped(char prefix, std::string_view tenant, std::string_view id) {
  std::string k;
  k.reserve(5 + tenant.size() + id.size() + 4);
  k.push_back(prefix);
  PutStr(&k, tenant);
  PutStr(&k, id);
  return k;
}

std::string JobKey(std::string_view tenant, std::string_view id) {
  return JobScoped(kJob, tenant, id);
}
std::string BodyKey(std::string_view tenant, std::string_view id) {
  return JobScoped(kBody, tenant, id);
}
std::string AttemptPrefix(std::string_view tenant, std::string_view id) {
  return JobScoped(kAttempt, tenant, id);
}
std::string AttemptKey(std::string_view tenant, std::string_view id, uint32_t attempt) {
  std::string k = AttemptPrefix(tenant, id);
  PutU32(&k, attempt);
  return k;
}
std::string LeaseKey(std::string_view tenant, std::string_view id) {
  return JobScoped(kLease, tenant, id);
}
std::string QueuePrefix(std::string_view tenant, std::string_view queue) {
  return JobScoped(kTask, tenant, queue);
}

std::string TaskKey(std::string_view queue_prefix, uint32_t priority, int64_t due_ms,
                    uint64_t seq) {
  std::string k;
  k.reserve(queue_prefix.size() + 17);
  k.append(queue_prefix);
  PutU8(&k, static_cast<uint8_t>(priority));
  PutU64(&k, static_cast<uint64_t>(due_ms < 0 ? 0 : due_ms));
  PutU64(&k, seq);
  return k;
}

bool ParseTaskKey(std::string_view key, TaskKeyParts* out) {
  if (key.empty() || key[0] != kTask) return false;
  Reader r(key.substr(1));
  uint8_t prio = 0;
  uint64_t due = 0;
  if (!r.GetStr(&out->tenant) || !r.GetStr(&out->queue) || !r.GetU8(&prio) || !r.GetU64(&due) ||
      !r.GetU64(&out->seq) || !r.empty()) {
    return false;
  }
  out->priority = prio;
  out->due_ms = static_cast<int64_t>(due);
  return true;
}

std::string LimKey(bool floating, std::string_view key) {
  std::string k(1, floating ? 'f' : 'x');
  k.append(key);
  return k;
}

std::string LimitPrefix(char space, std::string_view tenant, std::string_view limkey) {
  return JobScoped(space, tenant, limkey);
}

std::string HolderKey(std::string_view tenant, std::string_view limkey, std::string_view id) {
  std::string k = JobScoped(kHolder, tenant, limkey);
  PutStr(&k, id);
  return k;
}

std::string WaiterKey(std::string_view tenant, std::string_view limkey, uint32_t priority,
                      int64_t due_ms, uint64_t seq) {
  std::string k = JobScoped(kWaiter, tenant, limkey);
  PutU8(&k, static_cast<uint8_t>(priority));
  PutU64(&k, static_cast<uint64_t>(due_ms < 0 ? 0 : due_ms));
  PutU64(&k, seq);
  return k;
}

std::string FloatingKey(std::string_view tenant, std::string_view key) {
  return JobScoped(kFloating, tenant, key);
}

bool ParseHolderKey(std::string_view key, std::string_view* tenant, std::string_view* limkey,
                    std::string_view* id) {
  if (key.empty() || key[0] != kHolder) return false;
  Reader r(key.substr(1));
  return r.GetStr(tenant) && r.GetStr(limkey) && r.GetStr(id) && r.empty();
}

bool ParseWaiterKey(std::string_view key, std::string_view* tenant, std::string_view* limkey,
                    TaskKeyParts* parts) {
  if (key.empty() || key[0] != kWaiter) return false;
  Reader r(key.substr(1));
  uint8_t prio = 0;
  uint64_t due = 0;
  if (!r.GetStr(tenant) || !r.GetStr(limkey) || !r.GetU8(&prio) || !r.GetU64(&due) ||
      !r.GetU64(&parts->seq) || !r.empty()) {
    return false;
  }
  parts->priority = prio;
  parts->due_ms = static_cast<int64_t>(due);
  return true;
}

bool ParseJobScopedKey(std::string_view key, std::string_view* tenant, std::string_view* id) {
  if (key.empty()) return false;
  Reader r(key.substr(1));
  return r.GetStr(tenant) && r.GetStr(id) && r.empty();
}

std::string IdxAllPrefix(std::string_view tenant) {
  std::string k(1, kIdxAll);
  PutStr(&k, tenant);
  return k;
}

std::string IdxStatusPrefix(std::string_view tenant, uint8_t status) {
  std::string k(1, kIdxStatus);
  PutStr(&k, tenant);
  PutU8(&k, status);
  return k;
}

std::string IdxQueuePrefix(std::string_view tenant, std::string_view queue, uint8_t status) {
  std::string k(1, kIdxQueue);
  PutStr(&k, tenant);
  PutStr(&k, queue);
  PutU8(&k, status);
  return k;
}

std::string IdxMetaPrefix(std::string_view tenant, std::string_view key, std::string_view value,
                          uint8_t status) {
  std::string k(1, kIdxMeta);
  PutStr(&k, tenant);
  PutStr(&k, key);
  PutStr(&k, value);
  PutU8(&k, status);
  return k;
}

void PutPos(std::string* out, int64_t created_ms, uint64_t seq) {
  PutU64(out, static_cast<uint64_t>(created_ms < 0 ? 0 : created_ms));
  PutU64(out, seq);
}

bool ParsePos(std::string_view key, int64_t* created_ms, uint64_t* seq) {
  if (key.size() < 16) return false;
  Reader r(key.substr(key.size() - 16));
  uint64_t c = 0;
  if (!r.GetU64(&c) || !r.GetU64(seq)) return false;
  *created_ms = static_cast<int64_t>(c);
  return true;
}

std::string IdxDueKey(int64_t due_ms, uint64_t seq) {
  std::string k(1, kIdxDue);
  PutU64(&k, static_cast<uint64_t>(due_ms < 0 ? 0 : due_ms));
  PutU64(&k, seq);
  return k;
}

std::string CountKey(std::string_view tenant, std::string_view queue, uint16_t shard) {
  std::string k(1, kCount);
  PutStr(&k, tenant);
  PutStr(&k, queue);
  k.push_back(static_cast<char>(shard >> 8));
  k.push_back(static_cast<char>(shard & 0xff));
  return k;
}

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<uint8_t>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

}  // namespace sluice::keys
