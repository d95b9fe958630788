"""Logging setup: stdlib logging, ``pretty`` for people or ``json`` (one object per line).

Per-component levels map ``[logging.component_levels] routing = "debug"`` to the logger
``nexus.routing``. Formatting work happens only for records that pass the level filter.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from nexusd.config.schema import LogFormat, LoggingConfig

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs * 1000):06d}Z",
            "level": record.levelname,
            "target": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def level_of(name: str) -> int:
    return _LEVELS.get(name.lower(), logging.INFO)


def setup_logging(config: LoggingConfig, stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if config.format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger("nexus")
    root.handlers[:] = [handler]
    root.setLevel(level_of(config.level.value))
    root.propagate = False
    apply_levels(config)


def apply_levels(config: LoggingConfig) -> None:
    """(Re)apply the global and per-component levels; used at start and on reload."""
    logging.getLogger("nexus").setLevel(level_of(config.level.value))
    for component, level in config.component_levels.items():
        name = component if component.startswith("nexus.") else f"nexus.{component}"
        logging.getLogger(name).setLevel(level_of(level))
