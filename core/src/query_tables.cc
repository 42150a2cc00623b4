// The small tables: queues (Engine::CountJobs), concurrency_keys (ListConcurrencyKeys,
// GetConcurrencyKey) and floating_limits (ListFloatingLimits, GetFloatingLimit).
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "query_plan.h"
#include "query_vtab.h"

namespace sluice::query {
namespace {

// Argument codes of the small tables' plans (idxStr).
constexpr char kArgQueue = 'q';
constexpr char kArgKind = 'k';
constexpr char kArgKey = 'n';

// Most active concurrency keys listed without a key = filter; beyond it the query fails with
// kTooLarge rather than return a truncated list.
constexpr uint32_t kMaxListedKeys = 100'000;
// Floating limit keys per ListFloatingLimits page.
constexpr uint32_t kFloatingPage = 1000;

// The single-character arguments of a PlanEqualities plan, decoded as text. False when a value
// is NULL or a blob (equal to no text): the scan is empty.
bool TextArgs(const char* idx_str, int argc, sqlite3_value** argv,
              std::optional<std::string>* values, const char* codes) {
  const std::string_view args = idx_str == nullptr ? "" : idx_str;
  for (int i = 0; i < argc && static_cast<size_t>(i) < args.size(); ++i) {
    const size_t slot = std::string_view(codes).find(args[static_cast<size_t>(i)]);
    if (slot == std::string_view::npos) continue;
    std::string text;
    if (!TextArg(argv[i], &text)) return false;
    // Two different values for one column (queue = 'a' AND queue = 'b') match nothing.
    if (values[slot].has_value() && *values[slot] != text) return false;
    values[slot] = std::move(text);
  }
  return true;
}

// ---- queues ---------------------------------------------------------------------------------

enum QueuesColumn { kQueueName, kQueueStatus0, kQueueTotal = kQueueStatus0 + 6 };

// Rows of `queues`: job counts by status of one queue (queue = ?) or of every queue.
class QueuesCursor : public PagedCursor<QueueCounts> {
 public:
  explicit QueuesCursor(QueryContext* ctx) : PagedCursor(ctx) {}

  Status Filter(int /*idx_num*/, const char* idx_str, int argc, sqlite3_value** argv) override {
    std::optional<std::string> queue[1];
    const bool ok = TextArgs(idx_str, argc, argv, queue, "q");
    queue_ = queue[0].value_or("");
    // An empty or oversized queue name names no queue ("" would mean every queue).
    const bool empty = !ok || (queue[0].has_value() &&
                               (queue_.empty() || queue_.size() > ctx_->limits().max_queue_bytes));
    return Start(empty, -1);
  }

  void Column(sqlite3_context* out, int column) const override {
    const QueueCounts& q = row();
    if (column == kQueueName) return ResultText(out, q.queue);
    if (column == kQueueTotal) {
      uint64_t total = 0;
      for (uint64_t n : q.by_status) total += n;
      return sqlite3_result_int64(out, static_cast<int64_t>(total));
    }
    const auto s = static_cast<size_t>(column - kQueueStatus0);
    if (s < q.by_status.size()) {
      return sqlite3_result_int64(out, static_cast<int64_t>(q.by_status[s]));
    }
    sqlite3_result_null(out);
  }

 private:
  Status FetchPage() override {
    more_ = false;
    auto r = ctx_->engine()->CountJobs(ctx_->tenant(), queue_);
    if (!r.ok()) {
      return r.status().code() == StatusCode::kNotFound ? Status::Ok() : r.status();
    }
    ctx_->AddKeysVisited(std::max<uint64_t>(1, r->size()));
    for (QueueCounts& q : *r) {
      if (queue_.empty() || q.queue == queue_) rows_.push_back(std::move(q));
    }
    return Status::Ok();
  }

