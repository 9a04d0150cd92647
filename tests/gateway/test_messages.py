"""POST /actors/v2/<actor>/messages: the forms a message takes, the envelope, sync mode."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    MESSAGES,
    PIPELINE,
    SYNC,
    body_of,
    error_of,
    make_job,
    make_pipeline,
    result_of,
    stub,
    token_of,
)

WRONG_TOKEN = "0123456789abcdef"


def executions(rt: Runtime) -> list[dict[str, Any]]:
    return rt.store.find("executions", limit=1000).items


@pytest.mark.parametrize("by", ["alias", "id"])
def test_json_event_by_alias_or_id_is_queued_then_applied(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], by: str
) -> None:
    job = make_job(runtime)
    actor = "jobs-manager" if by == "alias" else runtime.actor_id("jobs-manager")
    event = {"uuid": job["uuid"], "name": "run", "token": token_of(runtime, job)}

    response = client.post(MESSAGES.format(actor), json=event, headers=admin)

    data = body_of(response)
    assert response.status_code == 200
    assert data["status"] == "success" and data["message"] and data["version"]
    result = data["result"]
    assert set(result) == {"executionId", "msg", "_links"}
    assert result["msg"] == {**event, "token": "********"}
    links = result["_links"]
    assert links["self"].endswith(f"/actors/v2/jobs-manager/executions/{result['executionId']}")
    assert links["logs"].endswith(f"/executions/{result['executionId']}/logs")
    stored = runtime.executions.get(result["executionId"])
    assert stored["actor"] == "jobs-manager" and stored["status"] == "SUBMITTED"
    assert runtime.jobs.get(job["uuid"])["state"] == "CREATED"  # queued, not yet run

    stub(runtime).join()

    assert runtime.executions.get(result["executionId"])["status"] == "COMPLETE"
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"


def test_url_parameters_only_with_a_body_as_data(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    """The jobs-manager's URL-parameter form: uuid, event, token; the body is the data."""
    job = make_job(runtime, events=("run",))
    params = {"uuid": job["uuid"], "event": "finish", "token": token_of(runtime, job)}

    response = client.post(
        MESSAGES.format("jobs-manager"), query_string=params, json={"exit": 0}, headers=admin
    )

    execution_id = result_of(response)["executionId"]
    assert runtime.executions.get(execution_id)["params"] == params
    stub(runtime).join()
    stored = runtime.jobs.record(job["uuid"])
    assert stored["state"] == "FINISHED"
    assert stored["history"][-1]["name"] == "finish"
    assert stored["history"][-1]["data"] == {"exit": 0}


def test_url_parameters_without_a_body(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    job = make_job(runtime)
    params = {"uuid": job["uuid"], "event": "run", "token": token_of(runtime, job)}

    response = client.post(MESSAGES.format("jobs-manager"), query_string=params, headers=admin)

    result_of(response)
    stub(runtime).join()
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"


def test_json_body_and_token_as_url_parameter(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    job = make_job(runtime)

    response = client.post(
        MESSAGES.format("jobs-manager"),
        json={"uuid": job["uuid"], "name": "run"},
        query_string={"token": token_of(runtime, job)},
        headers=admin,
    )

    result_of(response)
    stub(runtime).join()
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8"],
)
def test_a_body_sent_as_form_data_is_read_as_json(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], content_type: str
) -> None:
    """``curl --data '{...}'`` sends form-urlencoded; the seed's examples do that."""
    job = make_job(runtime)
    event = {"uuid": job["uuid"], "name": "run", "token": token_of(runtime, job)}

    response = client.post(
        MESSAGES.format("jobs-manager"),
        data=json.dumps(event),
        content_type=content_type,
        headers=admin,
    )

    execution_id = result_of(response)["executionId"]
    assert runtime.executions.get(execution_id)["message"] == event
    stub(runtime).join()
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"


def test_the_execution_records_who_sent_it(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], admin_key: str
) -> None:
    from pipelinejobs.access.keys import digest

    response = client.post(MESSAGES.format("pipelines-manager"), json=PIPELINE, headers=admin)

    result = result_of(response)
    stored = runtime.executions.get(result["executionId"])
    assert stored["owner"] == digest(admin_key)
    assert result["_links"]["owner"] == digest(admin_key)[:12]
    assert admin_key not in json.dumps(stored)


@pytest.mark.parametrize(
    ("actor", "message", "path", "schema"),
    [
        ("pipelines-manager", {"name": "x", "components": "nope"}, "components", "Pipelines"),
        ("pipelines-manager", {"name": "x", "components": []}, "components", "Pipelines"),
        ("jobs-manager", {"name": "run"}, "", "PipelineJobManagerEvent"),
        ("jobs-manager", {"uuid": "JOB", "name": "explode"}, "name", "PipelineJobManagerEvent"),
        ("jobs-manager", {"uuid": "JOB", "name": "run", "token": "xyz"}, "token", "PipelineJob"),
        ("jobs-indexer", {"uuid": "JOB", "name": "index", "level": "9"}, "level", "PipelineJob"),
    ],
)
def test_a_malformed_message_is_refused_before_anything_is_stored(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    actor: str,
    message: dict[str, Any],
    path: str,
    schema: str,
) -> None:
    job = make_job(runtime)
    message = {k: (job["uuid"] if v == "JOB" else v) for k, v in message.items()}

    response = client.post(MESSAGES.format(actor), json=message, headers=admin)

    data = error_of(response, 400)
    assert data["result"]["error"] == "SchemaValidationError"
    assert data["result"]["path"] == path
    assert data["result"]["schema"].startswith(schema)
    assert data["result"]["schema"] in data["message"]
    assert executions(runtime) == []
    assert stub(runtime).published == []


