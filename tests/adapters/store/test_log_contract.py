"""The Store contract for logs (``advance``, ``insert`` with a record) and ``unset``,
checked on every backend through the ``store`` fixture (conftest.py).

A job's history is a log beside it: ``advance`` compare-and-sets the job and appends
one record as one step, refusing a record whose key is taken; the job keeps the
newest record as ``last_entry``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipelinejobs.adapters.store.base import LAST_RECORD, Range, Store
from pipelinejobs.errors import DuplicateDocument, NotFound, StoreError

JOBS, EVENTS = "jobs", "events"


def record(job: str, seq: int, uuid: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "uuid": uuid or f"{job}-e{seq}",
        "job_uuid": job,
        "seq": seq,
        "name": "update",
        **fields,
    }


def log(store: Store, job: str) -> list[dict[str, Any]]:
    return store.find(EVENTS, {"job_uuid": job}, order="seq", limit=1000).items


def test_insert_with_a_record_starts_the_log(store: Store) -> None:
    first = record("j1", 1, name="create")
    doc = store.insert(JOBS, {"uuid": "j1", "state": "CREATED"}, record=(EVENTS, first))
    assert doc == {
        "uuid": "j1",
        "state": "CREATED",
        "version": 0,
        LAST_RECORD: {**first, "version": 0},
    }
    assert store.get(JOBS, "j1") == doc
    assert log(store, "j1") == [{**first, "version": 0}]


def test_insert_with_a_taken_key_writes_neither(store: Store) -> None:
    store.insert(JOBS, {"uuid": "j1"}, record=(EVENTS, record("j1", 1)))
    with pytest.raises(DuplicateDocument):
        store.insert(JOBS, {"uuid": "j1"}, record=(EVENTS, record("j1", 1, "other")))
    with pytest.raises(DuplicateDocument):  # the job is new, its record's key is not
        store.insert(JOBS, {"uuid": "j2"}, record=(EVENTS, record("j2", 1, "j1-e1")))
    assert store.get(JOBS, "j2") is None
    assert store.count(EVENTS) == 1


def test_advance_sets_fields_appends_the_record_and_bumps_the_version(store: Store) -> None:
    store.insert(JOBS, {"uuid": "j1", "state": "CREATED", "n": 1}, record=(EVENTS, record("j1", 1)))
    second = record("j1", 2, data={"x": [1, {"y": None}]})
    new = store.advance(
        JOBS, "j1", version=0, set={"state": "RUNNING", "n": 2}, record=(EVENTS, second)
    )
    assert new == {
        "uuid": "j1",
        "state": "RUNNING",
        "n": 2,
        "version": 1,
        LAST_RECORD: {**second, "version": 0},
    }
    assert store.get(JOBS, "j1") == new
    assert [r["seq"] for r in log(store, "j1")] == [1, 2]
    assert store.get(EVENTS, "j1-e2") == {**second, "version": 0}
    assert store.count(JOBS, {"state": "RUNNING"}) == 1  # indexed columns follow


def test_advance_sets_an_indexed_array_and_its_members_follow(store: Store) -> None:
    """A job's ``tag_pairs`` change with the tag event that records it (issue 15)."""
    first = {"uuid": "j1", "tag_pairs": ["a:1", "b:2"], "child_of": ["s1"]}
    store.insert(JOBS, first, record=(EVENTS, record("j1", 1)))
    store.insert(JOBS, {"uuid": "j2", "tag_pairs": ["a:1"]}, record=(EVENTS, record("j2", 1)))

    new = store.advance(
        JOBS, "j1", version=0, set={"tag_pairs": ["b:2", "c:3"]}, record=(EVENTS, record("j1", 2))
    )

    assert new is not None and new["tag_pairs"] == ["b:2", "c:3"]
    assert keys(store.find(JOBS, {"tag_pairs": "a:1"}).items) == ["j2"]
    assert keys(store.find(JOBS, {"tag_pairs": "c:3"}).items) == ["j1"]
    assert store.count(JOBS, {"child_of": "s1"}) == 1  # the other arrays untouched
    stale = store.advance(
        JOBS, "j1", version=0, set={"tag_pairs": []}, record=(EVENTS, record("j1", 3))
    )
    assert stale is None and store.count(JOBS, {"tag_pairs": "c:3"}) == 1
    store.advance(JOBS, "j1", version=1, set={"tag_pairs": []}, record=(EVENTS, record("j1", 3)))
    assert store.count(JOBS, {"tag_pairs": "b:2"}) == 0
    assert keys(store.find(JOBS, {"tag_pairs": None}).items) == ["j1"]


def keys(items: list[dict[str, Any]]) -> list[str]:
    return sorted(str(item["uuid"]) for item in items)


def test_advance_with_a_stale_version_writes_nothing(store: Store) -> None:
    store.insert(JOBS, {"uuid": "j1", "state": "CREATED"}, record=(EVENTS, record("j1", 1)))
    before = store.get(JOBS, "j1")
    assert (
        store.advance(JOBS, "j1", version=5, set={"state": "X"}, record=(EVENTS, record("j1", 2)))
        is None
    )
    assert store.get(JOBS, "j1") == before
    assert store.get(EVENTS, "j1-e2") is None


