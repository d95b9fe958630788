"""Shared fixtures: fake backends on a background loop, and real daemons over real sockets."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeBackend, FakeHost
from tests.harness import DaemonThread


@pytest.fixture(scope="session", autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Daemons started by tests record themselves here, never in the user's real dirs."""
    state = tmp_path_factory.mktemp("state")
    saved = {
        k: os.environ.get(k) for k in ("NEXUS_STATE_DIR", "NEXUS_CONFIG_DIR", "NEXUS_RUNTIME_DIR")
    }
    os.environ["NEXUS_STATE_DIR"] = str(state)
    # short on purpose: Unix socket paths are limited to ~104 bytes
    os.environ["NEXUS_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="nxrt-", dir="/tmp")
    os.environ["NEXUS_CONFIG_DIR"] = str(tmp_path_factory.mktemp("config"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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

    def start(
        config: dict[str, Any] | None = None,
        config_path: Path | None = None,
        state_dir: Path | None = None,
    ) -> DaemonThread:
        daemon = DaemonThread(config, config_path, state_dir).start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()
