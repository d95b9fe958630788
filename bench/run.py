#!/usr/bin/env python3
"""Nexus benchmark: direct vs Nexus vs LiteLLM in front of one fast fake upstream.

One run, one machine, each measurement for a fixed duration after a warm-up:

1. start ``bench/fake_upstream.py`` and measure its own ceiling (and the load generator's);
2. footprint: ``nexus serve`` → ready, idle RSS, ``nexusctl --help`` wall time;
3. for each round, for each setup (``direct``, ``nexus``, ``litellm``), for each workload:
   run ``bench/loadgen.py`` (a separate process) and sample the gateway's and the fake's CPU
   from ``/proc`` over exactly the measuring window;
4. print the tables (medians over rounds) and write ``bench/results/<timestamp>.json``.

The ``tr-*`` workloads measure translation: the client speaks OpenAI chat to Nexus, whose
``anthropic`` backend (the same fake, Messages API) gets the request translated and answers
translated back; they are compared with their pass-through twins (``tr-ns-c1`` ↔ ``ns-c1``…)
measured by the same Nexus process in the same round.

The ``an-*`` and ``re-*`` workloads measure the client dialects Nexus accepts: the client
sends Anthropic Messages (``POST /v1/messages``) or OpenAI Responses (``POST /v1/responses``)
requests to Nexus, whose ``generic`` backend (the fake's OpenAI chat API, which has neither
endpoint) gets them translated to chat, and the answers translated back; they are compared
with their chat pass-through twins (``an-ns-c1`` ↔ ``ns-c1``…) the same way.

Usage::

    python bench/run.py --quick              # ≈ 1 minute (+ the one-time LiteLLM install)
    python bench/run.py                      # full mode (≈ 10 minutes)
    python bench/run.py --no-litellm --only direct,nexus --workloads ns-c1,ns-c64
    python bench/run.py --quick --no-litellm --repeat 3 --no-wrk \\
        --workloads ns-c1,tr-ns-c1,s-c1,tr-s-c1,s-c64,tr-s-c64
    python bench/run.py --quick --no-litellm --repeat 3 --no-wrk \\
        --workloads ns-c1,an-ns-c1,re-ns-c1,s-c1,an-s-c1,re-s-c1

See docs/performance.md for the method and the reference results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import http.client
import importlib.metadata
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LITELLM_VENV = BENCH / ".venv-litellm"
MODEL = "bench-model"
#: what the fake's Anthropic side lists (bench/fake_upstream.py); the tr-* workloads ask for it
ANTHROPIC_MODEL = "claude-sonnet-4-bench"
#: the environment variable holding the bench's (fake) Anthropic key, named by ``api_key_env``
ANTHROPIC_KEY_ENV = "BENCH_ANTHROPIC_API_KEY"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    stream: bool
    concurrency: int
    chunks: int = 20
    delay_ms: float = 0.0
    #: the upstream's dialect: "openai" (pass-through) or "anthropic" (Nexus translates)
    dialect: str = "openai"
    #: for a translated or inbound workload, its pass-through twin (same shape, same
    #: concurrency)
    pair: str | None = None
    #: the dialect the client speaks to the gateway: "openai" (chat completions),
    #: "anthropic" (``/v1/messages``) or "responses" (``/v1/responses``)
    client: str = "openai"

    @property
    def translated(self) -> bool:
        """Nexus translates towards the upstream (an ``anthropic`` backend)."""
        return self.dialect != "openai"

    @property
    def inbound(self) -> bool:
        """The client speaks another dialect than OpenAI chat to Nexus."""
        return self.client != "openai"

    @property
    def model(self) -> str:
        return ANTHROPIC_MODEL if self.dialect == "anthropic" else MODEL


WORKLOADS = [
    Workload("ns-c1", "non-streaming c1", False, 1),
    Workload("ns-c64", "non-streaming c64", False, 64),
    Workload("s-c1", "streaming 20 chunks c1", True, 1),
    Workload("s-c64", "streaming 20 chunks c64", True, 64),
    Workload("rs-c16", "realistic stream 20x5ms c16", True, 16, delay_ms=5.0),
    Workload("rs-c64", "realistic stream 20x5ms c64", True, 64, delay_ms=5.0),
    Workload("rs-c256", "realistic stream 20x5ms c256", True, 256, delay_ms=5.0),
    # translation: OpenAI chat in, the fake's Anthropic Messages API out (see the docstring)
    Workload(
        "tr-ns-c1", "translated non-streaming c1", False, 1, dialect="anthropic", pair="ns-c1"
    ),
    Workload(
        "tr-ns-c64", "translated non-streaming c64", False, 64, dialect="anthropic", pair="ns-c64"
    ),
    Workload(
        "tr-s-c1", "translated streaming 20 chunks c1", True, 1, dialect="anthropic", pair="s-c1"
    ),
    Workload(
        "tr-s-c64",
        "translated streaming 20 chunks c64",
        True,
        64,
        dialect="anthropic",
        pair="s-c64",
    ),
    Workload(
        "tr-rs-c64",
        "translated realistic stream 20x5ms c64",
        True,
        64,
        delay_ms=5.0,
        dialect="anthropic",
        pair="rs-c64",
    ),
    # client dialects in: Anthropic Messages / OpenAI Responses to Nexus, the fake's OpenAI
    # chat API behind it (a `generic` backend: neither dialect is passed through natively)
    Workload(
        "an-ns-c1", "Anthropic-in non-streaming c1", False, 1, pair="ns-c1", client="anthropic"
    ),
    Workload(
        "an-s-c1", "Anthropic-in streaming 20 chunks c1", True, 1, pair="s-c1", client="anthropic"
    ),
    Workload(
        "re-ns-c1", "Responses-in non-streaming c1", False, 1, pair="ns-c1", client="responses"
    ),
    Workload(
        "re-s-c1", "Responses-in streaming 20 chunks c1", True, 1, pair="s-c1", client="responses"
    ),
]
WORKLOAD_BY_NAME = {w.name: w for w in WORKLOADS}
SETUPS = ["direct", "nexus", "litellm"]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every process we start: the user's, with bytecode caching on.

    ``PYTHONDONTWRITEBYTECODE`` (set in some sandboxes and CI images) would make every start
    compile our modules from source again and distort the start-up numbers; a normal install
    caches ``.pyc`` files.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- /proc and processes ------------------------------------------------------------------
# Linux: CPU and memory come from /proc. Elsewhere (macOS) the bench still runs, without
# pinning and without the CPU/RSS columns.


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def proc_children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    if not os.path.isdir("/proc"):
        return children
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def proc_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (LiteLLM may run workers as children)."""
    children = proc_children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def system_cpu() -> tuple[float, float, float]:
    """Machine-wide CPU seconds from ``/proc/stat`` (all cores): process time (user, nice,
    system), interrupt time (irq + softirq: loopback TCP lands there), steal (hypervisor)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system) / CLK_TCK, (irq + softirq) / CLK_TCK, steal / CLK_TCK


def mem_kb(pids: list[int], key: str) -> int:
    """Sum of a ``/proc/PID/status`` memory line (``VmRSS``, ``VmHWM``) over processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin a freshly started process (threads it creates later inherit the mask)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cpus)


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 2.0
) -> tuple[int, bytes] | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> float | None:
    """Seconds until ``check()`` held, or None after ``timeout``."""
    start = time.perf_counter()
    while True:
        if check():
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            return None
        time.sleep(interval)


