"""Every error leaves the daemon in the OpenAI envelope, framework errors included."""

from __future__ import annotations

import logging

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from nexusd.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NexusError,
    PayloadTooLarge,
    RouteNotFound,
)

log = logging.getLogger("nexus.api")


def error_response(err: NexusError) -> Response:
    """In the envelope of the API the path belongs to: Anthropic's under ``/v1/messages``
    (``count_tokens``, wrong methods, oversize bodies), OpenAI's everywhere else."""
    if request.path.startswith("/v1/messages"):
        from nexusd.api.dialects.anthropic_messages import error_body

        body = error_body(err.status, err.message)
    else:
        body = err.render()
    response = Response(body, err.status, content_type="application/json")
    for name, value in err.headers.items():
        response.headers[name] = value
    response.timeout = None
    return response


def too_large(max_body_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body is larger than the {max_body_bytes:,} byte limit (server.max_body_bytes)"
    )


def install_error_handlers(app: Quart, max_body_bytes: int) -> None:
    @app.errorhandler(NexusError)
    async def nexus_error(err: NexusError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    async def http_error(err: HTTPException) -> Response:
        path = request.path
        if err.code == 404:
            mapped: NexusError = RouteNotFound(
                f"Unknown path '{path}'. The OpenAI API is served under /v1 "
                "(POST /v1/chat/completions, GET /v1/models); see also GET /health."
            )
        elif err.code == 405:
            allowed = ", ".join(sorted(getattr(err, "valid_methods", None) or []))
            mapped = MethodNotAllowed(
                f"Method {request.method} is not allowed on {path}"
                + (f"; use {allowed}" if allowed else "")
            )
        elif err.code == 413:
            mapped = too_large(max_body_bytes)
        else:
            mapped = InvalidRequest(err.description or str(err))
            mapped.status = err.code or 400  # type: ignore[misc]
        return error_response(mapped)

    @app.errorhandler(Exception)
    async def unexpected(err: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(InternalError(f"Internal error in Nexus: {type(err).__name__}"))
