"""The Store contract (common/store/base.py), checked on every backend.

Each test runs once per backend through the ``store`` fixture (conftest.py), on the
real collection specs: whatever passes here behaves the same on all of them.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from pipelinejobs.adapters.store.base import COLLECTIONS, In, Range, Store, encode_cursor
from pipelinejobs.errors import DuplicateDocument, NotFound, StoreError

JOBS = "jobs"

#: Values that must come back exactly as they went in.
NESTED: dict[str, Any] = {
    "params": {"a": [1, 2.5, {"b": None, "c": [True, False]}], "empty": {}, "none": []},
    "text": 'ünïcödé — 漢字 🚀 "quotes" \\ back',
    "flag": True,
    "off": False,
    "nothing": None,
    "count": 0,
    "big": 2**53,
    "negative": -1.5,
}


def job(uuid: str, **fields: Any) -> dict[str, Any]:
    return {"uuid": uuid, **fields}


def keys(docs: list[dict[str, Any]]) -> list[str]:
    return [d["uuid"] for d in docs]


def all_keys(store: Store, collection: str = JOBS) -> list[str]:
    return keys(store.find(collection, limit=10_000).items)


def test_the_real_collection_specs_are_used() -> None:
    jobs = COLLECTIONS["jobs"]
    assert (jobs.key, jobs.multi) == (
        "uuid",
        ("child_of", "derived_from", "acted_on", "tag_pairs", "depends_on"),
    )
    assert {"state", "pipeline_uuid", "created", "updated"} <= set(jobs.indexed)
    assert "present" in COLLECTIONS["files"].indexed


def test_a_parents_waiting_dependents_are_one_lookup(store: Store) -> None:
    """Issue 16: the jobs waiting for a job are found by ``depends_on`` and state."""
    store.insert(JOBS, job("j1", state="CREATED", depends_on=["p1", "p2"]))
    store.insert(JOBS, job("j2", state="RUNNING", depends_on=["p1"]))
    store.insert(JOBS, job("j3", state="CREATED", depends_on=["p2"]))
    assert keys(store.find(JOBS, {"depends_on": "p1", "state": "CREATED"}).items) == ["j1"]
    assert keys(store.find(JOBS, {"depends_on": "p2"}).items) == ["j1", "j3"]


def test_jobs_are_found_by_what_they_derive_from_and_act_on(store: Store) -> None:
    """The lineage API's downward lookups: one index each, on every backend."""
    store.insert(JOBS, job("j1", state="CREATED", derived_from=["f1", "j0"], acted_on=["f1"]))
    store.insert(JOBS, job("j2", state="CREATED", derived_from=["j0"]))
    assert keys(store.find(JOBS, {"derived_from": "j0"}).items) == ["j1", "j2"]
    assert keys(store.find(JOBS, {"acted_on": "f1"}).items) == ["j1"]
    store.update(JOBS, "j2", version=0, push={"acted_on": ["f1"]})
    assert keys(store.find(JOBS, {"acted_on": "f1"}).items) == ["j1", "j2"]
    assert keys(store.find(JOBS, {"derived_from": "f2"}).items) == []


# -- insert and get ----------------------------------------------------------------------


def test_insert_returns_the_document_at_version_0_and_get_an_equal_copy(store: Store) -> None:
    doc = job("j1", state="CREATED", **copy.deepcopy(NESTED))
    inserted = store.insert(JOBS, doc)
    assert inserted == {**NESTED, "uuid": "j1", "state": "CREATED", "version": 0}
    assert store.get(JOBS, "j1") == inserted


