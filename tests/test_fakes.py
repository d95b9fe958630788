"""The fakes must speak the real wire protocols, or gateway tests built on them prove nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import KINDS, FakeBackend, FakeHost, FakeModel

REPO = Path(__file__).resolve().parents[1]
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "say hello to me"}]}
COMPLETION = {"model": "m1", "prompt": "once upon a time"}
STREAM_USAGE = {"stream": True, "stream_options": {"include_usage": True}}
LLAMA_NO_EMBEDDINGS = {
    "error": {
        "code": 501,
        "message": "This server does not support embeddings. Start it with `--embeddings`",
        "type": "not_supported_error",
    }
}
LLAMA_NO_LOGITS = {
    "error": {
        "code": 500,
        "message": "the current context does not support logits computation. skipping",
        "type": "server_error",
    }
}
Make = Callable[..., Awaitable[FakeBackend]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Start backends on free ports and always stop them, even when a test fails."""
    started: list[FakeBackend] = []

    async def _make(kind: str, models: list[Any] | None = None, **kw: Any) -> FakeBackend:
        fb = FakeBackend(kind, models or ["m1"], **kw)
        await fb.start()
        started.append(fb)
        return fb

    yield _make
    for fb in started:
        await fb.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


def sse_events(raw: str) -> list[str]:
    """Split an SSE body, asserting every event is terminated by a blank line."""
    assert raw.endswith("\n\n")
    events = raw.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


