"""Supervised background tasks: a crash is logged and the task restarted with backoff.

A task that returns has finished its work and is not restarted. The backoff starts again from
``first_delay`` after a run that lasted longer than ``max_delay``, so a task that crashes
once a day is not kept waiting a minute each time.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
            started = time.monotonic()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if time.monotonic() - started > max_delay:
                    delay = first_delay
                log.exception("background task %s crashed; restarting in %gs", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)

    return asyncio.get_running_loop().create_task(runner(), name=f"nexus:{name}")
