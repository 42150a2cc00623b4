"""Exceptions: one class per status, shared in name and meaning with the in-process module,
classified on (gRPC code, sluice-code trailer) from a real sluiced."""

from __future__ import annotations

import ast
import dataclasses
import pathlib
from typing import Iterator

import grpc
import pytest

from clients import Api, make_api
from harness import OP_TOKEN, ROOT, TOKEN_A, Sluiced, free_port, uid
from sluice_client import (
    ClosedError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    LeaseLostError,
    NotFoundError,
    PermissionDeniedError,
    RpcRetryPolicy,
    SluiceError,
    SluiceTimeoutError,
    TooLargeError,
    UnauthenticatedError,
    UnavailableError,
    errors,
)

IN_PROCESS_ERRORS = ROOT / "bindings" / "python" / "src" / "sluice" / "errors.py"


def _in_process_classes() -> dict[str, tuple[int, str, list[str]]]:
    """name -> (status, status_name, bases) of sluice.errors, read from its source (the
    extension module itself needs a C++ build, so the test parses the file)."""
    tree = ast.parse(IN_PROCESS_ERRORS.read_text())
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        status, name = -1, "unknown"
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant):
                target = stmt.targets[0]
                assert isinstance(target, ast.Name)
                if target.id == "status":
                    status = int(stmt.value.value)
                elif target.id == "status_name":
                    name = str(stmt.value.value)
        out[node.name] = (status, name, [b.id for b in node.bases if isinstance(b, ast.Name)])
    return out


def test_same_names_numbers_and_meaning_as_the_in_process_module() -> None:
    theirs = _in_process_classes()
    assert len(theirs) >= 14
    for name, (status, status_name, bases) in theirs.items():
        ours = getattr(errors, name)
        assert (ours.status, ours.status_name) == (status, status_name), name
        for base in bases:  # ValueError, MemoryError, SluiceError stay true here too
            assert issubclass(ours, getattr(errors, base, None) or __builtins__[base]), name
        assert errors.error_class(status) is ours or status == -1


@pytest.mark.parametrize("code,trailer,cls", [
    (grpc.StatusCode.NOT_FOUND, "not_found", errors.NotFoundError),
    (grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", errors.InvalidArgumentError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "too_large", errors.TooLargeError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, None, errors.TooLargeError),
    (grpc.StatusCode.FAILED_PRECONDITION, "lease_lost", errors.LeaseLostError),
    (grpc.StatusCode.FAILED_PRECONDITION, "failed_precondition",
     errors.FailedPreconditionError),
    (grpc.StatusCode.UNAVAILABLE, "closed", errors.ClosedError),
    (grpc.StatusCode.UNAVAILABLE, None, errors.UnavailableError),
    (grpc.StatusCode.INTERNAL, "io_error", errors.StorageError),
    (grpc.StatusCode.INTERNAL, None, errors.InternalError),
    (grpc.StatusCode.DATA_LOSS, "corruption", errors.CorruptionError),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "timeout", errors.SluiceTimeoutError),
    (grpc.StatusCode.DEADLINE_EXCEEDED, None, errors.DeadlineExceededError),
    (grpc.StatusCode.ALREADY_EXISTS, "already_exists", errors.AlreadyExistsError),
    (grpc.StatusCode.ABORTED, "busy", errors.BusyError),
    (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", errors.UnauthenticatedError),
    (grpc.StatusCode.UNAUTHENTICATED, None, errors.UnauthenticatedError),
    (grpc.StatusCode.PERMISSION_DENIED, "permission_denied", errors.PermissionDeniedError),
    (grpc.StatusCode.CANCELLED, "cancelled", errors.CancelledError),
    (grpc.StatusCode.CANCELLED, None, errors.CancelledError),
    (grpc.StatusCode.UNKNOWN, None, errors.SluiceError),
])
def test_classification(code: grpc.StatusCode, trailer: str | None,
                        cls: type[SluiceError]) -> None:
    md = (("sluice-code", trailer),) if trailer else ()
    err = errors.from_status(code, "msg", md)
    assert type(err) is cls
    assert err.grpc_code == code and err.sluice_code == trailer and err.message == "msg"


def test_hierarchy_keeps_generic_handlers_working() -> None:
    assert issubclass(ClosedError, UnavailableError)
    assert issubclass(DeadlineExceededError, SluiceTimeoutError)
    assert issubclass(InvalidArgumentError, ValueError) and issubclass(TooLargeError, ValueError)
    assert errors.from_status(grpc.StatusCode.CANCELLED, "", ()).status_name == "cancelled"


@pytest.fixture(params=["sync", "async"], scope="module")
def api(request: pytest.FixtureRequest, server: Sluiced) -> Iterator[Api]:
    a = make_api(request.param, server.address, OP_TOKEN, timeout=10)
    yield a
    a.close()


def test_server_errors_map_to_their_classes(api: Api, server: Sluiced) -> None:
    q = uid("q-")
    with pytest.raises(NotFoundError) as e:
        api.c.get_job(uid("missing-"))
    assert e.value.grpc_code == grpc.StatusCode.NOT_FOUND and e.value.sluice_code == "not_found"
    with pytest.raises(InvalidArgumentError):
        api.c.enqueue("", b"")
    with pytest.raises(InvalidArgumentError):
        api.c.enqueue(q, b"", priority=100)
    with pytest.raises(TooLargeError) as big:
        api.c.enqueue(q, b"x" * ((1 << 20) + 1))
    assert big.value.sluice_code == "too_large"
    h = api.c.enqueue(q, b"")
    with pytest.raises(FailedPreconditionError) as fp:
        api.c.restart(h.id)
    assert type(fp.value) is FailedPreconditionError
    [t] = api.c.lease(q, "w", max_tasks=1, wait_ms=1000).tasks
    with pytest.raises(LeaseLostError) as ll:
        api.c.complete(dataclasses.replace(t, lease_token=t.lease_token + 1))
    assert ll.value.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    api.c.complete(t)


def test_auth_errors(api: Api, server: Sluiced) -> None:
    for token in (None, "wrong-token"):
        bad = make_api(api.kind, server.address, token)
        try:
            with pytest.raises(UnauthenticatedError):
                bad.c.node_info()
            assert bad.recorder.count("GetNodeInfo") == 1  # never retried
        finally:
            bad.close()
    bound = make_api(api.kind, server.address, TOKEN_A)
    try:
        with pytest.raises(PermissionDeniedError):
            bound.c.enqueue(uid("q-"), b"", tenant="someone-else")
    finally:
        bound.close()


def test_unavailable_after_retries(api: Api) -> None:
    dead = make_api(api.kind, f"127.0.0.1:{free_port()}", OP_TOKEN, timeout=2,
                    retry=RpcRetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02))
    try:
        with pytest.raises(UnavailableError) as e:
            dead.c.node_info()
        assert e.value.attempts == 3 and dead.recorder.count("GetNodeInfo") == 3
    finally:
        dead.close()


def test_request_over_the_message_limit(servers: list[Sluiced], tmp_path: pathlib.Path) -> None:
    s = Sluiced(tmp_path / "small", extra_args=["--max-message-bytes", "4096"]).start()
    servers.append(s)
    api = make_api("sync", s.address, OP_TOKEN)
    try:
        with pytest.raises(TooLargeError) as e:
            api.c.enqueue(uid("q-"), b"x" * 10_000)
        assert e.value.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        api.close()