def test_mutating_returned_or_given_documents_does_not_change_the_store(store: Store) -> None:
    given = job("j1", state="CREATED", tags=["a"], params={"x": [1]})
    inserted = store.insert(JOBS, given)
    expected = copy.deepcopy(inserted)
    given["tags"].append("given")
    given["params"]["x"].append("given")
    inserted["tags"].append("inserted")
    inserted["params"]["y"] = 2
    inserted["state"] = "RUNNING"
    got = store.get(JOBS, "j1")
    assert got is not None
    got["tags"].append("got")
    got["params"]["x"].clear()
    assert store.get(JOBS, "j1") == expected
    found = store.find(JOBS).items[0]
    found["tags"].append("found")
    updated = store.update(JOBS, "j1", version=0, push={"tags": ["b"]})
    assert updated is not None
    updated["tags"].append("updated")
    assert store.get(JOBS, "j1") == {**expected, "tags": ["a", "b"], "version": 1}


def test_insert_of_an_existing_key_raises_and_changes_nothing(store: Store) -> None:
    store.insert(JOBS, job("j1", state="CREATED", child_of=["p1"]))
    with pytest.raises(DuplicateDocument):
        store.insert(JOBS, job("j1", state="RUNNING", child_of=["p2"]))
    assert store.get(JOBS, "j1") == job("j1", state="CREATED", child_of=["p1"], version=0)
    assert store.count(JOBS) == 1
    assert keys(store.find(JOBS, {"child_of": "p2"}).items) == []
    assert store.count(JOBS, {"state": "RUNNING"}) == 0


@pytest.mark.parametrize("doc", [{"state": "CREATED"}, {"uuid": None}, {"uuid": ""}])
def test_a_document_without_its_key_is_refused(store: Store, doc: dict[str, Any]) -> None:
    with pytest.raises(StoreError) as caught:
        store.insert(JOBS, doc)
    assert caught.value.detail["path"] == "uuid"
    assert store.count(JOBS) == 0


