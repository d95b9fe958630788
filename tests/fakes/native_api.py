"""Kind-specific fingerprint/health endpoints of llama.cpp, vLLM, LM Studio and exo.

These are what discovery probes to tell backends apart, so each fake answers only its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .openai_api import llamacpp_timings, models_list, prompt_error, reply_json
from .state import FakeModel, cap_pieces, completion_prompts, prompt_tokens
from .wire import dumps, sse

if TYPE_CHECKING:
    from .server import FakeBackend

VLLM_VERSION = "0.11.0"
_SAMPLING = {"n_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}


def _llamacpp(app: web.Application, fb: FakeBackend) -> None:
    def served() -> FakeModel:
        return fb.models[0] if fb.models else FakeModel("fake-model")

    def slot() -> dict[str, Any]:
        busy = fb.active_chats > 0
        return {
            "id": 0,
            "id_task": 1 if busy else -1,
            "n_ctx": served().context_length,
            "speculative": False,
            "is_processing": busy,
            "params": dict(_SAMPLING),
            "next_token": [{"has_next_token": busy, "n_remain": -1, "n_decoded": 0}],
        }

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})  # loading is answered by the middleware

    async def props(request: web.Request) -> web.Response:
        m = served()
        return web.json_response(
            {
                "default_generation_settings": {
                    "n_ctx": m.context_length,
                    "params": dict(_SAMPLING),
                },
                "total_slots": 1,
                "model_alias": m.id,
                "model_path": f"/models/{m.id}.gguf",
                "chat_template": "{% for message in messages %}{{ message.content }}{% endfor %}",
                "modalities": {"vision": m.vision, "audio": False},
                "build_info": "b0-unknown",
            }
        )

    async def slots(request: web.Request) -> web.Response:
        if request.query.get("fail_on_no_slot") == "1" and fb.active_chats > 0:
            return fb.error(request, 503, "no slot available")
        return web.json_response([slot()])

    async def completion(request: web.Request) -> web.StreamResponse:
        """llama.cpp's native `/completion(s)`: `content`/`stop` objects, no `[DONE]`."""
        gated = await fb.gate(request, "completions")
        if isinstance(gated, web.StreamResponse):
            return gated
        body, model = gated
        raw = body.get("prompt")
        prompts = completion_prompts(raw)
        if prompts is None:
            return fb.error(request, 400, prompt_error(fb, raw))
        limit = body.get("n_predict", body.get("max_tokens"))
        pieces, finish = cap_pieces(fb.pieces, limit)
        stream = bool(body.get("stream"))

        def final(index: int, prompt: str | list[int], content: str) -> dict[str, Any]:
            evaluated = prompt_tokens([prompt])
            return {
                "index": index,
                "content": content,
                "tokens": [],
                "id_slot": 0,
                "stop": True,
                "model": model.id,
                "tokens_predicted": len(pieces),
                "tokens_evaluated": evaluated,
                "generation_settings": {
                    **_SAMPLING,
                    "n_predict": limit if isinstance(limit, int) else -1,
                    "stream": stream,
                },
                "prompt": prompt if isinstance(prompt, str) else dumps(prompt),
                "has_new_line": "\n" in content,
                "truncated": False,
                "stop_type": "limit" if finish == "length" else "eos",
                "stopping_word": "",
                "tokens_cached": evaluated + len(pieces),
                "timings": llamacpp_timings(evaluated, len(pieces)),
            }

        if not stream:
            text = fb.reply if finish == "stop" else "".join(pieces)
            results = [final(i, p, text) for i, p in enumerate(prompts)]
            return await reply_json(fb, request, results[0] if len(results) == 1 else results)

        def partial(index: int, prompt: str | list[int], n: int, piece: str) -> bytes:
            return sse(
                {
                    "index": index,
                    "content": piece,
                    "tokens": [1000 + n],
                    "stop": False,
                    "id_slot": -1,
                    "tokens_predicted": n + 1,
                    "tokens_evaluated": prompt_tokens([prompt]),
                }
            )

        return await fb.stream(
            request,
            "text/event-stream",
            head=[],
            content=[
                partial(i, prompt, n, piece)
                for i, prompt in enumerate(prompts)
                for n, piece in enumerate(pieces)
            ],
            tail=[sse(final(i, prompt, "")) for i, prompt in enumerate(prompts)],
        )

    async def metrics(request: web.Request) -> web.Response:
        text = (
            f"llamacpp:requests_processing {fb.active_chats}\n"
            "llamacpp:requests_deferred 0\n"
            f"llamacpp:n_tokens_max {served().context_length}\n"
        )
        return web.Response(text=text, content_type="text/plain")

    app.router.add_get("/health", health)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/props", props)
    app.router.add_get("/slots", slots)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/completion", completion)  # legacy name, still served
    app.router.add_post("/completions", completion)


def _vllm(app: web.Application, fb: FakeBackend) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.Response(status=503 if fb.faults.loading else 200)

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": VLLM_VERSION})

    async def metrics(request: web.Request) -> web.Response:
        lines = []
        for m in fb.models:
            label = f'{{model_name="{m.id}"}}'
            lines += [
                f"vllm:num_requests_running{label} {float(fb.active_chats)}",
                f"vllm:num_requests_waiting{label} 0.0",
                f"vllm:kv_cache_usage_perc{label} 0.0",
            ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)


def _lmstudio(app: web.Application, fb: FakeBackend) -> None:
    def entry(m: FakeModel) -> dict[str, Any]:
        kind = "embeddings" if m.embedding else "vlm" if m.vision else "llm"
        out: dict[str, Any] = {
            "id": m.id,
            "object": "model",
            "type": kind,
            "publisher": "lmstudio-community",
            "arch": "llama",
            "compatibility_type": "gguf",
            "quantization": "Q4_K_M",
            "state": "loaded" if m.loaded else "not-loaded",
            "max_context_length": m.context_length,
        }
        if m.loaded:
            out["loaded_context_length"] = m.context_length
        return out

    async def v0_models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [entry(m) for m in fb.models]})

    async def v0_model(request: web.Request) -> web.Response:
        ident = request.match_info["model"]
        found = next((m for m in fb.models if m.id == ident), None)
        if found is None:
            return fb.error(request, 404, f"model '{ident}' not found")
        return web.json_response(entry(found))

    app.router.add_get("/api/v0/models", v0_models)
    app.router.add_get("/api/v0/models/{model:.+}", v0_model)


def _exo(app: web.Application, fb: FakeBackend) -> None:
    async def models(request: web.Request) -> web.Response:
        return web.json_response(models_list(fb))

    async def state(request: web.Request) -> web.Response:
        return web.json_response({"nodes": {}})

    app.router.add_get("/models", models)
    app.router.add_get("/state", state)


_BY_KIND = {"llamacpp": _llamacpp, "vllm": _vllm, "lmstudio": _lmstudio, "exo": _exo}


def add_routes(app: web.Application, fb: FakeBackend) -> None:
    if extra := _BY_KIND.get(fb.kind):
        extra(app, fb)
