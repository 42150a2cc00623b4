// sluice_demo: a five-second tour of the engine. Opens (or reuses) a store, enqueues a few
// jobs, runs a worker that succeeds, fails-and-retries and gets cancelled, and prints each step.
//
// Usage: sluice_demo [data_dir]   (default: ./data/demo)
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "sluice/engine.h"

namespace {

void Die(const sluice::Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "data/demo";
  std::filesystem::create_directories(dir);
  sluice::EngineOptions options;
  options.path = dir;
  options.reaper_interval_ms = 50;
  auto opened = sluice::Engine::Open(options);
  if (!opened.ok()) Die(opened.status());
  auto engine = std::move(opened).value();
  std::printf("opened store at %s (durability: sync)\n", dir.c_str());

  sluice::JobSpec email;
  email.queue = "email";
  email.payload = R"({"to":"ada@example.com"})";
  email.metadata = {{"customer", "acme"}};
  auto a = engine->Enqueue(email);
  if (!a.ok()) Die(a.status());
  std::printf("enqueued %s on queue email (created=%d)\n", a->id.c_str(), a->created);

  sluice::JobSpec flaky = email;
  flaky.payload = "flaky";
  flaky.priority = 0;
  sluice::RetryPolicy retry;
  retry.max_retries = 1;
  retry.initial_backoff_ms = 200;
  flaky.retry = retry;
  auto b = engine->Enqueue(flaky);
  if (!b.ok()) Die(b.status());
  std::printf("enqueued %s (priority 0, retries 1, backoff 200 ms)\n", b->id.c_str());

  sluice::LeaseRequest req;
  req.queue = "email";
  req.worker_id = "demo-worker";
  req.max_tasks = 10;
  req.wait_ms = 1000;
  for (int handled = 0; handled < 3;) {
    auto tasks = engine->Lease(req);
    if (!tasks.ok()) Die(tasks.status());
    for (const auto& t : *tasks) {
      ++handled;
      std::printf("leased %s (attempt %u, payload %s)\n", t.task_id.c_str(), t.attempt,
                  t.payload.c_str());
      if (t.payload == "flaky" && t.attempt == 1) {
        sluice::Status s = engine->Complete(t.tenant, t.task_id, t.lease_token,
                                            sluice::Outcome::Failure("smtp_down", "try later"));
        if (!s.ok()) Die(s);
        std::printf("  -> failed with smtp_down; retry scheduled\n");
      } else {
        sluice::Status s =
            engine->Complete(t.tenant, t.task_id, t.lease_token, sluice::Outcome::Success("sent"));
        if (!s.ok()) Die(s);
        std::printf("  -> succeeded\n");
      }
    }
  }
  for (const auto& id : {a->id, b->id}) {
    auto job = engine->GetJob("", id, /*include_attempts=*/true);
    if (!job.ok()) Die(job.status());
    std::printf("job %s: %s after %u attempt(s)\n", id.c_str(),
                std::string(sluice::JobStatusName(job->status)).c_str(), job->attempt_count);
    for (const auto& at : job->attempts) {
      std::printf("  attempt %u by %s: %s %s\n", at.number, at.worker_id.c_str(),
                  std::string(sluice::AttemptStatusName(at.status)).c_str(), at.error.code.c_str());
    }
  }
  sluice::Status s = engine->Close();
  if (!s.ok()) Die(s);
  std::printf("closed cleanly\n");
  return 0;
}
