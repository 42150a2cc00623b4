// Running C ABI calls off the event loop and settling their Promises on it.
#ifndef SLUICE_NODE_CALLS_H_
#define SLUICE_NODE_CALLS_H_

#include <napi.h>
#include <sluice/sluice.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "common.h"

namespace sluice_node {

// An Op has `sluice_status Run(sluice_engine*, sluice_error**)` (worker thread) and
// `Napi::Value Result(Napi::Env)` (loop thread, only after Run returned SLUICE_OK).

template <class Op>
void Settle(Napi::Env env, Napi::Promise::Deferred& deferred, Op& op, const Failure& f) {
  try {
    if (f.status != SLUICE_OK) {
      deferred.Reject(MakeError(env, f.status, f.message));
    } else {
      deferred.Resolve(op.Result(env));
    }
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
  }
}

// Short calls: one AsyncWorker on the libuv pool. The Engine object stays referenced until the
// call settles.
template <class Op>
class PoolCall : public Napi::AsyncWorker {
 public:
  static Napi::Promise Start(const Napi::Object& self, HandlePtr handle, Op op) {
    auto* call = new PoolCall(self, std::move(handle), std::move(op));
    Napi::Promise p = call->deferred_.Promise();
    call->Queue();
    return p;
  }

 protected:
  void Execute() override {
    sluice_error* err = nullptr;
    const sluice_status st = op_.Run(handle_->engine, &err);
    failure_.Take(st, err);
  }
  void OnOK() override { Settle(Env(), deferred_, op_, failure_); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  PoolCall(const Napi::Object& self, HandlePtr handle, Op op)
      : Napi::AsyncWorker(self.Env(), "sluice"),
        deferred_(Napi::Promise::Deferred::New(self.Env())),
        self_(Napi::Persistent(self)),
        handle_(std::move(handle)),
        op_(std::move(op)) {}

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference self_;  // keeps the Engine (and its finalizer) alive until settled
  HandlePtr handle_;
  Op op_;
  Failure failure_;
};

// The threads that run long calls (lease, completeMany). Grows when every thread is busy (a
// long-poll holds its thread for up to wait_ms), up to kMaxThreads; a thread idle for kIdle
// exits. Never destroyed: its threads are detached.
class Executor {
 public:
  static Executor& Get() {
    static auto* executor = new Executor();  // leaked on purpose: detached threads use it
    return *executor;
  }

  void Submit(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
    if (queue_.size() > idle_ && threads_ < kMaxThreads) {
      ++threads_;
      std::thread([this] { Loop(); }).detach();
    } else {
      cv_.notify_one();
    }
  }

 private:
  static constexpr size_t kMaxThreads = 1024;
  static constexpr std::chrono::seconds kIdle{30};

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (queue_.empty()) {
        ++idle_;
        bool woke = cv_.wait_for(lock, kIdle, [this] { return !queue_.empty(); });
        --idle_;
        if (!woke) {
          --threads_;
          return;
        }
      }
      std::function<void()> task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t idle_ = 0;
  size_t threads_ = 0;
};

// Long calls: run on the Executor, settle on the loop through a thread-safe function (which
// also keeps the loop alive while the call is pending).
//
// Teardown: when the environment goes away (process.exit, a worker thread ending) with a call
// still running, Node frees the thread-safe function although our thread still holds it. An
// env cleanup hook, registered after the function and therefore run before Node's own, marks
// the call abandoned under mu_; the executor thread then never touches the function and leaks
// the call (its references belong to the dead environment).
template <class Op>
class ThreadCall {
 public:
  static Napi::Promise Start(const Napi::Object& self, HandlePtr handle, Op op) {
    Napi::Env env = self.Env();
    auto* call = new ThreadCall(self, std::move(handle), std::move(op));
    Napi::Promise p = call->deferred_.Promise();
    napi_status st = napi_create_threadsafe_function(
        env, nullptr, nullptr, Napi::String::New(env, "sluice.call"), 0, 1, nullptr, nullptr,
        nullptr, &ThreadCall::Deliver, &call->tsfn_);
    if (st != napi_ok) {
      delete call;
      throw Napi::Error::New(env, "napi_create_threadsafe_function failed");
    }
    napi_add_env_cleanup_hook(env, &ThreadCall::EnvGone, call);
    Executor::Get().Submit([call] { call->Execute(); });
    return p;
  }

 private:
  ThreadCall(const Napi::Object& self, HandlePtr handle, Op op)
      : deferred_(Napi::Promise::Deferred::New(self.Env())),
        self_(Napi::Persistent(self)),
        handle_(std::move(handle)),
        op_(std::move(op)) {}

  void Execute() {
    sluice_error* err = nullptr;
    const sluice_status st = op_.Run(handle_->engine, &err);
    failure_.Take(st, err);
    handle_.reset();  // the engine may now be destroyed here, if it was finalized meanwhile
    std::lock_guard<std::mutex> lock(mu_);
    if (env_gone_) return;                                              // abandoned: see above
    napi_call_threadsafe_function(tsfn_, this, napi_tsfn_nonblocking);  // the queue is unbounded
    napi_release_threadsafe_function(tsfn_, napi_tsfn_release);
    // Deliver may delete `this` as soon as mu_ is released: touch nothing after this point.
  }

  static void EnvGone(void* arg) {
    auto* call = static_cast<ThreadCall*>(arg);
    std::lock_guard<std::mutex> lock(call->mu_);
    call->env_gone_ = true;
  }

  static void Deliver(napi_env env, napi_value, void*, void* data) {
    auto* call = static_cast<ThreadCall*>(data);
    if (env == nullptr) return;  // the function is being torn down: abandoned (EnvGone ran)
    napi_remove_env_cleanup_hook(env, &ThreadCall::EnvGone, call);
    { std::lock_guard<std::mutex> lock(call->mu_); }  // wait until Execute lets go of `call`
    Napi::Env e(env);
    Napi::HandleScope scope(e);
    Settle(e, call->deferred_, call->op_, call->failure_);
    delete call;
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference self_;
  HandlePtr handle_;
  Op op_;
  Failure failure_;
  napi_threadsafe_function tsfn_ = nullptr;
  std::mutex mu_;
  bool env_gone_ = false;
};

}  // namespace sluice_node

#endif  // SLUICE_NODE_CALLS_H_
