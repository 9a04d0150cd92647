"""The Store contract for damaged records and the quarantine, on every backend.

A record is damaged *inside* the backend, as a disk, a hand edit or an older version
would leave it: raw SQL on SQLite (text that is not JSON, NaN, an array, an object
without its version), a value that is not a dict or a dict without ``version`` put
straight into the memory store's dicts, a document without ``version`` written with
the MongoDB driver itself. Then: ``find`` skips it and lists it in ``skipped`` (the
rest of the page is intact), ``get`` and ``update`` raise CorruptDocument naming it,
and ``quarantine`` moves its raw content out of the way.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipelinejobs.adapters.store import codec
from pipelinejobs.adapters.store.base import QUARANTINE, In, Store, not_found
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.errors import CorruptDocument, NotFound, Quarantined, StoreError

JOBS = "jobs"

#: How each backend can be damaged: what its internals can hold.
DAMAGE: dict[str, tuple[str, ...]] = {
    "sqlite": ("not json", "nan", "array", "no version"),
    "memory": ("not an object", "no version"),
    "mongomock": ("no version",),
    "mongodb": ("no version",),
}
SQL_TEXT = {
    "not json": "not json",
    "nan": '{"uuid": "%s", "version": 0, "x": NaN}',
    "array": "[1, 2]",
    "no version": '{"uuid": "%s", "state": "CREATED"}',
}

Corrupt = Callable[[str, str, str], None]


@pytest.fixture(autouse=True)
def _fresh_reports() -> Iterator[None]:
    """Each test sees its records reported afresh (the report is once per process)."""
    codec._reported.clear()
    yield
    codec._reported.clear()


@pytest.fixture
def corrupt(store: Store) -> Corrupt:
    """``corrupt(collection, key, how)``: damage a stored record in the backend itself."""

    def damage(collection: str, key: str, how: str) -> None:
        if isinstance(store, SQLiteStore):
            text = SQL_TEXT[how].replace("%s", key)
            with sqlite3.connect(store.path) as conn:
                conn.execute(f'UPDATE "{collection}" SET doc = ? WHERE k = ?', (text, key))
        elif isinstance(store, MemoryStore):
            table = store._data[collection]
            if how == "not an object":
                table[key] = "garbage"  # type: ignore[assignment]
            else:
                table[key] = {k: v for k, v in table[key].items() if k != "version"}
        else:
            coll = store._db()[collection]  # type: ignore[attr-defined]
            spec = store.spec(collection)
            raw = coll.find_one({spec.key: key}, {"_id": False})
            raw.pop("version")
            coll.replace_one({spec.key: key}, raw)

    return damage


@pytest.fixture
def how(backend: str, request: pytest.FixtureRequest) -> str:
    """Each way this backend can be damaged (a test runs once per way)."""
    return str(request.param) if hasattr(request, "param") else DAMAGE[backend][0]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run tests taking ``how`` once per kind of damage their backend can hold."""
    if "how" in metafunc.fixturenames:
        kinds = sorted({k for kinds in DAMAGE.values() for k in kinds})
        metafunc.parametrize("how", kinds, indirect=True)


@pytest.fixture
def three(store: Store, backend: str, how: str) -> Store:
    """j1, j2, j3 stored (j2 a child of p1); skipped where ``how`` is not possible."""
    if how not in DAMAGE[backend]:
        pytest.skip(f"{backend} cannot hold a record damaged as {how!r}")
    store.put_many(
        JOBS,
        [
            {"uuid": "j1", "state": "CREATED", "created": "2024-01-01"},
            {"uuid": "j2", "state": "CREATED", "created": "2024-01-02", "child_of": ["p1"]},
            {"uuid": "j3", "state": "RUNNING", "created": "2024-01-03"},
        ],
    )
    return store


def keys(docs: list[dict[str, Any]]) -> list[str]:
    return [d["uuid"] for d in docs]


# -- reading around a damaged record -------------------------------------------------------


def test_find_skips_a_corrupt_record_and_names_it(three: Store, corrupt: Corrupt, how, caplog):
    corrupt(JOBS, "j2", how)
    with caplog.at_level(logging.ERROR, logger="pipelinejobs.store"):
        page = three.find(JOBS)
        again = three.find(JOBS, {"state": "CREATED"})
    assert keys(page.items) == ["j1", "j3"]
    assert [(e.collection, e.key) for e in page.skipped] == [(JOBS, "j2")]
    assert keys(again.items) == ["j1"]
    reports = [r for r in caplog.records if "j2" in r.getMessage()]
    assert len(reports) == 1, "each corrupt record is logged once per process"
    assert "jobs record j2 is corrupt" in reports[0].getMessage()


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_paging_moves_past_a_corrupt_record(three: Store, corrupt: Corrupt, how, descending):
    corrupt(JOBS, "j2", how)
    walked, skipped, after = [], [], None
    for _ in range(5):
        page = three.find(JOBS, order="created", descending=descending, limit=1, after=after)
        walked += keys(page.items)
        skipped += [e.key for e in page.skipped]
        if page.next is None:
            break
        after = page.next
    assert walked == (["j3", "j1"] if descending else ["j1", "j3"])
    assert skipped == ["j2"]


