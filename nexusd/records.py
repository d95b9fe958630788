"""One record per finished request: the single hand-off to metrics, stats, history, logs
and the event bus (design §2). Built once, when the request ends, from its trace.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nexusd.routing.decisions import RequestTrace


@dataclass(slots=True, frozen=True)
class RequestRecord:
    request_id: str
    time: float  # unix seconds, when the request arrived
    requested_model: str
    served_model: str | None
    backend: str | None  # backend id
    backend_name: str | None
    backend_type: str | None  # "local" | "cloud"
    status: str  # "success" | "error"
    status_code: int
    latency_ms: float
    ttft_ms: float | None
    overhead_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    stream: bool
    route_reason: str | None
    retries: int
    fallback_model: str | None
    outcome: str  # ok | error | passed_through | client_disconnected
    error_type: str | None
    error: str | None
    failed_backends: tuple[str, ...] = ()
    #: which API the client called: "chat" | "completions" | "embeddings"
    endpoint: str = "chat"
    #: USD; None when nothing was served or the cloud model has no price
    cost_usd: float | None = None
    #: "free" (local backend) | "exact" (provider's usage) | "estimated" | "unknown" | None
    cost_status: str | None = None
    #: the client's API dialect: "openai" | "anthropic" (Messages) | "responses"
    dialect: str = "openai"
    #: the answer was translated between dialects (False: bytes passed through natively)
    translated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_backends"] = list(self.failed_backends)
        return data

    @classmethod
    def from_trace(
        cls, trace: RequestTrace, latency_ms: float, endpoint: str = "chat"
    ) -> RequestRecord:
        ok = trace.outcome == "ok"
        attempts = trace.attempts
        failed = tuple(dict.fromkeys(a.backend for a in attempts if a.outcome == "failed"))
        return cls(
            request_id=trace.request_id,
            time=trace.started_at,
            requested_model=trace.requested_model,
            served_model=trace.served_model,
            backend=trace.backend,
            backend_name=trace.backend_name,
            backend_type=trace.backend_type,
            status="success" if ok else "error",
            status_code=trace.status or 500,
            latency_ms=round(latency_ms, 3),
            ttft_ms=None if trace.ttft_ms is None else round(trace.ttft_ms, 3),
            overhead_ms=None if trace.overhead_ms is None else round(trace.overhead_ms, 3),
            prompt_tokens=trace.prompt_tokens,
            completion_tokens=trace.completion_tokens,
            stream=trace.stream,
            route_reason=trace.route_reason,
            retries=max(len(attempts) - 1, 0),
            fallback_model=trace.fallback_model,
            outcome=trace.outcome,
            error_type=trace.error_type,
            error=trace.error,
            failed_backends=failed,
            endpoint=endpoint,
            cost_usd=None if trace.cost_usd is None else round(trace.cost_usd, 8),
            cost_status=trace.cost_status,
            dialect=trace.dialect,
            translated=trace.translated,
        )
