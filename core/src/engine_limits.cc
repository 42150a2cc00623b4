// Concurrency limits: acquiring, parking, releasing and granting slots of fixed and floating
// keys; floating-limit refreshes; operator reads and overrides.
//
// Rules (docs/decisions.md, "Concurrency limits"):
//  - A job acquires every slot when it is due and popped for leasing, all or nothing, checking
//    its limits in order; on the first full key it parks in that key's waiter queue ('W') and
//    leaves the ready range. It never holds a slot while it waits.
//  - Slots are reserved in memory before the write that takes them commits and given back in
//    memory only after the write that releases them commits.
//  - Grant passes run after the releasing call let go of its stripe; each grant is one write
//    under the granted job's stripe that moves it from the waiter queue back to the ready range
//    at its original position, holding every slot.
#include <algorithm>
#include <limits>

#include "engine_impl.h"
#include "keys.h"
#include "validate.h"

namespace sluice {
namespace {

bool IsFloating(const storage::LimitRecord& l) {
  return l.kind() == static_cast<uint32_t>(ConcurrencyLimit::Kind::kFloating);
}

std::string LimKeyOf(const storage::LimitRecord& l) { return keys::LimKey(IsFloating(l), l.key()); }

void PutClaim(std::string* out, const LimitClaim& c) {
  keys::PutU64(out, c.enqueue_seq);
  keys::PutU32(out, c.max);
  keys::PutStr(out, c.queue);
}

bool GetClaim(keys::Reader* r, LimitClaim* c) {
  std::string_view q;
  if (!r->GetU64(&c->enqueue_seq) || !r->GetU32(&c->max) || !r->GetStr(&q)) return false;
  c->queue.assign(q);
  return true;
}

LimitClaim ClaimOf(const storage::JobState& st, const storage::LimitRecord& l) {
  return LimitClaim{st.enqueue_seq(), IsFloating(l) ? 0 : l.max(), st.queue()};
}

storage::FloatingRecord NewFloating(const storage::LimitRecord& l) {
  storage::FloatingRecord rec;
  rec.set_current_max(l.max());
  rec.set_default_max(l.max());
  rec.set_refresh_interval_ms(l.refresh_interval_ms());
  rec.mutable_metadata()->insert(l.metadata().begin(), l.metadata().end());
  return rec;
}

using keys::PrefixEnd;

}  // namespace

std::mutex& Engine::Impl::FloatStripe(std::string_view tenant, std::string_view key) {
  const size_t h = std::hash<std::string_view>{}(key)*31 + std::hash<std::string_view>{}(tenant);
  return float_stripes_[h % float_stripes_.size()];
}

Status Engine::Impl::EnsureFloating(std::string_view tenant, const storage::JobState& st,
                                    std::vector<storage::FloatingRecord>* recs) {
  recs->assign(st.limits_size(), storage::FloatingRecord());
  for (int i = 0; i < st.limits_size(); ++i) {
    const storage::LimitRecord& l = st.limits(i);
    if (!IsFloating(l)) continue;
    {
      std::lock_guard<std::mutex> lock(limits_mu_);
      if (KeyState* ks = limits_.Find(LimitIndex::Id(tenant, LimKeyOf(l)))) {
        (*recs)[i] = ks->rec;
        continue;
      }
    }
    std::lock_guard<std::mutex> stripe(FloatStripe(tenant, l.key()));
    const std::string fkey = keys::FloatingKey(tenant, l.key());
    std::string raw;
    rocksdb::Status rs = db_->Get(read_options_, fkey, &raw);
    if (rs.ok()) {
      if (!(*recs)[i].ParseFromString(raw)) {
        return Status::Corruption("floating limit \"" + l.key() + "\" record is malformed");
      }
    } else if (rs.IsNotFound()) {
      (*recs)[i] = NewFloating(l);
      JobBatch batch;
      batch.Put(fkey, (*recs)[i].SerializeAsString());
      Status s = Write(&batch);
      if (!s.ok()) return s;
    } else {
      return StorageError(rs, "read floating limit");
    }
  }
  return Status::Ok();
}

KeyState* Engine::Impl::GetOrCreateKey(std::string_view tenant, const storage::LimitRecord& l,
                                       const storage::FloatingRecord* rec) {
  bool created = false;
  KeyState* ks = limits_.GetOrCreate(tenant, LimKeyOf(l), rec, &created);
  if (created && ks->floating) {
    // Read the record again now, under limits_mu_: an override that wrote the store after our
    // caller's read either lands before this read, or finds the key in memory and updates it.
    std::string raw;
    storage::FloatingRecord fresh;
    if (db_->Get(read_options_, keys::FloatingKey(tenant, l.key()), &raw).ok() &&
        fresh.ParseFromString(raw)) {
      ks->rec = std::move(fresh);
    }
  }
  return ks;
}

Engine::Impl::Acquire Engine::Impl::DecideAcquire(
    std::string_view tenant, std::string_view id, const storage::JobState& st,
    const std::vector<storage::FloatingRecord>& recs) {
  Acquire a;
  const int n = st.limits_size();
  std::vector<KeyState*> ks(n);
  LimitWaiter me;
  me.priority = st.priority();
  me.due_ms = st.due_ms();
  me.seq = st.task_seq();
  for (int i = 0; i < n; ++i) {
    const storage::LimitRecord& l = st.limits(i);
    ks[i] = GetOrCreateKey(tenant, l, &recs[i]);
    const LimitClaim claim = ClaimOf(st, l);
    // A newer job's fixed max rules the key (it may raise or lower it).
    const uint32_t max = ks[i]->MaxWith(claim);
    if (max > ks[i]->Max() && !ks[i]->waiters.empty()) limits_.MarkDirty(ks[i]);
    // Room, and no waiter of this key is ahead of the job (a grant keeps waiters' order).
    const bool ahead = !ks[i]->waiters.empty() && WaiterOrder()(*ks[i]->waiters.begin(), me);
    if (ks[i]->holders.size() >= max || ahead) {
      a.blocked = i;
      me.job_id = std::string(id);
      me.claim = claim;
      limits_.AddWaiter(ks[i], std::move(me));
      for (int j = 0; j < i; ++j) limits_.MaybeDrop(ks[j]);  // created just to look
      if (ahead && ks[i]->HasRoom()) limits_.MarkDirty(ks[i]);
      return a;
    }
  }
  for (int i = 0; i < n; ++i) limits_.AddHolder(ks[i], std::string(id), ClaimOf(st, st.limits(i)));
  a.granted = true;
  return a;
}

void Engine::Impl::PutHolds(std::string_view tenant, std::string_view id, storage::JobState* st,
                            rocksdb::WriteBatchBase* batch) {
  for (const auto& l : st->limits()) {
    std::string v;
    PutClaim(&v, ClaimOf(*st, l));
    batch->Put(keys::HolderKey(tenant, LimKeyOf(l), id), v);
  }
  st->set_holds_limits(true);
  st->set_waiting_on(0);
}

void Engine::Impl::PutWaiter(std::string_view tenant, std::string_view id, storage::JobState* st,
                             int index, rocksdb::WriteBatchBase* batch) {
  const storage::LimitRecord& l = st->limits(index);
  std::string v;
  PutClaim(&v, ClaimOf(*st, l));
  v.append(id);
  batch->Put(keys::WaiterKey(tenant, LimKeyOf(l), st->priority(), st->due_ms(), st->task_seq()), v);
  st->set_waiting_on(static_cast<uint32_t>(index) + 1);
}

void Engine::Impl::PutRelease(std::string_view tenant, std::string_view id, storage::JobState* st,
                              rocksdb::WriteBatchBase* batch) {
  for (const auto& l : st->limits()) batch->Delete(keys::HolderKey(tenant, LimKeyOf(l), id));
  st->set_holds_limits(false);
}

void Engine::Impl::DeleteWaiter(std::string_view tenant, const storage::JobState& st,
                                rocksdb::WriteBatchBase* batch) {
  const storage::LimitRecord& l = st.limits(static_cast<int>(st.waiting_on()) - 1);
  batch->Delete(keys::WaiterKey(tenant, LimKeyOf(l), st.priority(), st.due_ms(), st.task_seq()));
}

void Engine::Impl::ReleaseCommitted(std::string_view tenant, std::string_view id,
                                    const storage::JobState& st) {
  std::lock_guard<std::mutex> lock(limits_mu_);
  const std::string job_id(id);
  for (const auto& l : st.limits()) {
    KeyState* ks = limits_.Find(LimitIndex::Id(tenant, LimKeyOf(l)));
    if (ks == nullptr) continue;
    limits_.RemoveHolder(ks, job_id);
    if (!ks->waiters.empty()) {
      limits_.MarkDirty(ks);
    } else {
      limits_.MaybeDrop(ks);
    }
  }
}

void Engine::Impl::UnparkCommitted(std::string_view tenant, const storage::JobState& st,
                                   int index) {
  std::lock_guard<std::mutex> lock(limits_mu_);
  const storage::LimitRecord& l = st.limits(index);
  KeyState* ks = limits_.Find(LimitIndex::Id(tenant, LimKeyOf(l)));
  if (ks == nullptr) return;
  limits_.RemoveWaiter(ks, st.priority(), st.due_ms(), st.task_seq());
  if (!ks->waiters.empty()) {
    limits_.MarkDirty(ks);  // its max may have come from the job that left
  } else {
    limits_.MaybeDrop(ks);
  }
}

bool Engine::Impl::RunGrants(size_t budget) {
  // Round-robin over dirty keys, at most max_grants_per_key_per_pass grants per key per turn.
  size_t done = 0;
  std::string id;
  while (done < budget) {
    {
      std::lock_guard<std::mutex> lock(limits_mu_);
      if (!limits_.PopDirty(&id)) return false;
    }
    size_t per_key = 0;
    while (per_key < options_.max_grants_per_key_per_pass && done < budget && GrantOne(id)) {
      ++per_key;
      ++done;
    }
    if (per_key == options_.max_grants_per_key_per_pass || done >= budget) {
      std::lock_guard<std::mutex> lock(limits_mu_);
      if (KeyState* ks = limits_.Find(id); ks != nullptr && !ks->waiters.empty()) {
        limits_.MarkDirty(ks);  // more may be grantable: back of the line
      }
    }
  }
  std::lock_guard<std::mutex> lock(limits_mu_);
  return limits_.HasDirty();
}

bool Engine::Impl::GrantOne(const std::string& key_id) {
  LimitWaiter w;
  std::string tenant;
  {
    std::lock_guard<std::mutex> lock(limits_mu_);
    KeyState* ks = limits_.Find(key_id);
    if (ks == nullptr || ks->waiters.empty() || !ks->HasRoom()) return false;
    w = *ks->waiters.begin();
    tenant = ks->tenant;
  }
  std::lock_guard<std::mutex> stripe(Stripe(tenant, w.job_id));
  storage::JobState st;
  Status s = ReadJobState(tenant, w.job_id, &st);
  if (!s.ok() && s.code() != StatusCode::kNotFound) return false;
  const bool parked_here =
      s.ok() && st.status() == storage::STORED_STATUS_PENDING && st.waiting_on() > 0 &&
      static_cast<int>(st.waiting_on()) <= st.limits_size() && st.task_seq() == w.seq &&
      LimitIndex::Id(tenant, LimKeyOf(st.limits(static_cast<int>(st.waiting_on()) - 1))) == key_id;
  if (!parked_here) {
    // The store says this job no longer waits here: drop the stale memory entry.
    std::lock_guard<std::mutex> lock(limits_mu_);
    if (KeyState* ks = limits_.Find(key_id)) {
      limits_.RemoveWaiter(ks, w.priority, w.due_ms, w.seq);
      limits_.MaybeDrop(ks);
    }
    return true;
  }
  std::vector<storage::FloatingRecord> recs;
  if (!EnsureFloating(tenant, st, &recs).ok()) return false;

  const int from = static_cast<int>(st.waiting_on()) - 1;
  int to = -1;  // -1: granted; else the limit it parks on next
  {
    std::lock_guard<std::mutex> lock(limits_mu_);
    KeyState* here = limits_.Find(key_id);
    if (here == nullptr || !here->HasRoom()) return false;
    LimitWaiter probe;
    probe.priority = w.priority;
    probe.due_ms = w.due_ms;
    probe.seq = w.seq;
    if (!here->waiters.contains(probe)) return true;  // granted or moved by another pass
    const int n = st.limits_size();
    std::vector<KeyState*> ks(n);
    for (int i = 0; i < n; ++i) {
      ks[i] = i == from ? here : GetOrCreateKey(tenant, st.limits(i), &recs[i]);
      if (i != from && !ks[i]->HasRoomFor(ClaimOf(st, st.limits(i))) && to < 0) to = i;
    }
    limits_.RemoveWaiter(here, w.priority, w.due_ms, w.seq);
    if (to < 0) {
      for (int i = 0; i < n; ++i) limits_.AddHolder(ks[i], w.job_id, ClaimOf(st, st.limits(i)));
    } else {
      LimitWaiter moved = w;
      moved.claim = ClaimOf(st, st.limits(to));
      limits_.AddWaiter(ks[to], std::move(moved));
      for (int i = 0; i < n; ++i) {
        if (i != to) limits_.MaybeDrop(ks[i]);
      }
    }
  }
  JobBatch batch;
  DeleteWaiter(tenant, st, &batch);
  std::vector<std::pair<std::string, TaskRef>> published;
  if (to < 0) {
    PutHolds(tenant, w.job_id, &st, &batch);
    // Back to the ready range at its original position: priority, due time, seq.
    std::string qp = keys::QueuePrefix(tenant, st.queue());
    batch.Put(keys::TaskKey(qp, st.priority(), st.due_ms(), st.task_seq()), w.job_id);
    published.emplace_back(std::move(qp),
                           TaskRef{st.priority(), st.due_ms(), st.task_seq(), w.job_id});
  } else {
    PutWaiter(tenant, w.job_id, &st, to, &batch);
  }
  const int64_t now = Now();
  st.set_updated_ms(now);
  PutJob(tenant, w.job_id, &st, now, &batch);
  if (!Write(&batch).ok()) return false;
  if (to < 0) {
    PublishTasks(&published, Now());
    counters_.grants.fetch_add(1, std::memory_order_relaxed);
  }
  return true;
}

std::optional<RefreshTask> Engine::Impl::IssueRefresh(const LeaseRequest& request, int64_t now) {
  {
    std::lock_guard<std::mutex> lock(limits_mu_);
    if (limits_.NextRefreshDueMs() > now) return std::nullopt;
  }
  const uint64_t token = NextSeq();  // may write (block reservation): never under limits_mu_
  const int64_t expires = now + static_cast<int64_t>(options_.refresh_lease_ms);
  std::lock_guard<std::mutex> lock(limits_mu_);
  KeyState* ks = limits_.IssueRefresh(request.tenant, request.queue, now, token, expires);
  if (ks == nullptr) return std::nullopt;
  counters_.refreshes_issued.fetch_add(1, std::memory_order_relaxed);
  RefreshTask t;
  t.tenant = ks->tenant;
  t.key = std::string(ks->key());
  t.metadata.insert(ks->rec.metadata().begin(), ks->rec.metadata().end());
  t.current_max = ks->rec.current_max();
  t.default_max = ks->rec.default_max();
  t.last_refreshed_ms = ks->rec.last_refreshed_ms();
  t.lease_token = token;
  t.lease_expires_ms = expires;
  t.lease_ms = options_.refresh_lease_ms;
  return t;
}

Result<int64_t> Engine::Impl::HeartbeatRefresh(std::string_view tenant, std::string_view key,
                                               uint64_t token) {
  Status s = validate::LimitKey(tenant, key, options_.limits);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(limits_mu_);
  KeyState* ks = limits_.Find(LimitIndex::Id(tenant, keys::LimKey(true, key)));
  const int64_t now = Now();
  if (ks == nullptr || !ks->refresh_in_flight || ks->refresh_token != token ||
      ks->refresh_expires_ms <= now) {
    return Status::LeaseLost("refresh of \"" + std::string(key) +
                             "\": the token is stale or the refresh lease expired");
  }
  limits_.ExtendRefresh(ks, now + static_cast<int64_t>(options_.refresh_lease_ms));
  return ks->refresh_expires_ms;
}

Status Engine::Impl::ApplyFloating(std::string_view tenant, std::string_view key,
                                   const std::function<Status(storage::FloatingRecord*)>& change,
                                   std::optional<uint64_t> token) {
  std::lock_guard<std::mutex> stripe(FloatStripe(tenant, key));
  const std::string id = LimitIndex::Id(tenant, keys::LimKey(true, key));
  const int64_t now = Now();
  storage::FloatingRecord rec;
  bool in_memory = false;
  {
    std::lock_guard<std::mutex> lock(limits_mu_);
    KeyState* ks = limits_.Find(id);
    if (token) {
      if (ks == nullptr || !ks->refresh_in_flight || ks->refresh_token != *token ||
          ks->refresh_expires_ms <= now) {
        return Status::LeaseLost("refresh of \"" + std::string(key) +
                                 "\": the token is stale or the refresh lease expired");
      }
    }
    if (ks != nullptr) {
      rec = ks->rec;
      in_memory = true;
    }
  }
  const std::string fkey = keys::FloatingKey(tenant, key);
  if (!in_memory) {
    std::string raw;
    rocksdb::Status rs = db_->Get(read_options_, fkey, &raw);
    if (rs.IsNotFound()) {
      return Status::NotFound("floating limit \"" + std::string(key) + "\" not found");
    }
    if (!rs.ok()) return StorageError(rs, "read floating limit");
    if (!rec.ParseFromString(raw)) return Status::Corruption("floating limit record is malformed");
  }
  Status s = change(&rec);
  if (!s.ok()) return s;
  JobBatch batch;
  batch.Put(fkey, rec.SerializeAsString());
  s = Write(&batch);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(limits_mu_);
  if (KeyState* ks = limits_.Find(id)) {
    ks->rec = rec;
    if (token && ks->refresh_token == *token) {
      ks->refresh_in_flight = false;
      ks->refresh_token = 0;
    }
    limits_.Reschedule(ks);
    if (!ks->waiters.empty()) limits_.MarkDirty(ks);
    limits_.MaybeDrop(ks);
  }
  {
    // The refresh schedule moved: long-polls recompute when to wake (rare: one per refresh).
    std::lock_guard<std::mutex> index_lock(index_mu_);
    index_.NotifyAll();
  }
  return Status::Ok();
}

Status Engine::Impl::CompleteRefresh(std::string_view tenant, std::string_view key, uint64_t token,
                                     const RefreshOutcome& outcome) {
  Status s = validate::LimitKey(tenant, key, options_.limits);
  if (!s.ok()) return s;
  if (!outcome.ok) {
    s = validate::TaskOutcome(Outcome::Failure(outcome.error.code, outcome.error.message),
                              options_.limits);
    if (!s.ok()) return s;
  }
  const int64_t now = Now();
  const uint64_t initial = options_.refresh_backoff_initial_ms;
  const uint64_t cap = options_.refresh_backoff_max_ms;
  return ApplyFloating(
      tenant, key,
      [&](storage::FloatingRecord* rec) {
        if (outcome.ok) {
          rec->set_current_max(outcome.new_max);
          rec->set_last_refreshed_ms(now);
          rec->set_failures(0);
          rec->set_next_retry_ms(0);
        } else {
          // Keep the last good value; back off initial * 2^(failures-1), capped.
          rec->set_failures(rec->failures() + 1);
          const uint32_t shift = std::min<uint32_t>(rec->failures() - 1, 30);
          const uint64_t delay = std::min<uint64_t>(cap, initial << shift);
          rec->set_next_retry_ms(now + static_cast<int64_t>(delay));
        }
        return Status::Ok();
      },
      token);
}

Status Engine::Impl::SetFloatingLimit(std::string_view tenant, std::string_view key, uint32_t max) {
  Status s = validate::LimitKey(tenant, key, options_.limits);
  if (!s.ok()) return s;
  const int64_t now = Now();
  return ApplyFloating(
      tenant, key,
      [&](storage::FloatingRecord* rec) {
        rec->set_current_max(max);
        rec->set_last_refreshed_ms(now);
        rec->set_failures(0);
        rec->set_next_retry_ms(0);
        return Status::Ok();
      },
      std::nullopt);
}

namespace {

FloatingLimitState StateOf(std::string_view tenant, std::string_view key,
                           const storage::FloatingRecord& rec) {
  FloatingLimitState f;
  f.tenant = std::string(tenant);
  f.key = std::string(key);
  f.current_max = rec.current_max();
  f.default_max = rec.default_max();
  f.refresh_interval_ms = rec.refresh_interval_ms();
  f.last_refreshed_ms = rec.last_refreshed_ms();
  f.metadata.insert(rec.metadata().begin(), rec.metadata().end());
  f.consecutive_failures = rec.failures();
  f.next_refresh_ms = rec.failures() > 0 ? rec.next_retry_ms()
                                         : rec.last_refreshed_ms() +
                                               static_cast<int64_t>(rec.refresh_interval_ms());
  if (rec.failures() == 0 && rec.last_refreshed_ms() == 0) f.next_refresh_ms = 0;
  return f;
}

}  // namespace

Result<FloatingLimitState> Engine::Impl::GetFloatingLimit(std::string_view tenant,
                                                          std::string_view key) {
  Status s = validate::LimitKey(tenant, key, options_.limits);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(limits_mu_);
    if (KeyState* ks = limits_.Find(LimitIndex::Id(tenant, keys::LimKey(true, key)))) {
      FloatingLimitState f = StateOf(tenant, key, ks->rec);
      f.refresh_in_flight = ks->refresh_in_flight;
      f.holders = ks->holders.size();
      f.waiters = ks->waiters.size();
      return f;
    }
  }
  std::string raw;
  rocksdb::Status rs = db_->Get(read_options_, keys::FloatingKey(tenant, key), &raw);
  if (rs.IsNotFound()) {
    return Status::NotFound("floating limit \"" + std::string(key) + "\" not found");
  }
  if (!rs.ok()) return StorageError(rs, "read floating limit");
  storage::FloatingRecord rec;
  if (!rec.ParseFromString(raw)) return Status::Corruption("floating limit record is malformed");
  return StateOf(tenant, key, rec);
}