def model_listed(port: int, models: tuple[str, ...] = (MODEL,)) -> bool:
    got = http_request(port, "GET", "/v1/models", timeout=1.0)
    return got is not None and got[0] == 200 and all(m.encode() in got[1] for m in models)


class Server:
    """A subprocess we started (own session, so its whole group can be stopped)."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        logdir: Path,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = logdir / f"{name}-{port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env if env is not None else child_env(),
            cwd=ROOT,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        #: the models it must list before it counts as ready
        self.models: tuple[str, ...] = (MODEL,)
        pin(self.pid, cpus)

    def pids(self) -> list[int]:
        return proc_tree(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        else:  # the leader is gone; make sure no child of its group lingers
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


# --- layout ---------------------------------------------------------------------------------


def core_layout(no_pin: bool) -> dict[str, Any]:
    cpus = usable_cpus()
    if not hasattr(os, "sched_setaffinity"):
        no_pin = True
    if no_pin or len(cpus) < 2:
        return {
            "pinned": False,
            "loadgen": None,
            "fake": None,
            "gateway": None,
            "note": "no pinning" if no_pin else "one core: no pinning possible",
        }
    if len(cpus) == 2:
        return {
            "pinned": True,
            "loadgen": {cpus[0]},
            "fake": {cpus[0]},
            "gateway": {cpus[1]},
            "note": f"load generator + fake on core {cpus[0]}, gateway alone on core {cpus[1]}",
        }
    return {
        "pinned": True,
        "loadgen": {cpus[0]},
        "fake": {cpus[1]},
        "gateway": {cpus[2]},
        "note": f"load generator core {cpus[0]}, fake core {cpus[1]}, gateway core {cpus[2]}",
    }


# --- servers ------------------------------------------------------------------------------


def start_fake(logdir: Path, cpus: set[int] | None) -> Server:
    port = free_port()
    fake = Server(
        "fake",
        [sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(port)],
        port,
        logdir,
        cpus=cpus,
    )
    if wait_for(lambda: http_request(port, "GET", "/health") is not None, 15) is None:
        fake.stop()
        raise SystemExit(f"fake upstream did not start:\n{fake.tail()}")
    return fake


def set_fake_mode(fake: Server, chunks: int, delay_ms: float) -> None:
    body = json.dumps({"chunks": chunks, "delay_ms": delay_ms}).encode()
    got = http_request(fake.port, "POST", "/_bench/mode", body)
    if got is None or got[0] != 200:
        raise SystemExit(f"could not set the fake's mode: {got}")


#: extra TOML appended to the bench's Nexus config (``--nexus-extra``), for A/B runs
NEXUS_EXTRA_TOML: list[str] = []


def nexus_config(workdir: Path, port: int, fake_port: int, translated: bool = False) -> Path:
    """The bench's Nexus config: one ``generic`` backend → the fake; with ``translated``, a
    second one of type ``anthropic`` → the same fake (its Messages API), for the tr-*
    workloads. Each serves its own model, so routing is the same for both."""
    path = workdir / f"nexus-{port}.toml"
    anthropic = (
        f"""
[[backends]]
name = "fake-anthropic"
url = "http://{HOST}:{fake_port}"
type = "anthropic"
api_key_env = "{ANTHROPIC_KEY_ENV}"
"""
        if translated
        else ""
    )
    path.write_text(
        f"""# written by bench/run.py
[server]
host = "{HOST}"
port = {port}

[logging]
level = "warn"

[discovery]
enabled = false
probe = false

[[backends]]
name = "fake"
url = "http://{HOST}:{fake_port}"
type = "generic"
"""
        + anthropic
        + "".join("\n" + extra + "\n" for extra in NEXUS_EXTRA_TOML)
    )
    return path


def nexus_env(workdir: Path, config: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in child_env().items() if not k.startswith("NEXUS_")}
    state = workdir / f"nexus-state-{port}"
    for sub in ("config", "state", "runtime"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    env.update(
        NEXUS_CONFIG=str(config),
        NEXUS_CONFIG_DIR=str(state / "config"),
        NEXUS_STATE_DIR=str(state / "state"),
        NEXUS_RUNTIME_DIR=str(state / "runtime"),
    )
    env[ANTHROPIC_KEY_ENV] = "sk-ant-bench-fake"  # any non-empty value: the fake checks presence
    return env


def nexus_command(port: int, use_cli: bool) -> list[str]:
    flags = ["--port", str(port), "--no-discovery", "--no-probe"]
    cli = Path(sys.executable).with_name("nexus")
    if use_cli and cli.exists():
        return [str(cli), "serve", *flags]
    return [sys.executable, "-m", "nexusd", *flags]


def start_nexus(
    workdir: Path, fake: Server, cpus: set[int] | None, translated: bool = False
) -> Server:
    port = free_port()
    config = nexus_config(workdir, port, fake.port, translated)
    server = Server(
        "nexus",
        nexus_command(port, use_cli=False),
        port,
        workdir,
        env=nexus_env(workdir, config, port),
        cpus=cpus,
    )
    server.models = (MODEL, ANTHROPIC_MODEL) if translated else (MODEL,)
    return server


def litellm_bin() -> Path:
    return LITELLM_VENV / "bin" / "litellm"


def ensure_litellm() -> str | None:
    """Install ``litellm[proxy]`` into bench/.venv-litellm once; returns an error or None."""
    if litellm_bin().exists():
        return None
    log(f"installing litellm[proxy] into {LITELLM_VENV} (one time, a few minutes)…")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
            check=True,
            timeout=1800,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return f"installing litellm[proxy] failed: {exc}"
    return None if litellm_bin().exists() else "litellm[proxy] installed no `litellm` command"


def start_litellm(workdir: Path, fake: Server, cpus: set[int] | None) -> Server:
    port = free_port()
    config = workdir / f"litellm-{port}.yaml"
    config.write_text(
        f"""# written by bench/run.py: one model, no database, no callbacks
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: http://{HOST}:{fake.port}/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
  callbacks: []
  success_callback: []
  failure_callback: []
  set_verbose: false
general_settings:
  disable_spend_logs: true