OPERATIONS = {
    "insert": lambda s: s.insert("nope", {"uuid": "x"}),
    "get": lambda s: s.get("nope", "x"),
    "update": lambda s: s.update("nope", "x", version=0, set={"a": 1}),
    "put_many": lambda s: s.put_many("nope", [{"uuid": "x"}]),
    "delete": lambda s: s.delete("nope", "x"),
    "find": lambda s: s.find("nope"),
    "count": lambda s: s.count("nope"),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_unknown_collection_is_refused(store: Store, operation: str) -> None:
    with pytest.raises(StoreError, match="unknown collection 'nope'"):
        OPERATIONS[operation](store)


def test_get_of_a_missing_key_is_none(store: Store) -> None:
    assert store.get(JOBS, "missing") is None
    store.insert(JOBS, job("j1"))
    assert store.get(JOBS, "missing") is None


# -- update (compare-and-set) -----------------------------------------------------------


def test_update_sets_fields_pushes_items_and_bumps_the_version(store: Store) -> None:
    store.insert(JOBS, job("j1", state="CREATED", history=[{"n": 1}], keep="me"))
    new = store.update(
        JOBS,
        "j1",
        version=0,
        set={"state": "RUNNING", "extra": {"deep": [1]}},
        push={"history": [{"n": 2}, {"n": 3}], "log": ["first", "second"]},
    )
    expected = job(
        "j1",
        state="RUNNING",
        history=[{"n": 1}, {"n": 2}, {"n": 3}],
        keep="me",
        extra={"deep": [1]},
        log=["first", "second"],
        version=1,
    )
    assert new == expected
    assert store.get(JOBS, "j1") == expected
    again = store.update(JOBS, "j1", version=1, push={"log": ["third"]})
    assert again is not None
    assert (again["log"], again["version"]) == (["first", "second", "third"], 2)
    assert store.update(JOBS, "j1", version=2) == {**again, "version": 3}


def test_update_with_a_stale_version_returns_none_and_changes_nothing(store: Store) -> None:
    store.insert(JOBS, job("j1", state="CREATED", history=[]))
    assert store.update(JOBS, "j1", version=0, set={"state": "RUNNING"}) is not None
    before = store.get(JOBS, "j1")
    for stale in (0, 2, -1):
        changed = store.update(
            JOBS, "j1", version=stale, set={"state": "FAILED"}, push={"history": ["x"]}
        )
        assert changed is None
    assert store.get(JOBS, "j1") == before
    assert store.count(JOBS, {"state": "FAILED"}) == 0


def test_update_of_a_missing_document_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update(JOBS, "missing", version=0, set={"state": "RUNNING"})
    assert store.get(JOBS, "missing") is None


@pytest.mark.parametrize(
    "change",
    [{"set": {"uuid": "other"}}, {"set": {"version": 7}}, {"push": {"version": [1]}}],
    ids=["set-key", "set-version", "push-version"],
)
def test_update_cannot_change_the_key_or_the_version(store: Store, change: dict[str, Any]) -> None:
    store.insert(JOBS, job("j1", state="CREATED"))
    with pytest.raises(StoreError):
        store.update(JOBS, "j1", version=0, **change)
    assert all_keys(store) == ["j1"]
    assert store.get(JOBS, "j1") == job("j1", state="CREATED", version=0)


def test_nested_values_round_trip_exactly(store: Store) -> None:
    store.insert(JOBS, job("j1", **copy.deepcopy(NESTED)))
    store.insert(JOBS, job("j2"))
    assert store.update(JOBS, "j2", version=0, set=copy.deepcopy(NESTED)) is not None
    store.put_many(JOBS, [job("j3", **copy.deepcopy(NESTED))])
    for uuid, version in (("j1", 0), ("j2", 1), ("j3", 0)):
        got = store.get(JOBS, uuid)
        assert got == {**NESTED, "uuid": uuid, "version": version}
        assert got is not None
        assert type(got["flag"]) is bool and type(got["count"]) is int
        assert type(got["negative"]) is float


def test_update_changes_what_find_matches(store: Store) -> None:
    store.insert(JOBS, job("j1", state="CREATED", child_of=["p1"]))
    store.update(JOBS, "j1", version=0, set={"state": "RUNNING"}, push={"child_of": ["p2"]})
    assert keys(store.find(JOBS, {"state": "RUNNING"}).items) == ["j1"]
    assert keys(store.find(JOBS, {"state": "CREATED"}).items) == []
    assert keys(store.find(JOBS, {"child_of": "p2"}).items) == ["j1"]
    store.update(JOBS, "j1", version=1, set={"child_of": ["p3"]})
    assert keys(store.find(JOBS, {"child_of": In(["p1", "p2"])}).items) == []
    assert keys(store.find(JOBS, {"child_of": "p3"}).items) == ["j1"]


# -- put_many and delete -----------------------------------------------------------------


def test_put_many_inserts_new_and_replaces_existing_documents(store: Store) -> None:
    store.insert(JOBS, job("j1", state="CREATED", old="field", child_of=["p1"]))
    store.update(JOBS, "j1", version=0, set={"state": "RUNNING"})
    written = store.put_many(
        JOBS,
        [job("j1", state="FINISHED", child_of=["p2"]), job("j2", state="CREATED")],
    )
    assert written == 2
    assert store.get(JOBS, "j1") == job("j1", state="FINISHED", child_of=["p2"], version=2)
    assert store.get(JOBS, "j2") == job("j2", state="CREATED", version=0)
    assert keys(store.find(JOBS, {"child_of": "p1"}).items) == []
    assert keys(store.find(JOBS, {"child_of": "p2"}).items) == ["j1"]
    assert store.count(JOBS, group_by="state") == {"FINISHED": 1, "CREATED": 1}


def test_put_many_with_one_key_twice_keeps_the_later_content(store: Store) -> None:
    batch = [job("j1", state="CREATED", n=1), job("j2"), job("j1", state="RUNNING", n=2)]
    assert store.put_many(JOBS, batch) == 3
    assert store.get(JOBS, "j1") == job("j1", state="RUNNING", n=2, version=1)
    assert store.count(JOBS) == 2
    assert store.count(JOBS, {"state": "CREATED"}) == 0


def test_put_many_of_nothing_writes_nothing(store: Store) -> None:
    assert store.put_many(JOBS, []) == 0
    assert store.count(JOBS) == 0


def test_put_many_with_a_keyless_document_writes_nothing(store: Store) -> None:
    with pytest.raises(StoreError):
        store.put_many(JOBS, [job("j1"), {"state": "CREATED"}, job("j2")])
    assert store.count(JOBS) == 0


def test_delete_is_true_then_false(store: Store) -> None:
    store.insert(JOBS, job("j1", state="CREATED", child_of=["p1"]))
    store.insert(JOBS, job("j2", state="CREATED", child_of=["p1"]))
    assert store.delete(JOBS, "j1") is True
    assert store.delete(JOBS, "j1") is False
    assert store.delete(JOBS, "never") is False
    assert store.get(JOBS, "j1") is None
    assert all_keys(store) == ["j2"]
    assert keys(store.find(JOBS, {"child_of": "p1"}).items) == ["j2"]
    store.insert(JOBS, job("j1", state="RUNNING"))  # the key is free again
    assert keys(store.find(JOBS, {"child_of": "p1"}).items) == ["j2"]


# -- find --------------------------------------------------------------------------------


@pytest.fixture
def jobs(store: Store) -> Store:
    """Six jobs of two pipelines; j6 has no ``updated``, j5 a null one."""
    store.put_many(
        JOBS,
        [
            job("j1", state="CREATED", pipeline_uuid="pA", updated="2024-01-01T00:00:00Z",
                child_of=["pA"]),
            job("j2", state="RUNNING", pipeline_uuid="pA", updated="2024-01-15T12:00:00Z",
                child_of=["pA", "x1"]),
            job("j3", state="RUNNING", pipeline_uuid="pB", updated="2024-02-01T00:00:00Z",
                child_of=["pB"]),
            job("j4", state="FINISHED", pipeline_uuid="pB", updated="2024-01-15T12:00:00Z",
                child_of=[]),
            job("j5", state="FAILED", updated=None, child_of=None),
            job("j6"),
        ],
    )  # fmt: skip
    return store


def test_find_by_equality_on_indexed_fields_and_the_key(jobs: Store) -> None:
    assert keys(jobs.find(JOBS, {"state": "RUNNING"}).items) == ["j2", "j3"]
    assert keys(jobs.find(JOBS, {"state": "RUNNING", "pipeline_uuid": "pB"}).items) == ["j3"]
    assert keys(jobs.find(JOBS, {"uuid": "j4"}).items) == ["j4"]
    assert keys(jobs.find(JOBS, {"state": "NOPE"}).items) == []
    assert keys(jobs.find(JOBS, {}).items) == ["j1", "j2", "j3", "j4", "j5", "j6"]


def test_find_by_in(jobs: Store) -> None:
    found = jobs.find(JOBS, {"state": In(["CREATED", "FINISHED", "NOPE"])})
    assert keys(found.items) == ["j1", "j4"]
    assert keys(jobs.find(JOBS, {"uuid": In(("j6", "j2"))}).items) == ["j2", "j6"]
    assert keys(jobs.find(JOBS, {"state": In([])}).items) == []


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        (Range(gte="2024-01-15"), ["j2", "j3", "j4"]),
        (Range(lt="2024-01-15T12:00:00Z"), ["j1"]),
        (Range(gte="2024-01-15T12:00:00Z", lt="2024-02-01T00:00:00Z"), ["j2", "j4"]),
        (Range(gte="2024-01-01T00:00:00Z", lt="2024-01-01T00:00:00Z"), []),
        (Range(), ["j1", "j2", "j3", "j4"]),
    ],
)
def test_find_by_range_on_iso_dates(jobs: Store, bounds: Range, expected: list[str]) -> None:
    assert keys(jobs.find(JOBS, {"updated": bounds}).items) == expected
    assert jobs.count(JOBS, {"updated": bounds}) == len(expected)


