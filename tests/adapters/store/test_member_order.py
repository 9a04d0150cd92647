"""Pages filtered on one member of an array field, in the order a compound index led
by that field keeps (jobs' and runs' ``("tag_pairs", "created")``: ``GET /jobs?tag=``
newest first), on every backend: the same documents in the same order as a sort of
every holder would give, page after page, whatever else is filtered and however the
tags or the order field change."""

from __future__ import annotations

import random
from typing import Any

from pipelinejobs.adapters.store.base import COLLECTIONS, In, Store

JOBS, EVENTS = "jobs", "events"


def test_jobs_and_runs_index_their_tags_newest_first() -> None:
    for name in ("jobs", "runs"):
        assert COLLECTIONS[name].member_orders("tag_pairs") == ("created",)
        assert COLLECTIONS[name].members_touched(["created"]) == ["tag_pairs"]
    assert COLLECTIONS["jobs"].member_orders("child_of") == ()


def reference(
    docs: dict[str, dict[str, Any]], where: dict[str, Any], order: str, descending: bool
) -> list[str]:
    """What every backend agrees a full listing is: missing/null first ascending and
    last descending, ties by key in the same direction."""

    def matches(doc: dict[str, Any]) -> bool:
        for name, cond in where.items():
            wanted = cond.values if isinstance(cond, In) else (cond,)
            value = doc.get(name)
            if name == "tag_pairs":
                if not set(wanted) & set(value or []):
                    return False
            elif value not in wanted:
                return False
        return True

    chosen = [d for d in docs.values() if matches(d)]
    with_value = sorted(
        (d for d in chosen if d.get(order) is not None), key=lambda d: (d[order], d["uuid"])
    )
    without = sorted((d for d in chosen if d.get(order) is None), key=lambda d: d["uuid"])
    ordered = without + with_value
    return [d["uuid"] for d in (reversed(ordered) if descending else ordered)]


def paged(store: Store, where: dict[str, Any], order: str, descending: bool, limit: int) -> list:
    out: list[str] = []
    after = None
    while True:
        page = store.find(JOBS, where, order=order, descending=descending, limit=limit, after=after)
        out.extend(d["uuid"] for d in page.items)
        if page.next is None:
            return out
        after = page.next


def seeded(store: Store) -> dict[str, dict[str, Any]]:
    """60 jobs: 4 owners, tags from a small pool, repeated and missing dates."""
    rng = random.Random(15)
    docs: dict[str, dict[str, Any]] = {}
    for i in range(60):
        uuid = f"j{i:02d}"
        doc: dict[str, Any] = {
            "uuid": uuid,
            "owner": f"o{rng.randrange(4)}",
            "state": rng.choice(["CREATED", "RUNNING", "FAILED"]),
            "tag_pairs": sorted({f"t:{rng.randrange(5)}" for _ in range(rng.randrange(3))}),
        }
        if i % 7:  # a few without a date; others share one
            doc["created"] = f"2026-01-01T00:00:{rng.randrange(20):02d}.000Z"
        docs[uuid] = doc
    store.put_many(JOBS, list(docs.values())[:30])
    for doc in list(docs.values())[30:]:
        store.insert(JOBS, dict(doc))
    return docs


def test_member_pages_are_in_order_page_after_page(store: Store) -> None:
    docs = seeded(store)
    filters: list[dict[str, Any]] = [
        {"tag_pairs": "t:1"},
        {"tag_pairs": In(["t:2"])},
        {"tag_pairs": "t:3", "owner": "o1"},
        {"tag_pairs": "t:0", "state": In(["CREATED", "FAILED"])},
        {"tag_pairs": "t:4", "owner": "o2", "state": "RUNNING"},
        {"tag_pairs": "t:9"},
    ]
    for where in filters:
        for order, descending in (("created", True), ("created", False), ("uuid", True)):
            expected = reference(docs, where, order, descending)
            for limit in (1, 3, 50):
                assert paged(store, where, order, descending, limit) == expected, (
                    where, order, descending, limit,
                )  # fmt: skip
    assert store.count(JOBS, {"tag_pairs": "t:1"}) == len(reference(docs, {"tag_pairs": "t:1"},
                                                                     "uuid", False))  # fmt: skip


def test_member_pages_follow_changed_tags_and_dates(store: Store) -> None:
    docs = seeded(store)

    def check() -> None:
        for tag in ("t:0", "t:1", "t:new"):
            where = {"tag_pairs": tag}
            assert paged(store, where, "created", True, 4) == reference(
                docs, where, "created", True
            )

    def changed(uuid: str, **fields: Any) -> None:
        doc = store.get(JOBS, uuid)
        assert doc is not None
        assert store.update(JOBS, uuid, version=doc["version"], set=fields) is not None
        docs[uuid].update(fields)

    changed("j03", created="2027-01-01T00:00:00.000Z")  # a date its tags are ordered by
    changed("j04", tag_pairs=["t:new", "t:1"])
    changed("j05", tag_pairs=["t:new"], created="2025-01-01T00:00:00.000Z")
    check()
    # advance (a job's tag event): the tags and the log record in one step.
    j06 = store.get(JOBS, "j06")
    assert j06 is not None
    record = {"uuid": "e-j06", "job_uuid": "j06", "seq": 1, "name": "tag"}
    store.advance(JOBS, "j06", version=j06["version"], set={"tag_pairs": ["t:new"]},
                  record=(EVENTS, record))  # fmt: skip
    docs["j06"]["tag_pairs"] = ["t:new"]
    # put_many replaces a document whole: its members and their date follow.
    store.put_many(JOBS, [{**docs["j07"], "created": "2024-01-01T00:00:00.000Z",
                           "tag_pairs": ["t:0", "t:new"]}])  # fmt: skip
    docs["j07"].update(created="2024-01-01T00:00:00.000Z", tag_pairs=["t:0", "t:new"])
    store.delete(JOBS, "j08")
    del docs["j08"]
    check()
