"""A real backend nobody on the team wrote: llama.cpp's server with SmolLM2-135M.

Provisioned by ``scripts/fetch_test_model.sh`` (run by .ci/run). Locally the module is
skipped when the model is missing; under CI (``CI=true``) a missing model fails loudly.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from nexusd.types import Endpoint

ROOT = Path(__file__).resolve().parents[1]
MODEL = Path(
    os.environ.get("NEXUS_TEST_GGUF", ROOT / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
)
ALIAS = "smollm2"
PROMPT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France? Answer in one sentence."},
]

pytestmark = pytest.mark.real_backend


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the embedding model shipped in the steering repo's shared/ (see its models/README.md)
EMBED_MODEL = Path(
    os.environ.get(
        "NEXUS_TEST_EMBED_GGUF", ROOT.parent / "shared/models/all-MiniLM-L6-v2-q8_0.gguf"
    )
)
EMBED_ALIAS = "all-minilm-l6-v2"


def _require(model: Path) -> None:
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        available = False
    else:
        available = model.is_file()
    if not available:
        message = f"real backend not provisioned (run scripts/fetch_test_model.sh; model {model})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def llama_server(model: Path, alias: str, *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """llama.cpp's own server on a free loopback port; stopped (SIGTERM) on exit."""
    _require(model)
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts/llama_server.py"),
            str(model),
            str(port),
            *("--alias", alias, *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness is only observable by asking; bounded
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not become ready (exit {proc.poll()})")
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    with llama_server(MODEL, ALIAS, "--ctx", "2048", "--parallel", "2") as (url, _):
        yield url


@pytest.fixture(scope="module")
def embed_url() -> Iterator[str]:
    with llama_server(EMBED_MODEL, EMBED_ALIAS, "--embedding", "--ctx", "512") as (url, _):
        yield url


@pytest.fixture
def through_nexus(nexus, llama_url: str):
    d = nexus({"backends": [{"name": "llama", "url": llama_url, "type": "llamacpp"}]})
    d.wait_healthy("llama", timeout=20)
    return d


def _ask(base_url: str, **extra) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", timeout=60)
    return client.chat.completions.create(
        model=ALIAS, messages=PROMPT, max_tokens=24, temperature=0, **extra
    )


def test_non_streaming_equals_direct(llama_url: str, through_nexus) -> None:
    direct = _ask(llama_url)
    proxied = _ask(through_nexus.url)
    assert proxied.choices[0].message.content == direct.choices[0].message.content
    assert "Paris" in proxied.choices[0].message.content
    assert proxied.usage is not None and proxied.usage.completion_tokens > 0


def test_streaming_equals_direct_chunk_for_chunk(llama_url: str, through_nexus) -> None:
    def pieces(base: str) -> tuple[list[str], object]:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", timeout=60)
        out, usage = [], None
        for chunk in client.chat.completions.create(
            model=ALIAS,
            messages=PROMPT,
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.choices and chunk.choices[0].delta.content:
                out.append(chunk.choices[0].delta.content)
        return out, usage

    direct, direct_usage = pieces(llama_url)
    proxied, proxied_usage = pieces(through_nexus.url)
    assert proxied == direct
    assert len(proxied) > 3
    assert proxied_usage is not None and direct_usage is not None
    assert proxied_usage.completion_tokens == direct_usage.completion_tokens
    through_nexus.wait_idle()


def test_models_and_capabilities_come_from_server_metadata(llama_url: str, through_nexus) -> None:
    props = httpx.get(llama_url + "/props").json()
    listing = httpx.get(llama_url + "/v1/models").json()
    models = httpx.get(through_nexus.url + "/v1/models").json()["data"]
    assert [m["id"] for m in models] == [listing["data"][0]["id"]] == [ALIAS]
    entry = models[0]
    assert entry["owned_by"] == "llama"
    # the served context per slot (/props n_ctx), not the trained one (8192) or a default
    assert entry["context_length"] == props["default_generation_settings"]["n_ctx"] == 1024
    assert entry["capabilities"]["vision"] is props["modalities"]["vision"] is False
    assert entry["capabilities"]["tools"] is props["chat_template_caps"]["supports_tools"]


# --- never stricter than the backend (issue #10) ----------------------------------------------


def test_max_tokens_beyond_the_slot_is_served(llama_url: str, through_nexus) -> None:
    """1024-token slot, max_tokens 2048: llama.cpp clamps and answers, so Nexus must route."""
    client = openai.OpenAI(base_url=through_nexus.url + "/v1", api_key="unused", timeout=60)
    reply = client.chat.completions.create(
        model=ALIAS, messages=PROMPT, max_tokens=2048, temperature=0
    )
    assert "Paris" in (reply.choices[0].message.content or "")


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_tools_to_a_template_without_tools_is_served(llama_url: str, through_nexus) -> None:
    props = httpx.get(llama_url + "/props").json()
    assert props["chat_template_caps"]["supports_tools"] is False  # the premise
    r = httpx.post(
        through_nexus.url + "/v1/chat/completions",
        json={"model": ALIAS, "messages": PROMPT, "tools": TOOLS, "max_tokens": 16},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-nexus-backend"] == "llama"


def test_tools_prefer_a_tools_capable_backend(fakes, nexus, llama_url: str) -> None:
    able = fakes("ollama", [{"id": ALIAS, "tools": True}], reply="from the tools-capable one")
    d = nexus(
        {
            "backends": [
                {"name": "llama", "url": llama_url, "type": "llamacpp", "priority": 1},
                {"name": "able", "url": able.url, "type": "ollama", "priority": 99},
            ]
        }
    )
    d.wait_healthy("llama", "able", timeout=20)
    body = {"model": ALIAS, "messages": PROMPT, "max_tokens": 8}
    for _ in range(3):
        r = httpx.post(d.url + "/v1/chat/completions", json={**body, "tools": TOOLS}, timeout=60)
        assert r.status_code == 200 and r.headers["x-nexus-backend"] == "able"
    # without tools the priority decides again: the real server
    r = httpx.post(d.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.headers["x-nexus-backend"] == "llama"


# --- embeddings on the real server ------------------------------------------------------------


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "hello world",
    "A man is eating food.",
    "Nexus routes requests to local inference servers.",
    "Embeddings turn text into vectors.",
    "Paris is the capital of France.",
    "The weather is lovely today.",
    "llama.cpp serves GGUF models over HTTP.",
]


@pytest.fixture
def embed_nexus(nexus, embed_url: str):
    d = nexus({"backends": [{"name": "emb", "url": embed_url, "type": "llamacpp"}]})
    d.wait_healthy("emb", timeout=20)
    return d


def test_embeddings_equal_the_servers_own(embed_url: str, embed_nexus) -> None:
    for inputs in ("What is the capital of France?", SENTENCES):
        body = {"model": EMBED_ALIAS, "input": inputs, "encoding_format": "float"}
        direct = httpx.post(embed_url + "/v1/embeddings", json=body, timeout=60).json()
        proxied = httpx.post(embed_nexus.url + "/v1/embeddings", json=body, timeout=60)
        assert proxied.status_code == 200
        got = proxied.json()
        assert len(got["data"]) == len(direct["data"]) == (1 if isinstance(inputs, str) else 8)
        for mine, theirs in zip(got["data"], direct["data"], strict=True):
            assert len(mine["embedding"]) == 384
            assert _cosine(mine["embedding"], theirs["embedding"]) >= 0.9999
        assert got["usage"]["prompt_tokens"] == direct["usage"]["prompt_tokens"]
    # and through the official SDK
    client = openai.OpenAI(base_url=embed_nexus.url + "/v1", api_key="unused")
    assert len(client.embeddings.create(model=EMBED_ALIAS, input=SENTENCES).data) == 8
    embed_nexus.wait_idle()
    recs = embed_nexus.call(lambda: embed_nexus.core.history.recent(10))
    assert recs[0].endpoint == "embeddings" and recs[0].prompt_tokens


def test_chat_to_the_embedding_model_is_400_and_the_backend_stays_healthy(
    embed_nexus,
) -> None:
    model = embed_nexus.call(lambda: embed_nexus.core.registry.get("emb").models[EMBED_ALIAS])
    assert model.embeddings and model.knows("embeddings")  # stated by the server itself
    for _ in range(10):
        r = httpx.post(
            embed_nexus.url + "/v1/chat/completions",
            json={"model": EMBED_ALIAS, "messages": PROMPT},
            timeout=30,
        )
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "wrong_endpoint"
    backend = embed_nexus.backend("emb")
    assert backend.routable and backend.passive_failures == 0 and backend.errors == 0


def test_embeddings_to_the_chat_server_is_400(through_nexus) -> None:
    r = httpx.post(
        through_nexus.url + "/v1/embeddings", json={"model": ALIAS, "input": "x"}, timeout=30
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_endpoint"


def test_embeddings_fail_over_to_the_same_model_on_another_server(nexus) -> None:
    with (
        llama_server(EMBED_MODEL, EMBED_ALIAS, "--embedding") as (first_url, first),
        llama_server(EMBED_MODEL, EMBED_ALIAS, "--embedding") as (second_url, _),
    ):
        d = nexus(
            {
                "backends": [
                    {"name": "first", "url": first_url, "type": "llamacpp", "priority": 1},
                    {"name": "second", "url": second_url, "type": "llamacpp", "priority": 99},
                ]
            }
        )
        d.wait_healthy("first", "second", timeout=20)
        body = {"model": EMBED_ALIAS, "input": SENTENCES[:3]}
        r = httpx.post(d.url + "/v1/embeddings", json=body, timeout=60)
        assert r.headers["x-nexus-backend"] == "first"
        first.terminate()
        first.wait(10)
        r = httpx.post(d.url + "/v1/embeddings", json=body, timeout=60)
        assert r.status_code == 200 and r.headers["x-nexus-backend"] == "second"
        assert len(r.json()["data"]) == 3


def test_a_failing_embedding_model_never_falls_over_to_another(fakes, nexus) -> None:
    other = fakes("ollama", [{"id": "other-embedder", "embedding": True}])
    with llama_server(EMBED_MODEL, EMBED_ALIAS, "--embedding") as (url, proc):
        d = nexus(
            {
                "backends": [
                    {"name": "emb", "url": url, "type": "llamacpp"},
                    {"name": "other", "url": other.url, "type": "ollama"},
                ],
                "routing": {"fallbacks": {EMBED_ALIAS: ["other-embedder"]}},
            }
        )
        d.wait_healthy("emb", "other", timeout=20)
        proc.terminate()
        proc.wait(10)
        r = httpx.post(
            d.url + "/v1/embeddings", json={"model": EMBED_ALIAS, "input": "x"}, timeout=30
        )
        assert r.status_code in (502, 503)
        assert other.embedding_requests == []
        # chat keeps its fallbacks: the rule is only for vectors
        assert d.call(lambda: d.core.gateway.chain(EMBED_ALIAS, Endpoint.CHAT)) == [
            EMBED_ALIAS,
            "other-embedder",
        ]


# --- legacy completions on the real server -----------------------------------------------------


def test_completions_equal_direct_stream_and_not(llama_url: str, through_nexus) -> None:
    body = {
        "model": ALIAS,
        "prompt": "The capital of France is",
        "max_tokens": 16,
        "temperature": 0,
        "cache_prompt": False,
    }
    direct = httpx.post(llama_url + "/v1/completions", json=body, timeout=60).json()
    proxied = httpx.post(through_nexus.url + "/v1/completions", json=body, timeout=60)
    assert proxied.status_code == 200
    assert proxied.json()["choices"][0]["text"] == direct["choices"][0]["text"]
    assert "Paris" in direct["choices"][0]["text"]

    def pieces(base: str) -> list[str]:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", timeout=60)
        stream = client.completions.create(
            model=ALIAS,
            prompt=body["prompt"],
            max_tokens=16,
            temperature=0,
            stream=True,
            extra_body={"cache_prompt": False},
        )
        return [c.choices[0].text for c in stream if c.choices]

    direct_pieces = pieces(llama_url)
    assert pieces(through_nexus.url) == direct_pieces
    assert "".join(direct_pieces) == direct["choices"][0]["text"]
    through_nexus.wait_idle()
    recs = through_nexus.call(lambda: through_nexus.core.history.recent(5))
    assert [r.endpoint for r in recs[:2]] == ["completions", "completions"]


# --- llama.cpp's native Anthropic Messages API as a backend of type `anthropic` (issue #13) ----


@pytest.fixture
def anthropic_nexus(nexus, llama_url: str, monkeypatch: pytest.MonkeyPatch):
    """The same server registered as an Anthropic backend: Nexus translates OpenAI chat to
    llama.cpp's own ``/v1/messages`` and back (an implementation nobody on the team wrote)."""
    monkeypatch.setenv("NEXUS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    d = nexus(
        {
            "backends": [
                {
                    "name": "claude-ish",
                    "url": llama_url,
                    "type": "anthropic",
                    "api_key_env": "NEXUS_TEST_ANTHROPIC_KEY",
                }
            ]
        }
    )
    d.wait_healthy("claude-ish", timeout=20)
    return d


def test_anthropic_translation_equals_the_servers_openai_answer(
    llama_url: str, anthropic_nexus
) -> None:
    direct = openai.OpenAI(base_url=llama_url + "/v1", api_key="unused", timeout=60)
    nexus = openai.OpenAI(base_url=anthropic_nexus.url + "/v1", api_key="sk-client", timeout=60)
    args = {"model": ALIAS, "messages": PROMPT, "max_tokens": 24, "temperature": 0}
    expected = direct.chat.completions.create(**args).choices[0].message.content
    raw = nexus.chat.completions.with_raw_response.create(**args)
    reply = raw.parse()  # the SDK's own types: a valid chat.completion
    assert raw.headers["x-nexus-backend"] == "claude-ish"
    assert reply.choices[0].message.content == expected and "Paris" in (expected or "")
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0

    stream = nexus.chat.completions.create(
        **args, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and finishes.count(None) == len(finishes) - 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0

    anthropic_nexus.wait_idle()
    recs = anthropic_nexus.call(lambda: anthropic_nexus.core.history.recent(2))
    assert [(r.stream, r.backend, r.status_code) for r in recs] == [
        (False, "claude-ish", 200),
        (True, "claude-ish", 200),
    ]
    assert all(r.prompt_tokens and r.completion_tokens for r in recs)
    # a model with no price on a cloud-type backend: never a silent 0
    assert {(r.cost_status, r.cost_usd) for r in recs} == {("unknown", None)}


# --- the other client dialects in front of the real server (issue #14) -------------------------


QUESTION = "What is the capital of France? Answer in one sentence."


def test_anthropic_sdk_through_nexus_equals_the_servers_own_messages_api(
    llama_url: str, through_nexus
) -> None:
    """Type ``llamacpp`` is OpenAI-compatible: Nexus translates Anthropic → chat and back."""
    import anthropic

    direct = anthropic.Anthropic(base_url=llama_url, api_key="unused", max_retries=0)
    nexus = anthropic.Anthropic(base_url=through_nexus.url, api_key="sk-client", max_retries=0)
    # the current SDK has no sampling parameters; older clients send them, Nexus takes them
    args: dict[str, Any] = {
        "model": ALIAS,
        "max_tokens": 24,
        "extra_body": {"temperature": 0},
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    expected = direct.messages.create(**args)
    reply = nexus.messages.create(**args)
    assert reply.content[0].type == "text" and "Paris" in reply.content[0].text
    assert reply.content[0].text == expected.content[0].text  # type: ignore[union-attr]
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.stop_reason in ("end_turn", "max_tokens")
    with nexus.messages.stream(**args) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == reply.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0
    count = nexus.messages.count_tokens(
        model=ALIAS, messages=[{"role": "user", "content": QUESTION}]
    )
    assert 5 < count.input_tokens < 100
    through_nexus.wait_idle()
    recs = through_nexus.call(lambda: through_nexus.core.history.recent(2))
    assert [(r.dialect, r.translated, r.stream) for r in recs] == [
        ("anthropic", True, False),
        ("anthropic", True, True),
    ]


def test_anthropic_sdk_to_an_anthropic_backend_passes_through_natively(
    llama_url: str, anthropic_nexus
) -> None:
    import anthropic

    direct = anthropic.Anthropic(base_url=llama_url, api_key="unused", max_retries=0)
    nexus = anthropic.Anthropic(base_url=anthropic_nexus.url, api_key="sk-client", max_retries=0)
    args: dict[str, Any] = {
        "model": ALIAS,
        "max_tokens": 24,
        "extra_body": {"temperature": 0},
        "messages": [{"role": "user", "content": QUESTION}],
    }
    expected = direct.messages.create(**args).content[0].text  # type: ignore[union-attr]
    assert nexus.messages.create(**args).content[0].text == expected  # type: ignore[union-attr]
    with nexus.messages.stream(**args) as stream:
        assert "".join(stream.text_stream) == expected
        assert stream.get_final_message().usage.output_tokens > 0
    anthropic_nexus.wait_idle()
    recs = anthropic_nexus.call(lambda: anthropic_nexus.core.history.recent(2))
    assert [(r.dialect, r.translated, r.stream) for r in recs] == [
        ("anthropic", False, False),
        ("anthropic", False, True),
    ]
    assert all(r.prompt_tokens and r.completion_tokens for r in recs)  # read natively


def test_responses_through_nexus_equal_the_servers_own(llama_url: str, through_nexus) -> None:
    """llama.cpp serves ``/v1/responses`` itself: its prober finds it, and Responses clients
    pass through natively (no translation); the text is the server's own."""
    direct = openai.OpenAI(base_url=llama_url + "/v1", api_key="unused", max_retries=0)
    nexus = openai.OpenAI(base_url=through_nexus.url + "/v1", api_key="x", max_retries=0)
    args: dict[str, Any] = {
        "model": ALIAS,
        "input": QUESTION,
        "instructions": "You are a helpful assistant.",
        "max_output_tokens": 24,
        "temperature": 0,
    }
    expected = direct.responses.create(**args).output_text
    reply = nexus.responses.create(**args)
    assert reply.output_text == expected and "Paris" in expected
    assert reply.usage is not None and reply.usage.output_tokens > 0
    events = list(nexus.responses.create(**args, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == expected
    backend = through_nexus.backend("llama").to_json()
    assert backend["native_dialects"] == ["openai", "responses"]
    through_nexus.wait_idle()
    recs = through_nexus.call(lambda: through_nexus.core.history.recent(2))
    assert [(r.dialect, r.translated) for r in recs] == [("responses", False)] * 2
    assert all(r.prompt_tokens and r.completion_tokens for r in recs)
    with pytest.raises(openai.BadRequestError, match="whole conversation"):
        nexus.responses.create(**args, previous_response_id="resp_123")
