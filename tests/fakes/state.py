"""Plain data for the fakes: models, faults, recorded requests and the canned text.

Kept free of aiohttp so tests can build and tweak these objects without a running loop.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

# `/v1/messages` is Anthropic's; Google's `models/M:generateContent` paths are matched by suffix
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions", "/api/chat", "/v1/messages"})
# `/completion(s)` are llama.cpp's native routes, `/api/generate` Ollama's native one
COMPLETION_PATHS = frozenset({"/v1/completions", "/completions", "/completion", "/api/generate"})
EMBEDDING_PATHS = frozenset(
    {"/v1/embeddings", "/embeddings", "/embedding", "/api/embed", "/api/embeddings"}
)
# the names Nexus itself uses for `RequestRecord.endpoint`
ENDPOINTS: dict[str, frozenset[str]] = {
    "chat": CHAT_PATHS,
    "completions": COMPLETION_PATHS,
    "embeddings": EMBEDDING_PATHS,
}
GENERATION_PATHS = CHAT_PATHS | COMPLETION_PATHS
#: Google's `POST /v1beta/models/{model}:{method}`, method to endpoint
GOOGLE_METHODS = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
}
_GOOGLE_PATH = re.compile(r"^/v1(?:beta)?/models/[^/:]+:(\w+)$")


def endpoint_of(method: str, path: str) -> str | None:
    """`chat`, `completions` or `embeddings` for an inference request, else None."""
    if method != "POST":
        return None
    google = _GOOGLE_PATH.match(path)
    if google is not None:
        return GOOGLE_METHODS.get(google.group(1))
    return next((name for name, paths in ENDPOINTS.items() if path in paths), None)


@dataclass
class FakeModel:
    """One model as a backend advertises it; the fields drive every listing endpoint."""

    id: str
    context_length: int = 4096
    vision: bool = False
    tools: bool = False
    embedding: bool = False  # llama.cpp: the server was started with `--embeddings`
    loaded: bool = True  # ollama /api/ps and lmstudio `state`; a chat request loads it

    @classmethod
    def parse(cls, spec: str) -> FakeModel:
        """Build from a CLI spec `ID[,vision][,tools][,embedding][,unloaded][,ctx=N]`."""
        ident, *flags = spec.split(",")
        model = cls(ident)
        for flag in flags:
            key, _, value = flag.strip().partition("=")
            if key in {"vision", "tools", "embedding"}:
                setattr(model, key, True)
            elif key == "unloaded":
                model.loaded = False
            elif key in {"ctx", "context_length"}:
                model.context_length = int(value)
            else:
                raise ValueError(f"unknown model flag {flag!r} in {spec!r}")
        return model

    @classmethod
    def coerce(cls, value: FakeModel | str | dict[str, Any]) -> FakeModel:
        """Accept the loose forms tests and the control endpoint use."""
        if isinstance(value, FakeModel):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls(**value)


@dataclass
class Faults:
    """Failure knobs; the server reads them on every request, so tests may flip them anytime."""

    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    fail_status: int | None = None
    fail_times: int | None = None
    drop_after_chunks: int | None = None  # content chunks sent before the TCP abort
    loading: bool = False
    health_status: int | None = None
    malformed_json: bool = False
    retry_after: int | None = None
    # hostile backends (issue 11, written by `hostile`); each applies while it is set.
    # Non-streaming chat/completion answers:
    response_bytes: int | None = None  # a valid JSON answer padded to exactly this many bytes
    response_chunked: bool = False  # ... sent chunked: no Content-Length announces its size
    endless_body: bool = False  # a JSON answer that never ends (an open array, flat out)
    truncate_json: bool = False  # half the JSON answer, well framed, status 200
    # Streaming answers:
    stream_body: str | None = None  # "json" (a whole completion) or "html" instead of events
    stream_content_type: str | None = None  # the Content-Type sent; "" leaves the header out
    unframed_after: int | None = None  # after N whole events, bytes that never end an event
    unframed_delay_s: float = 0.0  # ... a byte per this many seconds; 0: 64 KiB writes flat out
    # Any request:
    redirect_to: str | None = None  # inference requests get a 307 to this base URL + their path
    redirect_probes: bool = False  # ... and so do all other requests (the probes' metadata calls)
    # In-stream errors (every SSE stream: the OpenAI surface's, Anthropic's and Google's):
    stream_error_after: int | None = None  # after N content events, the provider's in-stream
    # error event, then a clean end (before the finish events at the latest, so it always fires)
    # Cloud providers (openai, anthropic, google kinds):
    parallel_tools: int = 1  # tool calls per answer when the fake decides to call tools
    sse_crlf: bool | None = None  # Google's SSE: end lines with CRLF (None: yes, as Google does)

    def update(self, changes: dict[str, Any]) -> None:
        """Merge a partial dict (control endpoint); unknown keys are a caller bug, so raise."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise KeyError(f"unknown fault(s): {sorted(unknown)}")
        for key, value in changes.items():
            setattr(self, key, value)

    def take_failure(self) -> int | None:
        """Status to fail this inference request with (chat, completion or embedding).

        Consumes one of `fail_times`; None means serve normally.
        """
        if self.fail_status is None:
            return None
        if self.fail_times is not None:
            if self.fail_times <= 0:
                return None
            self.fail_times -= 1
        return self.fail_status