def test_get_and_update_of_a_corrupt_record_raise_corrupt_document(
    three: Store, corrupt: Corrupt, how
):
    corrupt(JOBS, "j2", how)
    with pytest.raises(CorruptDocument) as got:
        three.get(JOBS, "j2")
    assert (got.value.collection, got.value.key) == (JOBS, "j2")
    assert got.value.to_dict()["error"] == "CorruptDocument"
    assert isinstance(got.value, StoreError)
    if isinstance(three, SQLiteStore) and how == "no version":
        # SQLite keeps the version in a column too, and its JSON functions write it
        # back into the document: an update repairs this one instead of refusing it.
        assert three.update(JOBS, "j2", version=0, set={"state": "RUNNING"})["version"] == 1
        assert three.get(JOBS, "j2")["state"] == "RUNNING"
    else:
        with pytest.raises(CorruptDocument) as updated:
            three.update(JOBS, "j2", version=0, set={"state": "RUNNING"})
        assert (updated.value.collection, updated.value.key) == (JOBS, "j2")
    assert three.get(JOBS, "j1")["state"] == "CREATED"  # the others are untouched


def test_counting_does_not_fail_on_a_corrupt_record(three: Store, corrupt: Corrupt, how):
    corrupt(JOBS, "j2", how)
    grouped = three.count(JOBS, group_by="state")
    assert isinstance(grouped, dict)
    assert grouped["RUNNING"] == 1


# -- the quarantine -------------------------------------------------------------------------


def test_quarantine_moves_the_raw_record_out_in_one_step(three: Store, corrupt: Corrupt, how):
    corrupt(JOBS, "j2", how)
    assert three.quarantine(JOBS, "j2", "found corrupt by a test") is True
    assert three.get(JOBS, "j2") is None
    page = three.find(JOBS)
    assert (keys(page.items), page.skipped) == (["j1", "j3"], [])
    assert three.find(JOBS, {"child_of": "p1"}).items == []  # its member rows went too
    assert three.find(JOBS, {"child_of": None}).items != []
    entry = three.get(QUARANTINE, "jobs/j2")
    assert entry is not None
    assert {k: entry[k] for k in ("id", "collection", "key", "reason")} == {
        "id": "jobs/j2",
        "collection": JOBS,
        "key": "j2",
        "reason": "found corrupt by a test",
    }
    assert entry["date"].endswith("Z")
    assert isinstance(entry["raw"], str) and entry["raw"]
    if how in ("not json", "nan"):
        assert entry["raw"] == SQL_TEXT[how].replace("%s", "j2")  # exactly what was stored
    listed = three.find(QUARANTINE, {"collection": JOBS}).items
    assert [e["key"] for e in listed] == ["j2"]
    assert three.quarantine(JOBS, "j2", "again") is False  # already gone: nothing changes
    assert three.get(QUARANTINE, "jobs/j2")["reason"] == "found corrupt by a test"


def test_quarantine_of_a_readable_record_keeps_its_json(store: Store):
    store.insert(JOBS, {"uuid": "j1", "state": "CREATED", "child_of": ["p1"]})
    assert store.quarantine(JOBS, "j1", "cannot be handled") is True
    entry = store.get(QUARANTINE, "jobs/j1")
    assert entry is not None
    assert '"state":"CREATED"' in entry["raw"].replace(" ", "")
    assert store.find(JOBS, {"child_of": In(["p1"])}).items == []
    assert store.count(JOBS) == 0


def test_quarantine_of_a_missing_record_is_false(store: Store):
    assert store.quarantine(JOBS, "nope", "whatever") is False
    assert store.get(QUARANTINE, "jobs/nope") is None


def test_a_record_stored_again_and_quarantined_again_replaces_its_entry(store: Store):
    store.insert(JOBS, {"uuid": "j1"})
    store.quarantine(JOBS, "j1", "first")
    store.insert(JOBS, {"uuid": "j1", "n": 2})
    assert store.quarantine(JOBS, "j1", "second") is True
    assert store.get(QUARANTINE, "jobs/j1")["reason"] == "second"
    assert store.count(QUARANTINE) == 1


@pytest.mark.parametrize("collection", [QUARANTINE, "nope"])
def test_the_quarantine_and_unknown_collections_cannot_be_quarantined(
    store: Store, collection: str
):
    with pytest.raises(StoreError):
        store.quarantine(collection, "x", "why")


def test_not_found_says_when_a_record_was_quarantined(store: Store):
    assert type(not_found(store, JOBS, "j1", "no job j1")) is NotFound
    store.insert(JOBS, {"uuid": "j1"})
    store.quarantine(JOBS, "j1", "its state is a list")
    gone = not_found(store, JOBS, "j1", "no job j1", uuid="j1")
    assert isinstance(gone, Quarantined) and isinstance(gone, NotFound)
    assert gone.message.startswith("no job j1: quarantined: its state is a list")
    assert gone.detail == {"uuid": "j1"}
