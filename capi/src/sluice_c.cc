// The C ABI over sluice::Engine. Every entry point catches every exception (none crosses the
// ABI), validates pointers and struct versions, and maps core StatusCode values one-to-one onto
// sluice_status (docs/errors.md).
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/engine.h"
#include "sluice/sluice.h"

struct sluice_error {
  sluice_status status;
  std::string message;
};

struct sluice_engine {
  std::unique_ptr<sluice::Engine> engine;
  std::atomic<bool> closed{false};
};

struct sluice_cancel_token {
  std::atomic<bool> cancelled{false};
};

struct sluice_query_result {
  sluice::QueryResult result;
};

namespace {

using sluice::Status;
using sluice::StatusCode;

// Every core code equals its sluice_status (docs/errors.md); ToCStatus is the one conversion.
#define SLUICE_SAME_CODE(core, c) \
  static_assert(static_cast<int>(StatusCode::core) == (c), #core " must equal " #c)
SLUICE_SAME_CODE(kOk, SLUICE_OK);
SLUICE_SAME_CODE(kNotFound, SLUICE_NOT_FOUND);
SLUICE_SAME_CODE(kInvalidArgument, SLUICE_INVALID_ARGUMENT);
SLUICE_SAME_CODE(kTooLarge, SLUICE_TOO_LARGE);
SLUICE_SAME_CODE(kLeaseLost, SLUICE_LEASE_LOST);
SLUICE_SAME_CODE(kFailedPrecondition, SLUICE_FAILED_PRECONDITION);
SLUICE_SAME_CODE(kClosed, SLUICE_CLOSED);
SLUICE_SAME_CODE(kIoError, SLUICE_IO_ERROR);
SLUICE_SAME_CODE(kCorruption, SLUICE_CORRUPTION);
SLUICE_SAME_CODE(kTimeout, SLUICE_TIMEOUT);
SLUICE_SAME_CODE(kAlreadyExists, SLUICE_ALREADY_EXISTS);
SLUICE_SAME_CODE(kBusy, SLUICE_BUSY);
SLUICE_SAME_CODE(kCancelled, SLUICE_CANCELLED);
#undef SLUICE_SAME_CODE

// A core code as a sluice_status. A code this header does not know (a core newer than the
// ABI) is SLUICE_INTERNAL rather than a value outside the enum.
sluice_status ToCStatus(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
    case StatusCode::kNotFound:
    case StatusCode::kInvalidArgument:
    case StatusCode::kTooLarge:
    case StatusCode::kLeaseLost:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kClosed:
    case StatusCode::kIoError:
    case StatusCode::kCorruption:
    case StatusCode::kTimeout:
    case StatusCode::kAlreadyExists:
    case StatusCode::kBusy:
    case StatusCode::kCancelled:
      return static_cast<sluice_status>(code);
  }
  return SLUICE_INTERNAL;
}

sluice_status Fail(sluice_error** err, sluice_status status, std::string message) {
  if (err != nullptr) {
    *err = nullptr;
    try {
      *err = new sluice_error{status, std::move(message)};
    } catch (...) {
      // Out of memory for the error itself: the status still says what happened.
    }
  }
  return status;
}

sluice_status FromStatus(const Status& s, sluice_error** err) {
  if (s.ok()) return SLUICE_OK;
  return Fail(err, ToCStatus(s.code()), s.message());
}

std::string_view View(sluice_str s) {
  return s.len == 0 || s.ptr == nullptr ? std::string_view() : std::string_view(s.ptr, s.len);
}

std::string Copy(sluice_str s) { return std::string(View(s)); }

std::string CopyBytes(const uint8_t* p, size_t n) {
  return n == 0 || p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

// Runs `body` with every exception turned into a status.
template <typename F>
sluice_status Guard(sluice_error** err, F&& body) {
  if (err != nullptr) *err = nullptr;
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(err, SLUICE_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return Fail(err, SLUICE_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return Fail(err, SLUICE_INTERNAL, "internal error: unknown exception");
  }
}

#define SLUICE_REQUIRE(cond, what)                                \
  do {                                                            \
    if (!(cond)) return Fail(err, SLUICE_INVALID_ARGUMENT, what); \
  } while (0)

#define SLUICE_ENGINE(e) \
  SLUICE_REQUIRE((e) != nullptr && (e)->engine != nullptr, "engine must not be NULL")

// ---- Output objects -----------------------------------------------------------------------
//
// Every output is one heap object: a Holder owning the public struct `pub` and the storage its
// pointers point into. sluice_free(&pub) finds the holder through a header placed right before
// `pub`.

constexpr uint64_t kMagic = 0x534c5549434531ULL;  // "SLUICE1"

struct Owner {
  virtual ~Owner() = default;
};

struct Header {
  Owner* owner;
  uint64_t magic;
};

template <typename P>
struct Holder : Owner {
  Header hdr;
  P pub{};
  std::deque<std::string> strings;
  std::deque<std::vector<sluice_kv>> kv_arrays;

  Holder() : hdr{this, kMagic} {}
  ~Holder() override { hdr.magic = 0; }

  sluice_str Str(std::string s) {
    strings.push_back(std::move(s));
    return sluice_str{strings.back().c_str(), strings.back().size()};
  }
  const sluice_kv* Kvs(const std::map<std::string, std::string>& m, size_t* len) {
    kv_arrays.emplace_back();
    auto& v = kv_arrays.back();
    v.reserve(m.size());
    for (const auto& [k, val] : m) v.push_back(sluice_kv{Str(k), Str(val)});
    *len = v.size();
    return v.data();
  }
  P* Release() {
    // The header must sit right before pub: sluice_free relies on it.
    if (reinterpret_cast<char*>(&pub) - reinterpret_cast<char*>(&hdr) !=
        static_cast<std::ptrdiff_t>(sizeof(Header))) {
      std::abort();
    }
    return &pub;
  }
};

template <typename P>
std::unique_ptr<Holder<P>> Make() {
  return std::make_unique<Holder<P>>();
}

uint32_t PublicStatus(sluice::JobStatus s) { return static_cast<uint32_t>(s); }

bool ConvertSpec(const sluice_job_spec* in, sluice::JobSpec* out, std::string* why) {
  if (in == nullptr) {
    *why = "spec must not be NULL";
    return false;
  }
  if (in->version != SLUICE_JOB_SPEC_VERSION) {
    *why = "spec.version " + std::to_string(in->version) +
           " is not supported (this library: " + std::to_string(SLUICE_JOB_SPEC_VERSION) + ")";
    return false;
  }
  if ((in->payload == nullptr && in->payload_len > 0) ||
      (in->metadata == nullptr && in->metadata_len > 0) ||
      (in->limits == nullptr && in->limits_len > 0)) {
    *why = "spec: a NULL pointer with a non-zero length";
    return false;
  }
  out->id = Copy(in->id);
  out->tenant = Copy(in->tenant);
  out->queue = Copy(in->queue);
  out->priority = in->priority;
  out->start_at_ms = in->start_at_ms;
  if (in->retry != nullptr) {
    sluice::RetryPolicy p;
    p.max_retries = in->retry->max_retries;
    p.initial_backoff_ms = in->retry->initial_backoff_ms;
    p.max_backoff_ms = in->retry->max_backoff_ms;
    p.multiplier = in->retry->multiplier;
    p.jitter = in->retry->jitter;
    out->retry = p;
  }
  out->lease_ms = in->lease_ms;
  out->payload = CopyBytes(in->payload, in->payload_len);
  for (size_t i = 0; i < in->metadata_len; ++i) {
    out->metadata[Copy(in->metadata[i].key)] = Copy(in->metadata[i].value);
  }
  for (size_t i = 0; i < in->limits_len; ++i) {
    const sluice_limit& l = in->limits[i];
    if (l.metadata == nullptr && l.metadata_len > 0) {
      *why = "spec.limits: a NULL metadata pointer with a non-zero length";
      return false;
    }
    if (l.kind != SLUICE_LIMIT_FIXED && l.kind != SLUICE_LIMIT_FLOATING) {
      *why = "spec.limits[" + std::to_string(i) + "].kind is not fixed or floating";
      return false;
    }
    sluice::ConcurrencyLimit c;
    c.kind = l.kind == SLUICE_LIMIT_FLOATING ? sluice::ConcurrencyLimit::Kind::kFloating
                                             : sluice::ConcurrencyLimit::Kind::kFixed;
    c.key = Copy(l.key);
    c.max = l.max;
    c.refresh_interval_ms = l.refresh_interval_ms;
    for (size_t k = 0; k < l.metadata_len; ++k) {
      c.metadata[Copy(l.metadata[k].key)] = Copy(l.metadata[k].value);
    }
    out->limits.push_back(std::move(c));
  }
  return true;
}

}  // namespace

namespace {

template <typename H>
void FillFloating(H* h, const sluice::FloatingLimitState& r, sluice_floating_limit* out) {
  sluice_floating_limit& o = *out;
  o.tenant = h->Str(r.tenant);
  o.key = h->Str(r.key);
  o.current_max = r.current_max;
  o.default_max = r.default_max;
  o.refresh_interval_ms = r.refresh_interval_ms;
  o.last_refreshed_ms = r.last_refreshed_ms;
  o.metadata = h->Kvs(r.metadata, &o.metadata_len);
  o.consecutive_failures = r.consecutive_failures;
  o.next_refresh_ms = r.next_refresh_ms;
  o.refresh_in_flight = r.refresh_in_flight;
  o.holders = r.holders;
  o.waiters = r.waiters;
}

// Converts a C outcome; false (with a reason) for a NULL, unknown version or malformed one.
bool ConvertOutcome(const sluice_outcome* in, sluice::Outcome* out, std::string* why) {
  if (in == nullptr) {
    *why = "outcome must not be NULL";
    return false;
  }
  if (in->version != SLUICE_OUTCOME_VERSION) {
    *why = "outcome.version " + std::to_string(in->version) + " is not supported";
    return false;
  }
  if ((in->result == nullptr && in->result_len > 0) ||
      (in->error_data == nullptr && in->error_data_len > 0)) {
    *why = "outcome: a NULL pointer with a non-zero length";
    return false;
  }
  switch (in->kind) {
    case SLUICE_OUTCOME_SUCCESS:
      *out = sluice::Outcome::Success(CopyBytes(in->result, in->result_len));
      return true;
    case SLUICE_OUTCOME_FAILURE:
      *out = sluice::Outcome::Failure(Copy(in->error_code), Copy(in->error_message),
                                      CopyBytes(in->error_data, in->error_data_len));
      out->no_retry = in->no_retry;
      return true;
    case SLUICE_OUTCOME_CANCELLED:
      *out = sluice::Outcome::Cancelled();
      return true;
    default:
      *why = "outcome.kind is not SLUICE_OUTCOME_SUCCESS, _FAILURE or _CANCELLED";
      return false;
  }
}

// Storage for the arrays a sluice_job points into, one element per job of an output object.
struct JobArrays {
  std::deque<std::vector<sluice_limit>> limits;
  std::deque<std::vector<sluice_attempt>> attempts;
};

// Fills *out from j (whose strings are moved out), its strings in h, its arrays in *arrays.
template <typename H>
void FillJob(H* h, JobArrays* arrays, sluice::Job& j, sluice_job* out) {
  sluice_job& o = *out;
  o.id = h->Str(std::move(j.id));
  o.tenant = h->Str(std::move(j.tenant));
  o.queue = h->Str(std::move(j.queue));
  o.priority = j.priority;
  o.status = PublicStatus(j.status);
  o.cancel_requested = j.cancel_requested;
  o.start_at_ms = j.start_at_ms;
  o.next_run_ms = j.next_run_ms;
  o.lease_ms = j.lease_ms;
  o.retry = sluice_retry_policy{j.retry.max_retries, j.retry.initial_backoff_ms,
                                j.retry.max_backoff_ms, j.retry.multiplier, j.retry.jitter};
  o.payload = h->Str(std::move(j.payload));
  o.metadata = h->Kvs(j.metadata, &o.metadata_len);
  auto& limits = arrays->limits.emplace_back();
  limits.reserve(j.limits.size());
  for (const auto& l : j.limits) {
    sluice_limit c{};
    c.kind = l.kind == sluice::ConcurrencyLimit::Kind::kFloating ? SLUICE_LIMIT_FLOATING
                                                                 : SLUICE_LIMIT_FIXED;
    c.key = h->Str(l.key);
    c.max = l.max;
    c.refresh_interval_ms = l.refresh_interval_ms;
    c.metadata = h->Kvs(l.metadata, &c.metadata_len);
    limits.push_back(c);
  }
  o.limits = limits.data();
  o.limits_len = limits.size();
  o.attempt_count = j.attempt_count;
  o.retries_used = j.retries_used;
  o.created_ms = j.created_ms;
  o.updated_ms = j.updated_ms;
  o.finished_ms = j.finished_ms;
  auto& attempts = arrays->attempts.emplace_back();
  attempts.reserve(j.attempts.size());
  for (auto& a : j.attempts) {
    sluice_attempt c{};
    c.number = a.number;
    c.task_id = h->Str(std::move(a.task_id));
    c.worker_id = h->Str(std::move(a.worker_id));
    c.status = static_cast<uint32_t>(a.status);
    c.started_ms = a.started_ms;
    c.finished_ms = a.finished_ms;
    c.result = h->Str(std::move(a.result));
    c.error_code = h->Str(std::move(a.error.code));
    c.error_message = h->Str(std::move(a.error.message));
    c.error_data = h->Str(std::move(a.error.data));
    attempts.push_back(c);
  }
  o.attempts = attempts.data();
  o.attempts_len = attempts.size();
}

// Converts a C list request; false (with a reason) for a NULL, unknown-version or malformed one.
bool ConvertListRequest(const sluice_list_request* in, sluice::ListJobsRequest* out,
                        std::string* why) {
  if (in == nullptr) {
    *why = "request must not be NULL";
    return false;
  }
  if (in->version != SLUICE_LIST_REQUEST_VERSION) {
    *why = "request.version " + std::to_string(in->version) +
           " is not supported (this library: " + std::to_string(SLUICE_LIST_REQUEST_VERSION) + ")";
    return false;
  }
  if ((in->statuses == nullptr && in->statuses_len > 0) ||
      (in->metadata == nullptr && in->metadata_len > 0)) {
    *why = "request: a NULL pointer with a non-zero length";
    return false;
  }
  if (in->view > SLUICE_VIEW_FULL) {
    *why = "request.view " + std::to_string(in->view) + " is not a SLUICE_VIEW_* value";
    return false;
  }
  sluice::JobFilter& f = out->filter;
  f.tenant = Copy(in->tenant);
  f.queue = Copy(in->queue);
  for (size_t i = 0; i < in->statuses_len; ++i) {
    if (in->statuses[i] > SLUICE_JOB_CANCELLED) {
      *why = "request.statuses[" + std::to_string(i) + "] " + std::to_string(in->statuses[i]) +
             " is not a SLUICE_JOB_* value";
      return false;
    }
    f.statuses.push_back(static_cast<sluice::JobStatus>(in->statuses[i]));
  }
  f.id = Copy(in->id);
  f.id_prefix = Copy(in->id_prefix);
  for (size_t i = 0; i < in->metadata_len; ++i) {
    f.metadata.emplace_back(Copy(in->metadata[i].key), Copy(in->metadata[i].value));
  }
  f.created_from_ms = in->created_from_ms;
  // 0 would be an empty range; a zeroed struct means "no upper bound", like the INIT value.
  f.created_to_ms =
      in->created_to_ms == 0 ? std::numeric_limits<int64_t>::max() : in->created_to_ms;
  out->newest_first = in->newest_first;
  out->limit = in->limit;
  out->cursor = Copy(in->cursor);
  out->view = static_cast<sluice::JobView>(in->view);
  return true;
}

// Converts C query options (NULL: defaults); false (with a reason) for an unknown version.
bool ConvertQueryOptions(const sluice_query_options* in, sluice::QueryOptions* out,
                         std::string* why) {
  if (in == nullptr) return true;
  if (in->version != SLUICE_QUERY_OPTIONS_VERSION) {
    *why = "options.version " + std::to_string(in->version) +
           " is not supported (this library: " + std::to_string(SLUICE_QUERY_OPTIONS_VERSION) + ")";
    return false;
  }
  if (in->timeout_ms != 0) out->timeout_ms = in->timeout_ms;
  if (in->max_rows != 0) out->max_rows = in->max_rows;
  if (in->max_result_bytes != 0) out->max_result_bytes = in->max_result_bytes;
  if (const sluice_cancel_token* token = in->cancel_token; token != nullptr) {
    out->cancelled = [token] { return token->cancelled.load(std::memory_order_acquire); };
  }
  return true;
}

static_assert(static_cast<int>(sluice::QueryValue::Type::kNull) == SLUICE_VALUE_NULL);
static_assert(static_cast<int>(sluice::QueryValue::Type::kInteger) == SLUICE_VALUE_INTEGER);
static_assert(static_cast<int>(sluice::QueryValue::Type::kReal) == SLUICE_VALUE_REAL);
static_assert(static_cast<int>(sluice::QueryValue::Type::kText) == SLUICE_VALUE_TEXT);
static_assert(static_cast<int>(sluice::QueryValue::Type::kBlob) == SLUICE_VALUE_BLOB);

// The cell at (row, column), or nullptr when out of range.
const sluice::QueryValue* Cell(const sluice_query_result* r, size_t row, size_t column) {
  if (r == nullptr || row >= r->result.rows.size()) return nullptr;
  const auto& cells = r->result.rows[row];
  return column < cells.size() ? &cells[column] : nullptr;
}

}  // namespace

extern "C" {

sluice_status sluice_error_status(const sluice_error* error) {
  return error == nullptr ? SLUICE_INTERNAL : error->status;
}

const char* sluice_error_message(const sluice_error* error) {
  return error == nullptr ? "" : error->message.c_str();
}

void sluice_error_free(sluice_error* error) { delete error; }

const char* sluice_status_name(sluice_status status) {
  switch (status) {
    case SLUICE_INTERNAL:
      return "internal";
    case SLUICE_NO_MEMORY:
      return "no_memory";
    default:
      break;
  }
  // Every other value up to SLUICE_CANCELLED is a core code.
  if (static_cast<int>(status) < 0 || static_cast<int>(status) > SLUICE_CANCELLED) return "unknown";
  // StatusCodeName returns static storage.
  return sluice::StatusCodeName(static_cast<StatusCode>(status)).data();
}

void sluice_free(void* ptr) {
  if (ptr == nullptr) return;
  auto* h = reinterpret_cast<Header*>(static_cast<char*>(ptr) - sizeof(Header));
  if (h->magic != kMagic) std::abort();  // not a library output, or freed twice
  delete h->owner;
}

const char* sluice_version(void) { return "0.1.0"; }

sluice_status sluice_engine_open(sluice_engine** out, sluice_str path,
                                 const sluice_engine_options* options, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_REQUIRE(path.len > 0 && path.ptr != nullptr, "path must not be empty");
    sluice::EngineOptions o;
    o.path = Copy(path);
    if (options != nullptr) {
      if (options->version != SLUICE_ENGINE_OPTIONS_VERSION) {
        return Fail(err, SLUICE_INVALID_ARGUMENT,
                    "options.version " + std::to_string(options->version) +
                        " is not supported (this library: " +
                        std::to_string(SLUICE_ENGINE_OPTIONS_VERSION) + ")");
      }
      SLUICE_REQUIRE(options->durability == SLUICE_DURABILITY_SYNC ||
                         options->durability == SLUICE_DURABILITY_ASYNC,
                     "options.durability must be SLUICE_DURABILITY_SYNC or _ASYNC");
      o.durability = options->durability == SLUICE_DURABILITY_ASYNC ? sluice::Durability::kAsync
                                                                    : sluice::Durability::kSync;
      if (options->default_lease_ms != 0) o.default_lease_ms = options->default_lease_ms;
      if (options->reaper_interval_ms != 0) o.reaper_interval_ms = options->reaper_interval_ms;
      if (options->max_lease_batch != 0) o.max_lease_batch = options->max_lease_batch;
      if (options->max_payload_bytes != 0) {
        o.limits.max_payload_bytes = options->max_payload_bytes;
        o.limits.max_result_bytes = options->max_payload_bytes;
      }
    }
    auto r = sluice::Engine::Open(o);
    if (!r.ok()) return FromStatus(r.status(), err);
    auto handle = std::make_unique<sluice_engine>();
    handle->engine = std::move(r).value();
    *out = handle.release();
    return SLUICE_OK;
  });
}

sluice_status sluice_engine_close(sluice_engine* engine, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    engine->closed.store(true);
    return FromStatus(engine->engine->Close(), err);
  });
}

