// Conversions between the wire messages (sluice.v1) and the engine's value types. Pure
// functions; validation stays in the engine (one place decides what is valid), except for what
// only the wire can get wrong (an enum value the engine has no name for, a malformed cursor).
#ifndef SLUICE_SERVER_SRC_CONVERT_H_
#define SLUICE_SERVER_SRC_CONVERT_H_

#include <string>
#include <string_view>

#include "sluice/status.h"
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

// Wire listing -> engine listing for `tenant` (filter, order, cursor and view; the page size is
// the service's to decide). kInvalidArgument naming the field for an unknown status or view, or
// a cursor this server did not hand out.
Status FromProto(const v1::ListJobsRequest& in, const std::string& tenant, ListJobsRequest* out);
// The engine's cursor (any bytes) as the wire's opaque string: URL-safe base64 without padding.
std::string EncodeCursor(std::string_view engine_cursor);
void ToProto(const QueueCounts& in, v1::QueueCounts* out);
// Columns and typed rows; TEXT that is not valid UTF-8 (a proto string must be) becomes a blob.
void ToProto(const QueryResult& in, v1::QueryResponse* out);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_CONVERT_H_
