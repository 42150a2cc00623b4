"""Checked by test_mypy.py with --strict (never run): the public API types itself for users."""

from __future__ import annotations

from sluice_client import (
    AsyncClient,
    CancellationToken,
    CancelledError,
    Client,
    Job,
    JobPage,
    JobContext,
    JobFailed,
    JobResult,
    JobStatus,
    JobView,
    Limit,
    QueryCell,
    QueryResult,
    QueueCounts,
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


def find(client: Client) -> list[QueryCell]:
    page: JobPage = client.list_jobs("q", statuses=[JobStatus.FAILED], metadata={"k": "v"},
                                     limit=10, view=JobView.INDEX)
    cursor: str = page.next_cursor
    failed: list[Job] = list(client.iter_jobs("q", statuses=[JobStatus.FAILED], page_size=100))
    counts: list[QueueCounts] = client.count_jobs()
    token = CancellationToken()
    try:
        result: QueryResult = client.query("SELECT 1", timeout_ms=100, max_rows=1,
                                           cancellation=token)
    except CancelledError:
        return []
    print(cursor, failed, counts[0].waiting, result.columns)
    return list(result.rows[0])


async def find_async(client: AsyncClient) -> int:
    n = 0
    async for _ in client.iter_jobs(metadata=[("k", "v")]):
        n += 1
    rows = (await client.query("SELECT 1")).rows
    first = rows[0][0]
    return n + (first if isinstance(first, int) else 0)