void sluice_engine_destroy(sluice_engine* engine) {
  if (engine == nullptr) return;
  try {
    if (engine->engine) (void)engine->engine->Close();
  } catch (...) {
  }
  delete engine;
}

sluice_status sluice_enqueue(sluice_enqueue_result** out, sluice_engine* engine,
                             const sluice_job_spec* spec, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    sluice::JobSpec s;
    std::string why;
    if (!ConvertSpec(spec, &s, &why)) return Fail(err, SLUICE_INVALID_ARGUMENT, why);
    auto r = engine->engine->Enqueue(s);
    if (!r.ok()) return FromStatus(r.status(), err);
    auto h = Make<sluice_enqueue_result>();
    h->pub.id = h->Str(r->id);
    h->pub.created = r->created;
    h->pub.status = PublicStatus(r->status);
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_enqueue_batch(sluice_enqueue_results** out, sluice_engine* engine,
                                   const sluice_job_spec* const* specs, size_t len,
                                   sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    SLUICE_REQUIRE(specs != nullptr || len == 0, "specs must not be NULL");
    std::vector<sluice::JobSpec> v(len);
    for (size_t i = 0; i < len; ++i) {
      std::string why;
      if (!ConvertSpec(specs[i], &v[i], &why)) {
        return Fail(err, SLUICE_INVALID_ARGUMENT, "jobs[" + std::to_string(i) + "]: " + why);
      }
    }
    auto r = engine->engine->EnqueueBatch(v);
    if (!r.ok()) return FromStatus(r.status(), err);
    struct Results : Holder<sluice_enqueue_results> {
      std::vector<sluice_enqueue_result> items;
    };
    auto h = std::make_unique<Results>();
    h->items.reserve(r->size());
    for (const auto& e : *r) {
      h->items.push_back(sluice_enqueue_result{h->Str(e.id), e.created, PublicStatus(e.status)});
    }
    h->pub.items = h->items.data();
    h->pub.len = h->items.size();
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_lease(sluice_lease_response** out, sluice_engine* engine,
                           const sluice_lease_request* request, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    SLUICE_REQUIRE(request != nullptr, "request must not be NULL");
    if (request->version != SLUICE_LEASE_REQUEST_VERSION) {
      return Fail(err, SLUICE_INVALID_ARGUMENT,
                  "request.version " + std::to_string(request->version) + " is not supported");
    }
    sluice::LeaseRequest req;
    req.tenant = Copy(request->tenant);
    req.queue = Copy(request->queue);
    req.worker_id = Copy(request->worker_id);
    req.max_tasks = request->max_tasks;
    req.wait_ms = request->wait_ms;
    sluice::LeaseResponse resp;
    if (request->with_refreshes) {
      auto r = engine->engine->LeaseTasks(req);
      if (!r.ok()) return FromStatus(r.status(), err);
      resp = std::move(r).value();
    } else {
      auto r = engine->engine->Lease(req);
      if (!r.ok()) return FromStatus(r.status(), err);
      resp.tasks = std::move(r).value();
    }
    struct Resp : Holder<sluice_lease_response> {
      std::vector<sluice_task> tasks;
      std::vector<sluice_refresh_task> refreshes;
    };
    auto h = std::make_unique<Resp>();
    h->tasks.reserve(resp.tasks.size());
    for (auto& t : resp.tasks) {
      sluice_task o{};
      o.task_id = h->Str(std::move(t.task_id));
      o.job_id = h->Str(std::move(t.job_id));
      o.tenant = h->Str(std::move(t.tenant));
      o.queue = h->Str(std::move(t.queue));
      o.attempt = t.attempt;
      o.priority = t.priority;
      o.payload = h->Str(std::move(t.payload));
      o.metadata = h->Kvs(t.metadata, &o.metadata_len);
      o.lease_token = t.lease_token;
      o.lease_expires_ms = t.lease_expires_ms;
      o.worker_id = h->Str(req.worker_id);
      h->tasks.push_back(o);
    }
    h->refreshes.reserve(resp.refreshes.size());
    for (auto& t : resp.refreshes) {
      sluice_refresh_task o{};
      o.tenant = h->Str(std::move(t.tenant));
      o.key = h->Str(std::move(t.key));
      o.metadata = h->Kvs(t.metadata, &o.metadata_len);
      o.current_max = t.current_max;
      o.default_max = t.default_max;
      o.last_refreshed_ms = t.last_refreshed_ms;
      o.lease_token = t.lease_token;
      o.lease_expires_ms = t.lease_expires_ms;
      h->refreshes.push_back(o);
    }
    h->pub.tasks = h->tasks.data();
    h->pub.tasks_len = h->tasks.size();
    h->pub.refreshes = h->refreshes.data();
    h->pub.refreshes_len = h->refreshes.size();
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_heartbeat(int64_t* out_expires_ms, bool* out_cancel_requested,
                               sluice_engine* engine, sluice_str tenant, sluice_str task_id,
                               sluice_str worker_id, uint64_t lease_token, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    auto r = engine->engine->Heartbeat(View(tenant), View(task_id), View(worker_id), lease_token);
    if (!r.ok()) return FromStatus(r.status(), err);
    if (out_expires_ms != nullptr) *out_expires_ms = r->lease_expires_ms;
    if (out_cancel_requested != nullptr) *out_cancel_requested = r->cancel_requested;
    return SLUICE_OK;
  });
}

sluice_status sluice_complete(sluice_engine* engine, sluice_str tenant, sluice_str task_id,
                              uint64_t lease_token, const sluice_outcome* outcome,
                              sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    sluice::Outcome o;
    std::string why;
    if (!ConvertOutcome(outcome, &o, &why)) return Fail(err, SLUICE_INVALID_ARGUMENT, why);
    return FromStatus(engine->engine->Complete(View(tenant), View(task_id), lease_token, o), err);
  });
}

