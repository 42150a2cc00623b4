// _sluice: the pybind11 extension of the `sluice` Python package, over the C ABI only.
//
// This file owns the crossing between Python objects and the C ABI (capi/include/sluice/sluice.h):
// it borrows or copies inputs, releases the GIL around every sluice_* engine call, turns outputs
// into plain Python values (tuples, dicts, bytes) and frees them with sluice_free, and turns a
// failed status into the matching sluice.errors class through one translator. The typed,
// documented API (dataclasses, enums, keyword arguments) is the pure-Python layer in
// src/sluice/_engine.py; the tuple layouts returned here are listed in src/sluice/_sluice.pyi.
//
// Memory rule while the GIL is released: every pointer handed to the C library points either
// into an immutable Python object (str's cached UTF-8, bytes) that the call's Arena holds a
// reference to, or into a copy the Arena owns. Mutable inputs (dicts, lists, bytearrays) are
// read into the Arena before the release, so other Python threads cannot pull memory away.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sluice/sluice.h"

namespace py = pybind11;

namespace {

// A failed call: the status and message of a sluice_error (or of a bad Python argument).
// Thrown with or without the GIL, translated with it (TranslateError).
class StatusError : public std::exception {
 public:
  StatusError(int status, std::string message) : status_(status), message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }
  int status() const { return status_; }
  const std::string& message() const { return message_; }

 private:
  int status_;
  std::string message_;
};

[[noreturn]] void ThrowInvalid(const char* field, const char* what) {
  throw StatusError(SLUICE_INVALID_ARGUMENT, std::string(field) + ": " + what);
}

// Runs one C ABI call with the GIL released and throws StatusError when it fails. `fn` receives
// the sluice_error ** to fill; the error object is always freed here.
template <typename Fn>
void Call(Fn&& fn) {
  sluice_error* err = nullptr;
  sluice_status status;
  {
    py::gil_scoped_release release;
    status = fn(&err);
  }
  if (status == SLUICE_OK) {
    sluice_error_free(err);
    return;
  }
  std::string message = err != nullptr ? sluice_error_message(err) : sluice_status_name(status);
  sluice_error_free(err);
  throw StatusError(status, std::move(message));
}

