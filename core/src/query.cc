// SQL over the engine (see query.h): each call opens a fresh in-memory SQLite connection that
// can do nothing but read the tenant's virtual tables (query_vtab.h), runs one statement under
// the caller's deadline, caps and cancellation, and copies the rows out.
#include "query.h"

#include <sqlite3.h>

#include <algorithm>
#include <climits>
#include <string>
#include <utility>
#include <vector>

#include "query_vtab.h"
#include "validate.h"

namespace sluice::query {
namespace {

// SQLite's LIMIT_LENGTH (largest string or blob) is at least this, so that payloads and results
// can be read; a cell larger than max_result_bytes still fails the query with kTooLarge.
constexpr int64_t kMinValueBytes = 16 << 20;
// SQLite's compiled-in ceiling for LIMIT_LENGTH and LIMIT_SQL_LENGTH.
constexpr int64_t kMaxSqliteLength = 1'000'000'000;
// VM steps between two checks of the deadline and the cancellation callback.
constexpr int kProgressSteps = 1000;

// What the authorizer saw: the first refusal (for the error message), and whether the statement
// selects at all (REINDEX or ANALYZE with nothing to do ask for no permission, yet are not
// queries).
struct AuthState {
  std::string denied;
  bool selects = false;
};

const char* ActionName(int action) {
  switch (action) {
    case SQLITE_INSERT:
      return "INSERT";
    case SQLITE_UPDATE:
      return "UPDATE";
    case SQLITE_DELETE:
      return "DELETE";
    case SQLITE_PRAGMA:
      return "PRAGMA";
    case SQLITE_ATTACH:
      return "ATTACH";
    case SQLITE_DETACH:
      return "DETACH";
    case SQLITE_TRANSACTION:
      return "a transaction";
    case SQLITE_SAVEPOINT:
      return "SAVEPOINT";
    case SQLITE_FUNCTION:
      return "the function";
    default:
      return "schema changes";
  }
}

// Functions a read-only query must not call even so: Debian's SQLite enables the two-argument
// fts3_tokenizer (it takes a raw pointer), and extensions are never loaded.
bool IsForbiddenFunction(const char* name) {
  return name != nullptr && (sqlite3_stricmp(name, "fts3_tokenizer") == 0 ||
                             sqlite3_stricmp(name, "load_extension") == 0);
}

// Allows reading and computing, nothing else: no writes, DDL, PRAGMA, ATTACH or transactions.
int Authorize(void* arg, int action, const char* /*arg1*/, const char* arg2, const char* /*db*/,
              const char* /*trigger*/) {
  auto* auth = static_cast<AuthState*>(arg);
  switch (action) {
    case SQLITE_SELECT:
      auth->selects = true;
      return SQLITE_OK;
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
      return SQLITE_OK;
    case SQLITE_FUNCTION:
      if (!IsForbiddenFunction(arg2)) return SQLITE_OK;
      break;
    default:
      break;
  }
  if (auth->denied.empty()) {
    auth->denied = ActionName(action);
    if (action == SQLITE_FUNCTION) auth->denied += std::string(" ") + arg2;
  }
  return SQLITE_DENY;
}

// Checks the deadline and the cancellation callback every kProgressSteps VM steps.
int OnProgress(void* arg) {
  auto* ctx = static_cast<QueryContext*>(arg);
  Status s = ctx->CheckBounds();
  if (s.ok()) return 0;
  ctx->Fail(std::move(s));
  return 1;  // interrupts the statement
}

// Owns one connection and its statement.
class Connection {
 public:
  Connection() = default;
  ~Connection() {
    sqlite3_finalize(stmt_);
    sqlite3_close(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Opens the in-memory database, locks it down and creates the tables.
  Status Open(QueryContext* ctx, const QueryOptions& options);
  // Prepares `sql` as the connection's one statement.
  Status Prepare(std::string_view sql);
  // Steps the statement to its end, copying rows into *out within the caps.
  Status Collect(const QueryOptions& options, QueryResult* out);

 private:
  void LockDown(const QueryOptions& options);
  Status StepError(int rc) const;

  QueryContext* ctx_ = nullptr;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  AuthState auth_;
};

// Connection-level defences that do not depend on the tables existing.
void Connection::LockDown(const QueryOptions& options) {
  sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_VIEW, 0, nullptr);
  // "failed" is an identifier, not a string: a typo fails instead of comparing to text.
  sqlite3_db_config(db_, SQLITE_DBCONFIG_DQS_DML, 0, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_DQS_DDL, 0, nullptr);
  const SizeLimits& limits = ctx_->limits();
  const int64_t value_bytes = std::min(
      kMaxSqliteLength,
      std::max(
          {kMinValueBytes,
           static_cast<int64_t>(std::min<uint64_t>(options.max_result_bytes, kMaxSqliteLength)),
           static_cast<int64_t>(std::min<uint64_t>(limits.max_payload_bytes, kMaxSqliteLength))}));
  sqlite3_limit(db_, SQLITE_LIMIT_LENGTH, static_cast<int>(value_bytes));
  sqlite3_limit(db_, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(db_, SQLITE_LIMIT_WORKER_THREADS, 0);
}

Status Connection::Open(QueryContext* ctx, const QueryOptions& options) {
  ctx_ = ctx;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_MEMORY |
                    SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE;
  if (sqlite3_open_v2(":memory:", &db_, flags, nullptr) != SQLITE_OK) {
    return Status::TooLarge(std::string("cannot open the query database: ") +
                            (db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory"));
  }
  sqlite3_enable_load_extension(db_, 0);
  LockDown(options);
  Status s = CreateTables(db_, ctx);
  if (!s.ok()) return s;
  // From here on the connection only reads: the tables exist before the authorizer is on.
  const int64_t sql_bytes = std::min<int64_t>(ctx->limits().max_query_bytes, kMaxSqliteLength);
  sqlite3_limit(db_, SQLITE_LIMIT_SQL_LENGTH, static_cast<int>(sql_bytes));
  sqlite3_set_authorizer(db_, Authorize, &auth_);
  sqlite3_progress_handler(db_, kProgressSteps, OnProgress, ctx);
  return Status::Ok();
}

// Whether the text after the first statement holds only separators and comments.
bool OnlySeparators(std::string_view rest) {
  size_t i = 0;
  while (i < rest.size()) {
    const char c = rest[i];
    if (c == ';' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      ++i;
    } else if (rest.substr(i, 2) == "--") {
      const size_t end = rest.find('\n', i);
      i = end == std::string_view::npos ? rest.size() : end + 1;
    } else if (rest.substr(i, 2) == "/*") {
      const size_t end = rest.find("*/", i + 2);
      i = end == std::string_view::npos ? rest.size() : end + 2;
    } else {
      return false;
    }
  }
  return true;
}

Status Connection::Prepare(std::string_view sql) {
  const char* tail = nullptr;
  const int rc =
      sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), 0, &stmt_, &tail);
  if (!ctx_->error().ok()) return ctx_->error();
  if (rc != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db_);
    if (!auth_.denied.empty()) {
      msg += " (a query may only read: " + auth_.denied + " is not allowed)";
    }
    return Status::InvalidArgument(std::move(msg));
  }
  if (stmt_ == nullptr) return Status::InvalidArgument("the query has no statement");
  const size_t used = tail == nullptr ? sql.size() : static_cast<size_t>(tail - sql.data());
  if (!OnlySeparators(sql.substr(used))) {
    return Status::InvalidArgument("a query is exactly one statement; found more after: " +
                                   std::string(sql.substr(0, std::min<size_t>(used, 200))));
  }
  if (sqlite3_stmt_readonly(stmt_) == 0 || !auth_.selects) {
    return Status::InvalidArgument("a query is one SELECT statement; this one is not");
  }
  return Status::Ok();
}

Status Connection::StepError(int rc) const {
  if (!ctx_->error().ok()) return ctx_->error();  // the engine's code, a timeout, a cancel
  const std::string msg = sqlite3_errmsg(db_);
  switch (rc & 0xff) {
    case SQLITE_TOOBIG:
      return Status::TooLarge("a value exceeds the query's size limit: " + msg);
    case SQLITE_NOMEM:
      return Status::TooLarge("the query ran out of memory");
    case SQLITE_INTERRUPT:
      return Status::Cancelled("the query was interrupted");
    default:
      return Status::InvalidArgument(msg);
  }
}

// Copies one cell; returns its size for max_result_bytes (8 for numbers, 0 for NULL).
uint64_t ReadCell(sqlite3_stmt* stmt, int i, QueryValue* v) {
  switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
      v->type = QueryValue::Type::kInteger;
      v->integer = sqlite3_column_int64(stmt, i);
      return 8;
    case SQLITE_FLOAT:
      v->type = QueryValue::Type::kReal;
      v->real = sqlite3_column_double(stmt, i);
      return 8;
    case SQLITE_TEXT: {
      v->type = QueryValue::Type::kText;
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
      if (p != nullptr) v->bytes.assign(p, static_cast<size_t>(sqlite3_column_bytes(stmt, i)));
      return v->bytes.size();
    }
    case SQLITE_BLOB: {
      v->type = QueryValue::Type::kBlob;
      const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt, i));
      if (p != nullptr) v->bytes.assign(p, static_cast<size_t>(sqlite3_column_bytes(stmt, i)));
      return v->bytes.size();
    }
    default:
      v->type = QueryValue::Type::kNull;
      return 0;
  }
}

