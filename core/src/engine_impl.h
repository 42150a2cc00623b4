// Engine::Impl: the engine's state and the helpers its transitions share.
//
// Concurrency model (docs/threading.md):
//  - Every transition of a job holds that job's stripe lock (hash of tenant and id) from its
//    first read to after its in-memory index update. Batches lock their stripes in ascending
//    order. So transitions of one job are serialized, the read-check-write of each is atomic,
//    and transitions of different jobs write concurrently (RocksDB group commit merges their
//    fsyncs).
//  - limits_mu_ guards the LimitIndex (concurrency keys). index_mu_ guards the MemoryIndex and
//    the long-poll condition variables. running_mu_ guards the running set (a leaf: nothing is
//    locked while holding it). Lock order: job stripes, then a floating-key stripe, then
//    limits_mu_, then index_mu_, then running_mu_. None is held while writing to RocksDB.
//  - Grants run after the releasing transition let go of its stripe: a grant pass takes each
//    waiter's own stripe, so every job's records change only under its stripe.
//  - Every state change is one RocksDB write (WriteBatch, or the enqueue transaction).
#ifndef SLUICE_CORE_SRC_ENGINE_IMPL_H_
#define SLUICE_CORE_SRC_ENGINE_IMPL_H_

#include <rocksdb/utilities/optimistic_transaction_db.h>
#include <rocksdb/utilities/transaction.h>
#include <rocksdb/utilities/write_batch_with_index.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "codec.h"
#include "ids.h"
#include "limit_index.h"
#include "memory_index.h"
#include "sluice/engine.h"
#include "storage.pb.h"

namespace sluice {

// Jobs per status (JobStatus order): a job counter shard, or a change to one.
using JobCounts = std::array<int64_t, 6>;

// The job counters in memory, split into slots (decisions §56). A write that changes counters
// holds one slot from FlushCounts until the write has returned, and writes that slot's new
// values ('C' tenant queue u16(slot)); only the holder reads or changes a slot, and one holder's
// writes are sequenced in the order it makes them, so a slot's last stored value is always the
// sum of its committed changes. The total of a queue is the sum over its slots. Slots are
// reused (lowest free first), so there are about as many as writes ever ran at once.
class CounterSlots {
 public:
  struct Slot {
    uint16_t id = 0;
    // Queue counter prefix ('C' str(tenant) str(queue)) -> this slot's stored counts.
    std::unordered_map<std::string, JobCounts> counts;
  };
  // A free slot (blocks while all 65,536 are held, which no real server reaches).
  Slot* Acquire();
  void Release(Slot* slot);
  // At open, before any writer: forget everything / set slot `id`'s stored counts of `prefix`.
  void Reset();
  void Load(uint16_t id, const std::string& prefix, const JobCounts& counts);

 private:
  Slot* SlotLocked(uint16_t id);

  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<Slot>> slots_;  // by id
  std::vector<Slot*> free_;                   // a min-heap by id
};

// The counter part of one write: the slot it holds and the values it wrote. Commit() once the
// write succeeded; the slot goes back to the pool when this object goes away.
class CounterWrite {
 public:
  CounterWrite() = default;
  CounterWrite(CounterSlots* pool, CounterSlots::Slot* slot) : pool_(pool), slot_(slot) {}
  CounterWrite(CounterWrite&& o) noexcept
      : pool_(o.pool_), slot_(std::exchange(o.slot_, nullptr)), staged_(std::move(o.staged_)) {}
  CounterWrite& operator=(CounterWrite&&) = delete;
  CounterWrite(const CounterWrite&) = delete;
  CounterWrite& operator=(const CounterWrite&) = delete;
  ~CounterWrite() {
    if (slot_ != nullptr) pool_->Release(slot_);
  }
  CounterSlots::Slot* slot() const { return slot_; }
  // Records a value written for `prefix` (applied to the slot by Commit).
  void Stage(const std::string& prefix, const JobCounts& value) {
    staged_.emplace_back(prefix, value);
  }
  void Commit() {
    for (auto& [prefix, value] : staged_) slot_->counts[prefix] = value;
    staged_.clear();
  }

