// The job-backed tables: jobs and job_metadata page through Engine::ListJobs with the pushed
// down filter (query_plan.h); attempts reads jobs with Engine::GetJob(include_attempts).
#include <string>
#include <utility>
#include <vector>

#include "query_plan.h"
#include "query_vtab.h"

namespace sluice::query {
namespace {

// Jobs per ListJobs page: pages start small and double up to a large page, so that a scan
// SQLite ends early (a LIMIT it could not hand down) reads little more than it uses, and a long
// scan costs few calls. Pages with payloads (up to max_payload_bytes each) stay small.
constexpr uint32_t kFirstPageJobs = 32;
constexpr uint32_t kPageJobs = 1000;
constexpr uint32_t kFullPageJobs = 32;

// Pages through ListJobs for one scan of the context's tenant.
struct JobPager {
  ListJobsRequest request;
  uint32_t page = 0;  // size of the last page asked for

  // One ListJobs call: at most `wanted` jobs when >= 0. Advances the cursor, counts the keys the
  // engine visited; *more is false after the last page.
  Status Next(QueryContext* ctx, int64_t wanted, std::vector<Job>* jobs, bool* more) {
    const uint32_t cap = std::min(request.view == JobView::kFull ? kFullPageJobs : kPageJobs,
                                  ctx->limits().max_list_page);
    page = std::min(page == 0 ? kFirstPageJobs : page * 2, cap);
    uint32_t n = page;
    if (wanted >= 0 && wanted < n) n = static_cast<uint32_t>(wanted);
    request.limit = std::max<uint32_t>(n, 1);
    request.filter.tenant = ctx->tenant();
    auto r = ctx->engine()->ListJobs(request);
    if (!r.ok()) return r.status();
    ctx->AddKeysVisited(r->keys_visited);
    *jobs = std::move(r->jobs);
    request.cursor = std::move(r->next_cursor);
    *more = !request.cursor.empty();
    return Status::Ok();
  }
};

void ResultInt(sqlite3_context* out, int64_t v) { sqlite3_result_int64(out, v); }

// An integer that is 0 when it does not apply (finished_ms of a running job): NULL then.
void ResultIntOrNull(sqlite3_context* out, int64_t v) {
  if (v == 0) {
    sqlite3_result_null(out);
  } else {
    sqlite3_result_int64(out, v);
  }
}

// [{"kind":"fixed","key":"k","max":2}, {"kind":"floating","key":"f","default_max":4,
//   "refresh_interval_ms":1000,"metadata":{...}}]
std::string LimitsJson(const std::vector<ConcurrencyLimit>& limits) {
  std::string out = "[";
  for (const ConcurrencyLimit& l : limits) {
    if (out.size() > 1) out.push_back(',');
    if (l.kind == ConcurrencyLimit::Kind::kFixed) {
      out += "{\"kind\":\"fixed\",\"key\":" + JsonString(l.key) +
             ",\"max\":" + std::to_string(l.max) + "}";
    } else {
      out += "{\"kind\":\"floating\",\"key\":" + JsonString(l.key) +
             ",\"default_max\":" + std::to_string(l.max) +
             ",\"refresh_interval_ms\":" + std::to_string(l.refresh_interval_ms) +
             ",\"metadata\":" + JsonObject(l.metadata) + "}";
    }
  }
  out.push_back(']');
  return out;
}

// ---- jobs -----------------------------------------------------------------------------------

enum JobsColumn {
  kJobId,
  kJobQueue,
  kJobStatus,
  kJobPriority,
  kJobCreatedMs,
  kJobUpdatedMs,
  kJobFinishedMs,
  kJobStartAtMs,
  kJobNextRunMs,
  kJobAttempts,
  kJobRetriesUsed,
  kJobMaxRetries,
  kJobLeaseMs,
  kJobCancelRequested,
  kJobMetadata,
  kJobLimits,
  kJobPayload,
};

constexpr uint64_t Bit(int column) { return uint64_t{1} << column; }

constexpr JobColumns kJobsColumns = {
    .id = kJobId,
    .queue = kJobQueue,
    .status = kJobStatus,
    .created = kJobCreatedMs,
    .payload = kJobPayload,
    .index_columns = Bit(kJobId) | Bit(kJobQueue) | Bit(kJobStatus) | Bit(kJobCreatedMs),
};

void JobColumn(const Job& job, int column, sqlite3_context* out) {
  switch (column) {
    case kJobId:
      return ResultText(out, job.id);
    case kJobQueue:
      return ResultText(out, job.queue);
    case kJobStatus:
      return ResultText(out, JobStatusName(job.status));
    case kJobPriority:
      return ResultInt(out, job.priority);
    case kJobCreatedMs:
      return ResultInt(out, job.created_ms);
    case kJobUpdatedMs:
      return ResultInt(out, job.updated_ms);
    case kJobFinishedMs:
      return ResultIntOrNull(out, IsTerminal(job.status) ? job.finished_ms : 0);
    case kJobStartAtMs:
      return ResultInt(out, job.start_at_ms);
    case kJobNextRunMs:
      return ResultIntOrNull(out, job.next_run_ms);
    case kJobAttempts:
      return ResultInt(out, job.attempt_count);
    case kJobRetriesUsed:
      return ResultInt(out, job.retries_used);
    case kJobMaxRetries:
      return ResultInt(out, job.retry.max_retries);
    case kJobLeaseMs:
      return ResultInt(out, static_cast<int64_t>(job.lease_ms));
    case kJobCancelRequested:
      return ResultInt(out, job.cancel_requested ? 1 : 0);
    case kJobMetadata:
      return ResultText(out, JsonObject(job.metadata));
    case kJobLimits:
      return ResultText(out, LimitsJson(job.limits));
    case kJobPayload:
      return ResultBlob(out, job.payload);
    default:
      sqlite3_result_null(out);
  }
}

// Rows of `jobs`: one per listed job.
class JobsCursor : public PagedCursor<Job> {
 public:
  explicit JobsCursor(QueryContext* ctx) : PagedCursor(ctx) {}