  std::string queue_;  // "" = every queue
};

int QueuesBestIndex(sqlite3_index_info* info) {
  static constexpr char kCodes[] = {kArgQueue};
  return PlanEqualities(kCodes, 1, 100, info);
}
std::unique_ptr<Cursor> OpenQueues(QueryContext* ctx) {
  return std::make_unique<QueuesCursor>(ctx);
}

// ---- concurrency_keys -----------------------------------------------------------------------

enum KeysColumn { kKeyKind, kKeyName, kKeyMax, kKeyHolders, kKeyWaiters };

std::string_view KindName(ConcurrencyLimit::Kind kind) {
  return kind == ConcurrencyLimit::Kind::kFixed ? "fixed" : "floating";
}

// Rows of `concurrency_keys`: the tenant's active keys (holders or waiters), busiest first;
// key = ? (and kind = ?) reads just that key.
class KeysCursor : public PagedCursor<ConcurrencyKeyInfo> {
 public:
  explicit KeysCursor(QueryContext* ctx) : PagedCursor(ctx) {}

  Status Filter(int /*idx_num*/, const char* idx_str, int argc, sqlite3_value** argv) override {
    std::optional<std::string> values[2];  // kind, key
    const bool ok = TextArgs(idx_str, argc, argv, values, "kn");
    by_kind_ = values[0].has_value();
    by_key_ = values[1].has_value();
    kind_ = values[0].value_or("");
    key_ = values[1].value_or("");
    const bool bad_kind = by_kind_ && kind_ != "fixed" && kind_ != "floating";
    return Start(!ok || bad_kind, -1);
  }

  void Column(sqlite3_context* out, int column) const override {
    const ConcurrencyKeyInfo& k = row();
    switch (column) {
      case kKeyKind:
        return ResultText(out, KindName(k.kind));
      case kKeyName:
        return ResultText(out, k.key);
      case kKeyMax:
        return sqlite3_result_int64(out, k.max);
      case kKeyHolders:
        return sqlite3_result_int64(out, static_cast<int64_t>(k.holders));
      case kKeyWaiters:
        return sqlite3_result_int64(out, static_cast<int64_t>(k.waiters));
      default:
        sqlite3_result_null(out);
    }
  }

 private:
  Status FetchPage() override {
    more_ = false;
    if (by_key_) return Lookup();
    std::vector<ConcurrencyKeyInfo> keys =
        ctx_->engine()->ListConcurrencyKeys(ctx_->tenant(), kMaxListedKeys);
    if (keys.size() >= kMaxListedKeys) {
      return Status::TooLarge("more than " + std::to_string(kMaxListedKeys - 1) +
                              " active concurrency keys; filter with key = '...'");
    }
    for (ConcurrencyKeyInfo& k : keys) {
      if (!by_kind_ || KindName(k.kind) == kind_) rows_.push_back(std::move(k));
    }
    return Status::Ok();
  }

  // key = ?: that key of the given kind, or of both kinds; idle keys are not listed.
  Status Lookup() {
    for (auto kind : {ConcurrencyLimit::Kind::kFixed, ConcurrencyLimit::Kind::kFloating}) {
      if (by_kind_ && KindName(kind) != kind_) continue;
      auto r = ctx_->engine()->GetConcurrencyKey(ctx_->tenant(), kind, key_);
      if (!r.ok()) {
        const StatusCode code = r.status().code();
        // An empty or oversized key names no key.
        if (code == StatusCode::kInvalidArgument || code == StatusCode::kTooLarge) continue;
        return r.status();
      }
      if (r->holders > 0 || r->waiters > 0) rows_.push_back(std::move(*r));
    }
    return Status::Ok();
  }

  bool by_kind_ = false;
  bool by_key_ = false;
  std::string kind_;
  std::string key_;
};

int KeysBestIndex(sqlite3_index_info* info) {
  static constexpr char kCodes[] = {kArgKind, kArgKey};
  return PlanEqualities(kCodes, 2, 1000, info);
}
std::unique_ptr<Cursor> OpenKeys(QueryContext* ctx) { return std::make_unique<KeysCursor>(ctx); }

// ---- floating_limits ------------------------------------------------------------------------

enum FloatingColumn {
  kFlKey,
  kFlCurrentMax,
  kFlDefaultMax,
  kFlRefreshIntervalMs,
  kFlLastRefreshedMs,
  kFlFailures,
  kFlNextRefreshMs,
  kFlRefreshInFlight,
  kFlHolders,
  kFlWaiters,
  kFlMetadata,
};

int64_t FloatingInt(const FloatingLimitState& f, int column) {
  switch (column) {
    case kFlCurrentMax:
      return f.current_max;
    case kFlDefaultMax:
      return f.default_max;
    case kFlRefreshIntervalMs:
      return static_cast<int64_t>(f.refresh_interval_ms);
    case kFlLastRefreshedMs:
      return f.last_refreshed_ms;
    case kFlFailures:
      return f.consecutive_failures;
    case kFlNextRefreshMs:
      return f.next_refresh_ms;
    case kFlRefreshInFlight:
      return f.refresh_in_flight ? 1 : 0;
    case kFlHolders:
      return static_cast<int64_t>(f.holders);
    default:
      return static_cast<int64_t>(f.waiters);
  }
}

// Rows of `floating_limits`: every floating key of the tenant in key order (paged), or one
// (key = ?).
class FloatingCursor : public PagedCursor<FloatingLimitState> {
 public:
  explicit FloatingCursor(QueryContext* ctx) : PagedCursor(ctx) {}