 private:
  CounterSlots* pool_ = nullptr;
  CounterSlots::Slot* slot_ = nullptr;
  std::vector<std::pair<std::string, JobCounts>> staged_;
};

// Where index changes go: a write batch (JobBatch), or the enqueue transaction (untracked
// writes). Counter changes are summed per queue counter prefix until the write is built
// (FlushCounts): the jobs of one batch share their queue's counter.
class IndexSink {
 public:
  virtual ~IndexSink() = default;
  virtual void Put(const std::string& key, const std::string& value) = 0;
  virtual void Delete(const std::string& key) = 0;
  // Deletes an index entry: written once, deleted once, never overwritten, so a SingleDelete
  // (it and the entry vanish together at the first compaction that sees both, leaving no
  // tombstone for scans of the index range to skip).
  virtual void DeleteIndex(const std::string& key) = 0;
  // Adds `delta` to the counts of the queue counter prefix `prefix` (written by FlushCounts).
  void Count(const std::string& prefix, const JobCounts& delta) {
    JobCounts& c = counts_[prefix];
    for (size_t i = 0; i < c.size(); ++i) c[i] += delta[i];
  }
  std::map<std::string, JobCounts>& counts() { return counts_; }

 private:
  std::map<std::string, JobCounts> counts_;
};

// The write batch of a transition: its records, index entries and counter changes.
class JobBatch final : public rocksdb::WriteBatch, public IndexSink {
 public:
  void Put(const std::string& k, const std::string& v) override {
    (void)rocksdb::WriteBatch::Put(k, v);
  }
  void Delete(const std::string& k) override { (void)rocksdb::WriteBatch::Delete(k); }
  void DeleteIndex(const std::string& k) override { (void)rocksdb::WriteBatch::SingleDelete(k); }
  using rocksdb::WriteBatch::Delete;
  using rocksdb::WriteBatch::Put;
};

class TxnSink final : public IndexSink {
 public:
  explicit TxnSink(rocksdb::Transaction* txn) : txn_(txn) {}
  void Put(const std::string& k, const std::string& v) override {
    if (status_.ok()) status_ = txn_->PutUntracked(k, v);
  }
  void Delete(const std::string& k) override {
    if (status_.ok()) status_ = txn_->DeleteUntracked(k);
  }
  void DeleteIndex(const std::string& k) override {
    if (status_.ok()) status_ = txn_->SingleDeleteUntracked(k);
  }
  // The first failure, if any.
  const rocksdb::Status& status() const { return status_; }

 private:
  rocksdb::Transaction* txn_;
  rocksdb::Status status_;
};

// Read options over a snapshot of the store, released on scope exit: a consistent view of
// several keys for readers that take no stripe (GetJob, ListJobs, CountJobs, VerifyIndexes).
class SnapshotRead {
 public:
  SnapshotRead(rocksdb::DB* db, const rocksdb::ReadOptions& base)
      : db_(db), snap_(db->GetSnapshot()), ro_(base) {
    ro_.snapshot = snap_;
  }
  ~SnapshotRead() { db_->ReleaseSnapshot(snap_); }
  SnapshotRead(const SnapshotRead&) = delete;
  SnapshotRead& operator=(const SnapshotRead&) = delete;
  const rocksdb::ReadOptions& options() const { return ro_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snap_;
  rocksdb::ReadOptions ro_;
};

class Engine::Impl {
 public:
  static constexpr size_t kStripes = 1024;
  // Payloads up to this size are stored in the job record (JobState.payload_inline).
  static constexpr size_t kInlinePayloadBytes = 1024;

  explicit Impl(const EngineOptions& options);
  ~Impl();

  const EngineOptions& options() const { return options_; }

  // engine_lifecycle.cc
  Status OpenStore();
  Status Close();
  EngineStats Stats() const;
  void ReaperLoop();

  // engine.cc — the hot transitions.
  Result<std::vector<EnqueueResult>> EnqueueMany(std::span<const JobSpec> specs, bool batch);
  // One attempt of EnqueueMany with the ids it settled on; *conflicted when the commit lost a
  // race for a new id (or could not tell) and the attempt should be repeated. lock_all: hold
  // the stripes of every id from before the read (else only the new jobs', from the commit).
  Result<std::vector<EnqueueResult>> EnqueueOnce(std::span<const JobSpec> specs,
                                                 const std::vector<std::string>& ids, int64_t now,
                                                 bool lock_all, bool* conflicted);
  Result<std::vector<Task>> Lease(const LeaseRequest& request);  // LeaseTasks without refreshes
  Result<HeartbeatResult> Heartbeat(std::string_view tenant, std::string_view task_id,
                                    std::string_view worker_id, uint64_t lease_token);
  Status Complete(std::string_view tenant, std::string_view task_id, uint64_t lease_token,
                  const Outcome& outcome);
  Result<std::vector<Status>> CompleteBatch(std::span<const Completion> reports);
  Result<size_t> ReapExpired();

