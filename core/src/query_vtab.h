// The plumbing shared by Sluice's SQLite virtual tables: the per-query context (tenant, bounds,
// first error, cost), the C++ cursor interface, and registration of the tables on a connection.
// Each table lives in its own file (query_jobs.cc, query_tables.cc); docs/query.md lists them.
#ifndef SLUICE_CORE_SRC_QUERY_VTAB_H_
#define SLUICE_CORE_SRC_QUERY_VTAB_H_

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/engine.h"
#include "sluice/options.h"

namespace sluice::query {

// State of one Run, shared by every table and cursor of its connection. Lives on Run's stack
// and outlives the connection. Used by the querying thread only.
class QueryContext {
 public:
  // Starts the clock: the deadline is now + options.timeout_ms. `options` must outlive this.
  QueryContext(Engine* engine, std::string tenant, const SizeLimits& limits,
               const QueryOptions& options);

  // The engine the tables read through its public API (not owned).
  Engine* engine() const { return engine_; }
  // The one tenant every table reads; fixed by the caller, never by the SQL.
  const std::string& tenant() const { return tenant_; }
  // The engine's size limits: values beyond them name nothing, so scans return no rows.
  const SizeLimits& limits() const { return limits_; }

  // kTimeout once the deadline has passed, kCancelled once options.cancelled() says so, else
  // OK. Called by the progress handler and between pages of every listing.
  Status CheckBounds() const;

  // Records the first error of the query (later ones are consequences of it) and returns it.
  const Status& Fail(Status status);
  // The first error recorded (OK when none).
  const Status& error() const { return error_; }

  // Adds what an engine call read (ListJobsResult::keys_visited, one per record read).
  void AddKeysVisited(uint64_t n) { keys_visited_ += n; }
  // The total so far (QueryResult::keys_visited).
  uint64_t keys_visited() const { return keys_visited_; }

 private:
  Engine* engine_;
  std::string tenant_;
  SizeLimits limits_;
  uint32_t timeout_ms_;
  std::chrono::steady_clock::time_point deadline_;
  const std::function<bool()>* cancelled_;  // may be empty; owned by the caller's options
  Status error_;
  uint64_t keys_visited_ = 0;
};

// The C++ side of one open cursor. SQLite calls Filter once per scan (possibly several times
// per cursor), then Next until Eof. Errors are Statuses; the glue turns them into SQLite
// errors and records them in the QueryContext so that Run returns the engine's code.
class Cursor {
 public:
  virtual ~Cursor() = default;
  // Starts a scan with the plan BestIndex chose (idx_num, idx_str) and its argument values.
  virtual Status Filter(int idx_num, const char* idx_str, int argc, sqlite3_value** argv) = 0;
  // Moves to the next row (fetching the next page when the current one is used up).
  virtual Status Next() = 0;
  // Whether the scan has no current row.
  virtual bool Eof() const = 0;
  // Sets the value of `column` of the current row.
  virtual void Column(sqlite3_context* out, int column) const = 0;
};

// A cursor whose rows arrive in pages (ListJobs pages, one job's attempts, ...). Subclasses
// implement FetchPage; this class walks the rows, fetches the next page when one is used up
// (checking the query's deadline and cancellation before each fetch, so that no scan outlives
// its bounds), skips empty pages, and stops after max_rows rows when a LIMIT was pushed down.
template <typename Row>
class PagedCursor : public Cursor {
 public:
  explicit PagedCursor(QueryContext* ctx) : ctx_(ctx) {}

  Status Next() override {
    ++pos_;
    ++emitted_;
    if (max_rows_ >= 0 && emitted_ >= max_rows_) {
      Stop();
      return Status::Ok();
    }
    return Fill();
  }
  bool Eof() const override { return pos_ >= rows_.size(); }

 protected:
  // Replaces rows_ with the next page (possibly empty); clears more_ after the last page.
  virtual Status FetchPage() = 0;

  // Starts a scan; `empty` scans end at once, `max_rows` >= 0 caps the rows produced.
  Status Start(bool empty, int64_t max_rows) {
    rows_.clear();
    pos_ = 0;
    emitted_ = 0;
    max_rows_ = max_rows;
    more_ = !empty;
    return Fill();
  }
  // Ends the scan.
  void Stop() {
    rows_.clear();
    pos_ = 0;
    more_ = false;
  }
  // Rows still wanted, or -1 when there is no cap (for sizing pages).
  int64_t RowsWanted() const { return max_rows_ < 0 ? -1 : max_rows_ - emitted_; }
  const Row& row() const { return rows_[pos_]; }

  QueryContext* ctx_;
  std::vector<Row> rows_;
  bool more_ = false;

 private:
  // Fetches pages until there is a row or the scan is over.
  Status Fill() {
    while (pos_ >= rows_.size() && more_) {
      Status s = ctx_->CheckBounds();
      if (s.ok()) {
        rows_.clear();
        pos_ = 0;
        s = FetchPage();
      }
      if (!s.ok()) {
        Stop();
        return s;
      }
    }
    return Status::Ok();
  }

  size_t pos_ = 0;
  int64_t emitted_ = 0;
  int64_t max_rows_ = -1;
};

// One table: its name, its CREATE TABLE text and how it plans and opens scans.
struct TableSpec {
  const char* name;    // the table's name in SQL
  const char* schema;  // "CREATE TABLE x(...)" as given to sqlite3_declare_vtab
  // xBestIndex: fills the outputs of `info`; returns SQLITE_OK or SQLITE_CONSTRAINT.
  int (*best_index)(sqlite3_index_info* info);
  // A new cursor over the context's tenant.
  std::unique_ptr<Cursor> (*open)(QueryContext* ctx);
};

// The tables of query_jobs.cc: jobs, job_metadata, attempts.
extern const TableSpec kJobsTable;
extern const TableSpec kJobMetadataTable;
extern const TableSpec kAttemptsTable;
// The tables of query_tables.cc: queues, concurrency_keys, floating_limits.
extern const TableSpec kQueuesTable;
extern const TableSpec kConcurrencyKeysTable;
extern const TableSpec kFloatingLimitsTable;

// Registers a module per table and creates every table in the connection's main schema.
// `ctx` must outlive `db`. kInvalidArgument (with SQLite's message) when SQLite refuses.
Status CreateTables(sqlite3* db, QueryContext* ctx);

// ---- Helpers for the tables' cursors ----------------------------------------------------------

// Sets a text or blob result (SQLite copies the bytes).
void ResultText(sqlite3_context* out, std::string_view text);
void ResultBlob(sqlite3_context* out, std::string_view bytes);

// The value of a TEXT column constraint as SQL would compare it (numbers compare as their
// text). False for NULL and BLOB values, which equal no text.
bool TextArg(sqlite3_value* value, std::string* out);

// JSON of a string map: {"k":"v",...} in key order.
std::string JsonObject(const std::map<std::string, std::string>& map);
// A JSON string literal of `s` (quotes and escapes added).
std::string JsonString(std::string_view s);

}  // namespace sluice::query

#endif  // SLUICE_CORE_SRC_QUERY_VTAB_H_
