"""The compare-and-set helper (common/adapters/store/cas.py), part of the store contract.

Every read-modify-write of the system goes through ``compare_and_set``, so what it
promises is checked here on every backend through the same ``store`` fixture as
test_contract.py (kept in its own module: that one is long enough): changes are never
lost under threads, a refusal or ``None`` writes nothing, and running out of the budget
is TooManyConflicts with ``retry_after``. Threaded tests skip mongomock (not atomic
across threads) and say so; MongoDB runs when ``MONGODB_URI`` names a server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.adapters.store.cas import RETRY_AFTER, Change, compare_and_set
from pipelinejobs.errors import Conflict, NotFound, TooManyConflicts

JOBS = "jobs"
THREADS, CHANGES = 8, 50


def bump(worker: int, i: int) -> Callable[[Document], Change]:
    """One read-modify-write: the counter from the version read, one item appended."""
    return lambda doc: Change(set={"counter": doc["counter"] + 1}, push={"seen": [f"{worker}-{i}"]})


def test_threads_changing_one_document_lose_nothing(
    threaded_store: Store, run_threads: Callable[..., None]
) -> None:
    """N threads × M changes through compare_and_set: exactly N×M applied, each once."""
    store = threaded_store
    store.insert(JOBS, {"uuid": "j1", "counter": 0, "seen": []})

    def work(worker: int) -> None:
        for i in range(CHANGES):
            compare_and_set(store, JOBS, "j1", bump(worker, i))

    run_threads(work, THREADS)

    final = store.get(JOBS, "j1")
    assert final is not None
    total = THREADS * CHANGES
    assert (final["counter"], final["version"], len(final["seen"])) == (total, total, total)
    assert set(final["seen"]) == {f"{w}-{i}" for w in range(THREADS) for i in range(CHANGES)}


def test_the_document_written_is_returned(store: Store) -> None:
    store.insert(JOBS, {"uuid": "j1", "counter": 0, "seen": []})

    new = compare_and_set(store, JOBS, "j1", bump(0, 0))

    assert new == {"uuid": "j1", "counter": 1, "seen": ["0-0"], "version": 1}
    assert store.get(JOBS, "j1") == new


def test_a_refusal_raised_by_change_writes_nothing(store: Store) -> None:
    before = store.insert(JOBS, {"uuid": "j1", "state": "FINISHED"})

    def refuse(doc: Document) -> Change:
        raise Conflict(f"job {doc['uuid']} is {doc['state']}")

    with pytest.raises(Conflict, match="FINISHED"):
        compare_and_set(store, JOBS, "j1", refuse)

    assert store.get(JOBS, "j1") == before


def test_a_lost_race_is_decided_again_on_the_version_that_won(store: Store) -> None:
    """``change`` sees the document the write would replace: a stale copy loses, and
    the refusal is made against what the other writer left."""
    stale = store.insert(JOBS, {"uuid": "j1", "state": "RUNNING"})
    won = store.update(JOBS, "j1", version=0, set={"state": "FINISHED"})
    seen: list[str] = []

    def finish_once(doc: Document) -> Change:
        seen.append(doc["state"])
        if doc["state"] == "FINISHED":
            raise Conflict("already finished")
        return Change(set={"state": "FINISHED"}, push={"history": ["finish"]})

    with pytest.raises(Conflict):
        compare_and_set(store, JOBS, "j1", finish_once, current=stale)

    assert seen == ["RUNNING", "FINISHED"]
    assert store.get(JOBS, "j1") == won


def test_none_writes_nothing_and_returns_the_document(store: Store) -> None:
    before = store.insert(JOBS, {"uuid": "j1", "state": "CREATED"})

    assert compare_and_set(store, JOBS, "j1", lambda doc: None) == before
    assert store.get(JOBS, "j1") == before  # the version did not move either


def test_a_missing_document_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        compare_and_set(store, JOBS, "missing", lambda doc: Change(set={"x": 1}))
    assert store.get(JOBS, "missing") is None


@pytest.mark.parametrize("retries", [0, 3])
def test_running_out_raises_too_many_conflicts_with_retry_after(store: Store, retries: int) -> None:
    """Another writer wins every race: ``retries`` + 1 tries, then TooManyConflicts,
    and nothing of ours was written."""
    store.insert(JOBS, {"uuid": "j1", "counter": 0})
    tries: list[int] = []

    def always_beaten(doc: Document) -> Change:
        tries.append(doc["version"])
        store.update(JOBS, "j1", version=doc["version"], set={"counter": doc["counter"] + 1})
        return Change(set={"ours": True})

    with pytest.raises(TooManyConflicts) as info:
        compare_and_set(store, JOBS, "j1", always_beaten, retries=retries, what="job j1")

    assert tries == list(range(retries + 1))
    assert info.value.detail["retry_after"] == RETRY_AFTER > 0
    assert info.value.detail["key"] == "j1"
    assert info.value.message.startswith("job j1: ")
    final: Any = store.get(JOBS, "j1")
    assert "ours" not in final and final["counter"] == retries + 1