  // engine_limits.cc — concurrency limits.
  Result<LeaseResponse> LeaseTasks(const LeaseRequest& request, bool with_refreshes);
  Result<int64_t> HeartbeatRefresh(std::string_view tenant, std::string_view key, uint64_t token);
  Status CompleteRefresh(std::string_view tenant, std::string_view key, uint64_t token,
                         const RefreshOutcome& outcome);
  Result<FloatingLimitState> GetFloatingLimit(std::string_view tenant, std::string_view key);
  Result<std::vector<FloatingLimitState>> ListFloatingLimits(std::string_view tenant,
                                                             std::string_view after_key,
                                                             uint32_t limit);
  Status SetFloatingLimit(std::string_view tenant, std::string_view key, uint32_t max);
  Result<ConcurrencyKeyInfo> GetConcurrencyKey(std::string_view tenant, ConcurrencyLimit::Kind kind,
                                               std::string_view key);
  // Busiest active keys; only `*tenant`'s when tenant is set.
  std::vector<ConcurrencyKeyInfo> ListConcurrencyKeys(uint32_t limit,
                                                      const std::string_view* tenant) const;
  std::vector<QueueDepth> QueueDepths(uint32_t limit, size_t* total_queues) const;
  // Grants waiters of dirty keys, at most `budget` grants; returns whether work is left.
  // Leftovers are picked up by the next call and by the reaper.
  bool RunGrants(size_t budget);
  // Grants a releasing call runs itself: enough for one release burst, bounded.
  size_t GrantBudget() const {
    return 4 * static_cast<size_t>(options_.max_grants_per_key_per_pass);
  }

  // engine_admin.cc — operator transitions and reads.
  Result<CancelResult> Cancel(std::string_view tenant, std::string_view id);
  Status Restart(std::string_view tenant, std::string_view id);
  Status Expedite(std::string_view tenant, std::string_view id);
  Status Delete(std::string_view tenant, std::string_view id);
  Result<Job> GetJob(std::string_view tenant, std::string_view id, bool include_attempts);
  Result<JobResult> GetResult(std::string_view tenant, std::string_view id);
  // GetResult that waits (bounded) for the job's final transition.
  Result<JobResult> WaitResult(std::string_view tenant, std::string_view id, uint32_t wait_ms);
  // Wakes GetResult waiters of (tenant, id): called after a write that ended or deleted the job.
  void NotifyFinished(std::string_view tenant, std::string_view id);

  // engine_index.cc — job indexes, listing and counts.
  Result<ListJobsResult> ListJobs(const ListJobsRequest& request);
  Result<std::vector<QueueCounts>> CountJobs(std::string_view tenant, std::string_view queue);
  Status VerifyIndexes();
  // Files the job (st) in the indexes under its status at `now`, writing the changes since its
  // last filing (st->indexed_as / indexed_due_ms) into sink, and records the new filing in st.
  void FileJob(std::string_view tenant, std::string_view id, storage::JobState* st, int64_t now,
               IndexSink* sink);
  // Removes every index entry of a job that is being deleted.
  void UnfileJob(std::string_view tenant, std::string_view id, const storage::JobState& st,
                 IndexSink* sink);
  // FileJob plus the write of the job record: how every transition stores a job's state.
  void PutJob(std::string_view tenant, std::string_view id, storage::JobState* st, int64_t now,
              JobBatch* batch);
  // Writes the summed counter changes of sink as the new values of one counter slot, which the
  // returned object holds: Commit() it once the write succeeded (CounterSlots).
  CounterWrite FlushCounts(IndexSink* sink);
  // At open: loads the stored counters into the slots, first folding each queue's slots into
  // slot 0 (one write) so that the slots in use stay few across restarts.
  Status LoadCounters();
  // Refiles jobs filed as scheduled whose due time has come as waiting; returns how many.
  Result<size_t> PromoteDue(int64_t now);
  // Running jobs (see running_): AddRunning before the lease write, RemoveRunning after the
  // write that ends the attempt.
  void AddRunning(std::string_view tenant, std::string_view id, const storage::JobState& st);
  void RemoveRunning(std::string_view tenant, const storage::JobState& st);
  // Whether the job at `pos` of `tenant` may be running (then its record decides).
  bool MaybeRunning(std::string_view tenant, std::pair<uint64_t, uint64_t> pos) const;
  // The Y-index prefixes (without the status byte) of every queue of `tenant`.
  Status QueuesOf(std::string_view tenant, const rocksdb::ReadOptions& ro, uint64_t* visited,
                  std::vector<std::string>* out);
  // Where scans of the 'D' range start (see due_floor_).
  std::string DueScanStart();
  // Builds the indexes of a format-1 store and marks it format 2 (at open).
  Status MigrateFormat1();

