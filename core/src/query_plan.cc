// Pushdown for the virtual tables (see query_plan.h).
#include "query_plan.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "query_vtab.h"

namespace sluice::query {
namespace {

// One character per xFilter argument in idxStr.
constexpr char kArgId = 'i';
constexpr char kArgQueue = 'q';
constexpr char kArgStatus = 's';
constexpr char kArgCreatedGt = '>';
constexpr char kArgCreatedGe = 'G';
constexpr char kArgCreatedLt = '<';
constexpr char kArgCreatedLe = 'L';
constexpr char kArgCreatedEq = '=';
constexpr char kArgLike = 'l';
constexpr char kArgGlob = 'g';
constexpr char kArgKey = 'k';
constexpr char kArgValue = 'v';
constexpr char kArgLimit = 'n';
constexpr char kArgOffset = 'o';

// idxNum: bit 0 newest first, bits 1-2 the JobView.
constexpr int kNewestFirst = 1;
constexpr int kViewShift = 1;

constexpr int64_t kMinI64 = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxI64 = std::numeric_limits<int64_t>::max();
constexpr double kTwo63 = 9223372036854775808.0;

// Text equality can be pushed down only under the BINARY collation (byte equality).
bool IsBinary(sqlite3_index_info* info, int i) {
  const char* collation = sqlite3_vtab_collation(info, i);
  return collation == nullptr || sqlite3_stricmp(collation, "BINARY") == 0;
}

char CreatedArg(unsigned char op) {
  switch (op) {
    case SQLITE_INDEX_CONSTRAINT_GT:
      return kArgCreatedGt;
    case SQLITE_INDEX_CONSTRAINT_GE:
      return kArgCreatedGe;
    case SQLITE_INDEX_CONSTRAINT_LT:
      return kArgCreatedLt;
    case SQLITE_INDEX_CONSTRAINT_LE:
      return kArgCreatedLe;
    case SQLITE_INDEX_CONSTRAINT_EQ:
      return kArgCreatedEq;
    default:
      return 0;
  }
}

// The argument character of usable constraint i, or 0 when it cannot be pushed down.
char Classify(const JobColumns& cols, sqlite3_index_info* info, int i) {
  const auto& c = info->aConstraint[i];
  const int col = c.iColumn;
  if (col < 0) return 0;
  if (col == cols.created) return CreatedArg(c.op);
  if (col == cols.id && c.op == SQLITE_INDEX_CONSTRAINT_LIKE) return kArgLike;
  if (col == cols.id && c.op == SQLITE_INDEX_CONSTRAINT_GLOB) return kArgGlob;
  if (c.op != SQLITE_INDEX_CONSTRAINT_EQ || !IsBinary(info, i)) return 0;
  if (col == cols.id) return kArgId;
  if (col == cols.queue) return kArgQueue;
  if (col == cols.status) return kArgStatus;
  if (col == cols.key) return kArgKey;
  if (col == cols.value) return kArgValue;
  return 0;
}

// Rough share of rows a pushed-down constraint keeps (only ranks plans against each other).
double Selectivity(char arg) {
  switch (arg) {
    case kArgId:
      return 1e-6;
    case kArgCreatedEq:
      return 1e-3;
    case kArgLike:
    case kArgGlob:
      return 1e-2;
    case kArgQueue:
    case kArgValue:
      return 5e-2;
    case kArgKey:
      return 0.1;
    case kArgStatus:
      return 0.3;
    default:
      return 0.25;  // one side of a creation-time range
  }
}

// Whether the right-hand side of LIKE/GLOB constraint i is known now and is a pattern that
// id_prefix decides exactly.
bool ExactPattern(sqlite3_index_info* info, int i, bool like) {
  sqlite3_value* rhs = nullptr;
  if (sqlite3_vtab_rhs_value(info, i, &rhs) != SQLITE_OK || rhs == nullptr) return false;
  if (sqlite3_value_type(rhs) != SQLITE_TEXT) return false;
  const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(rhs));
  if (text == nullptr) return false;
  bool exact = false;
  PatternPrefix(std::string_view(text, static_cast<size_t>(sqlite3_value_bytes(rhs))), like,
                &exact);
  return exact;
}

// Passes constraint i to xFilter as the next argument, tagged `arg`.
void Use(sqlite3_index_info* info, int i, bool omit, char arg, std::string* args) {
  args->push_back(arg);
  info->aConstraintUsage[i].argvIndex = static_cast<int>(args->size());
  info->aConstraintUsage[i].omit = omit ? 1 : 0;
}

// The cheapest view with every column the statement reads. `pair_fixed`: the plan fixes a
// metadata key and value (rows of job_metadata then need no record).
JobView ChooseView(const JobColumns& cols, uint64_t used, bool pair_fixed) {
  if (cols.payload >= 0 && (used & (uint64_t{1} << cols.payload)) != 0) return JobView::kFull;
  if (cols.pair_rows && !pair_fixed) return JobView::kSummary;
  if ((used & ~cols.index_columns) != 0) return JobView::kSummary;
  return JobView::kIndex;
}

int SetIdxStr(sqlite3_index_info* info, const std::string& args) {
  info->idxStr = sqlite3_mprintf("%s", args.c_str());
  if (info->idxStr == nullptr) return SQLITE_NOMEM;
  info->needToFreeIdxStr = 1;
  return SQLITE_OK;
}

}  // namespace

