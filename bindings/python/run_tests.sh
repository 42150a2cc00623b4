#!/usr/bin/env bash
# Builds the sluice Python extension and runs its tests under Debian's /usr/bin/python3.
#
#   bindings/python/run_tests.sh [--no-build] [--venv] [--bench] [-- pytest args...]
#
#   --no-build  skip the build (make test already built it)
#   --venv      also run the slow test that pip-installs the package into a fresh venv
#   --bench     also run bench_e2e.py
#
# Environment: BUILD (build directory, default build/ when the top-level CMakeLists.txt has
# SLUICE_BUILD_PYTHON, else build-python), PYTHON (default /usr/bin/python3),
# JOBS (default 2). Needs the Debian packages pybind11-dev python3-dev python3-pytest
# python3-venv (and network to PyPI for --venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PYTHON="${PYTHON:-/usr/bin/python3}"
JOBS="${JOBS:-2}"
build=1 venv=0 bench=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) build=0 ;;
    --venv) venv=1 ;;
    --bench) bench=1 ;;
    --) shift; break ;;
    *) echo "run_tests.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if grep -q SLUICE_BUILD_PYTHON "$root/CMakeLists.txt"; then
  # (b) the top-level build, with the Python module switched on.
  BUILD="${BUILD:-$root/build}"
  source_dir="$root"
  flags=(-DSLUICE_BUILD_PYTHON=ON "-DPython3_EXECUTABLE=$PYTHON")
else
  # (a) standalone: bindings/python builds core and capi itself.
  BUILD="${BUILD:-$root/build-python}"
  source_dir="$here"
  flags=("-DPython3_EXECUTABLE=$PYTHON")
fi
case "$BUILD" in /*) ;; *) BUILD="$root/$BUILD" ;; esac

if [[ $build == 1 ]]; then
  generator=()
  if [[ ! -f "$BUILD/CMakeCache.txt" ]] && command -v ninja >/dev/null; then
    generator=(-G Ninja)
  fi
  cmake -S "$source_dir" -B "$BUILD" "${generator[@]}" "${flags[@]}" >/dev/null
  cmake --build "$BUILD" --target _sluice -j"$JOBS"
fi

export PYTHONPATH="$BUILD/python"
export PYTHONDONTWRITEBYTECODE=1
cd "$here"
"$PYTHON" -m pytest -p no:cacheprovider -q -m "not venv" tests "$@"
if [[ $venv == 1 ]]; then
  "$PYTHON" -m pytest -p no:cacheprovider -q -m venv tests/test_venv_install.py
fi
if [[ $bench == 1 ]]; then
  "$PYTHON" bench_e2e.py
fi
