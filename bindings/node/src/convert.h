// Conversions between JS values and the C ABI's structs: owned copies of JS arguments (read on
// the loop thread, bound to C views on the worker thread once they stop moving) and JS objects
// built from the library's output objects.
#ifndef SLUICE_NODE_CONVERT_H_
#define SLUICE_NODE_CONVERT_H_

#include <napi.h>
#include <sluice/sluice.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace sluice_node {

// ---- JS -> C argument conversion ----------------------------------------------------------

[[noreturn]] inline void ThrowType(Napi::Env env, const std::string& what, const char* expected) {
  throw Napi::TypeError::New(env, what + " must be " + expected);
}

inline bool Absent(const Napi::Value& v) { return v.IsUndefined() || v.IsNull(); }

// Text: a string (UTF-8) or bytes. Absent is "".
inline std::string ToText(const Napi::Value& v, const std::string& what) {
  if (Absent(v)) return {};
  if (v.IsString()) return v.As<Napi::String>().Utf8Value();
  if (v.IsTypedArray()) {
    auto a = v.As<Napi::TypedArray>();
    auto buf = a.ArrayBuffer();
    return std::string(static_cast<const char*>(buf.Data()) + a.ByteOffset(), a.ByteLength());
  }
  if (v.IsArrayBuffer()) {
    auto b = v.As<Napi::ArrayBuffer>();
    return std::string(static_cast<const char*>(b.Data()), b.ByteLength());
  }
  ThrowType(v.Env(), what, "a string or a Uint8Array");
}

inline double ToInteger(const Napi::Value& v, const std::string& what, double lo, double hi) {
  double d = 0;
  if (v.IsNumber()) {
    d = v.As<Napi::Number>().DoubleValue();
  } else if (v.IsBigInt()) {
    bool lossless = false;
    d = static_cast<double>(v.As<Napi::BigInt>().Int64Value(&lossless));
  } else {
    ThrowType(v.Env(), what, "an integer");
  }
  if (!std::isfinite(d) || std::trunc(d) != d || d < lo || d > hi) {
    throw Napi::RangeError::New(v.Env(), what + " is out of range");
  }
  return d;
}

inline uint32_t ToU32(const Napi::Value& v, const std::string& what, uint32_t dflt) {
  if (Absent(v)) return dflt;
  return static_cast<uint32_t>(ToInteger(v, what, 0, 4294967295.0));
}

inline uint64_t ToU64(const Napi::Value& v, const std::string& what, uint64_t dflt) {
  if (Absent(v)) return dflt;
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), what + " is out of range");
    return x;
  }
  return static_cast<uint64_t>(ToInteger(v, what, 0, 9007199254740991.0));
}

inline int64_t ToI64(const Napi::Value& v, const std::string& what, int64_t dflt) {
  if (Absent(v)) return dflt;
  return static_cast<int64_t>(ToInteger(v, what, -9007199254740991.0, 9007199254740991.0));
}

