// Engine::Impl lifecycle: opening the store and rebuilding the in-memory index, admission of
// calls, the background reaper, statistics, and Close.
#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>

#include <chrono>
#include <filesystem>
#include <functional>

#include "engine_impl.h"
#include "keys.h"

namespace sluice {
namespace {

using keys::PrefixEnd;

// The insert hint of the memtable skiplist (one per prefix) pays off when consecutive inserts
// with the same prefix land next to each other. Each prefix here names one such stream: the
// entries of one index range (ends of a status range), one queue's priority range of tasks,
// one key's holders or waiters, one counter. A shared 1-byte prefix would make index puts and
// deletes of different ranges evict each other's hint on every insert.
class InsertHintPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "sluice.InsertHintPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), PrefixLen(std::string_view(key.data(), key.size())));
  }
  bool InDomain(const rocksdb::Slice& key) const override { return !key.empty(); }

 private:
  // Length of `strings` length-prefixed strings then `bytes` bytes after the space byte, or
  // just the space byte when the key is shorter (malformed keys never reach the memtable).
  static size_t Skip(std::string_view key, int strings, size_t bytes) {
    size_t at = 1;
    for (int i = 0; i < strings; ++i) {
      if (key.size() < at + 2) return 1;
      at += 2 + ((static_cast<size_t>(static_cast<uint8_t>(key[at])) << 8) |
                 static_cast<uint8_t>(key[at + 1]));
    }
    return key.size() < at + bytes ? 1 : at + bytes;
  }
  static size_t PrefixLen(std::string_view key) {
    switch (key[0]) {
      case keys::kIdxStatus:
        return Skip(key, 1, 1);  // tenant, status
      case keys::kIdxQueue:
        return Skip(key, 2, 1);  // tenant, queue, status
      case keys::kIdxMeta:
        return Skip(key, 3, 1);  // tenant, key, value, status
      case keys::kTask:
        return Skip(key, 2, 1);  // tenant, queue, priority
      case keys::kHolder:
      case keys::kWaiter:
      case keys::kCount:
        return Skip(key, 2, 0);  // tenant, limit key / queue
      default:
        return 1;
    }
  }
};

}  // namespace

Engine::Impl::Impl(const EngineOptions& options)
    : options_(options),
      clock_(options.clock ? options.clock : std::make_shared<SystemClock>()),
      rng_(options.rng_seed != 0 ? options.rng_seed : std::random_device{}()) {
  write_options_.sync = options.durability == Durability::kSync;
  lease_write_options_.sync = false;  // docs/decisions.md §44
}

Engine::Impl::~Impl() { (void)Close(); }

Engine::Impl::CallGuard::CallGuard(Impl* impl) : impl_(impl) {
  impl_->active_calls_.fetch_add(1, std::memory_order_seq_cst);
  if (impl_->closed_.load(std::memory_order_seq_cst)) {
    status_ = Status::Closed("the engine is closed");
  } else if (impl_->failed_.load(std::memory_order_acquire)) {
    status_ = Status::IoError("the engine stopped after a storage error; reopen it to recover");
  }
}

Engine::Impl::CallGuard::~CallGuard() {
  if (impl_->active_calls_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      impl_->closed_.load(std::memory_order_seq_cst)) {
    std::lock_guard<std::mutex> lock(impl_->close_mu_);
    impl_->close_cv_.notify_all();
  }
}

