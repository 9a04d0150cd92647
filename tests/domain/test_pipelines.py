"""pipelinejobs.domain.pipelines on its own: identity from components, immutable components,
updates by compare-and-set, status actions, and how a launch finds its pipeline."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipelinejobs.domain.clock import iso
from pipelinejobs.domain.identifiers import Identifiers
from pipelinejobs.domain.pipelines import (
    ACTIVE,
    DISABLED,
    MUTABLE,
    RETIRED,
    Pipelines,
    component_ids,
)
from pipelinejobs.errors import (
    Conflict,
    ImmutableField,
    NotFound,
    PermissionDenied,
    SchemaValidationError,
    TooManyConflicts,
    UnknownIdentifierType,
)

APP = {"id": "tacobot9000-0.1.0u1", "inputs": {}, "parameters": {"cheese": True}}
ACTOR = {"id": "G1p783PxpalBB", "repo": "sd2e/reactor:latest"}
CONTAINER = {"repo": "sd2e/bbq-brisket:0.5.0", "options": {"smoke": True}}
SERVICE = {"uri": "https://api.tacc.cloud/", "identifier": "tenant"}
DEFINITION: dict[str, Any] = {
    "name": "Tacobot 9001",
    "description": "tacos",
    "components": [APP, CONTAINER],
    "processing_levels": ["1"],
    "accepts": ["CSV"],
    "produces": ["PNG"],
}


@pytest.fixture
def pipelines(any_store: Any, clock: Any) -> Pipelines:
    return Pipelines(any_store, Identifiers("sd2e.org"), clock=clock)


def definition(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(DEFINITION), **changes}


# -- identity --------------------------------------------------------------------------------


def test_create_stores_the_definition_with_bookkeeping(pipelines: Pipelines, clock: Any):
    result = pipelines.create(definition())

    assert result.changed is True
    doc = result.pipeline
    assert doc["uuid"] == Identifiers("sd2e.org").pipeline(DEFINITION["components"])
    assert doc["uuid"].startswith("106")
    assert doc["status"] == ACTIVE
    assert (doc["version"], doc["token_rotation"]) == (0, 0)
    assert doc["created"] == doc["updated"] == iso(clock.now)
    assert doc["component_ids"] == ["tacobot9000-0.1.0u1"]
    for field in ("name", "description", "components", "processing_levels", "accepts"):
        assert doc[field] == DEFINITION[field]
    assert "task" not in doc
    assert pipelines.get(doc["uuid"]) == doc


def test_create_records_the_registering_task(pipelines: Pipelines):
    doc = pipelines.create(definition(), task="/actors/v2/x/executions/abc").pipeline

    assert doc["task"] == "/actors/v2/x/executions/abc"
    # Registering again from elsewhere keeps the first task.
    again = pipelines.create(definition(), task="/actors/v2/x/executions/other")
    assert again.changed is False
    assert again.pipeline["task"] == "/actors/v2/x/executions/abc"


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Other name"},
        {"description": "other"},
        {"accepts": ["TSV"], "produces": ["*"], "processing_levels": ["2"]},
        {"components": [dict(reversed(list(APP.items()))), CONTAINER]},
    ],
    ids=["name", "description", "file-types-and-levels", "component-key-order"],
)
def test_only_components_make_the_uuid(pipelines: Pipelines, changes: dict[str, Any]):
    first = pipelines.create(definition())

    again = pipelines.create(definition(**changes))

    assert again.changed is False
    assert again.pipeline["uuid"] == first.pipeline["uuid"]
    assert again.pipeline == first.pipeline  # create never updates
    assert pipelines.store.count("pipelines") == 1


@pytest.mark.parametrize(
    "components",
    [
        [APP],
        [APP, {**CONTAINER, "options": {"smoke": False}}],
        [CONTAINER, APP],  # the order is part of the canonical JSON
        [APP, CONTAINER, SERVICE],
    ],
    ids=["fewer", "one-value", "order", "more"],
)
def test_any_change_in_components_is_another_pipeline(pipelines: Pipelines, components: list):
    first = pipelines.create(definition()).pipeline
    # Its app id is one pipeline's at a time: retired, the first releases it.
    pipelines.set_status(first["uuid"], "retire")

    other = pipelines.create(definition(components=components))

    assert other.changed is True
    assert other.pipeline["uuid"] != first["uuid"]


def test_the_namespace_domain_changes_the_uuid(any_store: Any, clock: Any):
    ours = Pipelines(any_store, Identifiers("sd2e.org"), clock=clock).uuid_for(DEFINITION)
    theirs = Pipelines(any_store, Identifiers("example.org"), clock=clock).uuid_for(DEFINITION)

    assert ours != theirs


@pytest.mark.parametrize(
    ("components", "ids"),
    [
        ([APP, CONTAINER], ["tacobot9000-0.1.0u1"]),
        ([ACTOR, APP], ["G1p783PxpalBB", "tacobot9000-0.1.0u1"]),
        ([SERVICE, CONTAINER], []),
        ([APP, {**APP, "inputs": {"x": 1}}], ["tacobot9000-0.1.0u1"]),
        ([{"id": 5}, "text", None], []),
    ],
)
def test_component_ids_are_the_sorted_string_ids(components: list, ids: list[str]):
    assert component_ids(components) == ids


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"components": []}, "components"),
        (
            {"components": [{"id": "e1LqaqMyqq4xB", "opts": {"cheese": True}}]},
            "components/0",
        ),
        ({"owner": "me"}, ""),
        ({"processing_levels": ["4"]}, "processing_levels/0"),
    ],
)
def test_create_refuses_invalid_definitions(
    pipelines: Pipelines, changes: dict[str, Any], path: str
):
    with pytest.raises(SchemaValidationError) as err:
        pipelines.create(definition(**changes))

    assert err.value.path == path
    assert pipelines.store.count("pipelines") == 0


def test_get_refuses_unknown_and_mistyped_uuids(pipelines: Pipelines):
    unknown = pipelines.uuid_for(DEFINITION)
    with pytest.raises(NotFound):
        pipelines.get(unknown)
    with pytest.raises(UnknownIdentifierType):
        pipelines.get("107" + unknown[3:])
    with pytest.raises(UnknownIdentifierType):
        pipelines.get("tacobot")


# -- update ------------------------------------------------------------------------------------


def test_update_changes_mutable_fields_and_bumps_the_version(pipelines: Pipelines, clock: Any):
    uuid = pipelines.create(definition()).pipeline["uuid"]
    clock.advance(60)

    result = pipelines.update(uuid, {"name": "New", "description": "new", "accepts": ["TSV"]})

    assert result.changed is True
    doc = result.pipeline
    assert (doc["name"], doc["description"], doc["accepts"]) == ("New", "new", ["TSV"])
    assert doc["version"] == 1
    assert doc["updated"] == iso(clock.now)
    assert doc["created"] == iso(clock.now - 60)
    assert doc["uuid"] == uuid
    assert pipelines.get(uuid) == doc


def test_update_with_the_stored_values_changes_nothing(pipelines: Pipelines, clock: Any):
    before = pipelines.create(definition()).pipeline
    clock.advance(60)

    result = pipelines.update(before["uuid"], {"name": DEFINITION["name"], **DEFINITION})

    assert result.changed is False
    assert pipelines.get(before["uuid"]) == before


def test_update_refuses_different_components(pipelines: Pipelines):
    before = pipelines.create(definition()).pipeline

    with pytest.raises(ImmutableField) as err:
        pipelines.update(before["uuid"], {"name": "x", "components": [APP]})

    assert "components are immutable" in err.value.message
    assert err.value.detail["path"] == "components"
    assert pipelines.get(before["uuid"]) == before


@pytest.mark.parametrize("field", ["uuid", "status", "version", "token_rotation", "created"])
def test_update_refuses_fields_outside_the_mutable_ones(pipelines: Pipelines, field: str):
    before = pipelines.create(definition()).pipeline
    assert field not in MUTABLE

    with pytest.raises(ImmutableField) as err:
        pipelines.update(before["uuid"], {"name": "x", field: before[field]})

    assert err.value.detail["path"] == field
    assert pipelines.get(before["uuid"]) == before


def test_update_refuses_invalid_values(pipelines: Pipelines):
    before = pipelines.create(definition()).pipeline

    with pytest.raises(SchemaValidationError) as err:
        pipelines.update(before["uuid"], {"name": "fine", "produces": "PNG"})

    assert err.value.path == "produces"
    assert pipelines.get(before["uuid"]) == before


def test_a_refusing_check_leaves_the_pipeline_unchanged(pipelines: Pipelines):
    before = pipelines.create(definition()).pipeline
    seen: list[dict[str, Any]] = []

    def check(doc: dict[str, Any]) -> None:
        seen.append(doc)
        raise PermissionDenied("no")

    with pytest.raises(PermissionDenied):
        pipelines.update(before["uuid"], {"name": "x"}, check=check)
    with pytest.raises(PermissionDenied):
        pipelines.set_status(before["uuid"], "retire", check=check)
    with pytest.raises(PermissionDenied):
        pipelines.rotate_token(before["uuid"], check=check)

    assert seen == [before, before, before]
    assert pipelines.get(before["uuid"]) == before


def test_an_update_that_loses_the_race_is_retried_on_the_fresh_document(pipelines: Pipelines):
    uuid = pipelines.create(definition()).pipeline["uuid"]
    calls = []

    def interfere(doc: dict[str, Any]) -> None:
        calls.append(doc["version"])
        if len(calls) == 1:  # another writer gets in between our read and our write
            pipelines.update(uuid, {"description": "theirs"})

    result = pipelines.update(uuid, {"name": "ours"}, check=interfere)

    assert calls == [0, 1]
    assert result.pipeline["name"] == "ours"
    assert result.pipeline["description"] == "theirs"
    assert result.pipeline["version"] == 2


def test_an_update_that_always_loses_gives_up(any_store: Any, clock: Any):
    """Past the budget (``store.cas_retries``): TooManyConflicts, and ours not written."""
    pipelines = Pipelines(any_store, Identifiers("sd2e.org"), clock=clock, retries=5)
    uuid = pipelines.create(definition()).pipeline["uuid"]
    counter = iter(range(1000))

    def interfere(doc: dict[str, Any]) -> None:
        pipelines.update(uuid, {"description": f"theirs {next(counter)}"})

    with pytest.raises(TooManyConflicts) as info:
        pipelines.update(uuid, {"name": "ours"}, check=interfere)

    assert info.value.detail["retry_after"] > 0
    assert pipelines.get(uuid)["name"] == DEFINITION["name"]
    assert pipelines.get(uuid)["description"] == "theirs 5"  # six tries, each lost once


# -- status actions ------------------------------------------------------------------------------

#: (actions that reach the start status, action) -> resulting status, or Conflict.
STATUS_TABLE = [
    ((), "disable", DISABLED),
    ((), "enable", ACTIVE),
    ((), "retire", RETIRED),
    (("disable",), "disable", DISABLED),
    (("disable",), "enable", ACTIVE),
    (("disable",), "retire", RETIRED),
    (("retire",), "disable", Conflict),
    (("retire",), "enable", Conflict),
    (("retire",), "retire", RETIRED),
]


@pytest.mark.parametrize(("path", "action", "expected"), STATUS_TABLE)
def test_status_actions(pipelines: Pipelines, path: tuple[str, ...], action: str, expected: Any):
    uuid = pipelines.create(definition()).pipeline["uuid"]
    for step in path:
        pipelines.set_status(uuid, step)
    before = pipelines.get(uuid)

    if expected is Conflict:
        with pytest.raises(Conflict) as err:
            pipelines.set_status(uuid, action)
        assert err.value.detail["state"] == before["status"]
        assert action in err.value.message
        assert pipelines.get(uuid) == before
        return
    result = pipelines.set_status(uuid, action)
    assert result.pipeline["status"] == expected
    assert result.changed is (expected != before["status"])
    assert result.pipeline["version"] == before["version"] + int(result.changed)


def test_rotate_token_counts_rotations(pipelines: Pipelines):
    uuid = pipelines.create(definition()).pipeline["uuid"]

    assert pipelines.rotate_token(uuid).pipeline["token_rotation"] == 1
    assert pipelines.rotate_token(uuid).pipeline["token_rotation"] == 2
    assert pipelines.get(uuid)["token_rotation"] == 2


@pytest.mark.parametrize("status", ["disable", "retire"])
def test_require_active_refuses_inactive_pipelines(pipelines: Pipelines, status: str):
    doc = pipelines.create(definition()).pipeline
    pipelines.require_active(doc)

    inactive = pipelines.set_status(doc["uuid"], status).pipeline

    with pytest.raises(Conflict) as err:
        pipelines.require_active(inactive)
    assert err.value.detail["state"] == inactive["status"]


# -- resolve ---------------------------------------------------------------------------------------


def test_resolve_by_uuid_or_by_component_id(pipelines: Pipelines):
    tacobot = pipelines.create(definition()).pipeline
    reactor = pipelines.create(definition(name="r", components=[ACTOR, CONTAINER])).pipeline

    assert pipelines.resolve(uuid=reactor["uuid"]) == reactor
    assert pipelines.resolve(app_id="tacobot9000-0.1.0u1") == tacobot
    assert pipelines.resolve(app_id="G1p783PxpalBB") == reactor
    # A uuid wins over an app id.
    assert pipelines.resolve(uuid=reactor["uuid"], app_id="tacobot9000-0.1.0u1") == reactor


@pytest.mark.parametrize("app_id", [None, "", "unknown-app"])
def test_resolve_without_a_match_is_not_found(pipelines: Pipelines, app_id: str | None):
    pipelines.create(definition())

    with pytest.raises(NotFound):
        pipelines.resolve(app_id=app_id)


def test_resolve_refuses_an_ambiguous_component_id(pipelines: Pipelines):
    """Registration refuses a second live pipeline for an app id (test_pipeline_app_ids);
    two stored before that rule are still told apart only by pipeline_uuid."""
    first = pipelines.create(definition()).pipeline
    legacy = {**first, "uuid": pipelines.uuid_for(definition(components=[APP]))}
    pipelines.store.insert("pipelines", {**legacy, "components": [APP], "version": 0})

    with pytest.raises(Conflict) as err:
        pipelines.resolve(app_id=APP["id"])

    assert "pipeline_uuid" in err.value.message
