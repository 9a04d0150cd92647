"""Worker heartbeats: one record per process, rewritten, read back by recency — on
every store backend — and written by a running worker's own timer."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.bus.celery import CeleryBus
from pipelinejobs.adapters.store.base import Store
from pipelinejobs.errors import StoreUnavailable
from pipelinejobs.observability.heartbeats import COLLECTION, Heartbeat, prune, recent_workers
from pipelinejobs.runtime.system import System
from tests.support import FakeClock, runtime_config

WORKER = {
    "node": "pipelinejobs-1@box",
    "actors": ["jobs-manager"],
    "concurrency": 4,
    "pool": "prefork",
}


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """What ``predicate`` returns once it is truthy (a failure after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return found


def test_a_beat_records_the_worker_and_a_second_one_rewrites_it(store: Store) -> None:
    clock = FakeClock()
    heartbeat = Heartbeat(store, clock=clock, hostname="box")
    first = heartbeat.beat(WORKER)
    clock.advance(5)
    second = heartbeat.beat(WORKER)

    assert first["id"] == second["id"] == f"box:{os.getpid()}"
    assert store.count(COLLECTION) == 1
    stored = store.get(COLLECTION, first["id"])
    assert stored is not None
    assert {k: v for k, v in stored.items() if k != "version"} == second
    assert stored["last_seen"] > first["last_seen"] and stored["started"] == first["started"]
    assert (stored["hostname"], stored["pid"], stored["kind"]) == ("box", os.getpid(), "worker")
    assert (stored["actors"], stored["concurrency"], stored["pool"]) == (
        ["jobs-manager"],
        4,
        "prefork",
    )


def test_recent_workers_are_those_seen_within_the_window_newest_first(store: Store) -> None:
    clock = FakeClock()
    old = Heartbeat(store, clock=clock, hostname="old")
    old.beat(WORKER)
    clock.advance(60)
    new = Heartbeat(store, clock=clock, hostname="new", kind="embedded")
    new.beat(WORKER)
    clock.advance(1)
    stopping = Heartbeat(store, clock=clock, hostname="stopping")
    stopping.stop(WORKER)

    recent = recent_workers(store, 30, clock=clock)
    assert [w["hostname"] for w in recent] == ["stopping", "new"]
    assert recent[0]["stopped"] == recent[0]["last_seen"] and "stopped" not in recent[1]
    assert recent[1]["kind"] == "embedded"
    assert [w["hostname"] for w in recent_workers(store, 3600, clock=clock)] == [
        "stopping",
        "new",
        "old",
    ]


def test_workers_gone_for_a_day_are_forgotten_at_the_first_beat(store: Store) -> None:
    clock = FakeClock()
    Heartbeat(store, clock=clock, hostname="gone").beat(WORKER)
    clock.advance(2 * 86400)
    Heartbeat(store, clock=clock, hostname="here").beat(WORKER)
    assert [w["hostname"] for w in recent_workers(store, 10**6, clock=clock)] == ["here"]
    assert prune(store, 0, clock=FakeClock(clock.now + 1)) == 1


def test_a_store_that_cannot_be_written_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Down:
        def beat(self, worker: object) -> None:
            raise StoreUnavailable("the store is down")

        stop = beat

    bus = CeleryBus(runtime_config(tmp_path).bus, "memory://", ["jobs-manager"], lambda a, e: None)
    try:
        bus.heartbeat = Down()
        bus.worker_options(["jobs-manager"], 2, "threads")
        with caplog.at_level(logging.WARNING, "pipelinejobs.bus"):
            bus.beat()
            bus.beat(stopping=True)
    finally:
        bus.close()
    assert caplog.text.count("worker heartbeat not recorded (the store is down)") == 2


def test_the_embedded_runtime_beats_from_its_worker_timer(tmp_path: Path) -> None:
    config = runtime_config(tmp_path, bus={"heartbeat_interval": 0.2})
    with System(config).start_embedded(["jobs-manager", "jobs-indexer"]) as system:
        store = system.runtime.store
        (worker,) = wait_for(lambda: recent_workers(store, 60))
        assert worker["kind"] == "embedded" and worker["pid"] == os.getpid()
        assert worker["hostname"] == socket.gethostname()
        assert worker["actors"] == ["jobs-indexer", "jobs-manager"]
        assert worker["concurrency"] == config.bus.embedded_threads
        assert worker["pool"] == "threads"
        wait_for(lambda: recent_workers(store, 60)[0]["last_seen"] > worker["last_seen"])
    # Stopped cleanly: said so (the store is closed with the system; read it again).
    with System(config) as again:
        (stopped,) = recent_workers(again.runtime.store, 60)
        assert stopped["stopped"] and stopped["id"] == worker["id"]
