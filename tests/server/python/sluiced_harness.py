"""Starts a real sluiced on loopback for tests and loads the gRPC stubs generated from proto/.

Environment (set by ctest; defaults fit a local `build/`):
  SLUICED        path of the sluiced binary
  SLUICE_PROTO   the proto/ directory of the repository
Stubs are generated with the venv's grpcio-tools into a temporary directory at import time:
generated code is built, never committed.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from typing import Iterable

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[3]
SLUICED = os.environ.get("SLUICED", str(ROOT / "build" / "server" / "sluiced"))
PROTO_DIR = pathlib.Path(os.environ.get("SLUICE_PROTO", str(ROOT / "proto")))


def _generate_stubs() -> pathlib.Path:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    out = pathlib.Path(tempfile.mkdtemp(prefix="sluice-pystubs-"))
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(PROTO_DIR / "sluice" / "v1" / "sluice.proto"),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed on sluice.proto")
    return out


sys.path.insert(0, str(_generate_stubs()))
from sluice.v1 import sluice_pb2 as pb  # noqa: E402
from sluice.v1 import sluice_pb2_grpc as pb_grpc  # noqa: E402

ADMIN_TOKEN = "admin-token-0123456789"


class Sluiced:
    """One sluiced process over a data directory; restartable (same directory) after kill()."""

    def __init__(self, data_dir: str | os.PathLike[str], tokens: Iterable[str] = (ADMIN_TOKEN,),
                 extra_args: Iterable[str] = (), durability: str = "sync", *,
                 separate_stderr: bool = False) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.tokens = list(tokens)
        self.extra_args = list(extra_args)
        self.durability = durability
        self.proc: subprocess.Popen[bytes] | None = None
        self.grpc_addr = ""
        self.http_addr = ""
        # stdout (and stderr unless separate_stderr) is appended here.
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        # With separate_stderr, stderr (the structured log) is appended here instead.
        self.stderr_path: pathlib.Path | None = (
            self.data_dir.parent / (self.data_dir.name + ".stderr.log") if separate_stderr
            else None)

    def start(self, timeout: float = 30.0) -> "Sluiced":
        port_file = self.data_dir.parent / (self.data_dir.name + ".ports.json")
        if port_file.exists():
            port_file.unlink()
        args = [SLUICED, "--data-dir", str(self.data_dir), "--grpc-listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0", "--port-file", str(port_file),
                "--durability", self.durability]
        for t in self.tokens:
            args += ["--token", t]
        args += self.extra_args
        with open(self.log_path, "ab") as log:
            if self.stderr_path is None:
                self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            else:
                with open(self.stderr_path, "ab") as err:
                    self.proc = subprocess.Popen(args, stdout=log, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                logs = [self.log_path] + ([self.stderr_path] if self.stderr_path else [])
                text = "".join(p.read_text(errors="replace") for p in logs if p.exists())
                raise RuntimeError(f"sluiced exited with {self.proc.returncode}: "
                                   f"{text[-4000:]}")
            if port_file.exists():
                ports = json.loads(port_file.read_text())
                self.grpc_addr, self.http_addr = ports["grpc"], ports["http"]
                return self
            time.sleep(0.02)
        raise TimeoutError("sluiced did not write its port file")

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.grpc_addr)

    def stub(self) -> pb_grpc.SluiceStub:
        return pb_grpc.SluiceStub(self.channel())

    def kill(self) -> None:
        """SIGKILL: no drain, no clean close (crash tests)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the drain; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> "Sluiced":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()


def auth(token: str = ADMIN_TOKEN) -> list[tuple[str, str]]:
    """Call metadata carrying a bearer token."""
    return [("authorization", f"Bearer {token}")]
