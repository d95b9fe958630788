"""Property-based fuzzing (hypothesis, fixed seed, bounded cases) of the inference endpoints and
the control API over real sockets: whatever arrives, Nexus answers without an internal error
(no 500), in the OpenAI (or control) envelope, stays alive and keeps writing history.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import DaemonThread, ollama_backend

CASES = 150
FUZZ = settings(
    max_examples=CASES,
    derandomize=True,  # a fixed seed: CI runs the same cases every time
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
models = st.sampled_from(["llama3:8b", "fast", "nomic-embed-text", "nope"]) | st.text(max_size=20)
parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "x"])},
    optional={"text": json_values, "image_url": json_values},
)
messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["user", "system", "assistant", "tool"]) | json_values,
            "content": st.text(max_size=50) | st.lists(parts, max_size=3) | json_values,
            "tool_calls": json_values,
        },
    ),
    max_size=4,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": models | json_values,
        "messages": messages | json_values,
        "prompt": st.text(max_size=40) | st.lists(st.integers(0, 50_000), max_size=5) | json_values,
        "input": st.text(max_size=40) | st.lists(st.text(max_size=10), max_size=5) | json_values,
        "stream": st.booleans() | json_values,
        "max_tokens": st.integers(-5, 10**6) | json_values,
        "tools": json_values,
        "response_format": json_values,
        "encoding_format": st.sampled_from(["float", "base64"]) | json_values,
        "dimensions": st.integers(-2, 4096) | json_values,
        "stream_options": json_values,
    },
)
raw_bodies = st.binary(max_size=300) | st.text(max_size=300).map(str.encode)


@pytest.fixture(scope="module")
def daemon(fake_host) -> Iterator[DaemonThread]:
    from tests.fakes import FakeBackend

    fake = fake_host.start(
        FakeBackend("ollama", ["llama3:8b", {"id": "nomic-embed-text", "embedding": True}])
    )
    d = DaemonThread(
        {
            "backends": [ollama_backend("box", fake.url)],
            "routing": {"aliases": {"fast": "llama3:8b"}},
        }
    ).start()
    d.wait_healthy("box")
    yield d
    d.stop()
    fake_host.stop(fake)


ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]


def check(r: httpx.Response) -> None:
    """No internal error; every refusal is a JSON envelope that says something."""
    assert r.status_code != 500, r.text[:300]
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.text[:200]
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
    if r.status_code >= 500:  # only the backend's own failures may be 5xx
        assert r.json()["error"]["code"] in (
            "bad_gateway",
            "gateway_timeout",
            "service_unavailable",
        )


@pytest.mark.parametrize("path", ENDPOINTS)
def test_fuzz_json_bodies(daemon: DaemonThread, path: str) -> None:
    with httpx.Client(base_url=daemon.url, timeout=30) as client:

        @FUZZ
        @given(body=bodies)
        def run(body: dict[str, Any]) -> None:
            check(client.post(path, json=body))

        run()
    assert_alive_and_recording(daemon)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_fuzz_raw_bytes(daemon: DaemonThread, path: str) -> None:
    with httpx.Client(base_url=daemon.url, timeout=30) as client:

        @FUZZ
        @given(raw=raw_bodies, ctype=st.sampled_from(["application/json", "text/plain", ""]))
        def run(raw: bytes, ctype: str) -> None:
            check(client.post(path, content=raw, headers={"content-type": ctype}))

        run()
    assert_alive_and_recording(daemon)


def test_fuzz_control_api(daemon: DaemonThread) -> None:
    transport = httpx.HTTPTransport(uds=str(daemon.control_path))
    names = st.text(
        st.characters(blacklist_categories=["Cs"], blacklist_characters="/"),
        min_size=1,
        max_size=20,
    ).map(lambda n: quote(n, safe=""))
    requests = st.one_of(
        st.tuples(st.just("POST"), st.just("/v1/route"), json_values | bodies),
        st.tuples(st.just("PUT"), names.map(lambda n: f"/v1/aliases/{n}"), json_values),
        st.tuples(st.just("PUT"), names.map(lambda n: f"/v1/fallbacks/{n}"), json_values),
        st.tuples(st.just("PATCH"), st.just("/v1/backends/box"), json_values),
        st.tuples(st.just("PUT"), st.just("/v1/logging"), json_values),
        st.tuples(st.just("GET"), st.just("/v1/requests"), st.none()),
    )
    with httpx.Client(transport=transport, base_url="http://nexus", timeout=30) as client:

        @FUZZ
        @given(request=requests)
        def run(request: tuple[str, str, Any]) -> None:
            method, path, body = request
            if path == "/v1/backends/box" and isinstance(body, dict):
                body.pop("enabled", None)  # keep the backend serving the other cases
                body.pop("drain", None)
            r = client.request(method, path, json=body)
            assert r.status_code < 500, (method, path, body, r.text[:300])
            if r.status_code >= 400:
                assert r.json()["error"]["message"]

        run()
        client.put("/v1/logging", json={"level": "info"})
    assert_alive_and_recording(daemon)


def assert_alive_and_recording(d: DaemonThread) -> None:
    r = httpx.post(
        d.url + "/v1/chat/completions",
        json={"model": "llama3:8b", "messages": [{"role": "user", "content": "still there?"}]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    wanted = r.headers["x-nexus-request-id"]
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(d.state_dir / "history.sqlite3") as db:
            found = db.execute("SELECT 1 FROM requests WHERE request_id = ?", (wanted,)).fetchone()
        if found:
            return
        assert time.monotonic() < deadline, "history is no longer written"
        time.sleep(0.1)
