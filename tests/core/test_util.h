// Shared test helpers: temporary directories and engines over them.
#ifndef SLUICE_TESTS_CORE_TEST_UTIL_H_
#define SLUICE_TESTS_CORE_TEST_UTIL_H_

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

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_CORE_TEST_UTIL_H_
