// Glue between SQLite's C virtual-table interface and the C++ tables: one sqlite3_module whose
// callbacks forward to a TableSpec and its Cursor, turning Statuses into SQLite errors (and
// recording them, so that Run returns the engine's code rather than a generic SQL error).
#include "query_vtab.h"

#include <cstdio>
#include <new>
#include <string>
#include <utility>

namespace sluice::query {

QueryContext::QueryContext(Engine* engine, std::string tenant, const SizeLimits& limits,
                           const QueryOptions& options)
    : engine_(engine),
      tenant_(std::move(tenant)),
      limits_(limits),
      timeout_ms_(options.timeout_ms),
      deadline_(std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms)),
      cancelled_(&options.cancelled) {}

Status QueryContext::CheckBounds() const {
  bool cancelled = false;
  if (*cancelled_) {
    // The caller's callback must not throw; if it does, the caller is gone as far as we know.
    try {
      cancelled = (*cancelled_)();
    } catch (...) {
      cancelled = true;
    }
  }
  if (cancelled) return Status::Cancelled("the query was cancelled by its caller");
  if (std::chrono::steady_clock::now() >= deadline_) {
    return Status::Timeout("the query ran longer than its timeout of " +
                           std::to_string(timeout_ms_) + " ms");
  }
  return Status::Ok();
}

const Status& QueryContext::Fail(Status status) {
  if (error_.ok()) error_ = std::move(status);
  return error_;
}

namespace {

// What SQLite holds for one table of one connection. Standard layout: SQLite sees `base`.
struct Table {
  sqlite3_vtab base;
  QueryContext* ctx;
  const TableSpec* spec;
};

// What SQLite holds for one open cursor.
struct CursorBox {
  sqlite3_vtab_cursor base;
  std::unique_ptr<Cursor> impl;
};

// The pAux of a registered module: which table, for which query.
struct ModuleAux {
  QueryContext* ctx;
  const TableSpec* spec;
};

Table* AsTable(sqlite3_vtab* vtab) { return reinterpret_cast<Table*>(vtab); }
CursorBox* AsCursor(sqlite3_vtab_cursor* cur) { return reinterpret_cast<CursorBox*>(cur); }

// Turns a cursor's Status into an SQLite result code, recording the error for Run.
int Report(CursorBox* cur, const Status& status) {
  if (status.ok()) return SQLITE_OK;
  Table* table = AsTable(cur->base.pVtab);
  table->ctx->Fail(status);
  sqlite3_free(table->base.zErrMsg);
  table->base.zErrMsg = sqlite3_mprintf("%s", status.message().c_str());
  return SQLITE_ERROR;
}

// Runs a cursor step, keeping C++ exceptions out of SQLite's C frames (STYLE.md #4).
template <typename F>
int Guarded(CursorBox* cur, F&& step) {
  try {
    return Report(cur, step());
  } catch (const std::bad_alloc&) {
    return SQLITE_NOMEM;
  } catch (const std::exception& e) {
    return Report(cur, Status::InvalidArgument(std::string("query failed: ") + e.what()));
  }
}

int Connect(sqlite3* db, void* aux, int /*argc*/, const char* const* /*argv*/, sqlite3_vtab** out,
            char** /*err*/) {
  const auto* module = static_cast<const ModuleAux*>(aux);
  int rc = sqlite3_declare_vtab(db, module->spec->schema);
  if (rc != SQLITE_OK) return rc;
  // Not usable from triggers or views (neither can be created here; defence in depth).
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  auto* table = new (std::nothrow) Table{};
  if (table == nullptr) return SQLITE_NOMEM;
  table->ctx = module->ctx;
  table->spec = module->spec;
  *out = &table->base;
  return SQLITE_OK;
}

// A separate function from Connect so that the module is not eponymous: the tables exist only
// under the names CreateTables gives them.
int Create(sqlite3* db, void* aux, int argc, const char* const* argv, sqlite3_vtab** out,
           char** err) {
  return Connect(db, aux, argc, argv, out, err);
}

int Disconnect(sqlite3_vtab* vtab) {
  delete AsTable(vtab);
  return SQLITE_OK;
}

int BestIndex(sqlite3_vtab* vtab, sqlite3_index_info* info) {
  try {
    return AsTable(vtab)->spec->best_index(info);
  } catch (...) {
    return SQLITE_NOMEM;
  }
}

int Open(sqlite3_vtab* vtab, sqlite3_vtab_cursor** out) {
  try {
    Table* table = AsTable(vtab);
    auto* cur = new CursorBox{};
    cur->impl = table->spec->open(table->ctx);
    *out = &cur->base;
    return SQLITE_OK;
  } catch (...) {
    return SQLITE_NOMEM;
  }
}

int Close(sqlite3_vtab_cursor* cur) {
  delete AsCursor(cur);
  return SQLITE_OK;
}

int Filter(sqlite3_vtab_cursor* base, int idx_num, const char* idx_str, int argc,
           sqlite3_value** argv) {
  CursorBox* cur = AsCursor(base);
  return Guarded(cur, [&] { return cur->impl->Filter(idx_num, idx_str, argc, argv); });
}

int Next(sqlite3_vtab_cursor* base) {
  CursorBox* cur = AsCursor(base);
  return Guarded(cur, [&] { return cur->impl->Next(); });
}

int Eof(sqlite3_vtab_cursor* base) { return AsCursor(base)->impl->Eof() ? 1 : 0; }

int Column(sqlite3_vtab_cursor* base, sqlite3_context* out, int column) {
  try {
    AsCursor(base)->impl->Column(out, column);
  } catch (...) {
    sqlite3_result_error_nomem(out);
  }
  return SQLITE_OK;
}

// Never called: the tables are WITHOUT ROWID. Present so that no path reaches a null pointer.
int Rowid(sqlite3_vtab_cursor* /*base*/, sqlite3_int64* /*out*/) { return SQLITE_ERROR; }

constexpr sqlite3_module MakeModule() {
  sqlite3_module m{};
  m.iVersion = 1;
  m.xCreate = Create;
  m.xConnect = Connect;
  m.xBestIndex = BestIndex;
  m.xDisconnect = Disconnect;
  m.xDestroy = Disconnect;
  m.xOpen = Open;
  m.xClose = Close;
  m.xFilter = Filter;
  m.xNext = Next;
  m.xEof = Eof;
  m.xColumn = Column;
  m.xRowid = Rowid;
  // No xUpdate: every table is read-only. No xRowid: every table is WITHOUT ROWID, keyed by
  // what identifies a row (SQLite's OR optimization deduplicates rows by that key).
  return m;
}

constexpr sqlite3_module kModule = MakeModule();

void DeleteAux(void* aux) { delete static_cast<ModuleAux*>(aux); }

}  // namespace