def sse_json(raw: str) -> list[dict[str, Any]]:
    """The JSON events of an OpenAI stream, asserting it ends with `[DONE]`."""
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@asynccontextmanager
async def cli_fake(*args: str) -> AsyncIterator[str]:
    """Run `python -m tests.fakes ARGS --port 0`; yield its URL; SIGTERM it and expect rc 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tests.fakes", *args, "--port", "0"),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith(f"fake {args[0]} listening on http://127.0.0.1:"), line
        yield line
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    assert rc == 0


# --------------------------------------------------------------------------- listings
@pytest.mark.parametrize("kind", KINDS)
async def test_v1_models_listing(make: Make, client: httpx.AsyncClient, kind: str) -> None:
    fb = await make(kind, [FakeModel("m1", context_length=8192), "m2"])
    body = (await client.get(f"{fb.url}/v1/models")).json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == (["m1"] if kind == "llamacpp" else ["m1", "m2"])
    first = body["data"][0]
    assert first["object"] == "model" and isinstance(first["created"], int)
    owned = {"vllm": "vllm", "llamacpp": "llamacpp", "lmstudio": "organization_owner", "exo": "exo"}
    if kind in owned:
        assert first["owned_by"] == owned[kind]
    if kind == "vllm":
        assert first["max_model_len"] == 8192
    if kind == "llamacpp":
        assert first["meta"]["n_ctx_train"] == 8192
        assert first["meta"]["n_params"] == 134515008


async def test_ollama_native_listing(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make(
        "ollama",
        [FakeModel("llama3:8b", context_length=8192), FakeModel("llava:7b", vision=True)],
    )
    root = await client.get(fb.url + "/")
    assert root.text == "Ollama is running"
    assert (await client.get(fb.url + "/api/version")).json() == {"version": "0.12.6"}
    tags = (await client.get(fb.url + "/api/tags")).json()["models"]
    assert [t["name"] for t in tags] == ["llama3:8b", "llava:7b"]
    assert len(tags[0]["digest"]) == 64
    assert tags[0]["details"]["parameter_size"] == "8.0B"
    assert tags[0]["details"]["quantization_level"] == "Q4_0"

    fb.models[1].loaded = False
    ps = (await client.get(fb.url + "/api/ps")).json()["models"]
    assert [(p["name"], p["context_length"]) for p in ps] == [("llama3:8b", 8192)]
    assert {"size", "size_vram", "expires_at"} <= set(ps[0])

    show = (await client.post(fb.url + "/api/show", json={"model": "llava:7b"})).json()
    assert show["capabilities"] == ["completion", "vision"]
    assert show["model_info"]["llama.context_length"] == 4096
    legacy = await client.post(fb.url + "/api/show", json={"name": "llama3:8b"})
    assert legacy.json()["model_info"]["general.architecture"] == "llama"
    missing = await client.post(fb.url + "/api/show", json={"model": "nope"})
    assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}


async def test_llamacpp_native(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("llamacpp", [FakeModel("smollm2", context_length=2048, vision=True)])
    assert (await client.get(fb.url + "/health")).json() == {"status": "ok"}
    props = (await client.get(fb.url + "/props")).json()
    assert props["default_generation_settings"]["n_ctx"] == 2048
    assert props["total_slots"] == 1 and props["model_path"] == "/models/smollm2.gguf"
    assert props["modalities"] == {"vision": True, "audio": False}
    slots = (await client.get(fb.url + "/slots")).json()
    assert slots[0]["n_ctx"] == 2048 and slots[0]["is_processing"] is False

    fb.faults.loading = True
    health = await client.get(fb.url + "/health")
    assert health.status_code == 503
    assert health.json() == {
        "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
    }
    assert (await client.post(fb.url + "/v1/chat/completions", json=CHAT)).status_code == 503


async def test_vllm_lmstudio_exo_native(make: Make, client: httpx.AsyncClient) -> None:
    vllm = await make("vllm")
    health = await client.get(vllm.url + "/health")
    assert health.status_code == 200 and health.content == b""
    assert (await client.get(vllm.url + "/version")).json() == {"version": "0.11.0"}
    vllm.faults.loading = True
    assert (await client.get(vllm.url + "/health")).status_code == 503

    lms = await make(
        "lmstudio", [FakeModel("qwen", context_length=32768), FakeModel("emb", embedding=True)]
    )
    lms.models[0].loaded = False
    data = (await client.get(lms.url + "/api/v0/models")).json()["data"]
    assert [(d["id"], d["type"], d["state"]) for d in data] == [
        ("qwen", "llm", "not-loaded"),
        ("emb", "embeddings", "loaded"),
    ]
    assert data[0]["max_context_length"] == 32768
    await client.post(lms.url + "/v1/chat/completions", json={**CHAT, "model": "qwen"})
    data = (await client.get(lms.url + "/api/v0/models")).json()["data"]
    assert data[0]["state"] == "loaded"  # JIT load, like LM Studio

    exo = await make("exo")
    assert (await client.get(exo.url + "/models")).json()["data"][0]["id"] == "m1"
    assert (await client.get(exo.url + "/state")).json() == {"nodes": {}}


# ------------------------------------------------------------------------------ chat
@pytest.mark.parametrize("kind", KINDS)
async def test_chat_non_stream(make: Make, client: httpx.AsyncClient, kind: str) -> None:
    fb = await make(kind, reply="Hi there friend")
    resp = await client.post(f"{fb.url}/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "m1"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi there friend"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    assert "messages" not in body


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_framing(make: Make, client: httpx.AsyncClient, kind: str) -> None:
    fb = await make(kind, reply="one two three")
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    resp = await client.post(f"{fb.url}/v1/chat/completions", json=payload)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert content == ["one ", "two ", "three"]
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_stream_without_usage_and_exact_chunks(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("openai", reply="Hi you", chunks=12)
    resp = await client.post(f"{fb.url}/v1/chat/completions", json={**CHAT, "stream": True})
    chunks = [json.loads(e) for e in sse_events(resp.text)[:-1]]
    assert all(c["choices"] for c in chunks)  # no usage chunk unless asked
    assert len(chunks) == 1 + 12 + 1
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "".join(
        fb.pieces
    )


async def test_unknown_model_and_bad_json(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("vllm")
    resp = await client.post(f"{fb.url}/v1/chat/completions", json={**CHAT, "model": "x"})
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {
            "message": "model 'x' not found",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }
    bad = await client.post(f"{fb.url}/v1/chat/completions", content=b"{nope")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"

    llama = await make("llamacpp", ["smollm2"])
    ok = await client.post(f"{llama.url}/v1/chat/completions", json={**CHAT, "model": "any"})
    assert ok.status_code == 200 and ok.json()["model"] == "smollm2"  # real server's alias


async def test_fail_status_then_recover(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("openai")
    fb.faults.fail_status, fb.faults.fail_times, fb.faults.retry_after = 429, 2, 7
    statuses = []
    for _ in range(3):
        resp = await client.post(f"{fb.url}/v1/chat/completions", json=CHAT)
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            assert resp.headers["retry-after"] == "7"
            assert set(resp.json()["error"]) == {"message", "type", "code"}
    assert statuses == [429, 429, 200]
    assert fb.faults.fail_times == 0
    assert (await client.get(f"{fb.url}/v1/models")).status_code == 200  # chat-only fault


async def test_malformed_health_and_latency(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("ollama")
    fb.faults.malformed_json = True
    resp = await client.post(f"{fb.url}/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200 and resp.text == "not json{"
    fb.faults.malformed_json = False

    fb.faults.health_status = 500
    for path in ("/", "/api/tags", "/api/version", "/v1/models"):
        assert (await client.get(fb.url + path)).status_code == 500
    fb.faults.health_status = None

    fb.faults.latency_s = 0.2
    started = time.monotonic()
    assert (await client.post(f"{fb.url}/v1/chat/completions", json=CHAT)).status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_drop_after_chunks_breaks_the_body(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("openai", reply="a b c d e f")
    fb.faults.drop_after_chunks = 2
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST", f"{fb.url}/v1/chat/completions", json={**CHAT, "stream": True}
        ) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    received.append(line)
    assert len(received) == 1 + 2  # role chunk + 2 content chunks, no finish, no [DONE]
    assert fb.client_disconnects == 0  # our own abort is not a client hang-up
    assert fb.streams_open == 0


async def test_client_disconnect_is_observable(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("openai", reply="a b c d e f g h")
    fb.faults.chunk_delay_s = 0.05
    async with client.stream(
        "POST", f"{fb.url}/v1/chat/completions", json={**CHAT, "stream": True}
    ) as resp:
        async for line in resp.aiter_lines():
            if '"content":"a ' in line:
                assert fb.streams_open == 1
                break
    assert await fb.wait_stream_closed(timeout=5)
    assert fb.client_disconnects == 1 and fb.stream_disconnects == 1
    assert await fb.wait_until(lambda: fb.streams_open == 0, timeout=5)


async def test_client_timeout_during_latency_is_observable(make: Make) -> None:
    fb = await make("ollama")
    fb.faults.latency_s = 30
    async with httpx.AsyncClient(timeout=0.2) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post(f"{fb.url}/v1/chat/completions", json=CHAT)
    assert await fb.wait_client_disconnects(1, timeout=5)
    assert fb.stream_disconnects == 0


async def test_stop_refuses_then_restart_same_port(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("vllm")
    url = fb.url
    await fb.stop()
    with pytest.raises(httpx.ConnectError):
        await client.get(url + "/health")
    await fb.start(port=fb.port)
    assert fb.url == url
    assert (await client.get(url + "/health")).status_code == 200


async def test_ollama_native_chat_and_embeddings(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("ollama", ["llama3:8b", FakeModel("nomic-embed", embedding=True)], reply="x y")
    native = {"model": "llama3:8b", "messages": CHAT["messages"]}
    resp = await client.post(fb.url + "/api/chat", json=native)  # streams by default
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert [line["done"] for line in lines] == [False, False, True]
    assert "".join(line["message"]["content"] for line in lines) == "x y"
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] == 2

    once = (await client.post(fb.url + "/api/chat", json={**native, "stream": False})).json()
    assert once["message"] == {"role": "assistant", "content": "x y"} and once["done"] is True
    assert once["prompt_eval_count"] == 4

    unload = {"model": "llama3:8b", "messages": [], "keep_alive": 0}
    assert (await client.post(fb.url + "/api/chat", json=unload)).json()["done_reason"] == "unload"
    assert fb.models[0].loaded is False

    emb = await client.post(fb.url + "/api/embed", json={"model": "nomic-embed", "input": "hi"})
    assert len(emb.json()["embeddings"][0]) == 8
    v1 = await client.post(
        fb.url + "/v1/embeddings", json={"model": "nomic-embed", "input": ["hi", "yo"]}
    )
    data = v1.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert data[0]["embedding"] == emb.json()["embeddings"][0]  # deterministic
    not_emb = await client.post(
        fb.url + "/v1/embeddings", json={"model": "llama3:8b", "input": "a"}
    )
    assert not_emb.status_code == 400


async def test_recording_and_control_endpoints(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("openai")
    await client.post(f"{fb.url}/v1/chat/completions", json=CHAT, headers={"X-Trace": "abc"})
    await client.get(f"{fb.url}/v1/models")
    assert [r.path for r in fb.requests] == ["/v1/chat/completions", "/v1/models"]
    [chat] = fb.chat_requests
    assert chat.headers["x-trace"] == "abc" and chat.json == CHAT

    resp = await client.post(f"{fb.url}/_fake/faults", json={"fail_status": 503})
    assert resp.json()["faults"]["fail_status"] == 503 and fb.faults.fail_status == 503
    assert (await client.post(f"{fb.url}/_fake/faults", json={"bogus": 1})).status_code == 400
    await client.post(f"{fb.url}/_fake/models", json=["a", {"id": "b", "vision": True}])
    assert [(m.id, m.vision) for m in fb.models] == [("a", False), ("b", True)]
    state = (await client.get(f"{fb.url}/_fake/state")).json()
    assert state["requests"] == 2 and state["streams_open"] == 0  # control calls not recorded


# ---------------------------------------------------------------------- sync helpers
def test_fakehost_restart_keeps_url() -> None:
    with FakeHost() as host:
        fb = host.start(FakeBackend("ollama", ["llama3:8b"]))
        url = fb.url
        assert httpx.get(url + "/api/version").status_code == 200
        host.stop(fb)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/api/version")
        host.restart(fb)
        assert fb.url == url
        assert httpx.get(url + "/api/tags").json()["models"][0]["name"] == "llama3:8b"
        assert host.wait_until(fb, lambda: len(fb.requests) == 2)


def test_openai_sdk_sync() -> None:
    with FakeHost() as host:
        fb = host.start(FakeBackend("vllm", ["m1"], reply="Hello from the fake"))
        sdk = openai.OpenAI(base_url=fb.url + "/v1", api_key="x", max_retries=0)
        done = sdk.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
        assert done.choices[0].message.content == "Hello from the fake"
        assert done.usage is not None and done.usage.completion_tokens == 4
        stream = sdk.chat.completions.create(
            model="m1",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Hello from the fake"
        assert [m.id for m in sdk.models.list()] == ["m1"]
        assert fb.chat_requests[-1].headers["authorization"] == "Bearer x"


async def test_cli_subprocess(client: httpx.AsyncClient) -> None:
    async with cli_fake("openai", "--model", "m1", "--model", "m2,vision") as line:
        assert line.rstrip().endswith("models=[m1,m2]")
        url = line.split()[4]
        models = (await client.get(url + "/v1/models")).json()
        assert [m["id"] for m in models["data"]] == ["m1", "m2"]
        await client.post(url + "/_fake/faults", json={"fail_status": 500, "fail_times": 1})
        assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 500
        assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 200
        done = await client.post(url + "/v1/completions", json=COMPLETION)
        assert done.json()["choices"][0]["text"] == "Hello from the fake"
        state = (await client.get(url + "/_fake/state")).json()
        assert state["chat_requests"] == 2 and state["completion_requests"] == 1


async def test_cli_llamacpp_embedding_server(client: httpx.AsyncClient) -> None:
    async with cli_fake("llamacpp", "--model", "minilm,embedding") as line:
        url = line.split()[4]
        emb = await client.post(url + "/v1/embeddings", json={"input": "hi"})
        assert emb.status_code == 200 and emb.json()["model"] == "minilm"
        chat = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert chat.status_code == 500 and chat.json() == LLAMA_NO_LOGITS


# ----------------------------------------------------------------------- completions
@pytest.mark.parametrize("kind", ["openai", "vllm", "lmstudio", "llamacpp", "ollama"])
async def test_completions_non_stream(make: Make, client: httpx.AsyncClient, kind: str) -> None:
    fb = await make(kind, reply="Hi there friend")
    resp = await client.post(f"{fb.url}/v1/completions", json=COMPLETION)
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"].startswith("chatcmpl-" if kind == "llamacpp" else "cmpl-")
    assert body["object"] == "text_completion" and isinstance(body["created"], int)
    assert body["model"] == "m1"
    choice = {"text": "Hi there friend", "index": 0, "logprobs": None, "finish_reason": "stop"}
    if kind == "ollama":  # Ollama's CompleteChunkChoice has no logprobs field
        del choice["logprobs"]
    assert body["choices"] == [choice]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    if kind == "llamacpp":
        assert body["system_fingerprint"] == "b0-unknown" and body["timings"]["predicted_n"] == 3

    capped = await client.post(f"{fb.url}/v1/completions", json={**COMPLETION, "max_tokens": 2})
    assert capped.json()["choices"][0]["text"] == "Hi there "
    assert capped.json()["choices"][0]["finish_reason"] == "length"
    assert capped.json()["usage"]["completion_tokens"] == 2
    assert [r.json["max_tokens"] for r in fb.completion_requests[1:]] == [2]


@pytest.mark.parametrize("kind", ["openai", "llamacpp", "ollama"])
async def test_completions_stream_with_usage(
    make: Make, client: httpx.AsyncClient, kind: str
) -> None:
    fb = await make(kind, reply="one two three")
    resp = await client.post(f"{fb.url}/v1/completions", json={**COMPLETION, **STREAM_USAGE})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    chunks = sse_json(resp.text)
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "text_completion" and c["model"] == "m1" for c in chunks)
    texts = [c["choices"][0]["text"] for c in chunks[:3]]
    assert texts == ["one ", "two ", "three"]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None] * 3
    usage = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    if kind == "llamacpp":  # real llama-server: usage on the finish chunk, no usage chunk
        assert len(chunks) == 4
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["usage"] == usage and "timings" in chunks[-1]
        return
    assert len(chunks) == 5
    finish = chunks[3]["choices"][0]
    assert finish["text"] == "" and finish["finish_reason"] == "stop"
    assert chunks[4]["choices"] == [] and chunks[4]["usage"] == usage
    if kind == "ollama":  # real Ollama zeroes `usage` on every chunk before the last
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        assert all(c["usage"] == zero for c in chunks[:4])
        assert "logprobs" not in finish
    else:
        assert finish == {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
        assert all("usage" not in c for c in chunks[:4])

    plain = await client.post(f"{fb.url}/v1/completions", json={**COMPLETION, "stream": True})
    assert all(c["choices"] and "usage" not in c for c in sse_json(plain.text))


async def test_completions_stream_max_tokens(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("vllm", reply="a b c d e")
    payload = {**COMPLETION, "stream": True, "max_tokens": 2}
    chunks = sse_json((await client.post(f"{fb.url}/v1/completions", json=payload)).text)
    assert [c["choices"][0]["text"] for c in chunks] == ["a ", "b ", ""]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"

    llama = await make("llamacpp", reply="a b c d e")  # n_predict wins over max_tokens
    payload = {**COMPLETION, "max_tokens": 1, "n_predict": 3}
    body = (await client.post(f"{llama.url}/v1/completions", json=payload)).json()
    assert body["choices"][0]["text"] == "a b c " and body["usage"]["completion_tokens"] == 3


async def test_completions_prompt_forms(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("openai", reply="ok")
    many = {**COMPLETION, "prompt": ["a b", "c"]}
    body = (await client.post(f"{fb.url}/v1/completions", json=many)).json()
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(0, "ok"), (1, "ok")]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    tokens = await client.post(f"{fb.url}/v1/completions", json={**COMPLETION, "prompt": [1, 2]})
    assert len(tokens.json()["choices"]) == 1 and tokens.json()["usage"]["prompt_tokens"] == 2
    arrays = {**COMPLETION, "prompt": [[1, 2], [3]], "stream": True}
    chunks = sse_json((await client.post(f"{fb.url}/v1/completions", json=arrays)).text)
    assert sorted(c["choices"][0]["index"] for c in chunks) == [0, 0, 1, 1]
    for bad in (None, [], 5, [{"x": 1}]):
        resp = await client.post(f"{fb.url}/v1/completions", json={**COMPLETION, "prompt": bad})
        assert resp.status_code == 400
        assert resp.json()["error"]["type"] == "invalid_request_error"

    ollama = await make("ollama")
    resp = await client.post(f"{ollama.url}/v1/completions", json={**COMPLETION, "prompt": ["a"]})
    assert resp.status_code == 400  # Ollama's CompletionRequest.Prompt is a Go string
    assert resp.json()["error"]["message"] == (
        "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string"
    )
    load = (await client.post(f"{ollama.url}/v1/completions", json={"model": "m1"})).json()
    assert load["choices"][0] == {"text": "", "index": 0, "finish_reason": "load"}

    llama = await make("llamacpp")
    missing = await client.post(f"{llama.url}/v1/completions", json={"model": "m1"})
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "code": 400,
        "message": "[json.exception.out_of_range.403] key 'prompt' not found",
        "type": "invalid_request_error",
    }
    empty = await client.post(f"{llama.url}/v1/completions", json={"prompt": []})
    assert empty.json()["error"]["message"] == '"prompt" must not be empty'


async def test_completions_model_checks(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("vllm", ["m1", FakeModel("emb", embedding=True)])
    resp = await client.post(f"{fb.url}/v1/completions", json={**COMPLETION, "model": "x"})
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {
            "message": "model 'x' not found",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }
    emb = await client.post(f"{fb.url}/v1/completions", json={**COMPLETION, "model": "emb"})
    assert emb.status_code == 400 and emb.json()["error"]["type"] == "invalid_request_error"

    ollama = await make("ollama", [FakeModel("nomic", embedding=True)])
    native = await client.post(f"{ollama.url}/api/generate", json={"model": "nomic", "prompt": "x"})
    v1 = await client.post(f"{ollama.url}/v1/completions", json={"model": "nomic", "prompt": "x"})
    assert native.status_code == v1.status_code == 400

    exo = await make("exo")  # exo has no legacy completions route at all
    assert (await client.post(f"{exo.url}/v1/completions", json=COMPLETION)).status_code == 404
    forced = await make("exo", completions=True)
    assert (await client.post(f"{forced.url}/v1/completions", json=COMPLETION)).status_code == 200


async def test_completions_faults(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("openai", reply="a b c d e f")
    fb.faults.fail_status, fb.faults.fail_times, fb.faults.retry_after = 500, 1, 3
    failed = await client.post(f"{fb.url}/v1/completions", json=COMPLETION)
    assert failed.status_code == 500 and failed.headers["retry-after"] == "3"
    assert failed.json()["error"]["type"] == "server_error"
    ok = await client.post(f"{fb.url}/v1/completions", json=COMPLETION)
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == "a b c d e f"

    fb.faults.malformed_json = True
    assert (await client.post(f"{fb.url}/v1/completions", json=COMPLETION)).text == "not json{"
    fb.faults.malformed_json = False

    fb.faults.drop_after_chunks = 2
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST", f"{fb.url}/v1/completions", json={**COMPLETION, "stream": True}
        ) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    received.append(line)
    assert [json.loads(e[6:])["choices"][0]["text"] for e in received] == ["a ", "b "]
    assert fb.client_disconnects == 0 and fb.streams_open == 0

    fb.faults.drop_after_chunks, fb.faults.chunk_delay_s = None, 0.05
    started = time.monotonic()
    resp = await client.post(f"{fb.url}/v1/completions", json={**COMPLETION, "stream": True})
    assert len(sse_json(resp.text)) == 7 and time.monotonic() - started >= 0.3


async def test_completions_recorded(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("ollama")
    await client.post(f"{fb.url}/v1/completions", json=COMPLETION, headers={"X-Trace": "t"})
    await client.post(f"{fb.url}/v1/chat/completions", json=CHAT)
    await client.post(f"{fb.url}/api/generate", json={**COMPLETION, "stream": False})
    [v1, native] = fb.completion_requests
    assert v1.path == "/v1/completions" and v1.json == COMPLETION and v1.headers["x-trace"] == "t"
    assert native.path == "/api/generate" and native.is_completion and not native.is_chat
    assert [r.path for r in fb.chat_requests] == ["/v1/chat/completions"]
    assert [r.endpoint for r in fb.requests] == ["completions", "chat", "completions"]
    assert fb.snapshot()["completion_requests"] == 2 and fb.snapshot()["chat_requests"] == 1


async def test_llamacpp_native_completion(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("llamacpp", ["smol"], reply="a b c")
    for path in ("/completion", "/completions"):
        body = (await client.post(fb.url + path, json={"prompt": "hi", "n_predict": 2})).json()
        assert body["content"] == "a b " and body["stop"] is True and body["model"] == "smol"
        assert body["stop_type"] == "limit" and body["tokens_predicted"] == 2
    many = (await client.post(fb.url + "/completion", json={"prompt": ["x", "y"]})).json()
    assert [(r["index"], r["content"], r["stop_type"]) for r in many] == [
        (0, "a b c", "eos"),
        (1, "a b c", "eos"),
    ]
    resp = await client.post(fb.url + "/completions", json={"prompt": "hi", "stream": True})
    events = [json.loads(e) for e in sse_events(resp.text)]  # native streams have no [DONE]
    assert [(e["content"], e["stop"]) for e in events] == [
        ("a ", False),
        ("b ", False),
        ("c", False),
        ("", True),
    ]
    assert len(fb.completion_requests) == 4


# ------------------------------------------------------------- llama.cpp embeddings
async def test_llamacpp_without_embeddings_501(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("llamacpp", ["smol"])
    for path in ("/v1/embeddings", "/embeddings"):
        for body in (b"{}", b"{nope", b'{"input": "hi", "model": "smol"}'):
            resp = await client.post(fb.url + path, content=body)
            assert resp.status_code == 501
            assert resp.json() == LLAMA_NO_EMBEDDINGS
    assert len(fb.embedding_requests) == 6
    chat = await client.post(fb.url + "/v1/chat/completions", json=CHAT)
    assert chat.status_code == 200


async def test_llamacpp_embedding_server(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("llamacpp", [FakeModel("minilm", embedding=True)])

    async def embeddings(body: dict[str, Any]) -> httpx.Response:
        return await client.post(fb.url + "/v1/embeddings", json=body)

    def invalid(message: str) -> dict[str, Any]:
        return {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}

    missing = await embeddings({})
    assert missing.status_code == 400
    assert missing.json() == invalid('"input" or "content" must be provided')
    empty = await embeddings({"input": []})
    assert empty.status_code == 400 and empty.json() == invalid('"input" must not be empty')
    blank = await embeddings({"input": [""]})
    assert blank.status_code == 400
    assert blank.json() == invalid("Input content cannot be empty")
    ok = (await embeddings({"input": ["a", "b"], "model": "whatever"})).json()
    assert ok["model"] == "whatever" and [d["index"] for d in ok["data"]] == [0, 1]
    assert (await embeddings({"input": "a"})).json()["model"] == "minilm"

    for path, body in (
        ("/v1/chat/completions", CHAT),
        ("/chat/completions", CHAT),
        ("/v1/completions", COMPLETION),
        ("/completion", COMPLETION),
        ("/v1/completions", {**COMPLETION, **STREAM_USAGE}),
    ):
        resp = await client.post(fb.url + path, json=body)
        assert resp.status_code == 500, path
        assert resp.json() == LLAMA_NO_LOGITS


async def test_llamacpp_error_envelope(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("llamacpp", ["smol"])
    bad = await client.post(fb.url + "/v1/completions", content=b"{nope")
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"code", "message", "type"}
    assert bad.json()["error"]["code"] == 400
    fb.faults.fail_status, fb.faults.fail_times = 503, 1
    failed = await client.post(fb.url + "/v1/chat/completions", json=CHAT)
    assert failed.json() == {
        "error": {"code": 503, "message": "injected failure 503", "type": "unavailable_error"}
    }
    missing = await client.get(fb.url + "/v1/models/nope")
    assert missing.json()["error"]["code"] == 404


def test_openai_sdk_completions() -> None:
    with FakeHost() as host:
        fb = host.start(FakeBackend("openai", ["gpt-x"], reply="Hello from the fake"))
        sdk = openai.OpenAI(base_url=fb.url + "/v1", api_key="x", max_retries=0)
        done = sdk.completions.create(model="gpt-x", prompt="Say hi", max_tokens=16)
        assert done.object == "text_completion" and done.id.startswith("cmpl-")
        assert done.choices[0].text == "Hello from the fake"
        assert done.choices[0].finish_reason == "stop"
        assert done.usage is not None and done.usage.total_tokens == 2 + 4
        short = sdk.completions.create(model="gpt-x", prompt=["a", "b"], max_tokens=1)
        assert [(c.index, c.text, c.finish_reason) for c in short.choices] == [
            (0, "Hello ", "length"),
            (1, "Hello ", "length"),
        ]
        stream = sdk.completions.create(
            model="gpt-x", prompt="Say hi", stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
        with pytest.raises(openai.NotFoundError):
            sdk.completions.create(model="nope", prompt="x")
        assert fb.completion_requests[0].json["max_tokens"] == 16
        assert fb.completion_requests[0].headers["authorization"] == "Bearer x"

        llama = host.start(FakeBackend("llamacpp", ["smol"], reply="a b"))
        sdk = openai.OpenAI(base_url=llama.url + "/v1", api_key="x", max_retries=0)
        chunks = list(sdk.completions.create(model="smol", prompt="x", stream=True))
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
