"""The package passes `mypy --strict` (pyproject.toml [tool.mypy]), and so does code using it."""

from __future__ import annotations

import pathlib
import subprocess
import sys

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]


def test_mypy_strict() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", "pyproject.toml",
         "--cache-dir", ".mypy_cache", "src/sluice_client", "tests/typed_usage.py"],
        cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