int PlanJobScan(const JobColumns& cols, sqlite3_index_info* info) {
  std::string args;
  bool all_consumed = true;  // SQLite has nothing left to check on our rows
  double rows = 1e6;
  int limit = -1;
  int offset = -1;
  bool key_fixed = false;
  bool value_fixed = false;
  for (int i = 0; i < info->nConstraint; ++i) {
    const auto& c = info->aConstraint[i];
    if (c.op == SQLITE_INDEX_CONSTRAINT_LIMIT || c.op == SQLITE_INDEX_CONSTRAINT_OFFSET) {
      if (c.usable) (c.op == SQLITE_INDEX_CONSTRAINT_LIMIT ? limit : offset) = i;
      continue;
    }
    const char arg = c.usable ? Classify(cols, info, i) : 0;
    if (arg == 0) {
      all_consumed = false;
      continue;
    }
    // A LIKE/GLOB pattern that is more than a prefix is narrowed by id_prefix and then
    // checked by SQLite as well.
    const bool omit =
        (arg != kArgLike && arg != kArgGlob) || ExactPattern(info, i, arg == kArgLike);
    Use(info, i, omit, arg, &args);
    all_consumed = all_consumed && omit;
    rows *= Selectivity(arg);
    key_fixed = key_fixed || arg == kArgKey;
    value_fixed = value_fixed || arg == kArgValue;
    if (arg == kArgStatus) sqlite3_vtab_in(info, i, 1);  // a whole IN list in one xFilter
  }
  // The listing is in creation order, ties in enqueue order: it satisfies ORDER BY created_ms
  // (SQLite accepts any order among equal keys), not a longer ORDER BY.
  bool newest_first = false;
  if (info->nOrderBy == 1 && info->aOrderBy[0].iColumn == cols.created) {
    info->orderByConsumed = 1;
    newest_first = info->aOrderBy[0].desc != 0;
  }
  // LIMIT bounds our rows only when SQLite neither filters nor reorders them after us. SQLite
  // still applies LIMIT and OFFSET itself, so we produce LIMIT + OFFSET rows.
  if (limit >= 0 && all_consumed && (info->nOrderBy == 0 || info->orderByConsumed)) {
    Use(info, limit, false, kArgLimit, &args);
    if (offset >= 0) Use(info, offset, false, kArgOffset, &args);
  }
  const JobView view = ChooseView(cols, info->colUsed, key_fixed && value_fixed);
  info->idxNum = (newest_first ? kNewestFirst : 0) | (static_cast<int>(view) << kViewShift);
  const double per_row = view == JobView::kIndex ? 1 : (view == JobView::kSummary ? 2 : 4);
  info->estimatedRows = static_cast<sqlite3_int64>(std::max(1.0, rows));
  info->estimatedCost = 10 + std::max(1.0, rows) * per_row;
  return SetIdxStr(info, args);
}

int PlanEqualities(const char* codes, int ncodes, double base_rows, sqlite3_index_info* info) {
  std::string args;
  double rows = base_rows;
  for (int i = 0; i < info->nConstraint; ++i) {
    const auto& c = info->aConstraint[i];
    if (!c.usable || c.op != SQLITE_INDEX_CONSTRAINT_EQ || c.iColumn < 0 || c.iColumn >= ncodes ||
        codes[c.iColumn] == 0 || !IsBinary(info, i)) {
      continue;
    }
    Use(info, i, true, codes[c.iColumn], &args);
    rows /= 100;
  }
  info->estimatedRows = static_cast<sqlite3_int64>(std::max(1.0, rows));
  info->estimatedCost = 10 + std::max(1.0, rows);
  return SetIdxStr(info, args);
}

std::string PatternPrefix(std::string_view pattern, bool like, bool* exact) {
  size_t end = pattern.find_first_of(like ? std::string_view("%_") : std::string_view("*?["));
  if (end == std::string_view::npos) end = pattern.size();
  std::string_view literal = pattern.substr(0, end);
  *exact = pattern.substr(end) == (like ? "%" : "*");
  if (like) {
    // LIKE ignores ASCII case: only the part before the first letter is the same in every
    // match (SQLite is built without ICU: other characters are compared exactly).
    for (size_t i = 0; i < literal.size(); ++i) {
      const char ch = literal[i];
      if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
        literal = literal.substr(0, i);
        *exact = false;
        break;
      }
    }
  }
  return std::string(literal);
}

