"""App ids are unique among pipelines: claims, on every store (domain/pipelines.py).

The seed: "the app's id must be unique not only in the Agave Apps Catalog ... but also
in the Data Catalog Pipelines collection". Registration claims each component id by
inserting a document keyed by it; a retired pipeline releases its ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.store.base import Store
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.domain.pipelines import CLAIM_GRACE, CLAIMS, Pipelines
from pipelinejobs.errors import Conflict
from tests.support import FakeClock

APP = "tacobot9000-0.1.0u1"


def definition(name: str, app: str = APP, image: str = "sd2e/tacobot:0.1") -> dict[str, Any]:
    return {
        "name": name,
        "components": [{"id": app, "inputs": {}, "parameters": {"CONTAINER_IMAGE": image}}],
    }


@pytest.fixture(params=["memory", "sqlite", "mongomock"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "p.sqlite3")
        yield sqlite
        sqlite.close()
        return
    mongomock = pytest.importorskip("mongomock")
    from pipelinejobs.adapters.store.mongo import MongoStore

    mongo = MongoStore(client=mongomock.MongoClient(), database="t")
    yield mongo
    mongo.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pipelines(store: Store, clock: FakeClock) -> Pipelines:
    return Pipelines(store, clock=clock)


def taken_message(app: str, uuid: str, name: str) -> str:
    return (
        f"app id {app!r} is already the id of a component of pipeline {uuid} ({name!r}): an "
        f"app id must be unique among pipelines; retire that pipeline to release it, or "
        f"give this app another id"
    )


def test_a_second_pipeline_with_a_held_app_id_is_refused_naming_the_holder(
    pipelines: Pipelines, store: Store
):
    first = pipelines.create(definition("Tacobot")).pipeline

    with pytest.raises(Conflict) as err:
        pipelines.create(definition("Tacobot again", image="sd2e/tacobot:0.2"))

    assert err.value.message == taken_message(APP, first["uuid"], "Tacobot")
    assert err.value.detail["held_by"] == first["uuid"]
    assert err.value.detail["held_by_name"] == "Tacobot"
    assert store.count("pipelines") == 1
    assert store.get(CLAIMS, APP)["pipeline_uuid"] == first["uuid"]  # type: ignore[index]


def test_check_app_ids_refuses_without_writing(pipelines: Pipelines, store: Store):
    first = pipelines.create(definition("Tacobot")).pipeline
    before = store.count(CLAIMS)

    with pytest.raises(Conflict) as err:
        pipelines.check_app_ids(definition("Other", image="x/y:1"))

    assert err.value.message == taken_message(APP, first["uuid"], "Tacobot")
    assert store.count(CLAIMS) == before
    pipelines.check_app_ids(definition("Tacobot"))  # its own components: fine


def test_the_same_components_again_find_the_pipeline(pipelines: Pipelines):
    first = pipelines.create(definition("Tacobot"))
    again = pipelines.create(definition("Tacobot"))

    assert first.changed and not again.changed
    assert again.pipeline["uuid"] == first.pipeline["uuid"]


def test_the_holders_current_name_is_named(pipelines: Pipelines):
    first = pipelines.create(definition("Tacobot")).pipeline
    pipelines.update(first["uuid"], {"name": "Tacobot renamed"})

    with pytest.raises(Conflict) as err:
        pipelines.create(definition("Other", image="x/y:1"))

    assert err.value.message == taken_message(APP, first["uuid"], "Tacobot renamed")


def test_a_retired_pipeline_releases_its_app_id(pipelines: Pipelines, store: Store):
    old = pipelines.create(definition("Tacobot")).pipeline
    pipelines.set_status(old["uuid"], "retire")

    new = pipelines.create(definition("Tacobot fixed", image="sd2e/tacobot:0.2"))

    assert new.changed
    assert store.get(CLAIMS, APP)["pipeline_uuid"] == new.pipeline["uuid"]  # type: ignore[index]
    assert pipelines.resolve(app_id=APP)["uuid"] == new.pipeline["uuid"]
    # The retired one's components again: it exists (retired), nothing is claimed.
    again = pipelines.create(definition("Tacobot"))
    assert not again.changed and again.pipeline["status"] == "retired"
    assert store.get(CLAIMS, APP)["pipeline_uuid"] == new.pipeline["uuid"]  # type: ignore[index]


def test_a_disabled_pipeline_keeps_its_app_id(pipelines: Pipelines):
    old = pipelines.create(definition("Tacobot")).pipeline
    pipelines.set_status(old["uuid"], "disable")

    with pytest.raises(Conflict) as err:
        pipelines.create(definition("Other", image="x/y:1"))

    assert err.value.detail["held_by"] == old["uuid"]


def test_a_registration_that_claimed_but_never_stored_holds_the_id_for_a_grace_period(
    pipelines: Pipelines, store: Store, clock: FakeClock
):
    """Another registration between its claim and its insert: the id is held (by a
    pipeline not stored yet) — and taken over only once the claim is stale."""
    ghost = pipelines.uuid_for(definition("Ghost", image="ghost/app:1"))
    pipelines.claim_app_ids(ghost, "Ghost", [APP])

    with pytest.raises(Conflict) as err:
        pipelines.create(definition("Tacobot"))
    assert err.value.message == taken_message(APP, ghost, "Ghost")

    clock.advance(CLAIM_GRACE + 1)
    created = pipelines.create(definition("Tacobot"))
    assert created.changed
    assert store.get(CLAIMS, APP)["pipeline_uuid"] == created.pipeline["uuid"]  # type: ignore[index]


def test_a_refused_registration_releases_the_ids_it_claimed(pipelines: Pipelines, store: Store):
    held = pipelines.create(definition("Holder", app="zzz-app-1.0")).pipeline
    both = {
        "name": "Both",
        "components": [
            {"id": "aaa-app-1.0", "inputs": {}, "parameters": {}},
            {"id": "zzz-app-1.0", "inputs": {}, "parameters": {}},
        ],
    }

    with pytest.raises(Conflict) as err:
        pipelines.create(both)

    assert err.value.detail["held_by"] == held["uuid"]
    assert store.get(CLAIMS, "aaa-app-1.0") is None  # claimed first, given back
    assert pipelines.create(definition("Other", app="aaa-app-1.0")).changed


def test_a_pipeline_registered_before_claims_holds_its_ids(pipelines: Pipelines, store: Store):
    legacy = pipelines.create(definition("Legacy")).pipeline
    store.delete(CLAIMS, APP)  # as it was stored before issue 13

    with pytest.raises(Conflict) as err:
        pipelines.create(definition("New", image="x/y:1"))

    assert err.value.detail["held_by"] == legacy["uuid"]


@pytest.mark.parametrize("store", ["memory", "sqlite"], indirect=True)
def test_two_registrations_at_once_one_wins(pipelines: Pipelines, store: Store):
    """Both pass every check, then insert their claim at the same moment: the store's
    unique key lets exactly one in; the other is refused naming the winner."""
    original = store.insert
    meet = threading.Barrier(2)

    def insert(collection: str, doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
        if collection == CLAIMS:
            meet.wait(10)
        return original(collection, doc, **kw)

    store.insert = insert  # type: ignore[method-assign]
    outcomes: dict[int, Any] = {}

    def register(i: int) -> None:
        try:
            outcomes[i] = pipelines.create(definition(f"P{i}", image=f"x/p{i}:1")).pipeline
        except Conflict as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=register, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    won = [o for o in outcomes.values() if isinstance(o, dict)]
    lost = [o for o in outcomes.values() if isinstance(o, Conflict)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert lost[0].detail["held_by"] == won[0]["uuid"]
    assert store.count("pipelines") == 1


def test_resolve_prefers_the_live_pipeline_over_a_retired_one(pipelines: Pipelines):
    old = pipelines.create(definition("Old")).pipeline
    pipelines.set_status(old["uuid"], "retire")
    new = pipelines.create(definition("New", image="sd2e/tacobot:0.2")).pipeline

    assert pipelines.resolve(app_id=APP)["uuid"] == new["uuid"]


def test_an_empty_component_id_claims_nothing(pipelines: Pipelines, store: Store):
    """No launch can name "" (found by schemathesis: it made a claim without a key)."""
    first = pipelines.create(definition("Empty", app=""))
    second = pipelines.create(definition("Empty too", app="", image="x/y:1"))

    assert first.changed and second.changed
    assert store.count(CLAIMS) == 0
