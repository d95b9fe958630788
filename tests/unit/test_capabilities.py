"""Model capabilities: name heuristics, Ollama /api/show, llama.cpp /props, config overrides."""

from __future__ import annotations

from typing import Any

import pytest

from nexusd.backends import heuristics
from nexusd.backends.ollama import _from_show
from nexusd.backends.openai_compat import LlamaCppProber, _apply_props
from nexusd.backends.prober import Prober
from nexusd.config.loader import parse_config
from nexusd.core import backend_from_config
from nexusd.events import EventBus
from nexusd.registry import Backend, Registry
from nexusd.types import BackendType, ModelInfo, ModelOverride

# --- heuristics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "vision", "tools"),
    [
        ("llava:13b", True, False),
        ("llava-v1.5-7b", True, False),
        ("pixtral:12b", True, False),
        ("moondream", True, False),
        ("qwen3:32b", False, True),
        ("firefunction-v2", False, True),
        ("llama4:scout", True, True),
        ("Llama3.1:8B-Instruct", False, True),
        ("mistral:7b", False, True),
        ("gemma2-27b", True, False),  # gemma + size marker (reference rule)
        ("phi-2", False, False),
        ("tinyllama", False, False),
    ],
)
def test_vision_and_tools_heuristics(model_id: str, vision: bool, tools: bool) -> None:
    m = heuristics.guess(model_id)
    assert m.id == model_id
    assert (m.vision, m.tools) == (vision, tools)


@pytest.mark.parametrize(
    ("model_id", "context"),
    [
        ("foo-128k", 131_072),  # not 8192, although "128k" contains "8k"
        ("phi-3-mini-128k-instruct", 131_072),
        ("yarn-64k", 65_536),
        ("mistral-32k", 32_768),
        ("model-16k", 16_384),
        ("model-8k", 8_192),
        ("phi-3-mini-4k-instruct", 4_096),
        ("qwen2.5-1m", 1_048_576),
        ("plain-model", 4_096),
    ],
)
def test_context_heuristics_larger_markers_first(model_id: str, context: int) -> None:
    assert heuristics.guess(model_id).context_length == context


@pytest.mark.parametrize(
    ("model_id", "embeddings"),
    [
        ("nomic-embed-text", True),
        ("all-minilm:l6-v2", True),
        ("bge-m3", True),
        ("llama3:8b", False),
    ],
)
def test_embedding_heuristics(model_id: str, embeddings: bool) -> None:
    assert heuristics.guess(model_id).embeddings is embeddings


def test_json_mode_assumed_for_local_servers() -> None:
    assert heuristics.guess("anything").json_mode is True


@pytest.mark.parametrize(
    ("model_id", "cloud", "context"),
    [
        ("gpt-4o", True, 128_000),
        ("gpt-4-turbo", True, 128_000),
        ("gpt-4.1-mini", True, 128_000),
        ("gpt-4o", False, 4_096),
    ],
)
def test_cloud_context_defaults(model_id: str, cloud: bool, context: int) -> None:
    assert heuristics.guess(model_id, cloud=cloud).context_length == context


# --- Ollama /api/show ----------------------------------------------------------------------


def test_show_capabilities_set_flags() -> None:
    m = _from_show(
        "gemma3:12b",
        {
            "capabilities": ["completion", "vision", "tools"],
            "model_info": {"general.architecture": "gemma3", "gemma3.context_length": 131072},
        },
    )
    assert (m.vision, m.tools, m.embeddings) == (True, True, False)
    assert m.context_length == 131072


def test_show_is_authoritative_over_name_heuristics() -> None:
    # the name says vision and tools; /api/show says neither
    m = _from_show("llama4-llava", {"capabilities": ["completion"]})
    assert (m.vision, m.tools) == (False, False)


def test_show_embedding_capability() -> None:
    m = _from_show(
        "nomic-embed-text",
        {"capabilities": ["embedding"], "model_info": {"nomic-bert.context_length": 2048}},
    )
    assert m.embeddings is True
    assert (m.vision, m.tools) == (False, False)
    assert m.context_length == 2048


def test_show_llama_context_length() -> None:
    m = _from_show(
        "llama3.1:8b",
        {
            "model_info": {
                "llama.attention.head_count": 32,
                "llama.context_length": 131072,
                "llama.embedding_length": 4096,
            }
        },
    )
    assert m.context_length == 131072
    assert m.tools is True  # no capabilities list: heuristics stay


@pytest.mark.parametrize(
    "show",
    [
        None,
        "garbage",
        [],
        {},
        {"capabilities": "vision", "model_info": []},
        {"model_info": {"llama.context_length": "big"}},
        {"model_info": {"llama.context_length": 0}},
        {"model_info": {"llama.context_length": -1}},
    ],
)
def test_show_malformed_falls_back_to_heuristics(show: Any) -> None:
    m = _from_show("llava:7b-32k", show)
    assert m == heuristics.guess("llava:7b-32k")
    assert m.vision is True and m.context_length == 32_768


# --- llama.cpp /v1/models meta and /props ---------------------------------------------------


def llamacpp_backend() -> Backend:
    return Backend(id="l", name="l", url="http://l.test:8080", type=BackendType.LLAMACPP)


@pytest.fixture
def agent() -> LlamaCppProber:
    return LlamaCppProber(llamacpp_backend(), transport=None)  # type: ignore[arg-type]


