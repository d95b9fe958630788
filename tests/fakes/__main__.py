"""CLI: `python -m tests.fakes KIND [--port N] [--model ID]...` runs one fake until SIGINT/SIGTERM.

KIND is a local server (ollama, vllm, llamacpp, lmstudio, exo), the OpenAI API (openai; also
any OpenAI-compatible server) or a cloud API speaking its own protocol (anthropic, google).
`--api-key` makes the fake demand that key the provider's way (Bearer, `x-api-key`,
`x-goog-api-key`/`?key=`); `--port 0` picks a free port.

Prints exactly one `fake KIND listening on URL models=[...]` line (flushed) so a parent process
can wait for readiness by reading stdout instead of sleeping. Faults are set with `--fault`
(e.g. the hostile ones: `--fault endless_body=true`) and changed at runtime through
`POST /_fake/faults`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import fields
from typing import Any

from .server import ALL_KINDS, FakeBackend
from .state import FakeModel, Faults

DEFAULT_PORTS = {
    "ollama": 11434,
    "lmstudio": 1234,
    "llamacpp": 8080,
    "vllm": 8000,
    "exo": 52415,
    "openai": 8001,
    "anthropic": 8002,
    "google": 8003,
}
DEFAULT_MODELS = {
    "ollama": "llama3:8b",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
}


def _model(spec: str) -> FakeModel:
    try:
        return FakeModel.parse(spec)
    except ValueError as exc:  # argparse only turns ArgumentTypeError into a clean usage error
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__)
    parser.add_argument("kind", choices=ALL_KINDS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default: the real server's port for KIND")
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        type=_model,
        metavar="ID[,vision][,tools][,embedding][,unloaded][,ctx=N]",
        help=(
            "repeatable; default: llama3:8b for ollama, claude-sonnet-4-5 for anthropic, "
            "gemini-2.5-flash for google, fake-model otherwise. llamacpp serves the first "
            "only, and `embedding` there means started with --embeddings"
        ),
    )
    parser.add_argument("--reply", default="Hello from the fake")
    parser.add_argument(
        "--api-key",
        help=(
            "the key clients must send; default: anthropic and google take any non-empty "
            "key, the other kinds want none"
        ),
    )
    parser.add_argument(
        "--echo",
        action="store_true",
        help="cloud kinds end text answers with `(you said: <last user text>)`",
    )
    parser.add_argument("--chunks", type=int, help="exact number of streamed content chunks")
    parser.add_argument("--chunk-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--latency", type=float, default=0.0, metavar="S")
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        type=_fault,
        default=[],
        metavar="NAME=VALUE",
        help=(
            "repeatable; any `Faults` field, VALUE as JSON (else a string), e.g. "
            "--fault response_bytes=104857600 --fault redirect_to=http://127.0.0.1:9000 "
            "--fault stream_error_after=2 --fault parallel_tools=2"
        ),
    )
    return parser.parse_args(argv)


def _fault(spec: str) -> tuple[str, Any]:
    name, sep, raw = spec.partition("=")
    known = {f.name for f in fields(Faults)}
    if not sep or name not in known:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected NAME=VALUE, NAME one of {sorted(known)}"
        )
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


async def serve(args: argparse.Namespace) -> int:
    default_model = DEFAULT_MODELS.get(args.kind, "fake-model")
    backend = FakeBackend(
        args.kind,
        args.models or [default_model],
        reply=args.reply,
        chunks=args.chunks,
        api_key=args.api_key,
        echo=args.echo,
    )
    backend.max_recorded = 10_000  # a standalone fake may serve a long benchmark
    backend.faults.chunk_delay_s = args.chunk_delay
    backend.faults.latency_s = args.latency
    backend.faults.update(dict(args.faults))
    port = DEFAULT_PORTS[args.kind] if args.port is None else args.port
    try:
        url = await backend.start(args.host, port)
    except OSError as exc:
        print(f"fake {args.kind}: cannot listen on {args.host}:{port}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ids = ",".join(m.id for m in backend.models)
    print(f"fake {args.kind} listening on {url} models=[{ids}]", flush=True)
    try:
        await stop.wait()
    finally:
        await backend.stop()
    return 0


def _runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    """uvloop when available: the fake must never be the bottleneck of a benchmark."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: Sequence[str] | None = None) -> int:
    return _runner()(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