inline double ToDouble(const Napi::Value& v, const std::string& what, double dflt) {
  if (Absent(v)) return dflt;
  if (!v.IsNumber()) ThrowType(v.Env(), what, "a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline bool ToBool(const Napi::Value& v, bool dflt) {
  if (Absent(v)) return dflt;
  return v.ToBoolean().Value();
}

inline Napi::Object ToObject(const Napi::Value& v, const std::string& what, bool optional) {
  if (optional && Absent(v)) return Napi::Object::New(v.Env());
  if (!v.IsObject()) ThrowType(v.Env(), what, "an object");
  return v.As<Napi::Object>();
}

// Opaque bytes carried in a JS string one byte per UTF-16 unit (latin1): any byte sequence
// survives the round trip, and ASCII reads as itself. For cursors. Absent is "".
inline std::string ToLatin1(const Napi::Value& v, const std::string& what) {
  if (Absent(v)) return {};
  if (!v.IsString()) return ToText(v, what);
  size_t len = 0;
  napi_status st = napi_get_value_string_latin1(v.Env(), v, nullptr, 0, &len);
  if (st != napi_ok) ThrowType(v.Env(), what, "a string");
  std::string s(len + 1, '\0');
  st = napi_get_value_string_latin1(v.Env(), v, s.data(), s.size(), &len);
  if (st != napi_ok) ThrowType(v.Env(), what, "a string");
  s.resize(len);
  return s;
}

// Metadata: a plain object of string values, or (where order matters, as in filters) an array
// of [key, value] pairs. The C side gets views built later (Bind), once the owning strings no
// longer move.
struct OwnedKvs {
  std::vector<std::pair<std::string, std::string>> items;
  std::vector<sluice_kv> view;

  void Read(const Napi::Value& v, const std::string& what) {
    if (Absent(v)) return;
    if (v.IsArray()) {
      Napi::Array arr = v.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        std::string w = what + "[" + std::to_string(i) + "]";
        Napi::Value pair = arr.Get(i);
        if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) {
          ThrowType(v.Env(), w, "a [key, value] pair");
        }
        Napi::Array kv = pair.As<Napi::Array>();
        items.emplace_back(ToText(kv.Get(0u), w + "[0]"), ToText(kv.Get(1u), w + "[1]"));
      }
      return;
    }
    Napi::Object o = ToObject(v, what, false);
    Napi::Array names = o.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      Napi::Value k = names.Get(i);
      std::string key = k.ToString().Utf8Value();
      items.emplace_back(key, ToText(o.Get(k), what + "." + key));
    }
  }
  void Bind() {
    view.clear();
    for (const auto& [k, val] : items) view.push_back(sluice_kv{Str(k), Str(val)});
  }
};

struct OwnedLimit {
  uint32_t kind = SLUICE_LIMIT_FIXED;
  std::string key;
  uint32_t max = 1;
  uint64_t refresh_interval_ms = 0;
  OwnedKvs metadata;
};

inline uint32_t ToLimitKind(const Napi::Value& v, const std::string& what) {
  if (Absent(v)) return SLUICE_LIMIT_FIXED;
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "fixed") return SLUICE_LIMIT_FIXED;
  if (s == "floating") return SLUICE_LIMIT_FLOATING;
  ThrowType(v.Env(), what, "'fixed' or 'floating'");
}

// A job spec with the memory its sluice_job_spec points into.
struct OwnedSpec {
  std::string id, tenant, queue, payload;
  uint32_t priority = 50;
  int64_t start_at_ms = 0;
  uint64_t lease_ms = 0;
  bool has_retry = false;
  sluice_retry_policy retry{};
  OwnedKvs metadata;
  std::vector<OwnedLimit> limits;
  std::vector<sluice_limit> limit_view;
  sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;

  void Read(const Napi::Value& v, const std::string& what) {
    Napi::Object o = ToObject(v, what, false);
    id = ToText(o.Get("id"), what + ".id");
    tenant = ToText(o.Get("tenant"), what + ".tenant");
    queue = ToText(o.Get("queue"), what + ".queue");
    payload = ToText(o.Get("payload"), what + ".payload");
    priority = ToU32(o.Get("priority"), what + ".priority", 50);
    start_at_ms = ToI64(o.Get("startAtMs"), what + ".startAtMs", 0);
    lease_ms = ToU64(o.Get("leaseMs"), what + ".leaseMs", 0);
    Napi::Value r = o.Get("retry");
    if (!Absent(r)) {
      Napi::Object ro = ToObject(r, what + ".retry", false);
      has_retry = true;
      // sluice.h has no _INIT for sluice_retry_policy: absent fields take the core's
      // RetryPolicy defaults (core/include/sluice/types.h).
      retry.max_retries = ToU32(ro.Get("maxRetries"), what + ".retry.maxRetries", 3);
      retry.initial_backoff_ms =
          ToU64(ro.Get("initialBackoffMs"), what + ".retry.initialBackoffMs", 1000);
      retry.max_backoff_ms = ToU64(ro.Get("maxBackoffMs"), what + ".retry.maxBackoffMs", 60000);
      retry.multiplier = ToDouble(ro.Get("multiplier"), what + ".retry.multiplier", 2.0);
      retry.jitter = ToBool(ro.Get("jitter"), false);
    }
    metadata.Read(o.Get("metadata"), what + ".metadata");
    Napi::Value lv = o.Get("limits");
    if (!Absent(lv)) {
      if (!lv.IsArray()) ThrowType(v.Env(), what + ".limits", "an array");
      Napi::Array arr = lv.As<Napi::Array>();
      limits.resize(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        std::string w = what + ".limits[" + std::to_string(i) + "]";
        Napi::Object lo = ToObject(arr.Get(i), w, false);
        OwnedLimit& l = limits[i];
        l.kind = ToLimitKind(lo.Get("kind"), w + ".kind");
        l.key = ToText(lo.Get("key"), w + ".key");
        l.max = ToU32(lo.Get("max"), w + ".max", 1);
        l.refresh_interval_ms = ToU64(lo.Get("refreshIntervalMs"), w + ".refreshIntervalMs", 0);
        l.metadata.Read(lo.Get("metadata"), w + ".metadata");
      }
    }
  }

