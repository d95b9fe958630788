"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def translate_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """``nexus.translate`` at DEBUG, captured on its own logger: a daemon started earlier in
    the session may have stopped ``nexus`` propagating to the root logger."""
    logger = logging.getLogger("nexus.translate")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="nexus.translate"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)