Status Engine::Impl::OpenStore() {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.IncreaseParallelism(2);
  o.max_background_jobs = 2;
  o.compression = rocksdb::kLZ4Compression;
  o.write_buffer_size = 64 << 20;
  // A bloom filter over memtable keys: lookups of absent keys (idempotency checks, commit
  // validation) skip the skiplist search.
  o.memtable_prefix_bloom_size_ratio = 0.05;
  o.memtable_whole_key_filtering = true;
  // Many threads commit small batches on few cores: block instead of spinning while another
  // thread leads the write group.
  o.enable_write_thread_adaptive_yield = false;
  o.allow_concurrent_memtable_write = false;
  o.enable_pipelined_write = true;
  // Queues touch each key range roughly in order (ids are time-ordered, tasks and index
  // entries by seq): the skiplist keeps one insert hint per range (InsertHintPrefix).
  o.memtable_insert_with_hint_prefix_extractor = std::make_shared<InsertHintPrefix>();
  // Index ranges are queues too: entries deleted at one end. Files that collect many deletes are
  // compacted early so that scans of those ranges do not wade through tombstones.
  o.table_properties_collector_factories.emplace_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(/*sliding_window_size=*/4096,
                                                    /*deletion_trigger=*/2048));
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = rocksdb::NewLRUCache(options_.block_cache_bytes);
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10, false));
  t.whole_key_filtering = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));

  // Like mkdir -p: RocksDB only creates the last component.
  std::error_code ec;
  std::filesystem::create_directories(options_.path, ec);
  if (ec) return Status::IoError("create " + options_.path + ": " + ec.message());

  rocksdb::OptimisticTransactionDB* raw = nullptr;
  rocksdb::Status rs = rocksdb::OptimisticTransactionDB::Open(o, options_.path, &raw);
  if (!rs.ok()) {
    // LZ4 may be missing from a RocksDB build: fall back to Snappy/no compression.
    if (rs.IsInvalidArgument() && rs.ToString().find("ompression") != std::string::npos) {
      o.compression = rocksdb::kNoCompression;
      rs = rocksdb::OptimisticTransactionDB::Open(o, options_.path, &raw);
    }
    if (!rs.ok()) return Status::IoError("open " + options_.path + ": " + rs.ToString());
  }
  db_.reset(raw);

  // Format version: written into an empty store, checked in an existing one.
  bool stamp_version = false;
  std::string v;
  rs = db_->Get(read_options_, keys::VersionKey(), &v);
  if (rs.IsNotFound()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options_));
    it->SeekToFirst();
    if (it->Valid()) {
      return Status::Corruption("store at " + options_.path + " has data but no format version");
    }
    std::string enc;
    keys::PutU32(&enc, keys::kFormatVersion);
    rocksdb::WriteOptions sync;
    sync.sync = true;
    rs = db_->Put(sync, keys::VersionKey(), enc);
    if (!rs.ok()) return Status::IoError("write format version: " + rs.ToString());
  } else if (!rs.ok()) {
    return Status::IoError("read format version: " + rs.ToString());
  } else {
    keys::Reader r(v);
    uint32_t version = 0;
    if (!r.GetU32(&version) || !r.empty()) {
      return Status::Corruption("store format version record is malformed");
    }
    if (version == 1) {
      Status m = MigrateFormat1();  // adds the job indexes (and stamps the current version)
      if (!m.ok()) return m;
    } else if (version == 2) {
      // Format 3 only adds records in JobState (inline payload, final attempt); format-2
      // records read as they are. The new number, written once the open has succeeded, keeps
      // older builds from opening a store they would misread (jobs without a body record).
      stamp_version = true;
    } else if (version != keys::kFormatVersion) {
      return Status::FailedPrecondition("store format version " + std::to_string(version) +
                                        " is not supported by this build (it reads version " +
                                        std::to_string(keys::kFormatVersion) + ")");
    }
  }

  if (Status c = LoadCounters(); !c.ok()) return c;

  // Rebuild the in-memory mirror of the ready range and the lease-expiry index.
  const int64_t now = Now();
  uint64_t max_seen = 0;
  {
    std::lock_guard<std::mutex> lock(index_mu_);
    std::string lo(1, keys::kTask), hi = PrefixEnd(lo);
    rocksdb::Slice upper(hi);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
    for (it->Seek(lo); it->Valid(); it->Next()) {
      keys::TaskKeyParts p;
      const std::string_view key(it->key().data(), it->key().size());
      if (!keys::ParseTaskKey(key, &p)) return Status::Corruption("malformed task key");
      std::string qp = keys::QueuePrefix(p.tenant, p.queue);
      index_.AddTask(qp, TaskRef{p.priority, p.due_ms, p.seq, it->value().ToString()}, now);
      max_seen = std::max(max_seen, p.seq);
    }
    if (!it->status().ok()) return Status::IoError("scan tasks: " + it->status().ToString());

    std::string llo(1, keys::kLease), lhi = PrefixEnd(llo);
    rocksdb::Slice lupper(lhi);
    ro.iterate_upper_bound = &lupper;
    it.reset(db_->NewIterator(ro));
    for (it->Seek(llo); it->Valid(); it->Next()) {
      codec::LeaseValue lv;
      const std::string_view val(it->value().data(), it->value().size());
      if (!codec::DecodeLease(val, &lv)) return Status::Corruption("malformed lease record");
      index_.AddLease(lv.expires_ms, it->key().ToString());
      // Its job is running: into the running set (engine_index.cc).
      std::string_view tenant, id;
      storage::JobState st;
      if (!keys::ParseJobScopedKey(std::string_view(it->key().data(), it->key().size()), &tenant,
                                   &id) ||
          !ReadJobState(tenant, id, &st).ok()) {
        return Status::Corruption("a lease without its job");
      }
      AddRunning(tenant, id, st);
      max_seen = std::max(max_seen, lv.token);
    }
    if (!it->status().ok()) return Status::IoError("scan leases: " + it->status().ToString());
  }
  uint64_t reserved = 0;
  {
    std::string enc;
    rs = db_->Get(read_options_, std::string(1, keys::kSeqReserved), &enc);
    keys::Reader r(enc);
    if (rs.ok() && (!r.GetU64(&reserved) || !r.empty())) {
      return Status::Corruption("sequence reservation record is malformed");
    }
    if (!rs.ok() && !rs.IsNotFound()) return Status::IoError("read sequence: " + rs.ToString());
  }
  seq_.Seed(std::max({static_cast<uint64_t>(now < 0 ? 0 : now) << 20, max_seen + 1, reserved}));
  ReserveSeq(seq_.Peek());
  if (failed_.load()) return Status::IoError("reserving sequence numbers failed");
  Status ls = RebuildLimits();
  if (!ls.ok()) return ls;
  // Grant what a crash between a release and its grant left waiting.
  while (RunGrants(1 << 16)) {
  }
  if (failed_.load()) return Status::IoError("granting waiters at open failed");

  if (stamp_version) {
    std::string enc;
    keys::PutU32(&enc, keys::kFormatVersion);
    rocksdb::WriteOptions sync;
    sync.sync = true;
    rs = db_->Put(sync, keys::VersionKey(), enc);
    if (!rs.ok()) return Status::IoError("write format version: " + rs.ToString());
  }
  if (options_.reaper_interval_ms > 0) reaper_ = std::thread([this] { ReaperLoop(); });
  return Status::Ok();
}