// Owns one output object of the library.
struct Freer {
  void operator()(void* p) const { sluice_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Freer>;

// ---- Inputs -------------------------------------------------------------------------------------

// Keeps alive (or owns copies of) everything one call lends to the C library.
class Arena {
 public:
  // A str (UTF-8; lone surrogates from surrogateescape decoding round-trip) or bytes.
  sluice_str Str(py::handle obj, const char* field) {
    if (PyUnicode_Check(obj.ptr())) {
      Py_ssize_t len = 0;
      const char* p = PyUnicode_AsUTF8AndSize(obj.ptr(), &len);
      if (p != nullptr) {
        keep_.push_back(py::reinterpret_borrow<py::object>(obj));
        return {p, static_cast<size_t>(len)};
      }
      PyErr_Clear();
      PyObject* encoded = PyUnicode_AsEncodedString(obj.ptr(), "utf-8", "surrogateescape");
      if (encoded == nullptr) throw py::error_already_set();
      obj = keep_.emplace_back(py::reinterpret_steal<py::object>(encoded));
    }
    if (PyBytes_Check(obj.ptr())) {
      keep_.push_back(py::reinterpret_borrow<py::object>(obj));
      return {PyBytes_AS_STRING(obj.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(obj.ptr()))};
    }
    throw py::type_error(std::string(field) + " must be str, not " +
                         py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>());
  }

  // Bytes-like: bytes are borrowed, other buffers (bytearray, memoryview, ...) are copied.
  sluice_str Bytes(py::handle obj, const char* field) {
    if (obj.is_none()) return {nullptr, 0};
    if (PyBytes_Check(obj.ptr())) {
      keep_.push_back(py::reinterpret_borrow<py::object>(obj));
      return {PyBytes_AS_STRING(obj.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(obj.ptr()))};
    }
    if (!PyUnicode_Check(obj.ptr()) && PyObject_CheckBuffer(obj.ptr())) {
      Py_buffer view;
      if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
        throw py::error_already_set();
      }
      const std::string& copy =
          copies_.emplace_back(static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
      PyBuffer_Release(&view);
      return {copy.data(), copy.size()};
    }
    throw py::type_error(std::string(field) + " must be bytes-like, not " +
                         py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>());
  }

  // A mapping of str to str, or (where order matters, as in filters) an iterable of
  // (key, value) pairs; None: empty. The returned vector points into this arena.
  std::vector<sluice_kv> Metadata(py::handle obj, const char* field) {
    std::vector<sluice_kv> kvs;
    if (obj.is_none()) return kvs;
    if (!PyDict_Check(obj.ptr()) && !py::hasattr(obj, "items")) {
      for (py::handle item : py::list(py::reinterpret_borrow<py::object>(obj))) {
        if (!PyTuple_Check(item.ptr()) || PyTuple_GET_SIZE(item.ptr()) != 2) {
          throw py::type_error(std::string(field) + " must be a mapping or (key, value) pairs");
        }
        kvs.push_back({Str(PyTuple_GET_ITEM(item.ptr(), 0), field),
                       Str(PyTuple_GET_ITEM(item.ptr(), 1), field)});
      }
      return kvs;
    }
    if (PyDict_Check(obj.ptr())) {
      kvs.reserve(static_cast<size_t>(PyDict_GET_SIZE(obj.ptr())));
      PyObject* key = nullptr;
      PyObject* value = nullptr;
      Py_ssize_t pos = 0;
      while (PyDict_Next(obj.ptr(), &pos, &key, &value)) {
        kvs.push_back({Str(key, field), Str(value, field)});
      }
      return kvs;
    }
    for (py::handle item : obj.attr("items")()) {
      py::tuple kv = py::reinterpret_borrow<py::tuple>(item);
      kvs.push_back({Str(kv[0], field), Str(kv[1], field)});
    }
    return kvs;
  }

 private:
  std::vector<py::object> keep_;
  std::deque<std::string> copies_;  // a deque never moves its elements
};

uint64_t U64(py::handle obj, const char* field, uint64_t max = UINT64_MAX) {
  if (PyBool_Check(obj.ptr()) || !PyLong_Check(obj.ptr())) {
    throw py::type_error(std::string(field) + " must be int");
  }
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
  if (overflow < 0 || (overflow == 0 && v < 0)) ThrowInvalid(field, "must not be negative");
  uint64_t u = static_cast<uint64_t>(v);
  if (overflow > 0) {
    u = PyLong_AsUnsignedLongLong(obj.ptr());
    if (PyErr_Occurred() != nullptr) {
      PyErr_Clear();
      ThrowInvalid(field, "is too large");
    }
  }
  if (u > max) ThrowInvalid(field, "is too large");
  return u;
}

uint32_t U32(py::handle obj, const char* field) {
  return static_cast<uint32_t>(U64(obj, field, UINT32_MAX));
}

int64_t I64(py::handle obj, const char* field) {
  if (PyBool_Check(obj.ptr()) || !PyLong_Check(obj.ptr())) {
    throw py::type_error(std::string(field) + " must be int");
  }
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
  if (overflow != 0) ThrowInvalid(field, "is out of range");
  return static_cast<int64_t>(v);
}

bool Bool(py::handle obj) {
  int v = PyObject_IsTrue(obj.ptr());
  if (v < 0) throw py::error_already_set();
  return v != 0;
}

// One job spec read from a Python object with JobSpec's attributes. Lives at a fixed address
// (its spec points into itself).
struct SpecBuf {
  sluice_job_spec spec = SLUICE_JOB_SPEC_INIT;
  sluice_retry_policy retry{};
  std::vector<sluice_kv> metadata;
  std::vector<sluice_limit> limits;
  std::vector<std::vector<sluice_kv>> limit_metadata;

  void Fill(Arena& arena, py::handle obj) {
    spec.id = arena.Str(obj.attr("id"), "id");
    spec.tenant = arena.Str(obj.attr("tenant"), "tenant");
    spec.queue = arena.Str(obj.attr("queue"), "queue");
    spec.priority = U32(obj.attr("priority"), "priority");
    spec.start_at_ms = I64(obj.attr("start_at_ms"), "start_at_ms");
    spec.lease_ms = U64(obj.attr("lease_ms"), "lease_ms");
    sluice_str payload = arena.Bytes(obj.attr("payload"), "payload");
    spec.payload = reinterpret_cast<const uint8_t*>(payload.ptr);
    spec.payload_len = payload.len;
    py::object r = obj.attr("retry");
    if (!r.is_none()) {
      retry.max_retries = U32(r.attr("max_retries"), "retry.max_retries");
      retry.initial_backoff_ms = U64(r.attr("initial_backoff_ms"), "retry.initial_backoff_ms");
      retry.max_backoff_ms = U64(r.attr("max_backoff_ms"), "retry.max_backoff_ms");
      retry.multiplier = py::float_(r.attr("multiplier")).cast<double>();
      retry.jitter = Bool(r.attr("jitter"));
      spec.retry = &retry;
    }
    metadata = arena.Metadata(obj.attr("metadata"), "metadata");
    spec.metadata = metadata.data();
    spec.metadata_len = metadata.size();
    FillLimits(arena, obj.attr("limits"));
  }

  void FillLimits(Arena& arena, py::handle seq) {
    if (seq.is_none()) return;
    for (py::handle l : seq) {
      sluice_limit c{};
      c.kind = U32(l.attr("kind"), "limits.kind");
      c.key = arena.Str(l.attr("key"), "limits.key");
      c.max = U32(l.attr("max"), "limits.max");
      c.refresh_interval_ms = U64(l.attr("refresh_interval_ms"), "limits.refresh_interval_ms");
      limits.push_back(c);
      limit_metadata.push_back(arena.Metadata(l.attr("metadata"), "limits.metadata"));
    }
    for (size_t i = 0; i < limits.size(); ++i) {
      limits[i].metadata = limit_metadata[i].data();
      limits[i].metadata_len = limit_metadata[i].size();
    }
    spec.limits = limits.data();
    spec.limits_len = limits.size();
  }
};

// ---- Outputs ------------------------------------------------------------------------------------

// Strings are UTF-8; undecodable bytes become lone surrogates (surrogateescape), so any id read
// back can be passed back unchanged.
py::object Text(sluice_str s) {
  if (s.len == 0) return py::str("");
  PyObject* o = PyUnicode_DecodeUTF8(s.ptr, static_cast<Py_ssize_t>(s.len), "surrogateescape");
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

py::bytes Blob(const void* p, size_t len) {
  if (len == 0) return py::bytes("", 0);
  return py::bytes(static_cast<const char*>(p), len);
}
py::bytes Blob(sluice_str s) { return Blob(s.ptr, s.len); }

py::dict Meta(const sluice_kv* kvs, size_t len) {
  py::dict d;
  for (size_t i = 0; i < len; ++i) d[Text(kvs[i].key)] = Text(kvs[i].value);
  return d;
}

py::tuple RetryTuple(const sluice_retry_policy& r) {
  return py::make_tuple(r.max_retries, r.initial_backoff_ms, r.max_backoff_ms, r.multiplier,
                        r.jitter);
}

py::tuple LimitTuple(const sluice_limit& l) {
  return py::make_tuple(l.kind, Text(l.key), l.max, l.refresh_interval_ms,
                        Meta(l.metadata, l.metadata_len));
}

py::tuple TaskTuple(const sluice_task& t) {
  return py::make_tuple(Text(t.task_id), Text(t.job_id), Text(t.tenant), Text(t.queue), t.attempt,
                        t.priority, Blob(t.payload), Meta(t.metadata, t.metadata_len),
                        t.lease_token, t.lease_expires_ms);
}

py::tuple RefreshTuple(const sluice_refresh_task& r) {
  return py::make_tuple(Text(r.tenant), Text(r.key), Meta(r.metadata, r.metadata_len),
                        r.current_max, r.default_max, r.last_refreshed_ms, r.lease_token,
                        r.lease_expires_ms);
}

py::tuple AttemptTuple(const sluice_attempt& a) {
  return py::make_tuple(a.number, Text(a.task_id), Text(a.worker_id), a.status, a.started_ms,
                        a.finished_ms, Blob(a.result), Text(a.error_code), Text(a.error_message),
                        Blob(a.error_data));
}

py::tuple JobTuple(const sluice_job& j) {
  py::list limits;
  for (size_t i = 0; i < j.limits_len; ++i) limits.append(LimitTuple(j.limits[i]));
  py::list attempts;
  for (size_t i = 0; i < j.attempts_len; ++i) attempts.append(AttemptTuple(j.attempts[i]));
  return py::make_tuple(Text(j.id), Text(j.tenant), Text(j.queue), j.priority, j.status,
                        j.cancel_requested, j.start_at_ms, j.next_run_ms, j.lease_ms,
                        RetryTuple(j.retry), Blob(j.payload), Meta(j.metadata, j.metadata_len),
                        limits, j.attempt_count, j.retries_used, j.created_ms, j.updated_ms,
                        j.finished_ms, attempts);
}

py::tuple EnqueueTuple(const sluice_enqueue_result& r) {
  return py::make_tuple(Text(r.id), r.created, r.status);
}

py::tuple QueueCountTuple(const sluice_queue_count& c) {
  py::tuple counts(SLUICE_JOB_STATUS_COUNT);
  for (size_t i = 0; i < SLUICE_JOB_STATUS_COUNT; ++i) counts[i] = py::int_(c.counts[i]);
  return py::make_tuple(Text(c.queue), counts);
}

// One query cell: INTEGER int, REAL float, TEXT str (surrogateescape like every string), BLOB
// bytes, NULL None.
py::object Cell(const sluice_query_result* r, size_t row, size_t column) {
  switch (sluice_query_result_type(r, row, column)) {
    case SLUICE_VALUE_INTEGER:
      return py::int_(sluice_query_result_int64(r, row, column));
    case SLUICE_VALUE_REAL:
      return py::float_(sluice_query_result_double(r, row, column));
    case SLUICE_VALUE_TEXT:
      return Text(sluice_query_result_bytes(r, row, column));
    case SLUICE_VALUE_BLOB:
      return Blob(sluice_query_result_bytes(r, row, column));
    case SLUICE_VALUE_NULL:
      break;
  }
  return py::none();
}

// ---- Cancel tokens ------------------------------------------------------------------------------

// One sluice_cancel_token. Held by shared_ptr: a query keeps the token alive while it runs, so
// the C token is never destroyed under a call (sluice.h's rule).
class CancelToken {
 public:
  CancelToken() {
    Call([&](sluice_error** err) { return sluice_cancel_token_create(&token_, err); });
  }
  ~CancelToken() { sluice_cancel_token_destroy(token_); }
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  // Thread-safe and cheap: callable with or without the GIL.
  void Cancel() { sluice_cancel_token_cancel(token_); }
  bool Cancelled() const { return sluice_cancel_token_is_cancelled(token_); }
  const sluice_cancel_token* get() const { return token_; }

 private:
  sluice_cancel_token* token_ = nullptr;
};

// ---- The engine handle --------------------------------------------------------------------------

// One sluice_engine. close() may race with calls from other threads (the library drains them);
// the handle itself is destroyed only when the Python object dies, when no call can be running
// (every caller holds a reference to the object for the duration of its call).
class Engine {
 public:
  Engine(py::handle path, uint32_t durability, uint64_t default_lease_ms,
         uint32_t reaper_interval_ms, uint32_t max_lease_batch, uint64_t max_payload_bytes) {
    Arena arena;
    sluice_str p = arena.Str(path, "path");
    sluice_engine_options opts = SLUICE_ENGINE_OPTIONS_INIT;
    opts.durability = durability;
    opts.default_lease_ms = default_lease_ms;
    opts.reaper_interval_ms = reaper_interval_ms;
    opts.max_lease_batch = max_lease_batch;
    opts.max_payload_bytes = max_payload_bytes;
    Call([&](sluice_error** err) { return sluice_engine_open(&engine_, p, &opts, err); });
  }

  ~Engine() { sluice_engine_destroy(engine_); }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void Close() {
    Call([&](sluice_error** err) { return sluice_engine_close(engine_, err); });
  }

  py::tuple Enqueue(py::handle spec) {
    Arena arena;
    SpecBuf buf;
    buf.Fill(arena, spec);
    sluice_enqueue_result* out = nullptr;
    Call([&](sluice_error** err) { return sluice_enqueue(&out, engine_, &buf.spec, err); });
    Owned<sluice_enqueue_result> owned(out);
    return EnqueueTuple(*out);
  }

  py::list EnqueueBatch(py::handle specs) {
    Arena arena;
    py::list items(py::reinterpret_borrow<py::object>(specs));  // snapshot: specs may mutate
    std::vector<SpecBuf> bufs(items.size());
    std::vector<const sluice_job_spec*> ptrs(items.size());
    for (size_t i = 0; i < bufs.size(); ++i) {
      bufs[i].Fill(arena, items[i]);
      ptrs[i] = &bufs[i].spec;
    }
    sluice_enqueue_results* out = nullptr;
    Call([&](sluice_error** err) {
      return sluice_enqueue_batch(&out, engine_, ptrs.data(), ptrs.size(), err);
    });
    Owned<sluice_enqueue_results> owned(out);
    py::list results;
    for (size_t i = 0; i < out->len; ++i) results.append(EnqueueTuple(out->items[i]));
    return results;
  }

  py::tuple Lease(py::handle tenant, py::handle queue, py::handle worker_id, py::handle max_tasks,
                  py::handle wait_ms, bool with_refreshes) {
    Arena arena;
    sluice_lease_request req = SLUICE_LEASE_REQUEST_INIT;
    req.tenant = arena.Str(tenant, "tenant");
    req.queue = arena.Str(queue, "queue");
    req.worker_id = arena.Str(worker_id, "worker_id");
    req.max_tasks = U32(max_tasks, "max_tasks");
    req.wait_ms = U32(wait_ms, "wait_ms");
    req.with_refreshes = with_refreshes;
    sluice_lease_response* out = nullptr;
    Call([&](sluice_error** err) { return sluice_lease(&out, engine_, &req, err); });
    Owned<sluice_lease_response> owned(out);
    py::list tasks;
    for (size_t i = 0; i < out->tasks_len; ++i) tasks.append(TaskTuple(out->tasks[i]));
    py::list refreshes;
    for (size_t i = 0; i < out->refreshes_len; ++i) {
      refreshes.append(RefreshTuple(out->refreshes[i]));
    }
    return py::make_tuple(tasks, refreshes);
  }

  py::tuple Heartbeat(py::handle tenant, py::handle task_id, py::handle worker_id,
                      py::handle token) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str id = arena.Str(task_id, "task_id");
    sluice_str w = arena.Str(worker_id, "worker_id");
    uint64_t tok = U64(token, "lease_token");
    int64_t expires = 0;
    bool cancel = false;
    Call([&](sluice_error** err) {
      return sluice_heartbeat(&expires, &cancel, engine_, t, id, w, tok, err);
    });
    return py::make_tuple(expires, cancel);
  }

  void Complete(py::handle tenant, py::handle task_id, py::handle token, uint32_t kind,
                py::handle result, py::handle error_code, py::handle error_message,
                py::handle error_data, bool no_retry) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str id = arena.Str(task_id, "task_id");
    uint64_t tok = U64(token, "lease_token");
    sluice_outcome o = SLUICE_OUTCOME_INIT;
    o.kind = kind;
    sluice_str r = arena.Bytes(result, "result");
    o.result = reinterpret_cast<const uint8_t*>(r.ptr);
    o.result_len = r.len;
    o.error_code = arena.Str(error_code, "error_code");
    o.error_message = arena.Str(error_message, "error_message");
    sluice_str d = arena.Bytes(error_data, "error_data");
    o.error_data = reinterpret_cast<const uint8_t*>(d.ptr);
    o.error_data_len = d.len;
    o.no_retry = no_retry;
    Call([&](sluice_error** err) { return sluice_complete(engine_, t, id, tok, &o, err); });
  }

  py::tuple Cancel(py::handle tenant, py::handle job_id) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str id = arena.Str(job_id, "id");
    uint32_t status = 0;
    bool requested = false;
    Call([&](sluice_error** err) {
      return sluice_cancel(&status, &requested, engine_, t, id, err);
    });
    return py::make_tuple(status, requested);
  }