  Status Filter(int idx_num, const char* idx_str, int argc, sqlite3_value** argv) override {
    JobScan scan;
    Status s = DecodeJobScan(idx_num, idx_str, argc, argv, ctx_->limits(), &scan);
    if (!s.ok()) return s;
    pager_ = JobPager{std::move(scan.request)};
    return Start(scan.empty, scan.max_rows);
  }
  void Column(sqlite3_context* out, int column) const override { JobColumn(row(), column, out); }

 private:
  Status FetchPage() override { return pager_.Next(ctx_, RowsWanted(), &rows_, &more_); }

  JobPager pager_;
};

int JobsBestIndex(sqlite3_index_info* info) { return PlanJobScan(kJobsColumns, info); }
std::unique_ptr<Cursor> OpenJobs(QueryContext* ctx) { return std::make_unique<JobsCursor>(ctx); }

// ---- job_metadata ---------------------------------------------------------------------------

enum MetadataColumn { kMetaJobId, kMetaKey, kMetaValue, kMetaQueue, kMetaStatus, kMetaCreatedMs };

constexpr JobColumns kMetadataColumns = {
    .id = kMetaJobId,
    .queue = kMetaQueue,
    .status = kMetaStatus,
    .created = kMetaCreatedMs,
    .key = kMetaKey,
    .value = kMetaValue,
    .index_columns = Bit(kMetaJobId) | Bit(kMetaKey) | Bit(kMetaValue) | Bit(kMetaQueue) |
                     Bit(kMetaStatus) | Bit(kMetaCreatedMs),
    .pair_rows = true,
};

// One metadata pair of a job of the current page.
struct MetadataRow {
  const Job* job;
  const std::string* key;
  const std::string* value;
};

// Rows of `job_metadata`: one per metadata pair of each listed job (only the pairs with the
// pushed-down key and value when there are).
class MetadataCursor : public PagedCursor<MetadataRow> {
 public:
  explicit MetadataCursor(QueryContext* ctx) : PagedCursor(ctx) {}

