"""The jobs-indexer's progress on its execution: at most once per interval, with a
total once a listing is complete, the records counted already in the store, and
nothing written by a delivery that is no longer the one running.

Time is the runtime's clock (a FakeClock here), moved by a walk that "takes" a
given number of seconds per file: no test sleeps or measures time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.errors import ValidationError
from pipelinejobs.runtime.dispatch import Runtime
from pipelinejobs.runtime.executions import Executions
from tests.actors.jobs_support import make_job, run, token, write_files
from tests.support import FakeClock, make_runtime
from tests.support import stub as bus

INDEXER = "jobs-indexer"
TEN = {f"d{i % 3}/f{i}.txt": b"x" for i in range(10)}


@pytest.fixture(params=["memory", "sqlite"])
def clocked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Runtime, FakeClock]]:
    clock = FakeClock()
    rt = make_runtime(
        tmp_path, request.param, clock=clock, indexer={"batch_size": 1000, "progress_interval": 1}
    )
    yield rt, clock
    rt.close()


def slow_walk(
    rt: Runtime,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    seconds: float,
    before_first: Any = None,
    fail_after: int | None = None,
) -> None:
    """Make the walk take ``seconds`` per file (of the runtime's clock)."""
    walk = rt.storage.walk

    def walking(archive: str) -> Iterator[Any]:
        for n, entry in enumerate(walk(archive), 1):
            if n == 1 and before_first:
                before_first()
            if fail_after is not None and n > fail_after:
                raise ValidationError("the archive's disk went away")
            clock.advance(seconds)
            yield entry

    monkeypatch.setattr(rt.storage, "walk", walking)


def spy(rt: Runtime, monkeypatch: pytest.MonkeyPatch, job: dict) -> list[dict[str, Any]]:
    """Each progress written, with the file records in the store at that moment."""
    reports: list[dict[str, Any]] = []
    progress = Executions.progress

    def recording(self: Executions, execution_id: str, values: Any, *a: Any, **kw: Any) -> Any:
        stored = rt.store.count("files", {"job_uuid": job["uuid"]})
        reports.append({**values, "stored": stored})
        return progress(self, execution_id, values, *a, **kw)

    monkeypatch.setattr(Executions, "progress", recording)
    return reports


def index(rt: Runtime, job: dict) -> dict[str, Any]:
    execution = run(rt, INDEXER, {"uuid": job["uuid"], "token": token(rt, job)})
    assert execution["status"] == "COMPLETE", execution["error"]
    return execution


def test_progress_is_written_at_most_once_per_interval_and_at_the_end(
    clocked: tuple[Runtime, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, clock = clocked
    job = make_job(rt, state="FINISHED")
    write_files(rt, TEN)
    slow_walk(rt, clock, monkeypatch, 0.4)  # a write is due every third file
    reports = spy(rt, monkeypatch, job)

    execution = index(rt, job)

    assert [r["files_seen"] for r in reports] == [3, 6, 9, 10]
    # The batch so far is written before each report: "indexed" means in the store.
    assert all(r["files_indexed"] == r["stored"] for r in reports)
    assert [r["phase"] for r in reports] == ["indexing"] * 3 + ["done"]
    assert [r["elapsed"] for r in reports] == [1.2, 2.4, 3.6, 4.0]
    final = execution["progress"]
    assert (final["files_seen"], final["files_indexed"], final["files_total"]) == (10, 10, 10)
    assert final["files_vanished"] == 0 and final["attempt"] == 1
    assert final["updated"] <= execution["updated"]  # stamped when written


def test_a_fast_indexing_writes_its_progress_once(
    clocked: tuple[Runtime, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, clock = clocked
    job = make_job(rt, state="FINISHED")
    write_files(rt, TEN)
    reports = spy(rt, monkeypatch, job)
    index(rt, job)
    assert [(r["files_seen"], r["phase"]) for r in reports] == [(10, "done")]


def test_the_total_is_known_before_the_walk_ends(
    clocked: tuple[Runtime, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, clock = clocked
    job = make_job(rt, state="FINISHED")
    write_files(rt, TEN)
    counted = threading.Event()
    count_files = rt.storage.count_files

    def counting(archive: str, stop: Any) -> int | None:
        total = count_files(archive, stop)
        counted.set()
        return total

    monkeypatch.setattr(rt.storage, "count_files", counting)
    # The walk's first file waits for the count, as a slow walk of a big tree would.
    slow_walk(rt, clock, monkeypatch, 0.4, before_first=lambda: counted.wait(10))
    reports = spy(rt, monkeypatch, job)

    index(rt, job)

    assert [(r["files_seen"], r["files_total"]) for r in reports] == [
        (3, 10),
        (6, 10),
        (9, 10),
        (10, 10),
    ]


def test_without_a_count_the_total_comes_with_the_end_of_the_walk(
    clocked: tuple[Runtime, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, clock = clocked
    job = make_job(rt, state="FINISHED")
    write_files(rt, TEN)

    def broken(archive: str, stop: Any) -> int:
        raise PermissionError("cannot list")

    monkeypatch.setattr(rt.storage, "count_files", broken)
    slow_walk(rt, clock, monkeypatch, 0.4)
    reports = spy(rt, monkeypatch, job)

    index(rt, job)

    assert [r["files_total"] for r in reports] == [None, None, None, 10]


def test_the_count_stops_when_the_walk_fails(
    clocked: tuple[Runtime, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, clock = clocked
    job = make_job(rt, state="FINISHED")
    write_files(rt, TEN)
    stopped = threading.Event()

    def endless(archive: str, stop: Any) -> None:
        while not stop():
            threading.Event().wait(0.005)
        stopped.set()

    monkeypatch.setattr(rt.storage, "count_files", endless)
    slow_walk(rt, clock, monkeypatch, 0.4, fail_after=2)

    execution = run(rt, INDEXER, {"uuid": job["uuid"], "token": token(rt, job)})

    assert execution["status"] == "ERROR"
    assert stopped.is_set()
    assert not [t for t in threading.enumerate() if t.name == "pipelinejobs-indexer-count"]


def test_a_redelivery_counts_afresh_and_the_earlier_delivery_cannot_write(
    clocked: tuple[Runtime, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, clock = clocked
    job = make_job(rt, state="FINISHED")
    write_files(rt, TEN)
    execution = rt.submit(INDEXER, {"uuid": job["uuid"], "token": token(rt, job)})
    # A first delivery got this far, then its worker was lost (still RUNNING).
    rt.executions.start(execution["id"])
    rt.executions.progress(execution["id"], {"files_seen": 7, "files_indexed": 7}, attempt=1)
    late: list[dict[str, Any]] = []

    def the_lost_worker_writes_again() -> None:
        doc = rt.executions.progress(execution["id"], {"files_seen": 8}, attempt=1)
        late.append(doc["progress"])

    slow_walk(rt, clock, monkeypatch, 0.4, before_first=the_lost_worker_writes_again)

    done = rt.deliver(INDEXER, execution["id"])  # the redelivery: attempt 2
    bus(rt).join()  # the queued message: a redelivery of a finished execution, skipped

    assert late == [
        {"files_seen": 7, "files_indexed": 7, "attempt": 1, "updated": late[0]["updated"]}
    ]
    final = rt.executions.get(execution["id"])
    assert done is not None and final["status"] == "COMPLETE" and final["attempts"] == 2
    progress = final["progress"]
    assert (progress["files_seen"], progress["files_total"], progress["attempt"]) == (10, 10, 2)
