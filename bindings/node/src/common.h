// Per-environment state of the addon, the shared C handle, and failures taken out of the C ABI.
#ifndef SLUICE_NODE_COMMON_H_
#define SLUICE_NODE_COMMON_H_

#include <napi.h>
#include <sluice/sluice.h>

#include <memory>
#include <string>

namespace sluice_node {

// ---- Per-environment state ----------------------------------------------------------------

struct AddonData {
  Napi::FunctionReference engine_ctor;
  Napi::FunctionReference cancel_token_ctor;
  Napi::FunctionReference error_factory;
};

inline AddonData* Data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// Builds the JS error for a failed status: the factory's class when one is set.
inline Napi::Value MakeError(Napi::Env env, sluice_status status, const std::string& message) {
  AddonData* data = Data(env);
  const char* name = sluice_status_name(status);
  if (data != nullptr && !data->error_factory.IsEmpty()) {
    return data->error_factory.Call({Napi::Number::New(env, static_cast<double>(status)),
                                     Napi::String::New(env, name),
                                     Napi::String::New(env, message)});
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("status", Napi::Number::New(env, static_cast<double>(status)));
  e.Set("code", Napi::String::New(env, name));
  return e.Value();
}

// The C handle, shared by the Engine object and every call in flight.
struct Handle {
  sluice_engine* engine = nullptr;
  Handle() = default;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { sluice_engine_destroy(engine); }
};
using HandlePtr = std::shared_ptr<Handle>;

// A C cancel token, shared by its JS CancelToken object and every query using it: the token is
// destroyed only after the last of them lets go (sluice.h: never while a call uses it).
struct TokenHandle {
  sluice_cancel_token* token = nullptr;
  TokenHandle() = default;
  TokenHandle(const TokenHandle&) = delete;
  TokenHandle& operator=(const TokenHandle&) = delete;
  ~TokenHandle() { sluice_cancel_token_destroy(token); }
};
using TokenPtr = std::shared_ptr<TokenHandle>;

// A status and message taken out of a sluice_error (which is freed at once).
struct Failure {
  sluice_status status = SLUICE_OK;
  std::string message;

  void Take(sluice_status st, sluice_error* err) {
    status = st;
    if (st != SLUICE_OK)
      message = err != nullptr ? sluice_error_message(err) : sluice_status_name(st);
    sluice_error_free(err);
  }
};

inline sluice_str Str(const std::string& s) { return sluice_str{s.data(), s.size()}; }

}  // namespace sluice_node

#endif  // SLUICE_NODE_COMMON_H_