def test_find_by_member_of_an_array_field(jobs: Store) -> None:
    assert keys(jobs.find(JOBS, {"child_of": "pA"}).items) == ["j1", "j2"]
    assert keys(jobs.find(JOBS, {"child_of": "x1"}).items) == ["j2"]
    assert keys(jobs.find(JOBS, {"child_of": In(["x1", "pB"])}).items) == ["j2", "j3"]
    assert keys(jobs.find(JOBS, {"child_of": "nope"}).items) == []
    assert jobs.count(JOBS, {"child_of": "pA", "state": "RUNNING"}) == 1


def test_none_matches_a_missing_or_null_field(jobs: Store) -> None:
    assert keys(jobs.find(JOBS, {"pipeline_uuid": None}).items) == ["j5", "j6"]
    assert keys(jobs.find(JOBS, {"updated": None}).items) == ["j5", "j6"]
    assert keys(jobs.find(JOBS, {"state": None}).items) == ["j6"]
    assert keys(jobs.find(JOBS, {"pipeline_uuid": In([None, "pB"])}).items) == [
        "j3",
        "j4",
        "j5",
        "j6",
    ]
    assert jobs.count(JOBS, {"updated": None}) == 2


def test_none_matches_an_array_field_without_members(jobs: Store) -> None:
    jobs.insert(JOBS, job("j7", child_of=[None]))
    assert keys(jobs.find(JOBS, {"child_of": None}).items) == ["j4", "j5", "j6", "j7"]
    assert keys(jobs.find(JOBS, {"child_of": In([None, "pB"])}).items) == [
        "j3",
        "j4",
        "j5",
        "j6",
        "j7",
    ]
    assert jobs.count(JOBS, {"child_of": None}) == 4


