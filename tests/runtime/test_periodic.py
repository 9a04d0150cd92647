"""Periodic work claimed once per period across workers (DESIGN §6), on every store:
threads racing for a period, the next period, a claimant that died, and the
reconciler's timer pass doing its overdue query only when it claims the period."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.runtime import periodic
from pipelinejobs.runtime.reconciler import Reconciler
from tests.runtime.test_reconciler import make
from tests.support import FakeClock, make_runtime, stub


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    made = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "p.sqlite3")
    yield made
    made.close()


def test_one_claim_per_period_then_the_next(store) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(1_000_020.0)  # the start of a 30 s period
    assert periodic.claim(store, "work", 30, clock) is True
    assert periodic.claim(store, "work", 30, clock) is False  # same period
    assert periodic.claim(store, "other", 30, clock) is True  # another kind of work
    clock.advance(29.9)
    assert periodic.claim(store, "work", 30, clock) is False
    clock.advance(0.2)  # the next period: whoever asks first does it
    assert periodic.claim(store, "work", 30, clock) is True
    assert store.get(periodic.COLLECTION, "work")["period"] == int(clock() // 30)
    assert periodic.claim(store, "work", 0, clock) is False  # off


def test_threads_racing_for_a_period_claim_it_once(store) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(2_000_000.0)
    for _ in range(5):  # five periods, eight claimants each
        clock.advance(30)
        won: list[bool] = []
        start = threading.Barrier(8)

        def race(start: threading.Barrier, won: list[bool]) -> None:
            start.wait(10)
            won.append(periodic.claim(store, "race", 30, clock))

        threads = [threading.Thread(target=race, args=(start, won)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert won.count(True) == 1, won


def test_the_timer_pass_queries_overdue_jobs_once_per_period(tmp_path: Path) -> None:
    clock = FakeClock(1_790_000_000.0)  # the start of a 10 s period
    rt = make_runtime(tmp_path, "sqlite", clock, reconciler={"interval": 10.0})
    try:
        uuid = make(rt, 1, heartbeat_timeout=5)
        clock.advance(6)
        first, second = Reconciler(rt), Reconciler(rt)  # two workers' reconcilers
        done = first.tick()
        assert done is not None and [d.uuid for d in done.overdue] == [uuid]
        stub(rt).join()  # the jobs-manager applies the fail
        assert rt.jobs.get(uuid)["state"] == "FAILED"
        late = make(rt, 2, heartbeat_timeout=1)
        clock.advance(2)
        idle = second.tick()  # same period: claimed by the first
        assert idle is not None and idle.overdue == []
        clock.advance(10)
        again = second.tick()  # the next period: the second worker does it
        assert again is not None and [d.uuid for d in again.overdue] == [late]
    finally:
        rt.close()