_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")


@dataclass
class RecordedRequest:
    """What the fake received, so tests can assert on exactly what Nexus forwarded."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case keys
    json: Any  # parsed body, or None when absent or not JSON
    time: float  # time.monotonic() on arrival
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def endpoint(self) -> str | None:
        """`chat`, `completions`, `embeddings` (native Ollama/llama.cpp routes included) or None."""
        return endpoint_of(self.method, self.path)

    @property
    def credentials(self) -> dict[str, str]:
        """Every credential the request carried, keyed by where it was.

        `authorization` (the whole header, e.g. `Bearer sk-...`), `x-api-key` (Anthropic),
        `x-goog-api-key` (Google's header) and `key` (Google's `?key=` query parameter).
        """
        found = {h: self.headers[h] for h in _CREDENTIAL_HEADERS if h in self.headers}
        if "key" in self.query:
            found["key"] = self.query["key"]
        return found

    @property
    def is_chat(self) -> bool:
        return self.endpoint == "chat"

    @property
    def is_completion(self) -> bool:
        return self.endpoint == "completions"


def split_pieces(reply: str, chunks: int | None) -> list[str]:
    """Cut the reply into stream pieces; `chunks` forces an exact count (repeating if short)."""
    words = re.findall(r"\s*\S+\s*", reply) or ([reply] if reply else [])
    if chunks is None:
        return words
    if chunks <= 0:
        return []
    if chunks <= len(reply):
        bounds = [round(i * len(reply) / chunks) for i in range(chunks + 1)]
        return [reply[a:b] for a, b in itertools.pairwise(bounds)]
    words = words or [""]
    return [words[i % len(words)] for i in range(chunks)]


def cap_pieces(pieces: list[str], limit: Any) -> tuple[list[str], str]:
    """Apply a `max_tokens`-style cap (one piece per token): the pieces sent and finish reason.

    A negative or non-integer limit (llama.cpp's `n_predict: -1`, a missing key) means no cap.
    """
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < len(pieces):
        return pieces[:limit], "length"
    return list(pieces), "stop"


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def completion_prompts(value: Any) -> list[str | list[int]] | None:
    """Split an OpenAI `prompt` into prompts, one choice each; None when malformed.

    Accepts a string, a list of strings, one token-id array or a list of token-id arrays.
    """
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(_is_token(v) for v in value):
        return [list(value)]
    if all(
        isinstance(v, str) or (isinstance(v, list) and v and all(_is_token(t) for t in v))
        for v in value
    ):
        return list(value)
    return None


def prompt_tokens(prompts: list[str | list[int]]) -> int:
    """Rough token count: words of a text prompt, ids of a token-id prompt."""
    return sum(len(p.split()) if isinstance(p, str) else len(p) for p in prompts)


def count_words(value: Any) -> int:
    """Rough prompt token count: words in every string found in messages/prompt/input."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(v) for v in value)
    if isinstance(value, dict):
        return sum(count_words(v) for k, v in value.items() if k in {"content", "text"})
    return 0


def embed(text: str, dim: int = 8) -> list[float]:
    """Deterministic unit vector per text, so tests can compare embeddings across calls."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b / 255.0 - 0.5 for b in digest[:dim]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def digest_of(ident: str) -> str:
    return hashlib.sha256(ident.encode()).hexdigest()


def parameter_size(ident: str) -> float:
    """Billions of parameters guessed from an Ollama-style tag (`llama3:8b` -> 8.0)."""
    match = re.search(r"(\d+(?:\.\d+)?)b\b", ident.lower())
    return float(match.group(1)) if match else 8.0


# ------------------------------------------------------------------ cloud answers (pure data)
def example_value(schema: Any) -> Any:
    """A value that fits a JSON schema (or Google's OpenAPI subset with upper-case types).

    Only `required` properties are filled (strings "x", numbers 1, booleans true, arrays and
    objects empty unless their own schema requires more); an `enum` gives its first value.
    Deterministic, so tests can assert the exact tool arguments a fake sends.
    """
    if not isinstance(schema, dict):
        return "x"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):  # JSON schema's ["string", "null"]
        kind = next((k for k in kind if k != "null"), None)
    kind = kind.lower() if isinstance(kind, str) else None
    if kind is None and isinstance(schema.get("properties"), dict):
        kind = "object"
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        names = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        return {name: example_value(props.get(name)) for name in names}
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(
        kind or "", "x"
    )


def tool_arguments(schema: Any) -> dict[str, Any]:
    """A tool call's arguments: always an object (`{}` for a tool without parameters)."""
    value = example_value(schema) if isinstance(schema, dict) else {}
    return value if isinstance(value, dict) else {}


def tool_said(results: list[str]) -> str:
    """The text answer to a turn that carried tool results: names what the tools returned."""
    return "Tool said: " + " | ".join(results)


def reply_text(base: str, *, images: int = 0, echo: str | None = None) -> str:
    """The text a cloud fake answers: `[image] ` once per image received, then `base`, then
    (when echoing) `(you said: <last user text>)`."""
    text = "[image] " * images + base
    return text if echo is None else f"{text} (you said: {echo})"


def json_answer(text: str, schema: Any = None) -> str:
    """JSON mode: an object fitting `schema` if one was given, else `{"reply": text}`.

    Spaced like `json.dumps` defaults so a stream still has several word pieces.
    """
    value = example_value(schema) if isinstance(schema, dict) else {"reply": text}
    return json.dumps(value)


def apply_stops(text: str, stops: Any) -> tuple[str, str | None]:
    """Cut `text` before the earliest stop sequence: the text kept and the sequence matched."""
    if isinstance(stops, str):
        stops = [stops]
    if not isinstance(stops, list):
        return text, None
    hits = [(text.find(s), s) for s in stops if isinstance(s, str) and s and s in text]
    if not hits:
        return text, None
    at, stop = min(hits)
    return text[:at], stop


def pick_tools(tools: list[tuple[str, Any]], forced: str | None, n: int) -> list[tuple[str, Any]]:
    """The `(name, schema)` pairs to call: `n` calls (at least one) of the forced tool, or of
    the declared tools in turn starting with the first; none when there is nothing to call."""
    if forced is not None:
        tools = [t for t in tools if t[0] == forced][:1]
    if not tools:
        return []
    return [tools[i % len(tools)] for i in range(max(n, 1))]


def fragments(text: str, count: int = 3) -> list[str]:
    """`text` cut into up to `count` consecutive pieces (a streamed tool call's arguments)."""
    return split_pieces(text, min(count, len(text))) if text else []