def test_booleans_filter_and_group_as_booleans(store: Store) -> None:
    store.put_many(
        "files",
        [
            {"uuid": "f1", "present": True, "path": "/a"},
            {"uuid": "f2", "present": False, "path": "/b"},
            {"uuid": "f3", "present": True, "path": "/c"},
            {"uuid": "f4", "path": "/d"},
        ],
    )
    assert keys(store.find("files", {"present": True}).items) == ["f1", "f3"]
    assert keys(store.find("files", {"present": False}).items) == ["f2"]
    assert keys(store.find("files", {"present": None}).items) == ["f4"]
    assert store.count("files", {"present": False}) == 1
    groups = store.count("files", group_by="present")
    assert groups == {True: 2, False: 1, None: 1}
    assert isinstance(groups, dict)
    assert {type(k) for k in groups} == {bool, type(None)}
    ordered = store.find("files", order="present", descending=True).items
    assert keys(ordered) == ["f3", "f1", "f2", "f4"]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.find(JOBS, {"archive_path": "x"}),
        lambda s: s.find(JOBS, order="archive_path"),
        lambda s: s.count(JOBS, {"archive_path": "x"}),
        lambda s: s.count(JOBS, group_by="archive_path"),
    ],
    ids=["find-where", "find-order", "count-where", "count-group"],
)
def test_a_field_that_is_not_indexed_is_refused_by_name(jobs: Store, call: Any) -> None:
    with pytest.raises(StoreError, match="'archive_path'") as caught:
        call(jobs)
    assert caught.value.detail["path"] == "archive_path"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.find(JOBS, order="child_of"),
        lambda s: s.count(JOBS, group_by="child_of"),
        lambda s: s.find(JOBS, {"child_of": Range(gte="a")}),
    ],
    ids=["order", "group", "range"],
)
def test_an_array_field_is_filtered_by_member_only(jobs: Store, call: Any) -> None:
    with pytest.raises(StoreError, match="'child_of'"):
        call(jobs)


