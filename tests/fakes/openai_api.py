"""The OpenAI-compatible surface every kind serves (`/v1/models`, chat, embeddings).

Per-kind quirks that real servers show on this surface are kept here on purpose (llama.cpp's
`meta`, `timings`, null first delta and alias-as-model; vLLM's `max_model_len`), so a gateway
test meets the same variation it will meet in the field.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .state import FakeModel, count_words, embed
from .wire import dumps, new_id, sse

if TYPE_CHECKING:
    from .server import FakeBackend

OWNED_BY = {
    "ollama": "library",
    "openai": "openai",
    "vllm": "vllm",
    "llamacpp": "llamacpp",
    "lmstudio": "organization_owner",
    "exo": "exo",
}


def model_entry(fb: FakeBackend, m: FakeModel) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": m.id,
        "object": "model",
        "created": fb.created,
        "owned_by": OWNED_BY[fb.kind],
    }
    if fb.kind == "vllm":
        entry.update(root=m.id, parent=None, max_model_len=m.context_length)
    elif fb.kind == "llamacpp":
        entry["meta"] = {
            "vocab_type": 2,
            "n_vocab": 49152,
            "n_ctx_train": m.context_length,
            "n_embd": 576,
            "n_params": 134515008,
            "size": 98362432,
        }
    return entry


def served_models(fb: FakeBackend) -> list[FakeModel]:
    """llama.cpp lists exactly one model, like the real single-model server."""
    return fb.models[:1] if fb.kind == "llamacpp" else list(fb.models)


def models_list(fb: FakeBackend) -> dict[str, Any]:
    listing: dict[str, Any] = {
        "object": "list",
        "data": [model_entry(fb, m) for m in served_models(fb)],
    }
    if fb.kind == "llamacpp":  # newer llama-server also answers in an Ollama-ish `models` key
        listing["models"] = [
            {"name": m.id, "model": m.id, "type": "model", "capabilities": ["completion"]}
            for m in served_models(fb)
        ]
    return listing


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _extras(fb: FakeBackend, prompt: int, completion: int) -> dict[str, Any]:
    if fb.kind != "llamacpp":
        return {}
    return {
        "system_fingerprint": "b0-unknown",
        "timings": {"prompt_n": prompt, "predicted_n": completion, "prompt_ms": 1.0},
    }


def add_routes(app: web.Application, fb: FakeBackend) -> None:
    async def list_models(request: web.Request) -> web.Response:
        return web.json_response(models_list(fb))

    async def get_model(request: web.Request) -> web.Response:
        ident = request.match_info["model"]
        found = next((m for m in served_models(fb) if m.id == ident), None)
        if found is None:
            return fb.error(request, 404, f"model '{ident}' not found")
        return web.json_response(model_entry(fb, found))

    async def chat(request: web.Request) -> web.StreamResponse:
        gated = await fb.gate_chat(request)
        if isinstance(gated, web.StreamResponse):
            return gated
        body, model = gated
        name = model.id if fb.kind == "llamacpp" else str(body["model"])
        prompt = count_words(body.get("messages"))
        pieces = fb.pieces
        base = {"id": new_id("chatcmpl"), "created": int(time.time()), "model": name}
        if not body.get("stream"):
            if fb.faults.malformed_json:
                return web.Response(text="not json{", content_type="application/json")
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": fb.reply},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": _usage(prompt, len(pieces)),
                    **_extras(fb, prompt, len(pieces)),
                },
                dumps=dumps,
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "object": "chat.completion.chunk", "choices": [choice]})

        first = None if fb.kind == "llamacpp" else ""
        tail = [chunk({}, "stop")]
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {**base, "object": "chat.completion.chunk", "choices": []}
            usage["usage"] = _usage(prompt, len(pieces))
            tail.append(sse(usage))
        tail.append(sse("[DONE]"))
        return await fb.stream(
            request,
            "text/event-stream",
            head=[chunk({"role": "assistant", "content": first})],
            content=[chunk({"content": p}) for p in pieces],
            tail=tail,
        )

    async def embeddings(request: web.Request) -> web.Response:
        gated = await fb.gate_chat(request, embedding=True)
        if isinstance(gated, web.StreamResponse):
            return gated
        body, model = gated
        texts = embedding_inputs(body.get("input"))
        if texts is None:
            return fb.error(request, 400, "'input' must be a string or a list")
        tokens = count_words(texts)
        return web.json_response(
            {
                "object": "list",
                "model": model.id if fb.kind == "llamacpp" else str(body["model"]),
                "data": [
                    {"object": "embedding", "index": i, "embedding": embed(t)}
                    for i, t in enumerate(texts)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            dumps=dumps,
        )

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    if fb.kind == "llamacpp":  # llama-server also routes these without the /v1 prefix
        app.router.add_get("/models", list_models)
        app.router.add_post("/chat/completions", chat)
        app.router.add_post("/embeddings", embeddings)


def embedding_inputs(value: Any) -> list[str] | None:
    """Normalise OpenAI/Ollama `input` (str, list of str, token ids) to texts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]
        return [v if isinstance(v, str) else dumps(v) for v in value]
    return None
