"""MongoDB's log step (common/adapters/store/mongo_log.py) when a step fails, on mongomock.

Without multi-document transactions a job's compare-and-set and its record's insert
are two writes. The record is kept in the job's ``last_entry`` by the first, so a
lost second one is visible to readers at once (they merge it) and is put into the log
by the next writer (before its own compare-and-set) or reader — the roll-forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipelinejobs.adapters.store.base import LAST_RECORD
from pipelinejobs.adapters.store.mongo_log import MongoLogStore
from pipelinejobs.domain.identifiers import Identifiers
from pipelinejobs.domain.jobs import Jobs
from pipelinejobs.errors import StoreUnavailable
from tests.adapters.store.conftest import _let_mongomock_take_bulk_sort

mongomock = pytest.importorskip("mongomock")

IDS = Identifiers("test.pipelinejobs")
PIPELINE = IDS.pipeline([{"id": "tacobot9000-0.1.0u1", "inputs": {}, "parameters": {}}])


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Jobs]:
    from pipelinejobs.adapters.store.mongo import MongoStore

    _let_mongomock_take_bulk_sort(monkeypatch, mongomock)
    store = MongoStore(client=mongomock.MongoClient(), database="t")
    yield Jobs(store, IDS)
    store.close()


def new_job(jobs: Jobs) -> str:
    return str(jobs.create(pipeline_uuid=PIPELINE, linkage=["s.1"], data={}).job["uuid"])


def lose_next_insert(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the next insert into a log fail as if the server went away (once); the
    keys of the records whose insert was lost are collected in the list returned."""
    lost: list[str] = []
    original = MongoLogStore._append

    def flaky(log_coll: Any, key_field: str, entry: dict[str, Any]) -> None:
        if not lost:
            lost.append(entry[key_field])
            raise StoreUnavailable("connection reset (simulated)")
        original(log_coll, key_field, entry)

    monkeypatch.setattr(MongoLogStore, "_append", staticmethod(flaky))
    return lost


def in_log(jobs: Jobs, uuid: str) -> list[int]:
    """The seqs the log itself holds, without any merging."""
    found = jobs.store.find("events", {"job_uuid": uuid}, order="seq", limit=100).items
    return [r["seq"] for r in found]


def test_a_lost_insert_is_rolled_forward_by_the_next_writer(jobs, monkeypatch, caplog):
    uuid = new_job(jobs)
    lost = lose_next_insert(monkeypatch)
    result = jobs.apply(uuid, "run", {"n": 1})
    assert result.applied  # the compare-and-set committed it: the event happened
    assert lost == [result.entry["uuid"]]
    assert "kept in its last_entry" in caplog.text
    assert in_log(jobs, uuid) == [1]
    job = jobs.get(uuid)
    assert job[LAST_RECORD]["seq"] == 2 and job["event_count"] == 2

    jobs.apply(uuid, "update", {"n": 2})  # rolls seq 2 forward before its own CAS
    assert in_log(jobs, uuid) == [1, 2, 3]
    assert [h["data"] for h in jobs.history(uuid).entries] == [{}, {"n": 1}, {"n": 2}]


def test_readers_see_a_lost_insert_at_once_and_roll_it_forward(jobs, monkeypatch):
    uuid = new_job(jobs)
    lose_next_insert(monkeypatch)
    jobs.apply(uuid, "run", {"n": 1})
    assert in_log(jobs, uuid) == [1]
    page = jobs.history(uuid)  # merges last_entry, and inserts it
    assert [h["name"] for h in page.entries] == ["create", "run"]
    assert page.count == 2 and page.next is None
    assert in_log(jobs, uuid) == [1, 2]
    assert [h["name"] for h in jobs.record(uuid)["history"]] == ["create", "run"]


def test_a_page_that_ends_before_the_lost_record_does_not_merge_it(jobs, monkeypatch):
    uuid = new_job(jobs)
    jobs.apply(uuid, "run")
    lose_next_insert(monkeypatch)
    jobs.apply(uuid, "update", {"n": 3})
    first = jobs.history(uuid, after=0, limit=2)
    assert [h["name"] for h in first.entries] == ["create", "run"] and first.next == 2
    assert in_log(jobs, uuid) == [1, 2]
    rest = jobs.history(uuid, after=2, limit=2)
    assert [h["data"] for h in rest.entries] == [{"n": 3}] and rest.next is None


def test_a_redelivery_whose_first_record_is_only_in_last_entry_is_a_duplicate(jobs, monkeypatch):
    uuid = new_job(jobs)
    lose_next_insert(monkeypatch)
    first = jobs.apply(uuid, "finish", {"n": 1}, delivery_id="exec-1")
    again = jobs.apply(uuid, "finish", {"n": 1}, delivery_id="exec-1")
    assert first.applied and again.duplicate
    assert again.entry == first.entry and again.previous_state == "CREATED"
    assert jobs.get(uuid)["event_count"] == 2
    jobs.apply(uuid, "index")
    assert in_log(jobs, uuid) == [1, 2, 3]


def test_a_failed_compare_and_set_leaves_nothing_for_readers(jobs, monkeypatch):
    uuid = new_job(jobs)
    before = jobs.get(uuid)

    def down(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("primary stepped down (simulated)")

    monkeypatch.setattr(type(jobs.store), "_compare_and_set", down)
    with pytest.raises(StoreUnavailable):
        jobs.apply(uuid, "run", {"n": 1})
    monkeypatch.undo()
    assert jobs.get(uuid) == before
    assert in_log(jobs, uuid) == [1]
    assert [h["name"] for h in jobs.history(uuid).entries] == ["create"]


def test_a_lost_create_record_is_merged_and_rolled_forward(jobs, monkeypatch):
    lose_next_insert(monkeypatch)
    uuid = new_job(jobs)
    assert in_log(jobs, uuid) == []
    assert [h["name"] for h in jobs.record(uuid)["history"]] == ["create"]
    jobs.apply(uuid, "run")
    assert in_log(jobs, uuid) == [1, 2]
