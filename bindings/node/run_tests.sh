#!/usr/bin/env bash
# Builds and tests the Node binding (called by `make test`; runs on its own too).
#
#   bindings/node/run_tests.sh            npm ci, build (addon + TypeScript), every test
#   SLUICE_NODE_SKIP_PACK=1 ... .sh       skip the slow pack-and-install test
#   JOBS=N                                parallel compile jobs (default 2)
#
# Needs node >= 20, npm, g++, protoc and the RocksDB/protobuf/SQLite dev packages (make deps).
set -euo pipefail
cd "$(dirname "$0")"

export JOBS="${JOBS:-2}"
# node-gyp must use the installed Node's headers and never download any: Debian/NodeSource
# Node ships them in <prefix>/include/node.
node_prefix="$(dirname "$(dirname "$(command -v node)")")"
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node.h" ]; then
  export npm_config_nodedir="$node_prefix"
fi
if command -v ccache >/dev/null 2>&1; then
  export CC="${CC:-ccache gcc}" CXX="${CXX:-ccache g++}"
fi

# Reinstall only when the lockfile changed: `npm ci` rebuilds the addon from scratch.
stamp=node_modules/.sluice-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --ignore-scripts
  cp package-lock.json "$stamp"
fi
npm run build

node --test --test-concurrency=1 test/*.test.js
