// Bearer-token authentication, checked by a gRPC server interceptor on every RPC.
//
// The interceptor reads `authorization: Bearer <token>` when the call's metadata arrives,
// records the verified Principal for the call (CallPrincipals) and, when verification failed,
// replaces whatever status the call ends with by UNAUTHENTICATED. Handlers fetch the Principal
// first and refuse to run without one, so no handler can touch the engine unauthenticated.
// (gRPC 1.51 aborts on an AuthMetadataProcessor over insecure credentials: ENVIRONMENT.md.)
#ifndef SLUICE_SERVER_SRC_AUTH_H_
#define SLUICE_SERVER_SRC_AUTH_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <array>
#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config.h"

namespace sluice::server {

// Who a call acts as.
struct Principal {
  bool bound = false;  // the token names a tenant: the call acts for it only
  std::string tenant;  // bound tokens only
};

// The accepted tokens. Comparison is constant-time in the token's bytes.
class TokenTable {
 public:
  // disabled: every call is an operator (--no-auth).
  TokenTable(std::vector<TokenSpec> tokens, bool disabled);

  // Verifies an `authorization` header value. nullopt when missing, malformed or unknown;
  // *reason says which (never echoes the token).
  std::optional<Principal> Verify(std::optional<std::string_view> header,
                                  std::string* reason) const;

  bool disabled() const { return disabled_; }

 private:
  std::vector<TokenSpec> tokens_;
  bool disabled_;
};

// Verified principals of the calls in flight, keyed by their ServerContext.
class CallPrincipals {
 public:
  void Set(const grpc::ServerContextBase* ctx, std::optional<Principal> p);
  // The call's principal; nullopt when it is unauthenticated or was never checked.
  std::optional<Principal> Get(const grpc::ServerContextBase* ctx) const;
  void Erase(const grpc::ServerContextBase* ctx);

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<const grpc::ServerContextBase*, std::optional<Principal>> calls;
  };
  Shard& ShardOf(const grpc::ServerContextBase* ctx) const;
  mutable std::array<Shard, kShards> shards_;
};

// Called at the end of every RPC: method, final status, seconds since its metadata arrived.
using RpcObserver =
    std::function<void(std::string_view method, grpc::StatusCode code, double seconds)>;

// Creates the per-call interceptor: authentication plus per-RPC metrics and logs.
class AuthInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // in_flight counts the calls whose interceptor is alive (for the drain).
  AuthInterceptorFactory(const TokenTable* tokens, CallPrincipals* principals, RpcObserver observer,
                         std::atomic<int64_t>* in_flight)
      : tokens_(tokens),
        principals_(principals),
        observer_(std::move(observer)),
        in_flight_(in_flight) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const TokenTable* tokens_;
  CallPrincipals* principals_;
  RpcObserver observer_;
  std::atomic<int64_t>* in_flight_;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_AUTH_H_