sluice_status sluice_complete_batch(sluice_status* out_statuses, sluice_engine* engine,
                                    const sluice_completion* items, size_t len,
                                    sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    SLUICE_REQUIRE(out_statuses != nullptr || len == 0, "out_statuses must not be NULL");
    SLUICE_REQUIRE(items != nullptr || len == 0, "items must not be NULL");
    std::vector<size_t> index;  // reports[k] is items[index[k]]; bad outcomes never reach core
    std::vector<sluice::Completion> valid;
    valid.reserve(len);
    for (size_t i = 0; i < len; ++i) {
      sluice::Completion c;
      std::string why;
      if (!ConvertOutcome(items[i].outcome, &c.outcome, &why)) {
        out_statuses[i] = SLUICE_INVALID_ARGUMENT;
        continue;
      }
      c.tenant = Copy(items[i].tenant);
      c.task_id = Copy(items[i].task_id);
      c.lease_token = items[i].lease_token;
      valid.push_back(std::move(c));
      index.push_back(i);
    }
    auto r = engine->engine->CompleteBatch(valid);
    if (!r.ok()) return FromStatus(r.status(), err);
    for (size_t k = 0; k < index.size(); ++k) {
      out_statuses[index[k]] = ToCStatus((*r)[k].code());
    }
    return SLUICE_OK;
  });
}

