"""Fixtures for the sluiced integration suite: a real sluiced over a RocksDB dir in tmp_path.

Every server is started with three tokens (sluice_testlib.SERVER_TOKENS):
  an operator token (acts for the tenant named in each request),
  `tokA@tenant-a` and `tokB@tenant-b` (bound: the tenant comes from the token).
The `server` fixture is module-scoped (one process per test file, to keep the suite fast);
tests on it use fresh ids/queues/tenants (sluice_testlib.uid) so they never see each other.
`servers` starts extra, function-scoped servers with their own flags.
"""
from __future__ import annotations

import pathlib
from typing import Iterator

import pytest

from sluice_testlib import OP_TOKEN, TOKEN_A, TOKEN_B, Api, Servers
from sluiced_harness import Sluiced, pb_grpc


@pytest.fixture(scope="module")
def _module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    servers = Servers(tmp_path_factory.mktemp("sluiced"))
    yield servers
    servers.close()


@pytest.fixture(scope="module")
def server(_module_servers: Servers) -> Sluiced:
    """One sluiced per test module (default flags, sync durability)."""
    return _module_servers.start()


@pytest.fixture(scope="module")
def stub(_module_servers: Servers, server: Sluiced) -> pb_grpc.SluiceStub:
    return _module_servers.stub(server)


@pytest.fixture(scope="module")
def op(stub: pb_grpc.SluiceStub) -> Api:
    """The operator token's client."""
    return Api(stub, OP_TOKEN)


@pytest.fixture(scope="module")
def api_a(stub: pb_grpc.SluiceStub) -> Api:
    """tokA, bound to tenant-a."""
    return Api(stub, TOKEN_A)


@pytest.fixture(scope="module")
def api_b(stub: pb_grpc.SluiceStub) -> Api:
    """tokB, bound to tenant-b."""
    return Api(stub, TOKEN_B)


@pytest.fixture
def servers(tmp_path: pathlib.Path) -> Iterator[Servers]:
    """Extra, function-scoped servers with their own flags (all stopped at teardown):
    `srv = servers.start(extra_args=(...), data_dir=None, separate_stderr=False)`,
    `servers.stub(srv)` for a stub on a channel that is closed at teardown."""
    s = Servers(tmp_path)
    yield s
    s.close()
