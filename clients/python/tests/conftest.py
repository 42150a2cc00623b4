"""Fixtures: a real sluiced per test module (tests use fresh queues/ids, see harness.uid), and
clients of it. The package is imported from src/ (run_tests.sh generates its protobuf module
there first)."""

from __future__ import annotations

import pathlib
import sys
from typing import AsyncIterator, Iterator

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from harness import OP_TOKEN, Sluiced  # noqa: E402
from sluice_client import AsyncClient, Client  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sluiced]:
    s = Sluiced(tmp_path_factory.mktemp("sluiced") / "data").start()
    yield s
    s.stop()


@pytest.fixture
def servers(tmp_path: pathlib.Path) -> Iterator[list[Sluiced]]:
    """Extra servers a test starts itself (append them); stopped at teardown."""
    started: list[Sluiced] = []
    yield started
    for s in started:
        s.kill()


@pytest.fixture(scope="module")
def client(server: Sluiced) -> Iterator[Client]:
    with Client(server.address, token=OP_TOKEN, timeout=15) as c:
        yield c


@pytest.fixture
async def aclient(server: Sluiced) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address, token=OP_TOKEN, timeout=15) as c:
        yield c
