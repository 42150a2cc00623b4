#include "metrics.h"

#include <prometheus/family.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace sluice::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Latency buckets, seconds: 50 µs .. 60 s (long-polls land in the upper buckets).
const prometheus::Histogram::BucketBoundaries& Buckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,     0.25,   0.5,     1,      2.5,   5,      10,    30,   60};
  return kBuckets;
}

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void AddValue(MetricFamily* f, double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f->type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  f->metric.push_back(std::move(m));
}

std::string_view KindName(ConcurrencyLimit::Kind k) {
  return k == ConcurrencyLimit::Kind::kFloating ? "floating" : "fixed";
}

}  // namespace

std::string_view GrpcCodeName(grpc::StatusCode code) {
  static constexpr std::array<std::string_view, 17> kNames = {"OK",
                                                              "CANCELLED",
                                                              "UNKNOWN",
                                                              "INVALID_ARGUMENT",
                                                              "DEADLINE_EXCEEDED",
                                                              "NOT_FOUND",
                                                              "ALREADY_EXISTS",
                                                              "PERMISSION_DENIED",
                                                              "RESOURCE_EXHAUSTED",
                                                              "FAILED_PRECONDITION",
                                                              "ABORTED",
                                                              "OUT_OF_RANGE",
                                                              "UNIMPLEMENTED",
                                                              "INTERNAL",
                                                              "UNAVAILABLE",
                                                              "DATA_LOSS",
                                                              "UNAUTHENTICATED"};
  const auto i = static_cast<size_t>(code);
  return i < kNames.size() ? kNames[i] : "UNKNOWN";
}

std::string_view QueryOutcomeName(QueryOutcome o) {
  static constexpr std::array<std::string_view, kQueryOutcomes> kNames = {
      "ok", "timeout", "cancelled", "too_large", "invalid", "error"};
  const auto i = static_cast<size_t>(o);
  return i < kNames.size() ? kNames[i] : "error";
}

Metrics::Metrics(const std::vector<std::string>& methods, uint32_t max_series)
    : registry_(std::make_shared<prometheus::Registry>()), max_series_(max_series) {
  rpc_seconds_ = &prometheus::BuildHistogram()
                      .Name("sluice_rpc_duration_seconds")
                      .Help("gRPC call latency by method and status code (server side)")
                      .Register(*registry_);
  auto& queries = prometheus::BuildCounter()
                      .Name("sluice_queries_total")
                      .Help("Query calls that reached the engine, by outcome")
                      .Register(*registry_);
  for (size_t i = 0; i < kQueryOutcomes; ++i) {
    queries_[i] =
        &queries.Add({{"outcome", std::string(QueryOutcomeName(static_cast<QueryOutcome>(i)))}});
  }
  for (const std::string& full : methods) {
    auto m = std::make_unique<MethodSeries>();
    const auto slash = full.rfind('/');
    m->name = slash == std::string::npos ? full : full.substr(slash + 1);
    methods_.push_back(std::move(m));
    full_names_.push_back(full);
  }
  auto unknown = std::make_unique<MethodSeries>();
  unknown->name = "unknown";
  methods_.push_back(std::move(unknown));
}

prometheus::Histogram* Metrics::Series(MethodSeries* m, grpc::StatusCode code) {
  const auto c = static_cast<size_t>(code) < kCodes
                     ? static_cast<size_t>(code)
                     : static_cast<size_t>(grpc::StatusCode::UNKNOWN);
  prometheus::Histogram* h = m->by_code[c].load(std::memory_order_acquire);
  if (h == nullptr) {
    // Family::Add returns the existing series for equal labels, so a race adds one series.
    h = &rpc_seconds_->Add({{"method", m->name},
                            {"code", std::string(GrpcCodeName(static_cast<grpc::StatusCode>(c)))}},
                           Buckets());
    m->by_code[c].store(h, std::memory_order_release);
  }
  return h;
}

void Metrics::ObserveRpc(std::string_view full_method, grpc::StatusCode code, double seconds) {
  MethodSeries* m = methods_.back().get();
  for (size_t i = 0; i < full_names_.size(); ++i) {
    if (full_names_[i] == full_method) {
      m = methods_[i].get();
      break;
    }
  }
  Series(m, code)->Observe(seconds);
}

void Metrics::CountQuery(QueryOutcome outcome) {
  const auto i = static_cast<size_t>(outcome);
  queries_[i < kQueryOutcomes ? i : static_cast<size_t>(QueryOutcome::kError)]->Increment();
}

