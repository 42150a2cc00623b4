#!/usr/bin/env bash
# The benchmark matrix: each scenario RUNS times (default 3), printing the median jobs/s
# (or, for latency scenarios, the median of each reported percentile).
#
#   bench/run_all.sh [extra engine_bench flags...]
#   ENGINE_BENCH=path/to/engine_bench RUNS=5 bench/run_all.sh --payload=256
#
# Build first: cmake -S . -B build -G Ninja && cmake --build build -j2 --target engine_bench
# Per-run lines go to stderr; the summary (one line per scenario) to stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BIN=${ENGINE_BENCH:-$here/../build/bench/engine_bench}
RUNS=${RUNS:-3}
[[ -x $BIN ]] || { echo "run_all.sh: no engine_bench at $BIN (build it, or set ENGINE_BENCH)" >&2; exit 1; }

# Entries: "name|engine_bench flags[|metrics]"; metrics are the key=value fields of the
# scenario's output line to report (comma-separated; default jobs_per_s).
matrix=(
  "async e2e, 16 threads|--scenario=e2e --durability=async --threads=16"
  "async batch enqueue (1000/batch)|--scenario=batch --durability=async"
  "sync batch enqueue (1000/batch)|--scenario=batch --durability=sync"
  "sync e2e, 16 threads|--scenario=e2e --durability=sync --threads=16"
  "async drain, 1 worker x 16 slots (ReportAndLease rounds)|--scenario=drain --durability=async"
  "async e2e, 16 threads, prefill 10k|--scenario=e2e --durability=async --threads=16 --prefill=10000"
  "async e2e, 16 threads, prefill 1M|--scenario=e2e --durability=async --threads=16 --prefill=1000000"
  # Concurrency limits (compare with "async e2e, 16 threads" above).
  "async e2e, 16 threads, limit {hot,4}|--scenario=limits_key4 --durability=async --threads=16"
  "async e2e, 16 threads, 10k keys max 1|--scenario=limits_10k --durability=async --threads=16"
  "async grant latency (us), key max 1|--scenario=grant_latency --durability=async|grant_p50_us,grant_p99_us"
  "sync grant latency (us), key max 1|--scenario=grant_latency --durability=sync|grant_p50_us,grant_p99_us"
)

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

for entry in "${matrix[@]}"; do
  IFS='|' read -r name flags metrics <<< "$entry"
  metrics=${metrics:-jobs_per_s}
  read -r -a args <<< "$flags"
  IFS=',' read -r -a mlist <<< "$metrics"
  lines=()
  for ((r = 1; r <= RUNS; r++)); do
    line=$("$BIN" "${args[@]}" "$@" | grep '^scenario=' | tail -n 1)
    echo "  [$name] run $r: $line" >&2
    lines+=("$line")
  done
  for m in "${mlist[@]}"; do
    vals=()
    for line in "${lines[@]}"; do
      vals+=("$(sed -n "s/.*[[:space:]]$m=\([0-9.]*\).*/\1/p" <<< "$line")")
    done
    med=$(printf '%s\n' "${vals[@]}" | median)
    unit=jobs/s
    [[ $m == jobs_per_s ]] || unit=$m
    printf '%-40s median %10s %s   (runs: %s)\n' "$name" "$med" "$unit" "${vals[*]}"
  done
done
