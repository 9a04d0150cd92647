"""GET /metrics: the page, what the gateway's layer counts, the gauges read at scrape
time, and the key it needs only when ``metrics.require_key`` says so."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.errors import StoreUnavailable
from pipelinejobs.observability import metrics
from pipelinejobs.observability.metrics import Metrics
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    MESSAGES,
    bearer,
    error_of,
    gateway_of,
    make_job,
    stub,
    token_of,
)
from tests.observability.samples import sample, samples

MANAGER = "jobs-manager"


@pytest.fixture
def fresh() -> Iterator[Metrics]:
    """This process's metrics, new for the test: what the page shows of them."""
    metrics.reset()
    yield metrics.current()
    metrics.reset()


def page(client: FlaskClient, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return response.get_data(as_text=True)


def test_the_page_shows_jobs_per_state_and_queue_depth_per_actor(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], fresh: Metrics
) -> None:
    jobs = [make_job(runtime, linkage=(f"sample.{i}",)) for i in range(3)]
    runtime.jobs.apply(jobs[0]["uuid"], "run")
    event = {"uuid": jobs[1]["uuid"], "name": "run", "token": token_of(runtime, jobs[1])}
    assert client.post(MESSAGES.format(MANAGER), json=event, headers=admin).status_code == 200

    text = page(client)  # no key needed by default

    assert sample(text, "pipelinejobs_jobs", state="CREATED") == 2
    assert sample(text, "pipelinejobs_jobs", state="RUNNING") == 1
    assert sample(text, "pipelinejobs_jobs", state="RETIRED") == 0
    assert sample(text, "pipelinejobs_queue_depth", actor=MANAGER) == 1
    assert sample(text, "pipelinejobs_queue_depth", actor="jobs-indexer") == 0
    pending = "pipelinejobs_executions_pending"
    assert sample(text, pending, actor=MANAGER, status="SUBMITTED") == 1
    assert sample(text, pending, actor=MANAGER, status="RUNNING") == 0
    assert sample(text, "pipelinejobs_up", source="store") == 1
    assert sample(text, "pipelinejobs_events_applied_total", event="create") == 3
    assert sample(text, "pipelinejobs_events_applied_total", event="run") == 1
    # Counts only: no job's id, name or data, no token, no key in any label.
    for job in jobs:
        assert job["uuid"] not in text and job["data"]["sample"] not in text
    assert event["token"] not in text


def test_every_answer_is_counted_by_route_template_method_and_status(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], fresh: Metrics
) -> None:
    job = make_job(runtime)
    client.get(f"/jobs/{job['uuid']}", headers=admin)
    client.get(f"/jobs/{job['uuid']}")  # 401
    client.get("/no/such/route")
    client.open("/jobs", method="BREW", headers=admin)  # a method nobody knows

    text = page(client)
    total = "pipelinejobs_http_requests_total"
    assert sample(text, total, route="/jobs/<uuid>", method="GET", code="200") == 1
    assert sample(text, total, route="/jobs/<uuid>", method="GET", code="401") == 1
    assert sample(text, total, route="unmatched", method="GET", code="404") == 1
    assert sample(text, total, route="unmatched", method="other", code="405") == 1
    count = "pipelinejobs_http_request_duration_seconds_count"
    assert sample(text, count, route="/jobs/<uuid>", method="GET") == 2
    assert job["uuid"] not in text
    # The scrape itself is counted from the next one on.
    assert sample(page(client), total, route="/metrics", method="GET", code="200") == 1


