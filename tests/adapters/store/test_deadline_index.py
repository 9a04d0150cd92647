"""The overdue query on every store backend (mongomock and MongoDB included): a range
of ``deadline_at`` / ``silent_at`` below now, oldest first, that leaves out the jobs
whose times were set to null (finished, failed) and those that never had one."""

from __future__ import annotations

from pipelinejobs.adapters.store.base import COLLECTIONS, Store
from pipelinejobs.domain import deadlines
from pipelinejobs.domain.clock import iso
from pipelinejobs.domain.jobs import Jobs
from pipelinejobs.domain.pipelines import Pipelines
from tests.support import FakeClock

PIPELINE = {"name": "limits", "components": [{"repo": "sd2e/limits:0.1"}]}


def test_both_times_are_indexed_fields_of_jobs() -> None:
    spec = COLLECTIONS["jobs"]
    assert {"deadline_at", "silent_at"} <= set(spec.single_indexes())


def test_the_overdue_query_is_the_same_on_every_backend(store: Store) -> None:
    clock = FakeClock()
    jobs = Jobs(store, clock=clock)
    pipeline = Pipelines(store, jobs.ids, clock=clock).create(PIPELINE).pipeline

    def make(n: int, **limits: float) -> str:
        job = jobs.create(
            pipeline_uuid=pipeline["uuid"], linkage=[f"s.{n}"], data={"n": n}, fields=limits
        ).job
        jobs.apply(job["uuid"], "run")
        clock.advance(1)  # distinct times: the order is observable
        return str(job["uuid"])

    first = make(1, deadline=10)
    second = make(2, deadline=10)
    silent = make(3, heartbeat_timeout=2)
    finished = make(4, deadline=5, heartbeat_timeout=1)
    jobs.apply(finished, "finish")  # both its times set to null
    make(5)  # no limits: no times at all
    make(6, deadline=1000, heartbeat_timeout=1000)
    clock.advance(20)
    found = deadlines.overdue(store, iso(clock()))
    assert [(o.uuid, o.kind) for o in found] == [
        (first, "deadline"),
        (second, "deadline"),
        (silent, "heartbeat"),
    ]
    assert found[0].at < found[1].at
    assert [o.uuid for o in deadlines.overdue(store, iso(clock()), limit=1)] == [first, silent]
