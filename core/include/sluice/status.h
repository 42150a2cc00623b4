// Status and Result<T>: how every core call reports success or failure.
//
// Errors are values (STYLE.md #4): no exception leaves the core. A StatusCode is part of the
// contract — its numeric values are stable and never reused, and they map one-to-one onto the
// C ABI's sluice_status, gRPC codes and client exception classes (docs/errors.md). Messages are
// for people; programs classify on the code.
#ifndef SLUICE_STATUS_H_
#define SLUICE_STATUS_H_

#include <cassert>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace sluice {

// Stable status codes. Never renumber; append new codes at the end.
enum class StatusCode : int32_t {
  kOk = 0,
  kNotFound = 1,            // the job (or task) does not exist for this tenant
  kInvalidArgument = 2,     // malformed input: empty queue, priority out of range, ...
  kTooLarge = 3,            // a field exceeds its configured size limit
  kLeaseLost = 4,           // the lease token is stale or the lease expired
  kFailedPrecondition = 5,  // the job is in a state that does not allow the operation
  kClosed = 6,              // the engine is closed or closing
  kIoError = 7,             // the storage layer failed; the engine stops acknowledging
  kCorruption = 8,          // stored data could not be decoded
  kTimeout = 9,             // a bounded wait ended before its condition held
  kAlreadyExists = 10,      // reserved: an object that must be new already exists
  kBusy = 11,               // transient contention; the call may be retried as is
  // 12 and 13 are taken by the C ABI (SLUICE_INTERNAL, SLUICE_NO_MEMORY): skipped here so
  // that every core value equals its sluice_status.
  kCancelled = 14,  // the caller cancelled the call (e.g. went away mid-query)
};

// Returns the stable lowercase name of a code ("not_found", "lease_lost", ...).
std::string_view StatusCodeName(StatusCode code);

// The outcome of an operation: OK, or a code plus a human-readable message.
// Cheap to copy when OK. Thread-compatible.
class [[nodiscard]] Status {
 public:
  // OK.
  Status() = default;
  // A status with `code` and a message for people (never parsed by programs).
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  // Factories, one per code.
  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status TooLarge(std::string m) { return {StatusCode::kTooLarge, std::move(m)}; }
  static Status LeaseLost(std::string m) { return {StatusCode::kLeaseLost, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status Closed(std::string m) { return {StatusCode::kClosed, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status Timeout(std::string m) { return {StatusCode::kTimeout, std::move(m)}; }
  static Status Busy(std::string m) { return {StatusCode::kBusy, std::move(m)}; }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }

  // Whether the operation succeeded.
  bool ok() const { return code_ == StatusCode::kOk; }
  // The stable code; classify on this.
  StatusCode code() const { return code_; }
  // The human-readable message ("" when OK).
  const std::string& message() const { return message_; }

  // "lease_lost: task ... token is stale" — for logs and test failure output.
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or a non-OK Status. Accessing value() of an error is a programmer error (asserts).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status has no value");
  }

  // Whether it holds a value.
  bool ok() const { return std::holds_alternative<T>(v_); }
  // The failure (an OK status when it holds a value).
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  // The value; calling these on a failure is a programmer error (asserts).
  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace sluice

#endif  // SLUICE_STATUS_H_