sluice_status sluice_cancel(uint32_t* out_status, bool* out_cancel_requested, sluice_engine* engine,
                            sluice_str tenant, sluice_str id, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    auto r = engine->engine->Cancel(View(tenant), View(id));
    if (!r.ok()) return FromStatus(r.status(), err);
    if (out_status != nullptr) *out_status = PublicStatus(r->status);
    if (out_cancel_requested != nullptr) *out_cancel_requested = r->cancel_requested;
    return SLUICE_OK;
  });
}

sluice_status sluice_restart(sluice_engine* engine, sluice_str tenant, sluice_str id,
                             sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    return FromStatus(engine->engine->Restart(View(tenant), View(id)), err);
  });
}

sluice_status sluice_expedite(sluice_engine* engine, sluice_str tenant, sluice_str id,
                              sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    return FromStatus(engine->engine->Expedite(View(tenant), View(id)), err);
  });
}

sluice_status sluice_delete(sluice_engine* engine, sluice_str tenant, sluice_str id,
                            sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    return FromStatus(engine->engine->Delete(View(tenant), View(id)), err);
  });
}

sluice_status sluice_get_job(sluice_job** out, sluice_engine* engine, sluice_str tenant,
                             sluice_str id, bool include_attempts, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    auto r = engine->engine->GetJob(View(tenant), View(id), include_attempts);
    if (!r.ok()) return FromStatus(r.status(), err);
    struct JobOut : Holder<sluice_job> {
      JobArrays arrays;
    };
    auto h = std::make_unique<JobOut>();
    FillJob(h.get(), &h->arrays, *r, &h->pub);
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_get_result(sluice_job_result** out, sluice_engine* engine, sluice_str tenant,
                                sluice_str id, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    auto r = engine->engine->GetResult(View(tenant), View(id));
    if (!r.ok()) return FromStatus(r.status(), err);
    auto h = Make<sluice_job_result>();
    h->pub.status = PublicStatus(r->status);
    h->pub.finished = r->finished;
    h->pub.result = h->Str(std::move(r->result));
    h->pub.error_code = h->Str(std::move(r->error.code));
    h->pub.error_message = h->Str(std::move(r->error.message));
    h->pub.error_data = h->Str(std::move(r->error.data));
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_reap_expired(size_t* out_reaped, sluice_engine* engine, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    auto r = engine->engine->ReapExpired();
    if (!r.ok()) return FromStatus(r.status(), err);
    if (out_reaped != nullptr) *out_reaped = *r;
    return SLUICE_OK;
  });
}

