// Job indexes (by status, queue + status, metadata pair + status; keys.h), their upkeep in
// every transition's write, the promotion of scheduled jobs that became due, ListJobs,
// CountJobs, VerifyIndexes and the format-1 migration. docs/decisions.md §53.
//
// Every job is "filed" under one status byte (JobStatus) in each index; JobState.indexed_as
// remembers which, so a transition rewrites exactly the entries it changes, in its own write.
// Scheduled vs waiting is derived from time: a pending job whose due time is in the future is
// filed as scheduled and also in the 'D' range; the reaper promotes it to waiting once due
// (PromoteDue). Between its due time and its promotion ("lag") readers correct for it through
// the 'D' range, which then holds exactly the lagging jobs, so answers are exact at any time.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "codec.h"
#include "engine_impl.h"
#include "keys.h"
#include "validate.h"

namespace sluice {
namespace {

constexpr uint8_t kScheduled = static_cast<uint8_t>(JobStatus::kScheduled);
constexpr uint8_t kWaiting = static_cast<uint8_t>(JobStatus::kWaiting);
constexpr uint8_t kRunningStatus = static_cast<uint8_t>(JobStatus::kRunning);
constexpr int kStatuses = 6;
constexpr size_t kCountsBytes = 8 * static_cast<size_t>(kStatuses);
constexpr int64_t kDueFloorMarginMs = 10'000;

// The status a job is filed under at `now`. Parked or granted jobs are due by construction;
// running jobs stay filed as waiting (Engine::Impl::running_ knows which are running).
uint8_t FileStatus(const storage::JobState& st, int64_t now) {
  switch (st.status()) {
    case storage::STORED_STATUS_PENDING:
      return st.waiting_on() > 0 || st.holds_limits() || st.due_ms() <= now ? kWaiting : kScheduled;
    case storage::STORED_STATUS_RUNNING:
      return kWaiting;  // a lease writes no index entry: running_ tells them apart
    case storage::STORED_STATUS_SUCCEEDED:
      return static_cast<uint8_t>(JobStatus::kSucceeded);
    case storage::STORED_STATUS_FAILED:
      return static_cast<uint8_t>(JobStatus::kFailed);
    default:
      return static_cast<uint8_t>(JobStatus::kCancelled);
  }
}

// A counter shard value ('C'): the number of jobs per status (JobStatus order), int64 LE each.
using Counts = JobCounts;

std::string EncodeCounts(const Counts& c) {
  std::string out(kCountsBytes, '\0');
  for (int s = 0; s < kStatuses; ++s) {
    const auto u = static_cast<uint64_t>(c[s]);
    for (int i = 0; i < 8; ++i) out[8 * s + i] = static_cast<char>((u >> (8 * i)) & 0xff);
  }
  return out;
}

bool DecodeCounts(std::string_view in, Counts* c) {
  if (in.size() != kCountsBytes) return false;
  for (int s = 0; s < kStatuses; ++s) {
    uint64_t u = 0;
    for (int i = 7; i >= 0; --i) u = (u << 8) | static_cast<uint8_t>(in[8 * s + i]);
    (*c)[s] = static_cast<int64_t>(u);
  }
  return true;
}

// The key prefix of one queue's counter shards.
std::string QueueCountPrefix(std::string_view tenant, std::string_view queue) {
  const std::string k = keys::CountKey(tenant, queue, 0);
  return k.substr(0, k.size() - 2);
}

// A delta moving one job from status `from` (or nowhere, -1) to `to` (or nowhere, -1).
Counts CountDelta(int from, int to) {
  Counts d{};
  if (from >= 0) d[from] = -1;
  if (to >= 0) d[to] = 1;
  return d;
}

// Value of a G/Y/M entry.
std::string IndexValue(std::string_view id, std::string_view queue, int64_t due) {
  std::string v;
  keys::PutStr(&v, id);
  keys::PutStr(&v, queue);
  keys::PutU64(&v, static_cast<uint64_t>(due < 0 ? 0 : due));
  return v;
}

struct IndexEntry {
  std::string_view id;
  std::string_view queue;
  int64_t due = 0;
};

bool ParseIndexValue(std::string_view v, IndexEntry* out) {
  keys::Reader r(v);
  uint64_t due = 0;
  if (!r.GetStr(&out->id) || !r.GetStr(&out->queue) || !r.GetU64(&due) || !r.empty()) return false;
  out->due = static_cast<int64_t>(due);
  return true;
}

// Value of a 'D' entry.
std::string DueValue(std::string_view tenant, std::string_view id, std::string_view queue,
                     int64_t created) {
  std::string v;
  keys::PutStr(&v, tenant);
  keys::PutStr(&v, id);
  keys::PutStr(&v, queue);
  keys::PutU64(&v, static_cast<uint64_t>(created < 0 ? 0 : created));
  return v;
}

struct DueEntry {
  std::string tenant, id, queue;
  int64_t created = 0;
  uint64_t seq = 0;
  int64_t due = 0;
};

bool ParseDue(std::string_view key, std::string_view value, DueEntry* out) {
  keys::Reader k(key.substr(1));
  uint64_t due = 0;
  if (key.empty() || !k.GetU64(&due) || !k.GetU64(&out->seq) || !k.empty()) return false;
  keys::Reader r(value);
  std::string_view t, id, q;
  uint64_t created = 0;
  if (!r.GetStr(&t) || !r.GetStr(&id) || !r.GetStr(&q) || !r.GetU64(&created) || !r.empty()) {
    return false;
  }
  out->tenant = std::string(t);
  out->id = std::string(id);
  out->queue = std::string(q);
  out->created = static_cast<int64_t>(created);
  out->due = static_cast<int64_t>(due);
  return true;
}

// The Y and M entries of a job filed under `status` (D is separate: scheduled only). Listings by
// status alone merge the Y ranges of the tenant's queues.
template <class F>
void ForEachEntry(std::string_view tenant, std::string_view id, const storage::JobState& st,
                  uint8_t status, int64_t due, F&& fn) {
  const std::string value = IndexValue(id, st.queue(), status == kScheduled ? due : 0);
  auto emit = [&](std::string key) {
    keys::PutPos(&key, st.created_ms(), st.enqueue_seq());
    fn(key, value);
  };
  emit(keys::IdxQueuePrefix(tenant, st.queue(), status));
  for (const auto& [k, v] : st.metadata()) emit(keys::IdxMetaPrefix(tenant, k, v, status));
}

// Cursor: "1" + hex(created) + hex(seq) + hex(fingerprint of the listing it belongs to).
uint32_t Fingerprint(const ListJobsRequest& r) {
  uint32_t h = 2166136261u;
  auto mix = [&h](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<uint8_t>(c);
      h *= 16777619u;
    }
    h ^= 0xff;
    h *= 16777619u;
  };
  const JobFilter& f = r.filter;
  mix(f.tenant);
  mix(f.queue);
  std::string st;
  for (JobStatus s : f.statuses) st.push_back(static_cast<char>('0' + static_cast<int>(s)));
  std::sort(st.begin(), st.end());
  mix(st);
  mix(f.id);
  mix(f.id_prefix);
  for (const auto& [k, v] : f.metadata) {
    mix(k);
    mix(v);
  }
  mix(std::to_string(f.created_from_ms));
  mix(std::to_string(f.created_to_ms));
  mix(r.newest_first ? "d" : "a");
  return h;
}

std::string Hex(uint64_t v, int digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = kDigits[v & 0xf];
  return out;
}

bool ParseHex(std::string_view s, uint64_t* v) {
  *v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    *v = (*v << 4) | static_cast<uint64_t>(d);
  }
  return true;
}