  Status Filter(int idx_num, const char* idx_str, int argc, sqlite3_value** argv) override {
    Status s = DecodeJobScan(idx_num, idx_str, argc, argv, ctx_->limits(), &scan_);
    if (!s.ok()) return s;
    pager_ = JobPager{std::move(scan_.request)};
    return Start(scan_.empty, scan_.max_rows);
  }

  void Column(sqlite3_context* out, int column) const override {
    const MetadataRow& r = row();
    switch (column) {
      case kMetaKey:
        return ResultText(out, *r.key);
      case kMetaValue:
        return ResultText(out, *r.value);
      case kMetaJobId:
        return JobColumn(*r.job, kJobId, out);
      case kMetaQueue:
        return JobColumn(*r.job, kJobQueue, out);
      case kMetaStatus:
        return JobColumn(*r.job, kJobStatus, out);
      case kMetaCreatedMs:
        return JobColumn(*r.job, kJobCreatedMs, out);
      default:
        sqlite3_result_null(out);
    }
  }

 private:
  Status FetchPage() override {
    Status s = pager_.Next(ctx_, RowsWanted(), &jobs_, &more_);
    if (!s.ok()) return s;
    if (pager_.request.view == JobView::kIndex) {
      // The plan fixed key and value: each listed job has exactly that pair (no record read).
      for (const Job& job : jobs_) rows_.push_back({&job, &*scan_.key, &*scan_.value});
      return Status::Ok();
    }
    for (const Job& job : jobs_) {
      for (const auto& [key, value] : job.metadata) {
        if (scan_.key && key != *scan_.key) continue;
        if (scan_.value && value != *scan_.value) continue;
        rows_.push_back({&job, &key, &value});
      }
    }
    return Status::Ok();
  }

  JobScan scan_;  // its key and value filter the pairs
  JobPager pager_;
  std::vector<Job> jobs_;  // the page rows_ points into
};

int MetadataBestIndex(sqlite3_index_info* info) { return PlanJobScan(kMetadataColumns, info); }
std::unique_ptr<Cursor> OpenMetadata(QueryContext* ctx) {
  return std::make_unique<MetadataCursor>(ctx);
}

// ---- attempts -------------------------------------------------------------------------------

enum AttemptsColumn {
  kAttJobId,
  kAttNumber,
  kAttWorkerId,
  kAttStatus,
  kAttStartedMs,
  kAttFinishedMs,
  kAttResult,
  kAttErrorCode,
  kAttErrorMessage,
  kAttErrorData,
};

// job_id = ? reads one job; anything else reads every job of the tenant.
int AttemptsBestIndex(sqlite3_index_info* info) {
  static constexpr char kCodes[] = {'i'};
  const int rc = PlanEqualities(kCodes, 1, 1e7, info);
  if (rc == SQLITE_OK && info->idxStr != nullptr && info->idxStr[0] != '\0') {
    info->estimatedRows = 4;  // a job's attempts
    info->estimatedCost = 10;
  }
  return rc;
}

// Rows of `attempts`: the attempt history of one job (job_id = ?) or of every job of the
// tenant, one job at a time (each page is one job's attempts).
class AttemptsCursor : public PagedCursor<Attempt> {
 public:
  explicit AttemptsCursor(QueryContext* ctx) : PagedCursor(ctx) {}

  Status Filter(int /*idx_num*/, const char* idx_str, int argc, sqlite3_value** argv) override {
    ids_.clear();
    next_id_ = 0;
    listing_ = !(idx_str != nullptr && idx_str[0] == 'i' && argc == 1);
    list_more_ = listing_;
    lister_ = JobPager{};
    lister_.request.view = JobView::kIndex;
    bool empty = false;
    if (!listing_) {
      std::string id;
      empty = !TextArg(argv[0], &id);
      ids_.push_back(std::move(id));
    }
    return Start(empty, -1);
  }

