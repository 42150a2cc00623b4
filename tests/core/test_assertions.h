// gtest assertion helpers shared by the core suites: status checks that print the code name and
// message on failure, and readable names for statuses in failure output.
#ifndef SLUICE_TESTS_CORE_TEST_ASSERTIONS_H_
#define SLUICE_TESTS_CORE_TEST_ASSERTIONS_H_

#include <gtest/gtest.h>

#include <ostream>

#include "sluice/status.h"
#include "sluice/types.h"

namespace sluice {

// Found by ADL: gtest prints "waiting" rather than a number.
inline void PrintTo(JobStatus s, std::ostream* os) { *os << JobStatusName(s); }
inline void PrintTo(StatusCode c, std::ostream* os) { *os << StatusCodeName(c); }

namespace testing {

// EXPECT_TRUE(IsOk(s)): on failure prints the status.
inline ::testing::AssertionResult IsOk(const Status& s) {
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s.ToString();
}
template <typename T>
::testing::AssertionResult IsOk(const Result<T>& r) {
  return IsOk(r.status());
}

// EXPECT_TRUE(HasCode(s, StatusCode::kNotFound)): on failure prints what came instead.
inline ::testing::AssertionResult HasCode(const Status& s, StatusCode want) {
  if (s.code() == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "want " << StatusCodeName(want) << ", got " << (s.ok() ? "ok" : s.ToString());
}
template <typename T>
::testing::AssertionResult HasCode(const Result<T>& r, StatusCode want) {
  return HasCode(r.status(), want);
}

}  // namespace testing
}  // namespace sluice

#endif  // SLUICE_TESTS_CORE_TEST_ASSERTIONS_H_
