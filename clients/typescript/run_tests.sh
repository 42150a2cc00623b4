#!/usr/bin/env bash
# Builds and tests the TypeScript client (called by `make test`; runs on its own too).
#
#   clients/typescript/run_tests.sh          npm ci, codegen + build, toxiproxy, every test
#   SLUICE_TS_SKIP_PACK=1 ... .sh            skip the pack-and-install test
#   SLUICE_TS_SKIP_FAULTS=1 ... .sh          skip the toxiproxy fault test
#   FAULT_JOBS=N                             jobs in the fault test (default 3000)
#   SLUICED=path                             the server binary (default build/server/sluiced)
#
# Needs node >= 20, npm, protoc (protobuf-compiler), go (for toxiproxy, installed once into
# .tools/), openssl (TLS test) and a built build/server/sluiced.
set -euo pipefail
cd "$(dirname "$0")"

sluiced=${SLUICED:-../../build/server/sluiced}
[[ -x $sluiced ]] || { echo "run_tests.sh: $sluiced is missing (build the server first)" >&2; exit 1; }
export SLUICED=$(cd "$(dirname "$sluiced")" && pwd)/$(basename "$sluiced")

# Reinstall only when the lockfile changed.
stamp=node_modules/.sluice-lock-stamp
if [[ ! -f $stamp ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --ignore-scripts  # no dependency needs an install script
  cp package-lock.json "$stamp"
fi
npm run build

tests=(test/churn-map.test.mjs test/client.test.mjs test/finding.test.mjs test/worker.test.mjs test/floating.test.mjs)
if [[ ${SLUICE_TS_SKIP_FAULTS:-0} != 1 ]]; then
  TOXIPROXY_SERVER=$(scripts/install-toxiproxy.sh)
  export TOXIPROXY_SERVER
  tests+=(test/faults.test.mjs)
fi
[[ ${SLUICE_TS_SKIP_PACK:-0} == 1 ]] || tests+=(test/pack.test.mjs)

node --test --test-concurrency=1 "${tests[@]}"
