"""Priority on real brokers: a high-priority message sent behind a backlog of low ones
is delivered before most of them once a worker starts (issue 15).

The bus is exercised on its own — a worker on threads in this process consuming a
queue of its own, whose delivery only records the order — so the broker's ordering is
what is measured, not the actors' work; then, on Redis, end to end with a worker
process and the jobs-manager. How an execution gets its priority (a launch's,
its job's, its sender's) is tested on the stub bus in tests/runtime/test_priority.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.bus.base import queue_name
from pipelinejobs.adapters.bus.celery import CeleryBus, EmbeddedWorker
from pipelinejobs.config import BusSettings
from pipelinejobs.runtime.system import System
from tests.actors.jobs_support import ARCHIVE, PIPELINE, token

from .conftest import Workers, finished, system_env, wait_for

#: An actor queue of the test's own, so a shared broker's real queues are not touched.
ALIAS = "priority-test"
BACKLOG = 200


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def _delete(bus: CeleryBus, alias: str) -> None:
    with bus.app.connection_for_write() as conn:
        try:
            conn.default_channel.queue_delete(queue_name(alias))
        except Exception:  # never declared
            pass


@pytest.fixture
def recorded(broker: str) -> Iterator[tuple[CeleryBus, list[str]]]:
    order: list[str] = []
    lock = threading.Lock()

    def deliver(alias: str, execution_id: str) -> None:
        with lock:
            order.append(execution_id)

    bus = CeleryBus(BusSettings(), broker, [ALIAS], deliver)
    _delete(bus, ALIAS)  # a fresh queue: declared with its priority argument
    try:
        yield bus, order
    finally:
        _delete(bus, ALIAS)
        bus.close()


def test_high_overtakes_a_backlog_of_low(recorded: tuple[CeleryBus, list[str]]) -> None:
    bus, order = recorded
    for n in range(BACKLOG):
        bus.publish(ALIAS, f"low-{n:04d}", priority="low")
    bus.publish(ALIAS, "medium", priority="medium")
    bus.publish(ALIAS, "high", priority="high")
    assert bus.depth(ALIAS) == BACKLOG + 2  # every priority's list counted on Redis
    assert bus.unprioritised == []

    worker = EmbeddedWorker(bus, [ALIAS], concurrency=1).start()
    try:
        wait_for(
            lambda: len(order) == BACKLOG + 2,
            60,
            "the backlog to drain",
            lambda: f"{len(order)} delivered",
        )
    finally:
        worker.stop()
    # A worker holds at most one message it took before the rest were there to sort.
    assert order.index("high") <= 2, order[:10]
    assert order.index("medium") <= 3, order[:10]
    assert order.index("high") < order.index("medium")
    lows = [e for e in order if e.startswith("low-")]
    assert lows == sorted(lows)  # first in, first out within one priority


def test_a_queue_from_before_priorities_is_used_as_it_is(rabbitmq_url: str) -> None:
    """RabbitMQ refuses to re-declare a queue with another x-max-priority
    (PRECONDITION_FAILED): the bus keeps publishing to it, without priority."""
    legacy = "priority-legacy"
    from kombu import Queue

    bus = CeleryBus(BusSettings(), rabbitmq_url, [legacy], lambda a, e: None)
    try:
        _delete(bus, legacy)
        with bus.app.connection_for_write() as conn:  # as an earlier version declared it
            Queue(queue_name(legacy), routing_key=queue_name(legacy))(
                conn.default_channel
            ).declare()
        bus.publish(legacy, "AAAAAAAAAAAAA", priority="high")
        bus.publish(legacy, "BBBBBBBBBBBBB", priority="low")
        assert bus.unprioritised == [legacy]
        assert bus.depth(legacy) == 2
    finally:
        _delete(bus, legacy)
        bus.close()


def test_a_high_priority_jobs_event_overtakes_a_low_jobs_backlog(
    tmp_path: Path, redis_url: str, workers: Workers, client_system: Callable[..., System]
) -> None:
    """End to end on Redis, with a real ``pipelinejobs worker``: events for a low job
    queued while no worker runs, then one for a high job (both priorities are the
    jobs', found by ``Runtime.priority_for``); the worker applies the high one first."""
    env = system_env(tmp_path, redis_url)
    system = client_system(env)
    rt = system.runtime
    pipeline = rt.pipelines.create(PIPELINE).pipeline

    def job(priority: str, sample: str) -> dict[str, Any]:
        return rt.jobs.create(
            pipeline_uuid=pipeline["uuid"],
            linkage=[sample],
            data={"sample": sample},
            fields={"archive_path": f"{ARCHIVE}/{priority}", "priority": priority},
        ).job

    low, high = job("low", "sample.uw_biofab.1"), job("high", "sample.uw_biofab.2")

    def event(job: dict[str, Any], n: int) -> str:
        message = {"uuid": job["uuid"], "name": "update", "token": token(rt, job), "data": {"n": n}}
        return str(rt.submit("jobs-manager", message)["id"])

    lows = [event(low, n) for n in range(BACKLOG)]
    last = event(high, 0)
    assert rt.executions.get(last)["priority"] == "high"
    assert rt.executions.get(lows[0])["priority"] == "low"

    workers.start(env, actors="jobs-manager", concurrency=1)
    wait_for(lambda: finished(system, lows[-1]), 120, "the low backlog", workers.logs)
    done = finished(system, last)
    assert done is not None and done["status"] == "COMPLETE", done
    before = [e for e in lows if rt.executions.get(e)["finished"] < done["finished"]]
    assert len(before) <= 2, f"{len(before)} low events were applied before the high one"