using Pos = std::pair<uint64_t, uint64_t>;  // (created_ms, enqueue_seq)

std::string EncodeCursor(Pos p, uint32_t fp) {
  return "1" + Hex(p.first, 16) + Hex(p.second, 16) + Hex(fp, 8);
}

bool DecodeCursor(std::string_view c, uint32_t fp, Pos* p) {
  uint64_t got = 0;
  return c.size() == 41 && c[0] == '1' && ParseHex(c.substr(1, 16), &p->first) &&
         ParseHex(c.substr(17, 16), &p->second) && ParseHex(c.substr(33, 8), &got) && got == fp;
}

// One index range, iterated in listing order within [lower, upper).
struct Source {
  std::string lower, upper;
  rocksdb::Slice lo, hi;
  std::unique_ptr<rocksdb::Iterator> it;
  uint8_t status = 0;
  bool future_only = false;  // filed as scheduled and only scheduled wanted: keep due > now
};

// A job read from an index during a listing.
struct Hit {
  Pos pos;
  std::string id, queue;
  uint8_t status = 0;
  int64_t due = 0;
  bool lagging = false;  // from the 'D' range: filed as scheduled, due by now
};

}  // namespace

namespace {
std::pair<uint64_t, uint64_t> PosOf(const storage::JobState& st) {
  return {static_cast<uint64_t>(std::max<int64_t>(st.created_ms(), 0)), st.enqueue_seq()};
}
}  // namespace

void Engine::Impl::AddRunning(std::string_view tenant, std::string_view id,
                              const storage::JobState& st) {
  std::lock_guard<std::mutex> lock(running_mu_);
  auto t = running_.find(tenant);
  if (t == running_.end()) t = running_.emplace(std::string(tenant), decltype(t->second){}).first;
  if (t->second.emplace(PosOf(st), RunningJob{std::string(id), st.queue()}).second) {
    ++running_per_queue_[{std::string(tenant), st.queue()}];
  }
}

void Engine::Impl::RemoveRunning(std::string_view tenant, const storage::JobState& st) {
  std::lock_guard<std::mutex> lock(running_mu_);
  auto t = running_.find(tenant);
  if (t == running_.end() || t->second.erase(PosOf(st)) == 0) return;
  if (t->second.empty()) running_.erase(t);
  auto q = running_per_queue_.find({std::string(tenant), st.queue()});
  if (q != running_per_queue_.end() && --q->second <= 0) running_per_queue_.erase(q);
}

bool Engine::Impl::MaybeRunning(std::string_view tenant, std::pair<uint64_t, uint64_t> pos) const {
  std::lock_guard<std::mutex> lock(running_mu_);
  auto t = running_.find(tenant);
  return t != running_.end() && t->second.contains(pos);
}

Status Engine::Impl::QueuesOf(std::string_view tenant, const rocksdb::ReadOptions& ro,
                              uint64_t* visited, std::vector<std::string>* out) {
  // Every queue that ever had jobs has counter shards: skip from one queue's shards to the next.
  std::string prefix(1, keys::kCount);
  keys::PutStr(&prefix, tenant);
  const std::string end = keys::PrefixEnd(prefix);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions o = ro;
  o.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(o));
  for (it->Seek(prefix); it->Valid();) {
    ++*visited;
    keys::Reader r(std::string_view(it->key().data(), it->key().size()).substr(1));
    std::string_view t, q;
    if (!r.GetStr(&t) || !r.GetStr(&q)) return Status::Corruption("malformed job counter key");
    std::string p = keys::IdxQueuePrefix(tenant, q, 0);
    p.pop_back();
    out->push_back(std::move(p));
    std::string next(1, keys::kCount);
    keys::PutStr(&next, tenant);
    keys::PutStr(&next, q);
    it->Seek(keys::PrefixEnd(next));
  }
  return it->status().ok() ? Status::Ok() : StorageError(it->status(), "scan job counters");
}

std::string Engine::Impl::DueScanStart() {
  const int64_t floor = due_floor_.load(std::memory_order_acquire);
  if (Now() < floor) {
    due_floor_.store(0, std::memory_order_release);  // the clock stepped back: rescan all
    return std::string(1, keys::kIdxDue);
  }
  return keys::IdxDueKey(floor, 0);
}

