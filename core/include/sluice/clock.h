// Clock: the engine's only source of wall time, injectable so tests are deterministic.
#ifndef SLUICE_CLOCK_H_
#define SLUICE_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace sluice {

// Milliseconds since the Unix epoch. Implementations must be thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Current time in ms since the epoch. Called on every transition; must be cheap.
  virtual int64_t NowMs() const = 0;
};

// The real wall clock (std::chrono::system_clock).
class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override;
};

// A clock that moves only when told to. Thread-safe. Used by tests to step through backoff,
// scheduling and lease expiry without sleeping.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}
  int64_t NowMs() const override { return now_.load(std::memory_order_acquire); }
  // Moves time forward by delta_ms (which must be >= 0).
  void Advance(int64_t delta_ms) { now_.fetch_add(delta_ms, std::memory_order_acq_rel); }
  // Sets the time. Moving it backwards is allowed (it models a wall-clock step).
  void Set(int64_t now_ms) { now_.store(now_ms, std::memory_order_release); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace sluice

#endif  // SLUICE_CLOCK_H_
