"""TLS: with --tls-cert/--tls-key sluiced serves gRPC over TLS only; a client that trusts the
certificate connects (and still needs its token), a plaintext client cannot."""
from __future__ import annotations

import pathlib
import subprocess

import grpc
import pytest

from sluice_testlib import OP_TOKEN, Servers
from sluiced_harness import auth, pb, pb_grpc


def _self_signed(dir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    key, cert = dir / "tls.key", dir / "tls.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return key, cert


def test_tls_serves_trusting_clients_and_refuses_plaintext(tmp_path: pathlib.Path,
                                                            servers: Servers) -> None:
    key, cert = _self_signed(tmp_path)
    srv = servers.start(extra_args=("--tls-cert", str(cert), "--tls-key", str(key)))
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(srv.grpc_addr, creds) as ch:
        stub = pb_grpc.SluiceStub(ch)
        info = stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=auth(OP_TOKEN), timeout=10)
        assert info.version
        with pytest.raises(grpc.RpcError) as e:
            stub.GetNodeInfo(pb.GetNodeInfoRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(srv.grpc_addr) as plain:
        with pytest.raises(grpc.RpcError) as e:
            pb_grpc.SluiceStub(plain).GetNodeInfo(pb.GetNodeInfoRequest(),
                                                  metadata=auth(OP_TOKEN), timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_with_an_unreadable_key_fails_to_start(tmp_path: pathlib.Path,
                                                    servers: Servers) -> None:
    _, cert = _self_signed(tmp_path)
    with pytest.raises(RuntimeError, match="exited"):
        servers.start(extra_args=("--tls-cert", str(cert), "--tls-key", str(tmp_path / "none")))
