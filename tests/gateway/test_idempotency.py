"""Idempotency-Key: a repeated POST returns the first execution, for as long as the
key lives; another caller's same key, or the same key after it expired, is new."""

from __future__ import annotations

from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime

from .conftest import MESSAGES, FakeClock, bearer, error_of, make_job, result_of, stub, token_of


def post(client: FlaskClient, headers: dict[str, str], body: dict, key: str | None) -> str:
    extra = {"Idempotency-Key": key} if key is not None else {}
    answer = client.post(MESSAGES.format("jobs-manager"), json=body, headers={**headers, **extra})
    return str(result_of(answer)["executionId"])


def event(rt: Runtime, data: dict) -> dict:
    job = make_job(rt)
    return {"uuid": job["uuid"], "name": "update", "token": token_of(rt, job), "data": data}


def test_a_repeat_returns_the_first_execution_and_is_applied_once(
    runtime: Runtime, client: FlaskClient, user: dict[str, str]
) -> None:
    body = event(runtime, {"n": 1})
    first = post(client, user, body, "k-1")
    assert [post(client, user, body, "k-1") for _ in range(3)] == [first] * 3
    stub(runtime).join()
    history = runtime.jobs.record(body["uuid"])["history"]
    assert [h["data"] for h in history].count({"n": 1}) == 1
    # Without a key, the same body is a new request each time.
    assert post(client, user, body, None) != post(client, user, body, None)


def test_a_key_is_the_callers_own(
    runtime: Runtime, client: FlaskClient, user: dict[str, str], gateway
) -> None:
    other, _ = gateway.keys.create("user", actors=["jobs-manager"])
    body = event(runtime, {"n": 2})
    assert post(client, user, body, "shared") != post(client, bearer(other), body, "shared")


def test_the_same_key_for_another_request_is_409(
    runtime: Runtime, client: FlaskClient, user: dict[str, str]
) -> None:
    body = event(runtime, {"n": 3})
    first = post(client, user, body, "k-3")
    answer = client.post(
        MESSAGES.format("jobs-manager"),
        json={**body, "data": {"n": 4}},
        headers={**user, "Idempotency-Key": "k-3"},
    )
    assert first in error_of(answer, 409)["message"]
    stub(runtime).join()
    assert [h["data"] for h in runtime.jobs.record(body["uuid"])["history"]].count({"n": 4}) == 0


def test_a_key_names_its_execution_for_the_configured_time(clocked) -> None:
    rt, app, clock = clocked
    assert isinstance(clock, FakeClock)
    secret, _ = app.config["PIPELINEJOBS"].keys.create("user")
    client, headers = app.test_client(), bearer(secret)
    body = event(rt, {"n": 5})
    first = post(client, headers, body, "nightly")
    clock.advance(rt.config.gateway.idempotency_ttl - 1)
    assert post(client, headers, body, "nightly") == first
    clock.advance(2)
    second = post(client, headers, body, "nightly")
    assert second != first
    assert post(client, headers, body, "nightly") == second


def test_an_invalid_message_with_a_key_stores_nothing(
    runtime: Runtime, client: FlaskClient, user: dict[str, str]
) -> None:
    answer = client.post(
        MESSAGES.format("jobs-manager"),
        json={"name": "update"},
        headers={**user, "Idempotency-Key": "k"},
    )
    assert "uuid" in error_of(answer, 400)["message"]
    assert runtime.store.count("executions") == 0
