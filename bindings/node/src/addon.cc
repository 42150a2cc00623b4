// The Sluice Node addon: a thin N-API layer over the C ABI (sluice.h) and nothing else.
//
// Every engine call returns a Promise and runs off the event loop. Short calls (enqueue,
// complete, reads, ...) run as one Napi::AsyncWorker each on the libuv pool. Long calls run on
// the addon's own growing thread pool instead (Executor, calls.h) and settle through a
// thread-safe function: lease() long-polls for up to wait_ms, and completeMany() commits once per
// item (an fsync each with sync durability). Parked on libuv's four pool threads, they would
// starve fs, dns and every other engine call of the process, and cap concurrent commits at four,
// which defeats RocksDB's group commit (sync e2e measured 3.5k jobs/s there vs 16k here).
//
// query() runs on the same threads: it may take up to its timeout. Its AbortSignal reaches the
// C library through a CancelToken (a sluice_cancel_token), which the TypeScript layer cancels
// when the signal aborts; the query then rejects with CancelledError.
//
// Handles: an Engine object owns a shared reference to the C handle. Every call in flight holds
// another, so the handle is destroyed (sluice_engine_destroy) by whichever lets go last: the
// finalizer or the last call. close() closes it early; later calls reject with SLUICE_CLOSED.
//
// Errors: a failed call rejects with the object the JS error factory (setErrorFactory, set by
// the TypeScript layer) builds from (status, name, message): one Error subclass per status.
// Malformed JS arguments (wrong JS types) throw TypeError/RangeError: they are programmer errors,
// not engine statuses.
#include <napi.h>
#include <sluice/sluice.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "calls.h"
#include "common.h"
#include "convert.h"

namespace sluice_node {
namespace {

// ---- Operations ---------------------------------------------------------------------------

struct OpenOp {
  std::string path;
  sluice_engine_options options = SLUICE_ENGINE_OPTIONS_INIT;
  HandlePtr handle = std::make_shared<Handle>();

  sluice_status Run(sluice_engine*, sluice_error** err) {
    return sluice_engine_open(&handle->engine, Str(path), &options, err);
  }
  Napi::Value Result(Napi::Env env) {
    auto* holder = new HandlePtr(handle);
    return Data(env)->engine_ctor.New(
        {Napi::External<HandlePtr>::New(env, holder, [](Napi::Env, HandlePtr* h) { delete h; })});
  }
};

struct CloseOp {
  sluice_status Run(sluice_engine* e, sluice_error** err) { return sluice_engine_close(e, err); }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};

struct EnqueueOp {
  std::unique_ptr<OwnedSpec> spec = std::make_unique<OwnedSpec>();
  std::shared_ptr<Out<sluice_enqueue_result>> out = std::make_shared<Out<sluice_enqueue_result>>();

  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_enqueue(&out->ptr, e, spec->Bind(), err);
  }
  Napi::Value Result(Napi::Env env) { return JsEnqueueResult(env, *out->ptr); }
};

struct EnqueueBatchOp {
  std::vector<std::unique_ptr<OwnedSpec>> specs;
  std::shared_ptr<Out<sluice_enqueue_results>> out =
      std::make_shared<Out<sluice_enqueue_results>>();

  sluice_status Run(sluice_engine* e, sluice_error** err) {
    std::vector<const sluice_job_spec*> ptrs;
    ptrs.reserve(specs.size());
    for (auto& s : specs) ptrs.push_back(s->Bind());
    return sluice_enqueue_batch(&out->ptr, e, ptrs.data(), ptrs.size(), err);
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Array a = Napi::Array::New(env, out->ptr->len);
    for (size_t i = 0; i < out->ptr->len; ++i) {
      a.Set(static_cast<uint32_t>(i), JsEnqueueResult(env, out->ptr->items[i]));
    }
    return a;
  }
};

struct LeaseOp {
  std::string tenant, queue, worker_id;
  sluice_lease_request request = SLUICE_LEASE_REQUEST_INIT;
  std::shared_ptr<Out<sluice_lease_response>> out = std::make_shared<Out<sluice_lease_response>>();

