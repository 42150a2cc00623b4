#!/usr/bin/env bash
# The server benchmark (issue 5): sluiced over loopback gRPC (bench/loadgen.cc) next to BullMQ on
# Redis (bench/bullmq/bullmq_bench.mjs), same machine, same run, same job count and worker
# concurrency. Every scenario runs RUNS times (default 3), the systems alternating within each
# round (BullMQ, Sluice sync, Sluice async); the summary prints the median of each figure.
#
#   bench/server_bench.sh [build-dir]          (default: build)
#   RUNS=5 JOBS=50000 LAT_JOBS=30000 bench/server_bench.sh
#
# Setup, all in a temporary directory removed at exit:
#   redis-server 127.0.0.1:<free port> --appendonly yes --appendfsync everysec --save ''
#   sluiced --durability sync  and  sluiced --durability async, ephemeral ports (--port-file)
# Scenarios (K=4 producers, 1 worker with 16 slots = 1 BullMQ Worker with concurrency 16):
#   peak        JOBS jobs as fast as possible: Enqueue / Queue.add per job; Sluice workers report
#               each round inside the next LeaseTasks (--piggyback)
#   peak-batch  the same with EnqueueBatch 100 / addBulk 100
#   half-peak   LAT_JOBS jobs paced at half of each system's own median peak e2e rate
#   same-rate   Sluice paced at BullMQ's half-peak rate (the same load for both)
# Figures: enqueue jobs/s, e2e jobs/s (first enqueue -> last completion), enqueue->start
# p50/p99 ms, and the CPU seconds the server (sluiced / redis-server) and the client process
# used during the run. Per-run lines go to stderr; the summary table to stdout.
#
# Needs: build/server/sluiced, build/bench/sluice_loadgen
#   (cmake --build build --target sluiced sluice_loadgen), redis-server (Debian), node >= 18;
#   bench/bullmq/node_modules is installed with `npm ci` when missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
SLUICED=${SLUICED:-$build/server/sluiced}
LOADGEN=${LOADGEN:-$build/bench/sluice_loadgen}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
RUNS=${RUNS:-3}
JOBS=${JOBS:-50000}
JOBS_PEAK=$JOBS
LAT_JOBS=${LAT_JOBS:-30000}
PRODUCERS=${PRODUCERS:-4}
CONCURRENCY=${CONCURRENCY:-16}
PAYLOAD=${PAYLOAD:-64}

for bin in "$SLUICED" "$LOADGEN" "$REDIS_SERVER"; do
  [[ -x $bin ]] || { echo "server_bench.sh: missing $bin (build it, or set the variable)" >&2; exit 1; }
done
if [[ ! -d $here/bullmq/node_modules ]]; then
  (cd "$here/bullmq" && npm ci --no-audit --no-fund >&2)
fi

tmp=$(mktemp -d /tmp/sluice-server-bench-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU seconds (user + system) a process has used so far.
cpu_s() {  # (fields after the command name, which may hold spaces: utime is the 12th)
  sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($12 + $13) / hz}'
}

# ---- Servers ------------------------------------------------------------------------------

redis_port=$(free_port)
mkdir -p "$tmp/redis"
"$REDIS_SERVER" --bind 127.0.0.1 --port "$redis_port" --dir "$tmp/redis" --appendonly yes \
  --appendfsync everysec --save '' --logfile "$tmp/redis/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null || { echo "redis-server did not start" >&2; exit 1; }

token="bench-$RANDOM$RANDOM$RANDOM"
declare -A sluice_pid sluice_addr
for d in sync async; do
  mkdir -p "$tmp/sluice-$d"
  "$SLUICED" --data-dir "$tmp/sluice-$d/data" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --port-file "$tmp/sluice-$d/ports.json" --token "$token" --durability "$d" \
    --log-level warn >"$tmp/sluice-$d/sluiced.out" 2>"$tmp/sluice-$d/sluiced.log" &
  sluice_pid[$d]=$!
  pids+=("$!")
  for _ in $(seq 100); do [[ -s $tmp/sluice-$d/ports.json ]] && break; sleep 0.1; done
  [[ -s $tmp/sluice-$d/ports.json ]] || { echo "sluiced ($d) did not start" >&2; cat "$tmp/sluice-$d/sluiced.log" >&2; exit 1; }
  sluice_addr[$d]=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["grpc"])' \
    "$tmp/sluice-$d/ports.json")
done
echo "redis 127.0.0.1:$redis_port (pid $redis_pid), sluiced sync ${sluice_addr[sync]}," \
  "async ${sluice_addr[async]}" >&2

# ---- Runs ---------------------------------------------------------------------------------

# run SYSTEM SCENARIO ROUND FLAGS...: one run; prints its output line with the CPU figures added.
run() {
  local system=$1 scenario=$2 round=$3
  shift 3
  local queue="$scenario-$round-$system-$$" server_pid line before after t0 t1
  local common=(--jobs="$JOBS" --producers="$PRODUCERS" --workers=1 --concurrency="$CONCURRENCY"
                --payload="$PAYLOAD" --queue="$queue")
  case $system in
    bullmq)
      server_pid=$redis_pid
      set -- node "$here/bullmq/bullmq_bench.mjs" --redis="127.0.0.1:$redis_port" "${common[@]}" "$@" ;;
    sluice-sync|sluice-async)
      local d=${system#sluice-}
      server_pid=${sluice_pid[$d]}
      set -- "$LOADGEN" --target="${sluice_addr[$d]}" --token="$token" "${common[@]}" "$@" ;;
  esac
  before=$(cpu_s "$server_pid")
  line=$(/usr/bin/time -f 'client_cpu_s=%U+%S' -o "$tmp/time" timeout 300 "$@" 2>"$tmp/stderr" |
         grep '^enqueue_jobs_per_s=' | tail -n 1) || true
  after=$(cpu_s "$server_pid")
  if [[ -z $line ]]; then
    echo "server_bench.sh: $system $scenario run $round failed:" >&2
    cat "$tmp/stderr" >&2
    exit 1
  fi
  local client
  client=$(sed -n 's/^client_cpu_s=\(.*\)+\(.*\)$/\1 \2/p' "$tmp/time" | awk '{printf "%.2f", $1 + $2}')
  line="$line server_cpu_s=$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%.2f", a - b}') client_cpu_s=$client"
  echo "  [$scenario] $system run $round: $line" >&2
  echo "$line"
}

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
field() { sed -n "s/.*\<$1=\([0-9.]*\).*/\1/p" <<< "$2"; }