sluice_status sluice_refresh_heartbeat(int64_t* out_expires_ms, sluice_engine* engine,
                                       sluice_str tenant, sluice_str key, uint64_t lease_token,
                                       sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    auto r = engine->engine->HeartbeatRefresh(View(tenant), View(key), lease_token);
    if (!r.ok()) return FromStatus(r.status(), err);
    if (out_expires_ms != nullptr) *out_expires_ms = *r;
    return SLUICE_OK;
  });
}

sluice_status sluice_refresh_complete(sluice_engine* engine, sluice_str tenant, sluice_str key,
                                      uint64_t lease_token, bool ok, uint32_t new_max,
                                      sluice_str error_code, sluice_str error_message,
                                      sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    const sluice::RefreshOutcome o =
        ok ? sluice::RefreshOutcome::Success(new_max)
           : sluice::RefreshOutcome::Failure(Copy(error_code), Copy(error_message));
    return FromStatus(engine->engine->CompleteRefresh(View(tenant), View(key), lease_token, o),
                      err);
  });
}

sluice_status sluice_floating_limit_list(sluice_floating_limits** out, sluice_engine* engine,
                                         sluice_str tenant, sluice_str after_key, uint32_t limit,
                                         sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    auto r = engine->engine->ListFloatingLimits(View(tenant), View(after_key), limit);
    if (!r.ok()) return FromStatus(r.status(), err);
    struct List : Holder<sluice_floating_limits> {
      std::vector<sluice_floating_limit> items;
    };
    auto h = std::make_unique<List>();
    h->items.resize(r->size());
    for (size_t i = 0; i < r->size(); ++i) FillFloating(h.get(), (*r)[i], &h->items[i]);
    h->pub.items = h->items.data();
    h->pub.len = h->items.size();
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_floating_limit_get(sluice_floating_limit** out, sluice_engine* engine,
                                        sluice_str tenant, sluice_str key, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    auto r = engine->engine->GetFloatingLimit(View(tenant), View(key));
    if (!r.ok()) return FromStatus(r.status(), err);
    auto h = Make<sluice_floating_limit>();
    FillFloating(h.get(), *r, &h->pub);
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_floating_limit_set(sluice_engine* engine, sluice_str tenant, sluice_str key,
                                        uint32_t max, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    return FromStatus(engine->engine->SetFloatingLimit(View(tenant), View(key), max), err);
  });
}

