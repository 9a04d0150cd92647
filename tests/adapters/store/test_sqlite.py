"""What only the SQLite backend promises: WAL, durability across reopening, and a
compare-and-set that holds across threads and processes sharing the file."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.store.sqlite import SQLiteStore

JOBS = "jobs"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "s.sqlite3"


@pytest.fixture
def sqlite_store(path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path)
    yield store
    store.close()


def increment(store: SQLiteStore, times: int) -> None:
    """Add 1 to job j1's counter ``times`` times by compare-and-set, then close.
    Module level so a spawned process can import it."""
    for _ in range(times):
        while True:
            doc = store.get(JOBS, "j1")
            assert doc is not None
            if store.update(JOBS, "j1", version=doc["version"], set={"n": doc["n"] + 1}):
                break
    store.close()


def increment_at(path: Path, times: int) -> None:
    """``increment`` on a store of the process's own, opened on ``path``."""
    increment(SQLiteStore(path), times)


def run_processes(
    context: str, target: Callable[..., None], args_list: list[tuple[Any, ...]]
) -> None:
    """Run ``target(*args)`` in one process per args, join them, and require success."""
    ctx = multiprocessing.get_context(context)
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    for p in procs:
        if p.is_alive():  # pragma: no cover - only when the test is failing
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_the_file_is_in_wal_mode(sqlite_store: SQLiteStore, path: Path) -> None:
    sqlite_store.insert(JOBS, {"uuid": "j1"})
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_data_survives_closing_and_reopening(path: Path) -> None:
    first = SQLiteStore(path)
    first.insert(JOBS, {"uuid": "j1", "state": "CREATED", "child_of": ["p1"]})
    first.update(JOBS, "j1", version=0, set={"state": "RUNNING"})
    first.put_many("files", [{"uuid": "f1", "present": True}])
    first.close()
    second = SQLiteStore(path)
    try:
        assert second.get(JOBS, "j1") == {
            "uuid": "j1",
            "state": "RUNNING",
            "child_of": ["p1"],
            "version": 1,
        }
        assert [d["uuid"] for d in second.find(JOBS, {"child_of": "p1"}).items] == ["j1"]
        assert second.count("files", {"present": True}) == 1
    finally:
        second.close()


def test_a_new_thread_on_a_new_store_does_not_deadlock(path: Path) -> None:
    """The first operation creates the tables and opens the thread's connection; both
    take locks, and once they were the same one."""
    store = SQLiteStore(path)
    done = threading.Event()

    def first_use() -> None:
        store.insert(JOBS, {"uuid": "j1"})
        done.set()

    thread = threading.Thread(target=first_use, daemon=True)
    thread.start()
    thread.join(10)
    assert done.is_set(), "the first insert did not finish (deadlock?)"
    store.close()


def test_two_processes_compare_and_set_on_one_file(sqlite_store: SQLiteStore, path: Path) -> None:
    sqlite_store.insert(JOBS, {"uuid": "j1", "n": 0})
    run_processes("spawn", increment_at, [(path, 100), (path, 100)])
    final = sqlite_store.get(JOBS, "j1")
    assert final is not None
    assert (final["n"], final["version"]) == (200, 200)


def test_a_store_object_can_be_handed_to_a_spawned_process(sqlite_store: SQLiteStore) -> None:
    sqlite_store.insert(JOBS, {"uuid": "j1", "n": 0})
    run_processes("spawn", increment, [(sqlite_store, 30)])
    assert sqlite_store.get(JOBS, "j1") == {"uuid": "j1", "n": 30, "version": 30}


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform"
)
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_store_object_used_after_fork_makes_its_own_connection(
    sqlite_store: SQLiteStore,
) -> None:
    """The child opens its own connection and its close() leaves the parent's alone;
    the parent keeps working on its connection afterwards."""
    sqlite_store.insert(JOBS, {"uuid": "j1", "n": 0})  # the parent's connection is open
    run_processes("fork", increment, [(sqlite_store, 30), (sqlite_store, 30)])
    assert sqlite_store.get(JOBS, "j1") == {"uuid": "j1", "n": 60, "version": 60}
    assert sqlite_store.update(JOBS, "j1", version=60, set={"n": 61}) is not None