  // restart, expedite and delete share a signature.
  template <sluice_status (*Fn)(sluice_engine*, sluice_str, sluice_str, sluice_error**)>
  void JobOp(py::handle tenant, py::handle job_id) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str id = arena.Str(job_id, "id");
    Call([&](sluice_error** err) { return Fn(engine_, t, id, err); });
  }

  py::tuple GetJob(py::handle tenant, py::handle job_id, bool include_attempts) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str id = arena.Str(job_id, "id");
    sluice_job* out = nullptr;
    Call([&](sluice_error** err) {
      return sluice_get_job(&out, engine_, t, id, include_attempts, err);
    });
    Owned<sluice_job> owned(out);
    return JobTuple(*out);
  }

  py::tuple GetResult(py::handle tenant, py::handle job_id) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str id = arena.Str(job_id, "id");
    sluice_job_result* out = nullptr;
    Call([&](sluice_error** err) { return sluice_get_result(&out, engine_, t, id, err); });
    Owned<sluice_job_result> owned(out);
    return py::make_tuple(out->status, out->finished, Blob(out->result), Text(out->error_code),
                          Text(out->error_message), Blob(out->error_data));
  }

  size_t ReapExpired() {
    size_t reaped = 0;
    Call([&](sluice_error** err) { return sluice_reap_expired(&reaped, engine_, err); });
    return reaped;
  }

  int64_t RefreshHeartbeat(py::handle tenant, py::handle key, py::handle token) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str k = arena.Str(key, "key");
    uint64_t tok = U64(token, "lease_token");
    int64_t expires = 0;
    Call([&](sluice_error** err) {
      return sluice_refresh_heartbeat(&expires, engine_, t, k, tok, err);
    });
    return expires;
  }

  void RefreshComplete(py::handle tenant, py::handle key, py::handle token, bool ok,
                       py::handle new_max, py::handle error_code, py::handle error_message) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str k = arena.Str(key, "key");
    uint64_t tok = U64(token, "lease_token");
    uint32_t max = U32(new_max, "new_max");
    sluice_str code = arena.Str(error_code, "error_code");
    sluice_str message = arena.Str(error_message, "error_message");
    Call([&](sluice_error** err) {
      return sluice_refresh_complete(engine_, t, k, tok, ok, max, code, message, err);
    });
  }

  py::tuple FloatingLimitGet(py::handle tenant, py::handle key) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str k = arena.Str(key, "key");
    sluice_floating_limit* out = nullptr;
    Call([&](sluice_error** err) { return sluice_floating_limit_get(&out, engine_, t, k, err); });
    Owned<sluice_floating_limit> owned(out);
    const sluice_floating_limit& f = *out;
    return py::make_tuple(Text(f.tenant), Text(f.key), f.current_max, f.default_max,
                          f.refresh_interval_ms, f.last_refreshed_ms,
                          Meta(f.metadata, f.metadata_len), f.consecutive_failures,
                          f.next_refresh_ms, f.refresh_in_flight, f.holders, f.waiters);
  }

  void FloatingLimitSet(py::handle tenant, py::handle key, py::handle max) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str k = arena.Str(key, "key");
    uint32_t m = U32(max, "max");
    Call([&](sluice_error** err) { return sluice_floating_limit_set(engine_, t, k, m, err); });
  }

  py::tuple ConcurrencyKey(py::handle tenant, uint32_t kind, py::handle key) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str k = arena.Str(key, "key");
    uint64_t holders = 0;
    uint64_t waiters = 0;
    uint32_t max = 0;
    Call([&](sluice_error** err) {
      return sluice_concurrency_key_get(&holders, &waiters, &max, engine_, t, kind, k, err);
    });
    return py::make_tuple(holders, waiters, max);
  }

  void VerifyIndexes() {
    Call([&](sluice_error** err) { return sluice_verify_indexes(engine_, err); });
  }

  // -> (jobs, next_cursor, keys_visited)
  py::tuple ListJobs(py::handle tenant, py::handle queue, py::handle statuses, py::handle id,
                     py::handle id_prefix, py::handle metadata, py::handle created_from_ms,
                     py::handle created_to_ms, bool newest_first, py::handle limit,
                     py::handle cursor, py::handle view) {
    Arena arena;
    sluice_list_request req = SLUICE_LIST_REQUEST_INIT;
    req.tenant = arena.Str(tenant, "tenant");
    req.queue = arena.Str(queue, "queue");
    std::vector<uint32_t> status_values;
    for (py::handle st : py::list(py::reinterpret_borrow<py::object>(statuses))) {
      status_values.push_back(U32(st, "statuses"));
    }
    req.statuses = status_values.data();
    req.statuses_len = status_values.size();
    req.id = arena.Str(id, "id");
    req.id_prefix = arena.Str(id_prefix, "id_prefix");
    std::vector<sluice_kv> md = arena.Metadata(metadata, "metadata");
    req.metadata = md.data();
    req.metadata_len = md.size();
    req.created_from_ms = I64(created_from_ms, "created_from_ms");
    req.created_to_ms = I64(created_to_ms, "created_to_ms");
    req.newest_first = newest_first;
    req.limit = U32(limit, "limit");
    req.cursor = arena.Str(cursor, "cursor");
    req.view = U32(view, "view");
    sluice_job_list* out = nullptr;
    Call([&](sluice_error** err) { return sluice_list_jobs(&out, engine_, &req, err); });
    Owned<sluice_job_list> owned(out);
    py::list jobs;
    for (size_t i = 0; i < out->jobs_len; ++i) jobs.append(JobTuple(out->jobs[i]));
    return py::make_tuple(jobs, Text(out->next_cursor), out->keys_visited);
  }

  // -> [(queue, (scheduled, waiting, running, succeeded, failed, cancelled)), ...]
  py::list CountJobs(py::handle tenant, py::handle queue) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str q = arena.Str(queue, "queue");
    sluice_queue_counts* out = nullptr;
    Call([&](sluice_error** err) { return sluice_count_jobs(&out, engine_, t, q, err); });
    Owned<sluice_queue_counts> owned(out);
    py::list result;
    for (size_t i = 0; i < out->len; ++i) result.append(QueueCountTuple(out->items[i]));
    return result;
  }

  // -> (columns, rows, keys_visited). The query runs without the GIL; `token` (may be None)
  // is kept alive by this frame until the call returns.
  py::tuple Query(py::handle tenant, py::handle sql, py::handle timeout_ms, py::handle max_rows,
                  py::handle max_result_bytes, std::shared_ptr<CancelToken> token) {
    Arena arena;
    sluice_str t = arena.Str(tenant, "tenant");
    sluice_str q = arena.Str(sql, "sql");
    sluice_query_options opts = SLUICE_QUERY_OPTIONS_INIT;
    opts.timeout_ms = U32(timeout_ms, "timeout_ms");
    opts.max_rows = U32(max_rows, "max_rows");
    opts.max_result_bytes = U64(max_result_bytes, "max_result_bytes");
    opts.cancel_token = token ? token->get() : nullptr;
    sluice_query_result* out = nullptr;
    Call([&](sluice_error** err) { return sluice_query(&out, engine_, t, q, &opts, err); });
    std::unique_ptr<sluice_query_result, void (*)(sluice_query_result*)> owned(
        out, &sluice_query_result_free);
    const size_t ncols = sluice_query_result_column_count(out);
    const size_t nrows = sluice_query_result_row_count(out);
    py::list columns;
    for (size_t c = 0; c < ncols; ++c)
      columns.append(Text(sluice_query_result_column_name(out, c)));
    py::list rows;
    for (size_t r = 0; r < nrows; ++r) {
      py::tuple row(ncols);
      for (size_t c = 0; c < ncols; ++c) row[c] = Cell(out, r, c);
      rows.append(std::move(row));
    }
    return py::make_tuple(columns, rows, sluice_query_result_keys_visited(out));
  }

  py::tuple Stats() {
    sluice_stats* out = nullptr;
    Call([&](sluice_error** err) { return sluice_engine_stats(&out, engine_, err); });
    Owned<sluice_stats> owned(out);
    const sluice_stats& s = *out;
    return py::make_tuple(s.enqueued, s.leased, s.succeeded, s.failed, s.cancelled, s.retried,
                          s.lease_expired, s.pending_tasks, s.running, s.limit_keys,
                          s.limit_holders, s.limit_waiters);
  }

 private:
  sluice_engine* engine_ = nullptr;
};

