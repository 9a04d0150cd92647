"""Abaco v2 and Tapis v3 on the wire: what agavepy and tapipy send and expect back.

The real clients drive a real server in tests/integration/test_abaco_clients.py;
here each rule is checked on its own, against both stores.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.access.keys import digest
from pipelinejobs.gateway import Gateway, abaco
from pipelinejobs.observability.heartbeats import Heartbeat
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    APP_PIPELINE,
    MESSAGES,
    SYNC,
    FakeClock,
    bearer,
    error_of,
    make_job,
    result_of,
    token_of,
)

MANAGER = "jobs-manager"
EXECUTIONS = "/actors/v2/{}/executions"


def history(rt: Runtime, uuid: str) -> list[dict[str, Any]]:
    from pipelinejobs.domain import job_log

    return list(job_log.read(rt.store, rt.jobs.get(uuid)).entries)


# -- a message wrapped in "message" ------------------------------------------------------


def event(rt: Runtime, name: str = "run") -> tuple[dict[str, Any], dict[str, Any]]:
    job = make_job(rt)
    return job, {"uuid": job["uuid"], "name": name, "token": token_of(rt, job)}


def test_a_body_that_is_only_message_is_the_message(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: Any
) -> None:
    job, message = event(runtime)

    response = client.post(
        MESSAGES.format(MANAGER), json={"message": message}, headers=admin, query_string=SYNC
    )

    result = result_of(response)
    assert result["status"] == "COMPLETE" and result["result"]["state"] == "RUNNING"
    assert result["message"] == {**message, "token": "********"}  # stored unwrapped
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"


def test_a_message_string_is_read_as_its_json_text(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: Any
) -> None:
    job, message = event(runtime)

    response = client.post(
        MESSAGES.format(MANAGER),
        json={"message": json.dumps(message)},  # what `abaco run -m "$(jq -c . m.json)"` sends
        headers=admin,
        query_string=SYNC,
    )

    assert result_of(response)["result"]["state"] == "RUNNING"


def test_the_form_field_message_is_read_as_json_text(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: Any
) -> None:
    job, message = event(runtime)

    response = client.post(
        MESSAGES.format(MANAGER),
        data="message=" + urllib.parse.quote(json.dumps(message)),  # curl -d message=...
        content_type="application/x-www-form-urlencoded",
        headers=admin,
        query_string=SYNC,
    )

    assert result_of(response)["result"]["state"] == "RUNNING"


@pytest.mark.parametrize(
    ("send", "path"),
    [
        ({"data": "message=not%20json"}, "message"),
        ({"data": "message=%7B%22a%22%3A%20NaN%7D"}, "message/a"),
        ({"data": "message=%7B%7D&x=1"}, "message"),
        ({"data": "message=%ff"}, "message"),
        ({"json": {"message": "{not json"}}, "message"),
        ({"json": {"message": '{"uuid": "1", "uuid": "2"}'}}, "message/uuid"),
        ({"data": "null", "content_type": "application/json"}, ""),
        ({"json": {"message": None}}, ""),
        ({"json": {"message": "null"}}, ""),
    ],
)
def test_a_message_field_that_is_not_json_or_null_is_a_400_naming_it(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], send: dict[str, Any], path: str
) -> None:
    if "data" in send:
        send.setdefault("content_type", "application/x-www-form-urlencoded")

    response = client.post(MESSAGES.format(MANAGER), headers=admin, **send)

    data = error_of(response, 400)
    assert data["result"]["path"] == path
    assert runtime.store.find("executions").items == []


def test_an_unwrapped_message_is_validated_as_the_same_message_bare(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    bare = client.post(MESSAGES.format(MANAGER), json={"name": "run"}, headers=admin)
    wrapped = client.post(
        MESSAGES.format(MANAGER), json={"message": {"name": "run"}}, headers=admin
    )

    assert error_of(wrapped, 400)["message"] == error_of(bare, 400)["message"]
    assert "'uuid' is a required property" in error_of(wrapped, 400)["message"]


def test_message_beside_other_fields_is_not_unwrapped(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    _, message = event(runtime)

    response = client.post(
        MESSAGES.format(MANAGER), json={"message": message, "name": "run"}, headers=admin
    )

    assert "message" in error_of(response, 400)["message"]


def test_url_parameters_and_a_wrapped_body_are_an_event_with_its_data(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: Any
) -> None:
    job, message = event(runtime, "update")

    response = client.post(
        MESSAGES.format(MANAGER),
        json={"message": {"progress": 50}},  # agavepy: sendMessage(body=..., environment=...)
        headers=admin,
        query_string={**SYNC, **message},
    )

    assert result_of(response)["status"] == "COMPLETE"
    assert history(runtime, job["uuid"])[-1]["data"] == {"progress": 50}


def test_an_actor_whose_schema_has_a_message_field_gets_the_body_as_it_is(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert abaco.defines_message(("execution",))  # schemas/execution.json has one
    assert not any(abaco.defines_message(tuple(a.accepts)) for a in runtime.actors.values())
    actor = runtime.actor(MANAGER)
    monkeypatch.setattr(type(actor), "accepts", (*actor.accepts, "execution"))
    _, message = event(runtime)

    response = client.post(MESSAGES.format(MANAGER), json={"message": message}, headers=admin)

    assert "'uuid' is a required property" in error_of(response, 400)["message"]


# -- discovery ----------------------------------------------------------------------------


def test_the_actors_are_listed_with_ids_aliases_status_and_schemas(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    actors = result_of(client.get("/actors/v2", headers=admin))

    assert [a["alias"] for a in actors] == list(runtime.actors)
    manager = actors[1]
    assert manager["id"] == runtime.actor_id(MANAGER)
    assert manager["description"] == runtime.actor(MANAGER).description
    assert [s["name"] for s in manager["accepts"]] == list(runtime.actor(MANAGER).accepts)
    assert manager["accepts"][0]["$id"].endswith("/pipelinejob_manager_event.json")
    assert manager["status"] == "SUBMITTED" and "no worker" in manager["statusMessage"]
    assert manager["_links"]["executions"] == (
        f"http://localhost/actors/v2/{manager['id']}/executions"
    )
    page = result_of(client.get("/actors/v2?limit=2&offset=1", headers=admin))
    assert [a["alias"] for a in page] == list(runtime.actors)[1:3]


def test_an_actor_is_ready_while_a_worker_consuming_it_beats(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    beat = Heartbeat(runtime.store, hostname="node7")
    beat.beat({"actors": [MANAGER, "jobs-indexer"], "concurrency": 4, "pool": "prefork"})

    one = result_of(client.get(f"/actors/v2/{runtime.actor_id(MANAGER)}", headers=admin))
    workers = result_of(client.get(f"/actors/v2/{MANAGER}/workers", headers=admin))
    other = result_of(client.get("/actors/v2/pipelines-manager/workers", headers=admin))

    assert one["alias"] == MANAGER and one["status"] == "READY" and one["workers"] == 1
    assert [w["id"] for w in workers] == [beat.id]
    assert workers[0]["hostId"] == "node7" and workers[0]["status"] == "READY"
    assert workers[0]["concurrency"] == 4 and workers[0]["lastHealthCheckTime"]
    assert other == []
    beat.stop({"actors": [MANAGER]})
    assert result_of(client.get(f"/actors/v2/{MANAGER}/workers", headers=admin)) == []


def test_aliases_name_the_actor_ids(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    aliases = result_of(client.get("/actors/v2/aliases", headers=admin))
    one = result_of(client.get(f"/actors/v2/aliases/{MANAGER}", headers=admin))

    assert {a["alias"]: a["actorId"] for a in aliases} == {
        alias: runtime.actor_id(alias) for alias in runtime.actors
    }
    assert one["actorId"] == runtime.actor_id(MANAGER)
    assert one["_links"]["actor"].endswith(f"/actors/v2/{runtime.actor_id(MANAGER)}")
    error_of(client.get("/actors/v2/aliases/nobody", headers=admin), 404)
    error_of(client.get("/actors/v2/nobody", headers=admin), 404)
    error_of(client.get("/actors/v2"), 401)


# -- executions: offset, results, links ---------------------------------------------------


def test_offset_pages_executions_as_abaco_does(clocked: tuple[Runtime, Flask, FakeClock]) -> None:
    rt, app, clock = clocked
    client = app.test_client()
    admin = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])
    posted = []
    for i in range(5):
        definition = {"name": f"p{i}", "components": [{"repo": f"sd2e/p:{i}"}]}
        response = client.post(MESSAGES.format("pipelines-manager"), json=definition, headers=admin)
        posted.append(result_of(response)["executionId"])
        clock.advance(1)
    url = EXECUTIONS.format("pipelines-manager")

    def ids(**query: Any) -> list[str]:
        result = result_of(client.get(url, query_string=query, headers=admin))
        assert result["totalExecutions"] == 5
        return [e["id"] for e in result["executions"]]

    newest = posted[::-1]
    assert ids(limit=2, offset=2) == newest[2:4]
    assert ids(limit=2, offset=0) == newest[:2]
    assert ids(limit=10, offset=4) == newest[4:]
    assert ids(limit=2, offset=5) == []
    assert ids(limit=2, offset=9) == []
    page = result_of(client.get(url, query_string={"limit": 2, "offset": 1}, headers=admin))
    follow = client.get(url, query_string={"limit": 2, "cursor": page["next"]}, headers=admin)
    assert [e["id"] for e in result_of(follow)["executions"]] == newest[3:5]
    both = client.get(url, query_string={"offset": 1, "cursor": page["next"]}, headers=admin)
    assert [e["id"] for e in result_of(both)["executions"]] == newest[4:]  # past the cursor
    far = client.get(url, query_string={"offset": abaco.MAX_OFFSET + 1}, headers=admin)
    assert error_of(far, 400)["result"]["path"] == "offset"
    assert error_of(client.get(url, query_string={"offset": -1}, headers=admin), 400)


def test_results_are_the_bytes_of_the_result_as_abaco_serves_them(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], other_user: dict[str, str]
) -> None:
    response = client.post(MESSAGES.format("pipelines-manager"), json=APP_PIPELINE, headers=admin)
    execution = result_of(response)["executionId"]
    url = f"{EXECUTIONS.format('pipelines-manager')}/{execution}/results"

    waiting = client.get(url, headers=admin)
    assert (waiting.status_code, waiting.data) == (200, b"")
    runtime.bus.join()  # type: ignore[union-attr]
    done = client.get(url, headers=admin)
    theirs = client.get(url, headers=other_user)

    assert done.mimetype == "application/octet-stream"
    result = json.loads(done.data)
    assert result["uuid"] and len(result["token"]) == 16
    assert json.loads(theirs.data)["token"] == "********"  # the token is the sender's only
    error_of(client.get(f"{EXECUTIONS.format(MANAGER)}/{execution}/results", headers=admin), 404)


@pytest.mark.parametrize(
    ("peer", "scheme_host"),
    [("10.0.0.5", "https://pipelinejobs.example.org"), ("10.0.0.6", "http://localhost")],
)
def test_links_follow_a_trusted_tls_proxy_only(build: Any, peer: str, scheme_host: str) -> None:
    rt, app = build(gateway={"trusted_proxies": "10.0.0.5"})
    client = app.test_client()
    admin = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pipelinejobs.example.org"}

    response = client.post(
        MESSAGES.format("pipelines-manager"),
        json=APP_PIPELINE,
        headers={**admin, **forwarded},
        environ_base={"REMOTE_ADDR": peer},
    )
    links = result_of(response)["_links"]
    actors = result_of(
        client.get("/actors/v2", headers={**admin, **forwarded}, environ_base={"REMOTE_ADDR": peer})
    )

    assert links["self"].startswith(f"{scheme_host}/actors/v2/pipelines-manager/executions/")
    assert links["logs"] == links["self"] + "/logs"
    assert actors[0]["_links"]["self"].startswith(f"{scheme_host}/actors/v2/")


# -- Tapis v3: /v3/actors, X-Tapis-Token, JWT keys ------------------------------------------


def test_v3_routes_are_the_v2_routes(
    runtime: Runtime, client: FlaskClient, admin_key: str, sync: Any
) -> None:
    tapis = {"X-Tapis-Token": admin_key}
    job, message = event(runtime)

    sent = result_of(
        client.post(f"/v3/actors/{MANAGER}/messages", json={"message": message}, headers=tapis)
    )
    v3 = result_of(client.get(f"/v3/actors/{MANAGER}/executions", headers=tapis))
    v2 = result_of(client.get(f"/actors/v2/{MANAGER}/executions", headers=bearer(admin_key)))
    one = result_of(
        client.get(f"/v3/actors/{MANAGER}/executions/{sent['executionId']}/logs", headers=tapis)
    )

    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"
    assert v3["executions"] == v2["executions"] and v3["executions"][0]["id"] == sent["executionId"]
    assert "moved CREATED -> RUNNING" in one["logs"]
    assert (
        len(result_of(client.get("/v3/actors", headers=tapis))) == 5
    )  # the notifier (issue 16) is the fifth
    error_of(client.get(f"/v3/actors/{MANAGER}/executions"), 401)
    error_of(client.get(f"/v3/actors/{MANAGER}/executions", headers={"X-Tapis-Token": "x"}), 401)


def test_tenants_and_sites_name_this_gateway(client: FlaskClient) -> None:
    tenants = result_of(client.get("/v3/tenants"))  # public, as Tapis's tenants API is
    sites = result_of(client.get("/v3/sites"))

    assert tenants[0]["base_url"] == "http://localhost" and tenants[0]["tenant_id"]
    assert sites[0]["site_id"] == tenants[0]["site_id"]


def test_a_jwt_key_is_accepted_as_bearer_and_tapis_token_until_revoked(
    runtime: Runtime, client: FlaskClient, gateway: Gateway
) -> None:
    token, doc = gateway.keys.create("user", as_jwt=True, expires_in=3600)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert claims["sub"] == f"key:{doc['id'][:12]}" and claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 3600 and digest(claims["jti"]) == doc["id"]
    for headers in (bearer(token), {"X-Tapis-Token": token}):
        assert result_of(client.get(f"/v3/actors/{MANAGER}/executions", headers=headers))
    gateway.keys.revoke(doc["id"][:12])
    for headers in (bearer(token), {"X-Tapis-Token": token}):
        response = client.get(f"/v3/actors/{MANAGER}/executions", headers=headers)
        assert "revoked" in error_of(response, 401)["message"]


def test_a_jwt_key_expires_and_a_forged_one_is_refused(
    clocked: tuple[Runtime, Flask, FakeClock],
) -> None:
    rt, app, clock = clocked
    client = app.test_client()
    keys = app.config["PIPELINEJOBS"].keys
    token, doc = keys.create("admin", as_jwt=True, expires_in=60)
    url = f"/actors/v2/{MANAGER}/executions"
    assert result_of(client.get(url, headers=bearer(token)))

    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another server's secret, long enough", algorithm="HS256")
    assert "Signature" in error_of(client.get(url, headers=bearer(forged)), 401)["message"]
    unsigned = jwt.encode(claims, None, algorithm="none")
    error_of(client.get(url, headers={"X-Tapis-Token": unsigned}), 401)
    clock.advance(120)
    assert "expired" in error_of(client.get(url, headers=bearer(token)), 401)["message"]


def test_a_listed_nonce_id_is_usable_by_its_owner(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], sync: Any
) -> None:
    created = result_of(
        client.post(f"/actors/v2/{MANAGER}/nonces", json={"maxUses": 2}, headers=admin), 201
    )
    listed = result_of(client.get(f"/actors/v2/{MANAGER}/nonces", headers=admin))
    job, message = event(runtime)

    response = client.post(
        MESSAGES.format(MANAGER), json=message, query_string={"x-nonce": listed[0]["id"]}
    )

    assert listed[0]["id"] == created["id"] and result_of(response)
    assert listed[0]["_links"]["actor"] == f"http://localhost/actors/v2/{MANAGER}"
    again = result_of(client.get(f"/actors/v2/{MANAGER}/nonces", headers=admin))
    assert again[0]["remainingUses"] == 1


def test_the_system_owner_is_named_whole(runtime: Runtime, gateway: Gateway) -> None:
    from pipelinejobs.access.keys import SYSTEM_OWNER, Principal
    from pipelinejobs.access.nonces import public

    system = Principal("system", "launcher-proxy", "user", SYSTEM_OWNER, (MANAGER,))
    _, doc = gateway.nonces.create(MANAGER, system)

    assert public(doc)["owner"] == "system:launcher-proxy"