  // Admission of a public call: fails with kClosed after Close began, kIoError after a
  // storage failure. Counted so Close can wait for calls in flight.
  class CallGuard {
   public:
    explicit CallGuard(Impl* impl);
    ~CallGuard();
    CallGuard(const CallGuard&) = delete;
    CallGuard& operator=(const CallGuard&) = delete;
    const Status& status() const { return status_; }

   private:
    Impl* impl_;
    Status status_;
  };

  // What a finished attempt does to the in-memory index after its write commits.
  struct Finish {
    bool released = false;  // the attempt's limit slots were released
    bool requeued = false;  // a retry: a new pending task
    std::string queue_prefix;
    TaskRef task;
    JobStatus job_status = JobStatus::kFailed;
  };

 private:
  friend class CallGuard;

  size_t StripeOf(std::string_view tenant, std::string_view id) const;
  std::mutex& Stripe(std::string_view tenant, std::string_view id);
  // Locks the stripes of all (tenant, id) pairs in ascending order.
  std::vector<std::unique_lock<std::mutex>> LockStripes(std::vector<size_t> stripes);
  // The same, appending the locks to *locks (whose capacity the caller may have reserved);
  // sorts and dedups *stripes.
  void LockStripes(std::vector<size_t>* stripes, std::vector<std::unique_lock<std::mutex>>* locks);

  // Splits "<job_id>#<attempt>" and validates (tenant, job id).
  Status ParseTask(std::string_view tenant, std::string_view task_id, std::string_view* id,
                   uint32_t* attempt);
  // Reads the job's lease and checks it is the live lease `token` of `attempt` at `now`;
  // kLeaseLost otherwise. Caller holds the job's stripe.
  Status CheckLease(const std::string& lease_key, std::string_view task_id, uint32_t attempt,
                    uint64_t token, int64_t now, codec::LeaseValue* lv);
  // CheckLease, then the job record (which must be running that lease: kCorruption if not);
  // both come from live_ when the job is there, else from the store. Caller holds the stripe.
  Status LoadRunning(std::string_view tenant, std::string_view id, const std::string& lease_key,
                     std::string_view task_id, uint32_t attempt, uint64_t token, int64_t now,
                     codec::LeaseValue* lv, storage::JobState* st);
  // live_ of the job's stripe (caller holds the stripe).
  struct LiveJob;
  std::unordered_map<std::string, LiveJob>& LiveOf(std::string_view tenant, std::string_view id);
  // Reads and decodes; NotFound when absent.
  Status ReadJobState(std::string_view tenant, std::string_view id, storage::JobState* out);
  Status ReadLease(const std::string& lease_key, codec::LeaseValue* out);
  // Attempt `number` of the job: st.last_attempt when it is that one, else its 'A' record read
  // with ro. kCorruption when the record is missing or malformed.
  Status ReadAttempt(const rocksdb::ReadOptions& ro, std::string_view tenant, std::string_view id,
                     const storage::JobState& st, uint32_t number, storage::AttemptRecord* out);
  // The job's payload into body: from st when inline, else its 'B' record read with ro (then
  // ++*visited when visited is given). kCorruption when the record is missing or malformed.
  Status ReadBody(const rocksdb::ReadOptions& ro, std::string_view tenant, std::string_view id,
                  const storage::JobState& st, storage::JobBody* body, uint64_t* visited = nullptr);
  // Writes one batch; a failure poisons the engine (failed_) and returns kIoError. fsync=false
  // (leases only) skips the WAL fsync even under sync durability: the next synced write, or a
  // clean close, makes it durable; power loss can undo it, which only re-delivers the job.
  Status Write(rocksdb::WriteBatch* batch, bool fsync = true);
  // Write of a transition: flushes its counter changes into it first.
  Status Write(JobBatch* batch, bool fsync = true);
  Status StorageError(const rocksdb::Status& s, std::string_view what);
  // Stops the engine (like a storage error) and returns `s`: for failures after which the
  // in-memory indexes can no longer be trusted to match the store.
  Status Fatal(Status s) {
    failed_.store(true, std::memory_order_release);
    return s;
  }

