"""Checked by test_mypy.py with --strict (never run): the public API types itself for users."""

from __future__ import annotations

from sluice_client import (
    AsyncClient,
    Client,
    JobContext,
    JobFailed,
    JobResult,
    JobStatus,
    Limit,
    RefreshRequest,
    SluiceError,
    Worker,
)


def produce(client: Client) -> JobResult:
    job = client.enqueue("q", json={"a": 1}, limits=[Limit.fixed("k", 2)])
    created: bool | None = job.created
    assert created is not False
    result = job.await_result(timeout=1.0)
    status: JobStatus = result.status
    assert status.terminal
    return result


async def produce_async(client: AsyncClient) -> bytes:
    job = await client.enqueue("q", b"x")
    return (await job.await_result(timeout=1.0)).result


def work(worker: Worker) -> None:
    @worker.handler("q")
    def handle(job: JobContext) -> dict[str, int]:
        if job.cancelled:
            raise JobFailed("stopped", code="stopped")
        return {"attempt": job.attempt}

    @worker.refresh_handler("k")
    def refresh(r: RefreshRequest) -> int:
        return r.current_max + 1

    try:
        worker.run_until_signal(drain_timeout=5.0)
    except SluiceError as e:
        print(e.status_name, e.grpc_code)
