// Conversions between the wire messages (sluice.v1) and the engine's value types. Pure
// functions; validation stays in the engine (one place decides what is valid).
#ifndef SLUICE_SERVER_SRC_CONVERT_H_
#define SLUICE_SERVER_SRC_CONVERT_H_

#include "sluice/types.h"
#include "sluice/v1/sluice.pb.h"

namespace sluice::server {

// Wire job spec -> engine spec for `tenant`. An unset priority is the engine default (50).
JobSpec FromProto(const v1::JobSpec& in, const std::string& tenant);
// Wire outcome -> engine outcome; false when no kind is set.
bool FromProto(const v1::Outcome& in, Outcome* out);

v1::JobStatus ToProto(JobStatus s);
void ToProto(const EnqueueResult& in, v1::EnqueueResponse* out);
void ToProto(const Job& in, v1::Job* out);
void ToProto(const Task& in, v1::Task* out);
void ToProto(const RefreshTask& in, v1::RefreshTask* out);
void ToProto(const JobResult& in, v1::GetJobResultResponse* out);
void ToProto(const FloatingLimitState& in, v1::FloatingLimit* out);
void ToProto(const ConcurrencyKeyInfo& in, v1::ConcurrencyKey* out);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_CONVERT_H_
