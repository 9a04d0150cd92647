"""Every error code the gateway answers, each as JSON in Abaco's envelope, never a traceback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from pipelinejobs.gateway import Gateway
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    MESSAGES,
    PIPELINE,
    SYNC,
    bearer,
    error_of,
    make_job,
    result_of,
    token_of,
)


@dataclass
class Ctx:
    runtime: Runtime
    gateway: Gateway
    client: FlaskClient
    admin: dict[str, str]
    user: dict[str, str]
    job: dict[str, Any]

    def nonce(self, actor: str = "jobs-manager", **body: Any) -> str:
        response = self.client.post(f"/actors/v2/{actor}/nonces", json=body, headers=self.admin)
        return str(result_of(response, 201)["id"])

    def event(self, name: str, token: str | None = None) -> dict[str, Any]:
        token = token or token_of(self.runtime, self.job)
        return {"uuid": self.job["uuid"], "name": name, "token": token}


Case = Callable[[Ctx], Any]
JM = MESSAGES.format("jobs-manager")


def revoked(c: Ctx) -> Any:
    secret, doc = c.gateway.keys.create("user")
    c.gateway.keys.revoke(doc["id"])
    return c.client.post(JM, json=c.event("run"), headers=bearer(secret))


CASES: dict[str, tuple[int, Case]] = {
    # 400
    "schema": (400, lambda c: c.client.post(JM, json={"name": "run"}, headers=c.admin)),
    "malformed JSON": (
        400,
        lambda c: c.client.post(
            JM, data='{"uuid": ', content_type="application/json", headers=c.admin
        ),
    ),
    "form data that is not JSON": (
        400,
        lambda c: c.client.post(
            JM, data="a=1&b=2", content_type="application/x-www-form-urlencoded", headers=c.admin
        ),
    ),
    "not UTF-8": (
        400,
        lambda c: c.client.post(
            JM, data=b"\xff\xfe{", content_type="application/json", headers=c.admin
        ),
    ),
    "bad nonce request": (
        400,
        lambda c: c.client.post(
            "/actors/v2/jobs-manager/nonces", json={"maxUses": 0}, headers=c.admin
        ),
    ),
    "bad uuid": (400, lambda c: c.client.get("/jobs/not-a-uuid", headers=c.admin)),
    "bad cursor on jobs": (400, lambda c: c.client.get("/jobs?cursor=garbage", headers=c.admin)),
    "bad cursor on executions": (
        400,
        lambda c: c.client.get("/actors/v2/jobs-manager/executions?cursor=WzFd", headers=c.admin),
    ),
    "bad updated_since": (
        400,
        lambda c: c.client.get("/jobs?updated_since=yesterday", headers=c.admin),
    ),
    # 401
    "no credential on a message": (401, lambda c: c.client.post(JM, json=c.event("run"))),
    "no credential on executions": (
        401,
        lambda c: c.client.get("/actors/v2/jobs-manager/executions"),
    ),
    "no credential on the read API": (401, lambda c: c.client.get("/jobs")),
    "no credential on nonces": (
        401,
        lambda c: c.client.post("/actors/v2/jobs-manager/nonces", json={}),
    ),
    "unknown key": (
        401,
        lambda c: c.client.post(JM, json=c.event("run"), headers=bearer("0" * 32)),
    ),
    "revoked key": (401, revoked),
    "unknown nonce": (
        401,
        lambda c: c.client.post(JM, json=c.event("run"), query_string={"x-nonce": "PJ_nope"}),
    ),
    "nonce on the read API": (
        401,
        lambda c: c.client.get("/jobs", query_string={"x-nonce": c.nonce(level="READ")}),
    ),
    # 403
    "key not allowed on this actor": (
        403,
        lambda c: c.client.post(
            MESSAGES.format("jobs-indexer"), json={"uuid": c.job["uuid"]}, headers=c.user
        ),
    ),
    "nonce of another actor": (
        403,
        lambda c: c.client.post(
            JM, json=c.event("run"), query_string={"x-nonce": c.nonce("jobs-indexer")}
        ),
    ),
    "READ nonce posting": (
        403,
        lambda c: c.client.post(
            JM, json=c.event("run"), query_string={"x-nonce": c.nonce(level="READ")}
        ),
    ),
    "wrong update token": (
        403,
        lambda c: c.client.post(
            JM, json=c.event("run", "0123456789abcdef"), query_string=SYNC, headers=c.admin
        ),
    ),
    # 404
    "unknown actor": (
        404,
        lambda c: c.client.post(MESSAGES.format("no-such-actor"), json={}, headers=c.admin),
    ),
    "unknown actor's executions": (
        404,
        lambda c: c.client.get("/actors/v2/AbCdEfGhIjKlM/executions", headers=c.admin),
    ),
    "unknown job": (
        404,
        lambda c: c.client.get(
            f"/jobs/{c.runtime.ids.job(c.job['pipeline_uuid'], ['x.y.z'], {})}", headers=c.admin
        ),
    ),
    "unknown execution": (
        404,
        lambda c: c.client.get("/actors/v2/jobs-manager/executions/NoSuchExec123", headers=c.admin),
    ),
    "unknown nonce id": (
        404,
        lambda c: c.client.delete("/actors/v2/jobs-manager/nonces/abcdef123456", headers=c.admin),
    ),
    "unknown route": (404, lambda c: c.client.get("/actors/v3/whatever", headers=c.admin)),
    "unknown route without credential": (404, lambda c: c.client.get("/nope")),
    # 405
    "GET messages": (405, lambda c: c.client.get(JM, headers=c.admin)),
    "DELETE jobs": (405, lambda c: c.client.delete("/jobs", headers=c.admin)),
    "POST pipelines": (405, lambda c: c.client.post("/pipelines", json={}, headers=c.admin)),
    "PUT execution": (
        405,
        lambda c: c.client.put("/actors/v2/jobs-manager/executions/x", headers=c.admin),
    ),
    "POST healthz": (405, lambda c: c.client.post("/healthz")),
    # 409
    "refused transition": (
        409,
        lambda c: c.client.post(JM, json=c.event("finalize"), query_string=SYNC, headers=c.admin),
    ),
    # 415
    "image/png": (
        415,
        lambda c: c.client.post(
            JM, data=json.dumps(c.event("run")), content_type="image/png", headers=c.admin
        ),
    ),
    "multipart/form-data": (
        415,
        lambda c: c.client.post(
            JM,
            data={"file": (io.BytesIO(b'{"a": 1}'), "event.json")},
            content_type="multipart/form-data",
            headers=c.admin,
        ),
    ),
    "XML nonce request": (
        415,
        lambda c: c.client.post(
            "/actors/v2/jobs-manager/nonces",
            data="<nonce/>",
            content_type="application/xml",
            headers=c.admin,
        ),
    ),
}


@pytest.fixture
def ctx(
    runtime: Runtime,
    gateway: Gateway,
    client: FlaskClient,
    admin: dict[str, str],
    user: dict[str, str],
    sync: list[tuple[str, str]],
) -> Ctx:
    return Ctx(runtime, gateway, client, admin, user, make_job(runtime))


@pytest.mark.parametrize(("status", "case"), CASES.values(), ids=list(CASES))
def test_error_codes(ctx: Ctx, status: int, case: Case) -> None:
    before = ctx.runtime.store.get("jobs", ctx.job["uuid"])

    response = case(ctx)

    data = error_of(response, status)
    assert set(data) == {"status", "message", "result", "version"}
    assert ctx.runtime.store.get("jobs", ctx.job["uuid"]) == before  # nothing changed


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", "Token abc", "abc", "Bearerabc"],
)
def test_a_malformed_authorization_header_is_401(
    client: FlaskClient, admin_key: str, header: str
) -> None:
    response = client.get("/jobs", headers={"Authorization": header.replace("abc", admin_key)})

    assert "Bearer" in error_of(response, 401)["message"]


def test_401_says_how_to_authenticate(client: FlaskClient) -> None:
    message = error_of(client.post(JM, json={}), 401)["message"]

    assert "Authorization: Bearer" in message and "x-nonce" in message


def test_revoked_and_unknown_keys_say_which(ctx: Ctx) -> None:
    assert "revoked" in error_of(revoked(ctx), 401)["message"]
    response = ctx.client.get("/jobs", headers=bearer("f" * 32))
    assert "not known" in error_of(response, 401)["message"]


def test_unknown_actor_names_the_actors(ctx: Ctx) -> None:
    data = error_of(CASES["unknown actor"][1](ctx), 404)

    assert "no-such-actor" in data["message"]
    for alias in ctx.runtime.actors:
        assert alias in data["message"]


def test_malformed_json_is_refused_before_anything_is_stored(ctx: Ctx) -> None:
    data = error_of(CASES["malformed JSON"][1](ctx), 400)

    assert "not valid JSON" in data["message"]
    assert ctx.runtime.store.find("executions").items == []


def test_refused_transition_says_state_event_and_allowed(ctx: Ctx) -> None:
    data = error_of(CASES["refused transition"][1](ctx), 409)

    error = data["result"]["error"]
    assert (error["state"], error["event"]) == ("CREATED", "finalize")
    assert error["allowed"] == ["VALIDATED"]


def test_415_lists_what_is_accepted(ctx: Ctx) -> None:
    data = error_of(CASES["image/png"][1](ctx), 415)

    assert "image/png" in data["message"]
    assert "application/json" in data["result"]["allowed"]
    assert ctx.runtime.store.find("executions").items == []


@pytest.mark.parametrize(
    "route", ["/actors/v2/pipelines-manager/messages", "/actors/v2/pipelines-manager/nonces"]
)
def test_a_body_over_the_limit_is_413(build: Any, route: str) -> None:
    rt, app = build(gateway={"max_body": 1000})
    assert app.config["MAX_CONTENT_LENGTH"] == 1000
    headers = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])
    client = app.test_client()
    small = {"description": "x" * 100} if route.endswith("nonces") else PIPELINE
    big = {"description": "x" * 2000}

    accepted = 201 if route.endswith("nonces") else 200
    assert client.post(route, json=small, headers=headers).status_code == accepted
    executions = len(rt.store.find("executions").items)
    response = client.post(route, json=big, headers=headers)

    error_of(response, 413)
    assert len(rt.store.find("executions").items) == executions


def test_413_names_the_limit(build: Any) -> None:
    _, app = build(gateway={"max_body": 1000})
    headers = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])

    response = app.test_client().post(JM, data="x" * 1001, headers=headers)

    assert "1000 bytes" in error_of(response, 413)["message"]


def test_405_says_which_methods_are_allowed(ctx: Ctx) -> None:
    response = CASES["GET messages"][1](ctx)

    error_of(response, 405)
    assert "POST" in response.headers["Allow"]
    assert response.mimetype == "application/json"


@pytest.mark.parametrize(
    ("url", "text"),
    [("/jobs?cursor=garbage", "garbage"), ("/jobs?updated_since=yesterday", "RFC 3339")],
)
def test_bad_query_values_name_the_parameter(ctx: Ctx, url: str, text: str) -> None:
    data = error_of(ctx.client.get(url, headers=ctx.admin), 400)

    assert text in data["message"]
    assert data["result"]["path"] == url.split("?")[1].split("=")[0]


def test_the_default_body_limit_is_one_mebibyte(runtime: Runtime, gateway: Gateway) -> None:
    assert gateway.config.gateway.max_body == 1024 * 1024


@pytest.mark.parametrize(
    ("url", "target", "attribute"),
    [
        ("/actors/v2/jobs-manager/executions", "executions", "page"),
        ("/jobs", "store", "find"),
        ("/pipelines", "store", "find"),
        ("/actors/v2/jobs-manager/nonces", "nonces", "list"),
    ],
)
def test_an_unexpected_error_is_500_without_details(
    runtime: Runtime,
    gateway: Gateway,
    client: FlaskClient,
    admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    url: str,
    target: str,
    attribute: str,
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    owner = {"executions": runtime.executions, "store": runtime.store, "nonces": gateway.nonces}
    monkeypatch.setattr(owner[target], attribute, explode)

    with caplog.at_level(logging.ERROR, logger="pipelinejobs.gateway"):
        response = client.get(url, headers=admin)

    data = error_of(response, 500)
    assert data["result"] == {"error": "InternalError"}
    assert "hunter2" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.name == "pipelinejobs.gateway"]
    assert logged and logged[0].exc_info is not None  # the traceback goes to the log
