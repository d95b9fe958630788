"""Assemble a backend's agent: a transport, the codec of its dialect, the prober of its family."""

from __future__ import annotations

import aiohttp

from nexusd.backends.agent import BackendAgent
from nexusd.backends.codec import OpenAICodec
from nexusd.backends.ollama import OllamaCodec, OllamaProber
from nexusd.backends.openai_compat import (
    GenericProber,
    LlamaCppProber,
    LmStudioProber,
    VllmProber,
)
from nexusd.backends.prober import Prober
from nexusd.backends.transport import AiohttpTransport
from nexusd.backends.upstream import Timeouts
from nexusd.registry import Backend
from nexusd.types import BackendType

PROBERS: dict[BackendType, type[Prober]] = {
    BackendType.OLLAMA: OllamaProber,
    BackendType.LLAMACPP: LlamaCppProber,
    BackendType.VLLM: VllmProber,
    BackendType.LMSTUDIO: LmStudioProber,
    BackendType.EXO: GenericProber,
    BackendType.GENERIC: GenericProber,
    BackendType.OPENAI: GenericProber,
}
CODECS: dict[BackendType, type[OpenAICodec]] = {BackendType.OLLAMA: OllamaCodec}


def create_agent(backend: Backend, http: aiohttp.ClientSession, timeouts: Timeouts) -> BackendAgent:
    try:
        prober_cls = PROBERS[backend.type]
    except KeyError:
        raise ValueError(f"backend type {backend.type.value!r} is not supported yet") from None
    transport = AiohttpTransport(
        backend.url,
        http,
        timeouts,
        api_key=backend.api_key,
        forward_client_auth=backend.forward_client_auth,
    )
    codec = CODECS.get(backend.type, OpenAICodec)(timeouts.max_event_bytes)
    return BackendAgent(transport, codec, prober_cls(backend, transport))
