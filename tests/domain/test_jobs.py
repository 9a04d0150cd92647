"""Creating jobs and applying events: history, refusals, duplicates, concurrency."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.domain import validation
from pipelinejobs.domain.identifiers import Identifiers, uuid_type
from pipelinejobs.domain.jobs import Jobs
from pipelinejobs.errors import (
    NotFound,
    PermissionDenied,
    TransitionRefused,
    UnknownIdentifierType,
    ValidationError,
)

IDS = Identifiers("test.pipelinejobs")
PIPELINE = IDS.pipeline([{"id": "tacobot9000-0.1.0u1", "inputs": {}, "parameters": {}}])


def new_job(jobs: Jobs, data: dict | None = None) -> dict:
    result = jobs.create(
        pipeline_uuid=PIPELINE, linkage=["sample.tacc.abcde"], data=data or {"n": 1}
    )
    assert result.created
    return result.job


def history(jobs: Jobs, uuid: str) -> list[dict]:
    return jobs.history(uuid).entries


def test_create_records_the_create_event(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    job = new_job(jobs)
    assert uuid_type(job["uuid"]) == "pipelinejob"
    assert job["state"] == "CREATED" and job["last_event"] == "create"
    assert job["version"] == 0 and job["event_count"] == 1
    assert "history" not in job
    entries = history(jobs, job["uuid"])
    assert [h["name"] for h in entries] == ["create"]
    assert uuid_type(entries[0]["uuid"]) == "pipelinejob_event"
    assert entries[0]["data"] == {"n": 1}
    assert job["child_of"] == ["sample.tacc.abcde"]
    validation.validate("pipelinejob", job)
    (record,) = any_store.find("events", {"job_uuid": job["uuid"]}).items
    assert record["seq"] == 1 and record["previous_state"] is None
    assert job["last_entry"] == record
    validation.validate("pipelinejob_event_record", record)
    validation.validate("pipelinejob_record", jobs.record(job["uuid"]))


def test_the_same_job_submitted_twice_is_one_record(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    first = new_job(jobs)
    again = jobs.create(pipeline_uuid=PIPELINE, linkage=["sample.tacc.abcde"], data={"n": 1})
    assert not again.created
    assert again.job["uuid"] == first["uuid"]
    assert any_store.count("jobs") == 1
    other = jobs.create(pipeline_uuid=PIPELINE, linkage=["sample.tacc.abcde"], data={"n": 2})
    assert other.created and other.job["uuid"] != first["uuid"]


def test_a_walk_through_the_lifecycle_keeps_full_history(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    job = new_job(jobs)
    walk = [
        "run",
        "update",
        "finish",
        "resource",
        "index",
        "indexed",
        "validate",
        "validated",
        "finalize",
        "retire",
    ]
    for i, event in enumerate(walk):
        clock.advance(1)
        result = jobs.apply(job["uuid"], event, {"step": i})
        assert result.applied and not result.duplicate
    job = jobs.get(job["uuid"])
    entries = history(jobs, job["uuid"])
    assert job["state"] == "RETIRED" and job["last_event"] == "retire"
    assert [h["name"] for h in entries] == ["create", *walk]
    assert [h["data"] for h in entries[1:]] == [{"step": i} for i in range(len(walk))]
    assert job["version"] == len(walk) and job["event_count"] == len(walk) + 1
    assert job["updated"] == entries[-1]["date"] > job["created"]
    assert len({h["uuid"] for h in entries}) == len(walk) + 1
    validation.validate("pipelinejob", job)
    records = any_store.find("events", {"job_uuid": job["uuid"]}, order="seq").items
    assert [r["seq"] for r in records] == list(range(1, len(walk) + 2))
    states = ["CREATED", "RUNNING", "RUNNING", "FINISHED", "FINISHED", "INDEXING"]
    states += ["FINISHED", "VALIDATING", "VALIDATED", "FINALIZED"]
    assert [r["previous_state"] for r in records] == [None, *states]
    for record in records:
        validation.validate("pipelinejob_event_record", record)
    validation.validate("pipelinejob_record", jobs.record(job["uuid"]))


@pytest.mark.parametrize(("setup", "event", "state"), [
    ([], "index", "CREATED"),
    (["run", "fail"], "finish", "FAILED"),
    (["finish", "retire"], "update", "RETIRED"),
    (["run"], "ready", "RUNNING"),
])  # fmt: skip
def test_a_refused_event_changes_nothing(any_store, clock, setup, event, state):
    jobs = Jobs(any_store, IDS, clock=clock)
    job = new_job(jobs)
    for name in setup:
        jobs.apply(job["uuid"], name)
    before = jobs.get(job["uuid"])
    with pytest.raises(TransitionRefused) as info:
        jobs.apply(job["uuid"], event, {"x": 1})
    assert info.value.state == state and info.value.event == event
    assert info.value.detail["uuid"] == job["uuid"]
    assert jobs.get(job["uuid"]) == before


def test_create_is_reserved(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    job = new_job(jobs)
    with pytest.raises(TransitionRefused, match="reserved"):
        jobs.apply(job["uuid"], "create")
    assert jobs.get(job["uuid"])["version"] == 0


def test_bad_input_is_refused_before_anything_is_written(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    job = new_job(jobs)
    with pytest.raises(ValidationError) as info:
        jobs.apply(job["uuid"], "run", data=["not", "an", "object"])  # type: ignore[arg-type]
    assert info.value.detail["path"] == "data"
    with pytest.raises(ValidationError, match="explode"):
        jobs.apply(job["uuid"], "explode")
    with pytest.raises(UnknownIdentifierType, match="expected a pipelinejob"):
        jobs.apply(PIPELINE, "run")
    with pytest.raises(NotFound):
        jobs.apply(IDS.typed("nobody", "pipelinejob"), "run")
    assert jobs.get(job["uuid"])["version"] == 0


def test_check_hook_sees_the_job_and_can_refuse(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    job = new_job(jobs)
    seen = []

    def refuse(doc):
        seen.append(doc["state"])
        raise PermissionDenied("no")

    with pytest.raises(PermissionDenied):
        jobs.apply(job["uuid"], "run", check=refuse)
    assert seen == ["CREATED"]
    assert jobs.get(job["uuid"])["version"] == 0


def test_the_same_delivery_applied_twice_is_one_history_entry(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    job = new_job(jobs)
    first = jobs.apply(job["uuid"], "update", {"a": 1}, delivery_id="exec-1")
    second = jobs.apply(job["uuid"], "update", {"a": 1}, delivery_id="exec-1")
    assert first.applied and second.duplicate
    assert second.entry == first.entry
    stored = jobs.get(job["uuid"])
    assert [h["name"] for h in history(jobs, job["uuid"])] == ["create", "update"]
    assert stored["version"] == 1 and stored["event_count"] == 2
    assert any_store.count("events", {"job_uuid": job["uuid"]}) == 2
    # A duplicate is recognised even after the state moved on and would now refuse it,
    # and reports the state its first delivery was applied to (from its record).
    jobs.apply(job["uuid"], "finish", delivery_id="exec-2")
    jobs.apply(job["uuid"], "retire", delivery_id="exec-3")
    again = jobs.apply(job["uuid"], "finish", delivery_id="exec-2")
    assert again.duplicate and again.previous_state == "CREATED"
    assert again.job["state"] == "RETIRED"
    assert any_store.count("events", {"job_uuid": job["uuid"]}) == 4
    # Another delivery id is a new event.
    with pytest.raises(TransitionRefused):
        jobs.apply(job["uuid"], "finish", delivery_id="exec-4")


def _hammer(jobs: Jobs, uuid: str, worker: int, count: int, errors: list) -> None:
    try:
        for i in range(count):
            jobs.apply(uuid, "update", {"worker": worker, "i": i})
    except Exception as exc:  # surfaced in the test thread below
        errors.append(exc)


def log_of(store, uuid: str) -> list[dict]:
    """Every record of job ``uuid``'s log, straight from the store, by seq."""
    return store.find("events", {"job_uuid": uuid}, order="seq", limit=10_000).items