  sluice_status Run(sluice_engine* e, sluice_error** err) {
    request.tenant = Str(tenant);
    request.queue = Str(queue);
    request.worker_id = Str(worker_id);
    return sluice_lease(&out->ptr, e, &request, err);
  }
  Napi::Value Result(Napi::Env env) {
    const sluice_lease_response& r = *out->ptr;
    Napi::Array tasks = Napi::Array::New(env, r.tasks_len);
    for (size_t i = 0; i < r.tasks_len; ++i)
      tasks.Set(static_cast<uint32_t>(i), JsTask(env, r.tasks[i]));
    Napi::Array refreshes = Napi::Array::New(env, r.refreshes_len);
    for (size_t i = 0; i < r.refreshes_len; ++i) {
      refreshes.Set(static_cast<uint32_t>(i), JsRefresh(env, r.refreshes[i]));
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("tasks", tasks);
    o.Set("refreshes", refreshes);
    return o;
  }
};

struct HeartbeatOp {
  std::string tenant, task_id, worker_id;
  uint64_t token = 0;
  int64_t expires_ms = 0;
  bool cancel_requested = false;

  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_heartbeat(&expires_ms, &cancel_requested, e, Str(tenant), Str(task_id),
                            Str(worker_id), token, err);
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("leaseExpiresMs", Num(env, static_cast<double>(expires_ms)));
    o.Set("cancelRequested", Napi::Boolean::New(env, cancel_requested));
    return o;
  }
};

struct CompleteItem {
  std::string tenant, task_id;
  uint64_t token = 0;
  std::unique_ptr<OwnedOutcome> outcome = std::make_unique<OwnedOutcome>();
};

struct CompleteOp {
  CompleteItem item;
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_complete(e, Str(item.tenant), Str(item.task_id), item.token, item.outcome->Bind(),
                           err);
  }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};

// Many completions in one hop: sluice_complete_batch per chunk (one atomic write, one fsync
// under sync durability), each report with its own status. A chunk the engine refuses as a
// whole (closed, storage failure) gives that status to each of its reports; chunks before it
// were recorded. The call itself always resolves.
struct CompleteManyOp {
  // Below the engine's default max_lease_batch (1000); an engine opened with a smaller one
  // answers SLUICE_TOO_LARGE and the chunk is reported one by one.
  static constexpr size_t kChunk = 256;
  std::vector<CompleteItem> items;
  std::vector<Failure> results;

  sluice_status Run(sluice_engine* e, sluice_error**) {
    results.resize(items.size());
    std::vector<sluice_completion> chunk;
    std::vector<sluice_status> statuses;
    for (size_t start = 0; start < items.size(); start += kChunk) {
      const size_t n = std::min(kChunk, items.size() - start);
      chunk.clear();
      for (size_t i = start; i < start + n; ++i) {
        chunk.push_back(sluice_completion{Str(items[i].tenant), Str(items[i].task_id),
                                          items[i].token, items[i].outcome->Bind()});
      }
      statuses.assign(n, SLUICE_OK);
      sluice_error* err = nullptr;
      const sluice_status st = sluice_complete_batch(statuses.data(), e, chunk.data(), n, &err);
      if (st == SLUICE_TOO_LARGE) {
        sluice_error_free(err);
        for (size_t i = start; i < start + n; ++i) {
          sluice_error* item_err = nullptr;
          const sluice_status s1 =
              sluice_complete(e, Str(items[i].tenant), Str(items[i].task_id), items[i].token,
                              items[i].outcome->Bind(), &item_err);
          results[i].Take(s1, item_err);
        }
        continue;
      }
      if (st != SLUICE_OK) {
        const std::string message = err != nullptr ? sluice_error_message(err) : "";
        sluice_error_free(err);
        for (size_t i = start; i < start + n; ++i) {
          results[i].status = st;
          results[i].message = message.empty() ? sluice_status_name(st) : message;
        }
        continue;
      }
      for (size_t k = 0; k < n; ++k) results[start + k].Take(statuses[k], nullptr);
    }
    return SLUICE_OK;
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Array a = Napi::Array::New(env, results.size());
    for (size_t i = 0; i < results.size(); ++i) {
      a.Set(static_cast<uint32_t>(i), results[i].status == SLUICE_OK
                                          ? env.Null()
                                          : MakeError(env, results[i].status, results[i].message));
    }
    return a;
  }
};

