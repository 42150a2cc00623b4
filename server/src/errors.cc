#include "errors.h"

namespace sluice::server {

grpc::StatusCode GrpcCode(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return grpc::StatusCode::OK;
    case StatusCode::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case StatusCode::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case StatusCode::kTooLarge:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case StatusCode::kLeaseLost:
    case StatusCode::kFailedPrecondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case StatusCode::kClosed:
      return grpc::StatusCode::UNAVAILABLE;
    case StatusCode::kIoError:
      return grpc::StatusCode::INTERNAL;
    case StatusCode::kCorruption:
      return grpc::StatusCode::DATA_LOSS;
    case StatusCode::kTimeout:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case StatusCode::kAlreadyExists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case StatusCode::kBusy:
      return grpc::StatusCode::ABORTED;
    case StatusCode::kCancelled:
      return grpc::StatusCode::CANCELLED;
  }
  return grpc::StatusCode::INTERNAL;
}

grpc::Status ToGrpc(const Status& s, grpc::ServerContextBase* ctx) {
  if (s.ok()) return grpc::Status::OK;
  return ServerError(ctx, GrpcCode(s.code()), StatusCodeName(s.code()), s.message());
}

grpc::Status ServerError(grpc::ServerContextBase* ctx, grpc::StatusCode code,
                         std::string_view sluice_code, const std::string& message) {
  if (ctx != nullptr) ctx->AddTrailingMetadata(kCodeTrailer, std::string(sluice_code));
  return {code, message};
}

}  // namespace sluice::server