  // Points `spec` at the owned memory. Call once the object stops moving.
  const sluice_job_spec* Bind() {
    metadata.Bind();
    limit_view.clear();
    for (auto& l : limits) {
      l.metadata.Bind();
      limit_view.push_back(sluice_limit{l.kind, Str(l.key), l.max, l.refresh_interval_ms,
                                        l.metadata.view.data(), l.metadata.view.size()});
    }
    spec = SLUICE_JOB_SPEC_INIT;
    spec.id = Str(id);
    spec.tenant = Str(tenant);
    spec.queue = Str(queue);
    spec.priority = priority;
    spec.start_at_ms = start_at_ms;
    spec.retry = has_retry ? &retry : nullptr;
    spec.lease_ms = lease_ms;
    spec.payload = reinterpret_cast<const uint8_t*>(payload.data());
    spec.payload_len = payload.size();
    spec.metadata = metadata.view.data();
    spec.metadata_len = metadata.view.size();
    spec.limits = limit_view.data();
    spec.limits_len = limit_view.size();
    return &spec;
  }
};

// An outcome with the memory its sluice_outcome points into.
struct OwnedOutcome {
  uint32_t kind = SLUICE_OUTCOME_SUCCESS;
  std::string result, code, message, data;
  bool no_retry = false;
  sluice_outcome outcome = SLUICE_OUTCOME_INIT;

  void Read(const Napi::Value& v, const std::string& what) {
    Napi::Object o = ToObject(v, what, true);
    Napi::Value k = o.Get("kind");
    std::string ks = Absent(k) ? "success" : (k.IsString() ? k.As<Napi::String>().Utf8Value() : "");
    if (ks == "success") {
      kind = SLUICE_OUTCOME_SUCCESS;
    } else if (ks == "failure") {
      kind = SLUICE_OUTCOME_FAILURE;
    } else if (ks == "cancelled") {
      kind = SLUICE_OUTCOME_CANCELLED;
    } else {
      ThrowType(v.Env(), what + ".kind", "'success', 'failure' or 'cancelled'");
    }
    result = ToText(o.Get("result"), what + ".result");
    code = ToText(o.Get("code"), what + ".code");
    message = ToText(o.Get("message"), what + ".message");
    data = ToText(o.Get("data"), what + ".data");
    no_retry = ToBool(o.Get("noRetry"), false);
  }

  const sluice_outcome* Bind() {
    outcome = SLUICE_OUTCOME_INIT;
    outcome.kind = kind;
    outcome.result = reinterpret_cast<const uint8_t*>(result.data());
    outcome.result_len = result.size();
    outcome.error_code = Str(code);
    outcome.error_message = Str(message);
    outcome.error_data = reinterpret_cast<const uint8_t*>(data.data());
    outcome.error_data_len = data.size();
    outcome.no_retry = no_retry;
    return &outcome;
  }
};

inline uint32_t ToJobStatus(const Napi::Value& v, const std::string& what) {
  static const char* const kNames[] = {"scheduled", "waiting", "running",
                                       "succeeded", "failed",  "cancelled"};
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  for (uint32_t i = 0; i < SLUICE_JOB_STATUS_COUNT; ++i) {
    if (s == kNames[i]) return i;
  }
  ThrowType(v.Env(), what, "a job status ('scheduled', 'waiting', ..., 'cancelled')");
}

