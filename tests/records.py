"""Finished-request records built by hand, for tests of the surfaces that show them (metrics,
stats, history, logs, dashboard, control API) independent of the request path."""

from __future__ import annotations

import time
from typing import Any

from nexusd.records import RequestRecord

#: a successful, non-streamed request per kind, as the request path would record it
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "chat": {"requested_model": "llama3:8b", "prompt_tokens": 24, "completion_tokens": 180},
    "completions": {"requested_model": "llama3:8b", "prompt_tokens": 8, "completion_tokens": 40},
    # embeddings have prompt tokens only
    "embeddings": {
        "requested_model": "nomic-embed-text",
        "prompt_tokens": 12,
        "completion_tokens": None,
    },
}


def make_record(request_id: str, endpoint: str = "chat", **overrides: Any) -> RequestRecord:
    """Every field spelled out; ``overrides`` change any of them."""
    kind = KIND_DEFAULTS[endpoint]
    fields: dict[str, Any] = {
        "request_id": request_id,
        "time": time.time(),
        "requested_model": kind["requested_model"],
        "served_model": kind["requested_model"],
        "backend": "box",
        "backend_name": "box",
        "backend_type": "local",
        "status": "success",
        "status_code": 200,
        "latency_ms": 120.0,
        "ttft_ms": 40.0,
        "overhead_ms": 0.4,
        "prompt_tokens": kind["prompt_tokens"],
        "completion_tokens": kind["completion_tokens"],
        "stream": False,
        "route_reason": "capability-match",
        "retries": 0,
        "fallback_model": None,
        "outcome": "ok",
        "error_type": None,
        "error": None,
        "failed_backends": (),
        "endpoint": endpoint,
    }
    fields.update(overrides)
    return RequestRecord(**fields)