void Engine::Impl::ReaperLoop() {
  std::unique_lock<std::mutex> lock(reaper_mu_);
  while (!reaper_stop_) {
    reaper_cv_.wait_for(lock, std::chrono::milliseconds(options_.reaper_interval_ms));
    if (reaper_stop_) break;
    lock.unlock();
    {
      CallGuard guard(this);
      if (guard.status().ok()) (void)ReapExpired();
    }
    lock.lock();
  }
}

Status Engine::Impl::Close() {
  if (closed_.exchange(true)) {
    // Another Close ran or runs; wait until the store is closed.
    std::unique_lock<std::mutex> lock(close_mu_);
    close_cv_.wait(lock, [this] { return store_closed_; });
    return Status::Ok();
  }
  {
    std::lock_guard<std::mutex> lock(reaper_mu_);
    reaper_stop_ = true;
  }
  reaper_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  {
    std::lock_guard<std::mutex> lock(index_mu_);
    index_.NotifyAll();
  }
  {
    std::lock_guard<std::mutex> lock(result_mu_);
    ++finished_gen_;
  }
  result_cv_.notify_all();
  {
    std::unique_lock<std::mutex> lock(close_mu_);
    close_cv_.wait(lock, [this] { return active_calls_.load() == 0; });
  }
  Status result;
  if (db_) {
    // After a failed write the WAL must not be synced again (RocksDB asserts, and a retried
    // fsync proves nothing): close as is and let the next open recover from the WAL.
    if (!failed_) {
      rocksdb::Status rs = db_->GetBaseDB()->FlushWAL(/*sync=*/true);
      if (!rs.ok()) result = Status::IoError("sync WAL at close: " + rs.ToString());
    }
    db_.reset();
  }
  {
    std::lock_guard<std::mutex> lock(close_mu_);
    store_closed_ = true;
  }
  close_cv_.notify_all();
  return result;
}

