"""How a client reaches sluiced: address, token, TLS, deadlines and the retry policy of calls.

One :class:`Connection` describes it for :class:`~sluice_client.Client`,
:class:`~sluice_client.AsyncClient` and :class:`~sluice_client.Worker` alike, so a worker can
be started with ``Worker(connection=client.connection, ...)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Tuple

import grpc

from ._pb import pb

__all__ = ["Connection", "RpcRetryPolicy", "RETRYABLE_CODES", "QUERY_RETRYABLE_CODES", "METHODS",
           "RPC_METHODS", "MethodInfo"]

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# What a Query is retried on: only failures that mean it never ran.
QUERY_RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class RpcRetryPolicy:
    """Retries of idempotent calls that failed with UNAVAILABLE or DEADLINE_EXCEEDED.

    Before retry ``r`` (1-based) the client sleeps ``min(max_backoff, initial_backoff *
    multiplier ** (r - 1))`` seconds, or with ``jitter`` a uniform draw from ``[0, that]`` (full
    jitter, so many clients that failed together do not come back together). At most
    ``max_attempts`` sends in all; each send has the call's own deadline.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1.0:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return random.uniform(0.0, cap) if self.jitter else cap

    @classmethod
    def never(cls) -> RpcRetryPolicy:
        """No retries: every call is sent once."""
        return cls(max_attempts=1)


# Default channel arguments: reconnect quickly after a server restart (gRPC's default waits 1 s
# and then backs off to 120 s), and accept responses of any size (a lease of many tasks with
# 1 MiB payloads exceeds the 4 MiB default; the server is trusted and caps its own messages).
_DEFAULT_CHANNEL_OPTIONS: Tuple[Tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.max_receive_message_length", -1),
)