@pytest.mark.parametrize("body", ["[1, 2]", '"a string"', "42"])
def test_a_message_that_is_not_an_object_is_refused(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], body: str
) -> None:
    response = client.post(
        MESSAGES.format("jobs-manager"), data=body, content_type="application/json", headers=admin
    )

    assert error_of(response, 400)["result"]["error"] == "MalformedMessage"
    assert executions(runtime) == []


# -- ?_abaco_synchronous=true ---------------------------------------------------------------


@pytest.mark.parametrize("flag", [SYNC, {"sync": "true"}, {"sync": "false", **SYNC}])
def test_sync_create_pipeline_returns_uuid_and_token(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    sync: list[tuple[str, str]],
    flag: dict[str, str],
) -> None:
    response = client.post(
        MESSAGES.format("pipelines-manager"), json=PIPELINE, query_string=flag, headers=admin
    )

    result = result_of(response)
    assert result["status"] == "COMPLETE"
    assert result["executionId"] == result["id"]
    assert sync == [("pipelines-manager", result["id"])]
    created = result["result"]
    assert created["created"] is True
    assert runtime.store.get("pipelines", created["uuid"]) is not None
    assert created["token"] == runtime.tokens.update_token(created["uuid"])
    assert any(f"Created pipeline {created['uuid']}" in line for line in result["logs"])
    assert result["_links"]["self"].endswith(f"/executions/{result['id']}")


def test_sync_event_returns_the_new_state(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: list[tuple[str, str]]
) -> None:
    job = make_job(runtime)
    event = {"uuid": job["uuid"], "name": "run", "token": token_of(runtime, job)}

    response = client.post(
        MESSAGES.format("jobs-manager"), json=event, query_string=SYNC, headers=admin
    )

    result = result_of(response)
    assert result["result"]["state"] == "RUNNING" and result["result"]["applied"] is True
    assert result["message"]["token"] == "********"


def test_sync_refused_transition_is_409_with_state_event_and_allowed(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: list[tuple[str, str]]
) -> None:
    job = make_job(runtime)
    event = {"uuid": job["uuid"], "name": "validate", "token": token_of(runtime, job)}

    response = client.post(
        MESSAGES.format("jobs-manager"), json=event, query_string=SYNC, headers=admin
    )

    data = error_of(response, 409)
    error = data["result"]["error"]
    assert error["error"] == "TransitionRefused"
    assert (error["state"], error["event"]) == ("CREATED", "validate")
    assert error["allowed"] == ["FINISHED", "VALIDATED"]
    assert "CREATED" in data["message"] and "validate" in data["message"]
    assert data["result"]["status"] == "ERROR"
    assert runtime.jobs.get(job["uuid"])["state"] == "CREATED"


@pytest.mark.parametrize("token", [WRONG_TOKEN, None])
def test_sync_wrong_or_missing_token_is_403(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    sync: list[tuple[str, str]],
    token: str | None,
) -> None:
    job = make_job(runtime)
    event: dict[str, Any] = {"uuid": job["uuid"], "name": "run"}
    if token:
        event["token"] = token

    response = client.post(
        MESSAGES.format("jobs-manager"), json=event, query_string=SYNC, headers=admin
    )

    data = error_of(response, 403)
    assert data["result"]["error"]["error"] == "PermissionDenied"
    assert WRONG_TOKEN not in response.get_data(as_text=True)
    assert runtime.jobs.get(job["uuid"])["state"] == "CREATED"


def test_sync_unknown_job_is_404(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: list[tuple[str, str]]
) -> None:
    pipeline = make_pipeline(runtime)
    ghost = runtime.ids.job(pipeline["uuid"], ["sample.nowhere.1"], {})
    event = {"uuid": ghost, "name": "run", "token": WRONG_TOKEN}

    response = client.post(
        MESSAGES.format("jobs-manager"), json=event, query_string=SYNC, headers=admin
    )

    data = error_of(response, 404)
    assert data["result"]["error"]["error"] == "NotFound"
    assert ghost in data["message"]


def test_sync_internal_error_of_an_actor_is_500_without_details(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    sync: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(runtime.pipelines, "create", explode)

    response = client.post(
        MESSAGES.format("pipelines-manager"), json=PIPELINE, query_string=SYNC, headers=admin
    )

    data = error_of(response, 500)
    assert data["result"]["error"]["error"] == "InternalError"
    assert "secret internals" not in response.get_data(as_text=True)


def test_sync_gives_up_after_the_timeout_with_202(
    build: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker took it within ``gateway.sync_timeout`` (0 here): 202, still SUBMITTED."""
    rt, app = build(gateway={"sync_timeout": 0})
    assert isinstance(app, Flask)
    secret, _ = app.config["PIPELINEJOBS"].keys.create("admin")

    response = app.test_client().post(
        MESSAGES.format("pipelines-manager"),
        json=PIPELINE,
        query_string=SYNC,
        headers={"Authorization": f"Bearer {secret}"},
    )

    result = result_of(response, 202)
    assert result["status"] == "SUBMITTED"
    assert "SUBMITTED" in body_of(response)["message"]
    stub(rt).join()
    assert rt.executions.get(result["id"])["status"] == "COMPLETE"