"""
    )
    drop = ("DATABASE_URL", "REDIS_HOST", "REDIS_URL", "LITELLM_MASTER_KEY", "STORE_MODEL_IN_DB")
    env = {k: v for k, v in child_env().items() if k not in drop}
    env.update(
        LITELLM_TELEMETRY="False",
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the cost map from the internet
        LITELLM_LOG="ERROR",
        LITELLM_MODE="PRODUCTION",
        DISABLE_ADMIN_UI="True",
        NO_DOCS="True",
        # no master key = no auth, like Nexus; LiteLLM ≥ 1.8x refuses that unless told
        LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true",
        HOME=str(workdir),
    )
    cmd = [
        str(litellm_bin()),
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    return Server("litellm", cmd, port, workdir, env=env, cpus=cpus)


def wait_ready(server: Server, timeout: float) -> float:
    took = wait_for(
        lambda: (not server.alive()) or model_listed(server.port, server.models), timeout, 0.02
    )
    if took is None or not server.alive():
        code = server.proc.poll()
        tail = server.tail()
        server.stop()
        why = f"exited with code {code}" if code is not None else f"not ready in {timeout:g} s"
        raise RuntimeError(f"{server.name} {why}:\n{tail}")
    return time.perf_counter() - server.started


# --- one measurement ----------------------------------------------------------------------

#: the endpoint of each client dialect
CLIENT_PATHS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "responses": "/v1/responses",
}


def run_loadgen(
    port: int,
    wl: Workload,
    warmup: float,
    duration: float,
    cpus: set[int] | None,
    on_start: Callable[[], None],
    on_end: Callable[[], None],
    direct: bool = False,
) -> dict[str, Any]:
    """``direct``: the target is the fake itself, spoken to in the workload's upstream
    dialect; a gateway is spoken to in the workload's client dialect (OpenAI chat but for
    the ``an-*`` / ``re-*`` workloads)."""
    dialect = wl.dialect if direct else wl.client
    path = CLIENT_PATHS[dialect]
    cmd = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--url",
        f"http://{HOST}:{port}{path}",
        "--model",
        wl.model,
        "--dialect",
        dialect,
        "-c",
        str(wl.concurrency),
        "-w",
        str(warmup),
        "-d",
        str(duration),
    ]
    if wl.stream:
        cmd.append("--stream")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env()
    )
    pin(proc.pid, cpus)
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + warmup + duration + 60
    result: dict[str, Any] = {"fatal": "load generator produced no result"}
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            result = {"fatal": "load generator timed out"}
            break
        if line is None:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("event")
        if kind == "measure_start":
            on_start()
        elif kind == "measure_end":
            on_end()
        elif kind == "result":
            result = event
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if "fatal" in result:
        err = proc.stderr.read() if proc.stderr else ""
        result["stderr"] = err[-2000:]
    if proc.stderr:
        proc.stderr.close()
    return result


def measure(
    target_port: int,
    gateway: Server | None,
    fake: Server,
    wl: Workload,
    args: argparse.Namespace,
    layout: dict[str, Any],
) -> dict[str, Any]:
    set_fake_mode(fake, wl.chunks, wl.delay_ms)
    samples: dict[str, float] = {}

    def snap(prefix: str) -> None:
        samples[prefix + "t"] = time.perf_counter()
        samples[prefix + "sys"], samples[prefix + "irq"], samples[prefix + "steal"] = system_cpu()
        samples[prefix + "fake"] = cpu_seconds([fake.pid])
        if gateway is not None:
            samples[prefix + "gw"] = cpu_seconds(gateway.pids())

    r = run_loadgen(
        target_port,
        wl,
        args.warmup,
        args.duration,
        layout["loadgen"],
        lambda: snap("0"),
        lambda: snap("1"),
        direct=gateway is None,
    )
    r["workload"] = wl.name
    if "1t" in samples and "0t" in samples:
        wall = samples["1t"] - samples["0t"]
        r["fake_cpu_util"] = (samples["1fake"] - samples["0fake"]) / wall
        busy = (samples["1sys"] - samples["0sys"]) / wall
        r["system_busy_util"] = busy
        r["steal_util"] = (samples["1steal"] - samples["0steal"]) / wall
        r["softirq_util"] = (samples["1irq"] - samples["0irq"]) / wall
        ours = r["fake_cpu_util"] + (r.get("loadgen_cpu_util") or 0.0)
        if gateway is not None:
            ours += (samples["1gw"] - samples["0gw"]) / wall
        # anything else that ran on the machine meanwhile (other users, tests, the kernel)
        r["foreign_cpu_util"] = max(0.0, busy - ours)
        if gateway is not None:
            cpu = samples["1gw"] - samples["0gw"]
            r["gateway_cpu_s"] = cpu
            r["gateway_cpu_util"] = cpu / wall
            ok = r.get("ok") or 0
            r["gateway_cpu_ms_per_req"] = cpu * 1000 / ok if ok else None
    if gateway is not None:
        pids = gateway.pids()
        r["gateway_vmhwm_mb"] = mem_kb(pids, "VmHWM") / 1024
        r["gateway_rss_mb"] = mem_kb(pids, "VmRSS") / 1024
        r["gateway_alive"] = gateway.alive()
    return r


def wrk_run(port: int, stream: bool, concurrency: int, duration: float, cpus: set[int] | None):
    """Cross-check with wrk (C, epoll): RPS and latency only (no TTFB, no chunks)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    env = child_env(WRK_STREAM="1" if stream else "0")
    cmd = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "chat.lua"),
        f"http://{HOST}:{port}/v1/chat/completions",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    pin(proc.pid, cpus)
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"fatal": "wrk timed out"}
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("JSON "):
            d = json.loads(line[5:])
            secs = d["duration_us"] / 1e6
            if not d["requests"]:
                return {"fatal": "wrk completed no request: " + out.decode(errors="replace")[-800:]}
            return {
                "concurrency": concurrency,
                "stream": stream,
                "rps": d["requests"] / secs if secs else 0.0,
                "p50_ms": d["p50_us"] / 1000,
                "p99_ms": d["p99_us"] / 1000,
                "mean_ms": d["mean_us"] / 1000,
                "errors": d["errors_status"] + d["errors_other"],
            }
    return {"fatal": out.decode(errors="replace")[-500:]}


# --- calibration and footprint ------------------------------------------------------------


def calibrate(fake: Server, args: argparse.Namespace, layout: dict[str, Any]) -> dict[str, Any]:
    """The fake's own ceiling, with the load generator on another core than the fake."""
    cpus = usable_cpus()
    other = None
    if layout["pinned"]:
        rest = [c for c in cpus if c not in layout["fake"]]
        other = {rest[0]} if rest else None
    out: dict[str, Any] = {"loadgen_cores": sorted(other) if other else None}
    dur = args.calib_duration
    for name, wl in (
        ("non_stream_c64", Workload("cal-ns", "", False, 64)),
        ("stream_c64", Workload("cal-s", "", True, 64)),
    ):
        cal_args = argparse.Namespace(warmup=min(1.0, args.warmup), duration=dur)
        r = measure(fake.port, None, fake, wl, cal_args, {**layout, "loadgen": other})
        out[name] = {
            k: r.get(k)
            for k in (
                "rps",
                "chunks_per_s",
                "fake_cpu_util",
                "loadgen_cpu_util",
                "error_count",
                "fatal",
            )
        }
        out[name]["latency_p50_ms"] = (r.get("latency_ms") or {}).get("p50")
        fu = r.get("fake_cpu_util") or 0
        out[name]["fake_ceiling_rps_est"] = r["rps"] / fu if fu > 0.05 and "rps" in r else None
    if shutil.which("wrk") and not args.no_wrk:
        set_fake_mode(fake, 20, 0.0)
        out["wrk_non_stream_c64"] = wrk_run(fake.port, False, 64, dur, other)
    return out


