"""URL parameters: each route accepts exactly what its declaration (and the OpenAPI
document made from it) allows, and refuses the rest with a 400 naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from pipelinejobs.gateway import Gateway
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import MESSAGES, PIPELINE, error_of, make_job, result_of, token_of


def refused(response: Any, name: str, status: int = 400) -> dict[str, Any]:
    data = error_of(response, status)
    assert data["result"]["path"] == name, data
    return data


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/jobs?limit=0", "limit"),
        ("/jobs?limit=501", "limit"),
        ("/jobs?limit=1.5", "limit"),
        ("/jobs?limit=%205", "limit"),
        ("/jobs?limit=", "limit"),
        ("/jobs?cursor=", "cursor"),
        ("/jobs?state=", "state"),
        ("/jobs?state=RUNNING&state=ASLEEP", "state"),
        ("/jobs?pipeline_uuid=", "pipeline_uuid"),
        ("/jobs?linkage=", "linkage"),
        ("/jobs?counts=null", "counts"),
        ("/pipelines?status=paused", "status"),
        ("/actors/v2/jobs-manager/executions?status=DONE", "status"),
        ("/files?job=", "job"),
    ],
)
def test_a_value_its_declaration_refuses_is_400(
    client: FlaskClient, admin: dict[str, str], url: str, name: str
) -> None:
    refused(client.get(url, headers=admin), name)


def test_an_enum_refusal_lists_the_allowed_values(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    data = refused(client.get("/jobs?state=ASLEEP", headers=admin), "state")

    assert "RUNNING" in data["result"]["allowed"] and len(data["result"]["allowed"]) == 11


def test_the_largest_page_and_several_states_are_accepted(
    gateway: Gateway, client: FlaskClient, admin: dict[str, str]
) -> None:
    most = gateway.config.gateway.max_page_size
    url = f"/jobs?limit={most}&state=RUNNING&state=FAILED&counts=false"

    assert result_of(client.get(url, headers=admin))["jobs"] == []


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/jobs?limit=5&limit=6", "limit"),
        ("/jobs?counts=true&counts=true", "counts"),
        ("/pipelines?status=active&status=retired", "status"),
        ("/jobs?undeclared=1&undeclared=2", "undeclared"),
    ],
)
def test_a_parameter_not_declared_repeatable_is_given_once(
    client: FlaskClient, admin: dict[str, str], url: str, name: str
) -> None:
    data = refused(client.get(url, headers=admin), name)

    assert "times" in data["message"]


@pytest.mark.parametrize("url", ["/jobs?linkage=a%00b", "/jobs?anything=%00", "/pipelines?x%00=1"])
def test_a_nul_in_any_parameter_is_400(
    client: FlaskClient, admin: dict[str, str], url: str
) -> None:
    error_of(client.get(url, headers=admin), 400)


@pytest.mark.parametrize("offset", ["\u00b2", "-1", str(2**62 + 1), "1e3"])
def test_a_log_offset_is_a_bounded_integer(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], offset: str
) -> None:
    job = make_job(runtime)

    refused(
        client.get(f"/jobs/{job['uuid']}/log", query_string={"offset": offset}, headers=admin),
        "offset",
    )


@pytest.mark.parametrize("flag", ["_abaco_synchronous", "sync"])
@pytest.mark.parametrize("spelling", ["1", "yes", "True", ""])
def test_sync_is_spelled_true_or_false(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], flag: str, spelling: str
) -> None:
    response = client.post(
        MESSAGES.format("pipelines-manager"), json=PIPELINE, query_string={flag: spelling},
        headers=admin,
    )  # fmt: skip

    refused(response, flag)
    assert runtime.store.find("executions").items == []


@pytest.mark.parametrize(
    ("actor", "query", "name"),
    [
        ("jobs-manager", {"uuid": "not-a-uuid"}, "uuid"),
        ("jobs-manager", {"name": "explode"}, "name"),
        ("jobs-manager", {"token": "short"}, "token"),
        ("jobs-indexer", {"level": "9"}, "level"),
        ("jobs-indexer", {"fixity": "yes"}, "fixity"),
        ("pipelines-manager", {"uuid": "10700000-0000-0000-0000-000000000000"}, "uuid"),
    ],
)
def test_an_actors_url_parameters_are_checked_even_when_unused(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    actor: str,
    query: dict[str, str],
    name: str,
) -> None:
    """A JSON event carries everything; a stray malformed URL parameter beside it is
    still refused, not silently ignored."""
    job = make_job(runtime)
    body = {"uuid": job["uuid"], "name": "run", "token": token_of(runtime, job)}
    if actor == "pipelines-manager":
        body = PIPELINE
    elif actor == "jobs-indexer":
        body = {"uuid": job["uuid"], "name": "index", "token": token_of(runtime, job)}

    refused(client.post(MESSAGES.format(actor), json=body, query_string=query, headers=admin), name)
    assert runtime.store.find("executions").items == []


def test_abaco_passes_unknown_message_parameters_through(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    response = client.post(
        MESSAGES.format("pipelines-manager"), json=PIPELINE, query_string={"colour": "blue"},
        headers=admin,
    )  # fmt: skip

    assert result_of(response)["executionId"]


def test_a_malformed_x_nonce_is_an_invalid_credential_even_beside_a_key(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    response = client.get("/actors/v2/jobs-manager/executions?x-nonce=garbage", headers=admin)

    refused(response, "x-nonce", 401)


def test_parameters_are_checked_before_credentials(client: FlaskClient) -> None:
    refused(client.get("/jobs?limit=0"), "limit")
    error_of(client.get("/jobs?limit=1"), 401)


def test_a_message_to_an_unknown_actor_is_404_whatever_its_parameters(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    error_of(client.post(MESSAGES.format("nobody"), json={}, headers=admin), 404)