sluice_status sluice_concurrency_key_get(uint64_t* out_holders, uint64_t* out_waiters,
                                         uint32_t* out_max, sluice_engine* engine,
                                         sluice_str tenant, uint32_t kind, sluice_str key,
                                         sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    SLUICE_REQUIRE(kind == SLUICE_LIMIT_FIXED || kind == SLUICE_LIMIT_FLOATING,
                   "kind must be SLUICE_LIMIT_FIXED or SLUICE_LIMIT_FLOATING");
    auto r = engine->engine->GetConcurrencyKey(View(tenant),
                                               kind == SLUICE_LIMIT_FLOATING
                                                   ? sluice::ConcurrencyLimit::Kind::kFloating
                                                   : sluice::ConcurrencyLimit::Kind::kFixed,
                                               View(key));
    if (!r.ok()) return FromStatus(r.status(), err);
    if (out_holders != nullptr) *out_holders = r->holders;
    if (out_waiters != nullptr) *out_waiters = r->waiters;
    if (out_max != nullptr) *out_max = r->max;
    return SLUICE_OK;
  });
}

sluice_status sluice_engine_stats(sluice_stats** out, sluice_engine* engine, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    if (engine->closed.load()) return Fail(err, SLUICE_CLOSED, "the engine is closed");
    const sluice::EngineStats s = engine->engine->Stats();
    auto h = Make<sluice_stats>();
    h->pub = sluice_stats{s.enqueued,  s.leased,     s.succeeded,     s.failed,
                          s.cancelled, s.retried,    s.lease_expired, s.pending_tasks,
                          s.running,   s.limit_keys, s.limit_holders, s.limit_waiters};
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_verify_indexes(sluice_engine* engine, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_ENGINE(engine);
    return FromStatus(engine->engine->VerifyIndexes(), err);
  });
}