EngineStats Engine::Impl::Stats() const {
  EngineStats s;
  s.enqueued = counters_.enqueued.load();
  s.leased = counters_.leased.load();
  s.succeeded = counters_.succeeded.load();
  s.failed = counters_.failed.load();
  s.cancelled = counters_.cancelled.load();
  s.retried = counters_.retried.load();
  s.lease_expired = counters_.lease_expired.load();
  s.grants = counters_.grants.load();
  s.refreshes_issued = counters_.refreshes_issued.load();
  {
    std::lock_guard<std::mutex> limits_lock(limits_mu_);
    s.limit_keys = limits_.keys();
    s.limit_holders = limits_.holders();
    s.limit_waiters = limits_.waiters();
  }
  std::lock_guard<std::mutex> lock(index_mu_);
  s.pending_tasks = index_.pending_tasks();
  s.running = index_.leases();
  return s;
}

size_t Engine::Impl::StripeOf(std::string_view tenant, std::string_view id) const {
  const size_t h = std::hash<std::string_view>{}(id)*31 + std::hash<std::string_view>{}(tenant);
  return h % kStripes;
}

std::mutex& Engine::Impl::Stripe(std::string_view tenant, std::string_view id) {
  return stripes_[StripeOf(tenant, id)];
}

std::vector<std::unique_lock<std::mutex>> Engine::Impl::LockStripes(std::vector<size_t> stripes) {
  std::vector<std::unique_lock<std::mutex>> locks;
  LockStripes(&stripes, &locks);
  return locks;
}

void Engine::Impl::LockStripes(std::vector<size_t>* stripes,
                               std::vector<std::unique_lock<std::mutex>>* locks) {
  std::sort(stripes->begin(), stripes->end());
  stripes->erase(std::unique(stripes->begin(), stripes->end()), stripes->end());
  locks->reserve(locks->size() + stripes->size());
  for (size_t s : *stripes) locks->emplace_back(stripes_[s]);
}

Status Engine::Impl::StorageError(const rocksdb::Status& s, std::string_view what) {
  failed_.store(true, std::memory_order_release);
  return Status::IoError(std::string(what) + ": " + s.ToString() +
                         "; the engine stopped acknowledging, reopen it to recover");
}

Status Engine::Impl::Write(rocksdb::WriteBatch* batch, bool fsync) {
  // Straight to the base DB: OptimisticTransactionDB::Write would lock and validate every key
  // of the batch as a transaction, and the job counters make many batches share a key. The
  // stripe locks already serialize writers of a job; the enqueue transaction's validation still
  // sees these writes (it compares the keys' latest sequence numbers).
  rocksdb::Status s = db_->GetBaseDB()->Write(fsync ? write_options_ : lease_write_options_, batch);
  if (!s.ok()) return StorageError(s, "write");
  return Status::Ok();
}

Status Engine::Impl::Write(JobBatch* batch, bool fsync) {
  CounterWrite counted = FlushCounts(batch);
  Status s = Write(static_cast<rocksdb::WriteBatch*>(batch), fsync);
  if (s.ok()) counted.Commit();
  return s;
}

