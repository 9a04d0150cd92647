"""Priority on real brokers: a high-priority message sent behind a backlog of low ones
is delivered before most of them once a worker starts (issue 15).

The bus is exercised on its own — a worker on threads in this process consuming a
queue of its own, whose delivery only records the order — so the broker's ordering is
what is measured, not the actors' work; then, on Redis, end to end with a worker
process and the jobs-manager; then, on both brokers, a high-priority launch of a real
local job sent behind 1,000 low jobs-manager events (RabbitMQ in a vhost of the
test's own, so the shared broker's queues are not involved). How an execution gets
its priority (a launch's, its job's, its sender's) is tested on the stub bus in
tests/runtime/test_priority.py.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.access.keys import Keys
from pipelinejobs.adapters.bus.base import queue_name
from pipelinejobs.adapters.bus.celery import CeleryBus, EmbeddedWorker
from pipelinejobs.config import BusSettings
from pipelinejobs.runtime.system import System
from tests.actors.jobs_support import ARCHIVE, PIPELINE, token

from .conftest import Workers, finished, system_env, wait_for
from .local_launch import command_pipeline, gateway, launch_message, local_env

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


# -- end to end: a high-priority launch behind 1,000 low events, on both brokers ------------

#: The backlog of the end-to-end test (issue 15 says 1,000).
LOW_EVENTS = 1000


@pytest.fixture
def rabbitmq_vhost(rabbitmq_url: str) -> Iterator[str]:
    """A RabbitMQ vhost of this test's own (made and deleted with ``rabbitmqctl``), so
    its actor queues are new — declared with ``x-max-priority`` — and nothing in the
    shared broker's ``/`` (queues declared by earlier tests or versions, another
    suite's messages) is seen or touched; deleting it drops what the test left queued."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("no rabbitmqctl to make a RabbitMQ vhost of this test's own")
    vhost = f"pipelinejobs-test-{uuid.uuid4().hex[:12]}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ctl, "-q", *args], capture_output=True, text=True, timeout=60)

    made = run("add_vhost", vhost)
    if made.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot make a vhost: {made.stderr.strip()}")
    try:
        allowed = run("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        assert allowed.returncode == 0, allowed.stderr
        scheme, rest = rabbitmq_url.split("://", 1)
        yield f"{scheme}://{rest.split('/', 1)[0]}/{vhost}"  # the URL's path names the vhost
    finally:
        run("delete_vhost", vhost)


@pytest.fixture(params=["redis", "rabbitmq"])
def isolated_broker(request: pytest.FixtureRequest) -> str:
    """Redis: the suite's own database, flushed; RabbitMQ: a vhost of the test's own."""
    return str(
        request.getfixturevalue("redis_url" if request.param == "redis" else "rabbitmq_vhost")
    )


def test_a_high_priority_launch_sent_last_finishes_before_a_low_backlog(
    tmp_path: Path,
    isolated_broker: str,
    workers: Workers,
    client_system: Callable[..., System],
    request: pytest.FixtureRequest,
) -> None:
    """Issue 15, end to end on both brokers: 1,000 ``update`` events for a low job are
    queued for the jobs-manager while no worker runs, then a high-priority launch of
    a local command that exits at once is sent to the launcher-proxy, last. One
    ``pipelinejobs worker`` (one pool process) then serves both actors, with a gateway
    for the job's status callbacks. The launch is taken first; each of its job's
    callbacks (RUNNING, FINISHED: high, as their job is) is taken next, after at most
    the low event in hand and the few taken in the milliseconds between its record
    being stored and its message published; the job is FINISHED while most of the
    backlog still waits; then the low events are all applied, in the order sent.

    How many low events were applied before the job ended is printed and kept in the
    report's ``user_properties``. The worker does not idle while the job's compute
    runs and its callbacks travel: it applies low events meanwhile (~1 ms each), so
    the count is that time more than the ordering's. On 2 cores it was 0–24 (of
    1,000) on both brokers, and up to ~120 with other test runs loading the machine;
    the bound (a quarter) is the backlog clearly not drained first. With two pool
    processes the second applies low events all along: 35–190 were applied first.

    Low priority is not protected from starvation — nothing ages a waiting message:
    both brokers order strictly (Redis: kombu's BRPOP names every high list before
    any medium or low one, ``round_robin`` rotating only between actors; RabbitMQ:
    ``x-max-priority`` queues, higher first). Low work waits while higher work for
    the same actor keeps arriving, and proceeds once it stops — as here, where the
    backlog drains after the high job (README: Priority, "Starvation"). On RabbitMQ
    priority orders one actor's queue only; a worker serving several actors takes
    from their queues in turn, so the launch may come after one low event.
    """
    env = local_env(tmp_path, isolated_broker)
    system = client_system(env)
    rt = system.runtime
    with gateway(env, tmp_path) as gw:
        low = rt.jobs.create(
            pipeline_uuid=rt.pipelines.create(PIPELINE).pipeline["uuid"],
            linkage=["sample.uw_biofab.1"],
            data={"sample": "sample.uw_biofab.1"},
            fields={"archive_path": f"{ARCHIVE}/low", "priority": "low"},
        ).job
        low_token = token(rt, low)

        def update(n: int) -> dict[str, Any]:
            return {"uuid": low["uuid"], "name": "update", "token": low_token, "data": {"n": n}}

        # The first low event goes through the gateway: its first publish opens its
        # broker connection (and on RabbitMQ declares the queues), ~0.1 s that would
        # otherwise delay the job's first callback and be counted against the ordering.
        key, _ = Keys(rt.store).create("user", description="priority test")
        gw.wait()
        lows = [gw.send(key, "jobs-manager", update(0))]
        lows += [str(rt.submit("jobs-manager", update(n))["id"]) for n in range(1, LOW_EVENTS)]
        quick = command_pipeline(rt, "quick", "print('done')")
        launch = rt.submit(
            "launcher-proxy", launch_message(quick, "sample.tacc.high", priority="high")
        )
        assert launch["priority"] == "high"
        assert rt.executions.get(lows[0])["priority"] == "low"
        assert system.bus.depth("jobs-manager") == LOW_EVENTS
        assert system.bus.depth("launcher-proxy") == 1

        workers.start(env, actors="launcher-proxy,jobs-manager", concurrency=1)

        def high_finished() -> dict[str, Any] | None:
            done = finished(system, launch["id"])
            if done is None:
                return None
            assert done["status"] == "COMPLETE", done
            job = rt.jobs.get(done["result"]["uuid"])
            assert job["state"] not in ("FAILED", "STOPPED"), job
            return job if job["state"] == "FINISHED" else None

        job = wait_for(
            high_finished, 60, "the high job to finish", lambda: workers.logs() + gw.output()
        )
        assert isinstance(job, dict)
        assert job["priority"] == "high"
        finish = next(h for h in rt.jobs.record(job["uuid"])["history"] if h["name"] == "finish")
        early = [rt.executions.get(e) for e in lows]
        applied_first = sum(1 for e in early if e.get("finished", "~") < finish["date"])
        # Recorded (``user_properties``; ``-rA``/``-s`` show the line) as the measure.
        measured = f"{applied_first} of {LOW_EVENTS} low events applied before the high job ended"
        request.node.user_properties.append(("low_events_applied_first", applied_first))
        print(measured)
        # Each high message was taken next: at most the low event in hand came first.
        launched = rt.executions.get(launch["id"])
        assert sum(1 for e in early if e.get("started", "~") < launched["started"]) <= 1
        callbacks = rt.store.find("executions", {"actor": "jobs-manager", "job": job["uuid"]}).items
        assert len(callbacks) >= 2 and all(c["priority"] == "high" for c in callbacks), callbacks
        for callback in callbacks:
            overtaken = [
                e
                for e in early
                if callback["created"] < e.get("started", "~") < callback["started"]
            ]
            assert len(overtaken) <= 5, (callback, [e["started"] for e in overtaken])
        assert applied_first < LOW_EVENTS // 4, measured

        # Low work was held back, not starved: the whole backlog follows, in order.
        wait_for(lambda: finished(system, lows[-1]), 60, "the low backlog", workers.logs)
    done = [rt.executions.get(e) for e in lows]
    assert all(e["status"] == "COMPLETE" for e in done)
    order = sorted(range(LOW_EVENTS), key=lambda n: (done[n]["started"], n))
    assert order == list(range(LOW_EVENTS))  # first in, first out within one level