sluice_status sluice_list_jobs(sluice_job_list** out, sluice_engine* engine,
                               const sluice_list_request* request, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    sluice::ListJobsRequest req;
    std::string why;
    if (!ConvertListRequest(request, &req, &why)) return Fail(err, SLUICE_INVALID_ARGUMENT, why);
    auto r = engine->engine->ListJobs(req);
    if (!r.ok()) return FromStatus(r.status(), err);
    struct List : Holder<sluice_job_list> {
      JobArrays arrays;
      std::vector<sluice_job> jobs;
    };
    auto h = std::make_unique<List>();
    h->jobs.resize(r->jobs.size());
    for (size_t i = 0; i < r->jobs.size(); ++i) {
      FillJob(h.get(), &h->arrays, r->jobs[i], &h->jobs[i]);
    }
    h->pub.jobs = h->jobs.data();
    h->pub.jobs_len = h->jobs.size();
    h->pub.next_cursor = h->Str(std::move(r->next_cursor));
    h->pub.keys_visited = r->keys_visited;
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_count_jobs(sluice_queue_counts** out, sluice_engine* engine, sluice_str tenant,
                                sluice_str queue, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    auto r = engine->engine->CountJobs(View(tenant), View(queue));
    if (!r.ok()) return FromStatus(r.status(), err);
    struct Counts : Holder<sluice_queue_counts> {
      std::vector<sluice_queue_count> items;
    };
    static_assert(std::tuple_size_v<decltype(sluice::QueueCounts::by_status)> ==
                  SLUICE_JOB_STATUS_COUNT);
    auto h = std::make_unique<Counts>();
    h->items.resize(r->size());
    for (size_t i = 0; i < r->size(); ++i) {
      sluice::QueueCounts& c = (*r)[i];
      h->items[i].queue = h->Str(std::move(c.queue));
      for (size_t s = 0; s < SLUICE_JOB_STATUS_COUNT; ++s) h->items[i].counts[s] = c.by_status[s];
    }
    h->pub.items = h->items.data();
    h->pub.len = h->items.size();
    *out = h.release()->Release();
    return SLUICE_OK;
  });
}