inline uint32_t ToView(const Napi::Value& v, const std::string& what) {
  if (Absent(v)) return SLUICE_VIEW_SUMMARY;
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "index") return SLUICE_VIEW_INDEX;
  if (s == "summary") return SLUICE_VIEW_SUMMARY;
  if (s == "full") return SLUICE_VIEW_FULL;
  ThrowType(v.Env(), what, "'index', 'summary' or 'full'");
}

// A listing request with the memory its sluice_list_request points into.
struct OwnedListRequest {
  std::string tenant, queue, id, id_prefix, cursor;
  std::vector<uint32_t> statuses;
  OwnedKvs metadata;
  sluice_list_request request = SLUICE_LIST_REQUEST_INIT;

  void Read(const Napi::Value& v) {
    Napi::Object o = ToObject(v, "request", true);
    tenant = ToText(o.Get("tenant"), "request.tenant");
    queue = ToText(o.Get("queue"), "request.queue");
    Napi::Value sv = o.Get("statuses");
    if (!Absent(sv)) {
      if (!sv.IsArray()) ThrowType(v.Env(), "request.statuses", "an array");
      Napi::Array arr = sv.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        statuses.push_back(ToJobStatus(arr.Get(i), "request.statuses[" + std::to_string(i) + "]"));
      }
    }
    id = ToText(o.Get("id"), "request.id");
    id_prefix = ToText(o.Get("idPrefix"), "request.idPrefix");
    metadata.Read(o.Get("metadata"), "request.metadata");
    request.created_from_ms = ToI64(o.Get("createdFromMs"), "request.createdFromMs", 0);
    request.created_to_ms = ToI64(o.Get("createdToMs"), "request.createdToMs", INT64_MAX);
    request.newest_first = ToBool(o.Get("newestFirst"), false);
    request.limit = ToU32(o.Get("limit"), "request.limit", 50);
    cursor = ToLatin1(o.Get("cursor"), "request.cursor");
    request.view = ToView(o.Get("view"), "request.view");
  }

  // Points `request` at the owned memory. Call once the object stops moving.
  const sluice_list_request* Bind() {
    metadata.Bind();
    request.tenant = Str(tenant);
    request.queue = Str(queue);
    request.statuses = statuses.data();
    request.statuses_len = statuses.size();
    request.id = Str(id);
    request.id_prefix = Str(id_prefix);
    request.metadata = metadata.view.data();
    request.metadata_len = metadata.view.size();
    request.cursor = Str(cursor);
    return &request;
  }
};

// ---- C -> JS result conversion ------------------------------------------------------------

inline Napi::String JsStr(Napi::Env env, sluice_str s) {
  return Napi::String::New(env, s.ptr == nullptr ? "" : s.ptr, s.len);
}

inline Napi::String JsLatin1(Napi::Env env, sluice_str s) {
  napi_value v = nullptr;
  NAPI_THROW_IF_FAILED(env,
                       napi_create_string_latin1(env, s.ptr == nullptr ? "" : s.ptr, s.len, &v),
                       Napi::String());
  return Napi::String(env, v);
}

inline Napi::Buffer<char> JsBytes(Napi::Env env, sluice_str s) {
  return Napi::Buffer<char>::Copy(env, s.ptr == nullptr ? "" : s.ptr, s.len);
}

inline Napi::Object JsKvs(Napi::Env env, const sluice_kv* kv, size_t n) {
  Napi::Object o = Napi::Object::New(env);
  for (size_t i = 0; i < n; ++i) o.Set(JsStr(env, kv[i].key), JsStr(env, kv[i].value));
  return o;
}

inline Napi::Number Num(Napi::Env env, double d) { return Napi::Number::New(env, d); }

inline const char* JobStatusName(uint32_t s) {
  static const char* const kNames[] = {"scheduled", "waiting", "running",
                                       "succeeded", "failed",  "cancelled"};
  return s < 6 ? kNames[s] : "unknown";
}

inline const char* AttemptStatusName(uint32_t s) {
  static const char* const kNames[] = {"running", "succeeded", "failed", "cancelled"};
  return s < 4 ? kNames[s] : "unknown";
}

