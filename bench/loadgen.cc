// sluice_loadgen: a gRPC load generator for sluiced (issue 5), the Sluice side of
// bench/server_bench.sh. bench/bullmq/bullmq_bench.mjs is its BullMQ twin: same flags, same line.
//
// K producer threads enqueue --jobs jobs in total over loopback, each with its own channel (own
// TCP connection) and one call in flight: Enqueue (--enqueue-batch=1) or EnqueueBatch of B jobs,
// optionally paced to --rate jobs/s in total. At the same time W worker threads, each with its
// own channel and C slots, run the usual worker loop: LeaseTasks(max_tasks = free slots,
// long-poll), run each task (a no-op), and report it without blocking the next lease:
// one async ReportOutcome per task, or with --report-batch one async ReportOutcomes per lease
// round. A slot is free again when its report is acknowledged, so at most C tasks per worker are
// leased and not yet reported, as with a BullMQ Worker of `concurrency` C.
//
// Output (stdout, one line of key=value fields):
//   enqueue_jobs_per_s=... e2e_jobs_per_s=... start_p50_ms=... start_p99_ms=... jobs=...
//   enqueue: jobs / (first enqueue call -> last enqueue acknowledged)
//   e2e:     jobs / (first enqueue call -> last report acknowledged)
//   start:   enqueue -> start latency: the producer stamps CLOCK_MONOTONIC nanoseconds
//            (machine-wide on Linux) into the first 8 payload bytes just before its Enqueue
//            call; the worker reads them when the LeaseTasks response arrives.
//   jobs:    latency samples, one per leased task (= --jobs unless a task was leased twice)
// Details (durability, p90/p99.9/max, RPC counts) go to stderr.
//
// Flags:
//   --target=HOST:PORT   sluiced gRPC address (default 127.0.0.1:7070)
//   --token=T            bearer token ("" sends none)
//   --jobs=N             jobs in total (default 10000)
//   --producers=K        producer threads (default 1)
//   --workers=W          worker threads (default 1)
//   --concurrency=C      slots per worker: most tasks leased and not yet reported (default 16)
//   --enqueue-batch=B    1: Enqueue per job; > 1: EnqueueBatch of B jobs (default 1)
//   --report-batch       ReportOutcomes per lease round instead of ReportOutcome per task
//   --piggyback          report each round's outcomes inside the next LeaseTasks (one round
//                        trip per round; the tasks of a round hold their slots until then)
//   --payload=BYTES      payload size, at least 8 (default 64)
//   --rate=JOBS_PER_S    total enqueue rate, split over the producers; 0 = as fast as possible
//   --queue=NAME         queue name (default bench-<pid>-<time>: unique per run)
//   --lease-wait-ms=N    LeaseTasks long-poll bound (default 200)
//
// Example: sluice_loadgen --target=127.0.0.1:7070 --token=T --jobs=50000 --producers=4
//            --workers=1 --concurrency=16 --enqueue-batch=100 --report-batch
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sluice/v1/sluice.grpc.pb.h"

