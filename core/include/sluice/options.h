// EngineOptions: how an engine is opened. Every field has a production default.
#ifndef SLUICE_OPTIONS_H_
#define SLUICE_OPTIONS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "sluice/clock.h"
#include "sluice/types.h"

namespace sluice {

// When an acknowledged write is on disk.
enum class Durability : uint8_t {
  // fsync the WAL before acknowledging (RocksDB group commit batches concurrent writers).
  // Survives power loss. The default.
  kSync = 0,
  // Write the WAL without fsync. Survives a process crash (kill -9), not power loss or an OS
  // crash: the loss window is whatever the OS had not yet written back.
  kAsync = 1,
};

// Per-field caps, checked before any write. Exceeding one is kTooLarge, naming field and cap.
struct SizeLimits {
  uint32_t max_id_bytes = 128;
  uint32_t max_tenant_bytes = 128;
  uint32_t max_queue_bytes = 128;
  uint32_t max_worker_id_bytes = 128;
  uint64_t max_payload_bytes = 1 << 20;  // 1 MiB
  uint64_t max_result_bytes = 1 << 20;   // 1 MiB
  uint32_t max_error_code_bytes = 128;
  uint32_t max_error_message_bytes = 8192;
  uint64_t max_error_data_bytes = 64 << 10;  // 64 KiB
  uint32_t max_metadata_entries = 64;
  uint32_t max_metadata_key_bytes = 128;
  uint32_t max_metadata_value_bytes = 1024;
  uint32_t max_limits_per_job = 8;
  uint32_t max_limit_key_bytes = 256;
  uint32_t max_batch_jobs = 10'000;     // EnqueueBatch size
  uint32_t max_list_page = 1'000;       // ListJobs page size
  uint32_t max_list_scan = 100'000;     // keys one ListJobs call may visit (then a short page)
  uint32_t max_query_bytes = 64 << 10;  // SQL text of one Query
};

struct EngineOptions {
  // Directory of the RocksDB store; created when missing.
  std::string path;
  // When writes are acknowledged (see Durability).
  Durability durability = Durability::kSync;
  // Source of time. nullptr: SystemClock.
  std::shared_ptr<Clock> clock;
  // Per-field caps on everything callers send.
  SizeLimits limits;
  // Lease length for jobs that do not set lease_ms.
  uint64_t default_lease_ms = 30'000;
  // Retry policy for jobs that do not set one.
  RetryPolicy default_retry;
  // Background reaper period bound; 0 disables the background thread (call ReapExpired()).
  uint32_t reaper_interval_ms = 100;
  // Most tasks one Lease call may return.
  uint32_t max_lease_batch = 1000;
  // Longest long-poll a Lease call may request; longer waits are capped.
  uint32_t max_wait_ms = 60'000;
  // Seed for jitter; 0 seeds from std::random_device.
  uint64_t rng_seed = 0;
  // Lease length of a floating-limit refresh task (extended by HeartbeatRefresh).
  uint64_t refresh_lease_ms = 30'000;
  // Backoff after failed refreshes: initial * 2^(failures-1), capped.
  uint64_t refresh_backoff_initial_ms = 1'000;
  uint64_t refresh_backoff_max_ms = 60'000;
  // Bound on waiters granted per key per grant pass (keys are served round-robin).
  uint32_t max_grants_per_key_per_pass = 64;
  // RocksDB block cache size in bytes.
  uint64_t block_cache_bytes = 64 << 20;
};

}  // namespace sluice

#endif  // SLUICE_OPTIONS_H_