// The one translator: StatusError -> sluice.errors.<class for its status>(message).
void TranslateError(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const StatusError& e) {
    try {
      py::object make = py::module_::import("sluice.errors").attr("_from_status");
      py::object exc = make(e.status(), e.message());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    } catch (py::error_already_set& nested) {
      nested.restore();  // e.g. sluice.errors could not be imported: report that instead
    }
  }
}

}  // namespace

PYBIND11_MODULE(_sluice, m) {
  m.doc() = "Low-level binding of the Sluice C ABI; use the `sluice` package instead.";
  py::register_exception_translator(&TranslateError);

  m.def(
      "version", [] { return std::string(sluice_version()); },
      "The version of the linked Sluice library.");
  m.def("status_name", [](int status) {
    return std::string(sluice_status_name(static_cast<sluice_status>(status)));
  });

  py::class_<Engine>(m, "Engine")
      .def(py::init<py::handle, uint32_t, uint64_t, uint32_t, uint32_t, uint64_t>(),
           py::arg("path"), py::arg("durability"), py::arg("default_lease_ms"),
           py::arg("reaper_interval_ms"), py::arg("max_lease_batch"), py::arg("max_payload_bytes"))
      .def("close", &Engine::Close)
      .def("enqueue", &Engine::Enqueue)
      .def("enqueue_batch", &Engine::EnqueueBatch)
      .def("lease", &Engine::Lease)
      .def("heartbeat", &Engine::Heartbeat)
      .def("complete", &Engine::Complete)
      .def("cancel", &Engine::Cancel)
      .def("restart", &Engine::JobOp<sluice_restart>)
      .def("expedite", &Engine::JobOp<sluice_expedite>)
      .def("delete", &Engine::JobOp<sluice_delete>)
      .def("get_job", &Engine::GetJob)
      .def("get_result", &Engine::GetResult)
      .def("reap_expired", &Engine::ReapExpired)
      .def("refresh_heartbeat", &Engine::RefreshHeartbeat)
      .def("refresh_complete", &Engine::RefreshComplete)
      .def("floating_limit_get", &Engine::FloatingLimitGet)
      .def("floating_limit_set", &Engine::FloatingLimitSet)
      .def("concurrency_key", &Engine::ConcurrencyKey)
      .def("stats", &Engine::Stats)
      .def("verify_indexes", &Engine::VerifyIndexes)
      .def("list_jobs", &Engine::ListJobs)
      .def("count_jobs", &Engine::CountJobs)
      .def("query", &Engine::Query, py::arg("tenant"), py::arg("sql"), py::arg("timeout_ms"),
           py::arg("max_rows"), py::arg("max_result_bytes"), py::arg("token").none(true));

  py::class_<CancelToken, std::shared_ptr<CancelToken>>(m, "CancelToken", R"doc(
A cancellation flag for Engine.query. Pass it as ``cancel_token=`` and call :meth:`cancel` from
any thread: the running query stops with CancelledError within milliseconds. A token stays
cancelled once cancelled (the next query using it stops at once): use one per operation.)doc")
      .def(py::init<>())
      .def("cancel", &CancelToken::Cancel, py::call_guard<py::gil_scoped_release>(),
           "Cancels every query using this token, now and later. Thread-safe, idempotent.")
      .def_property_readonly("cancelled", &CancelToken::Cancelled, "Whether cancel() was called.")
      .def("__repr__", [](const CancelToken& t) {
        return std::string("<sluice.CancelToken ") + (t.Cancelled() ? "cancelled>" : "active>");
      });
}