struct CancelOp {
  std::string tenant, id;
  uint32_t status = 0;
  bool cancel_requested = false;
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_cancel(&status, &cancel_requested, e, Str(tenant), Str(id), err);
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("status", JobStatusName(status));
    o.Set("cancelRequested", Napi::Boolean::New(env, cancel_requested));
    return o;
  }
};

using IdCallFn = sluice_status (*)(sluice_engine*, sluice_str, sluice_str, sluice_error**);

struct IdOp {
  IdCallFn fn;
  std::string tenant, id;
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return fn(e, Str(tenant), Str(id), err);
  }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};

struct GetJobOp {
  std::string tenant, id;
  bool include_attempts = false;
  std::shared_ptr<Out<sluice_job>> out = std::make_shared<Out<sluice_job>>();
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_get_job(&out->ptr, e, Str(tenant), Str(id), include_attempts, err);
  }
  Napi::Value Result(Napi::Env env) { return JsJob(env, *out->ptr); }
};

struct GetResultOp {
  std::string tenant, id;
  std::shared_ptr<Out<sluice_job_result>> out = std::make_shared<Out<sluice_job_result>>();
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_get_result(&out->ptr, e, Str(tenant), Str(id), err);
  }
  Napi::Value Result(Napi::Env env) {
    const sluice_job_result& r = *out->ptr;
    Napi::Object o = Napi::Object::New(env);
    o.Set("status", JobStatusName(r.status));
    o.Set("finished", Napi::Boolean::New(env, r.finished));
    o.Set("result", JsBytes(env, r.result));
    o.Set("errorCode", JsStr(env, r.error_code));
    o.Set("errorMessage", JsStr(env, r.error_message));
    o.Set("errorData", JsBytes(env, r.error_data));
    return o;
  }
};

struct ReapOp {
  size_t reaped = 0;
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_reap_expired(&reaped, e, err);
  }
  Napi::Value Result(Napi::Env env) { return Num(env, static_cast<double>(reaped)); }
};

struct RefreshHeartbeatOp {
  std::string tenant, key;
  uint64_t token = 0;
  int64_t expires_ms = 0;
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_refresh_heartbeat(&expires_ms, e, Str(tenant), Str(key), token, err);
  }
  Napi::Value Result(Napi::Env env) { return Num(env, static_cast<double>(expires_ms)); }
};

struct RefreshCompleteOp {
  std::string tenant, key, code, message;
  uint64_t token = 0;
  bool ok = true;
  uint32_t new_max = 0;
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_refresh_complete(e, Str(tenant), Str(key), token, ok, new_max, Str(code),
                                   Str(message), err);
  }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};

struct GetFloatingOp {
  std::string tenant, key;
  std::shared_ptr<Out<sluice_floating_limit>> out = std::make_shared<Out<sluice_floating_limit>>();
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_floating_limit_get(&out->ptr, e, Str(tenant), Str(key), err);
  }
  Napi::Value Result(Napi::Env env) {
    const sluice_floating_limit& f = *out->ptr;
    Napi::Object o = Napi::Object::New(env);
    o.Set("tenant", JsStr(env, f.tenant));
    o.Set("key", JsStr(env, f.key));
    o.Set("currentMax", Num(env, f.current_max));
    o.Set("defaultMax", Num(env, f.default_max));
    o.Set("refreshIntervalMs", Num(env, static_cast<double>(f.refresh_interval_ms)));
    o.Set("lastRefreshedMs", Num(env, static_cast<double>(f.last_refreshed_ms)));
    o.Set("metadata", JsKvs(env, f.metadata, f.metadata_len));
    o.Set("consecutiveFailures", Num(env, f.consecutive_failures));
    o.Set("nextRefreshMs", Num(env, static_cast<double>(f.next_refresh_ms)));
    o.Set("refreshInFlight", Napi::Boolean::New(env, f.refresh_in_flight));
    o.Set("holders", Num(env, static_cast<double>(f.holders)));
    o.Set("waiters", Num(env, static_cast<double>(f.waiters)));
    return o;
  }
};

