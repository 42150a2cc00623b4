// Record codecs: fixed-layout values for the hot path (tasks, leases) and conversions between
// the storage protobufs and the public types.
#ifndef SLUICE_CORE_SRC_CODEC_H_
#define SLUICE_CORE_SRC_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/types.h"
#include "storage.pb.h"

namespace sluice::codec {

// Value of an 'L' key: the one live lease of a job. Fixed layout, decoded without protobuf:
//   u64 token | u64 expires_ms | u64 started_ms | u64 lease_ms | u32 attempt | u8 flags | worker
struct LeaseValue {
  uint64_t token = 0;
  int64_t expires_ms = 0;
  int64_t started_ms = 0;
  uint64_t lease_ms = 0;
  uint32_t attempt = 0;
  bool cancel_requested = false;
  std::string worker_id;
};
std::string EncodeLease(const LeaseValue& v);
bool DecodeLease(std::string_view in, LeaseValue* out);

// Task ids: "<job_id>#<attempt>". Job ids may contain '#'; the attempt is after the last one.
std::string TaskId(std::string_view job_id, uint32_t attempt);
bool ParseTaskId(std::string_view task_id, std::string_view* job_id, uint32_t* attempt);

storage::RetryPolicyRecord ToRecord(const RetryPolicy& p);
RetryPolicy FromRecord(const storage::RetryPolicyRecord& r);
void ToRecord(const ConcurrencyLimit& l, storage::LimitRecord* r);
ConcurrencyLimit FromRecord(const storage::LimitRecord& r);
Attempt FromRecord(std::string_view job_id, const storage::AttemptRecord& r);

// Public status of a stored job at time now_ms (pending splits into scheduled / waiting).
JobStatus PublicStatus(const storage::JobState& s, int64_t now_ms);

// The public job (no attempts) from its records. body == nullptr: without payload. The body's
// payload is moved out.
Job ToJob(std::string_view tenant, std::string_view id, const storage::JobState& st,
          storage::JobBody* body, int64_t now_ms);

}  // namespace sluice::codec

#endif  // SLUICE_CORE_SRC_CODEC_H_
