#include "core/test_util.h"

#include <stdlib.h>

#include <cstdio>
#include <filesystem>

namespace sluice::testing {

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/sluice-test-XXXXXX";
  char* made = mkdtemp(tmpl.data());
  if (made == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

EngineOptions TestOptions(const std::string& path, std::shared_ptr<Clock> clock,
                          uint32_t reaper_interval_ms) {
  EngineOptions o;
  o.path = path;
  o.durability = Durability::kAsync;
  o.clock = std::move(clock);
  o.reaper_interval_ms = reaper_interval_ms;
  o.rng_seed = 42;
  o.block_cache_bytes = 8 << 20;
  return o;
}

std::unique_ptr<Engine> OpenOrDie(const EngineOptions& options) {
  auto r = Engine::Open(options);
  if (!r.ok()) {
    std::fprintf(stderr, "Engine::Open(%s) failed: %s\n", options.path.c_str(),
                 r.status().ToString().c_str());
    std::abort();
  }
  return std::move(r).value();
}

JobSpec Spec(const std::string& queue, const std::string& payload) {
  JobSpec s;
  s.queue = queue;
  s.payload = payload;
  return s;
}

ConcurrencyLimit Fixed(const std::string& key, uint32_t max) {
  ConcurrencyLimit l;
  l.key = key;
  l.max = max;
  return l;
}

ConcurrencyLimit Floating(const std::string& key, uint32_t default_max, uint64_t interval_ms,
                          std::map<std::string, std::string> metadata) {
  ConcurrencyLimit l;
  l.kind = ConcurrencyLimit::Kind::kFloating;
  l.key = key;
  l.max = default_max;
  l.refresh_interval_ms = interval_ms;
  l.metadata = std::move(metadata);
  return l;
}

}  // namespace sluice::testing
