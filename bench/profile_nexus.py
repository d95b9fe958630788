#!/usr/bin/env python3
"""Where does Nexus spend its CPU on the hot path? py-spy on the daemon under bench load.

Starts the fake upstream and one Nexus (pinned like ``bench/run.py``), drives one workload at
a time with ``bench/loadgen.py`` and samples the daemon with ``py-spy record`` over the
measuring window. Idle samples (the loop waiting in ``epoll``) are excluded by py-spy, so the
percentages are shares of the daemon's *busy* time. Time spent in C (``json.loads``,
``transport.write``, the kernel) is charged to the Python frame that called it.

Output per workload: self time by layer (the innermost Python frame decides: Hypercorn, h11,
Quart/Werkzeug, aiohttp, json, asyncio, our ``nexusd``…), inclusive time of the layers and of
our own functions, and the top self-time functions; raw stacks go to ``bench/profiles/``.

Usage::

    python bench/profile_nexus.py                      # ns-c64 and s-c64, 10 s each
    python bench/profile_nexus.py --workloads ns-c1 --duration 5
    python bench/profile_nexus.py --workloads s-c64,tr-s-c64   # translation's cost per chunk

py-spy is installed on first use into ``bench/.venv-tools`` (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import run as bench  # bench/run.py (this script's directory is on sys.path)

TOOLS_VENV = bench.BENCH / ".venv-tools"
OUT_DIR = bench.BENCH / "profiles"

# first match wins; checked against the frame's file path
LAYERS = [
    ("nexusd (ours)", ("/nexusd/",)),
    ("hypercorn", ("/hypercorn/",)),
    ("h11", ("/h11/",)),
    ("quart/werkzeug", ("/quart/", "/werkzeug/", "/flask/", "/blinker/")),
    ("aiohttp client", ("/aiohttp/", "/yarl/", "/multidict/", "/aiohappyeyeballs/")),
    ("json", ("/json/",)),
    ("prometheus_client", ("/prometheus_client/",)),
    ("logging", ("/logging/",)),
    ("asyncio/uvloop", ("/asyncio/", "/uvloop/", "contextvars")),
    ("uuid", ("/uuid.py",)),
]


LOOP_FRAMES = ("Runner.run (", "run_until_complete (", "BaseEventLoop.run_forever (")
LOOP_LAYER = "event loop (uvloop C, charged to Runner.run)"


def trim(frames: list[str]) -> tuple[list[str], bool]:
    """Drop the start-up frames below the event loop (``<module>`` → ``Runner.run``).

    uvloop is C, so py-spy shows the callbacks and task steps it runs directly on top of
    ``Runner.run``; a sample whose innermost frame *is* ``Runner.run`` is loop work itself.
    """
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].startswith(LOOP_FRAMES):
            return frames[i + 1 :], i == len(frames) - 1
    return frames, False


def layer_of(frame: str) -> str:
    for name, needles in LAYERS:
        if any(n in frame for n in needles):
            return name
    return "other (stdlib, typing, …)"


def find_py_spy() -> str:
    local = TOOLS_VENV / "bin" / "py-spy"
    if local.exists():
        return str(local)
    found = shutil.which("py-spy")
    if found:
        return found
    bench.log(f"installing py-spy into {TOOLS_VENV}")
    subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True, timeout=300)
    subprocess.run(
        [str(TOOLS_VENV / "bin" / "pip"), "install", "-q", "py-spy"], check=True, timeout=900
    )
    return str(local)


# leaf frames of threads that merely wait (py-spy cannot always tell they are idle)
IDLE_LEAVES = ("_worker (", "Thread.wait (", "Condition.wait (", "Queue.get (")


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if frames and frames[-1].startswith(IDLE_LEAVES):
            continue
        if frames and frames[0].startswith("Thread._bootstrap"):
            # helper threads (history writer, executor): mostly blocked in C waits that
            # py-spy cannot tell from work; their real CPU is measured from /proc instead
            continue
        stacks.append((frames, int(count)))
    return stacks


def short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py)`` → ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "/lib/python3":
                where = where.split("/", 1)[-1]
            break
    return f"{name} ({where})"


def analyse(stacks: list[tuple[list[str], int]], top: int) -> dict:
    total = sum(c for _, c in stacks) or 1
    self_layer: Counter[str] = Counter()
    incl_layer: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    incl_ours: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    for all_frames, count in stacks:
        frames, in_loop = trim(all_frames)
        if in_loop:
            self_layer[LOOP_LAYER] += count
            self_fn[LOOP_LAYER] += count
            incl_layer[LOOP_LAYER] += count
            continue
        if not frames:
            continue
        leaf = frames[-1]
        self_layer[layer_of(leaf)] += count
        self_fn[short(leaf)] += count
        for layer in {layer_of(f) for f in frames}:
            incl_layer[layer] += count
        for fn in {short(f) for f in frames if "/nexusd/" in f}:
            incl_ours[fn] += count
        for fn in {short(f) for f in frames}:
            incl_fn[fn] += count

    def pct(counter: Counter[str], n: int | None = None) -> list[tuple[str, float]]:
        return [(k, round(v * 100 / total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "self_by_layer_pct": pct(self_layer),
        "inclusive_by_layer_pct": pct(incl_layer),
        "top_self_functions_pct": pct(self_fn, top),
        "inclusive_nexusd_functions_pct": pct(incl_ours, top),
        "inclusive_functions_pct": pct(incl_fn, top),
    }


def render(name: str, a: dict, extra: str) -> str:
    lines = [f"== {name}: {a['samples']} busy samples; {extra}"]
    lines.append(
        "  self time by layer:      " + ", ".join(f"{k} {v}%" for k, v in a["self_by_layer_pct"])
    )
    lines.append(
        "  inclusive by layer:      "
        + ", ".join(f"{k} {v}%" for k, v in a["inclusive_by_layer_pct"])
    )
    lines.append("  top self-time functions:")
    lines.extend(f"    {v:5.1f}%  {k}" for k, v in a["top_self_functions_pct"])
    lines.append("  all functions, inclusive (callees included):")
    lines.extend(f"    {v:5.1f}%  {k}" for k, v in a["inclusive_functions_pct"])
    lines.append("  our functions, inclusive:")
    lines.extend(f"    {v:5.1f}%  {k}" for k, v in a["inclusive_nexusd_functions_pct"])
    return "\n".join(lines)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread (``/proc/PID/task``); the main (event loop) thread is ``pid``."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / bench.CLK_TCK
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="py-spy profile of Nexus under bench load")
    p.add_argument("--workloads", default="ns-c64,s-c64")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument(
        "--nexus-extra",
        action="append",
        default=[],
        metavar="TOML",
        help="append TOML to the Nexus config (as in bench/run.py)",
    )
    p.add_argument("--analyse", nargs="+", metavar="RAW", help="only analyse raw py-spy files")
    args = p.parse_args(argv)
    if args.analyse:
        for raw in args.analyse:
            print(render(Path(raw).name, analyse(parse_raw(Path(raw)), args.top), "re-analysed"))
        return 0
    bench.NEXUS_EXTRA_TOML[:] = [x.replace("\\n", "\n") for x in args.nexus_extra]
    wanted = [bench.WORKLOAD_BY_NAME[w.strip()] for w in args.workloads.split(",") if w.strip()]
    py_spy = find_py_spy()
    OUT_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    workdir = Path(tempfile.mkdtemp(prefix="nexus-profile-"))
    layout = bench.core_layout(args.no_pin)
    fake = bench.start_fake(workdir, layout["fake"])
    nexus = None
    report: dict = {"started_utc": stamp, "layout": layout["note"], "workloads": {}}
    texts = []
    try:
        nexus = bench.start_nexus(
            workdir, fake, layout["gateway"], translated=any(w.translated for w in wanted)
        )
        bench.wait_ready(nexus, 30)
        for wl in wanted:
            raw_path = OUT_DIR / f"{stamp}-{wl.name}.raw.txt"
            spy: list[subprocess.Popen] = []
            nexus_pid = nexus.pid

            cpu: dict[str, dict[int, float]] = {}

            def start_spy(
                path: Path = raw_path, pid: int = nexus_pid, box: list = spy, cpu: dict = cpu
            ) -> None:
                cpu["start"] = thread_cpu(pid)
                box.append(
                    subprocess.Popen(
                        [
                            py_spy,
                            "record",
                            "--pid",
                            str(pid),
                            "--rate",
                            str(args.rate),
                            "--duration",
                            str(max(1, int(args.duration))),
                            "--format",
                            "raw",
                            "--full-filenames",
                            "--nolineno",
                            "--output",
                            str(path),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                )

            bench.set_fake_mode(fake, wl.chunks, wl.delay_ms)
            bench.log(f"profiling {wl.name} ({wl.title}) for {args.duration:g} s")
            r = bench.run_loadgen(
                nexus.port,
                wl,
                args.warmup,
                args.duration + 1.0,
                layout["loadgen"],
                start_spy,
                lambda pid=nexus_pid, cpu=cpu: cpu.__setitem__("end", thread_cpu(pid)),
            )
            err = ""
            for proc in spy:
                try:
                    _, err_b = proc.communicate(timeout=args.duration + 30)
                    err = err_b.decode(errors="replace")
                except subprocess.TimeoutExpired:
                    proc.kill()
            if not raw_path.exists():
                texts.append(f"== {wl.name}: py-spy produced nothing: {err[-500:]}")
                continue
            a = analyse(parse_raw(raw_path), args.top)
            start, end = cpu.get("start", {}), cpu.get("end", {})
            used = {t: end[t] - start.get(t, 0.0) for t in end}
            total_cpu = sum(used.values())
            main_cpu = used.get(nexus_pid, 0.0)
            a["process_cpu_s"] = total_cpu
            a["main_thread_share_pct"] = round(main_cpu * 100 / total_cpu, 1) if total_cpu else None
            extra = (
                f"{r.get('rps', 0):.0f} req/s under py-spy ({args.rate} Hz, blocking), "
                f"event-loop thread = {a['main_thread_share_pct']}% of the process CPU "
                f"({total_cpu:.2f} s), raw stacks {raw_path.relative_to(bench.ROOT)}"
            )
            report["workloads"][wl.name] = {
                "analysis": a,
                "rps_under_profiler": r.get("rps"),
                "raw": str(raw_path),
            }
            texts.append(render(wl.name, a, extra))
    finally:
        if nexus is not None:
            nexus.stop()
        fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    out = OUT_DIR / f"{stamp}-summary.json"
    out.write_text(json.dumps(report, indent=1))
    print("\n\n".join(texts))
    print(f"\nsummary: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
