"""Fixtures of the gateway tests: the Flask app on a stub-bus runtime, keys, helpers.

``runtime`` (tests/conftest.py) is parametrized over the memory and SQLite stores,
so every test here runs against both. Messages posted over HTTP wait on the stub
bus until ``runtime.bus.join()``; the ``sync`` fixture instead delivers each one
the moment it is published, which is what ``?_abaco_synchronous=true`` needs when
there is no worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.adapters.bus.stub import StubBus
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.domain.clock import Clock, system_clock
from pipelinejobs.gateway import Gateway, create_app
from pipelinejobs.runtime.dispatch import Runtime
from tests.support import FakeClock as FakeClock
from tests.support import runtime_config as runtime_config
from tests.support import stub as stub

#: A container pipeline: only an admin key may register it over HTTP.
PIPELINE = {"name": "Tacobot 9001", "components": [{"repo": "sd2e/tacobot:0.1.0"}]}
#: A pipeline whose jobs run elsewhere (an Agave app): any key or nonce may register it.
APP_PIPELINE = {
    "name": "Tacobot 9000",
    "components": [{"id": "tacobot9000-0.1.0u1", "inputs": {}, "parameters": {}}],
}
LINKAGE = "sample.uw_biofab.141715"
ARCHIVE = "/products/v2/1064aaf1459c5e42820db822aa4b3990/linkhash/datahash"
MESSAGES = "/actors/v2/{}/messages"
SYNC = {"_abaco_synchronous": "true"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def body_of(response: Any) -> dict[str, Any]:
    """The JSON body of a response, checked to be JSON whatever the status."""
    assert response.mimetype == "application/json", response.get_data(as_text=True)
    data = response.get_json()
    assert isinstance(data, dict)
    return data


def result_of(response: Any, status: int = 200) -> Any:
    """The ``result`` of a success envelope, after checking status and envelope."""
    data = body_of(response)
    assert response.status_code == status, data
    assert data["status"] == "success"
    assert set(data) >= {"message", "result", "version"}
    return data["result"]


def error_of(response: Any, status: int) -> dict[str, Any]:
    """An error envelope with ``status``: no traceback, the agreed fields."""
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    data = body_of(response)
    assert response.status_code == status, data
    assert data["status"] == "error"
    assert isinstance(data["message"], str) and data["message"]
    assert isinstance(data["version"], str) and data["version"]
    return data


def make_app(rt: Runtime) -> Flask:
    app = create_app(rt)
    app.config["TESTING"] = True
    return app


def gateway_of(app: Flask) -> Gateway:
    gateway = app.config["PIPELINEJOBS"]
    assert isinstance(gateway, Gateway)
    return gateway


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return make_app(runtime)


@pytest.fixture
def gateway(app: Flask) -> Gateway:
    return gateway_of(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_key(gateway: Gateway) -> str:
    secret, _ = gateway.keys.create("admin", description="test admin")
    return secret


@pytest.fixture
def admin(admin_key: str) -> dict[str, str]:
    """Headers of an admin key."""
    return bearer(admin_key)


@pytest.fixture
def user_key(gateway: Gateway) -> str:
    """A user key that may post to the jobs-manager only."""
    secret, _ = gateway.keys.create("user", actors=["jobs-manager"])
    return secret


@pytest.fixture
def user(user_key: str) -> dict[str, str]:
    return bearer(user_key)


@pytest.fixture
def other_user(gateway: Gateway) -> dict[str, str]:
    """A second user key, allowed on every actor."""
    secret, _ = gateway.keys.create("user")
    return bearer(secret)


def deliver_on_publish(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Make ``rt.publish`` run the execution at once, in the calling thread."""
    delivered: list[tuple[str, str]] = []

    def publish(
        alias: str, execution_id: str, *, delay: float = 0.0, priority: str | None = None
    ) -> None:
        delivered.append((alias, execution_id))
        rt.deliver(alias, execution_id)

    monkeypatch.setattr(rt, "publish", publish)
    return delivered


@pytest.fixture
def sync(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Deliver every published execution immediately (a worker in the request)."""
    return deliver_on_publish(runtime, monkeypatch)


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Callable[..., tuple[Runtime, Flask]]]:
    """A factory for an app on its own runtime: a given clock, store kind or settings."""
    made: list[Runtime] = []

    def factory(
        kind: str = "memory", clock: Clock = system_clock, **sections: dict
    ) -> tuple[Runtime, Flask]:
        index = len(made)
        store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / f"g{index}.sqlite3")
        bus = StubBus()
        config = runtime_config(tmp_path / f"rt{index}", **sections)
        rt = Runtime(config, store=store, bus=bus, clock=clock)  # type: ignore[arg-type]
        bus.deliver = rt.deliver
        made.append(rt)
        return rt, make_app(rt)

    yield factory
    for rt in made:
        rt.close()


# -- documents ---------------------------------------------------------------------------


def make_pipeline(rt: Runtime, definition: dict[str, Any] | None = None) -> Document:
    return rt.pipelines.create(definition or PIPELINE).pipeline


def make_job(
    rt: Runtime,
    *,
    pipeline: Document | None = None,
    linkage: tuple[str, ...] = (LINKAGE,),
    data: dict[str, Any] | None = None,
    events: tuple[str, ...] = (),
    archive: str | None = ARCHIVE,
) -> Document:
    """A stored job (as the launcher would make it), then ``events`` applied directly."""
    pipeline = pipeline or make_pipeline(rt)
    job = rt.jobs.create(
        pipeline_uuid=pipeline["uuid"],
        linkage=list(linkage),
        data=data if data is not None else {"sample": linkage[0]},
        fields={"archive_path": archive} if archive else {},
    ).job
    for event in events:
        job = rt.jobs.apply(job["uuid"], event).job
    return job


def token_of(rt: Runtime, doc: Document) -> str:
    return rt.tokens.update_token(doc["uuid"], int(doc.get("token_rotation", 0)))


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@pytest.fixture(params=["memory", "sqlite"])
def clocked(
    request: pytest.FixtureRequest, build: Callable[..., tuple[Runtime, Flask]]
) -> tuple[Runtime, Flask, FakeClock]:
    """An app on a runtime whose clock moves only when the test says so."""
    clock = FakeClock()
    rt, app = build(request.param, clock=clock)
    return rt, app, clock