def check_wait(seconds: float, what: str) -> float:
    """A wait or timeout in seconds: a number >= 0, infinity included (no limit). Raises
    ValueError for a negative or NaN one (NaN compares false to everything: it would never end
    a wait, or end it at once), TypeError for something that is no number."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(seconds).__name__}")
    if not seconds >= 0:
        raise ValueError(f"{what} must be >= 0 seconds (infinity waits without a limit), "
                         f"not {seconds!r}")
    return float(seconds)


@dataclass(frozen=True)
class Connection:
    """Where and how to call sluiced.

    Attributes:
        target: ``host:port`` of the node's gRPC listener.
        token: bearer token sent as ``authorization: Bearer <token>`` on every call.
        tenant: the tenant of calls that name none (``""`` is the default tenant; a
            tenant-bound token's tenant wins on the server).
        tls: use TLS; implied by ``root_certificates`` or a client certificate.
        root_certificates: PEM roots to trust (None: the system's roots).
        private_key, certificate_chain: PEM client certificate (mutual TLS), optional.
        server_name: the name to verify in the server certificate (TLS), when it differs from
            the target's host.
        timeout: the default deadline of each call in seconds (long-polls add their wait).
        retry: retries of idempotent calls (:class:`RpcRetryPolicy`).
        channel_options: extra gRPC channel arguments (they override the defaults).
        generate_ids: give every enqueued job without an id a client-generated UUIDv7, so the
            enqueue is idempotent and can be retried (True by default). With False, an enqueue
            without id is sent once.
    """

    target: str
    token: Optional[str] = None
    tenant: str = ""
    tls: bool = False
    root_certificates: Optional[bytes] = None
    private_key: Optional[bytes] = None
    certificate_chain: Optional[bytes] = None
    server_name: Optional[str] = None
    timeout: float = 30.0
    retry: RpcRetryPolicy = field(default_factory=RpcRetryPolicy)
    channel_options: Sequence[Tuple[str, Any]] = ()
    generate_ids: bool = True

    def __post_init__(self) -> None:
        check_wait(self.timeout, "timeout")

    @property
    def secure(self) -> bool:
        return bool(self.tls or self.root_certificates or self.certificate_chain)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates,
                                            private_key=self.private_key,
                                            certificate_chain=self.certificate_chain)

    def options(self) -> list[Tuple[str, Any]]:
        merged = dict(_DEFAULT_CHANNEL_OPTIONS)
        if self.server_name:
            merged["grpc.ssl_target_name_override"] = self.server_name
        merged.update(dict(self.channel_options))
        return list(merged.items())

    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


@dataclass(frozen=True)
class MethodInfo:
    """One RPC of the service: its path, message types and whether a retry is safe.

    ``idempotent`` is None for the calls whose safety depends on the request (Enqueue and
    EnqueueBatch: safe when every job carries an id)."""

    name: str
    path: str
    request_type: Any
    response_type: Any
    idempotent: Optional[bool]
    streaming: bool = False  # a stream of requests and answers (LeaseStream)


# Which calls may be sent twice. Reads, heartbeats (extending a lease twice is harmless),
# cancel (a second cancel answers the same), expedite (a no-op on a waiting job) and
# set-floating-limit are idempotent; reports are fenced by their lease token, so a replay after
# the first landed changes nothing (it gets lease_lost). LeaseTasks is never retried (a lost
# answer would strand leased tasks until their leases expire), nor are RestartJob and DeleteJob
# (a second copy answers failed_precondition / not_found for a call that succeeded). Query is a
# read but is retried only on UNAVAILABLE (the clients pass that rule themselves): a query that
# ran out of time would only run out again.
_IDEMPOTENT: dict[str, Optional[bool]] = {
    "Enqueue": None, "EnqueueBatch": None, "LeaseTasks": False, "LeaseStream": False,
    "Heartbeat": True,
    "ReportOutcome": True, "ReportOutcomes": True, "HeartbeatRefresh": True,
    "ReportRefreshOutcome": True, "GetJob": True, "GetJobResult": True, "CancelJob": True,
    "RestartJob": False, "ExpediteJob": True, "DeleteJob": False, "GetFloatingLimit": True,
    "ListFloatingLimits": True, "SetFloatingLimit": True, "GetConcurrencyKey": True,
    "ListConcurrencyKeys": True, "GetNodeInfo": True, "ListJobs": True, "CountJobs": True,
    "Query": False,
}

# The client method that wraps each RPC (the same name on Client and AsyncClient).
RPC_METHODS: dict[str, str] = {
    "Enqueue": "enqueue", "EnqueueBatch": "enqueue_batch", "LeaseTasks": "lease",
    "LeaseStream": "lease_stream",
    "Heartbeat": "heartbeat", "ReportOutcome": "report_outcome",
    "ReportOutcomes": "report_outcomes", "HeartbeatRefresh": "heartbeat_refresh",
    "ReportRefreshOutcome": "complete_refresh", "GetJob": "get_job",
    "GetJobResult": "get_result", "CancelJob": "cancel", "RestartJob": "restart",
    "ExpediteJob": "expedite", "DeleteJob": "delete", "GetFloatingLimit": "floating_limit",
    "ListFloatingLimits": "list_floating_limits", "SetFloatingLimit": "set_floating_limit",
    "GetConcurrencyKey": "concurrency_key", "ListConcurrencyKeys": "list_concurrency_keys",
    "GetNodeInfo": "node_info", "ListJobs": "list_jobs", "CountJobs": "count_jobs",
    "Query": "query",
}


def _methods() -> dict[str, MethodInfo]:
    service = pb.DESCRIPTOR.services_by_name["Sluice"]
    out = {}
    for m in service.methods:
        if m.name not in _IDEMPOTENT:
            raise RuntimeError(f"sluice_client does not know RPC {m.name}: update connection.py")
        out[m.name] = MethodInfo(m.name, f"/{service.full_name}/{m.name}",
                                 getattr(pb, m.input_type.name), getattr(pb, m.output_type.name),
                                 _IDEMPOTENT[m.name],
                                 m.client_streaming or m.server_streaming)
    return out


# Built from the generated service descriptor: the .proto is the one source of the paths.
METHODS: dict[str, MethodInfo] = _methods()
