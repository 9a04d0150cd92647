"""Rules the seed states, over HTTP (issue 13): each refusal with its exact message,
and the public URL a job's ``agent`` and ``task`` start with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    APP_PIPELINE,
    MESSAGES,
    SYNC,
    bearer,
    body_of,
    deliver_on_publish,
    error_of,
    make_job,
    make_pipeline,
    result_of,
    token_of,
)

LAUNCH: dict[str, Any] = {
    "parameters": {"sample_id": "sample.tacc.abcde"},
    "job_definition": {
        "appId": "tacobot9000-0.1.0u1",
        "name": "TACObot job",
        "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
        "parameters": {"salsa": True, "avocado": False, "cheese": True},
        "maxRunTime": "01:00:00",
    },
}


# -- app ids are unique among pipelines ----------------------------------------------------


def test_a_second_pipeline_for_an_app_id_is_409_naming_the_holder(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
):
    holder = result_of(
        client.post(MESSAGES.format("pipelines-manager"), json=APP_PIPELINE, headers=admin)
    )
    runtime.bus.join()  # type: ignore[union-attr]
    first = runtime.store.find("pipelines", {}, limit=2).items[0]
    executions = runtime.store.count("executions")
    second = {
        "name": "Tacobot 9000 again",
        "components": [{"id": "tacobot9000-0.1.0u1", "inputs": {"x": "y"}, "parameters": {}}],
    }

    refused = error_of(
        client.post(MESSAGES.format("pipelines-manager"), json=second, headers=admin), 409
    )

    assert holder["executionId"]
    assert refused["message"] == (
        f"app id 'tacobot9000-0.1.0u1' is already the id of a component of pipeline "
        f"{first['uuid']} ('Tacobot 9000'): an app id must be unique among pipelines; retire "
        f"that pipeline to release it, or give this app another id"
    )
    assert runtime.store.count("executions") == executions  # refused before it was queued
    assert runtime.store.count("pipelines") == 1


def test_pipeline_management_results_return_the_unchanged_token(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: list
):
    created = result_of(
        client.post(
            MESSAGES.format("pipelines-manager"),
            json=APP_PIPELINE,
            headers=admin,
            query_string=SYNC,
        )
    )["result"]
    token = created["token"]

    for message in (
        {"uuid": created["uuid"], "action": "update", "body": {"name": "Renamed"}},
        {"uuid": created["uuid"], "action": "disable"},
        {"uuid": created["uuid"], "action": "enable"},
        {"uuid": created["uuid"], "action": "retire"},
    ):
        answer = result_of(
            client.post(
                MESSAGES.format("pipelines-manager"),
                json={**message, "token": token},
                headers=admin,
                query_string=SYNC,
            )
        )
        assert answer["result"]["token"] == token, message
    # An admin token works too; the document's own token is what comes back.
    admin_token = runtime.tokens.mint_admin_token()
    answer = result_of(
        client.post(
            MESSAGES.format("pipelines-manager"),
            json={**APP_PIPELINE, "description": "by an admin"},
            headers=admin,
            query_string={**SYNC, "token": admin_token},
        )
    )
    assert answer["result"]["token"] == token


# -- filters cannot be URL parameters --------------------------------------------------------


def test_filters_as_a_url_parameter_is_400_in_the_seeds_words(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
):
    job = make_job(runtime, events=("run", "finish"))
    executions = runtime.store.count("executions")

    refused = error_of(
        client.post(
            MESSAGES.format("jobs-indexer"),
            query_string={
                "uuid": job["uuid"],
                "level": "2",
                "token": token_of(runtime, job),
                "name": "index",
                "filters": "sample.uw_biofab.141715",
            },
            headers=admin,
        ),
        400,
    )

    assert refused["message"] == (
        "filters cannot currently be passed as URL parameters: send them in the JSON body "
        '({"filters": [...]}), with the other fields as URL parameters or in the body too'
    )
    assert refused["result"]["path"] == "filters"
    assert runtime.store.count("executions") == executions


# -- Agave callback bodies ------------------------------------------------------------------


def agave_body(status: str = "FINISHED") -> dict[str, Any]:
    return {
        "owner": "sd2eadm",
        "appId": "tacobot9000-0.1.0u1",
        "executionSystem": "hpc-tacc-maverick2",
        "archivePath": "/products/v2/x/y",
        "archiveSystem": "data-sd2e-community",
        "status": status,
        "inputs": {},
        "parameters": {},
        "_links": {},
    }


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        pytest.param(
            {"appId": None},
            "appId",
            "(the message itself): 'appId' is a required property",
            id="no-appId",
        ),
        pytest.param({"owner": 7}, "owner", "owner: 7 is not of type 'string'", id="owner-number"),
        pytest.param(
            {"status": ["FINISHED"]},
            "status",
            "status: ['FINISHED'] is not of type 'string'",
            id="status-list",
        ),
    ],
)
def test_a_callback_body_that_is_not_an_agave_notification_is_400_naming_the_field(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    change: dict[str, Any],
    path: str,
    reason: str,
):
    job = make_job(runtime, events=("run",))
    body = {k: v for k, v in {**agave_body(), **change}.items() if v is not None}

    refused = error_of(
        client.post(
            MESSAGES.format("jobs-manager"),
            json=body,
            query_string={
                "uuid": job["uuid"],
                "status": "FINISHED",
                "token": token_of(runtime, job),
            },
            headers=admin,
        ),
        400,
    )

    assert refused["message"] == (
        f"the body of a status callback must be an Agave job notification: AgaveJobsPost: "
        f"{reason} (to attach other data, send the event by name: ?event=<name> or "
        f"?name=<name>)"
    )
    assert refused["result"]["path"] == path
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"


def test_a_callback_body_without_status_takes_the_url_parameter(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: list
):
    job = make_job(runtime, events=("run",))
    body = {k: v for k, v in agave_body().items() if k != "status"}

    result_of(
        client.post(
            MESSAGES.format("jobs-manager"),
            json=body,
            query_string={
                "uuid": job["uuid"],
                "status": "FINISHED",
                "token": token_of(runtime, job),
            },
            headers=admin,
        )
    )

    record = runtime.jobs.record(job["uuid"])
    assert record["state"] == "FINISHED"
    assert record["history"][-1]["data"] == {**body, "status": "FINISHED"}


def test_other_data_goes_with_an_explicit_event(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: list
):
    job = make_job(runtime, events=("run",))

    result_of(
        client.post(
            MESSAGES.format("jobs-manager"),
            json={"arbitrary": "key value data"},
            query_string={"uuid": job["uuid"], "name": "finish", "token": token_of(runtime, job)},
            headers=admin,
        )
    )

    assert runtime.jobs.get(job["uuid"])["state"] == "FINISHED"


# -- the public URL of agent and task ----------------------------------------------------------


def launch(rt: Runtime, app: Flask, **request: Any) -> dict[str, Any]:
    """Register the app pipeline and launch the seed's example over HTTP (delivered at
    once); the job."""
    make_pipeline(rt, APP_PIPELINE)
    secret, _ = app.config["PIPELINEJOBS"].keys.create("admin")
    response = app.test_client().post(
        MESSAGES.format("launcher-proxy"),
        json=LAUNCH,
        headers={**bearer(secret), **request.pop("headers", {})},
        query_string=SYNC,
        **request,
    )
    execution = result_of(response)
    assert execution["status"] == "COMPLETE", body_of(response)
    return rt.jobs.get(execution["result"]["uuid"]) | {"_execution": execution["executionId"]}


@pytest.fixture
def launched(
    build: Callable[..., tuple[Runtime, Flask]], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[Runtime, dict[str, Any]]]:
    def run(gateway: dict[str, Any] | None = None, **request: Any) -> tuple[Runtime, dict]:
        rt, app = build(gateway=gateway or {})
        deliver_on_publish(rt, monkeypatch)
        return rt, launch(rt, app, **request)

    return run


def agent_of(rt: Runtime, base: str) -> str:
    return f"{base}/actors/v2/{rt.actor_id('launcher-proxy')}"


def test_agent_and_task_default_to_the_requests_own_url(launched: Callable[..., Any]):
    rt, job = launched(base_url="http://pipelines.example.org:8080")

    assert job["agent"] == agent_of(rt, "http://pipelines.example.org:8080")
    assert job["task"] == f"{job['agent']}/executions/{job['_execution']}"


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.org"}


def test_forwarded_headers_are_not_believed_by_default(launched: Callable[..., Any]):
    rt, job = launched(
        base_url="http://10.0.0.7:8000",
        headers=FORWARDED,
        environ_base={"REMOTE_ADDR": "10.0.0.5"},
    )

    assert job["agent"] == agent_of(rt, "http://10.0.0.7:8000")


def test_forwarded_headers_from_a_trusted_proxy_are_believed(launched: Callable[..., Any]):
    rt, job = launched(
        {"trusted_proxies": "10.0.0.0/24, 192.168.1.9"},
        base_url="http://10.0.0.7:8000",
        headers={"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "evil, api.example.org"},
        environ_base={"REMOTE_ADDR": "10.0.0.5"},
    )

    # The value the proxy itself added (the last) is the one believed.
    assert job["agent"] == agent_of(rt, "https://api.example.org")


def test_forwarded_headers_from_anyone_else_are_not(launched: Callable[..., Any]):
    rt, job = launched(
        {"trusted_proxies": "10.0.0.0/24"},
        base_url="http://10.0.0.7:8000",
        headers=FORWARDED,
        environ_base={"REMOTE_ADDR": "10.0.1.5"},
    )

    assert job["agent"] == agent_of(rt, "http://10.0.0.7:8000")


def test_a_configured_public_url_wins(launched: Callable[..., Any]):
    rt, job = launched(
        {"public_url": "https://api.tacc.cloud", "trusted_proxies": "10.0.0.5"},
        base_url="http://10.0.0.7:8000",
        headers=FORWARDED,
        environ_base={"REMOTE_ADDR": "10.0.0.5"},
    )

    assert job["agent"] == agent_of(rt, "https://api.tacc.cloud")
    assert rt.executions.get(job["_execution"])["base_url"] == "https://api.tacc.cloud"
