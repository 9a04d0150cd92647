"""Deadlines and heartbeats as indexed times: parsing, the times each event writes, the
overdue query and its keys — on the memory and SQLite stores alike."""

from __future__ import annotations

from typing import Any

import pytest

from pipelinejobs.adapters.store.base import Store
from pipelinejobs.domain import deadlines, retry
from pipelinejobs.domain.clock import iso
from pipelinejobs.domain.deadlines import Overdue, parse_duration
from pipelinejobs.domain.jobs import Jobs
from pipelinejobs.domain.pipelines import Pipelines
from pipelinejobs.errors import ValidationError
from tests.support import FakeClock

PIPELINE = {"name": "limits", "components": [{"repo": "sd2e/limits:0.1"}]}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(5, 5.0), (0.5, 0.5), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0),
     ("1d", 86400.0), ("00:30:00", 1800.0), ("1:00:05", 3605.0), (" 1.5m ", 90.0)],
)  # fmt: skip
def test_durations_are_seconds_or_strings(value: Any, seconds: float) -> None:
    assert parse_duration(value, "deadline") == seconds


@pytest.mark.parametrize("value", [-1, "-5s", "soon", "1w", True, None, "5 s s", "10001d",
                                   float("inf"), 10**9, "00:61:00"])  # fmt: skip
def test_bad_durations_are_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_duration(value, "heartbeat_timeout")
    assert refused.value.detail["path"] == "heartbeat_timeout"


@pytest.mark.parametrize("value", [0, 0.0, "0", "0s", "00:00:00", "0.0h"])
def test_zero_is_none_and_turns_off_a_pipelines_default(value: Any) -> None:
    assert parse_duration(value, "deadline") == 0.0
    assert deadlines.limits({"deadline": value}, {"deadline": 30}, 10) == {}
    assert deadlines.limits({}, {"deadline": value}, 10) == {}


def test_the_largest_duration_the_schema_can_write_is_accepted() -> None:
    for text in ("9999.999999d", "99999.999999h", "999999.999999m", "99999999.999999s",
                 "99999:59:59", 864000000):  # fmt: skip
        assert 0 < parse_duration(text, "deadline") <= deadlines.MAX_SECONDS


def test_the_launch_wins_over_the_pipeline_over_the_configured_default() -> None:
    assert deadlines.limits({"deadline": "1m"}, {"deadline": 30}, 10, 20) == {
        "deadline": 60.0,
        "heartbeat_timeout": 20.0,
    }
    assert deadlines.limits({}, {"heartbeat_timeout": 7}, 10) == {
        "deadline": 10.0,
        "heartbeat_timeout": 7.0,
    }
    assert deadlines.limits({}, {}) == {}


def test_keys_and_reasons_name_the_job_the_kind_and_the_time() -> None:
    late = Overdue("107-x", "deadline", "2026-01-01T00:30:00.000Z", 1800.0)
    assert late.reason == "deadline 00:30:00 passed"
    assert late.key == "reconciler:deadline:2026-01-01T00:30:00.000Z"
    silent = Overdue("107-x", "heartbeat", "2026-01-01T00:00:05.000Z", 5.0)
    assert silent.reason == "no heartbeat for 5 s (heartbeat_timeout)"
    assert silent.key != late.key
    assert silent.data()["overdue"] == {"kind": "heartbeat", "at": silent.at, "limit": 5.0}


def test_a_retry_policy_retries_a_reconciler_failure_only_when_on_names_it() -> None:
    data = Overdue("107-x", "deadline", "2026-01-01T00:30:00.000Z", 1800.0).data()
    assert not retry.matches({"limit": 3}, data)  # no ``on``: every failure but these
    assert not retry.matches({"limit": 3, "on": ["FAILED"]}, data)
    assert retry.matches({"limit": 3, "on": ["deadline"]}, data)
    assert not retry.matches({"limit": 3, "on": ["heartbeat"]}, data)
    assert retry.matches({"limit": 3}, {"reason": "exit 3"})  # others as before


# -- the times each event writes, and the overdue query, on each store ------------------------


@pytest.fixture
def jobs(any_store: Store, clock: FakeClock) -> Jobs:
    return Jobs(any_store, clock=clock)


