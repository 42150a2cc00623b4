// Shared test helpers: temporary directories and engines over them.
#ifndef SLUICE_TESTS_CORE_TEST_UTIL_H_
#define SLUICE_TESTS_CORE_TEST_UTIL_H_

#include <map>
#include <memory>
#include <string>

#include "sluice/engine.h"

namespace sluice::testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Options for a test engine at `path`: async durability (tests do not need fsync; the crash
// test sets sync itself), the given clock, and no background reaper unless asked.
EngineOptions TestOptions(const std::string& path, std::shared_ptr<Clock> clock = nullptr,
                          uint32_t reaper_interval_ms = 0);

// Opens an engine or fails the current test (ASSERT-style; aborts on failure).
std::unique_ptr<Engine> OpenOrDie(const EngineOptions& options);

// A minimal valid spec on `queue`.
JobSpec Spec(const std::string& queue, const std::string& payload = "p");

// A fixed concurrency limit {key, max}.
ConcurrencyLimit Fixed(const std::string& key, uint32_t max);

// A floating concurrency limit with `default_max`, refreshed every `interval_ms`, carrying
// `metadata` for the refresh handlers.
ConcurrencyLimit Floating(const std::string& key, uint32_t default_max, uint64_t interval_ms,
                          std::map<std::string, std::string> metadata = {});

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_CORE_TEST_UTIL_H_
