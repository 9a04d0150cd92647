"""Converting a data directory written before the history log, when a worker starts.

The SQLite file is made the way the code before the log made it — the ``jobs`` table
with each job's history embedded in its document, no ``events`` table — by writing the
rows with sqlite3 directly. A worker starting on it (``Runtime.start_up``) moves every
history into the log; a crash half-way is finished by the next start, and two workers
starting at once convert each job once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.bus.stub import StubBus
from pipelinejobs.adapters.store.base import COLLECTIONS
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.adapters.store.sqlite_query import schema_statements
from pipelinejobs.domain import job_log
from pipelinejobs.errors import StoreUnavailable
from pipelinejobs.runtime.dispatch import Runtime
from tests.support import runtime_config

ALIASES = ["jobs-manager"]
DATE = "2026-01-01T00:00:00.000Z"
WALKS = {
    0: ["create"],
    1: ["create", "run", "finish", "index", "indexed"],
    2: ["create", "run", *["update"] * 30, "fail"],
    3: ["create", "finish", "retire"],
}


def old_data_dir(tmp_path: Path, rt_ids: Any) -> dict[str, list[dict[str, Any]]]:
    """Write old-shape jobs into ``tmp_path/data/pipelinejobs.sqlite3``; their
    embedded histories by job uuid."""
    path = tmp_path / "data" / "pipelinejobs.sqlite3"
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    for sql in schema_statements(COLLECTIONS["jobs"]):
        conn.execute(sql)
    pipeline = rt_ids.pipeline([{"id": "tacobot9000-0.1.0u1", "inputs": {}, "parameters": {}}])
    histories = {}
    for n, walk in WALKS.items():
        uuid = rt_ids.job(pipeline, [f"s.{n}"], {"n": n})
        history = [
            {
                "uuid": rt_ids.event(uuid, "create" if i == 0 else f"exec-{i}"),
                "name": name,
                "date": DATE,
                "data": {"i": i},
            }
            for i, name in enumerate(walk)
        ]
        state = {"create": "CREATED", "indexed": "FINISHED", "fail": "FAILED"}.get(walk[-1])
        doc = {
            "uuid": uuid,
            "pipeline_uuid": pipeline,
            "state": state or {"retire": "RETIRED"}[walk[-1]],
            "last_event": walk[-1],
            "created": DATE,
            "updated": DATE,
            "version": len(walk) - 1,
            "token_rotation": 0,
            "data": {"n": n},
            "child_of": [f"s.{n}"],
            "generated_by": [pipeline],
            "history": history,
        }
        conn.execute(
            'INSERT INTO jobs (k, version, doc, "f_state", "f_pipeline_uuid", "f_created", '
            '"f_updated") VALUES (?, ?, ?, ?, ?, ?, ?)',
            (uuid, doc["version"], json.dumps(doc), doc["state"], pipeline, DATE, DATE),
        )
        conn.execute('INSERT INTO "jobs__child_of" (v, k) VALUES (?, ?)', (f"s.{n}", uuid))
        histories[uuid] = history
    conn.commit()
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'events'").fetchone() is None
    conn.close()
    return histories


def runtime(tmp_path: Path) -> Runtime:
    """A runtime on the data directory's SQLite file, as ``pipelinejobs worker`` opens it."""
    rt = Runtime(runtime_config(tmp_path), bus=StubBus())
    assert isinstance(rt.store, SQLiteStore)
    return rt


def check_converted(rt: Runtime, histories: dict[str, list[dict[str, Any]]]) -> None:
    for uuid, history in histories.items():
        job = rt.jobs.get(uuid)
        assert "history" not in job
        assert job["event_count"] == len(history)
        assert job["version"] == len(history)  # the old writes plus the conversion's
        records = rt.store.find("events", {"job_uuid": uuid}, order="seq", limit=100).items
        assert [r["seq"] for r in records] == list(range(1, len(history) + 1))
        assert [r["uuid"] for r in records] == [h["uuid"] for h in history]
        assert job["last_entry"]["seq"] == len(history)
        assert rt.jobs.record(uuid)["history"] == history
    assert rt.store.count("events") == sum(len(h) for h in histories.values())


