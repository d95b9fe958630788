"""Assemble a backend's agent: a transport, the codec of its dialect, the prober of its family."""

from __future__ import annotations

import aiohttp

from nexusd.backends.agent import BackendAgent
from nexusd.backends.anthropic import AnthropicCodec
from nexusd.backends.cloud import (
    AnthropicProber,
    GoogleProber,
    MeteredOpenAICodec,
    OpenAICloudProber,
)
from nexusd.backends.codec import OpenAICodec
from nexusd.backends.google import GoogleCodec
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
    BackendType.OPENAI: OpenAICloudProber,
    BackendType.ANTHROPIC: AnthropicProber,
    BackendType.GOOGLE: GoogleProber,
}
CODECS: dict[BackendType, type[OpenAICodec]] = {
    BackendType.OLLAMA: OllamaCodec,
    BackendType.OPENAI: MeteredOpenAICodec,
    BackendType.ANTHROPIC: AnthropicCodec,
    BackendType.GOOGLE: GoogleCodec,
}


def create_agent(backend: Backend, http: aiohttp.ClientSession, timeouts: Timeouts) -> BackendAgent:
    try:
        prober_cls = PROBERS[backend.type]
    except KeyError:
        raise ValueError(f"backend type {backend.type.value!r} is not supported yet") from None
    codec_cls = CODECS.get(backend.type, OpenAICodec)
    transport = AiohttpTransport(
        backend.url,
        http,
        timeouts,
        auth_headers=codec_cls.auth_headers(backend.api_key) if backend.api_key else None,
        forward_client_auth=backend.forward_client_auth and not backend.type.is_cloud,
    )
    codec = codec_cls(timeouts.max_event_bytes)
    return BackendAgent(transport, codec, prober_cls(backend, transport))