CounterSlots::Slot* CounterSlots::SlotLocked(uint16_t id) {
  while (slots_.size() <= id) {
    auto slot = std::make_unique<Slot>();
    slot->id = static_cast<uint16_t>(slots_.size());
    free_.push_back(slot.get());
    std::push_heap(free_.begin(), free_.end(), [](Slot* a, Slot* b) { return a->id > b->id; });
    slots_.push_back(std::move(slot));
  }
  return slots_[id].get();
}

CounterSlots::Slot* CounterSlots::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  constexpr size_t kMaxSlots = 65536;
  freed_.wait(lock, [&] { return !free_.empty() || slots_.size() < kMaxSlots; });
  if (free_.empty()) SlotLocked(static_cast<uint16_t>(slots_.size()));
  std::pop_heap(free_.begin(), free_.end(), [](Slot* a, Slot* b) { return a->id > b->id; });
  Slot* slot = free_.back();
  free_.pop_back();
  return slot;
}

void CounterSlots::Release(Slot* slot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(slot);
    std::push_heap(free_.begin(), free_.end(), [](Slot* a, Slot* b) { return a->id > b->id; });
  }
  freed_.notify_one();
}

void CounterSlots::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  free_.clear();
  slots_.clear();
}

void CounterSlots::Load(uint16_t id, const std::string& prefix, const JobCounts& counts) {
  std::lock_guard<std::mutex> lock(mu_);
  SlotLocked(id)->counts[prefix] = counts;
}

CounterWrite Engine::Impl::FlushCounts(IndexSink* sink) {
  if (sink->counts().empty()) return {};
  CounterWrite w(&counter_slots_, counter_slots_.Acquire());
  CounterSlots::Slot* slot = w.slot();
  for (auto& [prefix, delta] : sink->counts()) {
    Counts c{};
    if (auto it = slot->counts.find(prefix); it != slot->counts.end()) c = it->second;
    for (int b = 0; b < kStatuses; ++b) c[b] += delta[b];
    std::string key = prefix;
    key.push_back(static_cast<char>(slot->id >> 8));
    key.push_back(static_cast<char>(slot->id & 0xff));
    sink->Put(key, EncodeCounts(c));
    w.Stage(prefix, c);
  }
  sink->counts().clear();
  return w;
}

Status Engine::Impl::LoadCounters() {
  counter_slots_.Reset();
  std::map<std::string, Counts> total;  // queue counter prefix -> sum over its slots
  std::vector<std::string> stale;       // keys of slots other than 0
  const std::string lo(1, keys::kCount), hi = keys::PrefixEnd(lo);
  rocksdb::Slice upper(hi);
  rocksdb::ReadOptions ro = read_options_;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(lo); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    keys::Reader r(key.substr(1));
    std::string_view t, q, slot;
    Counts c{};
    if (!r.GetStr(&t) || !r.GetStr(&q) || !r.GetRest(&slot) || slot.size() != 2 ||
        !DecodeCounts(std::string_view(it->value().data(), it->value().size()), &c)) {
      return Status::Corruption("malformed job counter");
    }
    auto [entry, fresh] = total.try_emplace(std::string(key.substr(0, key.size() - 2)));
    if (fresh) entry->second.fill(0);
    for (int b = 0; b < kStatuses; ++b) entry->second[b] += c[b];
    if (slot != std::string_view("\0\0", 2)) stale.emplace_back(key);
  }
  if (!it->status().ok()) return StorageError(it->status(), "scan job counters");
  if (!stale.empty()) {
    rocksdb::WriteBatch fold;
    for (const std::string& k : stale) fold.Delete(k);
    for (const auto& [prefix, sum] : total) {
      fold.Put(prefix + std::string("\0\0", 2), EncodeCounts(sum));
    }
    rocksdb::WriteOptions sync;
    sync.sync = true;
    rocksdb::Status rs = db_->GetBaseDB()->Write(sync, &fold);
    if (!rs.ok()) return StorageError(rs, "fold job counters");
  }
  for (const auto& [prefix, sum] : total) counter_slots_.Load(0, prefix, sum);
  return Status::Ok();
}

void Engine::Impl::FileJob(std::string_view tenant, std::string_view id, storage::JobState* st,
                           int64_t now, IndexSink* sink) {
  const bool filed = st->indexed_as() > 0;
  const uint8_t before = filed ? static_cast<uint8_t>(st->indexed_as() - 1) : 0;
  const int64_t before_due = st->indexed_due_ms();
  const uint8_t after = FileStatus(*st, now);
  const int64_t after_due = after == kScheduled ? st->due_ms() : 0;
  if (filed && before == after && before_due == after_due) return;
  if (filed) {
    ForEachEntry(tenant, id, *st, before, before_due,
                 [&](const std::string& k, const std::string&) { sink->DeleteIndex(k); });
    if (before == kScheduled) sink->DeleteIndex(keys::IdxDueKey(before_due, st->enqueue_seq()));
  }
  ForEachEntry(tenant, id, *st, after, after_due,
               [&](const std::string& k, const std::string& v) { sink->Put(k, v); });
  if (after == kScheduled) {
    sink->Put(keys::IdxDueKey(after_due, st->enqueue_seq()),
              DueValue(tenant, id, st->queue(), st->created_ms()));
  }
  if (!filed || before != after) {
    sink->Count(QueueCountPrefix(tenant, st->queue()), CountDelta(filed ? before : -1, after));
  }
  st->set_indexed_as(after + 1u);
  st->set_indexed_due_ms(after_due);
}

