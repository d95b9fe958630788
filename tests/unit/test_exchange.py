"""The Exchange (phases, one finish, one record) and leases (design §2)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from nexusd.exchange import LEGAL, Exchange, IllegalTransition, Phase
from nexusd.lease import CapacitySignal, Lease
from nexusd.records import RequestRecord
from nexusd.registry import Backend
from nexusd.types import BackendType, Endpoint
from tests.unit.flow_support import CountingSignal

#: the design's table, written out independently of ``LEGAL``
EXPECTED_LEGAL = {
    (Phase.RECEIVED, Phase.ROUTED),
    (Phase.RECEIVED, Phase.ANSWERED),
    (Phase.RECEIVED, Phase.FINISHED),
    (Phase.ROUTED, Phase.STREAMING),
    (Phase.ROUTED, Phase.ANSWERED),
    (Phase.ROUTED, Phase.FINISHED),
    (Phase.STREAMING, Phase.FINISHED),
    (Phase.ANSWERED, Phase.FINISHED),
}
ALL_PAIRS = list(itertools.product(Phase, Phase))


def backend(name: str = "b") -> Backend:
    return Backend(id=name, name=name, url=f"http://{name}.test", type=BackendType.GENERIC)


class Sink:
    def __init__(self) -> None:
        self.records: list[tuple[RequestRecord, str | None]] = []

    def __call__(self, record: RequestRecord, preview: str | None) -> None:
        self.records.append((record, preview))


def exchange(sink: Sink | None = None, **kwargs: object) -> Exchange:
    return Exchange(Endpoint.CHAT, sink or Sink(), **kwargs)  # type: ignore[arg-type]


# --- the transition table ------------------------------------------------------------------


def test_table_covers_every_phase() -> None:
    assert set(LEGAL) == set(Phase)
    table = {(a, b) for a, targets in LEGAL.items() for b in targets}
    assert table == EXPECTED_LEGAL


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{a}-{b}" for a, b in ALL_PAIRS])
def test_every_transition(src: Phase, dst: Phase) -> None:
    ex = exchange()
    ex.phase = src
    if (src, dst) in EXPECTED_LEGAL:
        ex.advance(dst)
        assert ex.phase is dst
    else:
        with pytest.raises(IllegalTransition) as info:
            ex.advance(dst)
        assert ex.phase is src  # an illegal move changes nothing
        assert ex.request_id in str(info.value)


def test_illegal_transition_is_a_runtime_error() -> None:
    assert issubclass(IllegalTransition, RuntimeError)


@pytest.mark.parametrize(
    "path",
    [
        [Phase.FINISHED],
        [Phase.ANSWERED, Phase.FINISHED],
        [Phase.ROUTED, Phase.FINISHED],
        [Phase.ROUTED, Phase.ANSWERED, Phase.FINISHED],
        [Phase.ROUTED, Phase.STREAMING, Phase.FINISHED],
    ],
)
def test_every_path_to_finished(path: list[Phase]) -> None:
    ex = exchange()
    assert ex.phase is Phase.RECEIVED
    for phase in path:
        ex.advance(phase)
    assert ex.phase is Phase.FINISHED


# --- finish --------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [p for p in Phase if p is not Phase.FINISHED])
def test_finish_from_every_open_phase_emits_one_record(phase: Phase) -> None:
    sink = Sink()
    finished: list[Exchange] = []
    ex = Exchange(Endpoint.EMBEDDINGS, sink, request_id="rid-1", on_finish=finished.append)
    ex.phase = phase
    assert not ex.finished
    assert ex.finish("error", 503, error="boom", error_type="capacity") is True
    assert ex.finished and ex.phase is Phase.FINISHED
    assert ex.finish("ok", 200) is False
    assert ex.finish("cancelled", 499, error_type="cancelled") is False
    assert len(sink.records) == 1
    assert finished == [ex]
    record, preview = sink.records[0]
    assert preview is None
    assert record.request_id == "rid-1"
    assert (record.outcome, record.status, record.status_code) == ("error", "error", 503)
    assert (record.error, record.error_type) == ("boom", "capacity")
    assert record.endpoint == "embeddings"
    assert record.latency_ms >= 0


def test_finish_ok_record_and_preview() -> None:
    sink = Sink()
    ex = exchange(sink)
    ex.trace.prompt_preview = "hello"
    ex.trace.requested_model = "m"
    assert ex.finish("ok", 200)
    record, preview = sink.records[0]
    assert preview == "hello"
    assert record.ok and record.status_code == 200 and record.outcome == "ok"
    assert record.requested_model == "m"
    assert record.endpoint == "chat"
    assert record.error is None and record.error_type is None


def test_request_ids_are_unique_unless_given() -> None:
    assert exchange().request_id != exchange().request_id
    assert exchange(request_id="given").request_id == "given"


def test_finish_releases_the_held_lease_once() -> None:
    b = backend()
    b.capacity_freed = signal = CountingSignal()
    lease = b.lease()
    assert b.pending == 1
    ex = exchange()
    ex.hold(lease)
    assert ex.lease is lease
    assert ex.finish("ok", 200)
    assert lease.released and b.pending == 0
    assert not ex.finish("ok", 200)
    lease.release()
    assert b.pending == 0
    assert signal.notified == 1


def test_finish_without_lease() -> None:
    ex = exchange()
    assert ex.lease is None
    assert ex.finish("error", 400)


def test_finish_still_runs_on_finish_when_the_sink_raises() -> None:
    def sink(record: RequestRecord, preview: str | None) -> None:
        raise ValueError("sink broke")

    done: list[Exchange] = []
    b = backend()
    ex = Exchange(Endpoint.CHAT, sink, on_finish=done.append)
    ex.hold(b.lease())
    with pytest.raises(ValueError, match="sink broke"):
        ex.finish("ok", 200)
    assert done == [ex]
    assert ex.finished and b.pending == 0
    assert ex.finish("ok", 200) is False  # still only once


# --- leases --------------------------------------------------------------------------------


def test_lease_counts_and_releases_once() -> None:
    b = backend()
    b.capacity_freed = signal = CountingSignal()
    first, second = b.lease(), Lease(b)
    assert b.pending == 2
    assert not first.released
    first.release()
    first.release()
    first.release()
    assert first.released and b.pending == 1
    assert signal.notified == 1
    second.release()
    assert b.pending == 0 and signal.notified == 2


def test_lease_context_managers_release() -> None:
    b = backend()
    with b.lease() as lease:
        assert b.pending == 1
    assert lease.released and b.pending == 0
    with pytest.raises(KeyError), b.lease() as lease2:
        raise KeyError("x")
    assert lease2.released and b.pending == 0


async def test_lease_async_context_manager_releases() -> None:
    b = backend()
    async with b.lease() as lease:
        assert b.pending == 1
    assert lease.released and b.pending == 0
    lease.release()
    assert b.pending == 0


async def step() -> None:
    """Let the tasks created so far take their first step (asyncio runs ready callbacks in
    FIFO order, so one yield suffices): not a wait for anything to happen."""
    await asyncio.sleep(0)


async def test_capacity_wait_wakes_on_release() -> None:
    b = backend()
    b.capacity_freed = signal = CountingSignal()
    lease = b.lease()
    waiters = [asyncio.create_task(signal.wait()) for _ in range(3)]
    await step()
    assert signal.waiting == 3
    assert not any(w.done() for w in waiters)
    lease.release()
    assert signal.waiting == 0  # every waiter was handed its wake-up at once
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
    # a second release of the same lease notifies nobody
    late = asyncio.create_task(signal.wait())
    await step()
    lease.release()
    assert signal.notified == 1 and signal.waiting == 1 and not late.done()
    b.lease().release()
    assert signal.notified == 2
    await asyncio.wait_for(late, timeout=5)


async def test_capacity_wait_forgets_a_cancelled_waiter() -> None:
    signal = CapacitySignal()
    waiter = asyncio.create_task(signal.wait())
    await step()
    assert signal.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert signal.waiting == 0
    signal.notify()  # nobody waits: a no-op


async def test_capacity_notify_before_wait_is_not_remembered() -> None:
    signal = CapacitySignal()
    signal.notify()
    waiter = asyncio.create_task(signal.wait())
    await step()
    assert signal.waiting == 1 and not waiter.done()
    signal.notify()
    assert signal.waiting == 0
    await asyncio.wait_for(waiter, timeout=5)
