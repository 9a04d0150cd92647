"""Contention and outages answer 503 "retry": ``Retry-After``, and nothing written.

A store whose compare-and-set always loses on chosen collections (as if another
writer changed the document between every read and write) drives each loop past its
budget — ``store.cas_retries``, set low here, which also shows the budget reaches it
from the configuration. Whatever loop runs out (a key, a nonce's redemption on a read
or on a message post), the caller gets the same answer from the one error translation:
503, ``Retry-After``, ``retryable``/``written: false`` in the envelope — and sending
the same request again once the contention is over just works.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from pipelinejobs.adapters.bus.stub import StubBus
from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.errors import BusUnavailable
from pipelinejobs.gateway import Gateway
from pipelinejobs.gateway.auth import requires
from pipelinejobs.gateway.http import envelope
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    MESSAGES,
    bearer,
    error_of,
    gateway_of,
    make_app,
    make_job,
    result_of,
    token_of,
)
from tests.support import runtime_config

RETRIES = 2
JM = MESSAGES.format("jobs-manager")


class Losing:
    """A store whose compare-and-set loses on the collections in ``losing``, every
    time; every other operation goes to the real store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.losing: set[str] = set()
        self.lost = 0

    def update(
        self,
        collection: str,
        key: Any,
        *,
        version: int,
        set: Mapping[str, Any] | None = None,  # noqa: A002 - the Store's own names
        push: Mapping[str, Any] | None = None,
    ) -> Document | None:
        if collection in self.losing:
            self.lost += 1
            return None
        return self.store.update(collection, key, version=version, set=set, push=push)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@dataclass
class Ctx:
    runtime: Runtime
    gateway: Gateway
    client: FlaskClient
    store: Losing
    admin: dict[str, str]

    def nonce(self, max_uses: int = 3) -> str:
        response = self.client.post(
            "/actors/v2/jobs-manager/nonces", json={"maxUses": max_uses}, headers=self.admin
        )
        return str(result_of(response, 201)["id"])

    def uses_left(self, nonce: str) -> int:
        listed = result_of(self.client.get("/actors/v2/jobs-manager/nonces", headers=self.admin))
        return int(next(n["remainingUses"] for n in listed if n["id"] == nonce))

    def event(self, job: Document) -> dict[str, Any]:
        return {"uuid": job["uuid"], "name": "update", "token": token_of(self.runtime, job)}


@pytest.fixture(params=["memory", "sqlite"])
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ctx]:
    inner = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "c.sqlite3")
    store = Losing(inner)
    bus = StubBus()
    config = runtime_config(tmp_path, store={"cas_retries": RETRIES})
    rt = Runtime(config, store=store, bus=bus)  # type: ignore[arg-type]
    bus.deliver = rt.deliver
    app = make_app(rt)
    gateway = gateway_of(app)

    # No HTTP route revokes a key (`pipelinejobs keys revoke` does): this one runs the
    # same call inside the app, so its errors take the app's one translation.
    @app.post("/test/keys/<key_id>/revoke")
    @requires(admin=True)
    def revoke(key_id: str) -> Any:
        return envelope(gateway.keys.revoke(key_id)["revoked"])

    secret, _ = gateway.keys.create("admin")
    yield Ctx(rt, gateway, app.test_client(), store, bearer(secret))
    rt.close()


def retry_later(response: Any, error: str, seconds: int) -> dict[str, Any]:
    """The 503 every transient failure answers: when to retry, and that nothing was written."""
    data = error_of(response, 503)
    assert response.headers["Retry-After"] == str(seconds)
    assert data["result"]["error"] == error
    assert data["result"]["retryable"] is True
    assert data["result"]["written"] is False
    assert data["result"]["retry_after"] == seconds
    assert "nothing was written" in data["message"]
    assert "may be retried" in data["message"]
    return data


def test_a_key_whose_revocation_keeps_losing(ctx: Ctx) -> None:
    _, doc = ctx.gateway.keys.create("user")
    ctx.store.losing = {"keys"}

    response = ctx.client.post(f"/test/keys/{doc['id'][:12]}/revoke", headers=ctx.admin)

    retry_later(response, "TooManyConflicts", 1)
    assert ctx.store.lost == RETRIES + 1  # the configured budget, not a loop's own
    assert ctx.store.store.get("keys", doc["id"])["revoked"] is False
    ctx.store.losing = set()
    again = ctx.client.post(f"/test/keys/{doc['id'][:12]}/revoke", headers=ctx.admin)
    assert result_of(again) is True


def test_a_nonce_whose_redemption_keeps_losing(ctx: Ctx) -> None:
    nonce = ctx.nonce(max_uses=3)
    ctx.store.losing = {"nonces"}
    read = f"/actors/v2/jobs-manager/executions?x-nonce={nonce}"

    retry_later(ctx.client.get(read), "TooManyConflicts", 1)  # was 401, "too contended"

    assert ctx.store.lost == RETRIES + 1
    ctx.store.losing = set()
    assert ctx.uses_left(nonce) == 3  # no use spent
    result_of(ctx.client.get(read))
    assert ctx.uses_left(nonce) == 2


def test_a_message_post_whose_nonce_keeps_losing(ctx: Ctx) -> None:
    job = make_job(ctx.runtime)
    nonce = ctx.nonce(max_uses=3)
    ctx.store.losing = {"nonces"}

    response = ctx.client.post(f"{JM}?x-nonce={nonce}", json=ctx.event(job))

    retry_later(response, "TooManyConflicts", 1)
    assert ctx.store.count("executions") == 0
    assert isinstance(ctx.runtime.bus, StubBus) and ctx.runtime.bus.published == []
    ctx.store.losing = set()
    assert ctx.uses_left(nonce) == 3
    sent = result_of(ctx.client.post(f"{JM}?x-nonce={nonce}", json=ctx.event(job)))
    assert ctx.store.count("executions") == 1 and sent["executionId"]


def test_a_message_post_the_broker_cannot_take(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored, then not published: withdrawn, so the retry the 503 invites does not
    run it twice; the nonce's use is given back."""
    job = make_job(ctx.runtime)
    nonce = ctx.nonce(max_uses=3)
    bus = ctx.runtime.bus
    assert isinstance(bus, StubBus)

    def down(alias: str, execution_id: str, *, delay: float = 0.0, priority: str = "") -> None:
        raise BusUnavailable("broker redis://nowhere is not reachable")

    monkeypatch.setattr(bus, "publish", down)
    headers = {"Idempotency-Key": "retry-me"}
    post = f"{JM}?x-nonce={nonce}"

    retry_later(ctx.client.post(post, json=ctx.event(job), headers=headers), "BusUnavailable", 5)

    assert ctx.store.count("executions") == 0
    assert ctx.uses_left(nonce) == 3
    monkeypatch.undo()
    first = result_of(ctx.client.post(post, json=ctx.event(job), headers=headers))
    again = result_of(ctx.client.post(post, json=ctx.event(job), headers=headers))
    assert first["executionId"] == again["executionId"]
    assert ctx.store.count("executions") == 1
    assert bus.published == [("jobs-manager", first["executionId"])] * 2