void Engine::Impl::UnfileJob(std::string_view tenant, std::string_view id,
                             const storage::JobState& st, IndexSink* sink) {
  if (st.indexed_as() == 0) return;
  const auto before = static_cast<uint8_t>(st.indexed_as() - 1);
  ForEachEntry(tenant, id, st, before, st.indexed_due_ms(),
               [&](const std::string& k, const std::string&) { sink->DeleteIndex(k); });
  if (before == kScheduled)
    sink->DeleteIndex(keys::IdxDueKey(st.indexed_due_ms(), st.enqueue_seq()));
  sink->Count(QueueCountPrefix(tenant, st.queue()), CountDelta(before, -1));
}

void Engine::Impl::PutJob(std::string_view tenant, std::string_view id, storage::JobState* st,
                          int64_t now, JobBatch* batch) {
  FileJob(tenant, id, st, now, batch);
  batch->Put(keys::JobKey(tenant, id), st->SerializeAsString());
  // The record changes: a running entry of the job is stale from here on (the caller holds
  // the stripe; a lease adds the entry back once its write returned).
  if (auto& live = LiveOf(tenant, id); !live.empty()) live.erase(keys::LeaseKey(tenant, id));
}

Result<size_t> Engine::Impl::PromoteDue(int64_t now) {
  size_t promoted = 0;
  for (;;) {
    // Up to 256 due entries per write, each under its job's stripe.
    std::vector<DueEntry> due;
    {
      const std::string lo = DueScanStart();
      const std::string hi = keys::IdxDueKey(now + 1, 0);
      rocksdb::Slice upper(hi);
      rocksdb::ReadOptions ro = read_options_;
      ro.iterate_upper_bound = &upper;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
      for (it->Seek(lo); it->Valid() && due.size() < 256; it->Next()) {
        DueEntry d;
        if (!ParseDue(std::string_view(it->key().data(), it->key().size()),
                      std::string_view(it->value().data(), it->value().size()), &d)) {
          return Fatal(Status::Corruption("malformed due-index entry"));
        }
        due.push_back(std::move(d));
      }
      if (!it->status().ok()) return StorageError(it->status(), "scan due index");
    }
    if (due.empty()) {
      // Everything due by now is promoted. Transitions still in flight may file jobs due a
      // little before `now` (they read the clock earlier): keep a margin below it.
      due_floor_.store(std::max<int64_t>(0, now - kDueFloorMarginMs), std::memory_order_release);
      return promoted;
    }
    std::vector<size_t> stripes;
    stripes.reserve(due.size());
    for (const auto& d : due) stripes.push_back(StripeOf(d.tenant, d.id));
    auto locks = LockStripes(std::move(stripes));
    JobBatch batch;
    for (const auto& d : due) {
      storage::JobState st;
      Status s = ReadJobState(d.tenant, d.id, &st);
      if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
      if (!s.ok() || st.indexed_as() != kScheduled + 1u || st.indexed_due_ms() != d.due) {
        // A stray entry (never written by a transition; VerifyIndexes reports it): drop it
        // rather than promote it forever.
        batch.DeleteIndex(keys::IdxDueKey(d.due, d.seq));
        continue;
      }
      PutJob(d.tenant, d.id, &st, now, &batch);  // due <= now: filed as waiting
      ++promoted;
    }
    // Only the indexes change: not fsynced, like a lease (a lost promotion is redone).
    Status s = Write(&batch, /*fsync=*/false);
    if (!s.ok()) return s;
  }
}