  // Builds the write that ends the attempt described by `lease` of job (tenant, id) whose
  // state is `state` (mutated in place), given the worker's outcome.
  Finish FinishAttempt(std::string_view tenant, std::string_view id, storage::JobState* state,
                       const codec::LeaseValue& lease, const Outcome& outcome, int64_t now,
                       JobBatch* batch);
  // Applies a committed Finish to the index (caller holds the job's stripe).
  void ApplyFinish(const Finish& f, std::string_view tenant, std::string_view id,
                   const storage::JobState& st, int64_t lease_expires_ms,
                   const std::string& lease_key, int64_t now);
  // A fresh pending task for `state` (new seq), recorded in state; the caller writes its key
  // and fills job_id.
  TaskRef NewTask(storage::JobState* state, int64_t due_ms);
  // Puts a pending task for `state` (fresh seq) and records it in state.
  TaskRef PutTask(std::string_view tenant, std::string_view id, storage::JobState* state,
                  int64_t due_ms, rocksdb::WriteBatchBase* batch, std::string* queue_prefix);
  // Adds committed tasks to the index and wakes their queues' long-polls.
  void PublishTasks(std::vector<std::pair<std::string, TaskRef>>* tasks, int64_t now);
  std::vector<Task> LeaseRefs(const std::string& queue_prefix, std::vector<TaskRef> refs,
                              const LeaseRequest& request, int64_t now, Status* status);
  Result<std::vector<Task>> LeaseOnce(const LeaseRequest& request);
  Status ReapOne(const std::string& lease_key, int64_t now);

  // Limits (engine_limits.cc).
  // How a job that must acquire its limits fared: granted all, or parked on limit `blocked`.
  struct Acquire {
    bool granted = false;
    int blocked = -1;
  };
  std::mutex& FloatStripe(std::string_view tenant, std::string_view key);
  // Makes sure every floating limit of `st` has a stored record (creating it from the job's
  // limit spec) and returns them, by limit index. Caller holds the job's stripe.
  Status EnsureFloating(std::string_view tenant, const storage::JobState& st,
                        std::vector<storage::FloatingRecord>* recs);
  // Decides acquisition for one job (caller holds its stripe and limits_mu_) and reserves or
  // parks it in memory; the caller writes the matching records.
  Acquire DecideAcquire(std::string_view tenant, std::string_view id, const storage::JobState& st,
                        const std::vector<storage::FloatingRecord>& recs);
  // Adds the writes that take every slot (H keys) / park on limit i (W key) / release them.
  void PutHolds(std::string_view tenant, std::string_view id, storage::JobState* st,
                rocksdb::WriteBatchBase* batch);
  void PutWaiter(std::string_view tenant, std::string_view id, storage::JobState* st, int index,
                 rocksdb::WriteBatchBase* batch);
  void PutRelease(std::string_view tenant, std::string_view id, storage::JobState* st,
                  rocksdb::WriteBatchBase* batch);
  void DeleteWaiter(std::string_view tenant, const storage::JobState& st,
                    rocksdb::WriteBatchBase* batch);
  // After the write committed: give back the job's slots / drop its waiter entry in memory,
  // and mark the keys for a grant pass.
  void ReleaseCommitted(std::string_view tenant, std::string_view id, const storage::JobState& st);
  void UnparkCommitted(std::string_view tenant, const storage::JobState& st, int index);
  bool GrantOne(const std::string& key_id);
  // limits_.GetOrCreate, re-reading a floating key's stored record when it becomes active
  // (caller holds limits_mu_).
  KeyState* GetOrCreateKey(std::string_view tenant, const storage::LimitRecord& l,
                           const storage::FloatingRecord* rec);
  // Removes a pending job from the ready range or its waiter queue (releasing slots of a
  // granted job) in `batch`; the Committed half updates memory after the write.
  void RemovePending(std::string_view tenant, std::string_view id, storage::JobState* st,
                     rocksdb::WriteBatchBase* batch);
  void RemovePendingCommitted(std::string_view tenant, std::string_view id,
                              const storage::JobState& before);
  Status RebuildLimits();
  std::optional<RefreshTask> IssueRefresh(const LeaseRequest& request, int64_t now);
  Status ApplyFloating(std::string_view tenant, std::string_view key,
                       const std::function<Status(storage::FloatingRecord*)>& change,
                       std::optional<uint64_t> token);