namespace {

// The constraints of one scan as they accumulate, then the request they make.
class ScanBuilder {
 public:
  ScanBuilder(const SizeLimits& limits, JobScan* scan) : limits_(limits), scan_(scan) {}

  Status Add(char arg, sqlite3_value* value);
  // Writes the filter into the scan (or marks it empty).
  void Finish();

 private:
  void Narrow(std::optional<std::string>* slot, sqlite3_value* value);
  void NarrowPrefix(sqlite3_value* value, bool like);
  Status NarrowStatus(sqlite3_value* value);
  void NarrowCreated(char arg, sqlite3_value* value);
  void NarrowCreatedReal(char arg, double d);
  void NarrowCreatedInt(char arg, int64_t i);
  void Empty() { scan_->empty = true; }

  const SizeLimits& limits_;
  JobScan* scan_;
  std::optional<std::string> id_, queue_, prefix_;
  unsigned status_mask_ = 0x3f;  // bit per JobStatus
  int64_t from_ = kMinI64;       // created_ms, inclusive
  int64_t to_ = kMaxI64;         // created_ms, inclusive
  int64_t limit_ = -1;
  int64_t offset_ = 0;
};

// Narrows a text equality; a second, different value leaves nothing.
void ScanBuilder::Narrow(std::optional<std::string>* slot, sqlite3_value* value) {
  std::string text;
  if (!TextArg(value, &text)) return Empty();
  if (slot->has_value() && **slot != text) Empty();
  *slot = std::move(text);
}

void ScanBuilder::NarrowPrefix(sqlite3_value* value, bool like) {
  std::string pattern;
  if (!TextArg(value, &pattern)) return Empty();  // LIKE NULL is never true
  bool exact = false;
  std::string prefix = PatternPrefix(pattern, like, &exact);
  if (!prefix_.has_value() || prefix.starts_with(*prefix_)) {
    prefix_ = std::move(prefix);
  } else if (!prefix_->starts_with(prefix)) {
    Empty();  // two prefixes no id can both start with
  }
}

unsigned StatusBit(sqlite3_value* value) {
  std::string text;
  if (!TextArg(value, &text)) return 0;
  for (unsigned s = 0; s < 6; ++s) {
    if (JobStatusName(static_cast<JobStatus>(s)) == text) return 1u << s;
  }
  return 0;  // not a status name: equals no row
}

Status ScanBuilder::NarrowStatus(sqlite3_value* value) {
  sqlite3_value* item = nullptr;
  int rc = sqlite3_vtab_in_first(value, &item);
  if (rc != SQLITE_OK && rc != SQLITE_DONE) {  // not an IN list: one value
    status_mask_ &= StatusBit(value);
    return Status::Ok();
  }
  unsigned mask = 0;
  for (; rc == SQLITE_OK && item != nullptr; rc = sqlite3_vtab_in_next(value, &item)) {
    mask |= StatusBit(item);
  }
  if (rc != SQLITE_OK && rc != SQLITE_DONE) {
    return Status::InvalidArgument("reading the IN list of status failed");
  }
  status_mask_ &= mask;
  return Status::Ok();
}

void ScanBuilder::NarrowCreatedInt(char arg, int64_t i) {
  switch (arg) {
    case kArgCreatedGt:
      if (i == kMaxI64) return Empty();
      from_ = std::max(from_, i + 1);
      return;
    case kArgCreatedGe:
      from_ = std::max(from_, i);
      return;
    case kArgCreatedLt:
      if (i == kMinI64) return Empty();
      to_ = std::min(to_, i - 1);
      return;
    case kArgCreatedLe:
      to_ = std::min(to_, i);
      return;
    default:  // =
      from_ = std::max(from_, i);
      to_ = std::min(to_, i);
  }
}

void ScanBuilder::NarrowCreatedReal(char arg, double d) {
  const bool below = arg == kArgCreatedLt || arg == kArgCreatedLe;
  if (d >= kTwo63) {  // above every integer
    if (!below) Empty();
    return;
  }
  if (d < -kTwo63) {  // below every integer
    if (below) Empty();
    return;
  }
  const auto floor = static_cast<int64_t>(std::floor(d));
  const auto ceil = static_cast<int64_t>(std::ceil(d));
  switch (arg) {
    case kArgCreatedGt:
      return NarrowCreatedInt(kArgCreatedGe, floor == kMaxI64 ? kMaxI64 : floor + 1);
    case kArgCreatedGe:
      return NarrowCreatedInt(kArgCreatedGe, ceil);
    case kArgCreatedLt:
      return NarrowCreatedInt(kArgCreatedLe, ceil == kMinI64 ? kMinI64 : ceil - 1);
    case kArgCreatedLe:
      return NarrowCreatedInt(kArgCreatedLe, floor);
    default:
      if (floor != ceil) return Empty();  // an integer never equals 1.5
      return NarrowCreatedInt(kArgCreatedEq, floor);
  }
}

// created_ms <op> value, with SQLite's rules: numeric affinity first; then integers sort
// before text and blobs, and NULL compares to nothing.
void ScanBuilder::NarrowCreated(char arg, sqlite3_value* value) {
  switch (sqlite3_value_numeric_type(value)) {
    case SQLITE_INTEGER:
      return NarrowCreatedInt(arg, sqlite3_value_int64(value));
    case SQLITE_FLOAT:
      return NarrowCreatedReal(arg, sqlite3_value_double(value));
    case SQLITE_NULL:
      return Empty();
    default:  // text or blob: every integer is smaller
      if (arg != kArgCreatedLt && arg != kArgCreatedLe) Empty();
  }
}

Status ScanBuilder::Add(char arg, sqlite3_value* value) {
  switch (arg) {
    case kArgId:
      Narrow(&id_, value);
      return Status::Ok();
    case kArgQueue:
      Narrow(&queue_, value);
      return Status::Ok();
    case kArgKey:
      Narrow(&scan_->key, value);
      return Status::Ok();
    case kArgValue:
      Narrow(&scan_->value, value);
      return Status::Ok();
    case kArgStatus:
      return NarrowStatus(value);
    case kArgLike:
    case kArgGlob:
      NarrowPrefix(value, arg == kArgLike);
      return Status::Ok();
    case kArgLimit:
      limit_ = sqlite3_value_int64(value);
      return Status::Ok();
    case kArgOffset:
      offset_ = std::max<int64_t>(0, sqlite3_value_int64(value));
      return Status::Ok();
    case kArgCreatedGt:
    case kArgCreatedGe:
    case kArgCreatedLt:
    case kArgCreatedLe:
    case kArgCreatedEq:
      NarrowCreated(arg, value);
      return Status::Ok();
    default:
      return Status::InvalidArgument(std::string("unknown query plan argument '") + arg + "'");
  }
}

void ScanBuilder::Finish() {
  JobFilter& f = scan_->request.filter;
  // Values no job can have: ids, queues and metadata keys are non-empty and capped.
  if (id_ && (id_->empty() || id_->size() > limits_.max_id_bytes)) Empty();
  if (queue_ && (queue_->empty() || queue_->size() > limits_.max_queue_bytes)) Empty();
  if (prefix_ && prefix_->size() > limits_.max_id_bytes) Empty();
  const auto& key = scan_->key;
  const auto& value = scan_->value;
  if (key && (key->empty() || key->size() > limits_.max_metadata_key_bytes)) Empty();
  if (value && value->size() > limits_.max_metadata_value_bytes) Empty();
  // Jobs are created at or after the epoch; to_ is inclusive here, exclusive in the filter.
  from_ = std::max<int64_t>(from_, 0);
  if (status_mask_ == 0 || to_ < from_) Empty();
  if (scan_->empty) return;
  if (id_) f.id = *id_;
  if (queue_) f.queue = *queue_;
  if (prefix_) f.id_prefix = *prefix_;
  if (key && value) f.metadata.emplace_back(*key, *value);
  if (status_mask_ != 0x3f) {
    for (unsigned s = 0; s < 6; ++s) {
      if ((status_mask_ & (1u << s)) != 0) f.statuses.push_back(static_cast<JobStatus>(s));
    }
  }
  f.created_from_ms = from_;
  f.created_to_ms = to_ == kMaxI64 ? kMaxI64 : to_ + 1;
  if (limit_ >= 0) {
    scan_->max_rows = limit_ > kMaxI64 - offset_ ? kMaxI64 : limit_ + offset_;
    if (scan_->max_rows == 0) Empty();
  }
}

}  // namespace

Status DecodeJobScan(int idx_num, const char* idx_str, int argc, sqlite3_value** argv,
                     const SizeLimits& limits, JobScan* out) {
  *out = JobScan{};
  out->request.newest_first = (idx_num & kNewestFirst) != 0;
  out->request.view = static_cast<JobView>((idx_num >> kViewShift) & 3);
  const std::string_view args = idx_str == nullptr ? "" : idx_str;
  if (args.size() != static_cast<size_t>(argc)) {
    return Status::InvalidArgument("query plan and arguments disagree");
  }
  ScanBuilder builder(limits, out);
  for (int i = 0; i < argc; ++i) {
    Status s = builder.Add(args[static_cast<size_t>(i)], argv[i]);
    if (!s.ok()) return s;
  }
  builder.Finish();
  return Status::Ok();
}

}  // namespace sluice::query
