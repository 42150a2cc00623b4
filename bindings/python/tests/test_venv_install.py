"""`pip install ./bindings/python` into a fresh venv builds the package and it works.

Slow (a full CMake build of the engine, ~2-3 min on 2 cores) and needs PyPI for the pinned
build requirements, so it is marked `venv` and run on its own:
    python3 -m pytest -m venv bindings/python/tests/test_venv_install.py
Set SLUICE_VENV_PYTHON to choose the interpreter that creates the venv (default: this one).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]

SMOKE = r"""
import sys, tempfile, sluice
assert sluice.library_version() == "0.1.0", sluice.library_version()
with tempfile.TemporaryDirectory() as d, sluice.Engine(d, durability="async") as e:
    r = e.enqueue("q", b"\x00hello\xff")
    [task] = e.lease("q", "venv-worker", wait_ms=1000)
    assert task.payload == b"\x00hello\xff"
    e.complete(task, b"ok")
    assert e.get_result(r.id).result == b"ok"
    try:
        e.get_job("missing")
    except sluice.NotFoundError as err:
        assert err.status == 1
import pathlib
pkg = pathlib.Path(sluice.__file__).parent
assert (pkg / "py.typed").exists() and (pkg / "_sluice.pyi").exists()
assert "site-packages" in str(pkg), pkg
print("venv ok", sluice.__file__)
"""


@pytest.mark.venv
def test_pip_install_into_fresh_venv(tmp_path: pathlib.Path) -> None:
    python = os.environ.get("SLUICE_VENV_PYTHON", sys.executable)
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        [str(vpy), "-m", "pip", "install", "--no-cache-dir", str(PACKAGE_DIR)],
        env=env, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # Import from outside the source tree so the installed copy is the one tested.
    out = subprocess.run([str(vpy), "-c", SMOKE], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "venv ok" in out.stdout
