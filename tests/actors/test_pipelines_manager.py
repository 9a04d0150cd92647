"""The pipelines-manager actor, end to end: messages in through ``Runtime.submit``,
delivered by the stub bus's ``join()``, outcomes read from the execution record and
the store.

Messages follow the seed's "Pipelines Manager" section: create by sending the
pipeline document, update by sending the edited document with ``token=`` (or a
``pipeline_manager_update`` message), plus the retire/disable/enable/get/rotate_token
actions this service adds. They are sent as an admin would send them: the seed's
Tacobot has a container component, which only an admin key may register (who may
register what is tested in tests/gateway/test_compute_rights.py).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.access.keys import ADMIN
from pipelinejobs.adapters.bus.stub import StubBus
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.errors import MalformedMessage, SchemaValidationError
from pipelinejobs.runtime.dispatch import Runtime
from tests.support import FakeClock as Clock
from tests.support import runtime_config, stub

ALIAS = "pipelines-manager"
PIPELINE_UUID_RE = re.compile(r"^106[0-9a-f]{5}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")

#: The seed's Tacobot, with components in forms the schema accepts.
PIPELINE: dict[str, Any] = {
    "name": "Tacobot 9001",
    "description": "Creates even better breakfast tacos out of silicon, ozone, and shredded GPUs",
    "components": [
        {
            "id": "tacobot9000-0.1.0u1",
            "inputs": {},
            "parameters": {"CONTAINER_IMAGE": "sd2e/tacobot:0.1.0", "cheese": True},
        },
        {"repo": "sd2e/bbq-brisket:0.5.0", "options": {"smoke": True, "quantity": 4}},
    ],
    "processing_levels": ["1"],
    "accepts": ["CSV"],
    "produces": ["PNG"],
}
OTHER: dict[str, Any] = {
    "name": "Other",
    "components": [{"id": "G1p783PxpalBB", "repo": "sd2e/reactor:latest"}],
}


# -- helpers --------------------------------------------------------------------------


def run(rt: Runtime, message: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Submit to the pipelines-manager, deliver everything, return the execution."""
    execution = rt.submit(ALIAS, message, params, role=ADMIN)
    stub(rt).join()
    return rt.executions.get(execution["id"])


def ok(rt: Runtime, message: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
    execution = run(rt, message, params)
    assert execution["status"] == "COMPLETE", execution["error"]
    assert execution["error"] is None
    return execution["result"]


def refused(
    rt: Runtime, message: Any, params: dict[str, Any] | None = None, *, error: str
) -> dict[str, Any]:
    execution = run(rt, message, params)
    assert execution["status"] == "ERROR", execution["result"]
    assert execution["result"] is None
    assert execution["error"]["error"] == error, execution["error"]
    return execution["error"]


def create(rt: Runtime, definition: dict[str, Any] | None = None) -> tuple[str, str]:
    result = ok(rt, copy.deepcopy(definition or PIPELINE))
    assert result["created"] is True
    return result["uuid"], result["token"]


def stored(rt: Runtime, uuid: str) -> dict[str, Any]:
    doc = rt.store.get("pipelines", uuid)
    assert doc is not None
    return doc


def action(uuid: str, name: str, token: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"uuid": uuid, "action": name}
    if token is not None:
        message["token"] = token
    return message


def update(uuid: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    return {"uuid": uuid, "action": "update", "body": body, "token": token}


@pytest.fixture(params=["memory", "sqlite"])
def clocked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Runtime, Clock]]:
    """A runtime on the stub bus whose clock the test moves."""
    clock = Clock()
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "c.sqlite3")
    bus = StubBus()
    rt = Runtime(runtime_config(tmp_path), store=store, bus=bus, clock=clock)  # type: ignore[arg-type]
    bus.deliver = rt.deliver
    yield rt, clock
    rt.close()


# -- create ------------------------------------------------------------------------------


