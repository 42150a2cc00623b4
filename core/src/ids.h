// Identifier generation: time-ordered UUIDv7 job ids and monotonic sequence numbers.
#ifndef SLUICE_CORE_SRC_IDS_H_
#define SLUICE_CORE_SRC_IDS_H_

#include <atomic>
#include <cstdint>
#include <string>

namespace sluice {

// Generates RFC 9562 UUIDv7 strings (lowercase, 36 chars). The 48-bit millisecond timestamp is
// followed by a 12-bit counter (rand_a used as a monotonic counter, method 1 of RFC 9562 §6.2)
// so ids from one generator sort in generation order even within one millisecond.
// Thread-safe, lock-free.
class UuidV7Generator {
 public:
  std::string Next(int64_t now_ms);

 private:
  std::atomic<uint64_t> last_{0};  // (ms << 12) | counter of the last id handed out
};

// Monotonic 64-bit sequence. The engine seeds it at open from the store (reserved blocks) and
// the clock, so values keep increasing across restarts. Thread-safe.
class Sequence {
 public:
  void Seed(uint64_t at_least) {
    uint64_t cur = next_.load();
    while (cur < at_least && !next_.compare_exchange_weak(cur, at_least)) {
    }
  }
  uint64_t Next() { return next_.fetch_add(1, std::memory_order_relaxed); }
  // The value Next() would return now.
  uint64_t Peek() const { return next_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> next_{1};
};

// A fast per-thread PRNG (splitmix64 seeded from std::random_device) for id randomness.
uint64_t RandomU64();

}  // namespace sluice

#endif  // SLUICE_CORE_SRC_IDS_H_