inline const char* LimitKindName(uint32_t k) {
  return k == SLUICE_LIMIT_FLOATING ? "floating" : "fixed";
}

inline Napi::Object JsEnqueueResult(Napi::Env env, const sluice_enqueue_result& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", JsStr(env, r.id));
  o.Set("created", Napi::Boolean::New(env, r.created));
  o.Set("status", JobStatusName(r.status));
  return o;
}

inline Napi::Object JsTask(Napi::Env env, const sluice_task& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("taskId", JsStr(env, t.task_id));
  o.Set("jobId", JsStr(env, t.job_id));
  o.Set("tenant", JsStr(env, t.tenant));
  o.Set("queue", JsStr(env, t.queue));
  o.Set("attempt", Num(env, t.attempt));
  o.Set("priority", Num(env, t.priority));
  o.Set("payload", JsBytes(env, t.payload));
  o.Set("metadata", JsKvs(env, t.metadata, t.metadata_len));
  o.Set("leaseToken", Napi::BigInt::New(env, t.lease_token));
  o.Set("leaseExpiresMs", Num(env, static_cast<double>(t.lease_expires_ms)));
  return o;
}

inline Napi::Object JsRefresh(Napi::Env env, const sluice_refresh_task& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("tenant", JsStr(env, r.tenant));
  o.Set("key", JsStr(env, r.key));
  o.Set("metadata", JsKvs(env, r.metadata, r.metadata_len));
  o.Set("currentMax", Num(env, r.current_max));
  o.Set("defaultMax", Num(env, r.default_max));
  o.Set("lastRefreshedMs", Num(env, static_cast<double>(r.last_refreshed_ms)));
  o.Set("leaseToken", Napi::BigInt::New(env, r.lease_token));
  o.Set("leaseExpiresMs", Num(env, static_cast<double>(r.lease_expires_ms)));
  return o;
}

inline Napi::Object JsRetry(Napi::Env env, const sluice_retry_policy& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("maxRetries", Num(env, r.max_retries));
  o.Set("initialBackoffMs", Num(env, static_cast<double>(r.initial_backoff_ms)));
  o.Set("maxBackoffMs", Num(env, static_cast<double>(r.max_backoff_ms)));
  o.Set("multiplier", Num(env, r.multiplier));
  o.Set("jitter", Napi::Boolean::New(env, r.jitter));
  return o;
}

inline Napi::Object JsAttempt(Napi::Env env, const sluice_attempt& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("number", Num(env, a.number));
  o.Set("taskId", JsStr(env, a.task_id));
  o.Set("workerId", JsStr(env, a.worker_id));
  o.Set("status", AttemptStatusName(a.status));
  o.Set("startedMs", Num(env, static_cast<double>(a.started_ms)));
  o.Set("finishedMs", Num(env, static_cast<double>(a.finished_ms)));
  o.Set("result", JsBytes(env, a.result));
  o.Set("errorCode", JsStr(env, a.error_code));
  o.Set("errorMessage", JsStr(env, a.error_message));
  o.Set("errorData", JsBytes(env, a.error_data));
  return o;
}

