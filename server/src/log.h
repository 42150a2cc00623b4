// Structured logs: one JSON object (or one readable line) per event on stderr.
//
// Every line has ts (RFC 3339, UTC, ms), level and msg, plus the event's own fields. Thread-safe:
// a line is written with one write(2) so lines of concurrent threads never interleave.
#ifndef SLUICE_SERVER_SRC_LOG_H_
#define SLUICE_SERVER_SRC_LOG_H_

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace sluice::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Parses "debug", "info", "warn", "error"; false for anything else.
bool ParseLogLevel(std::string_view name, LogLevel* out);

// Sets the minimum level and the format (JSON lines when json, else "ts level msg k=v").
void ConfigureLog(LogLevel min_level, bool json);

// Whether a line at `level` would be written.
bool LogEnabled(LogLevel level);

// One field of a log line.
using LogField = std::pair<std::string_view, std::string>;

// Writes one line (when `level` is enabled).
void Log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {});

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_LOG_H_