std::string Metrics::Render(const Engine& engine) const {
  std::vector<MetricFamily> families = registry_->Collect();
  const EngineStats st = engine.Stats();

  auto counter = [&](std::string name, std::string help, double v) {
    MetricFamily f = Family(std::move(name), std::move(help), MetricType::Counter);
    AddValue(&f, v);
    families.push_back(std::move(f));
  };
  auto gauge = [&](std::string name, std::string help, double v) {
    MetricFamily f = Family(std::move(name), std::move(help), MetricType::Gauge);
    AddValue(&f, v);
    families.push_back(std::move(f));
  };
  counter("sluice_jobs_enqueued_total", "Jobs created since the engine opened",
          static_cast<double>(st.enqueued));
  counter("sluice_tasks_leased_total", "Tasks handed to workers since the engine opened",
          static_cast<double>(st.leased));
  {
    MetricFamily f =
        Family("sluice_outcomes_total",
               "Ends of attempts by kind (retried: failed and rescheduled)", MetricType::Counter);
    AddValue(&f, static_cast<double>(st.succeeded), {{"kind", "succeeded"}});
    AddValue(&f, static_cast<double>(st.failed), {{"kind", "failed"}});
    AddValue(&f, static_cast<double>(st.cancelled), {{"kind", "cancelled"}});
    AddValue(&f, static_cast<double>(st.retried), {{"kind", "retried"}});
    families.push_back(std::move(f));
  }
  counter("sluice_lease_expirations_total", "Leases reaped after expiring",
          static_cast<double>(st.lease_expired));
  counter("sluice_concurrency_grants_total", "Parked jobs granted their concurrency slots",
          static_cast<double>(st.grants));
  counter("sluice_refreshes_issued_total", "Floating-limit refresh tasks handed out",
          static_cast<double>(st.refreshes_issued));
  gauge("sluice_pending_tasks", "Scheduled and waiting tasks",
        static_cast<double>(st.pending_tasks));
  gauge("sluice_running_tasks", "Live leases", static_cast<double>(st.running));
  gauge("sluice_concurrency_keys", "Concurrency keys with holders or waiters",
        static_cast<double>(st.limit_keys));
  gauge("sluice_concurrency_holders", "Concurrency slots held, all keys",
        static_cast<double>(st.limit_holders));
  gauge("sluice_concurrency_waiters", "Jobs parked on a full concurrency key, all keys",
        static_cast<double>(st.limit_waiters));

  size_t total_queues = 0;
  const std::vector<QueueDepth> depths = engine.QueueDepths(max_series_, &total_queues);
  {
    MetricFamily f = Family("sluice_queue_depth",
                            "Pending tasks per queue and state (the busiest queues only; see "
                            "sluice_queues_with_pending)",
                            MetricType::Gauge);
    for (const QueueDepth& d : depths) {
      AddValue(&f, static_cast<double>(d.waiting),
               {{"tenant", d.tenant}, {"queue", d.queue}, {"state", "waiting"}});
      AddValue(&f, static_cast<double>(d.scheduled),
               {{"tenant", d.tenant}, {"queue", d.queue}, {"state", "scheduled"}});
    }
    families.push_back(std::move(f));
  }
  gauge("sluice_queues_with_pending", "Queues with pending tasks (all, not only those exported)",
        static_cast<double>(total_queues));

  const std::vector<ConcurrencyKeyInfo> keys = engine.ListConcurrencyKeys(max_series_);
  MetricFamily holders =
      Family("sluice_concurrency_key_holders",
             "Slots held per concurrency key (the busiest keys only)", MetricType::Gauge);
  MetricFamily waiters =
      Family("sluice_concurrency_key_waiters",
             "Jobs parked per concurrency key (the busiest keys only)", MetricType::Gauge);
  MetricFamily maxes =
      Family("sluice_concurrency_key_max",
             "Current max per concurrency key (the busiest keys only)", MetricType::Gauge);
  for (const ConcurrencyKeyInfo& k : keys) {
    std::vector<ClientMetric::Label> labels = {
        {"tenant", k.tenant}, {"key", k.key}, {"kind", std::string(KindName(k.kind))}};
    AddValue(&holders, static_cast<double>(k.holders), labels);
    AddValue(&waiters, static_cast<double>(k.waiters), labels);
    AddValue(&maxes, static_cast<double>(k.max), std::move(labels));
  }
  families.push_back(std::move(holders));
  families.push_back(std::move(waiters));
  families.push_back(std::move(maxes));

  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace sluice::server
