"""Shared fixtures. Run with the built package on PYTHONPATH (bindings/python/run_tests.sh).

`sluice` is imported lazily so that test_venv_install.py runs without a build on the path.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    import sluice


@pytest.fixture
def store(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def engine(store: pathlib.Path) -> Iterator[sluice.Engine]:
    import sluice

    # async durability: the tests exercise the binding, not fsync.
    with sluice.Engine(store, durability="async") as e:
        yield e


def lease_one(engine: sluice.Engine, queue: str = "q", worker: str = "w") -> sluice.Task:
    tasks = engine.lease(queue, worker, wait_ms=1000)
    assert len(tasks) == 1, tasks
    return tasks[0]
