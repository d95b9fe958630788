"""A real backend nobody on the team wrote: llama.cpp's server with SmolLM2-135M.

Provisioned by ``scripts/fetch_test_model.sh`` (run by .ci/run). Locally the module is
skipped when the model is missing; under CI (``CI=true``) a missing model fails loudly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

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


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        available = False
    else:
        available = MODEL.is_file()
    if not available:
        message = f"real backend not provisioned (run scripts/fetch_test_model.sh; model {MODEL})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts/llama_server.py"),
            str(MODEL),
            str(port),
            "--alias",
            ALIAS,
            "--ctx",
            "2048",
            "--parallel",
            "2",
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
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


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