def make(jobs: Jobs, n: int = 0, **limits: float) -> dict[str, Any]:
    pipeline = Pipelines(jobs.store, jobs.ids, clock=jobs.clock).create(PIPELINE).pipeline
    return jobs.create(
        pipeline_uuid=pipeline["uuid"], linkage=[f"sample.{n}"], data={"n": n}, fields=limits
    ).job


def overdue(jobs: Jobs) -> list[tuple[str, str]]:
    return [(o.uuid, o.kind) for o in deadlines.overdue(jobs.store, iso(jobs.clock()))]


def test_a_deadline_runs_from_creation_and_ends_with_the_compute(
    jobs: Jobs, clock: FakeClock
) -> None:
    job = make(jobs, deadline=60)
    assert job["deadline_at"] == iso(clock() + 60)
    assert "silent_at" not in job
    assert jobs.apply(job["uuid"], "run").job["deadline_at"] == job["deadline_at"]
    clock.advance(59)
    assert overdue(jobs) == []
    clock.advance(2)
    assert overdue(jobs) == [(job["uuid"], "deadline")]
    job = jobs.apply(job["uuid"], "finish").job
    assert job["deadline_at"] is None  # finished: not overdue, out of the index range
    assert overdue(jobs) == []


def test_every_event_while_running_is_a_heartbeat(jobs: Jobs, clock: FakeClock) -> None:
    job = make(jobs, heartbeat_timeout=5)
    assert job.get("silent_at") is None  # silence counts only while RUNNING
    clock.advance(100)
    assert overdue(jobs) == []
    job = jobs.apply(job["uuid"], "run").job
    assert job["silent_at"] == iso(clock() + 5)
    for event in ("update", "resource", "run"):
        clock.advance(4)
        job = jobs.apply(job["uuid"], event, {"status": "RUNNING"}).job
        assert job["silent_at"] == iso(clock() + 5)
        assert overdue(jobs) == []
    clock.advance(5.5)
    assert overdue(jobs) == [(job["uuid"], "heartbeat")]
    job = jobs.apply(job["uuid"], "fail").job
    assert job["silent_at"] is None and overdue(jobs) == []


def test_a_retried_attempt_gets_its_whole_deadline_again(jobs: Jobs, clock: FakeClock) -> None:
    job = make(jobs, deadline=60)
    clock.advance(61)
    job = jobs.apply(job["uuid"], "fail").job
    assert job["deadline_at"] is None
    jobs.apply(job["uuid"], "reset", allow_reserved=True)
    job = jobs.apply(job["uuid"], "ready", allow_reserved=True).job
    assert job["deadline_at"] == iso(clock() + 60)


def test_the_query_finds_each_overdue_job_once_oldest_first(jobs: Jobs, clock: FakeClock) -> None:
    late = make(jobs, 1, deadline=10)
    both = make(jobs, 2, deadline=20, heartbeat_timeout=1)
    jobs.apply(both["uuid"], "run")
    silent = make(jobs, 3, heartbeat_timeout=5)
    jobs.apply(silent["uuid"], "run")
    fine = make(jobs, 4, deadline=1000, heartbeat_timeout=1000)
    jobs.apply(fine["uuid"], "run")
    make(jobs, 5)  # no limits at all
    clock.advance(30)
    assert overdue(jobs) == [
        (late["uuid"], "deadline"),
        (both["uuid"], "deadline"),  # past both: listed once, for its deadline
        (silent["uuid"], "heartbeat"),
    ]


def test_still_overdue_is_decided_on_the_job_as_written_over(jobs: Jobs, clock: FakeClock) -> None:
    job = jobs.apply(make(jobs, heartbeat_timeout=5)["uuid"], "run").job
    clock.advance(6)
    [due] = deadlines.overdue(jobs.store, iso(clock()))
    assert deadlines.still_overdue(jobs.get(job["uuid"]), due.kind, due.at, iso(clock()))
    jobs.apply(job["uuid"], "update")  # a heartbeat lands before the fail is written
    assert not deadlines.still_overdue(jobs.get(job["uuid"]), due.kind, due.at, iso(clock()))