struct SetFloatingOp {
  std::string tenant, key;
  uint32_t max = 0;
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_floating_limit_set(e, Str(tenant), Str(key), max, err);
  }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};

struct ConcurrencyKeyOp {
  std::string tenant, key;
  uint32_t kind = SLUICE_LIMIT_FIXED;
  uint64_t holders = 0, waiters = 0;
  uint32_t max = 0;
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_concurrency_key_get(&holders, &waiters, &max, e, Str(tenant), kind, Str(key),
                                      err);
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("holders", Num(env, static_cast<double>(holders)));
    o.Set("waiters", Num(env, static_cast<double>(waiters)));
    o.Set("max", Num(env, max));
    return o;
  }
};

struct StatsOp {
  std::shared_ptr<Out<sluice_stats>> out = std::make_shared<Out<sluice_stats>>();
  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_engine_stats(&out->ptr, e, err);
  }
  Napi::Value Result(Napi::Env env) {
    const sluice_stats& s = *out->ptr;
    Napi::Object o = Napi::Object::New(env);
    auto set = [&](const char* k, uint64_t v) { o.Set(k, Num(env, static_cast<double>(v))); };
    set("enqueued", s.enqueued);
    set("leased", s.leased);
    set("succeeded", s.succeeded);
    set("failed", s.failed);
    set("cancelled", s.cancelled);
    set("retried", s.retried);
    set("leaseExpired", s.lease_expired);
    set("pendingTasks", s.pending_tasks);
    set("running", s.running);
    set("limitKeys", s.limit_keys);
    set("limitHolders", s.limit_holders);
    set("limitWaiters", s.limit_waiters);
    return o;
  }
};

struct VerifyIndexesOp {
  sluice_status Run(sluice_engine* e, sluice_error** err) { return sluice_verify_indexes(e, err); }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};

struct ListJobsOp {
  std::unique_ptr<OwnedListRequest> request = std::make_unique<OwnedListRequest>();
  std::shared_ptr<Out<sluice_job_list>> out = std::make_shared<Out<sluice_job_list>>();

  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_list_jobs(&out->ptr, e, request->Bind(), err);
  }
  Napi::Value Result(Napi::Env env) {
    const sluice_job_list& page = *out->ptr;
    Napi::Array jobs = Napi::Array::New(env, page.jobs_len);
    for (size_t i = 0; i < page.jobs_len; ++i) {
      jobs.Set(static_cast<uint32_t>(i), JsJob(env, page.jobs[i]));
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("jobs", jobs);
    o.Set("nextCursor", JsLatin1(env, page.next_cursor));
    o.Set("keysVisited", Num(env, static_cast<double>(page.keys_visited)));
    return o;
  }
};

struct CountJobsOp {
  std::string tenant, queue;
  std::shared_ptr<Out<sluice_queue_counts>> out = std::make_shared<Out<sluice_queue_counts>>();

  sluice_status Run(sluice_engine* e, sluice_error** err) {
    return sluice_count_jobs(&out->ptr, e, Str(tenant), Str(queue), err);
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Array a = Napi::Array::New(env, out->ptr->len);
    for (size_t i = 0; i < out->ptr->len; ++i) {
      a.Set(static_cast<uint32_t>(i), JsQueueCount(env, out->ptr->items[i]));
    }
    return a;
  }
};

