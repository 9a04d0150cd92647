"""Executions of an actor: the list (paged, newest first), one execution, its logs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    APP_PIPELINE,
    MESSAGES,
    PIPELINE,
    SYNC,
    FakeClock,
    bearer,
    error_of,
    make_job,
    result_of,
    stub,
    token_of,
)

EXECUTIONS = "/actors/v2/{}/executions"


def post(client: FlaskClient, headers: dict[str, str], actor: str, message: Any, **kw: Any) -> str:
    response = client.post(MESSAGES.format(actor), json=message, headers=headers, **kw)
    return str(result_of(response)["executionId"])


def test_list_is_paged_newest_first(clocked: tuple[Runtime, Flask, FakeClock]) -> None:
    rt, app, clock = clocked
    client = app.test_client()
    admin = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])
    posted = []
    for i in range(5):
        definition = {"name": f"p{i}", "components": [{"repo": f"sd2e/p:{i}"}]}
        posted.append(post(client, admin, "pipelines-manager", definition))
        clock.advance(1)
    post(client, admin, "jobs-manager", {"uuid": make_job(rt)["uuid"], "name": "run"})

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 2}
        if cursor:
            query["cursor"] = cursor
        result = result_of(
            client.get(EXECUTIONS.format("pipelines-manager"), query_string=query, headers=admin)
        )
        assert result["actorId"] == "pipelines-manager"
        assert len(result["executions"]) <= 2
        seen += [e["id"] for e in result["executions"]]
        pages += 1
        cursor = result["next"]
        if not cursor:
            break

    assert seen == posted[::-1]  # newest first, every one once, none of another actor
    assert pages == 3


def test_list_filters_by_status(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    done = post(client, admin, "pipelines-manager", PIPELINE)
    stub(runtime).join()
    waiting = post(client, admin, "pipelines-manager", PIPELINE)

    def ids(status: str) -> list[str]:
        result = result_of(
            client.get(
                EXECUTIONS.format("pipelines-manager"),
                query_string={"status": status},
                headers=admin,
            )
        )
        return [e["id"] for e in result["executions"]]

    assert ids("COMPLETE") == [done]
    assert ids("SUBMITTED") == [waiting]


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "100000"])
def test_a_bad_limit_is_400(client: FlaskClient, admin: dict[str, str], limit: str) -> None:
    response = client.get(
        EXECUTIONS.format("jobs-manager"), query_string={"limit": limit}, headers=admin
    )

    assert error_of(response, 400)["result"]["path"] == "limit"


@pytest.mark.parametrize("by", ["alias", "id"])
def test_one_execution_and_its_logs(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], by: str
) -> None:
    job = make_job(runtime)
    token = token_of(runtime, job)
    event = {"uuid": job["uuid"], "name": "run"}
    execution_id = post(client, admin, "jobs-manager", event, query_string={"token": token})
    stub(runtime).join()
    actor = "jobs-manager" if by == "alias" else runtime.actor_id("jobs-manager")

    one = result_of(client.get(f"{EXECUTIONS.format(actor)}/{execution_id}", headers=admin))
    logs = result_of(client.get(f"{EXECUTIONS.format(actor)}/{execution_id}/logs", headers=admin))

    assert one["id"] == execution_id and one["actorId"] == "jobs-manager"
    assert one["status"] == "COMPLETE" and one["attempts"] == 1
    assert one["message"] == {"uuid": job["uuid"], "name": "run"}
    assert one["params"] == {"token": "********"}
    assert one["result"]["state"] == "RUNNING"
    assert one["createTime"] and one["startTime"] and one["finishTime"]
    stored = runtime.executions.get(execution_id)["logs"]
    assert len(stored) >= 2
    assert logs["logs"] == "\n".join(stored)
    assert "moved CREATED -> RUNNING" in logs["logs"]
    assert logs["_links"]["self"].endswith(f"/executions/{execution_id}")
    for response_text in (json.dumps(one), json.dumps(logs)):
        assert token not in response_text


def test_tokens_in_the_message_are_redacted(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    job = make_job(runtime)
    token = token_of(runtime, job)
    event = {"uuid": job["uuid"], "name": "update", "token": token, "data": {"token": token}}
    execution_id = post(client, admin, "jobs-manager", event)

    response = client.get(f"{EXECUTIONS.format('jobs-manager')}/{execution_id}", headers=admin)

    one = result_of(response)
    assert one["message"]["token"] == "********"
    assert one["message"]["data"] == {"token": "********"}
    assert token not in response.get_data(as_text=True)


def test_unknown_execution_is_404(client: FlaskClient, admin: dict[str, str]) -> None:
    for suffix in ("", "/logs"):
        url = f"{EXECUTIONS.format('jobs-manager')}/NoSuchExec123{suffix}"
        response = client.get(url, headers=admin)
        assert "NoSuchExec123" in error_of(response, 404)["message"]


def test_an_execution_of_another_actor_is_404(client: FlaskClient, admin: dict[str, str]) -> None:
    execution_id = post(client, admin, "pipelines-manager", PIPELINE)
    assert result_of(
        client.get(f"{EXECUTIONS.format('pipelines-manager')}/{execution_id}", headers=admin)
    )

    for suffix in ("", "/logs"):
        response = client.get(
            f"{EXECUTIONS.format('jobs-manager')}/{execution_id}{suffix}", headers=admin
        )
        error_of(response, 404)


def test_the_result_with_a_token_is_shown_only_to_its_sender_and_admins(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    user: dict[str, str],
    other_user: dict[str, str],
    sync: list[tuple[str, str]],
) -> None:
    response = client.post(
        MESSAGES.format("pipelines-manager"),
        json=APP_PIPELINE,
        query_string=SYNC,
        headers=other_user,
    )
    created = result_of(response)
    token = created["result"]["token"]
    assert token == runtime.tokens.update_token(created["result"]["uuid"])
    url = f"{EXECUTIONS.format('pipelines-manager')}/{created['id']}"

    assert result_of(client.get(url, headers=other_user))["result"]["token"] == token
    assert result_of(client.get(url, headers=admin))["result"]["token"] == token
    seen_by_user = client.get(url, headers=user)
    assert result_of(seen_by_user)["result"]["token"] == "********"
    assert result_of(seen_by_user)["result"]["uuid"] == created["result"]["uuid"]
    assert token not in seen_by_user.get_data(as_text=True)
    listed = client.get(EXECUTIONS.format("pipelines-manager"), headers=user)
    assert token not in listed.get_data(as_text=True)