def test_8_threads_x_50_updates_lose_nothing(any_store):
    jobs = Jobs(any_store, IDS)
    job = new_job(jobs)
    errors: list = []
    threads = [
        threading.Thread(target=_hammer, args=(jobs, job["uuid"], w, 50, errors)) for w in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    stored = jobs.get(job["uuid"])
    assert stored["version"] == 400 and stored["event_count"] == 401
    records = log_of(any_store, job["uuid"])
    # create is seq 1; the 400 updates are 2..401, without a gap or a repeat.
    assert [r["seq"] for r in records] == list(range(1, 402))
    updates = [r for r in records if r["name"] == "update"]
    assert len(updates) == 400
    assert {(r["data"]["worker"], r["data"]["i"]) for r in updates} == {
        (w, i) for w in range(8) for i in range(50)
    }
    # Each worker's own events are in the order it sent them.
    for w in range(8):
        assert [r["data"]["i"] for r in updates if r["data"]["worker"] == w] == list(range(50))
    assert stored["last_entry"] == records[-1]
    assert history(jobs, job["uuid"]) == [
        {k: r[k] for k in ("uuid", "name", "date", "data")} for r in records
    ]


def _process_worker(path: str, uuid: str, worker: int, count: int, failures) -> None:
    store = SQLiteStore(path)
    errors: list = []
    _hammer(Jobs(store, IDS), uuid, worker, count, errors)
    store.close()
    if errors:
        failures.put(repr(errors[0]))


def test_2_processes_x_100_updates_lose_nothing(tmp_path: Path):
    path = str(tmp_path / "procs.sqlite3")
    store = SQLiteStore(path)
    try:
        job = new_job(Jobs(store, IDS))
        ctx = multiprocessing.get_context("spawn")
        failures = ctx.Queue()
        procs = [
            ctx.Process(target=_process_worker, args=(path, job["uuid"], w, 100, failures))
            for w in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0, 0]
        assert failures.empty()
        stored = Jobs(store, IDS).get(job["uuid"])
        assert [r["seq"] for r in log_of(store, job["uuid"])] == list(range(1, 202))
        assert stored["version"] == 200 and stored["event_count"] == 201
    finally:
        store.close()


def test_concurrent_duplicate_deliveries_apply_once(any_store):
    jobs = Jobs(any_store, IDS)
    job = new_job(jobs)
    results: list = []
    barrier = threading.Barrier(6)

    def deliver():
        barrier.wait()
        results.append(jobs.apply(job["uuid"], "run", {"r": 1}, delivery_id="same"))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(r.applied for r in results) == 1
    assert len(results) == 6
    assert {r.previous_state for r in results} == {"CREATED"}
    assert len({r.entry["uuid"] for r in results}) == 1
    assert [h["name"] for h in history(jobs, job["uuid"])] == ["create", "run"]
    assert [r["seq"] for r in log_of(any_store, job["uuid"])] == [1, 2]
    assert jobs.get(job["uuid"])["version"] == 1