def startup_footprint(workdir: Path, fake: Server, runs: int) -> dict[str, Any]:
    """Run 0 is an unmeasured warm-up (fills the ``.pyc`` and page caches like any second
    start on a user's machine); then ``runs`` measured starts."""
    readies, listed, idle_rss = [], [], []
    errors = []
    for attempt in range(runs + 1):
        warm_up = attempt == 0
        port = free_port()
        config = nexus_config(workdir, port, fake.port)
        srv = Server(
            "startup",
            nexus_command(port, use_cli=True),
            port,
            workdir,
            env=nexus_env(workdir, config, port),
        )
        try:
            ok = wait_for(
                lambda p=port, s=srv: (
                    (not s.alive())
                    or (http_request(p, "GET", "/health", timeout=0.5) or (0,))[0] == 200
                ),
                20,
                0.005,
            )
            if ok is None or not srv.alive():
                errors.append(f"not ready: {srv.tail(5)}")
                continue
            if warm_up:
                continue
            readies.append(time.perf_counter() - srv.started)
            if wait_for(lambda p=port: model_listed(p), 10, 0.005) is not None:
                listed.append(time.perf_counter() - srv.started)
            time.sleep(2.0)
            idle_rss.append(mem_kb([srv.pid], "VmRSS") / 1024)
        finally:
            srv.stop()
    helps = []
    ctl = Path(sys.executable).with_name("nexusctl")
    ctl_cmd = [str(ctl), "--help"] if ctl.exists() else None
    if ctl_cmd:
        for attempt in range(6):  # the first one is a warm-up
            t0 = time.perf_counter()
            subprocess.run(
                ctl_cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                env=child_env(),
            )
            if attempt:
                helps.append(time.perf_counter() - t0)
    med = statistics.median
    return {
        "runs": runs,
        "command": " ".join(nexus_command(0, use_cli=True)[:2]) + " --port P --no-discovery …",
        "ready_s": readies,
        "ready_s_median": med(readies) if readies else None,
        "model_listed_s_median": med(listed) if listed else None,
        "idle_rss_mb": idle_rss,
        "idle_rss_mb_median": med(idle_rss) if idle_rss else None,
        "nexusctl_help_s": helps,
        "nexusctl_help_s_median": med(helps) if helps else None,
        "errors": errors,
    }


# --- machine --------------------------------------------------------------------------------


def code_version() -> dict[str, Any]:
    """The commit, and a fingerprint of the uncommitted changes to the daemon's code (the
    tree may change while a long run goes on: every gateway start records this again)."""
    git: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        diff = subprocess.run(
            ["git", "diff", "HEAD", "--", "nexusd", "nexus_cli"],
            cwd=ROOT,
            capture_output=True,
            timeout=10,
        ).stdout
        git["nexusd_dirty"] = bool(diff)
        if diff:
            git["diff_sha1"] = hashlib.sha1(diff).hexdigest()[:10]
    return git


def machine_info() -> dict[str, Any]:
    cpu_model, flags = None, ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu_model is None:
                cpu_model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    mem_total = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    packages = {}
    for name in (
        "nexus-llm",
        "quart",
        "hypercorn",
        "h11",
        "werkzeug",
        "aiohttp",
        "uvloop",
        "yarl",
        "multidict",
        "httpx",
    ):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    git = code_version()
    wrk_version = None
    if shutil.which("wrk"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
            wrk_version = (out.stdout + out.stderr).splitlines()[0].strip()
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(usable_cpus()),
        "hypervisor": " hypervisor" in flags,
        "mem_total_gb": mem_total,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "packages": packages,
        "wrk": wrk_version,
        "git": git,
    }


def litellm_versions() -> dict[str, str | None]:
    py = LITELLM_VENV / "bin" / "python"
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for n in ('litellm', 'fastapi', 'uvicorn', 'httpx', 'openai', 'aiohttp', 'uvloop'):\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        got = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(got.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}


# --- aggregation ----------------------------------------------------------------------------


def _get(r: dict[str, Any], path: str) -> float | None:
    cur: Any = r
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur if isinstance(cur, int | float) else None


def median_of(rounds: list[dict[str, Any]], path: str) -> float | None:
    values = [v for v in (_get(r, path) for r in rounds) if v is not None]
    return statistics.median(values) if values else None


SUMMARY_KEYS = {
    "rps": "rps",
    "lat_p50": "latency_ms.p50",
    "lat_p99": "latency_ms.p99",
    "ttfb_p50": "ttfb_ms.p50",
    "ttfb_p99": "ttfb_ms.p99",
    "chunks_per_s": "chunks_per_s",
    "cpu_s": "gateway_cpu_s",
    "cpu_util": "gateway_cpu_util",
    "cpu_ms_per_req": "gateway_cpu_ms_per_req",
    "fake_cpu_util": "fake_cpu_util",
    "loadgen_cpu_util": "loadgen_cpu_util",
    "overhead_hdr_p50": "overhead_header_ms.p50",
    "foreign_cpu_util": "foreign_cpu_util",
    "steal_util": "steal_util",
}