Status Engine::Impl::ReadJobState(std::string_view tenant, std::string_view id,
                                  storage::JobState* out) {
  rocksdb::PinnableSlice v;
  rocksdb::Status s =
      db_->Get(read_options_, db_->DefaultColumnFamily(), keys::JobKey(tenant, id), &v);
  if (s.IsNotFound()) return Status::NotFound("job \"" + std::string(id) + "\" not found");
  if (!s.ok()) return StorageError(s, "read job");
  if (!out->ParseFromArray(v.data(), static_cast<int>(v.size()))) {
    return Status::Corruption("job \"" + std::string(id) + "\" record is malformed");
  }
  return Status::Ok();
}

Status Engine::Impl::ReadBody(const rocksdb::ReadOptions& ro, std::string_view tenant,
                              std::string_view id, const storage::JobState& st,
                              storage::JobBody* body, uint64_t* visited) {
  if (st.payload_inline()) {
    body->set_payload(st.payload());
    return Status::Ok();
  }
  if (visited != nullptr) ++*visited;
  rocksdb::PinnableSlice raw;
  rocksdb::Status rs = db_->Get(ro, db_->DefaultColumnFamily(), keys::BodyKey(tenant, id), &raw);
  if (rs.IsNotFound()) return Status::Corruption("job \"" + std::string(id) + "\" body is missing");
  if (!rs.ok()) return StorageError(rs, "read job body");
  if (!body->ParseFromArray(raw.data(), static_cast<int>(raw.size()))) {
    return Status::Corruption("job \"" + std::string(id) + "\" body is malformed");
  }
  return Status::Ok();
}

Status Engine::Impl::ReadAttempt(const rocksdb::ReadOptions& ro, std::string_view tenant,
                                 std::string_view id, const storage::JobState& st, uint32_t number,
                                 storage::AttemptRecord* out) {
  if (st.has_last_attempt() && st.last_attempt().number() == number) {
    *out = st.last_attempt();
    return Status::Ok();
  }
  rocksdb::PinnableSlice raw;
  rocksdb::Status rs =
      db_->Get(ro, db_->DefaultColumnFamily(), keys::AttemptKey(tenant, id, number), &raw);
  if (rs.IsNotFound()) {
    return Status::Corruption("attempt " + std::to_string(number) + " of job \"" + std::string(id) +
                              "\" is missing");
  }
  if (!rs.ok()) return StorageError(rs, "read attempt");
  if (!out->ParseFromArray(raw.data(), static_cast<int>(raw.size()))) {
    return Status::Corruption("attempt record is malformed");
  }
  return Status::Ok();
}

Status Engine::Impl::ReadLease(const std::string& lease_key, codec::LeaseValue* out) {
  rocksdb::PinnableSlice v;
  rocksdb::Status s = db_->Get(read_options_, db_->DefaultColumnFamily(), lease_key, &v);
  if (s.IsNotFound()) return Status::NotFound("no live lease");
  if (!s.ok()) return StorageError(s, "read lease");
  if (!codec::DecodeLease(std::string_view(v.data(), v.size()), out)) {
    return Status::Corruption("lease record is malformed");
  }
  return Status::Ok();
}

void Engine::Impl::ReserveSeq(uint64_t at_least) {
  constexpr uint64_t kBlock = 1 << 20;
  std::lock_guard<std::mutex> lock(seq_mu_);
  if (at_least < seq_reserved_.load()) return;  // another thread reserved meanwhile
  const uint64_t upto = at_least + kBlock;
  std::string enc;
  keys::PutU64(&enc, upto);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  rocksdb::Status rs = db_->Put(sync, std::string(1, keys::kSeqReserved), enc);
  if (!rs.ok()) {
    (void)StorageError(rs, "reserve sequence numbers");
    return;
  }
  seq_reserved_.store(upto, std::memory_order_release);
}

uint64_t Engine::Impl::NextRandom() {
  std::lock_guard<std::mutex> lock(rng_mu_);
  return rng_();
}

}  // namespace sluice