Result<ListJobsResult> Engine::Impl::ListJobs(const ListJobsRequest& req) {
  const JobFilter& f = req.filter;
  Status s = validate::JobFilter(f, options_.limits);
  if (!s.ok()) return s;
  if (req.limit == 0 || req.limit > options_.limits.max_list_page) {
    return Status::InvalidArgument("limit must be 1.." +
                                   std::to_string(options_.limits.max_list_page) + ", got " +
                                   std::to_string(req.limit));
  }
  if (static_cast<int>(req.view) > static_cast<int>(JobView::kFull)) {
    return Status::InvalidArgument("view is not a JobView");
  }
  const uint32_t fp = Fingerprint(req);
  std::optional<Pos> after;
  if (!req.cursor.empty()) {
    Pos p;
    if (!DecodeCursor(req.cursor, fp, &p)) {
      return Status::InvalidArgument(
          "cursor is malformed or belongs to another listing (filter or order changed)");
    }
    after = p;
  }
  const int64_t now = Now();
  const SnapshotRead view(db_.get(), read_options_);
  const rocksdb::ReadOptions& ro = view.options();

  ListJobsResult out;
  bool want[kStatuses] = {};
  for (JobStatus st : f.statuses) want[static_cast<int>(st)] = true;
  if (f.statuses.empty()) std::fill(std::begin(want), std::end(want), true);

  const Pos from{static_cast<uint64_t>(std::max<int64_t>(f.created_from_ms, 0)), 0};
  const Pos to{static_cast<uint64_t>(std::max<int64_t>(f.created_to_ms, 0)), 0};
  auto in_range = [&](Pos p) {
    if (p < from || p >= to) return false;
    if (!after) return true;
    return req.newest_first ? p < *after : p > *after;
  };

  // Reads the job record of a hit; false when it no longer matches a check that needs it.
  auto read_state = [&](const std::string& id, storage::JobState* st) -> Status {
    std::string raw;
    ++out.keys_visited;
    rocksdb::Status rs = db_->Get(ro, keys::JobKey(f.tenant, id), &raw);
    if (!rs.ok()) {
      return rs.IsNotFound() ? Status::Corruption("index entry of a missing job \"" + id + "\"")
                             : StorageError(rs, "read job");
    }
    if (!st->ParseFromString(raw)) return Status::Corruption("job record is malformed");
    return Status::Ok();
  };
  auto meta_match = [&](const storage::JobState& st, size_t first) {
    for (size_t i = first; i < f.metadata.size(); ++i) {
      auto it = st.metadata().find(f.metadata[i].first);
      if (it == st.metadata().end() || it->second != f.metadata[i].second) return false;
    }
    return true;
  };
  auto emit = [&](const Hit& h, const storage::JobState* known) -> Status {
    Job j;
    if (req.view == JobView::kIndex) {
      j.id = h.id;
      j.tenant = f.tenant;
      j.queue = h.queue;
      j.status = static_cast<JobStatus>(h.status);
      if (h.status == kScheduled && h.due <= now) j.status = JobStatus::kWaiting;
      j.created_ms = static_cast<int64_t>(h.pos.first);
      out.jobs.push_back(std::move(j));
      return Status::Ok();
    }
    storage::JobState st;
    if (known != nullptr) {
      st = *known;
    } else {
      Status rs = read_state(h.id, &st);
      if (!rs.ok()) return rs;
    }
    storage::JobBody body;
    if (req.view == JobView::kFull) {
      if (Status b = ReadBody(ro, f.tenant, h.id, st, &body, &out.keys_visited); !b.ok()) return b;
    }
    out.jobs.push_back(
        codec::ToJob(f.tenant, h.id, st, req.view == JobView::kFull ? &body : nullptr, now));
    return Status::Ok();
  };

  // One job by id: a point read.
  if (!f.id.empty()) {
    storage::JobState st;
    std::string raw;
    ++out.keys_visited;
    rocksdb::Status rs = db_->Get(ro, keys::JobKey(f.tenant, f.id), &raw);
    if (rs.IsNotFound()) return out;
    if (!rs.ok()) return StorageError(rs, "read job");
    if (!st.ParseFromString(raw)) return Status::Corruption("job record is malformed");
    Hit h{{static_cast<uint64_t>(std::max<int64_t>(st.created_ms(), 0)), st.enqueue_seq()},
          f.id,
          st.queue(),
          static_cast<uint8_t>(codec::PublicStatus(st, now)),
          0,
          false};
    if (!want[h.status] || !in_range(h.pos) || (!f.queue.empty() && st.queue() != f.queue) ||
        !f.id.starts_with(f.id_prefix) || !meta_match(st, 0)) {
      return out;
    }
    s = emit(h, &st);
    if (!s.ok()) return s;
    return out;
  }

  // The driving index: the first metadata pair, else the queue, else every queue's range.
  std::vector<std::string> drivers;  // prefixes without the status byte
  if (!f.metadata.empty()) {
    std::string p = keys::IdxMetaPrefix(f.tenant, f.metadata[0].first, f.metadata[0].second, 0);
    p.pop_back();
    drivers.push_back(std::move(p));
  } else if (!f.queue.empty()) {
    std::string p = keys::IdxQueuePrefix(f.tenant, f.queue, 0);
    p.pop_back();
    drivers.push_back(std::move(p));
  } else {
    s = QueuesOf(f.tenant, ro, &out.keys_visited, &drivers);
    if (!s.ok()) return s;
  }
  std::vector<Source> sources;
  sources.reserve(kStatuses * drivers.size());
  for (const std::string& driver : drivers) {
    for (int b = 0; b < kStatuses; ++b) {
      const bool scheduled_only = b == kScheduled && want[kScheduled] && !want[kWaiting];
      // Nothing is filed as running (running jobs stay filed as waiting: below).
      if (b == static_cast<int>(JobStatus::kRunning) || !want[b]) continue;
      // Waiting without scheduled: the lagging scheduled entries come from the 'D' range below.
      Source& src = sources.emplace_back();
      src.status = static_cast<uint8_t>(b);
      src.future_only = scheduled_only;
      std::string p = driver;
      keys::PutU8(&p, src.status);
      src.lower = p;
      keys::PutPos(&src.lower, static_cast<int64_t>(from.first), 0);
      src.upper = p;
      keys::PutPos(&src.upper, static_cast<int64_t>(to.first), 0);
      if (after) {
        std::string c = p;
        if (req.newest_first) {
          keys::PutPos(&c, static_cast<int64_t>(after->first), after->second);
          src.upper = std::min(src.upper, c);
        } else {
          keys::PutPos(&c, static_cast<int64_t>(after->first), after->second);
          c.push_back('\0');  // strictly after the cursor's key
          src.lower = std::max(src.lower, c);
        }
      }
      if (src.lower >= src.upper) {
        sources.pop_back();
        continue;
      }
      src.lo = rocksdb::Slice(src.lower);
      src.hi = rocksdb::Slice(src.upper);
      rocksdb::ReadOptions sro = ro;
      sro.iterate_lower_bound = &src.lo;
      sro.iterate_upper_bound = &src.hi;
      src.it.reset(db_->NewIterator(sro));
      if (req.newest_first) {
        src.it->SeekToLast();
      } else {
        src.it->SeekToFirst();
      }
    }
  }
  // Waiting without scheduled: jobs filed as scheduled whose due time has passed ('D' <= now).
  std::vector<Hit> lag;
  if (want[kWaiting] && !want[kScheduled]) {
    const std::string lo = DueScanStart();
    const std::string hi = keys::IdxDueKey(now + 1, 0);
    rocksdb::Slice upper(hi);
    rocksdb::ReadOptions dro = ro;
    dro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(dro));
    for (it->Seek(lo); it->Valid(); it->Next()) {
      ++out.keys_visited;
      DueEntry d;
      if (!ParseDue(std::string_view(it->key().data(), it->key().size()),
                    std::string_view(it->value().data(), it->value().size()), &d)) {
        return Status::Corruption("malformed due-index entry");
      }
      const Pos p{static_cast<uint64_t>(d.created), d.seq};
      if (d.tenant != f.tenant || (!f.queue.empty() && d.queue != f.queue) || !in_range(p))
        continue;
      if (!f.metadata.empty()) {
        storage::JobState st;
        s = read_state(d.id, &st);
        if (!s.ok()) return s;
        if (!meta_match(st, 0)) continue;
      }
      lag.push_back(Hit{p, d.id, d.queue, kScheduled, d.due, true});
    }
    if (!it->status().ok()) return StorageError(it->status(), "scan due index");
    std::sort(lag.begin(), lag.end(), [&](const Hit& a, const Hit& b) {
      return req.newest_first ? a.pos > b.pos : a.pos < b.pos;
    });
  }
  // Running without waiting: from the running set (nothing is filed as running), each
  // confirmed by its record. Only the first `limit` matches can make this page.
  bool runs_cut = false;
  if (want[kRunningStatus] && !want[kWaiting]) {
    std::vector<std::pair<Pos, RunningJob>> cands;
    {
      std::lock_guard<std::mutex> lock(running_mu_);
      if (auto t = running_.find(f.tenant); t != running_.end()) {
        auto take = [&](const auto& kv) {
          if (!in_range(kv.first)) return;
          if (!f.queue.empty() && kv.second.queue != f.queue) return;
          if (!kv.second.id.starts_with(f.id_prefix)) return;
          cands.emplace_back(kv.first, kv.second);
        };
        if (req.newest_first) {
          for (auto it = t->second.rbegin(); it != t->second.rend(); ++it) take(*it);
        } else {
          for (const auto& kv : t->second) take(kv);
        }
      }
    }
    for (auto& [pos, job] : cands) {
      if (lag.size() == req.limit) {
        runs_cut = true;
        break;
      }
      storage::JobState st;
      s = read_state(job.id, &st);
      if (s.code() == StatusCode::kCorruption) continue;  // deleted after it ran: not running
      if (!s.ok()) return s;
      if (st.status() != storage::STORED_STATUS_RUNNING || !meta_match(st, 0)) continue;
      lag.push_back(Hit{pos, std::move(job.id), std::move(job.queue), kRunningStatus, 0, false});
    }
  }

  size_t lag_at = 0;
  std::optional<Pos> last;
  const uint64_t scan_cap = options_.limits.max_list_scan;
  auto more_left = [&] {
    if (lag_at < lag.size() || runs_cut) return true;
    return std::any_of(sources.begin(), sources.end(),
                       [](const Source& x) { return x.it->Valid(); });
  };
  while (out.jobs.size() < req.limit) {
    // The next position over every source, in listing order.
    int best = -1;
    Pos best_pos;
    for (size_t i = 0; i < sources.size(); ++i) {
      rocksdb::Iterator* it = sources[i].it.get();
      if (!it->Valid()) continue;
      Pos p;
      int64_t created = 0;
      if (!keys::ParsePos(std::string_view(it->key().data(), it->key().size()), &created,
                          &p.second)) {
        return Status::Corruption("malformed index key");
      }
      p.first = static_cast<uint64_t>(created);
      if (best < 0 || (req.newest_first ? p > best_pos : p < best_pos)) {
        best = static_cast<int>(i);
        best_pos = p;
      }
    }
    const bool lag_first =
        lag_at < lag.size() &&
        (best < 0 || (req.newest_first ? lag[lag_at].pos > best_pos : lag[lag_at].pos < best_pos));
    if (best < 0 && !lag_first) break;
    if (out.keys_visited >= scan_cap && last) break;  // bounded work per call: a short page
    Hit h;
    if (lag_first) {
      h = lag[lag_at++];
    } else {
      Source& src = sources[static_cast<size_t>(best)];
      ++out.keys_visited;
      IndexEntry e;
      if (!ParseIndexValue(std::string_view(src.it->value().data(), src.it->value().size()), &e)) {
        return Status::Corruption("malformed index entry");
      }
      h.pos = best_pos;
      h.id = std::string(e.id);
      h.queue = std::string(e.queue);
      h.status = src.status;
      h.due = e.due;
      const bool future_only = src.future_only;
      if (req.newest_first) {
        src.it->Prev();
      } else {
        src.it->Next();
      }
      if (future_only && h.due <= now) {
        last = h.pos;
        continue;
      }
    }
    last = h.pos;
    if (!f.queue.empty() && h.queue != f.queue) continue;
    if (!h.id.starts_with(f.id_prefix)) continue;
    const storage::JobState* known = nullptr;
    storage::JobState st;
    if (h.status == kWaiting && !h.lagging && MaybeRunning(f.tenant, h.pos)) {
      // Filed as waiting and in the running set: the record (in this snapshot) decides.
      s = read_state(h.id, &st);
      if (!s.ok()) return s;
      known = &st;
      if (st.status() == storage::STORED_STATUS_RUNNING) {
        if (!want[kRunningStatus]) continue;
        h.status = kRunningStatus;
      }
    }
    if (h.status == kWaiting && !want[kWaiting]) continue;
    if (f.metadata.size() > 1) {
      if (known == nullptr) {
        s = read_state(h.id, &st);
        if (!s.ok()) return s;
        known = &st;
      }
      if (!meta_match(st, 1)) continue;
    }
    s = emit(h, known);
    if (!s.ok()) return s;
  }
  for (const Source& src : sources) {
    if (!src.it->status().ok()) return StorageError(src.it->status(), "scan job index");
  }
  if (last && more_left()) out.next_cursor = EncodeCursor(*last, fp);
  return out;
}

