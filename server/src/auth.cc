#include "auth.h"

#include <chrono>
#include <functional>

#include "log.h"

namespace sluice::server {
namespace {

// Constant-time in the length of `b` (the stored token): no early exit on the first mismatch.
bool TokenEquals(std::string_view a, std::string_view b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < b.size(); ++i) {
    const auto ca = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    diff |= static_cast<unsigned>(ca ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

class AuthInterceptor : public grpc::experimental::Interceptor {
 public:
  AuthInterceptor(grpc::experimental::ServerRpcInfo* info, const TokenTable* tokens,
                  CallPrincipals* principals, const RpcObserver* observer,
                  std::atomic<int64_t>* in_flight)
      : info_(info),
        tokens_(tokens),
        principals_(principals),
        observer_(observer),
        in_flight_(in_flight) {
    in_flight_->fetch_add(1);
  }

  ~AuthInterceptor() override {
    if (registered_) principals_->Erase(info_->server_context());
    in_flight_->fetch_sub(1);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      start_ = std::chrono::steady_clock::now();
      std::optional<std::string_view> header;
      const auto* md = methods->GetRecvInitialMetadata();
      if (md != nullptr) {
        auto it = md->find("authorization");
        if (it != md->end()) header = std::string_view(it->second.data(), it->second.size());
      }
      std::optional<Principal> p = tokens_->Verify(header, &reason_);
      authenticated_ = p.has_value();
      principals_->Set(info_->server_context(), std::move(p));
      registered_ = true;
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      if (!authenticated_) {
        // Whatever the handler answered, an unauthenticated call ends UNAUTHENTICATED.
        methods->ModifySendStatus(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, reason_));
      }
      const grpc::StatusCode code = authenticated_ ? methods->GetSendStatus().error_code()
                                                   : grpc::StatusCode::UNAUTHENTICATED;
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      (*observer_)(info_->method(), code, secs);
      if (!authenticated_) {
        Log(LogLevel::kWarn, "unauthenticated call",
            {{"method", info_->method()},
             {"peer", info_->server_context()->peer()},
             {"reason", reason_}});
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  const TokenTable* tokens_;
  CallPrincipals* principals_;
  const RpcObserver* observer_;
  std::atomic<int64_t>* in_flight_;
  bool registered_ = false;
  bool authenticated_ = false;
  std::string reason_ = "missing authorization metadata";
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace

TokenTable::TokenTable(std::vector<TokenSpec> tokens, bool disabled)
    : tokens_(std::move(tokens)), disabled_(disabled) {}

std::optional<Principal> TokenTable::Verify(std::optional<std::string_view> header,
                                            std::string* reason) const {
  if (disabled_) return Principal{};
  if (!header) {
    *reason = "missing authorization metadata (expected `authorization: Bearer <token>`)";
    return std::nullopt;
  }
  constexpr std::string_view kScheme = "Bearer ";
  if (header->size() <= kScheme.size() || header->substr(0, kScheme.size()) != kScheme) {
    *reason = "malformed authorization metadata (expected `Bearer <token>`)";
    return std::nullopt;
  }
  const std::string_view token = header->substr(kScheme.size());
  const TokenSpec* match = nullptr;
  for (const TokenSpec& t : tokens_) {
    // Compare against every token: the time taken does not tell which one matched.
    if (TokenEquals(token, t.token) && match == nullptr) match = &t;
  }
  if (match == nullptr) {
    *reason = "invalid token";
    return std::nullopt;
  }
  Principal p;
  if (match->tenant) {
    p.bound = true;
    p.tenant = *match->tenant;
  }
  return p;
}

CallPrincipals::Shard& CallPrincipals::ShardOf(const grpc::ServerContextBase* ctx) const {
  return shards_[(reinterpret_cast<uintptr_t>(ctx) >> 6) % kShards];
}

void CallPrincipals::Set(const grpc::ServerContextBase* ctx, std::optional<Principal> p) {
  Shard& s = ShardOf(ctx);
  std::lock_guard<std::mutex> lock(s.mu);
  s.calls[ctx] = std::move(p);
}

std::optional<Principal> CallPrincipals::Get(const grpc::ServerContextBase* ctx) const {
  Shard& s = ShardOf(ctx);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.calls.find(ctx);
  if (it == s.calls.end()) return std::nullopt;
  return it->second;
}

void CallPrincipals::Erase(const grpc::ServerContextBase* ctx) {
  Shard& s = ShardOf(ctx);
  std::lock_guard<std::mutex> lock(s.mu);
  s.calls.erase(ctx);
}

grpc::experimental::Interceptor* AuthInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new AuthInterceptor(info, tokens_, principals_, &observer_, in_flight_);
}

}  // namespace sluice::server
