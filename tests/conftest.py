"""Shared fixtures: fake backends on a background loop, and real daemons over real sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes import FakeBackend, FakeHost
from tests.harness import DaemonThread


@pytest.fixture(scope="session")
def fake_host() -> Iterator[FakeHost]:
    with FakeHost() as host:
        yield host


@pytest.fixture
def fakes(fake_host: FakeHost) -> Iterator[Callable[..., FakeBackend]]:
    """``fakes("ollama", ["llama3:8b"])`` starts a fake on a free port; stopped after the test."""
    started: list[FakeBackend] = []

    def start(kind: str, models: list[Any] | None = None, **kwargs: Any) -> FakeBackend:
        backend = fake_host.start(FakeBackend(kind, models, **kwargs))
        started.append(backend)
        return backend

    yield start
    for backend in started:
        if backend.running:
            fake_host.stop(backend)


@pytest.fixture
def nexus() -> Iterator[Callable[..., DaemonThread]]:
    """``nexus({...config...})`` starts a real daemon; it is shut down after the test."""
    daemons: list[DaemonThread] = []

    def start(config: dict[str, Any] | None = None) -> DaemonThread:
        daemon = DaemonThread(config).start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()