Result<std::vector<QueueCounts>> Engine::Impl::CountJobs(std::string_view tenant,
                                                         std::string_view queue) {
  Status s = validate::Tenant(tenant, options_.limits);
  if (s.ok() && !queue.empty()) s = validate::Queue(queue, options_.limits);
  if (!s.ok()) return s;
  const int64_t now = Now();
  const SnapshotRead view(db_.get(), read_options_);
  const rocksdb::ReadOptions& ro = view.options();

  // Sum the shards of each queue ('C' tenant queue shard).
  std::map<std::string, Counts, std::less<>> counts;
  std::string prefix(1, keys::kCount);
  keys::PutStr(&prefix, tenant);
  if (!queue.empty()) keys::PutStr(&prefix, queue);
  const std::string end = keys::PrefixEnd(prefix);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions cro = ro;
  cro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(cro));
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    keys::Reader r(std::string_view(it->key().data(), it->key().size()).substr(1));
    std::string_view t, q, shard;
    Counts c{};
    if (!r.GetStr(&t) || !r.GetStr(&q) || !r.GetRest(&shard) || shard.size() != 2 ||
        !DecodeCounts(std::string_view(it->value().data(), it->value().size()), &c)) {
      return Status::Corruption("malformed job counter");
    }
    auto [slot, fresh] = counts.try_emplace(std::string(q));
    if (fresh) slot->second.fill(0);
    for (int b = 0; b < kStatuses; ++b) slot->second[b] += c[b];
  }
  if (!it->status().ok()) return StorageError(it->status(), "scan job counters");
  // Lagging scheduled jobs (due by now, not yet promoted) count as waiting.
  const std::string dlo = DueScanStart();
  const std::string dhi = keys::IdxDueKey(now + 1, 0);
  rocksdb::Slice dupper(dhi);
  rocksdb::ReadOptions dro = ro;
  dro.iterate_upper_bound = &dupper;
  it.reset(db_->NewIterator(dro));
  for (it->Seek(dlo); it->Valid(); it->Next()) {
    DueEntry d;
    if (!ParseDue(std::string_view(it->key().data(), it->key().size()),
                  std::string_view(it->value().data(), it->value().size()), &d)) {
      return Status::Corruption("malformed due-index entry");
    }
    if (d.tenant != tenant) continue;
    auto c = counts.find(d.queue);
    if (c == counts.end()) continue;
    --c->second[kScheduled];
    ++c->second[kWaiting];
  }
  if (!it->status().ok()) return StorageError(it->status(), "scan due index");
  // Running jobs stay filed (and counted) as waiting: the running set splits them off.
  {
    std::lock_guard<std::mutex> lock(running_mu_);
    for (auto& [q, c] : counts) {
      auto r = running_per_queue_.find({std::string(tenant), q});
      if (r == running_per_queue_.end()) continue;
      c[kRunningStatus] += r->second;
      c[kWaiting] -= r->second;
    }
  }
  std::vector<QueueCounts> result;
  result.reserve(counts.size());
  for (const auto& [q, c] : counts) {
    QueueCounts qc;
    qc.queue = q;
    for (int b = 0; b < kStatuses; ++b)
      qc.by_status[b] = static_cast<uint64_t>(std::max<int64_t>(c[b], 0));
    result.push_back(std::move(qc));
  }
  return result;
}