def test_create_returns_typed_uuid_and_update_token(runtime: Runtime):
    execution = run(runtime, copy.deepcopy(PIPELINE))

    assert execution["status"] == "COMPLETE"
    result = execution["result"]
    uuid = result["uuid"]
    assert PIPELINE_UUID_RE.match(uuid)
    assert uuid == runtime.ids.pipeline(PIPELINE["components"])
    assert result["created"] is True
    assert result["status"] == "active"
    assert TOKEN_RE.match(result["token"])
    assert result["token"] == runtime.tokens.update_token(uuid)
    assert any(line.endswith("DEBUG Action selected: create") for line in execution["logs"])
    assert any(f"Created pipeline {uuid}" in line for line in execution["logs"])
    # The token goes to the caller only, never into the readable log lines.
    assert not any(result["token"] in line for line in execution["logs"])

    doc = stored(runtime, uuid)
    assert doc["name"] == PIPELINE["name"]
    assert doc["description"] == PIPELINE["description"]
    assert doc["components"] == PIPELINE["components"]
    assert doc["component_ids"] == ["tacobot9000-0.1.0u1"]
    assert doc["status"] == "active"
    assert runtime.store.count("pipelines") == 1


def test_create_by_actor_id_works_like_the_alias(runtime: Runtime):
    execution = runtime.submit(runtime.actor_id(ALIAS), copy.deepcopy(PIPELINE), role=ADMIN)
    stub(runtime).join()
    done = runtime.executions.get(execution["id"])
    assert done["actor"] == ALIAS
    assert done["status"] == "COMPLETE"
    assert done["result"]["uuid"] == runtime.ids.pipeline(PIPELINE["components"])