struct QueryOp {
  struct Free {
    void operator()(sluice_query_result* r) const { sluice_query_result_free(r); }
  };
  std::string tenant, sql;
  sluice_query_options options = SLUICE_QUERY_OPTIONS_INIT;
  TokenPtr token;  // may be null: not cancellable
  std::shared_ptr<sluice_query_result> out;

  sluice_status Run(sluice_engine* e, sluice_error** err) {
    options.cancel_token = token ? token->token : nullptr;
    sluice_query_result* r = nullptr;
    const sluice_status st = sluice_query(&r, e, Str(tenant), Str(sql), &options, err);
    out.reset(r, Free());
    return st;
  }
  Napi::Value Result(Napi::Env env) { return JsQueryResult(env, out.get()); }
};

// ---- The CancelToken class ----------------------------------------------------------------
//
// new CancelToken(): a sluice_cancel_token. cancel() may be called at any time (an abort
// listener does); queries holding the token stop with SLUICE_CANCELLED.

class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CancelToken",
                       {InstanceMethod<&CancelToken::Cancel>("cancel"),
                        InstanceAccessor<&CancelToken::Cancelled>("cancelled")});
  }

  explicit CancelToken(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelToken>(info) {
    handle_ = std::make_shared<TokenHandle>();
    sluice_error* err = nullptr;
    Failure f;
    f.Take(sluice_cancel_token_create(&handle_->token, &err), err);
    if (f.status != SLUICE_OK) {
      throw Napi::Error(info.Env(), MakeError(info.Env(), f.status, f.message));
    }
  }

  // The token of a JS value that must be a CancelToken (or absent: null).
  static TokenPtr From(const Napi::Value& v, const char* what) {
    if (Absent(v)) return nullptr;
    AddonData* data = Data(v.Env());
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data->cancel_token_ctor.Value())) {
      ThrowType(v.Env(), what, "a CancelToken");
    }
    return Unwrap(v.As<Napi::Object>())->handle_;
  }

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    sluice_cancel_token_cancel(handle_->token);
    return info.Env().Undefined();
  }
  Napi::Value Cancelled(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), sluice_cancel_token_is_cancelled(handle_->token));
  }

  TokenPtr handle_;
};

