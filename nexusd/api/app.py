"""The public Quart app: OpenAI routes and ``/health`` over one core."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, request

from nexusd import __version__
from nexusd.api.dashboard import LiveSocket, install_dashboard
from nexusd.api.dialects import anthropic_messages as messages
from nexusd.api.dialects import responses
from nexusd.api.errors import install_error_handlers
from nexusd.api.guard import BrowserGuard
from nexusd.api.inference import InferenceEndpoint
from nexusd.errors import ModelNotFound
from nexusd.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from nexusd.routing.aliases import resolve_alias
from nexusd.tokens import counter
from nexusd.types import BackendStatus

if TYPE_CHECKING:
    from nexusd.core import Nexus
    from nexusd.registry import Backend
    from nexusd.types import ModelInfo

JSON = "application/json"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(core: Nexus) -> BrowserGuard:
    """The public ASGI app: the browser guard (``Host``/``Origin``) in front of everything,
    then the inference hot path and the dashboard's ``/ws`` feed in plain ASGI, everything
    else in Quart."""
    return BrowserGuard(InferenceEndpoint(core, LiveSocket(core, create_quart_app(core))), core)


def create_quart_app(core: Nexus) -> Quart:
    app = Quart("nexusd")
    # "//v1//models" is an unknown path (JSON 404), not a 308 redirect to an HTML page
    app.url_map.merge_slashes = False
    server = core.config.server
    app.config.update(
        MAX_CONTENT_LENGTH=server.max_body_bytes,
        RESPONSE_TIMEOUT=None,  # streams may run for hours; Quart's 60 s default cuts them
        BODY_TIMEOUT=60,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    install_error_handlers(app, server.max_body_bytes)
    install_dashboard(app, core)

    @app.get("/metrics")
    async def metrics() -> Response:
        response = Response(core.metrics.render(), 200, content_type=METRICS_CONTENT_TYPE)
        response.timeout = None
        return response

    @app.get("/v1/stats")
    async def stats() -> Response:
        return _json(core.stats_snapshot())

    @app.get("/v1/history")
    async def history() -> Response:
        return _json([r.to_json() for r in core.history.recent(100)])

    @app.post("/v1/messages/count_tokens")
    async def count_tokens() -> Response:
        """Anthropic's token count, offline: the model family's tokenizer where one exists,
        else the documented estimate (never a call to a backend)."""
        try:  # a refusal renders in Anthropic's envelope (api/errors.py, by path)
            _, canonical = messages.count_tokens_request(await request.get_data())
        except messages.AnthropicOnly as exc:
            if exc.body is None:
                raise
            # valid for Anthropic (server tools…): counted as the JSON it is, an estimate
            body = exc.body
            text = json.dumps([body.get("system"), body.get("messages"), body.get("tools")])
            canonical = {"model": body["model"], "messages": [{"role": "user", "content": text}]}
        # off the loop: the tokenizer may load its encoding (~0.3 s) or face a long prompt
        tokens = await asyncio.to_thread(_count_request, canonical)
        return _json({"input_tokens": tokens})

    @app.route("/v1/responses/<path:response_id>", methods=["GET", "DELETE", "POST"])
    async def stored_response(response_id: str) -> Response:
        """Nexus stores no responses (stateless by design): say so, with the fix."""
        body = responses.error_body(400, responses.STATELESS_MESSAGE, "response_id")
        return Response(body, 400, content_type=JSON)

    @app.get("/v1/models")
    async def list_models() -> Response:
        # a server started since the last periodic probe shows up here at once (the scan is
        # rate-limited and shared, and does nothing when the probe is off)
        await core.probe.scan_now()
        data = []
        for model_id in core.registry.model_names():
            entries = [
                _model_entry(model_id, b, b.models[model_id])
                for b in core.registry.serving(model_id)
                if b.routable
            ]
            entries.sort(key=lambda e: e["owned_by"])
            data.extend(entries)
        if "anthropic-version" in request.headers:  # Anthropic clients list models so
            return Response(messages.models_list(data), 200, content_type=JSON)
        return _json({"object": "list", "data": data})

    @app.get("/v1/models/<path:model_id>")
    async def get_model(model_id: str) -> Response:
        resolved, _ = resolve_alias(core.config.routing.aliases, model_id)
        serving = core.registry.serving(resolved)
        if not serving:
            raise ModelNotFound(f"Model '{model_id}' not found", param="model")
        healthy = [b for b in serving if b.routable]
        first = (healthy or serving)[0]
        entry = _model_entry(model_id, first, first.models[resolved])
        entry["nexus"] = {
            "resolved_model": resolved,
            "backends": [b.name for b in serving],
            "healthy_backends": [b.name for b in healthy],
        }
        return _json(entry)

    @app.get("/health")
    async def health() -> Response:
        backends = core.registry.all()
        total = len(backends)
        healthy = sum(1 for b in backends if b.health is BackendStatus.HEALTHY and b.enabled)
        if total and healthy == total:
            status = "healthy"
        elif healthy:
            status = "degraded"
        else:
            status = "unhealthy"
        return _json(
            {
                "status": status,
                "version": __version__,
                "uptime_seconds": int(core.uptime_seconds),
                "backends": {"total": total, "healthy": healthy, "unhealthy": total - healthy},
                "models": len(core.registry.model_names()),
            }
        )

    return app


def _count_request(canonical: dict[str, Any]) -> int:
    """Prompt tokens of a canonical chat request, tool definitions included."""
    tokens, model = counter(), canonical["model"]
    count = tokens.count_chat(canonical.get("messages"), model).tokens
    tools = canonical.get("tools")
    return count + (tokens.count_prompt(json.dumps(tools), model).tokens if tools else 0)


def _model_entry(model_id: str, backend: Backend, info: ModelInfo) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": int(backend.added_at),
        "owned_by": backend.name,
        "context_length": info.context_length,
        "capabilities": {
            "vision": info.vision,
            "tools": info.tools,
            "json_mode": info.json_mode,
            "embeddings": info.embeddings,
        },
    }


def _json(payload: Any, status: int = 200) -> Response:
    response = Response(json.dumps(payload), status, content_type=JSON)
    response.timeout = None
    return response
