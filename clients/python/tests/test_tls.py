"""TLS: both clients and the Worker reach a sluiced serving TLS when given its root certificate
(and still need their token); without TLS they cannot."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Iterator

import pytest

from clients import make_api
from harness import OP_TOKEN, Sluiced, uid
from sluice_client import Client, UnauthenticatedError, UnavailableError, Worker


def _self_signed(d: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    key, cert = d / "tls.key", d / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, cert


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sluiced, bytes]]:
    d = tmp_path_factory.mktemp("tls")
    key, cert = _self_signed(d)
    s = Sluiced(d / "data", extra_args=["--tls-cert", str(cert), "--tls-key", str(key)]).start()
    yield s, cert.read_bytes()
    s.stop()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_tls_client(kind: str, tls_server: tuple[Sluiced, bytes]) -> None:
    s, root = tls_server
    api = make_api(kind, s.address, OP_TOKEN, root_certificates=root)
    try:
        h = api.c.enqueue(uid("q-"), b"over tls")
        assert api.c.get_job(h.id).payload == b"over tls"
    finally:
        api.close()
    no_token = make_api(kind, s.address, None, root_certificates=root)
    try:
        with pytest.raises(UnauthenticatedError):
            no_token.c.node_info()
    finally:
        no_token.close()
    plain = make_api(kind, s.address, OP_TOKEN, timeout=2)
    try:
        with pytest.raises(UnavailableError):
            plain.c.node_info()
    finally:
        plain.close()


def test_tls_worker(tls_server: tuple[Sluiced, bytes]) -> None:
    s, root = tls_server
    q = uid("q-")
    worker = Worker(s.address, token=OP_TOKEN, root_certificates=root, poll_wait_ms=200)
    worker.handler(q)(lambda job: job.payload.upper())
    with Client(connection=worker.connection) as c, worker.running():
        assert c.enqueue(q, b"tls").await_result(timeout=10).result == b"TLS"