declare -A results  # "scenario|system" -> newline-separated run lines

# scenario NAME "SYSTEM:flags" ...: RUNS rounds, each running every system once, in order.
scenario() {
  local name=$1
  shift
  for ((r = 1; r <= RUNS; r++)); do
    for spec in "$@"; do
      local system=${spec%%:*} flags=${spec#*:}
      local args=()
      read -r -a args <<< "$flags"
      local line
      line=$(run "$system" "$name" "$r" "${args[@]}") || exit 1
      results["$name|$system"]+="$line"$'\n'
    done
  done
}

med() {  # med SCENARIO SYSTEM METRIC: the median of METRIC over the runs
  local vals=() line
  while IFS= read -r line; do
    [[ -n $line ]] && vals+=("$(field "$3" "$line")")
  done <<< "${results["$1|$2"]}"
  printf '%s\n' "${vals[@]}" | median
}

runs_of() {  # runs_of SCENARIO SYSTEM METRIC: the per-run values, "a / b / c"
  local vals=() line
  while IFS= read -r line; do
    [[ -n $line ]] && vals+=("$(field "$3" "$line")")
  done <<< "${results["$1|$2"]}"
  local IFS=/
  echo "${vals[*]}" | sed 's|/| / |g'
}

# Sluice workers report a round's outcomes inside their next LeaseTasks (--piggyback), as a
# BullMQ worker fetches its next job in the call that completes the last one.
all=(bullmq: "sluice-sync:--piggyback" "sluice-async:--piggyback")
scenario peak "${all[@]}"
scenario peak-batch "bullmq:--enqueue-batch=100" "sluice-sync:--enqueue-batch=100 --piggyback" \
  "sluice-async:--enqueue-batch=100 --piggyback"

half() { awk -v r="$1" 'BEGIN {printf "%d", r / 2}'; }
rate_bullmq=$(half "$(med peak bullmq e2e_jobs_per_s)")
rate_sync=$(half "$(med peak sluice-sync e2e_jobs_per_s)")
rate_async=$(half "$(med peak sluice-async e2e_jobs_per_s)")
JOBS=$LAT_JOBS
scenario half-peak "bullmq:--rate=$rate_bullmq" "sluice-sync:--rate=$rate_sync --piggyback" \
  "sluice-async:--rate=$rate_async --piggyback"
scenario same-rate "sluice-sync:--rate=$rate_bullmq --piggyback" \
  "sluice-async:--rate=$rate_bullmq --piggyback"

# ---- Summary ------------------------------------------------------------------------------

printf '\nMedians of %s runs; peak: %s jobs, half-peak/same-rate: %s jobs; %s producers, ' \
  "$RUNS" "$JOBS_PEAK" "$LAT_JOBS" "$PRODUCERS"
printf '1 worker x %s slots, %s-byte payloads\n' "$CONCURRENCY" "$PAYLOAD"
printf '%-11s %-13s %8s %12s %12s %7s %9s %9s %8s %8s  %s\n' scenario system rate enqueue/s \
  e2e/s vs_bull p50_ms p99_ms srv_cpu cli_cpu "e2e runs"
emit() {
  local sc=$1 sys=$2 rate=$3 e2e ratio=-
  [[ -n ${results["$sc|$sys"]:-} ]] || return 0
  e2e=$(med "$sc" "$sys" e2e_jobs_per_s)
  if [[ $rate == max && -n ${results["$sc|bullmq"]:-} ]]; then
    ratio=$(awk -v a="$e2e" -v b="$(med "$sc" bullmq e2e_jobs_per_s)" 'BEGIN {printf "%.2fx", a / b}')
  fi
  printf '%-11s %-13s %8s %12s %12s %7s %9s %9s %8s %8s  %s\n' "$sc" "$sys" "$rate" \
    "$(med "$sc" "$sys" enqueue_jobs_per_s)" "$e2e" "$ratio" \
    "$(med "$sc" "$sys" start_p50_ms)" "$(med "$sc" "$sys" start_p99_ms)" \
    "$(med "$sc" "$sys" server_cpu_s)" "$(med "$sc" "$sys" client_cpu_s)" \
    "$(runs_of "$sc" "$sys" e2e_jobs_per_s)"
}
for sys in bullmq sluice-sync sluice-async; do emit peak "$sys" max; done
for sys in bullmq sluice-sync sluice-async; do emit peak-batch "$sys" max; done
emit half-peak bullmq "$rate_bullmq"
emit half-peak sluice-sync "$rate_sync"
emit half-peak sluice-async "$rate_async"
emit same-rate sluice-sync "$rate_bullmq"
emit same-rate sluice-async "$rate_bullmq"
echo "p99 runs (half-peak): bullmq $(runs_of half-peak bullmq start_p99_ms);" \
  "sync $(runs_of half-peak sluice-sync start_p99_ms); async $(runs_of half-peak sluice-async start_p99_ms)"