Status CreateTables(sqlite3* db, QueryContext* ctx) {
  static const TableSpec* const kTables[] = {
      &kJobsTable,   &kJobMetadataTable,     &kAttemptsTable,
      &kQueuesTable, &kConcurrencyKeysTable, &kFloatingLimitsTable};
  for (const TableSpec* spec : kTables) {
    const std::string module = std::string("sluice_") + spec->name;
    // On failure SQLite calls DeleteAux itself.
    int rc =
        sqlite3_create_module_v2(db, module.c_str(), &kModule, new ModuleAux{ctx, spec}, DeleteAux);
    if (rc == SQLITE_OK) {
      const std::string sql =
          std::string("CREATE VIRTUAL TABLE main.") + spec->name + " USING " + module;
      rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    }
    if (rc != SQLITE_OK) {
      return Status::InvalidArgument(std::string("creating table ") + spec->name + ": " +
                                     sqlite3_errmsg(db));
    }
  }
  return Status::Ok();
}

void ResultText(sqlite3_context* out, std::string_view text) {
  sqlite3_result_text64(out, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

void ResultBlob(sqlite3_context* out, std::string_view bytes) {
  sqlite3_result_blob64(out, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
}

bool TextArg(sqlite3_value* value, std::string* out) {
  const int type = sqlite3_value_type(value);
  if (type == SQLITE_NULL || type == SQLITE_BLOB) return false;
  // TEXT affinity: a number is compared as its text ("5", "1.5").
  const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(value));
  if (text == nullptr) return false;  // out of memory converting; matches nothing
  out->assign(text, static_cast<size_t>(sqlite3_value_bytes(value)));
  return true;
}

namespace {

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(ch);  // UTF-8 passes through
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string JsonObject(const std::map<std::string, std::string>& map) {
  std::string out = "{";
  for (const auto& [key, value] : map) {
    if (out.size() > 1) out.push_back(',');
    AppendJsonString(&out, key);
    out.push_back(':');
    AppendJsonString(&out, value);
  }
  out.push_back('}');
  return out;
}

std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

}  // namespace sluice::query
