"""The quick recovery paths: executions lost in flight (found after bus.lost_after s
when no worker holds their message) and a broker that lost its queues (everything
SUBMITTED from before the loss, at once). The backstop sweep is in test_dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.jobs_support import make_job, token
from tests.support import FakeClock, make_runtime
from tests.support import stub as bus

MANAGER = "jobs-manager"


@pytest.fixture(params=["memory", "sqlite"])
def rt(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock):
    runtime = make_runtime(
        tmp_path, request.param, clock, bus={"lost_after": 5.0, "recover_after": 60.0}
    )
    yield runtime
    runtime.close()


def lost(rt: Runtime, count: int) -> list[str]:
    """Executions stored and published, whose messages the broker then lost."""
    job = make_job(rt)
    ids = [
        rt.submit(
            MANAGER, {"uuid": job["uuid"], "name": "update", "token": token(rt, job), "data": {}}
        )["id"]
        for _ in range(count)
    ]
    bus(rt).queue.clear()
    bus(rt).published.clear()
    return ids


def test_the_quick_sweep_takes_what_no_worker_holds_after_seconds(rt: Runtime, clock):
    ids = lost(rt, 3)
    clock.advance(4)
    assert rt.recovery.quick_sweep([MANAGER]) == []  # younger than lost_after
    clock.advance(2)
    assert sorted(rt.recovery.quick_sweep([MANAGER])) == sorted(ids)
    assert sorted(e for _, e in bus(rt).published) == sorted(ids)
    assert rt.recovery.quick_sweep([MANAGER]) == []  # claimed: not again so soon
    bus(rt).join()
    assert {rt.executions.get(e)["status"] for e in ids} == {"COMPLETE"}


def test_the_quick_sweep_leaves_what_a_worker_holds(rt: Runtime, clock, monkeypatch):
    held, free = lost(rt, 2)
    clock.advance(6)
    monkeypatch.setattr(bus(rt), "held", lambda: {held})  # reserved or delayed by a worker
    assert rt.recovery.quick_sweep([MANAGER]) == [free]


def test_the_quick_sweep_needs_a_broker_that_says_what_workers_hold(rt, clock, monkeypatch):
    lost(rt, 1)
    clock.advance(6)
    monkeypatch.setattr(bus(rt), "held", lambda: None)  # RabbitMQ, in-process
    assert rt.recovery.quick_sweep([MANAGER]) == []
    clock.advance(60)
    assert len(rt.recovery.sweep([MANAGER])) == 1  # the backstop still finds it


def test_the_quick_sweep_skips_an_actor_whose_queue_holds_messages(rt: Runtime, clock):
    lost(rt, 1)
    clock.advance(6)
    bus(rt).publish(MANAGER, "ZZZZZZZZZZZZZ")  # something waits: maybe ours too
    assert rt.recovery.quick_sweep([MANAGER]) == []


def test_after_a_loss_everything_submitted_before_it_is_republished(rt: Runtime, clock):
    before = lost(rt, 3)
    clock.advance(10)
    since = clock()  # the broker restarted empty here
    clock.advance(5)
    after = lost(rt, 1)  # published after the restart, and waiting in its queue
    bus(rt).publish(MANAGER, after[0])
    found = rt.recovery.after_loss([MANAGER], since)
    assert sorted(found) == sorted(before)  # whatever the queue holds now, at once
    bus(rt).join()
    assert {rt.executions.get(e)["status"] for e in before + after} == {"COMPLETE"}


def test_after_a_loss_a_retry_waiting_its_back_off_is_left_alone(rt: Runtime, clock):
    (waiting,) = lost(rt, 1)
    rt.executions.requeue(waiting, "store unavailable", delay=120)
    clock.advance(10)
    assert rt.recovery.after_loss([MANAGER], clock()) == []