  int64_t Now() const { return clock_->NowMs(); }
  // The next engine-wide sequence number (task order, lease and refresh tokens). Values are
  // never reused, even across a restart with the clock stepped back: blocks are reserved in
  // the store ('S' key) before they are handed out.
  uint64_t NextSeq() {
    const uint64_t v = seq_.Next();
    if (v >= seq_reserved_.load(std::memory_order_acquire)) ReserveSeq(v);
    return v;
  }
  void ReserveSeq(uint64_t at_least);
  uint64_t NextRandom();

  EngineOptions options_;
  std::shared_ptr<Clock> clock_;
  std::unique_ptr<rocksdb::OptimisticTransactionDB> db_;
  rocksdb::WriteOptions write_options_;
  rocksdb::WriteOptions lease_write_options_;  // leases: never fsynced (decisions §44)
  rocksdb::ReadOptions read_options_;

  std::array<std::mutex, kStripes> stripes_;
  // The job counters in memory (see CounterSlots).
  CounterSlots counter_slots_;
  mutable std::mutex index_mu_;
  // GetResult waiters: job key -> number of waiters; finished_gen_ moves on every final
  // transition of a waited-on job. Notifiers look only when result_waiter_count_ > 0.
  std::mutex result_mu_;
  std::condition_variable result_cv_;
  std::unordered_map<std::string, int> result_waiters_;
  std::atomic<int> result_waiter_count_{0};
  uint64_t finished_gen_ = 0;
  MemoryIndex index_;
  // Every 'D' (due-index) entry is due after this: scans of due jobs start here, skipping the
  // deleted entries of earlier promotions (engine_index.cc).
  std::atomic<int64_t> due_floor_{0};
  // Running jobs stay filed as waiting in the persistent indexes, so a lease writes no index
  // entry; listings and counts tell them apart through this set, keyed by tenant and position
  // (created_ms, enqueue_seq). A job enters it before its lease is written and leaves it after
  // the write that ends the attempt, so it holds every job running in any snapshot (plus, for a
  // moment, jobs in transition: readers confirm with the job record).
  struct RunningJob {
    std::string id;
    std::string queue;
  };
  mutable std::mutex running_mu_;
  std::map<std::string, std::map<std::pair<uint64_t, uint64_t>, RunningJob>, std::less<>> running_;
  // Running jobs leased by this process, with their job record and lease exactly as stored, so
  // that the report of an attempt reads neither (decisions §65). live_[s] is keyed by lease key
  // and only touched under stripes_[s]. An entry is added once the lease write returned, a
  // heartbeat updates its lease, and every write of the job record drops it (PutJob, DeleteJob);
  // without an entry the store is read as usual.
  struct LiveJob {
    storage::JobState st;
    codec::LeaseValue lease;
  };
  std::array<std::unordered_map<std::string, LiveJob>, kStripes> live_;
  std::map<std::pair<std::string, std::string>, int64_t> running_per_queue_;
  mutable std::mutex limits_mu_;
  LimitIndex limits_;
  std::array<std::mutex, 256> float_stripes_;

  std::atomic<bool> closed_{false};
  std::atomic<bool> failed_{false};
  std::atomic<int64_t> active_calls_{0};
  std::mutex close_mu_;
  std::condition_variable close_cv_;
  bool store_closed_ = false;

  std::thread reaper_;
  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_stop_ = false;

  UuidV7Generator ids_;
  Sequence seq_;
  std::atomic<uint64_t> seq_reserved_{0};
  std::mutex seq_mu_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;

  struct Counters {
    std::atomic<uint64_t> enqueued{0}, leased{0}, succeeded{0}, failed{0}, cancelled{0}, retried{0},
        lease_expired{0}, grants{0}, refreshes_issued{0};
  } counters_;

  friend class Engine;
};

}  // namespace sluice

#endif  // SLUICE_CORE_SRC_ENGINE_IMPL_H_