sluice_status sluice_cancel_token_create(sluice_cancel_token** out, sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = new sluice_cancel_token();
    return SLUICE_OK;
  });
}

void sluice_cancel_token_cancel(sluice_cancel_token* token) {
  if (token != nullptr) token->cancelled.store(true, std::memory_order_release);
}

bool sluice_cancel_token_is_cancelled(const sluice_cancel_token* token) {
  return token != nullptr && token->cancelled.load(std::memory_order_acquire);
}

void sluice_cancel_token_destroy(sluice_cancel_token* token) { delete token; }

sluice_status sluice_query(sluice_query_result** out, sluice_engine* engine, sluice_str tenant,
                           sluice_str sql, const sluice_query_options* options,
                           sluice_error** err) {
  return Guard(err, [&]() -> sluice_status {
    SLUICE_REQUIRE(out != nullptr, "out must not be NULL");
    *out = nullptr;
    SLUICE_ENGINE(engine);
    SLUICE_REQUIRE(sql.ptr != nullptr || sql.len == 0,
                   "sql: a NULL pointer with a non-zero length");
    sluice::QueryOptions o;
    std::string why;
    if (!ConvertQueryOptions(options, &o, &why)) return Fail(err, SLUICE_INVALID_ARGUMENT, why);
    // A token cancelled before the call stops it before it starts, whatever the core polls.
    if (options != nullptr && sluice_cancel_token_is_cancelled(options->cancel_token)) {
      return Fail(err, SLUICE_CANCELLED, "the query was cancelled before it started");
    }
    auto r = engine->engine->Query(View(tenant), View(sql), o);
    if (!r.ok()) return FromStatus(r.status(), err);
    auto result = std::make_unique<sluice_query_result>();
    result->result = std::move(r).value();
    *out = result.release();
    return SLUICE_OK;
  });
}

size_t sluice_query_result_column_count(const sluice_query_result* result) {
  return result == nullptr ? 0 : result->result.columns.size();
}

sluice_str sluice_query_result_column_name(const sluice_query_result* result, size_t column) {
  if (result == nullptr || column >= result->result.columns.size()) return sluice_str{"", 0};
  const std::string& name = result->result.columns[column];
  return sluice_str{name.c_str(), name.size()};
}

size_t sluice_query_result_row_count(const sluice_query_result* result) {
  return result == nullptr ? 0 : result->result.rows.size();
}

uint64_t sluice_query_result_keys_visited(const sluice_query_result* result) {
  return result == nullptr ? 0 : result->result.keys_visited;
}

sluice_value_type sluice_query_result_type(const sluice_query_result* result, size_t row,
                                           size_t column) {
  const sluice::QueryValue* v = Cell(result, row, column);
  return v == nullptr ? SLUICE_VALUE_NULL : static_cast<sluice_value_type>(v->type);
}

int64_t sluice_query_result_int64(const sluice_query_result* result, size_t row, size_t column) {
  const sluice::QueryValue* v = Cell(result, row, column);
  return v != nullptr && v->type == sluice::QueryValue::Type::kInteger ? v->integer : 0;
}

double sluice_query_result_double(const sluice_query_result* result, size_t row, size_t column) {
  const sluice::QueryValue* v = Cell(result, row, column);
  if (v == nullptr) return 0;
  if (v->type == sluice::QueryValue::Type::kReal) return v->real;
  if (v->type == sluice::QueryValue::Type::kInteger) return static_cast<double>(v->integer);
  return 0;
}

sluice_str sluice_query_result_bytes(const sluice_query_result* result, size_t row, size_t column) {
  const sluice::QueryValue* v = Cell(result, row, column);
  if (v == nullptr ||
      (v->type != sluice::QueryValue::Type::kText && v->type != sluice::QueryValue::Type::kBlob)) {
    return sluice_str{"", 0};
  }
  return sluice_str{v->bytes.c_str(), v->bytes.size()};
}

void sluice_query_result_free(sluice_query_result* result) { delete result; }

}  // extern "C"
