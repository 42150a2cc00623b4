"""Starts real sluiced processes on loopback for the sluice_client tests (no fakes).

Environment: SLUICED (the binary; default build/server/sluiced of this checkout).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import uuid
from typing import Iterable, Optional

ROOT = pathlib.Path(__file__).resolve().parents[3]
SLUICED = os.environ.get("SLUICED", str(ROOT / "build" / "server" / "sluiced"))

OP_TOKEN = "client-op-token-7f3a"          # operator: acts for the tenant each call names
TOKEN_A, TENANT_A = "client-tok-a-19c2", "tenant-a"   # bound to tenant-a
TOKENS = (OP_TOKEN, f"{TOKEN_A}@{TENANT_A}")


def uid(prefix: str = "") -> str:
    """A fresh name: tests share a server, so every queue, id, key and tenant is unique."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sluiced:
    """One sluiced over a data directory; stop() drains it (SIGTERM), kill() does not."""

    def __init__(self, data_dir: pathlib.Path, tokens: Iterable[str] = TOKENS,
                 extra_args: Iterable[str] = (), grpc_port: int = 0,
                 durability: str = "async") -> None:
        self.data_dir = data_dir
        self.durability = durability
        self.tokens = list(tokens)
        self.extra_args = list(extra_args)
        self.grpc_port = grpc_port
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.address = ""
        self.http_address = ""  # /healthz, /readyz, /metrics
        self.log_path = data_dir.parent / (data_dir.name + ".log")

    def start(self, timeout: float = 30.0) -> Sluiced:
        if not os.access(SLUICED, os.X_OK):
            raise RuntimeError(f"sluiced not found at {SLUICED}: build it (make build) or set "
                               "SLUICED")
        port_file = self.data_dir.parent / (self.data_dir.name + ".ports.json")
        port_file.unlink(missing_ok=True)
        args = [SLUICED, "--data-dir", str(self.data_dir),
                "--grpc-listen", f"127.0.0.1:{self.grpc_port}",
                "--http-listen", "127.0.0.1:0", "--port-file", str(port_file),
                "--durability", self.durability, "--reaper-interval-ms", "20", "--log-level", "warn"]
        for t in self.tokens:
            args += ["--token", t]
        args += self.extra_args
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluiced exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            if port_file.exists():
                ports = json.loads(port_file.read_text())
                self.address, self.http_address = ports["grpc"], ports["http"]
                self.grpc_port = int(self.address.rsplit(":", 1)[1])
                return self
            time.sleep(0.01)
        raise TimeoutError("sluiced did not write its port file")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
