"""JSON Schemas of the control API's responses (and so of ``nexusctl``'s JSON output).

The tests validate every ``nexusctl`` subcommand against these; docs/control-api.md shows
examples. Additive changes only: scripts depend on these shapes.
"""

from __future__ import annotations

from typing import Any

STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
OPT_STR = {"type": ["string", "null"]}
OPT_INT = {"type": ["integer", "null"]}
OPT_NUM = {"type": ["number", "null"]}
#: which API a request called (RequestRecord.endpoint)
ENDPOINT = {"enum": ["chat", "completions", "embeddings"]}


def obj(props: dict[str, Any], *, extra: bool = True) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(props),
        "properties": props,
        "additionalProperties": extra,
    }


MODEL_INFO = obj(
    {
        "id": STR,
        "context_length": INT,
        "loaded": {"type": ["boolean", "null"]},
        "max_output_tokens": OPT_INT,
        "capabilities": obj({"vision": BOOL, "tools": BOOL, "json_mode": BOOL, "embeddings": BOOL}),
    }
)

STATUSES = ["unknown", "healthy", "unhealthy", "loading", "draining", "disabled"]

BACKEND = obj(
    {
        "id": STR,
        "name": STR,
        "url": STR,
        "type": STR,
        "source": {"enum": ["static", "mdns", "probe", "manual"]},
        "status": {"enum": STATUSES},
        "health": {"enum": STATUSES},
        "enabled": BOOL,
        "draining": BOOL,
        "priority": INT,
        "zone": STR,
        "tier": OPT_INT,
        "max_concurrent": OPT_INT,
        "pending": INT,
        "total_requests": INT,
        "errors": INT,
        "passive_failures": INT,
        "latency_ema_ms": OPT_NUM,
        "last_error": OPT_STR,
        "disabled_reason": OPT_STR,
        "native_dialects": {"type": "array", "items": STR},
        "last_check": OPT_NUM,
        "metadata": {"type": "object"},
        "models": {"type": "array", "items": MODEL_INFO},
    }
)

REJECTION = obj({"stage": STR, "backend": STR, "reason": STR})
#: a hard capability mismatch also carries ``code`` (the 400 it becomes) and ``fix`` (the
#: config setting that changes the verdict); soft ones appear under ``demoted``
DECISION = obj(
    {
        "model": STR,
        "outcome": {"enum": ["route", "queue", "reject"]},
        "candidates": {"type": "array", "items": STR},
        "rejections": {"type": "array", "items": REJECTION},
        "demoted": {"type": "array", "items": REJECTION},
        "backend": OPT_STR,
        "reason": STR,
        "model_known": BOOL,
        "permanent": BOOL,
    }
)
REQUIREMENTS = obj(
    {
        "endpoint": ENDPOINT,
        "vision": BOOL,
        "tools": BOOL,
        "json_mode": BOOL,
        "prompt_tokens": INT,
        "prompt_tokens_method": STR,
        "max_tokens": INT,
    }
)
REQUEST_RECORD = obj(
    {
        "request_id": STR,
        "time": NUM,
        "requested_model": STR,
        "served_model": OPT_STR,
        "backend": OPT_STR,
        "backend_name": OPT_STR,
        "backend_type": OPT_STR,
        "status": {"enum": ["success", "error"]},
        "status_code": INT,
        "latency_ms": NUM,
        "ttft_ms": OPT_NUM,
        "overhead_ms": OPT_NUM,
        "prompt_tokens": OPT_INT,
        "completion_tokens": OPT_INT,
        "stream": BOOL,
        "route_reason": OPT_STR,
        "retries": INT,
        "fallback_model": OPT_STR,
        "outcome": STR,
        "error_type": OPT_STR,
        "error": OPT_STR,
        "failed_backends": {"type": "array", "items": STR},
        "endpoint": ENDPOINT,
        "cost_usd": OPT_NUM,
        "cost_status": {"enum": ["free", "exact", "estimated", "unknown", None]},
        "dialect": {"enum": ["openai", "anthropic", "responses"]},
        "translated": BOOL,
    }
)

