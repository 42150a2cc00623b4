#!/usr/bin/env bash
# Tests of the Python gRPC client and Worker (clients/python) against a real sluiced.
#
#   clients/python/run_tests.sh [--no-venv] [-- pytest args...]
#
# Uses the project venv (.venv, `make venv`: grpcio, grpcio-tools, protobuf, pytest,
# pytest-asyncio, mypy, type stubs), generates src/sluice_client/_proto/ from proto/, runs
# mypy --strict on the package, then pytest (which starts build/server/sluiced itself).
#   --no-venv  skip the test that pip-installs the package into a fresh venv (it needs PyPI
#              or a warm pip cache for hatchling, grpcio-tools, grpcio and protobuf)
# Environment: VENV (default .venv of the repository), SLUICED (the server binary).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
VENV="${VENV:-$root/.venv}"
py="$VENV/bin/python"
venv_test=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-venv) venv_test=0 ;;
    --) shift; break ;;
    *) echo "run_tests.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ! "$py" -c "import grpc, grpc_tools, google.protobuf, pytest, pytest_asyncio, mypy" 2>/dev/null
then
  echo "run_tests.sh: $VENV lacks the pinned tools of requirements-dev.txt: run make venv" >&2
  exit 1
fi
export SLUICED="${SLUICED:-$root/build/server/sluiced}"
if [[ ! -x "$SLUICED" ]]; then
  echo "run_tests.sh: no sluiced at $SLUICED: run make build (or set SLUICED)" >&2
  exit 1
fi
export PYTHONDONTWRITEBYTECODE=1
unset PYTHONPATH

cd "$here"
"$py" gen_proto.py >/dev/null
echo "== mypy --strict (clients/python)"
"$py" -m mypy --strict --config-file pyproject.toml --cache-dir .mypy_cache src/sluice_client
echo "== pytest (clients/python)"
marks=()
[[ $venv_test == 1 ]] || marks=(-m "not venv")
"$py" -m pytest -p no:cacheprovider -q "${marks[@]}" tests "$@"