Status Engine::Impl::VerifyIndexes() {
  const SnapshotRead view(db_.get(), read_options_);
  const rocksdb::ReadOptions& ro = view.options();

  std::map<std::string, Counts> want_counts;  // counter key -> jobs by status
  std::map<std::string, uint64_t> running;    // job key -> lease token, of running jobs
  std::map<char, uint64_t> want_entries;      // key space -> entries
  auto scan = [&](char space,
                  const std::function<Status(std::string_view, std::string_view)>& fn) -> Status {
    const std::string lo(1, space), hi = keys::PrefixEnd(lo);
    rocksdb::Slice upper(hi);
    rocksdb::ReadOptions sro = ro;
    sro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(sro));
    for (it->Seek(lo); it->Valid(); it->Next()) {
      Status s = fn(std::string_view(it->key().data(), it->key().size()),
                    std::string_view(it->value().data(), it->value().size()));
      if (!s.ok()) return s;
    }
    return it->status().ok() ? Status::Ok() : StorageError(it->status(), "verify scan");
  };
  auto expect = [&](const std::string& key, const std::string& value, std::string_view what) {
    std::string got;
    rocksdb::Status rs = db_->Get(ro, key, &got);
    if (!rs.ok() || got != value) {
      return Status::Corruption(std::string(what) + " entry is " +
                                (rs.ok()           ? "wrong"
                                 : rs.IsNotFound() ? "missing"
                                                   : rs.ToString()));
    }
    ++want_entries[key[0]];
    return Status::Ok();
  };
  Status s = scan(keys::kJob, [&](std::string_view key, std::string_view value) -> Status {
    std::string_view tenant, id;
    storage::JobState st;
    if (!keys::ParseJobScopedKey(key, &tenant, &id) || !st.ParseFromString(std::string(value))) {
      return Status::Corruption("malformed job record");
    }
    const std::string who =
        "job \"" + std::string(id) + "\" of tenant \"" + std::string(tenant) + "\": ";
    if (st.indexed_as() == 0 || st.indexed_as() > kStatuses)
      return Status::Corruption(who + "not indexed");
    const auto b = static_cast<uint8_t>(st.indexed_as() - 1);
    const uint8_t now_b = FileStatus(st, std::numeric_limits<int64_t>::min());
    const bool pending = st.status() == storage::STORED_STATUS_PENDING;
    if (pending ? (b != kScheduled && b != kWaiting) || (now_b == kWaiting && b != kWaiting)
                : b != now_b) {
      return Status::Corruption(who + "filed under the wrong status");
    }
    Status e = Status::Ok();
    ForEachEntry(tenant, id, st, b, st.indexed_due_ms(),
                 [&](const std::string& k, const std::string& v) {
                   if (e.ok()) e = expect(k, v, who + "index");
                 });
    if (e.ok() && b == kScheduled) {
      e = expect(keys::IdxDueKey(st.indexed_due_ms(), st.enqueue_seq()),
                 DueValue(tenant, id, st.queue(), st.created_ms()), who + "due-index");
    }
    ++want_counts[QueueCountPrefix(tenant, st.queue())][b];
    if (st.status() == storage::STORED_STATUS_RUNNING) running.emplace(key, st.lease_token());
    return e;
  });
  if (!s.ok()) return s;
  for (char space : {keys::kIdxStatus, keys::kIdxQueue, keys::kIdxMeta, keys::kIdxDue}) {
    uint64_t n = 0;
    s = scan(space, [&](std::string_view, std::string_view) {
      ++n;
      return Status::Ok();
    });
    if (!s.ok()) return s;
    if (n != want_entries[space]) {
      return Status::Corruption("index space '" + std::string(1, space) + "' has " +
                                std::to_string(n) + " entries; the jobs need " +
                                std::to_string(want_entries[space]));
    }
  }
  // Shards are summed per queue: which shard a job counts in is an implementation detail.
  std::map<std::string, Counts> got_counts;
  s = scan(keys::kCount, [&](std::string_view key, std::string_view value) -> Status {
    Counts n{};
    if (key.size() < 3 || !DecodeCounts(value, &n)) {
      return Status::Corruption("malformed job counter");
    }
    auto [slot, fresh] = got_counts.try_emplace(std::string(key.substr(0, key.size() - 2)));
    if (fresh) slot->second.fill(0);
    for (int b = 0; b < kStatuses; ++b) slot->second[b] += n[b];
    return Status::Ok();
  });
  if (!s.ok()) return s;
  for (const auto& [prefix, got] : got_counts) {
    auto it = want_counts.find(prefix);
    const Counts want = it == want_counts.end() ? Counts{} : it->second;
    if (got != want) {
      std::string got_s, want_s;
      for (int b = 0; b < kStatuses; ++b) {
        got_s.append(" ").append(std::to_string(got[b]));
        want_s.append(" ").append(std::to_string(want[b]));
      }
      std::string msg = "job counters say";
      msg.append(got_s).append("; the jobs say").append(want_s);
      return Status::Corruption(std::move(msg));
    }
    if (it != want_counts.end()) want_counts.erase(it);
  }
  if (!want_counts.empty()) return Status::Corruption("a job counter is missing");
  // Every job running in the snapshot is in the running set, unless it has stopped running
  // since (the reaper and workers keep going while this runs): then its record has moved on.
  for (const auto& [key, token] : running) {
    std::string_view tenant, id;
    (void)keys::ParseJobScopedKey(key, &tenant, &id);
    storage::JobState st;
    if (!ReadJobState(tenant, id, &st).ok()) continue;  // deleted since
    if (st.status() != storage::STORED_STATUS_RUNNING || st.lease_token() != token) continue;
    std::lock_guard<std::mutex> lock(running_mu_);
    auto t = running_.find(tenant);
    if (t == running_.end() || !t->second.contains(PosOf(st))) {
      return Status::Corruption("running job \"" + std::string(id) +
                                "\" is not in the running set");
    }
  }
  return Status::Ok();
}