#: GET /v1/trends: 60 points per metric, oldest first (the last one is the current minute)
TREND_SERIES = obj(
    {
        "minutes": {"type": "array", "items": INT, "minItems": 60, "maxItems": 60},
        "rate": {"type": "array", "items": INT, "minItems": 60, "maxItems": 60},
        "p50_ms": {"type": "array", "items": OPT_NUM, "minItems": 60, "maxItems": 60},
        "p95_ms": {"type": "array", "items": OPT_NUM, "minItems": 60, "maxItems": 60},
        "error_rate": {"type": "array", "items": NUM, "minItems": 60, "maxItems": 60},
    }
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "status": obj(
        {
            "version": STR,
            "pid": INT,
            "uptime_seconds": NUM,
            "started_at": NUM,
            "listeners": obj({"api": STR, "control": OPT_STR}),
            "config_path": STR,
            "config_file_exists": BOOL,
            "counts": obj(
                {
                    k: INT
                    for k in ("backends", "healthy", "models", "aliases", "fallbacks", "inflight")
                }
            ),
        }
    ),
    "backend": BACKEND,
    "backends": {"type": "array", "items": BACKEND},
    "models": {
        "type": "array",
        "items": obj(
            {
                "id": STR,
                "aliases": {"type": "array", "items": STR},
                "healthy_backends": {"type": "array", "items": STR},
                "backends": {
                    "type": "array",
                    "items": {
                        "allOf": [
                            MODEL_INFO,
                            obj(
                                {
                                    "model": STR,
                                    "id": STR,
                                    "name": STR,
                                    "status": {"enum": STATUSES},
                                    "routable": BOOL,
                                }
                            ),
                        ]
                    },
                },
            }
        ),
    },
    "aliases": {"type": "object", "additionalProperties": STR},
    "alias_set": obj({"alias": STR, "target": STR}, extra=False),
    "fallbacks": {"type": "object", "additionalProperties": {"type": "array", "items": STR}},
    "fallbacks_set": obj({"model": STR, "chain": {"type": "array", "items": STR}}, extra=False),
    "removed": obj({"removed": STR}, extra=False),
    "requests": {"type": "array", "items": REQUEST_RECORD},
    "request": obj(
        {
            "request_id": STR,
            "started_at": NUM,
            "requested_model": STR,
            "resolved_model": STR,
            "alias_hops": {"type": "array", "items": STR},
            "requirements": REQUIREMENTS,
            "stream": BOOL,
            "steps": {"type": "array", "items": DECISION},
            "attempts": {
                "type": "array",
                "items": obj(
                    {
                        "backend": STR,
                        "model": STR,
                        "outcome": {"enum": ["ok", "failed", "passed_through"]},
                        "error": OPT_STR,
                        "status": OPT_INT,
                        "duration_ms": NUM,
                    }
                ),
            },
            "backend": OPT_STR,
            "served_model": OPT_STR,
            "fallback_model": OPT_STR,
            "status": OPT_INT,
            "error": OPT_STR,
            "outcome": STR,
        }
    ),
    "route": obj(
        {
            "requested_model": STR,
            "resolved_model": STR,
            "alias_hops": {"type": "array", "items": STR},
            "chain": {"type": "array", "items": STR},
            "requirements": REQUIREMENTS,
            "outcome": {"enum": ["route", "queue", "reject", "not_found"]},
            "permanent": BOOL,
            "backend": OPT_STR,
            "model": OPT_STR,
            "fallback_used": BOOL,
            "reason": OPT_STR,
            "steps": {"type": "array", "items": DECISION},
        }
    ),
    "stats": obj(
        {
            "uptime_seconds": INT,
            "inflight": INT,
            "requests": obj({"total": INT, "success": INT, "errors": INT}),
            "endpoints": obj({"chat": INT, "completions": INT, "embeddings": INT}),
            "dialects": obj({"openai": INT, "anthropic": INT, "responses": INT}),
            "backends": {
                "type": "array",
                "items": obj(
                    {
                        "id": STR,
                        "name": STR,
                        "status": {"enum": STATUSES},
                        "requests": INT,
                        "errors": INT,
                        "average_latency_ms": NUM,
                        "p95_latency_ms": NUM,
                        "average_ttft_ms": OPT_NUM,
                        "latency_ema_ms": OPT_NUM,
                        "pending": INT,
                        "cost_usd": NUM,
                    }
                ),
            },
            "models": {
                "type": "array",
                "items": obj(
                    {
                        "name": STR,
                        "requests": INT,
                        "errors": INT,
                        "average_duration_ms": NUM,
                        "tokens": obj({"prompt": INT, "completion": INT}),
                        "cost_usd": NUM,
                    }
                ),
            },
            "cost": obj(
                {
                    "total_usd": NUM,
                    "priced_requests": INT,
                    "estimated_requests": INT,
                    "unknown_requests": INT,
                }
            ),
        }
    ),
    "trends": obj(
        {
            "overall": TREND_SERIES,
            "backends": {"type": "object", "additionalProperties": TREND_SERIES},
        }
    ),
    "logging": obj({"level": STR, "format": STR, "component_levels": {"type": "object"}}),
    "config": obj(
        {
            "path": STR,
            "file_exists": BOOL,
            "changed_on_disk": BOOL,
            "values": {
                "type": "object",
                "additionalProperties": obj(
                    {"value": {}, "source": {"enum": ["default", "file", "env", "flag"]}}
                ),
            },
        }
    ),
    "config_reload": obj({"reloaded": STR, "changes": {"type": "array", "items": STR}}),
    "event": obj({"type": STR, "seq": INT, "time": NUM, "data": {"type": "object"}}),
}