  void Column(sqlite3_context* out, int column) const override {
    const Attempt& a = row();
    const bool failed = !a.error.code.empty();
    switch (column) {
      case kAttJobId:
        return ResultText(out, job_id_);
      case kAttNumber:
        return ResultInt(out, a.number);
      case kAttWorkerId:
        return ResultText(out, a.worker_id);
      case kAttStatus:
        return ResultText(out, AttemptStatusName(a.status));
      case kAttStartedMs:
        return ResultInt(out, a.started_ms);
      case kAttFinishedMs:
        return ResultIntOrNull(out, a.finished_ms);
      case kAttResult:
        if (a.status != AttemptStatus::kSucceeded) return sqlite3_result_null(out);
        return ResultBlob(out, a.result);
      case kAttErrorCode:
        return failed ? ResultText(out, a.error.code) : sqlite3_result_null(out);
      case kAttErrorMessage:
        return failed ? ResultText(out, a.error.message) : sqlite3_result_null(out);
      case kAttErrorData:
        return failed ? ResultBlob(out, a.error.data) : sqlite3_result_null(out);
      default:
        sqlite3_result_null(out);
    }
  }

 private:
  // Loads the attempts of the next job (fetching the next page of ids when needed).
  Status FetchPage() override {
    if (next_id_ >= ids_.size()) {
      if (!list_more_) {
        more_ = false;
        return Status::Ok();
      }
      std::vector<Job> page;
      Status s = lister_.Next(ctx_, -1, &page, &list_more_);
      if (!s.ok()) return s;
      ids_.clear();
      next_id_ = 0;
      for (Job& job : page) ids_.push_back(std::move(job.id));
      return Status::Ok();  // rows_ stays empty: the next call reads the first job
    }
    job_id_ = ids_[next_id_++];
    auto r = ctx_->engine()->GetJob(ctx_->tenant(), job_id_, /*include_attempts=*/true);
    ctx_->AddKeysVisited(1);
    if (r.ok()) {
      rows_ = std::move(r->attempts);
      return Status::Ok();
    }
    // A job deleted since it was listed, or an id no job can have: no attempts.
    const StatusCode code = r.status().code();
    if (code == StatusCode::kNotFound || code == StatusCode::kInvalidArgument ||
        code == StatusCode::kTooLarge) {
      return Status::Ok();
    }
    return r.status();
  }

  bool listing_ = false;
  bool list_more_ = false;
  JobPager lister_;  // the tenant's job ids, when not one job
  std::vector<std::string> ids_;
  size_t next_id_ = 0;
  std::string job_id_;  // whose attempts rows_ holds
};

std::unique_ptr<Cursor> OpenAttempts(QueryContext* ctx) {
  return std::make_unique<AttemptsCursor>(ctx);
}

}  // namespace

const TableSpec kJobsTable = {
    "jobs",
    "CREATE TABLE x(id TEXT, queue TEXT, status TEXT, priority INTEGER, created_ms INTEGER, "
    "updated_ms INTEGER, finished_ms INTEGER, start_at_ms INTEGER, next_run_ms INTEGER, "
    "attempts INTEGER, retries_used INTEGER, max_retries INTEGER, lease_ms INTEGER, "
    "cancel_requested INTEGER, metadata TEXT, limits TEXT, payload BLOB, PRIMARY KEY (id)) "
    "WITHOUT ROWID",
    JobsBestIndex,
    OpenJobs,
};

const TableSpec kJobMetadataTable = {
    "job_metadata",
    "CREATE TABLE x(job_id TEXT, key TEXT, value TEXT, queue TEXT, status TEXT, "
    "created_ms INTEGER, PRIMARY KEY (job_id, key)) WITHOUT ROWID",
    MetadataBestIndex,
    OpenMetadata,
};

const TableSpec kAttemptsTable = {
    "attempts",
    "CREATE TABLE x(job_id TEXT, number INTEGER, worker_id TEXT, status TEXT, "
    "started_ms INTEGER, finished_ms INTEGER, result BLOB, error_code TEXT, "
    "error_message TEXT, error_data BLOB, PRIMARY KEY (job_id, number)) WITHOUT ROWID",
    AttemptsBestIndex,
    OpenAttempts,
};

}  // namespace sluice::query
