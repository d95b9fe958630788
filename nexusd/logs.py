"""Logging (F11): stdlib logging, ``pretty`` for people or ``json`` (one object per line).

- Per-component levels: ``[logging.component_levels] routing = "debug"`` sets the logger
  ``nexus.routing``; changeable at runtime through the control API.
- One completion record per request on ``nexus.requests`` with typed fields (numbers stay
  numbers, ``stream`` is a boolean); built only if that level is enabled. Its message
  starts with the API called (``chat``, ``completions`` or ``embeddings``, then ``stream``
  for a stream), so pretty lines show the kind too.
- Under journald (``JOURNAL_STREAM`` matches stderr) lines are plain text with a syslog
  priority prefix (``<6>``), since journald adds its own timestamps.
- Secrets never appear: bearer tokens and ``sk-…`` keys are masked in every line, and the
  prompt preview exists only with ``enable_content_logging``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from nexusd.config.schema import LogFormat, LoggingConfig

if TYPE_CHECKING:
    from nexusd.records import RequestRecord

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_SECRET = re.compile(r"(Bearer\s+)[^\s\"',]+|\b(sk|nx)-[A-Za-z0-9_\-]{6,}", re.IGNORECASE)
_SYSLOG = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
PREVIEW_CHARS = 100

request_log = logging.getLogger("nexus.requests")


def redact(text: str) -> str:
    if "earer" not in text and "sk-" not in text and "nx-" not in text:
        return text
    return _SECRET.sub(lambda m: (m.group(1) or "") + "[REDACTED]", text)


def _timestamp(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int((created % 1) * 1_000_000):06d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "target": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


#: control characters a log line must not carry raw (a forged line, a terminal escape)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape_control(text: str) -> str:
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class PrettyFormatter(logging.Formatter):
    def __init__(self, journald: bool = False) -> None:
        fmt = (
            "%(name)s: %(message)s"
            if journald
            else "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
        )
        super().__init__(fmt, "%H:%M:%S")
        self.journald = journald

    def formatMessage(self, record: logging.LogRecord) -> str:
        """One event, one line: CR, LF and ESC from clients or backends are shown escaped
        (tracebacks, appended after this, keep their lines)."""
        message = record.message
        if _CONTROL.search(message):
            record.message = _escape_control(message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        if self.journald:
            return f"<{_SYSLOG.get(record.levelno, 6)}>{line}"
        return line


def under_journald(stream: Any) -> bool:
    """systemd sets JOURNAL_STREAM=<dev>:<inode> of the journal socket it gave us."""
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        dev, inode = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, inode)


def level_of(name: str) -> int:
    return _LEVELS.get(name.lower(), logging.INFO)


def setup_logging(config: LoggingConfig, stream: Any = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if config.format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PrettyFormatter(journald=under_journald(stream)))
    root = logging.getLogger("nexus")
    root.handlers[:] = [handler]
    root.propagate = False
    apply_levels(config)
    if config.enable_content_logging:
        root.warning(
            "content logging is enabled: request logs include a prompt preview "
            "(may contain sensitive data; use only for debugging)"
        )


def apply_levels(config: LoggingConfig, previous: LoggingConfig | None = None) -> None:
    """(Re)apply the global and per-component levels; used at start, reload and by the API."""
    logging.getLogger("nexus").setLevel(level_of(config.level.value))
    if previous is not None:
        for component in previous.component_levels.keys() - config.component_levels.keys():
            logging.getLogger(_logger_name(component)).setLevel(logging.NOTSET)
    for component, level in config.component_levels.items():
        logging.getLogger(_logger_name(component)).setLevel(level_of(level))


def _logger_name(component: str) -> str:
    return component if component.startswith("nexus.") else f"nexus.{component}"


def prompt_preview(body: dict[str, Any]) -> str | None:
    """First message's text (or a completion's ``prompt``, an embedding's first ``input``),
    at most 100 characters (+ "...")."""
    for key in ("prompt", "input"):
        text = body.get(key)
        if isinstance(text, list) and text:
            text = text[0]
        if isinstance(text, str) and text:
            return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "..."
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        if isinstance(content, str) and content:
            return content if len(content) <= PREVIEW_CHARS else content[:PREVIEW_CHARS] + "..."
    return None


def log_completion(rec: RequestRecord, preview: str | None = None) -> None:
    """Exactly one record per request: INFO on success, WARNING on failure."""
    level = logging.INFO if rec.ok else logging.WARNING
    if not request_log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "request_id": rec.request_id,
        "endpoint": rec.endpoint,
        "dialect": rec.dialect,
        "translated": rec.translated,
        "cost_usd": rec.cost_usd,
        "model": rec.requested_model,
        "actual_model": rec.served_model,
        "backend": rec.backend or "none",
        "backend_type": rec.backend_type,
        "status": rec.status,
        "status_code": rec.status_code,
        "latency_ms": rec.latency_ms,
        "ttft_ms": rec.ttft_ms,
        "overhead_ms": rec.overhead_ms,
        "tokens_prompt": rec.prompt_tokens,
        "tokens_completion": rec.completion_tokens,
        "tokens_total": rec.total_tokens,
        "stream": rec.stream,
        "route_reason": rec.route_reason,
        "retry_count": rec.retries,
        "fallback_chain": ",".join(rec.failed_backends),
        "fallback_model": rec.fallback_model,
        "error_type": rec.error_type,
        "error_message": rec.error,
    }
    if preview is not None:
        fields["prompt_preview"] = preview
    target = f" → {rec.served_model}@{rec.backend_name}" if rec.backend_name else ""
    kind = rec.endpoint if rec.dialect == "openai" else f"{rec.endpoint}/{rec.dialect}"
    request_log.log(
        level,
        "%s %s%s %d %.1fms%s",
        f"{kind} stream" if rec.stream else kind,
        rec.requested_model,
        target,
        rec.status_code,
        rec.latency_ms,
        f" ({rec.error})" if rec.error else "",
        extra=fields,
    )
