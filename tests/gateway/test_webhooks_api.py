"""The webhooks API (issue 16) over HTTP, on the memory and SQLite stores: who may
subscribe to what, the secret shown once, the deliveries readable page by page —
and a 20-job run whose every state change reaches a receiver on loopback, once per
delivery id, in order per job, signed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import APP_PIPELINE, error_of, result_of
from tests.gateway.test_job_tags import World, bearer, make_world
from tests.gateway.test_runs import create_run
from tests.webhook_receiver import Receiver, receiver


@pytest.fixture(params=["memory", "sqlite"])
def world(
    request: pytest.FixtureRequest,
    build: Callable[..., tuple[Runtime, Flask]],
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    fast = {"retry_base": 0.001, "retry_cap": 0.01}  # retries without waiting
    return make_world(*build(request.param, webhooks=fast), monkeypatch)


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def subscribe(world: World, hook: Receiver, who: str = "user", **body: Any) -> dict[str, Any]:
    response = world.client.post(
        "/webhooks", json={"url": hook.url, **body}, headers=getattr(world, who)
    )
    made: dict[str, Any] = result_of(response, 201)
    hook.secret = made["secret"]
    return made


def test_the_secret_is_shown_once_and_each_key_sees_its_own(world: World, hook: Receiver) -> None:
    mine = subscribe(world, hook, filter={"states": ["FINISHED", "FAILED"]})
    assert len(mine["secret"]) == 64 and mine["enabled"] is True
    assert mine["owner"] == world.ids["user"] and mine["filter"] == {
        "states": ["FINISHED", "FAILED"]
    }
    theirs = subscribe(world, hook, "other", secret="their-own-secret-123")
    assert theirs["secret"] == "their-own-secret-123"

    shown = result_of(world.client.get(f"/webhooks/{mine['id']}", headers=world.user))
    assert "secret" not in shown and shown["url"] == hook.url
    listed = result_of(world.client.get("/webhooks", headers=world.user))["webhooks"]
    assert [s["id"] for s in listed] == [mine["id"]]
    assert all("secret" not in s for s in listed)
    everyone = result_of(world.client.get("/webhooks", headers=world.admin))["webhooks"]
    assert {s["id"] for s in everyone} == {mine["id"], theirs["id"]}
    only = world.client.get("/webhooks", query_string={"owner": world.ids["other"]},
                            headers=world.admin)  # fmt: skip
    assert [s["id"] for s in result_of(only)["webhooks"]] == [theirs["id"]]

    for path in (f"/webhooks/{mine['id']}", f"/webhooks/{mine['id']}/deliveries"):
        error_of(world.client.get(path, headers=world.other), 404)
    error_of(world.client.delete(f"/webhooks/{mine['id']}", headers=world.other), 404)
    gone = result_of(world.client.delete(f"/webhooks/{mine['id']}", headers=world.user))
    assert gone == {"id": mine["id"], "deleted": True}
    error_of(world.client.get(f"/webhooks/{mine['id']}", headers=world.user), 404)
    error_of(world.client.get("/webhooks"), 401)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"url": "ftp://example.org/"}, "url"),
        ({"url": "http://u:p@example.org/"}, "url"),
        ({}, "url"),
        ({"url": "http://example.org/", "filter": {"events": ["boom"]}}, "filter.events"),
        ({"url": "http://example.org/", "filter": {"owner": "x"}}, "filter.owner"),
        ({"url": "http://example.org/", "secret": "short"}, "secret"),
        ({"url": "http://example.org/", "colour": "red"}, "colour"),
        ({"url": "http://example.org/", "description": {}}, "description"),
        ({"url": "http://example.org/", "filter": {"runs": "AAA"}}, "filter.runs"),
        ({"url": "http://example.org/", "batch": 0}, "batch"),
        ({"url": "http://example.org/", "batch": 501}, "batch"),
        ({"url": "http://example.org/", "batch": "10"}, "batch"),
    ],
)
def test_bad_input_is_refused_naming_the_field(world: World, body: dict, path: str) -> None:
    error = error_of(world.client.post("/webhooks", json=body, headers=world.user), 400)
    assert error["result"]["path"] == path


def test_a_user_may_not_name_others_jobs_or_runs(world: World, hook: Receiver) -> None:
    their_run = create_run(world, "theirs", "other")["uuid"]
    their_job = world.launch("sample.tacc.theirs", "other")["uuid"]
    for field, value in (("runs", their_run), ("jobs", their_job)):
        response = world.client.post(
            "/webhooks", json={"url": hook.url, "filter": {field: [value]}}, headers=world.user
        )
        assert error_of(response, 403)["result"]["path"] == f"filter.{field}"
    subscribe(world, hook, "other", filter={"runs": [their_run], "jobs": [their_job]})
    subscribe(world, hook, "admin", filter={"runs": [their_run]})


def test_private_addresses_are_refused_where_not_allowed(
    build: Callable[..., tuple[Runtime, Flask]],
) -> None:
    rt, app = build(webhooks={"allow_private": "false"})
    secret, _ = app.config["PIPELINEJOBS"].keys.create("admin")
    client = app.test_client()
    for url in ("http://127.0.0.1:8080/", "http://169.254.169.254/", "http://localhost/"):
        response = client.post("/webhooks", json={"url": url}, headers=bearer(secret))
        error = error_of(response, 400)
        assert error["result"]["path"] == "url" and "SSRF" in error["message"]


@pytest.mark.parametrize("batch", [1, 10])
def test_a_twenty_job_run_reaches_the_receiver_once_in_order_signed(
    world: World, hook: Receiver, caplog: pytest.LogCaptureFixture, batch: int
) -> None:
    """With the default notice window (events gathered for 0.25 s per process): one
    event per POST, or up to ``batch``."""
    caplog.set_level(logging.DEBUG)
    run = create_run(world, "hooked")["uuid"]
    sub = subscribe(world, hook, filter={"runs": [run]}, batch=batch)
    unrelated = world.launch("sample.tacc.elsewhere")["uuid"]
    jobs = [
        world.launch(f"sample.tacc.hook.{i}", run=run, job_definition={"appId": APP_ID})["uuid"]
        for i in range(20)
    ]
    counts = {}
    for uuid in jobs:
        history = result_of(world.client.get(f"/jobs/{uuid}/history", headers=world.user))
        counts[uuid] = len(history["history"])
    hook.wait_for(lambda: len(hook.events()) == sum(counts.values()), timeout=20)

    def recorded() -> int:  # attempts are stored once the execution's POSTs are done
        page = world.client.get(f"/webhooks/{sub['id']}/deliveries", query_string={"limit": 500},
                                headers=world.user)  # fmt: skip
        return len(result_of(page)["deliveries"])

    hook.wait_for(lambda: recorded() == len(hook.arrivals), timeout=20)
    got = hook.by_job()
    assert sorted(got) == sorted(jobs) and unrelated not in got
    for uuid in jobs:
        history = result_of(world.client.get(f"/jobs/{uuid}/history", headers=world.user))
        names = [entry["name"] for entry in history["history"]]
        assert got[uuid] == list(range(1, len(names) + 1))
        assert "finish" in names  # then index and indexed (auto-indexing)
        delivered = [b["event"]["name"] for b in hook.events() if b["job"]["uuid"] == uuid]
        assert delivered == names
    states = {b["event"]["state"] for b in hook.events()}
    assert {"CREATED", "RUNNING", "FINISHED", "INDEXING"} <= states
    assert all(b["job"]["run"] == run for b in hook.events())

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = result_of(world.client.get(f"/webhooks/{sub['id']}/deliveries",
                                          query_string=query, headers=world.user))  # fmt: skip
        seen.extend(page["deliveries"])
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(hook.arrivals)
    assert sum(d["events"] for d in seen) == len(hook.events())
    if batch > 1:  # gathered: fewer POSTs than events, none larger than the batch
        assert len(hook.arrivals) < len(hook.events())
        assert all(1 <= len(a.body["deliveries"]) <= batch for a in hook.arrivals)
    assert all(d["status_code"] == 200 and "secret" not in d for d in seen)
    assert sub["secret"] not in caplog.text


APP_ID = APP_PIPELINE["components"][0]["id"]  # type: ignore[index]


def test_a_disabled_subscription_is_enabled_again_and_catches_up(
    build: Callable[..., tuple[Runtime, Flask]], monkeypatch: pytest.MonkeyPatch, hook: Receiver
) -> None:
    """Disabled after 3 failures; enabled again by its owner (not by another key);
    the job's next event delivers everything it had not delivered, in order."""
    settings = {"retry_base": 0.001, "retry_cap": 0.01, "max_failures": 3}
    world = make_world(*build("sqlite", webhooks=settings), monkeypatch)
    hook.answer = lambda n: 500
    sub = subscribe(world, hook)
    uuid = world.launch("sample.tacc.enable")["uuid"]

    def shown() -> dict[str, Any]:
        return result_of(world.client.get(f"/webhooks/{sub['id']}", headers=world.user))

    hook.wait_for(lambda: not shown()["enabled"], timeout=20)
    assert "3 consecutive failed deliveries" in shown()["disabled_reason"]
    error_of(world.client.post(f"/webhooks/{sub['id']}/enable", headers=world.other), 404)
    hook.answer = lambda n: 200
    enabled = result_of(world.client.post(f"/webhooks/{sub['id']}/enable", headers=world.user))
    assert enabled["enabled"] and enabled["failures"] == 0 and enabled["disabled_reason"] is None
    assert "secret" not in enabled and enabled["enabled_at"]
    again = world.client.post(f"/webhooks/{sub['id']}/enable", headers=world.user)
    assert again.get_json()["message"] == "already enabled"
    world.rt.notices.forget()
    world.rt.jobs.apply(uuid, "index")  # the job's next event
    count = int(world.rt.jobs.get(uuid)["event_count"])
    hook.wait_for(lambda: hook.by_job().get(uuid) == list(range(1, count + 1)), timeout=20)