Result<std::vector<FloatingLimitState>> Engine::Impl::ListFloatingLimits(std::string_view tenant,
                                                                         std::string_view after_key,
                                                                         uint32_t limit) {
  Status s = validate::LimitKey(tenant, after_key.empty() ? "x" : after_key, options_.limits);
  if (!s.ok()) return s;
  if (limit == 0 || limit > 10'000) {
    return Status::InvalidArgument("limit must be 1..10000");
  }
  std::string prefix(1, keys::kFloating);
  keys::PutStr(&prefix, tenant);
  const std::string end = PrefixEnd(prefix);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro = read_options_;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  if (after_key.empty()) {
    it->Seek(prefix);
  } else {
    const std::string from = keys::FloatingKey(tenant, after_key);
    it->Seek(from);
    if (it->Valid() && it->key() == rocksdb::Slice(from)) it->Next();
  }
  std::vector<std::string> keys_found;
  std::vector<FloatingLimitState> out;
  for (; it->Valid() && out.size() < limit; it->Next()) {
    std::string_view t, k;
    if (!keys::ParseJobScopedKey(std::string_view(it->key().data(), it->key().size()), &t, &k)) {
      return Status::Corruption("malformed floating limit key");
    }
    storage::FloatingRecord rec;
    if (!rec.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status::Corruption("floating limit record is malformed");
    }
    out.push_back(StateOf(t, k, rec));
  }
  if (!it->status().ok()) return StorageError(it->status(), "list floating limits");
  std::lock_guard<std::mutex> lock(limits_mu_);
  for (auto& f : out) {
    if (KeyState* ks = limits_.Find(LimitIndex::Id(tenant, keys::LimKey(true, f.key)))) {
      f.refresh_in_flight = ks->refresh_in_flight;
      f.holders = ks->holders.size();
      f.waiters = ks->waiters.size();
    }
  }
  return out;
}

