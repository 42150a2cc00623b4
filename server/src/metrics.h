// Prometheus metrics of one sluiced node, rendered in the text format (0.0.4) on /metrics.
//
// RPC latency histograms are kept here (labels: method, code; both from fixed sets, so the
// series count is bounded). Engine counters and gauges are read from the engine at scrape time
// (EngineStats, QueueDepths, ListConcurrencyKeys), so the hot path pays nothing for them; the
// per-queue and per-key series are limited to the busiest `max_series`. Queries (the Query RPC)
// are counted by outcome, a fixed label set.
#ifndef SLUICE_SERVER_SRC_METRICS_H_
#define SLUICE_SERVER_SRC_METRICS_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/engine.h"

namespace sluice::server {

// How one Query RPC that reached the engine ended (the `outcome` label of sluice_queries_total).
enum class QueryOutcome : uint8_t {
  kOk = 0,
  kTimeout = 1,    // its time budget or the call's deadline ran out
  kCancelled = 2,  // the caller went away (cancelled the call, closed the connection)
  kTooLarge = 3,   // too many rows, a result over the byte cap, or SQL text over its cap
  kInvalid = 4,    // SQL that does not parse, would write, or names an unknown table
  kError = 5,      // anything else (closed, storage, ...)
};
inline constexpr size_t kQueryOutcomes = 6;

// The label value of an outcome ("ok", "timeout", ...).
std::string_view QueryOutcomeName(QueryOutcome o);

class Metrics {
 public:
  // methods: the full names ("/sluice.v1.Sluice/Enqueue") of every RPC of the service.
  Metrics(const std::vector<std::string>& methods, uint32_t max_series);

  // Records one finished RPC. Unknown methods are counted under method="unknown".
  void ObserveRpc(std::string_view full_method, grpc::StatusCode code, double seconds);

  // Counts one Query by how it ended. Thread-safe.
  void CountQuery(QueryOutcome outcome);

  // The whole exposition: RPC histograms plus the engine's state now.
  std::string Render(const Engine& engine) const;

 private:
  static constexpr size_t kCodes = 17;  // grpc::StatusCode 0..16
  struct MethodSeries {
    std::string name;  // short name, the label value
    std::array<std::atomic<prometheus::Histogram*>, kCodes> by_code{};
  };
  prometheus::Histogram* Series(MethodSeries* m, grpc::StatusCode code);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>* rpc_seconds_;
  std::array<prometheus::Counter*, kQueryOutcomes> queries_{};  // every outcome from the start
  std::vector<std::unique_ptr<MethodSeries>> methods_;          // last entry: "unknown"
  std::vector<std::string> full_names_;
  uint32_t max_series_;
};

// The stable upper-case name of a gRPC code ("OK", "NOT_FOUND", ...).
std::string_view GrpcCodeName(grpc::StatusCode code);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_METRICS_H_