// ---- The Engine class ---------------------------------------------------------------------
//
// Methods take positional arguments already normalised by the TypeScript layer (ts/index.ts).

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {InstanceMethod<&Engine::Close>("close"),
                        InstanceMethod<&Engine::Enqueue>("enqueue"),
                        InstanceMethod<&Engine::EnqueueBatch>("enqueueBatch"),
                        InstanceMethod<&Engine::Lease>("lease"),
                        InstanceMethod<&Engine::Heartbeat>("heartbeat"),
                        InstanceMethod<&Engine::Complete>("complete"),
                        InstanceMethod<&Engine::CompleteMany>("completeMany"),
                        InstanceMethod<&Engine::Cancel>("cancel"),
                        InstanceMethod<&Engine::Restart>("restart"),
                        InstanceMethod<&Engine::Expedite>("expedite"),
                        InstanceMethod<&Engine::Delete>("delete"),
                        InstanceMethod<&Engine::GetJob>("getJob"),
                        InstanceMethod<&Engine::GetResult>("getResult"),
                        InstanceMethod<&Engine::ReapExpired>("reapExpired"),
                        InstanceMethod<&Engine::RefreshHeartbeat>("refreshHeartbeat"),
                        InstanceMethod<&Engine::RefreshComplete>("refreshComplete"),
                        InstanceMethod<&Engine::GetFloatingLimit>("getFloatingLimit"),
                        InstanceMethod<&Engine::SetFloatingLimit>("setFloatingLimit"),
                        InstanceMethod<&Engine::ConcurrencyKey>("concurrencyKey"),
                        InstanceMethod<&Engine::Stats>("stats"),
                        InstanceMethod<&Engine::VerifyIndexes>("verifyIndexes"),
                        InstanceMethod<&Engine::ListJobs>("listJobs"),
                        InstanceMethod<&Engine::CountJobs>("countJobs"),
                        InstanceMethod<&Engine::Query>("query")});
  }

  // Only OpenOp constructs engines, passing the handle as an External.
  explicit Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "use open() to create an engine");
    }
    handle_ = *info[0].As<Napi::External<HandlePtr>>().Data();
  }

  // The finalizer: drop this object's share of the handle. Calls in flight hold their own, so
  // the handle is destroyed (closing the engine) when the last of them finishes.
  ~Engine() override = default;

 private:
  template <class Op>
  Napi::Value Pool(const Napi::CallbackInfo& info, Op op) {
    return PoolCall<Op>::Start(Value(), handle_, std::move(op));
  }

  static std::string Text(const Napi::CallbackInfo& info, size_t i, const char* what) {
    return ToText(info[i], what);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) { return Pool(info, CloseOp{}); }

  Napi::Value Enqueue(const Napi::CallbackInfo& info) {
    EnqueueOp op;
    op.spec->Read(info[0], "spec");
    return Pool(info, std::move(op));
  }

  Napi::Value EnqueueBatch(const Napi::CallbackInfo& info) {
    if (!info[0].IsArray()) ThrowType(info.Env(), "specs", "an array");
    Napi::Array arr = info[0].As<Napi::Array>();
    EnqueueBatchOp op;
    op.specs.reserve(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      op.specs.push_back(std::make_unique<OwnedSpec>());
      op.specs.back()->Read(arr.Get(i), "specs[" + std::to_string(i) + "]");
    }
    return Pool(info, std::move(op));
  }

  Napi::Value Lease(const Napi::CallbackInfo& info) {
    Napi::Object o = ToObject(info[0], "request", false);
    LeaseOp op;
    op.tenant = ToText(o.Get("tenant"), "tenant");
    op.queue = ToText(o.Get("queue"), "queue");
    op.worker_id = ToText(o.Get("workerId"), "workerId");
    op.request.max_tasks = ToU32(o.Get("maxTasks"), "maxTasks", 1);
    op.request.wait_ms = ToU32(o.Get("waitMs"), "waitMs", 0);
    op.request.with_refreshes = ToBool(o.Get("withRefreshes"), false);
    return ThreadCall<LeaseOp>::Start(Value(), handle_, std::move(op));
  }

  // heartbeat(tenant, taskId, workerId, leaseToken)
  Napi::Value Heartbeat(const Napi::CallbackInfo& info) {
    HeartbeatOp op;
    op.tenant = Text(info, 0, "tenant");
    op.task_id = Text(info, 1, "taskId");
    op.worker_id = Text(info, 2, "workerId");
    op.token = ToU64(info[3], "leaseToken", 0);
    return Pool(info, std::move(op));
  }

  static void ReadComplete(const Napi::Value& v, const std::string& what, CompleteItem* item) {
    Napi::Object o = ToObject(v, what, false);
    item->tenant = ToText(o.Get("tenant"), what + ".tenant");
    item->task_id = ToText(o.Get("taskId"), what + ".taskId");
    item->token = ToU64(o.Get("leaseToken"), what + ".leaseToken", 0);
    item->outcome->Read(o.Get("outcome"), what + ".outcome");
  }

  // complete({tenant, taskId, leaseToken, outcome})
  Napi::Value Complete(const Napi::CallbackInfo& info) {
    CompleteOp op;
    ReadComplete(info[0], "completion", &op.item);
    return Pool(info, std::move(op));
  }

  // completeMany([{tenant, taskId, leaseToken, outcome}, ...]) -> [null | Error, ...]
  Napi::Value CompleteMany(const Napi::CallbackInfo& info) {
    if (!info[0].IsArray()) ThrowType(info.Env(), "completions", "an array");
    Napi::Array arr = info[0].As<Napi::Array>();
    CompleteManyOp op;
    op.items.resize(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      ReadComplete(arr.Get(i), "completions[" + std::to_string(i) + "]", &op.items[i]);
    }
    return ThreadCall<CompleteManyOp>::Start(Value(), handle_, std::move(op));  // long: see top
  }

  // cancel(tenant, id)
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    CancelOp op;
    op.tenant = Text(info, 0, "tenant");
    op.id = Text(info, 1, "id");
    return Pool(info, std::move(op));
  }

  Napi::Value ById(const Napi::CallbackInfo& info, IdCallFn fn) {
    return Pool(info, IdOp{fn, Text(info, 0, "tenant"), Text(info, 1, "id")});
  }
  Napi::Value Restart(const Napi::CallbackInfo& info) { return ById(info, &sluice_restart); }
  Napi::Value Expedite(const Napi::CallbackInfo& info) { return ById(info, &sluice_expedite); }
  Napi::Value Delete(const Napi::CallbackInfo& info) { return ById(info, &sluice_delete); }

  // getJob(tenant, id, includeAttempts)
  Napi::Value GetJob(const Napi::CallbackInfo& info) {
    GetJobOp op;
    op.tenant = Text(info, 0, "tenant");
    op.id = Text(info, 1, "id");
    op.include_attempts = ToBool(info[2], false);
    return Pool(info, std::move(op));
  }

  // getResult(tenant, id)
  Napi::Value GetResult(const Napi::CallbackInfo& info) {
    GetResultOp op;
    op.tenant = Text(info, 0, "tenant");
    op.id = Text(info, 1, "id");
    return Pool(info, std::move(op));
  }

  Napi::Value ReapExpired(const Napi::CallbackInfo& info) { return Pool(info, ReapOp{}); }

  // refreshHeartbeat(tenant, key, leaseToken)
  Napi::Value RefreshHeartbeat(const Napi::CallbackInfo& info) {
    RefreshHeartbeatOp op;
    op.tenant = Text(info, 0, "tenant");
    op.key = Text(info, 1, "key");
    op.token = ToU64(info[2], "leaseToken", 0);
    return Pool(info, std::move(op));
  }

  // refreshComplete(tenant, key, leaseToken, ok, newMax, errorCode, errorMessage)
  Napi::Value RefreshComplete(const Napi::CallbackInfo& info) {
    RefreshCompleteOp op;
    op.tenant = Text(info, 0, "tenant");
    op.key = Text(info, 1, "key");
    op.token = ToU64(info[2], "leaseToken", 0);
    op.ok = ToBool(info[3], true);
    op.new_max = ToU32(info[4], "newMax", 0);
    op.code = Text(info, 5, "errorCode");
    op.message = Text(info, 6, "errorMessage");
    return Pool(info, std::move(op));
  }

  // getFloatingLimit(tenant, key)
  Napi::Value GetFloatingLimit(const Napi::CallbackInfo& info) {
    GetFloatingOp op;
    op.tenant = Text(info, 0, "tenant");
    op.key = Text(info, 1, "key");
    return Pool(info, std::move(op));
  }

  // setFloatingLimit(tenant, key, max)
  Napi::Value SetFloatingLimit(const Napi::CallbackInfo& info) {
    SetFloatingOp op;
    op.tenant = Text(info, 0, "tenant");
    op.key = Text(info, 1, "key");
    op.max = ToU32(info[2], "max", 0);
    return Pool(info, std::move(op));
  }

  // concurrencyKey(tenant, kind, key)
  Napi::Value ConcurrencyKey(const Napi::CallbackInfo& info) {
    ConcurrencyKeyOp op;
    op.tenant = Text(info, 0, "tenant");
    op.kind = ToLimitKind(info[1], "kind");
    op.key = Text(info, 2, "key");
    return Pool(info, std::move(op));
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) { return Pool(info, StatsOp{}); }

  Napi::Value VerifyIndexes(const Napi::CallbackInfo& info) {
    return Pool(info, VerifyIndexesOp{});
  }

  // listJobs({tenant, queue, statuses, id, idPrefix, metadata, createdFromMs, createdToMs,
  //           newestFirst, limit, cursor, view})
  Napi::Value ListJobs(const Napi::CallbackInfo& info) {
    ListJobsOp op;
    op.request->Read(info[0]);
    return Pool(info, std::move(op));
  }

  // countJobs(tenant, queue)
  Napi::Value CountJobs(const Napi::CallbackInfo& info) {
    CountJobsOp op;
    op.tenant = Text(info, 0, "tenant");
    op.queue = Text(info, 1, "queue");
    return Pool(info, std::move(op));
  }

  // query(tenant, sql, timeoutMs, maxRows, maxResultBytes, cancelToken): long, see top.
  Napi::Value Query(const Napi::CallbackInfo& info) {
    QueryOp op;
    op.tenant = Text(info, 0, "tenant");
    op.sql = Text(info, 1, "sql");
    op.options.timeout_ms = ToU32(info[2], "timeoutMs", 0);
    op.options.max_rows = ToU32(info[3], "maxRows", 0);
    op.options.max_result_bytes = ToU64(info[4], "maxResultBytes", 0);
    op.token = CancelToken::From(info[5], "cancelToken");
    return ThreadCall<QueryOp>::Start(Value(), handle_, std::move(op));
  }

  HandlePtr handle_;
};

