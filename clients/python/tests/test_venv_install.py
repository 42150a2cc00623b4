"""`pip install ./clients/python` into a fresh venv builds the package (generating its protobuf
module from proto/) and the README's example runs against a real sluiced.

Needs PyPI (or a warm pip cache) for the pinned build requirements and grpcio/protobuf.
Set SLUICE_VENV_PYTHON to choose the interpreter that creates the venv (default: python3 on
PATH, i.e. not the project venv).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from harness import OP_TOKEN, Sluiced

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
README = PACKAGE_DIR / "README.md"


def readme_example() -> str:
    text = README.read_text()
    m = re.search(r"<!-- example: quickstart[^\n]*-->\n```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its quickstart example"
    return m.group(1)


CHECK = r"""
import pathlib, sluice_client
pkg = pathlib.Path(sluice_client.__file__).parent
assert "site-packages" in str(pkg), pkg
assert (pkg / "py.typed").exists()
assert (pkg / "_proto" / "sluice" / "v1" / "sluice_pb2.py").exists()
assert (pkg / "_proto" / "sluice" / "v1" / "sluice_pb2.pyi").exists()
print("installed at", pkg)
"""


@pytest.mark.venv
def test_pip_install_into_a_fresh_venv_runs_the_readme_example(
        tmp_path: pathlib.Path, server: Sluiced) -> None:
    python = os.environ.get("SLUICE_VENV_PYTHON") or shutil.which("python3") or sys.executable
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    vpy = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run([vpy, "-m", "pip", "install", "-q", str(PACKAGE_DIR)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # Run from outside the checkout, so the installed copy is the one imported.
    check = subprocess.run([vpy, "-c", CHECK], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    example = tmp_path / "example.py"
    example.write_text(readme_example())
    env.update(SLUICE_ADDRESS=server.address, SLUICE_TOKEN=OP_TOKEN)
    out = subprocess.run([vpy, str(example)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCEEDED {'sent_to': 'ada@example.com'}" in out.stdout, out.stdout
