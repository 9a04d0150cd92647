"""Execution records: ids, submission, status transitions, paging and stale lookup."""

from __future__ import annotations

import re

import pytest

from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.domain import validation
from pipelinejobs.domain.clock import iso
from pipelinejobs.errors import NotFound, StoreError, TooManyConflicts
from pipelinejobs.runtime.executions import (
    ALPHABET,
    ID_LENGTH,
    Executions,
    derived_id,
    new_id,
)

ID = re.compile(r"^[A-Za-z0-9]{13}$")


# -- ids ---------------------------------------------------------------------------------


def test_new_ids_look_like_abaco_ids_and_do_not_repeat():
    ids = [new_id() for _ in range(2000)]
    assert all(ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len(set("".join(ids))) > 50  # the whole alphabet is used, not just hex
    assert ID_LENGTH == 13 and len(set(ALPHABET)) == 62


def test_derived_ids_are_deterministic():
    assert derived_id("Graf5sX3r3xQt", "1") == derived_id("Graf5sX3r3xQt", "1")
    assert ID.match(derived_id("Graf5sX3r3xQt", "1"))
    assert ID.match(derived_id(""))
    others = {
        derived_id("Graf5sX3r3xQt", "2"),
        derived_id("Graf5sX3r3xQu", "1"),
        derived_id("Graf5sX3r3xQt1"),
        derived_id("Graf5sX3r3xQ", "t1"),  # parts are separated, not concatenated
        derived_id("1", "Graf5sX3r3xQt"),
    }
    assert derived_id("Graf5sX3r3xQt", "1") not in others
    assert len(others) == 5
    # Pinned: ids must not change between releases (actor ids are published, and a
    # redelivered parent must find the children an older worker sent).
    assert derived_id("actor", "sd2e.org", "jobs-manager") == "HQzVpuPc9WNa2"
    assert derived_id("Graf5sX3r3xQt", "1") == "8cxKGiRBNX5vP"
    assert len({derived_id(str(i)) for i in range(1000)}) == 1000


# -- submitting ---------------------------------------------------------------------------


def test_submit_stores_a_submitted_execution(any_store, clock):
    executions = Executions(any_store, clock=clock)
    doc, created = executions.submit("jobs-manager", {"uuid": "x"}, {"token": "t"})
    assert created
    assert ID.match(doc["id"])
    assert doc["actor"] == "jobs-manager" and doc["status"] == "SUBMITTED"
    assert doc["message"] == {"uuid": "x"} and doc["params"] == {"token": "t"}
    assert doc["created"] == doc["updated"] == iso(clock())
    assert doc["attempts"] == 0 and doc["logs"] == [] and doc["version"] == 0
    assert "parent" not in doc and "sender" not in doc
    assert executions.get(doc["id"]) == doc
    validation.validate("execution", doc)


def test_submit_records_who_sent_it(any_store, clock):
    executions = Executions(any_store, clock=clock)
    doc, _ = executions.submit(
        "jobs-indexer", {}, execution_id="Graf5sX3r3xQt", parent="ABCDEFGHIJKLM", sender="jm"
    )
    assert doc["id"] == "Graf5sX3r3xQt"
    assert (doc["parent"], doc["sender"]) == ("ABCDEFGHIJKLM", "jm")
    validation.validate("execution", doc)


@pytest.mark.parametrize(
    ("message", "stored"),
    [(None, {}), ("", {}), ({"a": 1}, {"a": 1}), ("text", {"raw": "text"}), ([1], {"raw": [1]})],
)
def test_messages_are_stored_as_objects(any_store, message, stored):
    doc, _ = Executions(any_store).submit("jobs-manager", message)
    assert doc["message"] == stored
    validation.validate("execution", doc)


def test_submit_with_an_existing_id_returns_the_existing_record(any_store, clock):
    executions = Executions(any_store, clock=clock)
    first, created = executions.submit("jobs-manager", {"n": 1}, execution_id="AAAAAAAAAAAAA")
    executions.start(first["id"])
    clock.advance(10)
    again, created_again = executions.submit("jobs-manager", {"n": 2}, execution_id="AAAAAAAAAAAAA")
    assert created and not created_again
    assert again["message"] == {"n": 1}
    assert again["status"] == "RUNNING"
    assert again["created"] == first["created"]
    assert any_store.count("executions") == 1


def test_get_of_an_unknown_execution_is_not_found(any_store):
    with pytest.raises(NotFound) as err:
        Executions(any_store).get("nothing-here1")
    assert err.value.detail == {"execution": "nothing-here1"}


# -- status ---------------------------------------------------------------------------------


def test_status_moves_submitted_running_complete(any_store, clock):
    executions = Executions(any_store, clock=clock)
    doc, _ = executions.submit("jobs-manager", {})
    clock.advance(1)
    running = executions.start(doc["id"], "worker-1")
    assert running["status"] == "RUNNING"
    assert running["started"] == running["updated"] == iso(clock())
    assert running["attempts"] == 1 and running["worker"] == "worker-1"
    validation.validate("execution", running)

    clock.advance(1)
    progressed = executions.progress(doc["id"], {"files_seen": 3}, logs=["a line"])
    assert progressed["progress"] == {"files_seen": 3}
    assert progressed["logs"] == ["a line"]
    assert progressed["status"] == "RUNNING"

    clock.advance(1)
    done = executions.finish(doc["id"], result={"ok": True}, logs=["a line", "another"])
    assert done["status"] == "COMPLETE"
    assert done["result"] == {"ok": True} and done["error"] is None
    assert done["finished"] == done["updated"] == iso(clock())
    assert done["started"] == running["started"] and done["created"] == doc["created"]
    assert done["logs"] == ["a line", "another"]
    assert done["version"] == 3
    validation.validate("execution", done)


def test_finish_with_an_error_is_error(any_store, clock):
    executions = Executions(any_store, clock=clock)
    doc, _ = executions.submit("jobs-manager", {})
    executions.start(doc["id"])
    done = executions.finish(doc["id"], error={"error": "NotFound", "message": "no job"})
    assert done["status"] == "ERROR"
    assert done["error"] == {"error": "NotFound", "message": "no job"}
    assert done["result"] is None
    assert done["logs"] == []  # unchanged when not given
    validation.validate("execution", done)


def test_requeue_and_start_again_counts_attempts(any_store, clock):
    executions = Executions(any_store, clock=clock)
    doc, _ = executions.submit("jobs-manager", {})
    executions.start(doc["id"], "w1")
    requeued = executions.requeue(doc["id"], "store unavailable")
    assert requeued["status"] == "SUBMITTED"
    assert requeued["retry_reason"] == "store unavailable"
    assert requeued["attempts"] == 1
    validation.validate("execution", requeued)
    again = executions.start(doc["id"], "w2")
    assert again["attempts"] == 2 and again["worker"] == "w2"


def test_a_change_that_keeps_losing_gives_up():
    class Contended(MemoryStore):
        """Every compare-and-set loses, as if another writer always got there first."""

        def update(self, collection, key, *, version, set=None, push=None):
            return None

    executions = Executions(Contended(), retries=3)
    doc, _ = executions.submit("jobs-manager", {})
    for change in (lambda: executions.start(doc["id"]), lambda: executions.requeue(doc["id"], "")):
        with pytest.raises(TooManyConflicts) as info:
            change()
        assert info.value.detail["retry_after"] > 0
    assert executions.get(doc["id"]) == doc  # nothing written


# -- reading --------------------------------------------------------------------------------


def test_page_is_newest_first_with_a_cursor(any_store, clock):
    executions = Executions(any_store, clock=clock)
    ids = []
    for i in range(7):
        clock.advance(1)
        ids.append(executions.submit("jobs-manager", {"i": i})[0]["id"])
    executions.submit("jobs-indexer", {})
    newest_first = list(reversed(ids))

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = executions.page("jobs-manager", limit=3, after=cursor)
        assert len(page.items) <= 3
        seen.extend(d["id"] for d in page.items)
        pages += 1
        if page.next is None:
            break
        cursor = page.next
    assert seen == newest_first
    assert pages == 3


def test_page_filters_by_status(any_store, clock):
    executions = Executions(any_store, clock=clock)
    a, _ = executions.submit("jobs-manager", {})
    clock.advance(1)
    b, _ = executions.submit("jobs-manager", {})
    executions.start(a["id"])
    executions.finish(a["id"], result=None)
    assert [d["id"] for d in executions.page("jobs-manager", status="COMPLETE").items] == [a["id"]]
    assert [d["id"] for d in executions.page("jobs-manager", status="SUBMITTED").items] == [b["id"]]
    assert executions.page("jobs-indexer").items == []


def test_page_with_a_forged_cursor_is_refused(any_store):
    with pytest.raises(StoreError):
        Executions(any_store).page("jobs-manager", after="not-a-cursor")


def test_stale_finds_old_executions_in_the_given_statuses(any_store, clock):
    executions = Executions(any_store, clock=clock)
    old_submitted, _ = executions.submit("jobs-manager", {})
    old_running, _ = executions.submit("jobs-indexer", {})
    executions.start(old_running["id"])
    old_done, _ = executions.submit("jobs-manager", {})
    executions.finish(old_done["id"], result=None)
    clock.advance(100)
    fresh, _ = executions.submit("jobs-manager", {})

    def ids(**kwargs) -> list[str]:
        return [d["id"] for d in executions.stale(**kwargs).items]

    assert ids(older_than=60) == [old_submitted["id"]]
    assert sorted(ids(older_than=60, statuses=("SUBMITTED", "RUNNING"))) == sorted(
        [old_submitted["id"], old_running["id"]]
    )
    assert ids(older_than=60, statuses=("SUBMITTED", "RUNNING"), actors=["jobs-indexer"]) == [
        old_running["id"]
    ]
    assert ids(older_than=101) == []
    clock.advance(1)
    assert ids(older_than=0.5) == [old_submitted["id"], fresh["id"]]  # oldest first
    assert len(executions.stale(older_than=0.5, limit=1).items) == 1


def test_stale_looks_at_the_last_change_not_the_creation(any_store, clock):
    executions = Executions(any_store, clock=clock)
    doc, _ = executions.submit("jobs-manager", {})
    clock.advance(100)
    executions.start(doc["id"])
    executions.requeue(doc["id"], "retry")  # touched just now
    assert executions.stale(older_than=60).items == []
    clock.advance(61)
    assert [d["id"] for d in executions.stale(older_than=60).items] == [doc["id"]]
