"""A careless or hostile client at the API's edge (issue #11): every attack is performed over
real sockets and must end in a clear 4xx, with the daemon alive and its state bounded.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import sqlite3
import time

import httpx
import pytest

from nexusd import stats as stats_module
from nexusd.logs import PrettyFormatter
from tests.harness import DaemonThread, ollama_backend


def post(d: DaemonThread, body: bytes | dict, path: str = "/v1/chat/completions") -> httpx.Response:
    if isinstance(body, dict):
        return httpx.post(d.url + path, json=body, timeout=30)
    return httpx.post(
        d.url + path, content=body, headers={"content-type": "application/json"}, timeout=30
    )


def chat(model: str = "llama3:8b", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.fixture
def served(fakes, nexus) -> DaemonThread:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus(
        {
            "backends": [ollama_backend("box", fake.url)],
            "routing": {"aliases": {"fast": "llama3:8b"}},
            "server": {"body_timeout_seconds": 1},
        }
    )
    d.wait_healthy("box")
    return d


def history_rows(d: DaemonThread) -> list[tuple[str, str]]:
    """What the writer thread really put on disk (it flushes every 0.5 s)."""
    path = d.state_dir / "history.sqlite3"
    with sqlite3.connect(path) as db:
        return db.execute("SELECT request_id, requested_model FROM requests").fetchall()


def test_lone_surrogate_model_is_400_and_history_keeps_writing(served: DaemonThread) -> None:
    r = post(served, b'{"model":"x\\ud800","messages":[{"role":"user","content":"hi"}]}')
    assert r.status_code == 400
    assert "surrogate" in r.json()["error"]["message"]
    ok = post(served, chat())
    assert ok.status_code == 200
    wanted = ok.headers["x-nexus-request-id"]
    deadline = time.monotonic() + 5
    while wanted not in {rid for rid, _ in history_rows(served)}:
        assert time.monotonic() < deadline, "history stopped writing"
        time.sleep(0.1)
    assert wanted in {r.request_id for r in served.call(lambda: served.core.history.recent(5))}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"model":"fast","messages":[{"role":"user","content":"\\udc00"}]}', "surrogate"),
        (b'{"model":"llama3:8b","messages":[],"temperature":NaN}', "NaN is not valid JSON"),
        (b'{"model":"llama3:8b","messages":[],"top_p":Infinity}', "Infinity is not valid JSON"),
        (b'{"model":"other","model":"llama3:8b","messages":[]}', "more than once"),
        (json.dumps(chat()).encode("utf-16"), "UTF-8"),
        (b"\xef\xbb\xbf" + json.dumps(chat()).encode(), "not valid JSON"),
        (json.dumps(chat("m" * 1_000_000)).encode(), "at most 256"),
        (json.dumps(chat("evil\r\n12:00:00 INFO forged")).encode(), "control characters"),
        (json.dumps(chat("\x1b[31mred")).encode(), "control characters"),
    ],
    ids=[
        "deep",
        "alias+surrogate",
        "nan",
        "infinity",
        "duplicate-model",
        "utf16",
        "bom",
        "1MB-name",
        "crlf-name",
        "esc-name",
    ],
)
def test_malformed_bodies_are_400_not_500(served: DaemonThread, raw: bytes, words: str) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        r = post(served, raw, path)
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert r.headers["content-type"] == "application/json"
        assert words in r.json()["error"]["message"]
    assert post(served, chat()).status_code == 200  # still serving


def test_unique_huge_model_names_leave_no_state(served: DaemonThread) -> None:
    before = len(httpx.get(served.url + "/v1/stats").content)
    for i in range(60):
        name = f"{i}-" + "x" * 1_000_000
        assert post(served, chat(name)).status_code == 400
    served.wait_idle()
    stats = httpx.get(served.url + "/v1/stats")
    assert len(stats.content) < before + 2_000
    assert all(len(m["name"]) <= 256 for m in stats.json()["models"])
    page = httpx.get(served.url + "/")
    assert len(page.content) < 1_000_000


def test_per_model_stats_are_bounded(served: DaemonThread, monkeypatch) -> None:
    monkeypatch.setattr(stats_module, "MAX_MODELS", 20)
    for i in range(50):
        assert post(served, chat(f"unknown-model-{i}")).status_code == 404
    assert post(served, chat()).status_code == 200
    served.wait_idle()
    names = [m["name"] for m in httpx.get(served.url + "/v1/stats").json()["models"]]
    assert len(names) == 20
    assert "llama3:8b" in names and "unknown-model-49" in names  # most recent kept
    assert "unknown-model-0" not in names


def _raw_request(d: DaemonThread, head: bytes) -> socket.socket:
    host, port = d.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head)
    return sock


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        if b"\r\n\r\n" in data and data.endswith(b"}"):
            break
    return data


def test_slow_body_is_cut_at_the_body_timeout(served: DaemonThread) -> None:
    body = json.dumps(chat()).encode()
    sock = _raw_request(
        served,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:1],
    )
    started = time.monotonic()
    sock.settimeout(0.3)
    answer = b""
    for byte in body[1:]:  # one byte every 0.3 s: would take ~15 s
        try:
            sock.sendall(bytes([byte]))
            answer += sock.recv(65536)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        if answer:
            break
    took = time.monotonic() - started
    sock.settimeout(2)
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while b"}" not in answer:  # the head and the body may come in separate packets
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b"body_timeout_seconds" in answer
    assert took < 3
    served.wait_idle()
    rec = served.call(lambda: served.core.history.recent(1))[0]
    assert (rec.status_code, rec.error_type) == (408, "request_timeout")


def test_hanging_up_mid_upload_is_a_client_disconnect_not_a_500(served: DaemonThread) -> None:
    sock = _raw_request(
        served,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": ',
    )
    assert served.wait_until(lambda: served.core.inflight == 1)
    sock.close()
    served.wait_idle()
    rec = served.call(lambda: served.core.history.recent(1))[0]
    assert (rec.status_code, rec.outcome) == (499, "client_disconnected")


def test_double_slash_paths_are_json_404_not_redirects(served: DaemonThread) -> None:
    for path in ("//v1//models", "/v1//models", "/v1/models//x"):
        r = httpx.get(served.url + path, follow_redirects=False)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"


def test_pretty_log_lines_cannot_be_forged() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PrettyFormatter())
    logger = logging.getLogger("nexus.test-forgery")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("model %s failed", "evil\r\n12:00:00 INFO nexus: forged\x1b[2J")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("\n") == 1 and "\r" not in text and "\x1b" not in text
    assert "evil\\r\\n12:00:00 INFO nexus: forged\\x1b[2J" in text
