"""Tell what kind of server listens at a URL, from the endpoints only that kind has.

All probes go out at once, so detection costs one round-trip, not four.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from nexusd.types import BackendType

EXO_PORT = 52415


async def _get_json(http: aiohttp.ClientSession, url: str, timeout: float) -> Any:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status >= 300:
                return None
            return await resp.json(content_type=None)
    except (aiohttp.ClientError, OSError, ValueError, TimeoutError):
        return None


async def detect_backend_type(
    http: aiohttp.ClientSession, base_url: str, timeout: float = 2.0
) -> BackendType | None:
    """The backend type at ``base_url``, or None when nothing OpenAI- or Ollama-like answers."""
    base = base_url.rstrip("/")
    tags, lmstudio, props, models = await asyncio.gather(
        _get_json(http, base + "/api/tags", timeout),
        _get_json(http, base + "/api/v0/models", timeout),
        _get_json(http, base + "/props", timeout),
        _get_json(http, base + "/v1/models", timeout),
    )
    if isinstance(tags, dict) and isinstance(tags.get("models"), list):
        return BackendType.OLLAMA
    if isinstance(lmstudio, dict) and isinstance(lmstudio.get("data"), list):
        return BackendType.LMSTUDIO
    if isinstance(props, dict) and "default_generation_settings" in props:
        return BackendType.LLAMACPP
    if not (isinstance(models, dict) and isinstance(models.get("data"), list)):
        return None
    entries = [e for e in models["data"] if isinstance(e, dict)]
    if any("max_model_len" in e or e.get("owned_by") == "vllm" for e in entries):
        return BackendType.VLLM
    if any(e.get("owned_by") == "llamacpp" or "meta" in e for e in entries):
        return BackendType.LLAMACPP
    if urlsplit(base).port == EXO_PORT or any(e.get("owned_by") == "exo" for e in entries):
        return BackendType.EXO
    return BackendType.GENERIC