def test_llamacpp_listing_uses_n_ctx_train(agent: LlamaCppProber) -> None:
    m = agent.model_from_listing({"id": "smollm2.gguf", "meta": {"n_ctx_train": 8192}})
    assert m.context_length == 8192


def test_llamacpp_listing_without_meta_uses_heuristics(agent: LlamaCppProber) -> None:
    assert agent.model_from_listing({"id": "model-32k.gguf"}).context_length == 32_768
    assert agent.model_from_listing({"id": "m", "meta": None}).context_length == 4096


def test_props_n_ctx_wins_over_n_ctx_train(agent: LlamaCppProber) -> None:
    listing = {"object": "list", "data": [{"id": "m.gguf", "meta": {"n_ctx_train": 131072}}]}
    (m,) = agent.parse_openai_models(listing) or []
    assert m.context_length == 131072
    _apply_props(m, {"default_generation_settings": {"n_ctx": 4096}})
    assert m.context_length == 4096


def test_props_modalities_vision() -> None:
    m = ModelInfo("m", vision=False)
    _apply_props(m, {"modalities": {"vision": True, "audio": False}})
    assert m.vision is True
    _apply_props(m, {"modalities": {"vision": False}})
    assert m.vision is False


def test_props_chat_template_decides_tools() -> None:
    m = ModelInfo("m", tools=False)
    _apply_props(m, {"chat_template": "{% if tools %}<tool_call>{% endif %}"})
    assert m.tools is True
    _apply_props(m, {"chat_template": "{{ messages }}"})
    assert m.tools is False


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"default_generation_settings": None},
        {"default_generation_settings": {"n_ctx": "4096"}},
        {"modalities": ["vision"]},
        {"modalities": {"vision": "yes"}},
        {"chat_template": ""},
        {"chat_template": None},
    ],
)
def test_props_malformed_changes_nothing(props: dict[str, Any]) -> None:
    m = ModelInfo("m", context_length=8192, vision=True, tools=True)
    _apply_props(m, props)
    assert m == ModelInfo("m", context_length=8192, vision=True, tools=True)


def test_openai_listing_context_keys_and_order() -> None:
    agent = Prober(
        Backend(id="v", name="v", url="http://v.test", type=BackendType.VLLM),
        transport=None,  # type: ignore[arg-type]
    )
    models = agent.parse_openai_models(
        {
            "data": [
                {"id": "z-model", "max_model_len": 32768},
                {"id": "a-model", "context_length": 0, "max_context_length": 2048},
                {"object": "model"},
                "garbage",
                {"id": 5},
            ]
        }
    )
    assert models is not None
    assert [(m.id, m.context_length) for m in models] == [("z-model", 32768), ("a-model", 2048)]


@pytest.mark.parametrize("listing", [None, [], {"data": None}, {"data": {}}, {"models": []}])
def test_openai_listing_not_a_list(listing: Any) -> None:
    agent = Prober(llamacpp_backend(), transport=None)  # type: ignore[arg-type]
    assert agent.parse_openai_models(listing) is None


def test_openai_listing_empty_is_an_empty_list() -> None:
    agent = Prober(llamacpp_backend(), transport=None)  # type: ignore[arg-type]
    assert agent.parse_openai_models({"data": []}) == []


# --- per-model overrides from config -------------------------------------------------------


def test_config_override_applied_by_set_models() -> None:
    cfg, _, _ = parse_config(
        {
            "backends": [
                {
                    "name": "GPU box",
                    "url": "http://gpu.test:8000/v1",
                    "type": "vllm",
                    "models": {
                        "meta-llama/Llama-3.1-8B-Instruct": {"tools": True, "vision": False},
                        "x": {"vision": True, "context_length": 65536},
                    },
                }
            ]
        },
        env={},
    )
    backend = backend_from_config(cfg.backends[0])
    assert backend.id == "gpu-box"
    assert backend.model_overrides["x"] == ModelOverride(vision=True, context_length=65536)

    registry = Registry(EventBus())
    registry.add(backend)
    assert backend.url == "http://gpu.test:8000"
    registry.set_models(
        backend,
        [
            ModelInfo("meta-llama/Llama-3.1-8B-Instruct", tools=False, vision=True),
            ModelInfo("x", tools=True),
            ModelInfo("untouched", context_length=2048),
        ],
    )
    llama = backend.models["meta-llama/Llama-3.1-8B-Instruct"]
    assert (llama.tools, llama.vision) == (True, False)
    x = backend.models["x"]
    assert (x.vision, x.context_length, x.tools) == (True, 65536, True)
    assert backend.models["untouched"] == ModelInfo("untouched", context_length=2048)


def test_override_survives_repeated_probes() -> None:
    registry = Registry(EventBus())
    b = registry.add(
        Backend(
            id="b",
            name="b",
            url="http://b.test",
            type=BackendType.OLLAMA,
            model_overrides={"m": ModelOverride(vision=True)},
        )
    )
    assert registry.set_models(b, [ModelInfo("m")]) is True
    # the same listing again: equal after the override, so nothing changed
    assert registry.set_models(b, [ModelInfo("m")]) is False
    assert b.models["m"].vision is True


def test_model_override_apply_only_sets_given_fields() -> None:
    m = ModelInfo("m", context_length=1, vision=False, tools=False, json_mode=False)
    ModelOverride(json_mode=True, embeddings=True).apply(m)
    assert m == ModelInfo(
        "m",
        context_length=1,
        vision=False,
        tools=False,
        json_mode=True,
        embeddings=True,
        reported=frozenset({"json_mode", "embeddings"}),
    )