namespace {

namespace pb = sluice::v1;
using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC on Linux, as node's process.hrtime

struct Flags {
  std::string target = "127.0.0.1:7070";
  std::string token;
  uint64_t jobs = 10000;
  int producers = 1;
  int workers = 1;
  uint32_t concurrency = 16;
  uint32_t enqueue_batch = 1;
  bool report_batch = false;
  bool piggyback = false;
  size_t payload = 64;
  double rate = 0;
  std::string queue;
  uint32_t lease_wait_ms = 200;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "sluice_loadgen: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

uint64_t ParseU64(const std::string& flag, const std::string& v, uint64_t lo, uint64_t hi) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < lo || n > hi) {
    Die("bad value for --" + flag + ": " + v + " (want " + std::to_string(lo) + ".." +
        std::to_string(hi) + ")");
  }
  return n;
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "sluice_loadgen --target=HOST:PORT --token=T --jobs=N --producers=K --workers=W "
          "--concurrency=C --enqueue-batch=B [--report-batch] --payload=BYTES --rate=JOBS_PER_S "
          "--queue=NAME --lease-wait-ms=N\n");
      std::exit(0);
    }
    if (arg == "--piggyback") {
      f.piggyback = true;
      continue;
    }
    if (arg == "--report-batch") {
      f.report_batch = true;
      continue;
    }
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) Die("bad argument: " + arg);
    const std::string key = arg.substr(2, eq - 2), v = arg.substr(eq + 1);
    if (key == "target") {
      f.target = v;
    } else if (key == "token") {
      f.token = v;
    } else if (key == "jobs") {
      f.jobs = ParseU64(key, v, 1, 1'000'000'000);
    } else if (key == "producers") {
      f.producers = static_cast<int>(ParseU64(key, v, 1, 1024));
    } else if (key == "workers") {
      f.workers = static_cast<int>(ParseU64(key, v, 1, 1024));
    } else if (key == "concurrency") {
      f.concurrency = static_cast<uint32_t>(ParseU64(key, v, 1, 100'000));
    } else if (key == "enqueue-batch") {
      f.enqueue_batch = static_cast<uint32_t>(ParseU64(key, v, 1, 100'000));
    } else if (key == "payload") {
      f.payload = static_cast<size_t>(ParseU64(key, v, 8, 64 << 20));
    } else if (key == "rate") {
      f.rate = static_cast<double>(ParseU64(key, v, 0, 100'000'000));
    } else if (key == "queue") {
      f.queue = v;
    } else if (key == "lease-wait-ms") {
      f.lease_wait_ms = static_cast<uint32_t>(ParseU64(key, v, 1, 60'000));
    } else {
      Die("unknown flag --" + key);
    }
  }
  if (f.queue.empty()) {
    f.queue = "bench-" + std::to_string(getpid()) + "-" + std::to_string(NowNs());
  }
  return f;
}

// One channel per producer and per worker, each with its own TCP connection (a local subchannel
// pool), as each BullMQ Queue and Worker has its own Redis connection.
std::shared_ptr<grpc::Channel> Connect(const Flags& f) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(f.target, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    Die("cannot connect to " + f.target);
  }
  return channel;
}

void Authorize(const Flags& f, grpc::ClientContext* ctx) {
  if (!f.token.empty()) ctx->AddMetadata("authorization", "Bearer " + f.token);
}

void CheckRpc(const grpc::Status& s, const char* what) {
  if (!s.ok()) {
    Die(std::string(what) + ": " + std::to_string(s.error_code()) + " " + s.error_message());
  }
}

// ---- Producers ----------------------------------------------------------------------------

struct ProducerResult {
  int64_t first_ns = 0;
  int64_t last_ack_ns = 0;
};

void StampPayload(std::string* payload, int64_t t) { std::memcpy(payload->data(), &t, sizeof t); }

// Enqueues `count` jobs, `enqueue_batch` per call, paced to `rate` jobs/s when rate > 0.
void Produce(const Flags& f, uint64_t count, double rate, const std::atomic<bool>* go,
             ProducerResult* out) {
  auto stub = pb::Sluice::NewStub(Connect(f));
  std::string payload(f.payload, 'x');
  while (!go->load(std::memory_order_acquire)) std::this_thread::yield();
  const int64_t start = NowNs();
  const auto start_tp = Clock::now();
  uint64_t sent = 0;
  while (sent < count) {
    const uint64_t n = std::min<uint64_t>(f.enqueue_batch, count - sent);
    if (rate > 0) {
      std::this_thread::sleep_until(start_tp + std::chrono::nanoseconds(static_cast<int64_t>(
                                                   static_cast<double>(sent) / rate * 1e9)));
    }
    grpc::ClientContext ctx;
    Authorize(f, &ctx);
    StampPayload(&payload, NowNs());
    if (f.enqueue_batch == 1) {
      pb::EnqueueRequest req;
      req.mutable_job()->set_queue(f.queue);
      req.mutable_job()->set_payload(payload);
      pb::EnqueueResponse resp;
      CheckRpc(stub->Enqueue(&ctx, req, &resp), "Enqueue");
    } else {
      pb::EnqueueBatchRequest req;
      for (uint64_t i = 0; i < n; ++i) {
        pb::JobSpec* job = req.add_jobs();
        job->set_queue(f.queue);
        job->set_payload(payload);
      }
      pb::EnqueueBatchResponse resp;
      CheckRpc(stub->EnqueueBatch(&ctx, req, &resp), "EnqueueBatch");
    }
    sent += n;
  }
  out->first_ns = start;
  out->last_ack_ns = NowNs();
}

// ---- Workers ------------------------------------------------------------------------------

// Completion accounting shared by every worker: the report callbacks run on gRPC's threads.
struct Progress {
  uint64_t target = 0;
  std::atomic<uint64_t> done{0};
  std::atomic<int64_t> last_done_ns{0};
  std::atomic<bool> finished{false};
  std::atomic<uint64_t> lease_calls{0}, report_calls{0};
  std::mutex mu;
  std::condition_variable cv;

  void Completed(uint64_t n) {
    if (done.fetch_add(n) + n == target) {
      last_done_ns.store(NowNs());
      std::lock_guard<std::mutex> lock(mu);
      finished.store(true);
      cv.notify_all();
    }
  }
};

class BenchWorker {
 public:
  BenchWorker(const Flags& f, int index, Progress* progress)
      : f_(f),
        worker_id_("loadgen-" + std::to_string(getpid()) + "-" + std::to_string(index)),
        progress_(progress),
        stub_(pb::Sluice::NewStub(Connect(f))) {}

  // The lease loop; returns when Stop() was called (after at most one long-poll).
  void Run();
  void Stop();
  std::vector<int64_t>& latencies_ns() { return latencies_ns_; }

 private:
  struct Report {  // one async ReportOutcome(s) call and what it must outlive
    grpc::ClientContext ctx;
    pb::ReportOutcomeRequest one;
    pb::ReportOutcomeResponse one_resp;
    pb::ReportOutcomesRequest many;
    pb::ReportOutcomesResponse many_resp;
    uint32_t tasks = 0;
  };

  uint32_t AwaitFreeSlots();
  void Reported(Report* r, const grpc::Status& s);
  void ReportRound(const pb::LeaseTasksResponse& resp);
  void RunPiggyback();

  const Flags& f_;
  const std::string worker_id_;
  Progress* progress_;
  std::unique_ptr<pb::Sluice::Stub> stub_;
  std::vector<int64_t> latencies_ns_;

  std::mutex mu_;
  std::condition_variable cv_;
  uint32_t in_flight_ = 0;  // leased and not yet acknowledged as reported
  bool stop_ = false;
  grpc::ClientContext* lease_ctx_ = nullptr;  // the pending long-poll, cancelled by Stop()
};

uint32_t BenchWorker::AwaitFreeSlots() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stop_ || in_flight_ < f_.concurrency; });
  return stop_ ? 0 : f_.concurrency - in_flight_;
}

void BenchWorker::Run() {
  if (f_.piggyback) return RunPiggyback();
  for (;;) {
    const uint32_t free_slots = AwaitFreeSlots();
    if (free_slots == 0) return;
    pb::LeaseTasksRequest req;
    req.set_queue(f_.queue);
    req.set_worker_id(worker_id_);
    req.set_max_tasks(free_slots);
    req.set_wait_ms(f_.lease_wait_ms);
    pb::LeaseTasksResponse resp;
    grpc::ClientContext ctx;
    Authorize(f_, &ctx);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      lease_ctx_ = &ctx;
    }
    const grpc::Status s = stub_->LeaseTasks(&ctx, req, &resp);
    const int64_t now = NowNs();
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease_ctx_ = nullptr;
      if (stop_) return;
      in_flight_ += static_cast<uint32_t>(resp.tasks_size());
    }
    CheckRpc(s, "LeaseTasks");
    progress_->lease_calls.fetch_add(1, std::memory_order_relaxed);
    for (const pb::Task& t : resp.tasks()) {
      int64_t stamp = 0;
      if (t.payload().size() < sizeof stamp) Die("task without a timestamp payload");
      std::memcpy(&stamp, t.payload().data(), sizeof stamp);
      latencies_ns_.push_back(now - stamp);
    }
    if (resp.tasks_size() > 0) ReportRound(resp);  // the tasks themselves are no-ops
  }
}

