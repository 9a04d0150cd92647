"""A SQLite file made before a collection's array field became filterable (jobs'
``derived_from`` and ``acted_on``, for the lineage API): the side table is made and
filled from the documents when the store opens it, so old jobs are found too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipelinejobs.adapters.store.sqlite import SQLiteStore

JOB = {
    "uuid": "1071269f-b251-5a5f-bec1-6d7f77131f3f",
    "state": "CREATED",
    "child_of": ["sample.tacc.1"],
    "derived_from": [
        "1059a8c1-0000-5000-8000-000000000000",
        "1071269f-0000-5000-8000-000000000000",
    ],
    "acted_on": ["1059a8c1-0000-5000-8000-000000000001"],
}


def test_side_tables_added_since_are_filled_from_the_documents(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = SQLiteStore(path)
    store.insert("jobs", dict(JOB))
    store.insert("jobs", {"uuid": "1071269f-b251-5a5f-bec1-000000000000", "state": "CREATED"})
    store.close()
    # As the file was before: no side tables for the two fields.
    with sqlite3.connect(path) as conn:
        conn.execute('DROP TABLE "jobs__derived_from"')
        conn.execute('DROP TABLE "jobs__acted_on"')
    conn.close()
    reopened = SQLiteStore(path)
    try:
        for field, value in (
            ("derived_from", JOB["derived_from"][1]),
            ("acted_on", JOB["acted_on"][0]),
        ):
            found = reopened.find("jobs", {field: value}).items
            assert [doc["uuid"] for doc in found] == [JOB["uuid"]], field
        assert reopened.count("jobs", {"derived_from": None}) == 1  # the job without any
    finally:
        reopened.close()


def test_a_new_file_needs_no_filling(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "new.sqlite3")
    try:
        store.insert("jobs", dict(JOB))
        assert (
            store.find("jobs", {"derived_from": JOB["derived_from"][0]}).items[0]["uuid"]
            == (JOB["uuid"])
        )
    finally:
        store.close()


def tagged(n: int) -> dict[str, object]:
    return {
        "uuid": f"1071269f-b251-5a5f-bec1-{n:012d}",
        "state": "CREATED",
        "owner": "o1",
        "created": f"2026-01-01T00:00:{n:02d}.000Z",
        "tag_pairs": ["batch:b1", f"experiment:e{n % 2}"],
    }


def test_tag_side_tables_made_before_their_order_get_it_from_the_documents(
    tmp_path: Path,
) -> None:
    """A file whose ``jobs__tag_pairs`` holds (member, key) only, as before tags were
    indexed newest first: the ``created`` column is added and filled on opening."""
    path = tmp_path / "old.sqlite3"
    store = SQLiteStore(path)
    store.put_many("jobs", [tagged(n) for n in range(6)])
    store.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute('SELECT v, k FROM "jobs__tag_pairs"').fetchall()
        conn.execute('DROP TABLE "jobs__tag_pairs"')
        conn.execute(
            'CREATE TABLE "jobs__tag_pairs" (v TEXT NOT NULL, k TEXT NOT NULL, '
            "PRIMARY KEY (v, k)) WITHOUT ROWID"
        )
        conn.execute('CREATE INDEX "jobs__tag_pairs_k" ON "jobs__tag_pairs" (k)')
        conn.executemany('INSERT INTO "jobs__tag_pairs" VALUES (?, ?)', rows)
    conn.close()
    reopened = SQLiteStore(path)
    try:
        page = reopened.find("jobs", {"tag_pairs": "experiment:e1"}, order="created",
                             descending=True)  # fmt: skip
        assert [d["uuid"] for d in page.items] == [tagged(n)["uuid"] for n in (5, 3, 1)]
    finally:
        reopened.close()


def plan_of(store: SQLiteStore, where: dict[str, object]) -> str:
    """SQLite's plan of the page ``find`` reads for ``where``, newest first."""
    conn = store._conn()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        store.find("jobs", where, order="created", descending=True, limit=2)
    finally:
        conn.set_trace_callback(None)
    (select,) = [s for s in statements if s.startswith("SELECT")]
    return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + select))


def test_a_tag_page_is_a_range_of_the_tag_index_not_a_sort(tmp_path: Path) -> None:
    """``GET /jobs?tag=`` newest first reads the tag's index entries in order and
    stops at the page's end: no temporary B-tree sorting every job holding it. With an
    owner too, each entry's job is probed on the (owner, created) index by all three
    of owner, created and key: only the jobs that match are read."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    try:
        store.put_many("jobs", [tagged(n) for n in range(6)])
        plan = plan_of(store, {"tag_pairs": "batch:b1"})
        assert "jobs__tag_pairs_created" in plan and "TEMP B-TREE" not in plan, plan
        plan = plan_of(store, {"tag_pairs": "batch:b1", "owner": "o1"})
        assert "jobs__tag_pairs_created" in plan and "TEMP B-TREE" not in plan, plan
        assert "jobs_owner_created (f_owner=? AND f_created=? AND k=?)" in plan, plan
    finally:
        store.close()
