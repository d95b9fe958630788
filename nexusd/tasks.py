"""Supervised background tasks: a crash is logged and the task restarted with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("nexus.tasks")


def supervise(
    name: str,
    factory: Callable[[], Awaitable[None]],
    *,
    first_delay: float = 1.0,
    max_delay: float = 60.0,
) -> asyncio.Task[None]:
    async def runner() -> None:
        delay = first_delay
        while True:
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s crashed; restarting in %gs", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)

    return asyncio.get_running_loop().create_task(runner(), name=f"nexus:{name}")