Result<ConcurrencyKeyInfo> Engine::Impl::GetConcurrencyKey(std::string_view tenant,
                                                           ConcurrencyLimit::Kind kind,
                                                           std::string_view key) {
  Status s = validate::LimitKey(tenant, key, options_.limits);
  if (!s.ok()) return s;
  ConcurrencyKeyInfo info;
  info.tenant = std::string(tenant);
  info.key = std::string(key);
  info.kind = kind;
  const bool floating = kind == ConcurrencyLimit::Kind::kFloating;
  std::lock_guard<std::mutex> lock(limits_mu_);
  if (KeyState* ks = limits_.Find(LimitIndex::Id(tenant, keys::LimKey(floating, key)))) {
    info.holders = ks->holders.size();
    info.waiters = ks->waiters.size();
    info.max = ks->Max();
  }
  return info;
}

std::vector<ConcurrencyKeyInfo> Engine::Impl::ListConcurrencyKeys(
    uint32_t limit, const std::string_view* tenant) const {
  std::vector<ConcurrencyKeyInfo> out;
  std::lock_guard<std::mutex> lock(limits_mu_);
  for (const KeyState* ks : limits_.Busiest(limit, tenant)) {
    ConcurrencyKeyInfo info;
    info.tenant = ks->tenant;
    info.key = std::string(ks->key());
    info.kind = ks->floating ? ConcurrencyLimit::Kind::kFloating : ConcurrencyLimit::Kind::kFixed;
    info.holders = ks->holders.size();
    info.waiters = ks->waiters.size();
    info.max = ks->Max();
    out.push_back(std::move(info));
  }
  return out;
}

