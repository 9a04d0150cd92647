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
