"""Pick the agent class for a backend type."""

from __future__ import annotations

import aiohttp

from nexusd.backends.base import BackendAgent
from nexusd.backends.ollama import OllamaAgent
from nexusd.backends.openai_compat import GenericAgent, LlamaCppAgent, LmStudioAgent, VllmAgent
from nexusd.backends.upstream import Timeouts
from nexusd.registry import Backend
from nexusd.types import BackendType

AGENTS: dict[BackendType, type[BackendAgent]] = {
    BackendType.OLLAMA: OllamaAgent,
    BackendType.LLAMACPP: LlamaCppAgent,
    BackendType.VLLM: VllmAgent,
    BackendType.LMSTUDIO: LmStudioAgent,
    BackendType.EXO: GenericAgent,
    BackendType.GENERIC: GenericAgent,
    BackendType.OPENAI: GenericAgent,
}


def create_agent(backend: Backend, http: aiohttp.ClientSession, timeouts: Timeouts) -> BackendAgent:
    try:
        cls = AGENTS[backend.type]
    except KeyError:
        raise ValueError(f"backend type {backend.type.value!r} is not supported yet") from None
    return cls(backend, http, timeouts)