Status Engine::Impl::RebuildLimits() {
  // Floating records of keys that come back active.
  auto load_floating = [this](std::string_view tenant, std::string_view limkey,
                              storage::FloatingRecord* rec) -> Status {
    if (limkey.empty() || limkey[0] != 'f') return Status::Ok();
    std::string raw;
    rocksdb::Status rs = db_->Get(read_options_, keys::FloatingKey(tenant, limkey.substr(1)), &raw);
    if (!rs.ok() || !rec->ParseFromString(raw)) {
      return Status::Corruption("active floating limit without a readable record");
    }
    return Status::Ok();
  };
  std::lock_guard<std::mutex> lock(limits_mu_);
  for (char space : {keys::kHolder, keys::kWaiter}) {
    std::string lo(1, space), hi = PrefixEnd(lo);
    rocksdb::Slice upper(hi);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
    for (it->Seek(lo); it->Valid(); it->Next()) {
      const std::string_view key(it->key().data(), it->key().size());
      keys::Reader val(std::string_view(it->value().data(), it->value().size()));
      std::string_view tenant, limkey, id;
      LimitClaim claim;
      keys::TaskKeyParts parts;
      const bool ok = space == keys::kHolder ? keys::ParseHolderKey(key, &tenant, &limkey, &id)
                                             : keys::ParseWaiterKey(key, &tenant, &limkey, &parts);
      if (!ok || !GetClaim(&val, &claim)) return Status::Corruption("malformed limit entry");
      storage::FloatingRecord rec;
      if (limits_.Find(LimitIndex::Id(tenant, limkey)) == nullptr) {
        Status s = load_floating(tenant, limkey, &rec);
        if (!s.ok()) return s;
      }
      KeyState* ks = limits_.GetOrCreate(tenant, limkey, &rec);
      if (space == keys::kHolder) {
        limits_.AddHolder(ks, std::string(id), claim);
      } else {
        val.GetRest(&id);
        LimitWaiter w{parts.priority, parts.due_ms, parts.seq, std::string(id), claim};
        limits_.AddWaiter(ks, std::move(w));
        limits_.MarkDirty(ks);  // a crash may have fallen between a release and its grant
      }
    }
    if (!it->status().ok()) return Status::IoError("scan limits: " + it->status().ToString());
  }
  return Status::Ok();
}

}  // namespace sluice