// Each round's no-op tasks are reported by the next LeaseTasks, which asks for every slot
// (the round's tasks free theirs in that same call). A call carrying reports does not wait
// (so Stop never cancels one); an empty-handed call long-polls.
void BenchWorker::RunPiggyback() {
  std::vector<std::pair<std::string, uint64_t>> pending;  // (task id, lease token)
  auto apply = [&](const google::protobuf::RepeatedPtrField<pb::ReportStatus>& statuses) {
    if (static_cast<size_t>(statuses.size()) != pending.size()) Die("missing report statuses");
    for (const pb::ReportStatus& st : statuses) {
      if (st.code() != 0) Die("piggybacked report failed: " + st.sluice_code());
    }
    if (!pending.empty()) progress_->Completed(static_cast<uint32_t>(pending.size()));
    pending.clear();
  };
  for (;;) {
    pb::LeaseTasksRequest req;
    req.set_queue(f_.queue);
    req.set_worker_id(worker_id_);
    req.set_max_tasks(f_.concurrency);
    req.set_wait_ms(pending.empty() ? f_.lease_wait_ms : 0);
    for (const auto& [task, token] : pending) {
      pb::ReportOutcomeRequest* r = req.add_reports();
      r->set_task_id(task);
      r->set_lease_token(token);
      r->mutable_outcome()->mutable_success();
    }
    pb::LeaseTasksResponse resp;
    grpc::ClientContext ctx;
    Authorize(f_, &ctx);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ && pending.empty()) return;
      if (pending.empty()) lease_ctx_ = &ctx;
    }
    const grpc::Status s = stub_->LeaseTasks(&ctx, req, &resp);
    const int64_t now = NowNs();
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease_ctx_ = nullptr;
      if (stop_ && pending.empty()) return;
    }
    CheckRpc(s, "LeaseTasks");
    progress_->lease_calls.fetch_add(1, std::memory_order_relaxed);
    apply(resp.report_statuses());
    for (const pb::Task& t : resp.tasks()) {
      int64_t stamp = 0;
      if (t.payload().size() < sizeof stamp) Die("task without a timestamp payload");
      std::memcpy(&stamp, t.payload().data(), sizeof stamp);
      latencies_ns_.push_back(now - stamp);
      pending.emplace_back(t.task_id(), t.lease_token());
    }
  }
}

