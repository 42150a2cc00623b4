#!/usr/bin/env bash
# The benchmark matrix: each scenario RUNS times (default 3), printing the median jobs/s.
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

matrix=(
  "async e2e, 16 threads|--scenario=e2e --durability=async --threads=16"
  "async batch enqueue (1000/batch)|--scenario=batch --durability=async"
  "sync batch enqueue (1000/batch)|--scenario=batch --durability=sync"
  "sync e2e, 16 threads|--scenario=e2e --durability=sync --threads=16"
  "async e2e, 16 threads, prefill 10k|--scenario=e2e --durability=async --threads=16 --prefill=10000"
  "async e2e, 16 threads, prefill 1M|--scenario=e2e --durability=async --threads=16 --prefill=1000000"
)

for entry in "${matrix[@]}"; do
  name=${entry%%|*}
  read -r -a args <<< "${entry#*|}"
  vals=()
  for ((r = 1; r <= RUNS; r++)); do
    line=$("$BIN" "${args[@]}" "$@" | grep '^scenario=' | tail -n 1)
    echo "  [$name] run $r: $line" >&2
    vals+=("${line##*jobs_per_s=}")
  done
  median=$(printf '%s\n' "${vals[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  printf '%-40s median %10s jobs/s   (runs: %s)\n' "$name" "$median" "${vals[*]}"
done