def test_concurrent_put_many_from_threads(sqlite_store: SQLiteStore, run_threads) -> None:
    """Overlapping batches from 6 threads: none fails, every key is written once per
    batch that held it."""

    def write(worker: int) -> None:
        for batch in range(5):
            docs = [
                {"uuid": f"f{i:03d}", "present": worker % 2 == 0, "path": f"/{worker}/{batch}"}
                for i in range(batch * 10, batch * 10 + 40)
            ]
            assert sqlite_store.put_many("files", docs) == 40

    run_threads(write, 6)
    assert sqlite_store.count("files") == 80
    versions = {d["uuid"]: d["version"] for d in sqlite_store.find("files", limit=100).items}
    writes = {f"f{i:03d}": 0 for i in range(80)}
    for batch in range(5):
        for i in range(batch * 10, batch * 10 + 40):
            writes[f"f{i:03d}"] += 6
    assert versions == {k: n - 1 for k, n in writes.items()}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_connections_of_ended_threads_are_closed(
    sqlite_store: SQLiteStore, path: Path, run_threads
) -> None:
    """A thread per request must not leave one open file per request behind."""

    def open_files() -> int:
        fds = Path("/proc/self/fd")
        targets = []
        for fd in fds.iterdir():
            try:
                targets.append(os.readlink(fd))
            except OSError:
                continue
        return targets.count(str(path))

    sqlite_store.insert(JOBS, {"uuid": "j1"})
    for _ in range(10):
        run_threads(lambda i: sqlite_store.get(JOBS, "j1"), 4)
    # 41 connections were opened. SQLite itself may hold a few closed ones' files a
    # while (so as not to drop another connection's locks), but not one per thread.
    assert open_files() < 20


def test_a_table_made_before_its_spec_gained_a_field_gets_the_column(path: Path) -> None:
    # An events table as it was before ``date`` was indexed: no f_date column.
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            'CREATE TABLE "events" (k TEXT PRIMARY KEY, version INTEGER NOT NULL, '
            'doc TEXT NOT NULL, "f_job_uuid", "f_seq")'
        )
        conn.executemany(
            'INSERT INTO "events" VALUES (?, 0, ?, ?, ?)',
            [
                (
                    "e1",
                    '{"uuid": "e1", "job_uuid": "j", "seq": 1, "date": "2026-01-01", "version": 0}',
                    "j",
                    1,
                ),
                (
                    "e2",
                    '{"uuid": "e2", "job_uuid": "j", "seq": 2, "date": "2026-02-01", "version": 0}',
                    "j",
                    2,
                ),
                ("e3", "not json", "j", 3),
            ],
        )
        conn.commit()
    store = SQLiteStore(path)
    try:
        from pipelinejobs.adapters.store.base import Range

        assert store.count("events", {"date": Range(gte="2026-01-15")}) == 1
        assert [e["uuid"] for e in store.find("events", order="date").items] == ["e1", "e2"]
        with closing(sqlite3.connect(path)) as conn:
            indexes = {row[1] for row in conn.execute("PRAGMA index_list('events')")}
        assert "events_date" in indexes
    finally:
        store.close()
    SQLiteStore(path).close()  # opening it again changes nothing


def test_a_page_filtered_on_several_values_is_merged_in_order(
    sqlite_store: SQLiteStore,
) -> None:
    from pipelinejobs.adapters.store.base import In

    states = ["CREATED", "RUNNING", "FAILED", None]
    docs = [
        {"uuid": f"j{i:02d}", "state": states[i % 4], "created": f"2026-01-{1 + i % 9:02d}"}
        for i in range(30)
    ]
    sqlite_store.put_many(JOBS, docs)
    wanted = In(["RUNNING", None, "CREATED", "RUNNING"])
    expected = sorted(
        (d for d in docs if d["state"] in ("RUNNING", None, "CREATED")),
        key=lambda d: (d["created"], d["uuid"]),
        reverse=True,
    )
    seen: list[str] = []
    after = None
    while True:
        page = sqlite_store.find(
            JOBS, {"state": wanted}, order="created", descending=True, limit=4, after=after
        )
        seen += [d["uuid"] for d in page.items]
        after = page.next
        if after is None:
            break
    assert seen == [d["uuid"] for d in expected]


@pytest.mark.parametrize("kib", [512, 64])
def test_each_connection_caches_at_most_the_configured_pages(tmp_path: Path, kib: int) -> None:
    """Connections are per thread: an unbounded-by-us cache per thread read as growth."""
    store = SQLiteStore(tmp_path / "s.sqlite3", cache_kib=kib)
    try:
        assert store._conn().execute("PRAGMA cache_size").fetchone()[0] == -kib
        copy = pickle.loads(pickle.dumps(store))  # a spawned process's copy keeps it
        try:
            assert copy._conn().execute("PRAGMA cache_size").fetchone()[0] == -kib
        finally:
            copy.close()
    finally:
        store.close()