  Status Filter(int /*idx_num*/, const char* idx_str, int argc, sqlite3_value** argv) override {
    std::optional<std::string> key[1];
    const bool ok = TextArgs(idx_str, argc, argv, key, "n");
    by_key_ = key[0].has_value();
    key_ = key[0].value_or("");
    after_.clear();
    return Start(!ok, -1);
  }

  void Column(sqlite3_context* out, int column) const override {
    const FloatingLimitState& f = row();
    if (column == kFlKey) return ResultText(out, f.key);
    if (column == kFlMetadata) return ResultText(out, JsonObject(f.metadata));
    if (column > kFlKey && column < kFlMetadata) {
      return sqlite3_result_int64(out, FloatingInt(f, column));
    }
    sqlite3_result_null(out);
  }

 private:
  Status FetchPage() override {
    if (by_key_) {
      more_ = false;
      auto r = ctx_->engine()->GetFloatingLimit(ctx_->tenant(), key_);
      ctx_->AddKeysVisited(1);
      if (r.ok()) {
        rows_.push_back(std::move(*r));
        return Status::Ok();
      }
      const StatusCode code = r.status().code();
      const bool no_such_key = code == StatusCode::kNotFound ||
                               code == StatusCode::kInvalidArgument ||
                               code == StatusCode::kTooLarge;
      return no_such_key ? Status::Ok() : r.status();
    }
    auto r = ctx_->engine()->ListFloatingLimits(ctx_->tenant(), after_, kFloatingPage);
    if (!r.ok()) return r.status();
    ctx_->AddKeysVisited(r->size());
    more_ = r->size() == kFloatingPage;
    if (!r->empty()) after_ = r->back().key;
    rows_ = std::move(*r);
    return Status::Ok();
  }

  bool by_key_ = false;
  std::string key_;
  std::string after_;  // the last key listed
};

int FloatingBestIndex(sqlite3_index_info* info) {
  static constexpr char kCodes[] = {kArgKey};
  return PlanEqualities(kCodes, 1, 1000, info);
}
std::unique_ptr<Cursor> OpenFloating(QueryContext* ctx) {
  return std::make_unique<FloatingCursor>(ctx);
}

}  // namespace

const TableSpec kQueuesTable = {
    "queues",
    "CREATE TABLE x(queue TEXT, scheduled INTEGER, waiting INTEGER, running INTEGER, "
    "succeeded INTEGER, failed INTEGER, cancelled INTEGER, total INTEGER, PRIMARY KEY (queue)) "
    "WITHOUT ROWID",
    QueuesBestIndex,
    OpenQueues,
};

const TableSpec kConcurrencyKeysTable = {
    "concurrency_keys",
    "CREATE TABLE x(kind TEXT, key TEXT, max INTEGER, holders INTEGER, waiters INTEGER, "
    "PRIMARY KEY (kind, key)) WITHOUT ROWID",
    KeysBestIndex,
    OpenKeys,
};

const TableSpec kFloatingLimitsTable = {
    "floating_limits",
    "CREATE TABLE x(key TEXT, current_max INTEGER, default_max INTEGER, "
    "refresh_interval_ms INTEGER, last_refreshed_ms INTEGER, failures INTEGER, "
    "next_refresh_ms INTEGER, refresh_in_flight INTEGER, holders INTEGER, waiters INTEGER, "
    "metadata TEXT, PRIMARY KEY (key)) WITHOUT ROWID",
    FloatingBestIndex,
    OpenFloating,
};

}  // namespace sluice::query