Status Engine::Impl::MigrateFormat1() {
  // Drop whatever a crashed earlier run left, then refile every job (idempotent: rerun safe).
  // Key by key (range deletions trip RocksDB's memtable insert hints), in a write of its own:
  // the refiling below reads the counters it rebuilds.
  {
    rocksdb::WriteBatch drop;
    for (char space :
         {keys::kIdxStatus, keys::kIdxQueue, keys::kIdxMeta, keys::kIdxDue, keys::kCount}) {
      const std::string slo(1, space), shi = keys::PrefixEnd(slo);
      rocksdb::Slice supper(shi);
      rocksdb::ReadOptions sro = read_options_;
      sro.iterate_upper_bound = &supper;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(sro));
      for (it->Seek(slo); it->Valid(); it->Next()) {
        // Index entries are only ever single-deleted; counter shards are overwritten.
        if (space == keys::kCount) {
          drop.Delete(it->key());
        } else {
          drop.SingleDelete(it->key());
        }
      }
      if (!it->status().ok()) return Status::IoError("migrate: " + it->status().ToString());
    }
    rocksdb::Status rs = db_->Write(write_options_, &drop);
    if (!rs.ok()) return Status::IoError("migrate: " + rs.ToString());
  }
  JobBatch batch;
  const int64_t now = Now();
  const std::string lo(1, keys::kJob), hi = keys::PrefixEnd(lo);
  rocksdb::Slice upper(hi);
  rocksdb::ReadOptions ro = read_options_;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  size_t in_batch = 0;
  for (it->Seek(lo); it->Valid(); it->Next()) {
    std::string_view tenant, id;
    storage::JobState st;
    const std::string_view key(it->key().data(), it->key().size());
    if (!keys::ParseJobScopedKey(key, &tenant, &id) ||
        !st.ParseFromString(it->value().ToString())) {
      return Status::Corruption("malformed job record");
    }
    std::string raw;
    rocksdb::Status rs = db_->Get(read_options_, keys::BodyKey(tenant, id), &raw);
    storage::JobBody body;
    if (!rs.ok() || !body.ParseFromString(raw)) return Status::Corruption("job body is missing");
    if (!body.metadata().empty()) {
      st.mutable_metadata()->insert(body.metadata().begin(), body.metadata().end());
      body.clear_metadata();
      batch.Put(keys::BodyKey(tenant, id), body.SerializeAsString());
    }
    st.set_indexed_as(0);
    st.set_indexed_due_ms(0);
    PutJob(tenant, id, &st, now, &batch);
    if (++in_batch == 1000) {
      CounterWrite counted = FlushCounts(&batch);
      rs = db_->Write(write_options_, &batch);
      if (!rs.ok()) return Status::IoError("migrate: " + rs.ToString());
      counted.Commit();
      batch.Clear();
      in_batch = 0;
    }
  }
  if (!it->status().ok()) return Status::IoError("migrate: " + it->status().ToString());
  CounterWrite counted = FlushCounts(&batch);
  std::string enc;
  keys::PutU32(&enc, keys::kFormatVersion);
  batch.Put(keys::VersionKey(), enc);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  rocksdb::Status rs = db_->Write(sync, &batch);
  if (!rs.ok()) return Status::IoError("migrate: " + rs.ToString());
  counted.Commit();
  return Status::Ok();
}

}  // namespace sluice