Status Connection::Collect(const QueryOptions& options, QueryResult* out) {
  const int ncols = sqlite3_column_count(stmt_);
  for (int i = 0; i < ncols; ++i) {
    const char* name = sqlite3_column_name(stmt_, i);
    out->columns.emplace_back(name == nullptr ? "" : name);
  }
  uint64_t bytes = 0;
  for (;;) {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return StepError(rc);
    if (out->rows.size() >= options.max_rows) {
      return Status::TooLarge("the result has more than " + std::to_string(options.max_rows) +
                              " rows (max_rows); add a LIMIT or narrow the WHERE clause");
    }
    std::vector<QueryValue> row(static_cast<size_t>(ncols));
    for (int i = 0; i < ncols; ++i) bytes += ReadCell(stmt_, i, &row[static_cast<size_t>(i)]);
    if (bytes > options.max_result_bytes) {
      return Status::TooLarge("the result is larger than " +
                              std::to_string(options.max_result_bytes) +
                              " bytes (max_result_bytes); select fewer rows or columns");
    }
    out->rows.push_back(std::move(row));
  }
}

// Checks what can be checked before SQLite sees anything.
Status CheckInput(std::string_view tenant, std::string_view sql, const SizeLimits& limits) {
  // The tenant follows the engine's rules for (tenant, id) ("" is the default tenant).
  Status s = validate::JobRef(tenant, "-", limits);
  if (!s.ok()) return s;
  if (sql.size() > limits.max_query_bytes || sql.size() > INT_MAX) {
    return Status::TooLarge("sql is " + std::to_string(sql.size()) + " bytes; the limit is " +
                            std::to_string(limits.max_query_bytes) + " (max_query_bytes)");
  }
  if (sql.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("sql contains a NUL byte");
  }
  return Status::Ok();
}

}  // namespace

Result<QueryResult> Run(Engine* engine, const SizeLimits& limits, std::string_view tenant,
                        std::string_view sql, const QueryOptions& options) {
  Status s = CheckInput(tenant, sql, limits);
  if (!s.ok()) return s;
  QueryContext ctx(engine, std::string(tenant), limits, options);
  QueryResult result;
  {
    Connection conn;  // closed before ctx goes away
    s = conn.Open(&ctx, options);
    if (s.ok()) s = conn.Prepare(sql);
    if (s.ok()) s = conn.Collect(options, &result);
  }
  if (!s.ok()) return s;
  result.keys_visited = ctx.keys_visited();
  return result;
}

}  // namespace sluice::query