def test_messages_accepted_and_refused_per_actor_and_status(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], fresh: Metrics
) -> None:
    job = make_job(runtime)
    event = {"uuid": job["uuid"], "name": "run", "token": token_of(runtime, job)}
    by_id = MESSAGES.format(runtime.actor_id(MANAGER))
    assert client.post(MESSAGES.format(MANAGER), json=event, headers=admin).status_code == 200
    assert client.post(by_id, json=event, headers=admin).status_code == 200  # alias or id
    assert client.post(MESSAGES.format(MANAGER), json=event).status_code == 401
    bad = client.post(MESSAGES.format(MANAGER), data="{not json", headers=admin)
    assert bad.status_code == 400
    assert (
        client.post(MESSAGES.format("no-such-actor"), json=event, headers=admin).status_code == 404
    )

    text = page(client)
    total = "pipelinejobs_messages_total"
    assert sample(text, total, actor=MANAGER, code="200", outcome="accepted") == 2
    assert sample(text, total, actor=MANAGER, code="401", outcome="refused") == 1
    assert sample(text, total, actor=MANAGER, code="400", outcome="refused") == 1
    assert sample(text, total, actor="unknown", code="404", outcome="refused") == 1
    assert "no-such-actor" not in text


def test_deliveries_and_events_are_on_the_page_once_run(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], fresh: Metrics
) -> None:
    job = make_job(runtime)
    event = {"uuid": job["uuid"], "name": "run", "token": token_of(runtime, job)}
    client.post(MESSAGES.format(MANAGER), json=event, headers=admin)
    client.post(MESSAGES.format(MANAGER), json={**event, "name": "finalize"}, headers=admin)
    stub(runtime).join()

    text = page(client)
    total = "pipelinejobs_executions_total"
    assert sample(text, total, actor=MANAGER, outcome="complete") == 1
    assert sample(text, total, actor=MANAGER, outcome="error") == 1
    refused = "pipelinejobs_events_refused_total"
    assert sample(text, refused, event="finalize", reason="TransitionRefused") == 1
    assert sample(text, "pipelinejobs_jobs", state="RUNNING") == 1


def test_the_gauges_are_read_at_most_once_per_cache_ttl(
    build: Callable[..., tuple[Runtime, Flask]], fresh: Metrics
) -> None:
    rt, app = build(metrics={"cache_ttl": 3600.0})
    client = app.test_client()
    make_job(rt)
    assert sample(page(client), "pipelinejobs_jobs", state="CREATED") == 1
    make_job(rt, linkage=("sample.other",))
    assert sample(page(client), "pipelinejobs_jobs", state="CREATED") == 1  # cached
    rt, app = build(metrics={"cache_ttl": 0.0})
    client = app.test_client()
    make_job(rt)
    page(client)
    make_job(rt, linkage=("sample.other",))
    assert sample(page(client), "pipelinejobs_jobs", state="CREATED") == 2


def test_a_store_that_does_not_answer_leaves_its_gauges_out_not_the_page(
    runtime: Runtime, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, fresh: Metrics
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the store is down")

    monkeypatch.setattr(runtime.store, "count", down)
    text = page(client)
    assert sample(text, "pipelinejobs_up", source="store") == 0
    assert sample(text, "pipelinejobs_up", source="broker") == 1
    assert not any(name == "pipelinejobs_jobs" for name, _ in samples(text))


def test_a_key_is_needed_only_when_the_setting_says_so(
    build: Callable[..., tuple[Runtime, Flask]], fresh: Metrics
) -> None:
    rt, app = build(metrics={"require_key": True})
    client = app.test_client()
    gateway = gateway_of(app)
    user_key, owner = gateway.keys.create("user", actors=[MANAGER])
    error_of(client.get("/metrics"), 401)
    error_of(client.get("/metrics", headers=bearer("nope")), 401)
    assert "pipelinejobs_jobs" in page(client, **bearer(user_key))
    # A nonce is an actor's credential, not a scraper's.
    principal = gateway.keys.authenticate(user_key)
    nonce, _ = gateway.nonces.create(MANAGER, principal, level="READ")
    error_of(client.get("/metrics", query_string={"x-nonce": nonce}), 401)
    operation = app.test_client().get("/openapi.json").get_json()["paths"]["/metrics"]["get"]
    assert "security" not in operation and "401" in operation["responses"]  # the default

    _, open_app = build()
    operation = open_app.test_client().get("/openapi.json").get_json()["paths"]["/metrics"]["get"]
    assert operation["security"] == []