def test_order_by_an_indexed_field_breaks_ties_by_key(jobs: Store) -> None:
    ascending = jobs.find(JOBS, order="updated").items
    assert keys(ascending) == ["j5", "j6", "j1", "j2", "j4", "j3"]
    descending = jobs.find(JOBS, order="updated", descending=True).items
    assert keys(descending) == ["j3", "j4", "j2", "j1", "j6", "j5"]
    by_state = jobs.find(JOBS, {"state": In(["RUNNING", "CREATED"])}, order="state").items
    assert keys(by_state) == ["j1", "j2", "j3"]
    assert keys(jobs.find(JOBS, descending=True).items) == ["j6", "j5", "j4", "j3", "j2", "j1"]


def expected_order(docs: list[dict[str, Any]], order: str | None, descending: bool) -> list[str]:
    """The contract's order, worked out independently: missing/None first, then the
    value, ties by key; all of it reversed when descending."""
    field = order or "uuid"

    def rank(d: dict[str, Any]) -> tuple[Any, ...]:
        value = d.get(field)
        return (value is not None, "" if value is None else value, d["uuid"])

    return [d["uuid"] for d in sorted(docs, key=rank, reverse=descending)]


@pytest.mark.parametrize("order", [None, "updated", "state"])
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 3, 4])
def test_paging_with_the_cursor_walks_every_document_once(
    store: Store, order: str | None, descending: bool, limit: int
) -> None:
    docs = []
    for i in range(12):
        doc = job(f"j{i:02d}", state=["A", "B", "C"][i % 3])
        if i % 4:  # every fourth has no date, two share one, the rest differ
            doc["updated"] = f"2024-0{1 + i % 2}-{10 + i // 3:02d}"
        if i == 5:
            doc["updated"] = None
        docs.append(doc)
    store.put_many(JOBS, list(reversed(docs)))
    walked: list[str] = []
    after = None
    pages = 0
    while True:
        page = store.find(JOBS, order=order, descending=descending, limit=limit, after=after)
        pages += 1
        assert len(page.items) <= limit
        walked += keys(page.items)
        if page.next is None:
            break
        assert len(page.items) == limit
        after = page.next
        assert pages < 20, "the cursor does not advance"
    assert walked == expected_order(docs, order, descending)
    assert pages == -(-12 // limit)  # no empty last page


def test_paging_combines_with_a_filter(jobs: Store) -> None:
    first = jobs.find(JOBS, {"state": In(["RUNNING", "FINISHED"])}, order="updated", limit=2)
    assert keys(first.items) == ["j2", "j4"]
    assert first.next is not None
    rest = jobs.find(
        JOBS, {"state": In(["RUNNING", "FINISHED"])}, order="updated", limit=2, after=first.next
    )
    assert (keys(rest.items), rest.next) == (["j3"], None)


def test_next_is_none_when_everything_fits(jobs: Store) -> None:
    assert jobs.find(JOBS, limit=6).next is None
    assert jobs.find(JOBS, limit=5).next is not None
    assert jobs.find(JOBS, {"state": "NOPE"}).next is None


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "",
        base64.urlsafe_b64encode(b'"ab"').decode(),
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
    ids=["garbage", "empty", "string", "triple", "binary"],
)
def test_a_cursor_this_store_did_not_issue_is_refused(jobs: Store, cursor: str) -> None:
    with pytest.raises(StoreError, match="cursor"):
        jobs.find(JOBS, order="updated", after=cursor)


def test_a_cursor_is_a_position_not_a_document(jobs: Store) -> None:
    """A cursor still works when the document it was made from is gone."""
    after = encode_cursor("2024-01-15T12:00:00Z", "j2")
    jobs.delete(JOBS, "j2")
    assert keys(jobs.find(JOBS, order="updated", after=after).items) == ["j4", "j3"]


# -- count -------------------------------------------------------------------------------


