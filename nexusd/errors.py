"""The daemon's one error hierarchy; each class maps to exactly one HTTP status and OpenAI type.

    NexusError
    ├── InvalidRequest          400 invalid_request_error
    │   ├── NotCapable          400 invalid_request_error / model_not_capable |
    │   │                           context_length_exceeded | wrong_endpoint
    │   └── PayloadTooLarge     413 invalid_request_error / payload_too_large
    ├── api.guard.Forbidden     403 invalid_request_error / host_not_allowed | origin_not_allowed
    ├── ModelNotFound           404 invalid_request_error / model_not_found
    ├── RouteNotFound           404 invalid_request_error / not_found
    ├── MethodNotAllowed        405 invalid_request_error / method_not_allowed
    ├── RequestTimeout          408 invalid_request_error / request_timeout
    ├── RateLimited             429 rate_limit_error / rate_limit_exceeded (+ Retry-After)
    ├── ProviderRefused         401 | 403 (the provider's status) / invalid_api_key | forbidden
    ├── ServiceUnavailable      503 service_unavailable (carries ``context``)
    ├── UpstreamFailed          502 server_error / bad_gateway
    ├── UpstreamTimedOut        504 server_error / gateway_timeout
    └── InternalError           500 server_error / internal_error

``render`` is the single place that turns one into the OpenAI envelope, so every surface
(non-streaming, streaming before the first byte, framework errors) answers the same shape.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class NexusError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        context: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.context = context
        self.headers = headers or {}
        #: the ``error_type`` label of ``nexus_errors_total``
        self.error_type = error_type or self.code or "internal_error"

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        if self.context is not None:
            body["context"] = self.context
        return body

    def render(self) -> bytes:
        return json.dumps(self.envelope()).encode()


class InvalidRequest(NexusError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request_error"


class NotCapable(InvalidRequest):
    """No backend can ever serve this request as sent (a stated capability is missing):
    retrying cannot help, so this is the client's 400, never a 503."""

    def __init__(self, message: str, *, code: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.code = code  # type: ignore[misc]


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class ModelNotFound(NexusError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RouteNotFound(NexusError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(NexusError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(NexusError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class RateLimited(NexusError):
    """Every backend that could serve the request said 429: the client should back off
    (``Retry-After`` is the provider's), not treat it as a 400 or an outage."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ProviderRefused(NexusError):
    """A cloud provider refused the configured key (401) or its permissions (403), on every
    backend that could serve the request: its status, with a message naming the backend and
    the environment variable to fix."""

    type = "authentication_error"
    code = "invalid_api_key"

    def __init__(self, message: str, *, status: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status  # type: ignore[misc]
        if status == 403:
            self.type, self.code = "permission_error", "forbidden"  # type: ignore[misc]


class ServiceUnavailable(NexusError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class UpstreamFailed(NexusError):
    status = 502
    type = "server_error"
    code = "bad_gateway"


class UpstreamTimedOut(NexusError):
    status = 504
    type = "server_error"
    code = "gateway_timeout"


class InternalError(NexusError):
    status = 500
    type = "server_error"
    code = "internal_error"
