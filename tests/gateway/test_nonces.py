"""Nonces over HTTP: create, list, show, delete, and redeem with ``?x-nonce=``."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.access.keys import digest
from pipelinejobs.gateway import Gateway
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

NONCES = "/actors/v2/{}/nonces"
EXECUTIONS = "/actors/v2/{}/executions"


def create_nonce(
    client: FlaskClient, headers: dict[str, str], actor: str = "jobs-manager", **body: Any
) -> dict[str, Any]:
    result = result_of(client.post(NONCES.format(actor), json=body, headers=headers), 201)
    assert isinstance(result, dict)
    return result


def post_with_nonce(
    client: FlaskClient, nonce: str, actor: str = "pipelines-manager", message: Any = None
) -> Any:
    return client.post(
        MESSAGES.format(actor),
        json=APP_PIPELINE if message is None else message,
        query_string={"x-nonce": nonce},
    )


# -- managing nonces --------------------------------------------------------------------------


def test_create_defaults_and_the_owner_lists_the_id_again(
    client: FlaskClient, admin: dict[str, str], admin_key: str, gateway: Gateway
) -> None:
    created = create_nonce(client, admin)

    assert created["id"].startswith("PJ_") and len(created["id"]) > 20
    assert created["level"] == "EXECUTE"
    assert created["maxUses"] == -1 and created["remainingUses"] == -1
    assert created["actorId"] == "jobs-manager"
    assert created["expires"] is None
    assert created["owner"] == digest(admin_key)[:12]
    # As Abaco lists them: the id its owner can use (derived again, never stored).
    listed = client.get(NONCES.format("jobs-manager"), headers=admin)
    assert result_of(listed)[0]["id"] == created["id"]
    assert digest(created["id"]) not in listed.get_data(as_text=True)
    assert created["id"] not in json.dumps(gateway.store.find("nonces").items)
    # Anyone else who may list it (another admin) sees only the name it goes by.
    other = bearer(gateway.keys.create("admin")[0])
    listed = client.get(NONCES.format("jobs-manager"), headers=other)
    assert result_of(listed)[0]["id"] == digest(created["id"])[:12]
    assert created["id"] not in listed.get_data(as_text=True)


def test_create_with_every_field(clocked: tuple[Runtime, Flask, FakeClock]) -> None:
    rt, app, clock = clocked
    client = app.test_client()
    admin = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])

    created = create_nonce(
        client, admin, "jobs-indexer", level="READ", maxUses=3, description="cb", expiresIn=60
    )

    assert (created["level"], created["maxUses"], created["remainingUses"]) == ("READ", 3, 3)
    assert created["description"] == "cb"
    assert created["actorId"] == "jobs-indexer"
    from pipelinejobs.domain.clock import iso

    assert created["expires"] == iso(clock() + 60)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"maxUses": 0}, "maxUses"),
        ({"maxUses": -2}, "maxUses"),
        ({"maxUses": "3"}, "maxUses"),
        ({"maxUses": True}, "maxUses"),
        ({"level": "ADMIN"}, "level"),
        ({"expiresIn": 0}, "expiresIn"),
        ({"expiresIn": "soon"}, "expiresIn"),
        ({"uses": 3}, "uses"),
        ({"maxUses": 1, "secret": "x"}, "secret"),
        ({"expiresIn": 1e308}, "expiresIn"),  # once an overflow of the clock: a 500
        ({"expiresIn": 315_576_001}, "expiresIn"),  # over ten years
        ({"expiresIn": -1}, "expiresIn"),
        ({"maxUses": 1_000_000_001}, "maxUses"),
        ({"maxUses": 1.5}, "maxUses"),
        ({"description": "x" * 1025}, "description"),
        ({"description": 7}, "description"),
    ],
)
def test_invalid_nonce_requests_are_400(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    body: dict[str, Any],
    path: str,
) -> None:
    response = client.post(NONCES.format("jobs-manager"), json=body, headers=admin)

    assert error_of(response, 400)["result"]["path"] == path
    assert runtime.store.find("nonces").items == []


@pytest.mark.parametrize(
    ("body", "uses"),
    [({"maxUses": 5.0}, 5), ({"maxUses": 1_000_000_000}, 1_000_000_000), ({"expiresIn": None}, -1)],
)
def test_bounds_of_a_nonce_request_are_inclusive(
    client: FlaskClient, admin: dict[str, str], body: dict[str, Any], uses: int
) -> None:
    created = create_nonce(client, admin, **body, description="d" * 1024)

    assert created["maxUses"] == uses and type(created["maxUses"]) is int
    assert created["expires"] is None


def test_a_nonce_may_live_ten_years(clocked: tuple[Runtime, Flask, FakeClock]) -> None:
    _, app, clock = clocked
    admin = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])

    created = create_nonce(app.test_client(), admin, expiresIn=315_576_000)

    from pipelinejobs.domain.clock import iso

    assert created["expires"] == iso(clock() + 315_576_000)


@pytest.mark.parametrize("name", ["abc", "0" * 11, "PJ_short", "G" * 12])
def test_a_nonce_is_named_by_its_listed_id_or_its_secret_only(
    client: FlaskClient, admin: dict[str, str], name: str
) -> None:
    create_nonce(client, admin)

    error_of(client.get(f"{NONCES.format('jobs-manager')}/{name}", headers=admin), 404)


def test_a_nonce_request_that_is_not_an_object_is_400(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    response = client.post(NONCES.format("jobs-manager"), json=[1], headers=admin)

    error_of(response, 400)


def test_get_one_and_delete_one(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    secret = create_nonce(client, admin, maxUses=2)["id"]
    short = digest(secret)[:12]
    url = f"{NONCES.format('jobs-manager')}/{short}"

    one = result_of(client.get(url, headers=admin))
    assert one["id"] == secret and one["remainingUses"] == 2  # its owner's: the usable id
    assert result_of(client.get(f"{NONCES.format('jobs-manager')}/{secret}", headers=admin))

    assert result_of(client.delete(url, headers=admin)) is None
    assert runtime.store.find("nonces").items == []
    error_of(client.get(url, headers=admin), 404)
    error_of(client.delete(url, headers=admin), 404)
    error_of(post_with_nonce(client, secret, "jobs-manager"), 401)


def test_nonce_of_another_actor_is_not_found_by_id(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    secret = create_nonce(client, admin, "jobs-manager")["id"]

    response = client.get(f"{NONCES.format('jobs-indexer')}/{digest(secret)[:12]}", headers=admin)

    error_of(response, 404)


def test_users_see_and_delete_only_their_own_nonces(
    client: FlaskClient, admin: dict[str, str], user: dict[str, str], other_user: dict[str, str]
) -> None:
    mine = create_nonce(client, user)["id"]
    theirs = create_nonce(client, other_user)["id"]

    def listed(headers: dict[str, str]) -> set[str]:
        items = result_of(client.get(NONCES.format("jobs-manager"), headers=headers))
        return {n["id"] for n in items}

    assert listed(user) == {mine}  # each owner sees the id it can use
    assert listed(other_user) == {theirs}
    assert listed(admin) == {digest(mine)[:12], digest(theirs)[:12]}  # others' by name
    theirs_url = f"{NONCES.format('jobs-manager')}/{digest(theirs)[:12]}"
    error_of(client.get(theirs_url, headers=user), 404)
    error_of(client.delete(theirs_url, headers=user), 404)
    assert result_of(client.get(theirs_url, headers=other_user))


def test_users_create_nonces_only_on_actors_they_may_post_to(
    client: FlaskClient, user: dict[str, str]
) -> None:
    assert create_nonce(client, user, "jobs-manager")

    response = client.post(NONCES.format("jobs-indexer"), json={}, headers=user)

    assert "jobs-manager" in error_of(response, 403)["message"]


def test_a_nonce_cannot_manage_nonces(client: FlaskClient, admin: dict[str, str]) -> None:
    secret = create_nonce(client, admin, level="UPDATE", maxUses=2)["id"]
    short = digest(secret)[:12]
    query = {"x-nonce": secret}
    url = NONCES.format("jobs-manager")

    for response in (
        client.post(url, json={}, query_string=query),
        client.get(url, query_string=query),
        client.get(f"{url}/{short}", query_string=query),
        client.delete(f"{url}/{short}", query_string=query),
    ):
        assert "nonce" in error_of(response, 403)["message"]
    assert result_of(client.get(f"{url}/{short}", headers=admin))["remainingUses"] == 2


def test_nonces_are_stored_hashed(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    secrets = [create_nonce(client, admin, maxUses=n)["id"] for n in (1, 5)]

    stored = runtime.store.find("nonces").items
    assert {doc["id"] for doc in stored} == {digest(s) for s in secrets}
    text = json.dumps(stored)
    for secret in secrets:
        assert secret not in text
        assert secret[3:] not in text


# -- redeeming nonces -------------------------------------------------------------------------


def test_x_nonce_authenticates_a_post_as_its_owner(
    runtime: Runtime, client: FlaskClient, other_user: dict[str, str]
) -> None:
    secret = create_nonce(client, other_user, "pipelines-manager", maxUses=2)["id"]

    response = post_with_nonce(client, secret)

    execution_id = result_of(response)["executionId"]
    stored = runtime.executions.get(execution_id)
    assert stored["owner"] == digest(other_user["Authorization"].split()[1])
    assert "x-nonce" not in stored["params"]
    assert secret not in json.dumps(stored)
    listed = result_of(client.get(NONCES.format("pipelines-manager"), headers=other_user))
    assert listed[0]["remainingUses"] == 1


def test_the_result_of_a_nonce_post_belongs_to_the_nonce_owner(
    runtime: Runtime,
    client: FlaskClient,
    other_user: dict[str, str],
    user: dict[str, str],
    sync: list[tuple[str, str]],
) -> None:
    secret = create_nonce(client, other_user, "pipelines-manager")["id"]

    created = result_of(
        client.post(
            MESSAGES.format("pipelines-manager"),
            json=APP_PIPELINE,
            query_string={"x-nonce": secret, **SYNC},
        )
    )

    token = created["result"]["token"]
    url = f"{EXECUTIONS.format('pipelines-manager')}/{created['id']}"
    assert result_of(client.get(url, headers=other_user))["result"]["token"] == token
    assert result_of(client.get(url, headers=user))["result"]["token"] == "********"


def test_a_used_up_nonce_is_401(client: FlaskClient, admin: dict[str, str]) -> None:
    secret = create_nonce(client, admin, "pipelines-manager", maxUses=2)["id"]

    result_of(post_with_nonce(client, secret))
    result_of(post_with_nonce(client, secret))
    response = post_with_nonce(client, secret)

    assert "no uses left" in error_of(response, 401)["message"]


def test_an_unlimited_nonce_keeps_working(client: FlaskClient, admin: dict[str, str]) -> None:
    secret = create_nonce(client, admin, "pipelines-manager", maxUses=-1)["id"]

    for _ in range(5):
        result_of(post_with_nonce(client, secret))


def test_an_expired_nonce_is_401(clocked: tuple[Runtime, Flask, FakeClock]) -> None:
    rt, app, clock = clocked
    client = app.test_client()
    admin = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])
    secret = create_nonce(client, admin, "pipelines-manager", expiresIn=60)["id"]

    clock.advance(59)
    result_of(post_with_nonce(client, secret))
    clock.advance(1)
    response = post_with_nonce(client, secret)

    assert "expired" in error_of(response, 401)["message"]


@pytest.mark.parametrize("nonce", ["PJ_not-a-real-nonce", "", "x" * 500])
def test_an_unknown_nonce_is_401(client: FlaskClient, nonce: str) -> None:
    error_of(post_with_nonce(client, nonce), 401)


def test_a_nonce_for_another_actor_is_403(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    secret = create_nonce(client, admin, "jobs-manager")["id"]

    response = post_with_nonce(client, secret, "pipelines-manager")

    assert "jobs-manager" in error_of(response, 403)["message"]
    assert runtime.store.find("executions").items == []


@pytest.mark.parametrize(
    ("level", "post_status", "read_status"),
    [("READ", 403, 200), ("EXECUTE", 200, 200), ("UPDATE", 200, 200)],
)
def test_nonce_levels(
    client: FlaskClient,
    admin: dict[str, str],
    level: str,
    post_status: int,
    read_status: int,
) -> None:
    secret = create_nonce(client, admin, "pipelines-manager", level=level)["id"]

    posted = post_with_nonce(client, secret)
    read = client.get(EXECUTIONS.format("pipelines-manager"), query_string={"x-nonce": secret})

    assert posted.status_code == post_status
    assert read.status_code == read_status
    if post_status == 403:
        assert "READ" in error_of(posted, 403)["message"]


def test_the_read_api_refuses_nonces(client: FlaskClient, admin: dict[str, str]) -> None:
    secret = create_nonce(client, admin, "jobs-manager", level="UPDATE")["id"]

    for url in ("/jobs", "/pipelines"):
        response = client.get(url, query_string={"x-nonce": secret})
        assert "bearer" in error_of(response, 401)["message"]


def test_a_nonce_dies_with_the_key_that_made_it(
    gateway: Gateway, client: FlaskClient, other_user: dict[str, str]
) -> None:
    """Revoking a key must revoke what it delegated, or a leaked callback URL outlives it."""
    secret = create_nonce(client, other_user, "pipelines-manager")["id"]
    result_of(post_with_nonce(client, secret))

    owner = gateway.nonces.list("pipelines-manager")[0]["owner"]
    gateway.keys.revoke(owner[:12])

    assert "revoked" in error_of(post_with_nonce(client, secret), 401)["message"]


def test_a_jobs_manager_callback_with_a_nonce(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    """The seed's finish event as URL parameters with x-nonce (a backend's callback)."""
    job = make_job(runtime, events=("run",))
    secret = create_nonce(client, admin, "jobs-manager", maxUses=1)["id"]
    params = {"uuid": job["uuid"], "event": "finish", "token": token_of(runtime, job)}

    response = client.post(
        MESSAGES.format("jobs-manager"), query_string={**params, "x-nonce": secret}
    )

    execution_id = result_of(response)["executionId"]
    assert runtime.executions.get(execution_id)["params"] == params
    assert runtime.bus is not None
    runtime.bus.join()  # type: ignore[attr-defined]
    assert runtime.jobs.get(job["uuid"])["state"] == "FINISHED"


def test_two_concurrent_last_uses_only_one_succeeds(
    build: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real threads, real SQLite: the decrement is one compare-and-set.

    Each thread's first read of the nonce waits for the other's, so both hold the
    same remaining count before either writes: the worst interleaving, every time.
    """
    rt, app = build("sqlite")
    admin = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])
    secret = create_nonce(app.test_client(), admin, "pipelines-manager", maxUses=1)["id"]
    start = threading.Barrier(2, timeout=30)
    both_read = threading.Barrier(2, timeout=30)
    local = threading.local()
    real_get = rt.store.get

    def get(collection: str, key: Any) -> Any:
        doc = real_get(collection, key)
        if collection == "nonces" and not getattr(local, "waited", False):
            local.waited = True
            both_read.wait()
        return doc

    monkeypatch.setattr(rt.store, "get", get)
    codes: list[int] = []
    lock = threading.Lock()

    def use(client: FlaskClient) -> None:
        start.wait()
        response = post_with_nonce(client, secret)
        with lock:
            codes.append(response.status_code)

    threads = [threading.Thread(target=use, args=(app.test_client(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(codes) == [200, 401]
    assert real_get("nonces", digest(secret))["remaining_uses"] == 0
    assert len(rt.store.find("executions").items) == 1


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b'{"name": "no components"}', {"Content-Type": "application/json"}, 400),
        (b"<xml/>", {"Content-Type": "application/xml"}, 415),
        (b'{"name": "' + b"x" * 2_000_000 + b'"}', {"Content-Type": "application/json"}, 413),
    ],
    ids=["bad-json", "schema", "media-type", "too-large"],
)
def test_a_malformed_message_does_not_spend_a_use(
    runtime: Runtime,
    client: FlaskClient,
    admin: dict[str, str],
    body: bytes,
    headers: dict[str, str],
    code: int,
) -> None:
    secret = create_nonce(client, admin, "pipelines-manager", maxUses=1)["id"]
    refused = client.post(
        MESSAGES.format("pipelines-manager"),
        data=body,
        headers=headers,
        query_string={"x-nonce": secret},
    )
    error_of(refused, code)
    assert runtime.store.get("nonces", digest(secret))["remaining_uses"] == 1
    assert runtime.store.count("executions") == 0  # nothing stored either

    result_of(post_with_nonce(client, secret))  # its one use is still there
    assert "no uses left" in error_of(post_with_nonce(client, secret), 401)["message"]


def test_a_refused_credential_check_does_not_refund_anything(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str]
) -> None:
    # A nonce for another actor is refused before a use is spent; and a request that
    # was accepted keeps its use spent even if its actor later refuses the message.
    secret = create_nonce(client, admin, "jobs-manager", maxUses=2)["id"]
    error_of(post_with_nonce(client, secret, actor="pipelines-manager"), 403)
    assert runtime.store.get("nonces", digest(secret))["remaining_uses"] == 2
    job = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"  # none such: its actor will refuse it
    unknown_job = {"uuid": job, "name": "update", "token": "0dc73dc3ff39b49a"}
    result_of(post_with_nonce(client, secret, actor="jobs-manager", message=unknown_job))
    assert runtime.store.get("nonces", digest(secret))["remaining_uses"] == 1