// Reports every task of one lease round: one ReportOutcomes, or one ReportOutcome per task.
// The calls are asynchronous; their callbacks free the slots.
void BenchWorker::ReportRound(const pb::LeaseTasksResponse& resp) {
  if (f_.report_batch) {
    auto* r = new Report;
    Authorize(f_, &r->ctx);
    for (const pb::Task& t : resp.tasks()) {
      pb::ReportOutcomeRequest* one = r->many.add_reports();
      one->set_task_id(t.task_id());
      one->set_lease_token(t.lease_token());
      one->mutable_outcome()->mutable_success();
    }
    r->tasks = static_cast<uint32_t>(resp.tasks_size());
    stub_->async()->ReportOutcomes(&r->ctx, &r->many, &r->many_resp,
                                   [this, r](const grpc::Status& s) { Reported(r, s); });
    return;
  }
  for (const pb::Task& t : resp.tasks()) {
    auto* r = new Report;
    Authorize(f_, &r->ctx);
    r->one.set_task_id(t.task_id());
    r->one.set_lease_token(t.lease_token());
    r->one.mutable_outcome()->mutable_success();
    r->tasks = 1;
    stub_->async()->ReportOutcome(&r->ctx, &r->one, &r->one_resp,
                                  [this, r](const grpc::Status& s) { Reported(r, s); });
  }
}

void BenchWorker::Reported(Report* r, const grpc::Status& s) {
  CheckRpc(s, f_.report_batch ? "ReportOutcomes" : "ReportOutcome");
  for (const pb::ReportStatus& st : r->many_resp.statuses()) {
    if (st.code() != 0) Die("ReportOutcomes: a report failed: " + st.sluice_code());
  }
  const uint32_t n = r->tasks;
  delete r;
  progress_->report_calls.fetch_add(1, std::memory_order_relaxed);
  progress_->Completed(n);
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_ -= n;
  cv_.notify_all();
}

void BenchWorker::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = true;
  if (lease_ctx_ != nullptr) lease_ctx_->TryCancel();
  cv_.notify_all();
}

