// Order-preserving key encoding for every record in the store (DESIGN.md §4).
//
// Every key starts with a one-byte prefix naming its key space. Strings are encoded as a
// big-endian uint16 length followed by the bytes (unambiguous; ordering between different
// strings does not matter to any scan). Integers are big-endian so byte order is numeric order.
//
//   'V'                                     -> format version (uint32 BE)
//   'S'                                     -> sequence numbers reserved up to (uint64 BE)
//   'J' str(tenant) str(id)                 -> storage::JobState
//   'B' str(tenant) str(id)                 -> storage::JobBody
//   'A' str(tenant) str(id) u32(attempt)    -> storage::AttemptRecord (written when it ends)
//   'T' str(tenant) str(queue) u8(prio) u64(due_ms) u64(seq) -> TaskValue (ready/scheduled)
//   'L' str(tenant) str(id)                 -> LeaseValue (one live lease per job)
//   'H' str(tenant) str(limkey) str(id)     -> LimitEntry (the job holds a slot of the key)
//   'W' str(tenant) str(limkey) u8(prio) u64(due_ms) u64(seq) -> LimitEntry + id (waiter)
//   'F' str(tenant) str(key)                -> storage::FloatingRecord
// Job indexes (format 2; engine_index.cc). pos = u64(created_ms) u64(enqueue_seq), unique per
// job and immutable, so every index range lists jobs in creation order. st = u8(JobStatus the
// job is filed under). Their value is IndexValue: str(id) str(queue) u64(due_ms if scheduled).
//   'E' str(tenant) pos                     -> every job
//   'G' str(tenant) st pos                  -> (unused since the running-set change; VerifyIndexes
//                                              expects none, the migration drops any)
//   'Y' str(tenant) str(queue) st pos       -> by queue and status
//   'M' str(tenant) str(key) str(value) st pos -> by metadata pair and status
//   'D' u64(due_ms) u64(enqueue_seq)        -> str(tenant) str(id) str(queue) u64(created_ms):
//                                              jobs filed as scheduled, by due time (promotion)
//   'C' str(tenant) str(queue) u16(slot)    -> 6 x int64 LE: jobs per status, of one counter
//                                              slot (engine_impl.h CounterSlots)
// limkey = one kind byte ('x' fixed, 'f' floating) + the key, so the two kinds never mix.
#ifndef SLUICE_CORE_SRC_KEYS_H_
#define SLUICE_CORE_SRC_KEYS_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::keys {

inline constexpr char kVersion = 'V';
inline constexpr char kSeqReserved = 'S';
inline constexpr char kJob = 'J';
inline constexpr char kBody = 'B';
inline constexpr char kAttempt = 'A';
inline constexpr char kTask = 'T';
inline constexpr char kLease = 'L';
inline constexpr char kHolder = 'H';
inline constexpr char kWaiter = 'W';
inline constexpr char kFloating = 'F';
inline constexpr char kIdxAll = 'E';
inline constexpr char kIdxStatus = 'G';
inline constexpr char kIdxQueue = 'Y';
inline constexpr char kIdxMeta = 'M';
inline constexpr char kIdxDue = 'D';
inline constexpr char kCount = 'C';

// The store format this build writes and reads.
// 2: job indexes and metadata in JobState (a format-1 store is migrated at open).
// 3: payloads up to 1 KiB in JobState, without a body record (a format-2 store is read as is).
inline constexpr uint32_t kFormatVersion = 3;

void PutU8(std::string* out, uint8_t v);
void PutU32(std::string* out, uint32_t v);
void PutU64(std::string* out, uint64_t v);
void PutStr(std::string* out, std::string_view s);

// A cursor over an encoded key or value; every Get fails (returns false) past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool GetU8(uint8_t* v);
  bool GetU32(uint32_t* v);
  bool GetU64(uint64_t* v);
  bool GetStr(std::string_view* s);
  bool GetRest(std::string_view* s);
  bool empty() const { return in_.empty(); }

 private:
  std::string_view in_;
};

std::string VersionKey();
std::string JobKey(std::string_view tenant, std::string_view id);
std::string BodyKey(std::string_view tenant, std::string_view id);
std::string AttemptKey(std::string_view tenant, std::string_view id, uint32_t attempt);
// Prefix of all attempts of one job.
std::string AttemptPrefix(std::string_view tenant, std::string_view id);
std::string LeaseKey(std::string_view tenant, std::string_view id);
// The queue part of a task key: 'T' str(tenant) str(queue). Also the in-memory queue id.
std::string QueuePrefix(std::string_view tenant, std::string_view queue);
std::string TaskKey(std::string_view queue_prefix, uint32_t priority, int64_t due_ms, uint64_t seq);

// The limit key id: kind byte + key.
std::string LimKey(bool floating, std::string_view key);
// 'H'/'W' prefix of one key: prefix str(tenant) str(limkey).
std::string LimitPrefix(char space, std::string_view tenant, std::string_view limkey);
std::string HolderKey(std::string_view tenant, std::string_view limkey, std::string_view id);
std::string WaiterKey(std::string_view tenant, std::string_view limkey, uint32_t priority,
                      int64_t due_ms, uint64_t seq);
std::string FloatingKey(std::string_view tenant, std::string_view key);

// Index key prefixes (without pos) and the position suffix.
std::string IdxAllPrefix(std::string_view tenant);
std::string IdxStatusPrefix(std::string_view tenant, uint8_t status);
std::string IdxQueuePrefix(std::string_view tenant, std::string_view queue, uint8_t status);
std::string IdxMetaPrefix(std::string_view tenant, std::string_view key, std::string_view value,
                          uint8_t status);
void PutPos(std::string* out, int64_t created_ms, uint64_t seq);
// The position at the end of an index key (its last 16 bytes).
bool ParsePos(std::string_view key, int64_t* created_ms, uint64_t* seq);
std::string IdxDueKey(int64_t due_ms, uint64_t seq);
// shard: the counter slot (CounterSlots in engine_impl.h).
std::string CountKey(std::string_view tenant, std::string_view queue, uint16_t shard);
// The end of the key range of every key starting with `prefix`.
std::string PrefixEnd(std::string prefix);

// Decoded task key.
struct TaskKeyParts {
  std::string_view tenant;
  std::string_view queue;
  uint32_t priority = 0;
  int64_t due_ms = 0;
  uint64_t seq = 0;
};
bool ParseTaskKey(std::string_view key, TaskKeyParts* out);
// Decodes an 'H' key.
bool ParseHolderKey(std::string_view key, std::string_view* tenant, std::string_view* limkey,
                    std::string_view* id);
// Decodes a 'W' key.
bool ParseWaiterKey(std::string_view key, std::string_view* tenant, std::string_view* limkey,
                    TaskKeyParts* parts);
// Decodes a 'L' or 'J' key into (tenant, id).
bool ParseJobScopedKey(std::string_view key, std::string_view* tenant, std::string_view* id);

}  // namespace sluice::keys

#endif  // SLUICE_CORE_SRC_KEYS_H_