def test_advance_with_a_taken_record_key_writes_nothing(store: Store) -> None:
    store.insert(JOBS, {"uuid": "j1", "state": "CREATED"}, record=(EVENTS, record("j1", 1)))
    store.advance(JOBS, "j1", version=0, set={"state": "A"}, record=(EVENTS, record("j1", 2)))
    before = store.get(JOBS, "j1")
    for taken in ("j1-e2", "j1-e1"):  # the newest (its last_entry) and an older one
        with pytest.raises(DuplicateDocument):
            store.advance(
                JOBS, "j1", version=1, set={"state": "B"}, record=(EVENTS, record("j1", 3, taken))
            )
    assert store.get(JOBS, "j1") == before
    assert [r["seq"] for r in log(store, "j1")] == [1, 2]


def test_advance_of_a_missing_document_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.advance(JOBS, "nobody", version=0, set={}, record=(EVENTS, record("nobody", 1)))
    assert store.count(EVENTS) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.advance(
            JOBS, "j1", version=0, set={"uuid": "j2"}, record=(EVENTS, record("j1", 2))
        ),
        lambda s: s.advance(
            JOBS, "j1", version=0, set={"version": 9}, record=(EVENTS, record("j1", 2))
        ),
        lambda s: s.advance(
            JOBS, "j1", version=0, set={LAST_RECORD: {}}, record=(EVENTS, record("j1", 2))
        ),
        lambda s: s.advance(JOBS, "j1", version=0, set={}, record=(JOBS, {"uuid": "j9"})),
        lambda s: s.advance(JOBS, "j1", version=0, set={}, record=(EVENTS, {"seq": 2})),
        lambda s: s.advance(JOBS, "j1", version=0, set={}, record=("nope", {"uuid": "x"})),
    ],
    ids=["key", "version", "last_entry", "own-log", "keyless", "unknown"],
)
def test_advance_refuses_what_is_the_stores(store: Store, call: Callable[[Store], Any]) -> None:
    store.insert(JOBS, {"uuid": "j1"}, record=(EVENTS, record("j1", 1)))
    with pytest.raises(StoreError):
        call(store)
    assert store.get(JOBS, "j1")["version"] == 0
    assert store.count(EVENTS) == 1


def test_a_log_is_paged_by_parent_and_sequence(store: Store) -> None:
    for job in ("a", "b"):
        store.insert(JOBS, {"uuid": job}, record=(EVENTS, record(job, 1)))
        for seq in range(2, 8):
            store.advance(JOBS, job, version=seq - 2, set={}, record=(EVENTS, record(job, seq)))
    page = store.find(EVENTS, {"job_uuid": "a", "seq": Range(gte=3, lt=6)}, order="seq", limit=10)
    assert [(r["job_uuid"], r["seq"]) for r in page.items] == [("a", 3), ("a", 4), ("a", 5)]
    assert store.count(EVENTS, {"job_uuid": "b"}) == 7


def test_update_can_remove_fields(store: Store) -> None:
    store.insert(JOBS, {"uuid": "j1", "state": "CREATED", "history": [1, 2], "keep": True})
    new = store.update(JOBS, "j1", version=0, set={"n": 2}, unset=["history", "state", "absent"])
    assert new == {"uuid": "j1", "keep": True, "n": 2, "version": 1}
    assert store.get(JOBS, "j1") == new
    assert store.count(JOBS, {"state": None}) == 1  # its indexed column is cleared
    assert store.update(JOBS, "j1", version=0, unset=["keep"]) is None


@pytest.mark.parametrize(
    "unset", [["uuid"], ["version"], ["n"]], ids=["key", "version", "set-and-unset"]
)
def test_update_cannot_remove_the_key_the_version_or_what_it_sets(
    store: Store, unset: list[str]
) -> None:
    store.insert(JOBS, {"uuid": "j1", "n": 1})
    with pytest.raises(StoreError):
        store.update(JOBS, "j1", version=0, set={"n": 2}, unset=unset)
    assert store.get(JOBS, "j1") == {"uuid": "j1", "n": 1, "version": 0}


def test_removing_an_array_field_clears_its_members(store: Store) -> None:
    store.insert(JOBS, {"uuid": "j1", "child_of": ["p1"]})
    assert store.update(JOBS, "j1", version=0, unset=["child_of"]) is not None
    assert store.find(JOBS, {"child_of": "p1"}).items == []
    assert [d["uuid"] for d in store.find(JOBS, {"child_of": None}).items] == ["j1"]


def test_concurrent_advances_append_every_record_once_in_order(
    threaded_store: Store, run_threads
) -> None:
    store = threaded_store
    store.insert(JOBS, {"uuid": "j1", "count": 1}, record=(EVENTS, record("j1", 1)))

    def work(worker: int) -> None:
        for i in range(25):
            while True:
                doc = store.get(JOBS, "j1")
                assert doc is not None
                seq = doc["count"] + 1
                mine = record("j1", seq, f"w{worker}-{i}")
                if store.advance(
                    JOBS, "j1", version=doc["version"], set={"count": seq}, record=(EVENTS, mine)
                ):
                    break

    run_threads(work, 4)
    records = log(store, "j1")
    assert [r["seq"] for r in records] == list(range(1, 102))
    assert store.get(JOBS, "j1")["version"] == 100
    assert {r["uuid"] for r in records[1:]} == {f"w{w}-{i}" for w in range(4) for i in range(25)}