def test_count_total_filtered_and_grouped(jobs: Store) -> None:
    assert jobs.count(JOBS) == 6
    assert jobs.count(JOBS, {"pipeline_uuid": "pA"}) == 2
    assert jobs.count(JOBS, {"state": In(["RUNNING", "FAILED"])}) == 3
    assert jobs.count(JOBS, group_by="state") == {
        "CREATED": 1,
        "RUNNING": 2,
        "FINISHED": 1,
        "FAILED": 1,
        None: 1,
    }
    assert jobs.count(JOBS, {"pipeline_uuid": "pB"}, group_by="state") == {
        "RUNNING": 1,
        "FINISHED": 1,
    }
    assert jobs.count(JOBS, {"state": "NOPE"}, group_by="state") == {}
    assert jobs.count("pipelines") == 0


# -- concurrency -------------------------------------------------------------------------


def test_concurrent_compare_and_set_loses_nothing(threaded_store: Store, run_threads) -> None:
    """8 threads × 50 read-modify-write increments: every one lands exactly once."""
    store = threaded_store
    store.insert(JOBS, job("j1", counter=0, seen=[]))

    def increment(worker: int) -> None:
        for i in range(50):
            while True:
                doc = store.get(JOBS, "j1")
                assert doc is not None
                new = store.update(
                    JOBS,
                    "j1",
                    version=doc["version"],
                    set={"counter": doc["counter"] + 1},
                    push={"seen": [f"{worker}-{i}"]},
                )
                if new is not None:
                    break

    run_threads(increment, 8)
    final = store.get(JOBS, "j1")
    assert final is not None
    assert (final["counter"], final["version"]) == (400, 400)
    assert len(final["seen"]) == 400
    assert set(final["seen"]) == {f"{w}-{i}" for w in range(8) for i in range(50)}


def test_runs_are_found_by_pipeline_priority_owner_and_tag_newest_first(store: Store) -> None:
    """Runs (issue 15): the filters and order GET /runs uses, and a run's jobs counted
    by state (GET /runs/<id>)."""
    runs = [
        {"uuid": "r1", "pipeline_uuid": "p1", "priority": "high", "owner": "a",
         "tag_pairs": ["experiment:e1"], "created": "2026-01-01T00:00:01.000Z"},
        {"uuid": "r2", "pipeline_uuid": "p1", "priority": "medium", "owner": "b",
         "tag_pairs": ["experiment:e2"], "created": "2026-01-01T00:00:02.000Z"},
        {"uuid": "r3", "pipeline_uuid": "p2", "priority": "medium", "owner": "a",
         "tag_pairs": [], "created": "2026-01-01T00:00:03.000Z"},
    ]  # fmt: skip
    for run in runs:
        store.insert("runs", run)

    def found(**where: Any) -> list[str]:
        return keys(store.find("runs", where, order="created", descending=True).items)

    assert found() == ["r3", "r2", "r1"]
    assert found(pipeline_uuid="p1") == ["r2", "r1"]
    assert found(priority="medium", owner="a") == ["r3"]
    assert found(tag_pairs="experiment:e1") == ["r1"]
    assert found(pipeline_uuid="p1", tag_pairs="experiment:e2", priority="medium") == ["r2"]
    first = store.find("runs", order="created", descending=True, limit=2)
    rest = store.find("runs", order="created", descending=True, limit=2, after=first.next)
    assert keys(first.items + rest.items) == ["r3", "r2", "r1"] and rest.next is None

    for uuid, state, run in (("j1", "FAILED", "r1"), ("j2", "FINISHED", "r1"),
                             ("j3", "FINISHED", "r1"), ("j4", "FINISHED", "r2"),
                             ("j5", "CREATED", None)):  # fmt: skip
        store.insert(JOBS, job(uuid, state=state, created=uuid, **({"run": run} if run else {})))
    assert store.count(JOBS, {"run": "r1"}, group_by="state") == {"FAILED": 1, "FINISHED": 2}
    assert keys(store.find(JOBS, {"run": "r1", "state": "FINISHED"}).items) == ["j2", "j3"]
    assert keys(store.find(JOBS, {"run": None}).items) == ["j5"]
