// The one mapping from engine Status to gRPC status (docs/errors.md): the gRPC code is the
// contract, and every error also carries the trailing metadata `sluice-code` with the engine's
// stable code name, which separates lease_lost from failed_precondition (both
// FAILED_PRECONDITION). Messages are for people.
#ifndef SLUICE_SERVER_SRC_ERRORS_H_
#define SLUICE_SERVER_SRC_ERRORS_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <string_view>

#include "sluice/status.h"

namespace sluice::server {

// Trailing-metadata key carrying the stable code name of every error.
inline constexpr char kCodeTrailer[] = "sluice-code";

// The gRPC code of an engine status code.
grpc::StatusCode GrpcCode(StatusCode code);

// Converts an engine status, adding the `sluice-code` trailer to ctx (when given).
grpc::Status ToGrpc(const Status& s, grpc::ServerContextBase* ctx);

// A server-side error that has no engine code (unauthenticated, permission_denied).
grpc::Status ServerError(grpc::ServerContextBase* ctx, grpc::StatusCode code,
                         std::string_view sluice_code, const std::string& message);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_ERRORS_H_