// ---- Module functions ---------------------------------------------------------------------

// open(path, options) -> Promise<NativeEngine>. The call has no Engine yet: its receiver is a
// throwaway object and its handle an empty one (OpenOp fills its own).
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpenOp op;
  op.path = ToText(info[0], "path");
  Napi::Object o = ToObject(info[1], "options", true);
  Napi::Value d = o.Get("durability");
  if (!Absent(d)) {
    std::string ds = d.IsString() ? d.As<Napi::String>().Utf8Value() : "";
    if (ds == "sync") {
      op.options.durability = SLUICE_DURABILITY_SYNC;
    } else if (ds == "async") {
      op.options.durability = SLUICE_DURABILITY_ASYNC;
    } else {
      ThrowType(env, "options.durability", "'sync' or 'async'");
    }
  }
  op.options.default_lease_ms = ToU64(o.Get("defaultLeaseMs"), "options.defaultLeaseMs", 0);
  op.options.reaper_interval_ms = ToU32(o.Get("reaperIntervalMs"), "options.reaperIntervalMs", 0);
  op.options.max_lease_batch = ToU32(o.Get("maxLeaseBatch"), "options.maxLeaseBatch", 0);
  op.options.max_payload_bytes = ToU64(o.Get("maxPayloadBytes"), "options.maxPayloadBytes", 0);
  HandlePtr none = std::make_shared<Handle>();  // Run ignores the engine argument
  return PoolCall<OpenOp>::Start(Napi::Object::New(env), none, std::move(op));
}

Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) ThrowType(info.Env(), "factory", "a function");
  Data(info.Env())->error_factory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value Version(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), sluice_version());
}

Napi::Value StatusName(const Napi::CallbackInfo& info) {
  uint32_t s = ToU32(info[0], "status", 0);
  return Napi::String::New(info.Env(), sluice_status_name(static_cast<sluice_status>(s)));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  Napi::Function ctor = Engine::Define(env);
  data->engine_ctor = Napi::Persistent(ctor);
  exports.Set("NativeEngine", ctor);
  Napi::Function token_ctor = CancelToken::Define(env);
  data->cancel_token_ctor = Napi::Persistent(token_ctor);
  exports.Set("CancelToken", token_ctor);
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
  exports.Set("version", Napi::Function::New(env, Version, "version"));
  exports.Set("statusName", Napi::Function::New(env, StatusName, "statusName"));
  return exports;
}

}  // namespace
}  // namespace sluice_node

// NODE_API_MODULE pastes its argument into identifiers: it needs an unqualified name.
static Napi::Object InitSluice(Napi::Env env, Napi::Object exports) {
  return sluice_node::Init(env, exports);
}
NODE_API_MODULE(sluice_node, InitSluice)