inline Napi::Object JsJob(Napi::Env env, const sluice_job& j) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", JsStr(env, j.id));
  o.Set("tenant", JsStr(env, j.tenant));
  o.Set("queue", JsStr(env, j.queue));
  o.Set("priority", Num(env, j.priority));
  o.Set("status", JobStatusName(j.status));
  o.Set("cancelRequested", Napi::Boolean::New(env, j.cancel_requested));
  o.Set("startAtMs", Num(env, static_cast<double>(j.start_at_ms)));
  o.Set("nextRunMs", Num(env, static_cast<double>(j.next_run_ms)));
  o.Set("leaseMs", Num(env, static_cast<double>(j.lease_ms)));
  o.Set("retry", JsRetry(env, j.retry));
  o.Set("payload", JsBytes(env, j.payload));
  o.Set("metadata", JsKvs(env, j.metadata, j.metadata_len));
  Napi::Array limits = Napi::Array::New(env, j.limits_len);
  for (size_t i = 0; i < j.limits_len; ++i) {
    const sluice_limit& l = j.limits[i];
    Napi::Object lo = Napi::Object::New(env);
    lo.Set("kind", LimitKindName(l.kind));
    lo.Set("key", JsStr(env, l.key));
    lo.Set("max", Num(env, l.max));
    lo.Set("refreshIntervalMs", Num(env, static_cast<double>(l.refresh_interval_ms)));
    lo.Set("metadata", JsKvs(env, l.metadata, l.metadata_len));
    limits.Set(static_cast<uint32_t>(i), lo);
  }
  o.Set("limits", limits);
  o.Set("attemptCount", Num(env, j.attempt_count));
  o.Set("retriesUsed", Num(env, j.retries_used));
  o.Set("createdMs", Num(env, static_cast<double>(j.created_ms)));
  o.Set("updatedMs", Num(env, static_cast<double>(j.updated_ms)));
  o.Set("finishedMs", Num(env, static_cast<double>(j.finished_ms)));
  Napi::Array attempts = Napi::Array::New(env, j.attempts_len);
  for (size_t i = 0; i < j.attempts_len; ++i) {
    attempts.Set(static_cast<uint32_t>(i), JsAttempt(env, j.attempts[i]));
  }
  o.Set("attempts", attempts);
  return o;
}

inline Napi::Object JsQueueCount(Napi::Env env, const sluice_queue_count& c) {
  Napi::Object counts = Napi::Object::New(env);
  for (uint32_t s = 0; s < SLUICE_JOB_STATUS_COUNT; ++s) {
    counts.Set(JobStatusName(s), Num(env, static_cast<double>(c.counts[s])));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("queue", JsStr(env, c.queue));
  o.Set("counts", counts);
  return o;
}

// One query cell: INTEGER as a number when it is exact in a double, else a BigInt; REAL a
// number; TEXT a string; BLOB a Buffer; NULL null.
inline Napi::Value JsCell(Napi::Env env, const sluice_query_result* r, size_t row, size_t col) {
  constexpr int64_t kMaxSafe = 9007199254740991;  // Number.MAX_SAFE_INTEGER
  switch (sluice_query_result_type(r, row, col)) {
    case SLUICE_VALUE_INTEGER: {
      const int64_t i = sluice_query_result_int64(r, row, col);
      if (i >= -kMaxSafe && i <= kMaxSafe) return Num(env, static_cast<double>(i));
      return Napi::BigInt::New(env, i);
    }
    case SLUICE_VALUE_REAL:
      return Num(env, sluice_query_result_double(r, row, col));
    case SLUICE_VALUE_TEXT:
      return JsStr(env, sluice_query_result_bytes(r, row, col));
    case SLUICE_VALUE_BLOB:
      return JsBytes(env, sluice_query_result_bytes(r, row, col));
    case SLUICE_VALUE_NULL:
      break;
  }
  return env.Null();
}

inline Napi::Object JsQueryResult(Napi::Env env, const sluice_query_result* r) {
  const size_t ncols = sluice_query_result_column_count(r);
  const size_t nrows = sluice_query_result_row_count(r);
  Napi::Array columns = Napi::Array::New(env, ncols);
  for (size_t c = 0; c < ncols; ++c) {
    columns.Set(static_cast<uint32_t>(c), JsStr(env, sluice_query_result_column_name(r, c)));
  }
  Napi::Array rows = Napi::Array::New(env, nrows);
  for (size_t i = 0; i < nrows; ++i) {
    Napi::Array row = Napi::Array::New(env, ncols);
    for (size_t c = 0; c < ncols; ++c) row.Set(static_cast<uint32_t>(c), JsCell(env, r, i, c));
    rows.Set(static_cast<uint32_t>(i), row);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("columns", columns);
  o.Set("rows", rows);
  o.Set("keysVisited", Num(env, static_cast<double>(sluice_query_result_keys_visited(r))));
  return o;
}

// Frees a library output object when the op that received it goes away.
template <class T>
struct Out {
  T* ptr = nullptr;
  Out() = default;
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;
  ~Out() { sluice_free(ptr); }
};

}  // namespace sluice_node

#endif  // SLUICE_NODE_CONVERT_H_
