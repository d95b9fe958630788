"""Capability guesses from a model's name — used only when a backend cannot tell us itself.

Union of the reference's lists. Larger context markers are tested first ("128k" contains "8k").
"""

from __future__ import annotations

from nexusd.types import ModelInfo

_VISION = (
    "llava",
    "vision",
    "llama4",
    "pixtral",
    "moondream",
    "bakllava",
    "minicpm-v",
    "qwen2-vl",
    "qwen2.5-vl",
    "gpt-4o",
    "gemma3",
)
_TOOLS = (
    "mistral",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "llama-3.1",
    "llama-3.2",
    "llama-3.3",
    "llama4",
    "qwen2.5",
    "qwen3",
    "command-r",
    "firefunction",
    "hermes",
    "functionary",
    "gpt-4",
    "gpt-3.5-turbo",
    "tool",
)
_EMBED = ("embed", "minilm", "bge-", "e5-", "nomic-embed", "gte-")
_CONTEXT = (
    ("1m", 1_048_576),
    ("128k", 131_072),
    ("64k", 65_536),
    ("32k", 32_768),
    ("16k", 16_384),
    ("8k", 8_192),
    ("4k", 4_096),
)
_GEMMA_VISION_SIZES = ("-4b", "-12b", "-27b")


def guess(model_id: str, *, cloud: bool = False) -> ModelInfo:
    name = model_id.lower()
    vision = any(k in name for k in _VISION) or (
        "gemma" in name and any(s in name for s in _GEMMA_VISION_SIZES)
    )
    context = next((n for marker, n in _CONTEXT if marker in name), 4096)
    if cloud and ("gpt-4o" in name or "gpt-4-turbo" in name or "gpt-4.1" in name):
        context = 128_000
    return ModelInfo(
        id=model_id,
        context_length=context,
        vision=vision,
        tools=any(k in name for k in _TOOLS),
        # local OpenAI-compatible servers accept response_format for any model (grammars)
        json_mode=True,
        embeddings=any(k in name for k in _EMBED),
    )