def summarize(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Medians over rounds; added latency computed per round against that round's direct."""
    summary: dict[str, Any] = {}
    for setup, per_wl in raw.items():
        for wname, rounds in per_wl.items():
            s = {k: median_of(rounds, p) for k, p in SUMMARY_KEYS.items()}
            hwm = [v for v in (_get(r, "gateway_vmhwm_mb") for r in rounds) if v is not None]
            s["peak_rss_mb"] = max(hwm) if hwm else None
            s["errors"] = sum(int(r.get("error_count") or 0) for r in rounds)
            s["fatal"] = [r["fatal"] for r in rounds if "fatal" in r]
            s["rounds"] = len(rounds)
            wl = WORKLOAD_BY_NAME.get(wname)
            if wl is not None and wl.stream and s["rps"] is not None:
                # answers/s × the upstream's content chunks: comparable across dialects (a
                # translated stream adds a role chunk and a finish chunk to the 20 content ones)
                s["content_chunks_per_s"] = s["rps"] * wl.chunks
            direct = raw.get("direct", {}).get(wname)
            if not direct and wl is not None and wl.inbound and wl.pair:
                # the direct run of an inbound workload would be its twin's (the fake only
                # speaks chat): the twin's direct rows of the same rounds are its baseline
                direct = raw.get("direct", {}).get(wl.pair)
            if setup != "direct" and direct:
                for key, path in (
                    ("added_p50", "latency_ms.p50"),
                    ("added_p99", "latency_ms.p99"),
                    ("added_ttfb_p50", "ttfb_ms.p50"),
                    ("added_ttfb_p99", "ttfb_ms.p99"),
                ):
                    diffs = []
                    for mine, base in zip(rounds, direct, strict=False):
                        a, b = _get(mine, path), _get(base, path)
                        if a is not None and b is not None:
                            diffs.append(a - b)
                    s[key] = statistics.median(diffs) if diffs else None
            summary.setdefault(setup, {})[wname] = s
    return summary


def ratios(summary: dict[str, Any], workloads: list[Workload]) -> dict[str, Any]:
    out = {}
    for wl in workloads:
        d = summary.get("direct", {}).get(wl.name) or (
            summary.get("direct", {}).get(wl.pair, {}) if wl.inbound and wl.pair else {}
        )
        n = summary.get("nexus", {}).get(wl.name, {})
        m = summary.get("litellm", {}).get(wl.name, {})
        out[wl.name] = {
            "nexus_over_direct_rps": _div(n.get("rps"), d.get("rps")),
            "litellm_over_nexus_rps": _div(m.get("rps"), n.get("rps")),
            "nexus_over_litellm_rps": _div(n.get("rps"), m.get("rps")),
            "nexus_over_direct_latency_p50": _div(n.get("lat_p50"), d.get("lat_p50")),
            "litellm_added_over_nexus_added_p50": _div(m.get("added_p50"), n.get("added_p50")),
        }
    return out


def translation(
    raw: dict[str, dict[str, list[dict[str, Any]]]],
    workloads: list[Workload],
    inbound: bool = False,
) -> dict[str, Any]:
    """Each translated workload (with ``inbound``: each client-dialect workload) against its
    pass-through twin, both through the same Nexus process in the same round: differences
    (translated − pass-through) and ratios per round, then the median over rounds."""
    nexus = raw.get("nexus", {})
    out: dict[str, Any] = {}
    for wl in workloads:
        selected = wl.inbound if inbound else wl.translated
        if wl.pair is None or not selected:
            continue
        mine, base = nexus.get(wl.name), nexus.get(wl.pair)
        if not mine or not base:
            continue
        by_round = {r.get("round"): r for r in base if "fatal" not in r}
        pairs = [
            (r, by_round[r.get("round")])
            for r in mine
            if "fatal" not in r and r.get("round") in by_round
        ]

        def diff(path: str, pairs: list[tuple[dict, dict]] = pairs) -> float | None:
            vals = [
                x - y
                for a, b in pairs
                if (x := _get(a, path)) is not None and (y := _get(b, path)) is not None
            ]
            return statistics.median(vals) if vals else None

        ratios_ = [v for a, b in pairs if (v := _div(_get(a, "rps"), _get(b, "rps"))) is not None]
        rps_ratio = statistics.median(ratios_) if ratios_ else None
        cpu_diff = diff("gateway_cpu_ms_per_req")
        out[wl.name] = {
            "pass_through": wl.pair,
            "rounds": len(pairs),
            "added_p50_ms": diff("latency_ms.p50"),
            "added_p99_ms": diff("latency_ms.p99"),
            "added_ttfb_p50_ms": diff("ttfb_ms.p50"),
            # answers/s ratio = content chunks/s ratio (both streams carry wl.chunks texts)
            "rps_ratio": rps_ratio,
            "fewer_chunks_pct": (1 - rps_ratio) * 100 if wl.stream and rps_ratio else None,
            "added_cpu_ms_per_req": cpu_diff,
            "added_cpu_us_per_chunk": cpu_diff * 1000 / wl.chunks
            if wl.stream and cpu_diff is not None
            else None,
        }
    return out


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def evaluate_targets(
    summary: dict[str, Any],
    footprint: dict[str, Any] | None,
    trans: dict[str, Any] | None = None,
    inbound: dict[str, Any] | None = None,
) -> list[dict]:
    def s(setup: str, wl: str, key: str) -> float | None:
        return summary.get(setup, {}).get(wl, {}).get(key)

    def check(name: str, value: float | None, limit: float, op: str, unit: str) -> dict:
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        return {"target": name, "value": value, "limit": limit, "op": op, "unit": unit, "met": met}

    rel16 = _div(s("nexus", "rs-c16", "lat_p50"), s("direct", "rs-c16", "lat_p50"))
    rel64 = _div(s("nexus", "rs-c64", "lat_p50"), s("direct", "rs-c64", "lat_p50"))
    added_n, added_l = s("nexus", "ns-c1", "added_p50"), s("litellm", "ns-c1", "added_p50")
    fp = footprint or {}

    def tr(wl: str, key: str) -> float | None:
        return (trans or {}).get(wl, {}).get(key)

    translation_targets = [
        check(
            "translation: non-streaming c1 added p50 (tr-ns-c1 - ns-c1)",
            tr("tr-ns-c1", "added_p50_ms"),
            0.3,
            "<=",
            "ms",
        ),
        check(
            "translation: streaming c1 chunks/s below pass-through (tr-s-c1 vs s-c1)",
            tr("tr-s-c1", "fewer_chunks_pct"),
            15.0,
            "<=",
            "%",
        ),
        check(
            "translation: streaming c64 chunks/s below pass-through (tr-s-c64 vs s-c64)",
            tr("tr-s-c64", "fewer_chunks_pct"),
            15.0,
            "<=",
            "%",
        ),
    ]
    targets = [
        check(
            "non-streaming c1: added latency p50", s("nexus", "ns-c1", "added_p50"), 1.5, "<=", "ms"
        ),
        check(
            "non-streaming c1: added latency p99", s("nexus", "ns-c1", "added_p99"), 4.0, "<=", "ms"
        ),
        check("non-streaming c64: Nexus RPS", s("nexus", "ns-c64", "rps"), 900, ">=", "req/s"),
        check(
            "streaming c1: added TTFB p50", s("nexus", "s-c1", "added_ttfb_p50"), 1.5, "<=", "ms"
        ),
        check(
            "realistic streaming c16: total time p50 vs direct",
            None if rel16 is None else (rel16 - 1) * 100,
            3.0,
            "<=",
            "%",
        ),
        check(
            "realistic streaming c64: total time p50 vs direct",
            None if rel64 is None else (rel64 - 1) * 100,
            10.0,
            "<=",
            "%",
        ),
        check(
            "non-streaming c64: Nexus RPS / LiteLLM RPS",
            _div(s("nexus", "ns-c64", "rps"), s("litellm", "ns-c64", "rps")),
            20,
            ">=",
            "x",
        ),
        check(
            "non-streaming c1: Nexus added p50 / LiteLLM added p50",
            _div(added_n, added_l) if added_n is not None and added_l else None,
            0.1,
            "<=",
            "x",
        ),
        check("idle RSS", fp.get("idle_rss_mb_median"), 80, "<=", "MB"),
        check("nexus serve → /health answers", fp.get("ready_s_median"), 1.5, "<=", "s"),
        check(
            "nexusctl --help wall time",
            None
            if fp.get("nexusctl_help_s_median") is None
            else fp["nexusctl_help_s_median"] * 1000,
            250,
            "<=",
            "ms",
        ),
    ]
    inbound_targets = [
        check(
            "Anthropic-in → OpenAI-compatible backend: non-streaming c1 added p50 over chat "
            "pass-through (an-ns-c1 - ns-c1)",
            (inbound or {}).get("an-ns-c1", {}).get("added_p50_ms"),
            0.5,
            "<=",
            "ms",
        ),
    ]
    return [*targets, *translation_targets, *inbound_targets]


# --- output ---------------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 2, width: int = 8) -> str:
    if v is None:
        return "—".rjust(width)
    if abs(v) >= 1000:
        return f"{v:,.0f}".rjust(width)
    if abs(v) >= 100:
        return f"{v:.0f}".rjust(width)
    return f"{v:.{digits}f}".rjust(width)


def render(result: dict[str, Any], workloads: list[Workload], setups: list[str]) -> str:
    out = []
    summary = result["summary"]
    cols = [
        ("RPS", "rps", 0),
        ("p50 ms", "lat_p50", 2),
        ("p99 ms", "lat_p99", 2),
        ("TTFB50", "ttfb_p50", 2),
        ("TTFB99", "ttfb_p99", 2),
        ("+p50", "added_p50", 2),
        ("+p99", "added_p99", 2),
        ("+TTFB50", "added_ttfb_p50", 2),
        ("chunks/s", "chunks_per_s", 0),
        ("CPU s", "cpu_s", 2),
        ("CPU ms/rq", "cpu_ms_per_req", 3),
        ("peakRSS", "peak_rss_mb", 1),
    ]
    head = f"{'workload':<9} {'setup':<8}" + "".join(f"{c[0]:>10}" for c in cols) + "  errors"
    out.append(head)
    out.append("-" * len(head))
    for wl in workloads:
        for setup in setups:
            s = summary.get(setup, {}).get(wl.name)
            if s is None:
                continue
            row = f"{wl.name:<9} {setup:<8}"
            for _, key, digits in cols:
                row += fmt(s.get(key), digits, 10)
            err = str(s["errors"]) + (" FATAL" if s.get("fatal") else "")
            out.append(row + "  " + err)
        out.append("")
    noisy = [
        f"{wl.name}/{setup} {s['foreign_cpu_util']:.2f}"
        for wl in workloads
        for setup in setups
        if (s := summary.get(setup, {}).get(wl.name)) and (s.get("foreign_cpu_util") or 0) > 0.15
    ]
    if noisy:
        out.append("WARNING: other processes used CPU during (cores): " + ", ".join(noisy))
    out.append(
        "latency = request written → last body byte; TTFB = → first body byte (first SSE "
        "event); +x = setup − direct (same round); CPU s = gateway CPU over the measured "
        "window; peakRSS = gateway VmHWM (MB)"
    )
    out.append("")
    rat = result["ratios"]
    out.append(
        f"{'workload':<9} {'Nexus/direct RPS':>17} {'LiteLLM/Nexus RPS':>18} "
        f"{'Nexus/LiteLLM RPS':>18} {'LiteLLM+/Nexus+ p50':>20}"
    )
    for wl in workloads:
        r = rat.get(wl.name, {})
        out.append(
            f"{wl.name:<9} {fmt(r.get('nexus_over_direct_rps'), 3, 17)} "
            f"{fmt(r.get('litellm_over_nexus_rps'), 4, 18)} "
            f"{fmt(r.get('nexus_over_litellm_rps'), 1, 18)} "
            f"{fmt(r.get('litellm_added_over_nexus_added_p50'), 1, 20)}"
        )
    fp = result.get("footprint")
    if fp:
        out.append("")
        out.append(
            "footprint: nexus serve → /health 200 "
            f"{fmt(fp.get('ready_s_median'), 3, 0)} s (model routable "
            f"{fmt(fp.get('model_listed_s_median'), 3, 0)} s), idle RSS "
            f"{fmt(fp.get('idle_rss_mb_median'), 1, 0)} MB, nexusctl --help "
            f"{fmt((fp.get('nexusctl_help_s_median') or 0) * 1000, 0, 0)} ms "
            f"(medians of {fp['runs']} / 5 runs)"
        )
    cal = result.get("calibration")
    if cal:
        ns, st = cal.get("non_stream_c64", {}), cal.get("stream_c64", {})
        out.append(
            "ceilings (fake on its own core): loadgen→fake non-stream c64 "
            f"{fmt(ns.get('rps'), 0, 0)} RPS (fake CPU "
            f"{fmt((ns.get('fake_cpu_util') or 0) * 100, 0, 0)}%, loadgen CPU "
            f"{fmt((ns.get('loadgen_cpu_util') or 0) * 100, 0, 0)}%); stream c64 "
            f"{fmt(st.get('rps'), 0, 0)} RPS = {fmt(st.get('chunks_per_s'), 0, 0)} chunks/s"
        )
        w = cal.get("wrk_non_stream_c64")
        if w and "rps" in w:
            out.append(
                f"                                 wrk→fake non-stream c64 "
                f"{fmt(w['rps'], 0, 0)} RPS"
            )
    twin_tables = (
        (
            "translation",
            "tr",
            "translation: Nexus → the fake's Anthropic API minus Nexus → its OpenAI API (same "
            "process, same round; medians over rounds)",
            "(+x = translated − pass-through; content chunks/s = answers/s × 20: a translated "
            "stream also carries a role and a finish chunk; the chunks/s column above counts "
            "every SSE event)",
        ),
        (
            "inbound",
            "in",
            "client dialects in: Anthropic Messages / Responses to Nexus minus OpenAI chat to "
            "Nexus, the fake's OpenAI chat API behind both (same process, same round; medians "
            "over rounds)",
            "(+x = dialect-in − chat pass-through; content chunks/s = answers/s × 20: the "
            "dialect's stream also carries its opening and closing events; the chunks/s "
            "column above counts their content deltas only)",
        ),
    )
    for key, short, title, note in twin_tables:
        trans = result.get(key) or {}
        if not trans:
            continue
        out.append("")
        out.append(title)
        out.append(
            f"{'workload':<9} {'twin':<7}{'+p50':>8}{'+p99':>8}{'+TTFB50':>9}"
            f"{'RPS ' + short + '/pt':>10}{'content chunks/s ' + short:>21}{'pt':>9}"
            f"{'fewer':>8}{'+CPU ms/rq':>11}{'+CPU us/chunk':>14}"
        )
        summary = result["summary"].get("nexus", {})
        for name, t in trans.items():
            mine, twin = summary.get(name, {}), summary.get(t["pass_through"], {})
            fewer = t.get("fewer_chunks_pct")
            out.append(
                f"{name:<9} {t['pass_through']:<7}{fmt(t.get('added_p50_ms'), 3, 8)}"
                f"{fmt(t.get('added_p99_ms'), 3, 8)}{fmt(t.get('added_ttfb_p50_ms'), 3, 9)}"
                f"{fmt(t.get('rps_ratio'), 3, 10)}"
                f"{fmt(mine.get('content_chunks_per_s'), 0, 21)}"
                f"{fmt(twin.get('content_chunks_per_s'), 0, 9)}"
                f"{(fmt(fewer, 1, 0) + ' %') if fewer is not None else '—':>8}"
                f"{fmt(t.get('added_cpu_ms_per_req'), 3, 11)}"
                f"{fmt(t.get('added_cpu_us_per_chunk'), 1, 14)}"
            )
        out.append(note)
    out.append("")
    out.append("targets:")
    for t in result["targets"]:
        mark = {True: "MET    ", False: "NOT MET", None: "n/a    "}[t["met"]]
        out.append(
            f"  {mark} {t['target']}: {fmt(t['value'], 2, 0)} {t['unit']} "
            f"(target {t['op']} {t['limit']:g} {t['unit']})"
        )
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------------


def render_markdown(result: dict[str, Any]) -> str:
    """The results as Markdown tables (for docs/performance.md)."""
    summary = result["summary"]
    names = [w["name"] for w in result["settings"]["workloads"]]
    setups = [s for s in SETUPS if s in summary]
    titles = {w.name: w.title for w in WORKLOADS}
    head = (
        "| workload | setup | RPS | p50 ms | p99 ms | TTFB p50 | TTFB p99 | added p50 | "
        "added p99 | added TTFB p50 | chunks/s | gateway CPU s | CPU ms/req | peak RSS MB | "
        "other CPU | errors |"
    )
    out = [head, "|" + "|".join([" --- "] * (head.count("|") - 1)) + "|"]

    def cell(v: float | None, digits: int = 2) -> str:
        return fmt(v, digits, 0).strip()

    for name in names:
        for setup in setups:
            s = summary[setup].get(name)
            if s is None:
                continue
            out.append(
                f"| {titles.get(name, name)} | {setup} | {cell(s.get('rps'), 0)} | "
                f"{cell(s.get('lat_p50'))} | {cell(s.get('lat_p99'))} | "
                f"{cell(s.get('ttfb_p50'))} | {cell(s.get('ttfb_p99'))} | "
                f"{cell(s.get('added_p50'))} | {cell(s.get('added_p99'))} | "
                f"{cell(s.get('added_ttfb_p50'))} | {cell(s.get('chunks_per_s'), 0)} | "
                f"{cell(s.get('cpu_s'))} | {cell(s.get('cpu_ms_per_req'), 2)} | "
                f"{cell(s.get('peak_rss_mb'), 0)} | {cell(s.get('foreign_cpu_util'))} | "
                f"{s.get('errors', 0)} |"
            )
    out.append("")
    out.append(
        "| workload | Nexus/direct RPS | LiteLLM/Nexus RPS | Nexus/LiteLLM RPS | "
        "LiteLLM added p50 / Nexus added p50 |"
    )
    out.append("| --- | --- | --- | --- | --- |")
    for name in names:
        r = result["ratios"].get(name, {})
        out.append(
            f"| {titles.get(name, name)} | {cell(r.get('nexus_over_direct_rps'), 3)} | "
            f"{cell(r.get('litellm_over_nexus_rps'), 3)} | "
            f"{cell(r.get('nexus_over_litellm_rps'), 1)} | "
            f"{cell(r.get('litellm_added_over_nexus_added_p50'), 1)} |"
        )
    for key, label, ratio, which in (
        ("translation", "translated workload", "RPS translated / pass-through", "translated"),
        ("inbound", "client-dialect workload", "RPS dialect-in / chat pass-through", "dialect-in"),
    ):
        trans = result.get(key) or {}
        if not trans:
            continue
        nexus = summary.get("nexus", {})
        out.append("")
        out.append(
            f"| {label} | vs pass-through | added p50 ms | added p99 ms | "
            f"added TTFB p50 ms | {ratio} | content chunks/s {which} | "
            "content chunks/s pass-through | fewer chunks/s | added CPU ms/req | "
            "added CPU µs/chunk |"
        )
        out.append("|" + " --- |" * 11)
        for name, t in trans.items():
            mine, twin = nexus.get(name, {}), nexus.get(t["pass_through"], {})
            fewer = t.get("fewer_chunks_pct")
            out.append(
                f"| {titles.get(name, name)} | {t['pass_through']} | "
                f"{cell(t.get('added_p50_ms'), 3)} | {cell(t.get('added_p99_ms'), 3)} | "
                f"{cell(t.get('added_ttfb_p50_ms'), 3)} | {cell(t.get('rps_ratio'), 3)} | "
                f"{cell(mine.get('content_chunks_per_s'), 0)} | "
                f"{cell(twin.get('content_chunks_per_s'), 0)} | "
                f"{(cell(fewer, 1) + ' %') if fewer is not None else '—'} | "
                f"{cell(t.get('added_cpu_ms_per_req'), 3)} | "
                f"{cell(t.get('added_cpu_us_per_chunk'), 1)} |"
            )
    out.append("")
    out.append("| target | measured | limit | met |")
    out.append("| --- | --- | --- | --- |")
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        out.append(
            f"| {t['target']} | {cell(t['value'])} {t['unit']} | {t['op']} {t['limit']:g} "
            f"{t['unit']} | {met} |"
        )
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark Nexus against direct access and LiteLLM (see docs/performance.md)."
    )
    p.add_argument("--quick", action="store_true", help="≈ 1 minute: short windows, one round")
    p.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy setup")
    p.add_argument("--duration", type=float, help="measured seconds per run (quick 1.5, full 6)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each run")
    p.add_argument("--repeat", type=int, help="rounds; medians are reported (quick 1, full 3)")
    p.add_argument("--only", help=f"comma list of setups to run: {','.join(SETUPS)}")
    p.add_argument("--workloads", help="comma list: " + ",".join(w.name for w in WORKLOADS))
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up/footprint part")
    p.add_argument("--no-calibration", action="store_true", help="skip the fake's ceiling")
    p.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-checks")
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.25,
        help="re-measure a run when other processes used more than this many cores (0.25)",
    )
    p.add_argument("--retries", type=int, default=3, help="re-measurements per run (3)")
    p.add_argument("--out", help="JSON output path (default bench/results/<timestamp>.json)")
    p.add_argument(
        "--render",
        metavar="JSON",
        help="print the tables of an earlier results file and exit (with --markdown: Markdown)",
    )
    p.add_argument("--markdown", action="store_true", help="with --render: Markdown tables")
    p.add_argument(
        "--nexus-extra",
        action="append",
        default=[],
        metavar="TOML",
        help="append TOML to the Nexus config, e.g. '[history]\nenabled = false' (repeatable)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    args = p.parse_args(argv)
    args.mode = "quick" if args.quick else "full"
    if args.duration is None:
        args.duration = 1.5 if args.quick else 6.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.5
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    args.calib_duration = 1.5 if args.quick else 4.0
    args.startup_runs = 3 if args.quick else 5
    setups = SETUPS if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in setups if s not in SETUPS]
    if bad:
        p.error(f"unknown setup(s) {bad}; choose from {SETUPS}")
    if args.no_litellm and "litellm" in setups:
        setups.remove("litellm")
    args.setups = setups
    names = [w.name for w in WORKLOADS]
    if args.workloads:
        wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
        bad = [w for w in wanted if w not in WORKLOAD_BY_NAME]
        if bad:
            p.error(f"unknown workload(s) {bad}; choose from {names}")
        args.workload_list = [WORKLOAD_BY_NAME[w] for w in wanted]
    else:
        args.workload_list = list(WORKLOADS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        old = json.loads(Path(args.render).read_text())
        if args.markdown:
            print(render_markdown(old))
        else:
            names = [w["name"] for w in old["settings"]["workloads"]]
            print(render(old, [WORKLOAD_BY_NAME[n] for n in names], old["settings"]["setups"]))
        return 0
    NEXUS_EXTRA_TOML[:] = [x.replace("\\n", "\n") for x in args.nexus_extra]
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(tempfile.mkdtemp(prefix="nexus-bench-"))
    layout = core_layout(args.no_pin)
    machine = machine_info()
    log(
        f"{args.mode} mode: setups {args.setups}, {len(args.workload_list)} workloads, "
        f"{args.repeat} round(s) of {args.warmup:g} s warm-up + {args.duration:g} s; "
        f"{layout['note']}; logs in {workdir}"
    )
    if machine["cpus_usable"] < 2:
        log("warning: fewer than 2 usable cores; the numbers mix gateway and load generator")

    litellm_error = None
    if "litellm" in args.setups:
        litellm_error = ensure_litellm()
        if litellm_error:
            log(f"LiteLLM skipped: {litellm_error}")
            args.setups.remove("litellm")
        else:
            machine["litellm_packages"] = litellm_versions()

    result: dict[str, Any] = {
        "started_utc": started.isoformat(timespec="seconds"),
        "mode": args.mode,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.repeat,
            "setups": args.setups,
            "workloads": [w.__dict__ for w in args.workload_list],
        },
        "machine": machine,
        "layout": {k: (sorted(v) if isinstance(v, set) else v) for k, v in layout.items()},
        "load_generator": "bench/loadgen.py: one process, uvloop, raw asyncio Protocol, "
        "closed loop over keep-alive HTTP/1.1 connections",
        "litellm_error": litellm_error,
        "nexus_extra_toml": NEXUS_EXTRA_TOML,
    }

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # stop the servers and write what was measured

    signal.signal(signal.SIGTERM, on_term)
    fake = start_fake(workdir, layout["fake"])
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    gateway: Server | None = None
    try:
        if not args.no_calibration:
            log("calibration: the fake's ceiling")
            result["calibration"] = calibrate(fake, args, layout)
        if not args.no_startup and "nexus" in args.setups:
            log(f"footprint: nexus serve ×{args.startup_runs}, nexusctl --help ×5")
            set_fake_mode(fake, 20, 0.0)
            result["footprint"] = startup_footprint(workdir, fake, args.startup_runs)
        starts: dict[str, list[float]] = {}
        versions: list[dict[str, Any]] = []
        wrk_checks: dict[str, Any] = {}
        for rnd in range(args.repeat):
            for setup in args.setups:
                gateway = None
                if setup == "nexus":
                    gateway = start_nexus(
                        workdir,
                        fake,
                        layout["gateway"],
                        translated=any(w.translated for w in args.workload_list),
                    )
                elif setup == "litellm":
                    gateway = start_litellm(workdir, fake, layout["gateway"])
                if gateway is not None:
                    try:
                        took = wait_ready(gateway, 30 if setup == "nexus" else 180)
                    except RuntimeError as exc:
                        log(str(exc))
                        raw.setdefault(setup, {})
                        result.setdefault("setup_errors", {})[setup] = str(exc)[-2000:]
                        gateway = None
                        continue
                    starts.setdefault(setup, []).append(took)
                    if setup == "nexus":
                        versions.append(code_version())
                    time.sleep(0.3)
                    idle = mem_kb(gateway.pids(), "VmRSS") / 1024
                    result.setdefault("gateway_idle_rss_mb", {}).setdefault(setup, []).append(idle)
                port = gateway.port if gateway else fake.port
                for wl in args.workload_list:
                    if (wl.translated or wl.inbound) and setup == "litellm":
                        continue  # LiteLLM is compared on pass-through only
                    if wl.inbound and setup == "direct":
                        continue  # the fake speaks chat only: the twin's direct run is it
                    log(f"round {rnd + 1}/{args.repeat} {setup:<7} {wl.name:<9} ({wl.title})")
                    r = measure(port, gateway, fake, wl, args, layout)
                    attempts = 1
                    while (
                        "fatal" not in r
                        and (r.get("foreign_cpu_util") or 0) > args.max_foreign
                        and attempts <= args.retries
                    ):
                        log(
                            f"  other processes used {r['foreign_cpu_util']:.2f} cores "
                            "meanwhile: measuring again"
                        )
                        again = measure(port, gateway, fake, wl, args, layout)
                        attempts += 1
                        if "fatal" not in again and (again.get("foreign_cpu_util") or 0) < (
                            r.get("foreign_cpu_util") or 0
                        ):
                            r = again
                    r["attempts"] = attempts
                    r["round"] = rnd
                    raw.setdefault(setup, {}).setdefault(wl.name, []).append(r)
                    if "fatal" in r:
                        log(f"  failed: {r['fatal']} {r.get('stderr', '')[-300:]}")
                    else:
                        log(
                            f"  {r['rps']:.0f} req/s, p50 {r['latency_ms']['p50']}"
                            f" ms, errors {r['error_count']}"
                        )
                    if gateway is not None and not gateway.alive():
                        log(f"{setup} died:\n{gateway.tail()}")
                        break
                if rnd == 0 and not args.no_wrk and shutil.which("wrk"):
                    set_fake_mode(fake, 20, 0.0)
                    wrk_checks[setup] = wrk_run(port, False, 64, args.duration, layout["loadgen"])
                if gateway is not None:
                    gateway.stop()
                    gateway = None
        result["gateway_ready_s"] = starts
        result["nexus_code_per_round"] = versions
        if any(v != versions[0] for v in versions):
            result["code_changed_during_run"] = True
            log("WARNING: the Nexus code changed between rounds (see nexus_code_per_round)")
        if wrk_checks:
            result["wrk_cross_check_non_stream_c64"] = wrk_checks
    except KeyboardInterrupt:
        log("interrupted: stopping the servers, writing the partial results")
        result["interrupted"] = True
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()
    result["raw"] = raw
    result["summary"] = summarize(raw)
    result["ratios"] = ratios(result["summary"], args.workload_list)
    result["translation"] = translation(raw, args.workload_list)
    result["inbound"] = translation(raw, args.workload_list, inbound=True)
    result["targets"] = evaluate_targets(
        result["summary"], result.get("footprint"), result["translation"], result["inbound"]
    )
    result["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out_path = Path(args.out) if args.out else RESULTS / f"{stamp}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1, default=sorted))
    m = machine
    print(
        f"\nNexus bench, {args.mode} mode, {result['started_utc']} — {m['cpu_model']}, "
        f"{m['cpus_usable']} cores, Python {m['python']}, {layout['note']}"
    )
    print(
        f"{args.repeat} round(s) × {args.duration:g} s measured after {args.warmup:g} s warm-up; "
        "medians over rounds\n"
    )
    print(render(result, args.workload_list, args.setups))
    if result.get("code_changed_during_run"):
        print(
            "\nWARNING: the Nexus code changed between rounds: "
            + json.dumps(result["nexus_code_per_round"])
        )
    for setup, err in (result.get("setup_errors") or {}).items():
        print(f"\n{setup} FAILED: " + err.strip().splitlines()[0])
    if litellm_error:
        print(f"\nLiteLLM skipped: {litellm_error}")
    wrk = result.get("wrk_cross_check_non_stream_c64")
    if wrk:
        parts = [
            f"{k} {v['rps']:.0f} RPS p50 {v['p50_ms']:.2f} ms"
            for k, v in wrk.items()
            if v and "rps" in v
        ]
        print("\nwrk cross-check (non-streaming c64, round 1): " + "; ".join(parts))
    print(f"\nresults: {out_path}")
    if not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