// ---- Main ---------------------------------------------------------------------------------

double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i = std::min(sorted.size() - 1,
                            static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[i]) / 1e6;
}

// Checks the token and reports what the node is (to stderr).
void DescribeNode(const Flags& f) {
  auto stub = pb::Sluice::NewStub(Connect(f));
  grpc::ClientContext ctx;
  Authorize(f, &ctx);
  pb::GetNodeInfoResponse info;
  CheckRpc(stub->GetNodeInfo(&ctx, pb::GetNodeInfoRequest(), &info), "GetNodeInfo");
  std::fprintf(stderr, "sluice_loadgen: node %s version %s durability %s, queue %s\n",
               info.node_id().c_str(), info.version().c_str(), info.durability().c_str(),
               f.queue.c_str());
  if (f.concurrency > info.limits().max_lease_batch()) {
    Die("--concurrency exceeds the node's max_lease_batch " +
        std::to_string(info.limits().max_lease_batch()));
  }
  if (f.enqueue_batch > info.limits().max_batch_jobs()) {
    Die("--enqueue-batch exceeds the node's max_batch_jobs " +
        std::to_string(info.limits().max_batch_jobs()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = ParseFlags(argc, argv);
  DescribeNode(f);

  Progress progress;
  progress.target = f.jobs;
  std::vector<std::unique_ptr<BenchWorker>> workers;
  for (int i = 0; i < f.workers; ++i)
    workers.push_back(std::make_unique<BenchWorker>(f, i, &progress));
  std::vector<std::thread> worker_threads;
  for (auto& w : workers) worker_threads.emplace_back([&w] { w->Run(); });

  std::atomic<bool> go{false};
  std::vector<ProducerResult> produced(static_cast<size_t>(f.producers));
  std::vector<std::thread> producers;
  const uint64_t k = static_cast<uint64_t>(f.producers);
  for (uint64_t i = 0; i < k; ++i) {
    const uint64_t count = f.jobs / k + (i < f.jobs % k ? 1 : 0);
    producers.emplace_back(Produce, std::cref(f), count, f.rate / static_cast<double>(k), &go,
                           &produced[i]);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // channels connect first
  go.store(true, std::memory_order_release);
  for (auto& t : producers) t.join();

  {
    std::unique_lock<std::mutex> lock(progress.mu);
    if (!progress.cv.wait_for(lock, std::chrono::minutes(10),
                              [&] { return progress.finished.load(); })) {
      Die("timed out with " + std::to_string(progress.done.load()) + " of " +
          std::to_string(f.jobs) + " jobs completed");
    }
  }
  for (auto& w : workers) w->Stop();
  for (auto& t : worker_threads) t.join();

  int64_t first = produced[0].first_ns, last_ack = produced[0].last_ack_ns;
  for (const ProducerResult& p : produced) {
    first = std::min(first, p.first_ns);
    last_ack = std::max(last_ack, p.last_ack_ns);
  }
  std::vector<int64_t> lat;
  for (auto& w : workers) lat.insert(lat.end(), w->latencies_ns().begin(), w->latencies_ns().end());
  std::sort(lat.begin(), lat.end());
  const double jobs = static_cast<double>(f.jobs);
  const double enqueue_rate = jobs / (static_cast<double>(last_ack - first) / 1e9);
  const double e2e_rate = jobs / (static_cast<double>(progress.last_done_ns.load() - first) / 1e9);
  std::fprintf(stderr,
               "sluice_loadgen: start p90 %.3f ms, p99.9 %.3f ms, max %.3f ms; %llu lease calls, "
               "%llu report calls\n",
               Percentile(lat, 90), Percentile(lat, 99.9), Percentile(lat, 100),
               static_cast<unsigned long long>(progress.lease_calls.load()),
               static_cast<unsigned long long>(progress.report_calls.load()));
  std::printf(
      "enqueue_jobs_per_s=%.0f e2e_jobs_per_s=%.0f start_p50_ms=%.3f start_p99_ms=%.3f jobs=%zu\n",
      enqueue_rate, e2e_rate, Percentile(lat, 50), Percentile(lat, 99), lat.size());
  std::fflush(stdout);
  return 0;
}