def _reordered_keys(definition: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(definition)
    out["components"] = [dict(reversed(list(c.items()))) for c in out["components"]]
    return out


@pytest.mark.parametrize(
    "again",
    [
        pytest.param(lambda d: d, id="identical"),
        pytest.param(lambda d: {**d, "name": "Tacobot 9002"}, id="other-name"),
        pytest.param(
            lambda d: {**d, "description": "new", "accepts": ["TSV"], "produces": []},
            id="other-description-and-types",
        ),
        pytest.param(_reordered_keys, id="component-keys-in-another-order"),
    ],
)
def test_same_components_again_find_the_existing_pipeline_without_its_token(
    runtime: Runtime, again: Any
):
    uuid, token = create(runtime)
    before = stored(runtime, uuid)

    execution = run(runtime, again(copy.deepcopy(PIPELINE)))

    assert execution["status"] == "COMPLETE"
    result = execution["result"]
    assert result["uuid"] == uuid
    assert result["created"] is False
    assert "token" not in result
    assert token not in repr(result)
    assert "already exists" in result["message"]
    assert any("already exists" in line for line in execution["logs"])
    # Registering again changes nothing: an update needs the token.
    assert stored(runtime, uuid) == before
    assert runtime.store.count("pipelines") == 1


def test_different_components_make_a_different_pipeline(runtime: Runtime):
    first, first_token = create(runtime)
    changed = copy.deepcopy(PIPELINE)
    changed["components"][0]["id"] = "tacobot9000-0.2.0u1"  # an app id is one pipeline's
    changed["components"][1]["options"]["quantity"] = 5
    second, second_token = create(runtime, changed)

    assert second != first
    assert second_token != first_token
    assert runtime.store.count("pipelines") == 2


def test_redelivered_create_still_hands_out_the_token(runtime: Runtime):
    """At-least-once delivery: if the first delivery died after inserting the pipeline
    but before recording its result, the redelivery must not withhold the token (no one
    would ever have received it)."""
    execution = runtime.submit(ALIAS, copy.deepcopy(PIPELINE), role=ADMIN)
    stub(runtime).join()
    first = runtime.executions.get(execution["id"])["result"]

    runtime.executions.requeue(execution["id"], "worker lost")
    stub(runtime).publish(ALIAS, execution["id"])
    stub(runtime).join()
    again = runtime.executions.get(execution["id"])

    assert again["status"] == "COMPLETE"
    assert again["attempts"] == 2
    assert again["result"]["uuid"] == first["uuid"]
    assert again["result"]["created"] is True
    assert again["result"]["token"] == first["token"]
    assert runtime.store.count("pipelines") == 1


# -- update ------------------------------------------------------------------------------


def test_update_the_seed_way_changes_name_and_description(runtime: Runtime):
    uuid, token = create(runtime)
    edited = copy.deepcopy(PIPELINE)
    edited["name"] = "Tacobot 9002"
    edited["description"] = "Now with more salsa"
    edited["produces"] = ["PNG", "JSON"]

    execution = run(runtime, edited, {"token": token})

    assert execution["status"] == "COMPLETE", execution["error"]
    assert execution["result"] == {
        "uuid": uuid,
        "action": "update",
        "changed": True,
        "status": "active",
        "token": token,  # "returned after each update or management action"
    }
    assert any(line.endswith("DEBUG Action selected: update") for line in execution["logs"])
    assert any(f"Updated pipeline {uuid}" in line for line in execution["logs"])
    doc = stored(runtime, uuid)
    assert doc["name"] == "Tacobot 9002"
    assert doc["description"] == "Now with more salsa"
    assert doc["produces"] == ["PNG", "JSON"]
    assert doc["components"] == PIPELINE["components"]
    assert runtime.store.count("pipelines") == 1


def test_update_the_seed_way_with_an_explicit_uuid_parameter(runtime: Runtime):
    uuid, token = create(runtime)
    edited = {**copy.deepcopy(PIPELINE), "name": "Renamed"}

    result = ok(runtime, edited, {"token": token, "uuid": uuid})

    assert result["uuid"] == uuid
    assert stored(runtime, uuid)["name"] == "Renamed"


def test_update_message_changes_name_and_description(runtime: Runtime):
    uuid, token = create(runtime)
    version = stored(runtime, uuid)["version"]

    result = ok(runtime, update(uuid, {"name": "Tacobot 9003", "description": "d2"}, token))

    assert result == {
        "uuid": uuid,
        "action": "update",
        "changed": True,
        "status": "active",
        "token": token,
    }
    doc = stored(runtime, uuid)
    assert (doc["name"], doc["description"]) == ("Tacobot 9003", "d2")
    assert doc["version"] == version + 1
    assert doc["uuid"] == uuid


def test_update_message_takes_the_token_from_the_url(runtime: Runtime):
    uuid, token = create(runtime)
    message = {"uuid": uuid, "action": "update", "body": {"name": "By URL"}}

    ok(runtime, message, {"token": token})

    assert stored(runtime, uuid)["name"] == "By URL"


def test_update_with_unchanged_values_reports_no_change(runtime: Runtime):
    uuid, token = create(runtime)
    before = stored(runtime, uuid)

    result = ok(runtime, update(uuid, {"name": PIPELINE["name"]}, token))

    assert result["changed"] is False
    assert stored(runtime, uuid) == before


def test_update_with_the_same_components_is_accepted(runtime: Runtime):
    uuid, token = create(runtime)
    body = {"name": "Same parts", "components": _reordered_keys(PIPELINE)["components"]}

    result = ok(runtime, update(uuid, body, token))

    assert result["changed"] is True
    assert stored(runtime, uuid)["name"] == "Same parts"


def test_update_with_different_components_is_refused(runtime: Runtime):
    uuid, token = create(runtime)
    before = stored(runtime, uuid)
    body = {"name": "Sneaky", "components": OTHER["components"]}

    error = refused(runtime, update(uuid, body, token), error="ImmutableField")

    assert "components are immutable" in error["message"]
    assert error["path"] == "components"
    assert stored(runtime, uuid) == before


def test_update_the_seed_way_with_changed_components_names_components(runtime: Runtime):
    uuid, token = create(runtime)
    before = stored(runtime, uuid)
    edited = {**copy.deepcopy(PIPELINE), "name": "Sneaky", "components": OTHER["components"]}

    error = refused(runtime, edited, {"token": token}, error="NotFound")

    assert error["path"] == "components"
    assert "components" in error["message"]
    assert stored(runtime, uuid) == before
    assert runtime.store.count("pipelines") == 1


def test_update_the_seed_way_with_uuid_and_changed_components_is_immutable(runtime: Runtime):
    uuid, token = create(runtime)
    before = stored(runtime, uuid)
    edited = {**copy.deepcopy(PIPELINE), "components": OTHER["components"]}

    error = refused(runtime, edited, {"token": token, "uuid": uuid}, error="ImmutableField")

    assert "components are immutable" in error["message"]
    assert stored(runtime, uuid) == before


@pytest.mark.parametrize(
    ("body", "error", "path"),
    [
        ({"status": "retired"}, "ImmutableField", "status"),
        ({"uuid": "1064aaf1-459c-5e42-820d-b822aa4b3990"}, "ImmutableField", "uuid"),
        ({"name": 5}, "SchemaValidationError", "name"),
        ({"processing_levels": ["4"]}, "SchemaValidationError", "processing_levels/0"),
    ],
)
def test_update_of_unknown_or_invalid_fields_is_refused(
    runtime: Runtime, body: dict[str, Any], error: str, path: str
):
    uuid, token = create(runtime)
    before = stored(runtime, uuid)

    found = refused(runtime, update(uuid, body, token), error=error)

    assert found["path"] == path
    assert stored(runtime, uuid) == before


def test_update_of_an_unknown_pipeline_is_not_found(runtime: Runtime):
    unknown = runtime.ids.pipeline(OTHER["components"])
    admin = runtime.tokens.mint_admin_token()

    error = refused(runtime, update(unknown, {"name": "x"}, admin), error="NotFound")

    assert unknown in error["message"]


# -- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["disable", "enable", "retire", "rotate_token"])
def test_actions_without_a_token_are_refused(runtime: Runtime, name: str):
    uuid, _ = create(runtime)
    before = stored(runtime, uuid)

    error = refused(runtime, action(uuid, name), error="PermissionDenied")

    assert "token" in error["message"]
    assert error["uuid"] == uuid
    assert stored(runtime, uuid) == before


def test_update_message_without_a_token_is_refused_at_submit(runtime: Runtime):
    uuid, _ = create(runtime)
    executions = runtime.store.count("executions")

    with pytest.raises(SchemaValidationError) as err:
        runtime.submit(ALIAS, {"uuid": uuid, "action": "update", "body": {"name": "x"}})

    assert "'token'" in str(err.value)
    assert runtime.store.count("executions") == executions


def _wrong_tokens(rt: Runtime, uuid: str, other: str) -> dict[str, str]:
    right = rt.tokens.update_token(uuid)
    return {
        "made-up": "0123456789abcdef",
        "other-pipeline": rt.tokens.update_token(other),
        "one-char-off": right[:-1] + ("0" if right[-1] != "0" else "1"),
        "next-rotation": rt.tokens.update_token(uuid, 1),
        "forged-admin": "00000000" + "0" * 9,
    }


@pytest.mark.parametrize(
    "kind", ["made-up", "other-pipeline", "one-char-off", "next-rotation", "forged-admin"]
)
@pytest.mark.parametrize("form", ["update-message", "seed-form", "disable"])
def test_wrong_tokens_are_refused(runtime: Runtime, kind: str, form: str):
    uuid, _ = create(runtime)
    other, _ = create(runtime, OTHER)
    before = stored(runtime, uuid)
    token = _wrong_tokens(runtime, uuid, other)[kind]

    if form == "update-message":
        error = refused(runtime, update(uuid, {"name": "x"}, token), error="PermissionDenied")
    elif form == "seed-form":
        edited = {**copy.deepcopy(PIPELINE), "name": "x"}
        error = refused(runtime, edited, {"token": token}, error="PermissionDenied")
    else:
        error = refused(runtime, action(uuid, "disable", token), error="PermissionDenied")

    assert uuid in error["message"]
    assert stored(runtime, uuid) == before


def test_an_admin_token_is_accepted_in_place_of_the_update_token(runtime: Runtime):
    uuid, _ = create(runtime)

    ok(runtime, update(uuid, {"name": "By admin"}, runtime.tokens.mint_admin_token()))
    result = ok(runtime, action(uuid, "disable", runtime.tokens.mint_admin_token()))

    doc = stored(runtime, uuid)
    assert doc["name"] == "By admin"
    assert doc["status"] == result["status"] == "disabled"


def test_an_expired_admin_token_is_refused(clocked: tuple[Runtime, Clock]):
    rt, clock = clocked
    uuid, _ = create(rt)
    admin = rt.tokens.mint_admin_token()

    clock.now += 30.0
    ok(rt, update(uuid, {"name": "just in time"}, admin))
    clock.now += 1.5
    error = refused(rt, update(uuid, {"name": "too late"}, admin), error="PermissionDenied")

    assert "expired" in error["message"]
    assert stored(rt, uuid)["name"] == "just in time"


def test_the_update_token_stays_valid_across_updates(runtime: Runtime):
    uuid, token = create(runtime)

    for n in range(3):
        ok(runtime, update(uuid, {"name": f"v{n}"}, token))

    assert stored(runtime, uuid)["name"] == "v2"


# -- status actions and get ------------------------------------------------------------------


def test_disable_enable_retire(runtime: Runtime):
    uuid, token = create(runtime)

    statuses = []
    for name in ("disable", "enable", "disable", "retire"):
        result = ok(runtime, action(uuid, name, token))
        assert result["action"] == name
        assert result["changed"] is True
        statuses.append(result["status"])
        assert stored(runtime, uuid)["status"] == result["status"]

    assert statuses == ["disabled", "active", "disabled", "retired"]


@pytest.mark.parametrize("name", ["enable", "disable"])
def test_a_retired_pipeline_cannot_come_back(runtime: Runtime, name: str):
    uuid, token = create(runtime)
    ok(runtime, action(uuid, "retire", token))
    before = stored(runtime, uuid)

    error = refused(runtime, action(uuid, name, token), error="Conflict")

    assert error["state"] == "retired"
    assert "retired" in error["message"]
    assert stored(runtime, uuid) == before


@pytest.mark.parametrize(
    ("first", "again", "status"),
    [("disable", "disable", "disabled"), ("retire", "retire", "retired")],
)
def test_repeating_a_status_action_is_no_change(
    runtime: Runtime, first: str, again: str, status: str
):
    uuid, token = create(runtime)
    ok(runtime, action(uuid, first, token))
    version = stored(runtime, uuid)["version"]

    result = ok(runtime, action(uuid, again, token))

    assert result["changed"] is False
    assert result["status"] == status
    assert stored(runtime, uuid)["version"] == version


def test_enable_of_an_active_pipeline_is_no_change(runtime: Runtime):
    uuid, token = create(runtime)

    assert ok(runtime, action(uuid, "enable", token))["changed"] is False


def test_get_returns_the_pipeline_without_token_bookkeeping(runtime: Runtime):
    uuid, token = create(runtime)
    ok(runtime, action(uuid, "disable", token))

    execution = run(runtime, action(uuid, "get"))

    assert execution["status"] == "COMPLETE"
    assert any(line.endswith("DEBUG Action selected: get") for line in execution["logs"])
    pipeline = execution["result"]["pipeline"]
    assert "token_rotation" not in pipeline
    assert token not in repr(pipeline)
    assert pipeline["uuid"] == uuid
    assert pipeline["status"] == "disabled"
    assert pipeline["name"] == PIPELINE["name"]
    assert pipeline["components"] == PIPELINE["components"]


def test_get_of_an_unknown_pipeline_is_not_found(runtime: Runtime):
    unknown = runtime.ids.pipeline(OTHER["components"])

    error = refused(runtime, action(unknown, "get"), error="NotFound")

    assert error["uuid"] == unknown


# -- token rotation ----------------------------------------------------------------------


def test_rotate_token_needs_an_admin_token(runtime: Runtime):
    uuid, token = create(runtime)

    error = refused(runtime, action(uuid, "rotate_token", token), error="PermissionDenied")

    assert "admin" in error["message"]
    assert stored(runtime, uuid)["token_rotation"] == 0


def test_rotate_token_replaces_the_update_token(runtime: Runtime):
    uuid, old = create(runtime)

    result = ok(runtime, action(uuid, "rotate_token", runtime.tokens.mint_admin_token()))

    new = result["token"]
    assert result["uuid"] == uuid
    assert TOKEN_RE.match(new)
    assert new != old
    assert new == runtime.tokens.update_token(uuid, 1)
    assert stored(runtime, uuid)["token_rotation"] == 1
    refused(runtime, update(uuid, {"name": "old token"}, old), error="PermissionDenied")
    ok(runtime, update(uuid, {"name": "new token"}, new))
    assert stored(runtime, uuid)["name"] == "new token"
    assert "token_rotation" not in ok(runtime, action(uuid, "get"))["pipeline"]


# -- malformed messages are refused before anything is stored ------------------------------

TACOBOT_SEED = {
    "name": "Tacobot 9001",
    "description": "Creates even better breakfast tacos out of silicon, ozone, and shredded GPUs",
    "components": [
        {"id": "e1LqaqMyqq4xB", "opts": {"cheese": True, "salsa": True, "eggs": False}},
        {"id": "bbq-brisket-0.5.0", "parameters": {"smoke": True, "quantity": 4}},
    ],
    "processing_levels": ["1"],
    "accepts": ["CSV"],
    "produces": ["PNG"],
}
A_PIPELINE = "1064aaf1-459c-5e42-820d-b822aa4b3990"
A_JOB = "1074aaf1-459c-5e42-820d-b822aa4b3990"
TOKEN = "0df45d5e9e0f31e2"


@pytest.mark.parametrize(
    ("message", "params", "path"),
    [
        pytest.param(TACOBOT_SEED, {}, "components/0", id="seed-tacobot"),
        pytest.param({"uuid": A_PIPELINE, "action": "explode"}, {}, "action", id="explode"),
        pytest.param({"uuid": A_JOB, "action": "disable", "token": TOKEN}, {}, "uuid", id="job"),
        pytest.param({"uuid": "not-a-uuid", "action": "get"}, {}, "uuid", id="not-a-uuid"),
        pytest.param(update(A_JOB, {"name": "x"}, TOKEN), {}, "uuid", id="update-job-uuid"),
        pytest.param(update("nonsense", {"name": "x"}, TOKEN), {}, "uuid", id="update-garbage"),
        pytest.param(PIPELINE, {"token": TOKEN, "uuid": A_JOB}, "uuid", id="seed-form-job-uuid"),
        pytest.param({**PIPELINE, "components": []}, {}, "components", id="no-components"),
        pytest.param({**PIPELINE, "owner": "me"}, {}, "", id="extra-field"),
        pytest.param({"name": "no components"}, {}, "", id="missing-components"),
        pytest.param(
            {**update(A_PIPELINE, {"name": "x"}, TOKEN), "token": "short"}, {}, "token", id="short"
        ),
        pytest.param(
            {"uuid": A_PIPELINE, "action": "disable", "token": "x" * 18}, {}, "token", id="long"
        ),
    ],
)
def test_malformed_messages_are_refused_before_anything_is_stored(
    runtime: Runtime, message: dict[str, Any], params: dict[str, Any], path: str
):
    uuid, _ = create(runtime)
    before = stored(runtime, uuid)
    executions = runtime.store.count("executions")
    published = len(stub(runtime).published)

    with pytest.raises(SchemaValidationError) as err:
        runtime.submit(ALIAS, copy.deepcopy(message), params)

    assert err.value.path == path
    assert runtime.store.count("executions") == executions
    assert len(stub(runtime).published) == published
    assert runtime.store.count("pipelines") == 1
    assert stored(runtime, uuid) == before


def test_seed_tacobot_refusal_names_every_component_form(runtime: Runtime):
    with pytest.raises(SchemaValidationError) as err:
        runtime.submit(ALIAS, copy.deepcopy(TACOBOT_SEED))

    assert err.value.path == "components/0"
    for form in ("agave_app", "abaco_actor", "service", "container"):
        assert form in err.value.message
    assert runtime.store.count("executions") == 0


@pytest.mark.parametrize("message", [["a", "list"], "text", 42])
def test_a_message_that_is_not_an_object_is_refused(runtime: Runtime, message: Any):
    with pytest.raises(MalformedMessage):
        runtime.submit(ALIAS, message)

    assert runtime.store.count("executions") == 0