@pytest.fixture
def ids() -> Any:
    from pipelinejobs.domain.identifiers import Identifiers

    return Identifiers(runtime_config(Path("/nonexistent")).identifiers.namespace_domain)


def test_a_worker_starting_converts_every_job(tmp_path: Path, ids: Any) -> None:
    histories = old_data_dir(tmp_path, ids)
    rt = runtime(tmp_path)
    try:
        rt.start_up(ALIASES)
        check_converted(rt, histories)
        records = rt.store.find("events", {"job_uuid": list(histories)[1]}, order="seq").items
        assert [r["previous_state"] for r in records] == [
            None,
            "CREATED",
            "RUNNING",
            "FINISHED",
            "INDEXING",
        ]
        assert job_log.migration_done(rt.store)
        # The converted jobs take events as any other: seq goes on from the count.
        uuid = list(histories)[0]
        assert rt.jobs.apply(uuid, "run").job["event_count"] == 2
    finally:
        rt.close()


def test_a_later_start_skips_the_scan(tmp_path: Path, ids: Any, monkeypatch) -> None:
    old_data_dir(tmp_path, ids)
    rt = runtime(tmp_path)
    try:
        assert rt.migrate_history() == len(WALKS)

        def scanned(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("scanned again")

        monkeypatch.setattr(job_log, "legacy_jobs", scanned)
        assert rt.migrate_history() == 0
        rt.start_up(ALIASES)
    finally:
        rt.close()


def test_a_conversion_that_crashed_half_way_is_finished_by_the_next_start(
    tmp_path: Path, ids: Any, monkeypatch
) -> None:
    histories = old_data_dir(tmp_path, ids)
    rt = runtime(tmp_path)
    real_update = SQLiteStore.update
    calls = {"n": 0}

    def crash_on_the_third_job(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # its records are written, the job is not changed yet
            raise StoreUnavailable("the disk went away (simulated)")
        return real_update(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteStore, "update", crash_on_the_third_job)
    try:
        with pytest.raises(StoreUnavailable):
            rt.start_up(ALIASES)
        assert not job_log.migration_done(rt.store)
        converted = [u for u in histories if "history" not in rt.jobs.get(u)]
        assert len(converted) == 2
    finally:
        rt.close()
    monkeypatch.setattr(SQLiteStore, "update", real_update)
    again = runtime(tmp_path)
    try:
        assert again.migrate_history() == len(WALKS) - 2
        check_converted(again, histories)
    finally:
        again.close()


def test_two_workers_starting_at_once_convert_each_job_once(tmp_path: Path, ids: Any) -> None:
    histories = old_data_dir(tmp_path, ids)
    runtimes = [runtime(tmp_path) for _ in range(2)]
    counts: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def start(rt: Runtime) -> None:
        try:
            barrier.wait(10)
            counts.append(rt.migrate_history())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(rt,)) for rt in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert len(counts) == 2 and sum(counts) >= len(WALKS)
        check_converted(runtimes[0], histories)
    finally:
        for rt in runtimes:
            rt.close()


def test_a_job_that_cannot_be_converted_is_set_aside_and_the_others_are(
    tmp_path: Path, ids: Any
) -> None:
    histories = old_data_dir(tmp_path, ids)
    broken = list(histories)[2]
    conn = sqlite3.connect(tmp_path / "data" / "pipelinejobs.sqlite3")
    doc = json.loads(conn.execute("SELECT doc FROM jobs WHERE k = ?", (broken,)).fetchone()[0])
    doc["history"] = "not a list"
    conn.execute("UPDATE jobs SET doc = ? WHERE k = ?", (json.dumps(doc), broken))
    conn.commit()
    conn.close()
    rt = runtime(tmp_path)
    try:
        assert rt.migrate_history() == len(WALKS) - 1
        assert rt.store.get("jobs", broken) is None
        assert "not a list" in rt.store.get("quarantine", f"jobs/{broken}")["reason"]
        del histories[broken]
        check_converted(rt, histories)
    finally:
        rt.close()
