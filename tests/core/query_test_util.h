// Helpers shared by the SQL query suites: building expected cells and printing rows so that
// results compare as strings (and failures print readably).
#ifndef SLUICE_TESTS_CORE_QUERY_TEST_UTIL_H_
#define SLUICE_TESTS_CORE_QUERY_TEST_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/types.h"

namespace sluice::testing {

inline QueryValue NullValue() { return QueryValue{}; }
inline QueryValue IntValue(int64_t v) {
  QueryValue q;
  q.type = QueryValue::Type::kInteger;
  q.integer = v;
  return q;
}
inline QueryValue TextValue(std::string_view v) {
  QueryValue q;
  q.type = QueryValue::Type::kText;
  q.bytes = std::string(v);
  return q;
}
inline QueryValue BlobValue(std::string_view v) {
  QueryValue q;
  q.type = QueryValue::Type::kBlob;
  q.bytes = std::string(v);
  return q;
}

// "i:5", "t:abc", "b:6162", "r:1.5", "null".
inline std::string Render(const QueryValue& v) {
  switch (v.type) {
    case QueryValue::Type::kInteger:
      return "i:" + std::to_string(v.integer);
    case QueryValue::Type::kReal:
      return "r:" + std::to_string(v.real);
    case QueryValue::Type::kText:
      return "t:" + v.bytes;
    case QueryValue::Type::kBlob: {
      static const char* kHex = "0123456789abcdef";
      std::string out = "b:";
      for (unsigned char c : v.bytes) {
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
      }
      return out;
    }
    default:
      return "null";
  }
}

inline std::string RenderRow(const std::vector<QueryValue>& row) {
  std::string out;
  for (const QueryValue& v : row) {
    if (!out.empty()) out += " | ";
    out += Render(v);
  }
  return out;
}

// Rows as rendered strings, in result order.
inline std::vector<std::string> RenderRows(const std::vector<std::vector<QueryValue>>& rows) {
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (const auto& row : rows) out.push_back(RenderRow(row));
  return out;
}

// Rows as a sorted multiset of rendered strings (for results without a defined order).
inline std::vector<std::string> SortedRows(const std::vector<std::vector<QueryValue>>& rows) {
  std::vector<std::string> out = RenderRows(rows);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_CORE_QUERY_TEST_UTIL_H_
