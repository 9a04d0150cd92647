"""Fixtures of the console's tests: the gateway's app on a stub-bus runtime (memory and
SQLite stores, as the gateway's tests), keys, and a browser client signed in with one.

``Browser`` here is werkzeug's test client keeping cookies, as a browser would; the
tests in a real Chromium are ``test_browser.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.adapters.store.base import Document
from pipelinejobs.gateway import Gateway
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import deliver_on_publish, make_app, make_job, make_pipeline

__all__ = ["make_job", "make_pipeline"]

#: What a POST from the console's own pages carries.
SAME_ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return make_app(runtime)


@pytest.fixture
def gateway(app: Flask) -> Gateway:
    found = app.config["PIPELINEJOBS"]
    assert isinstance(found, Gateway)
    return found


@pytest.fixture
def sync(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Deliver every published execution at once, in the request's thread."""
    return deliver_on_publish(runtime, monkeypatch)


@dataclass
class Keys:
    admin: str
    user: str  #: a user key (any actor)
    limited: str  #: a user key that may post to the pipelines-manager only


@pytest.fixture
def keys(gateway: Gateway) -> Keys:
    admin, _ = gateway.keys.create("admin")
    user, _ = gateway.keys.create("user")
    limited, _ = gateway.keys.create("user", actors=["pipelines-manager"])
    return Keys(admin, user, limited)


def form_token(html: str, name: str = "csrf") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in the page"
    return found.group(1)


def sign_in(client: FlaskClient, key: str) -> Any:
    """Sign ``client`` in with ``key`` through the sign-in form; the POST's response."""
    page = client.get("/ui/sign-in")
    assert page.status_code == 200
    return client.post(
        "/ui/sign-in",
        data={"csrf": form_token(page.get_data(as_text=True)), "key": key, "next": "/ui/"},
        headers=SAME_ORIGIN,
    )


def signed_in(app: Flask, key: str) -> FlaskClient:
    client = app.test_client()
    answer = sign_in(client, key)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


@pytest.fixture
def admin(app: Flask, keys: Keys) -> Iterator[FlaskClient]:
    yield signed_in(app, keys.admin)


@pytest.fixture
def user(app: Flask, keys: Keys) -> Iterator[FlaskClient]:
    yield signed_in(app, keys.user)


def csrf_of(client: FlaskClient, url: str = "/ui/") -> str:
    """The session's CSRF token, as a page of the console holds it."""
    return form_token(client.get(url).get_data(as_text=True))


def text_of(response: Any) -> str:
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    return str(body)


def a_job(rt: Runtime, **fields: Any) -> Document:
    """A job as the launcher makes it: ``name`` becomes its job definition's name."""
    name = fields.pop("name", "a job")
    data = fields.pop("data", {"sample": "sample.tacc.1"})
    pipeline = fields.pop("pipeline", None) or make_pipeline(rt)
    job = rt.jobs.create(
        pipeline_uuid=pipeline["uuid"],
        linkage=[fields.pop("linkage", "sample.tacc.1")],
        data=data,
        fields={
            "archive_path": "/products/v2/abc/def/ghi",
            "launch": {"backend": "inline", "job_definition": {"name": name}},
            **fields,
        },
    ).job
    return job


def a_run(rt: Runtime, pipeline: Document, name: str, owner: str = "", **fields: Any) -> str:
    """A run made as a client makes one: a ``create_run`` message to the launcher-proxy
    (sent by the key ``owner``, if given); its uuid."""
    from tests.support import stub

    message = {"action": "create_run", "pipeline_uuid": pipeline["uuid"], "name": name, **fields}
    execution = rt.submit("launcher-proxy", message, owner=owner or None)
    stub(rt).join()
    done = rt.executions.get(execution["id"])
    assert done["status"] == "COMPLETE", done.get("error")
    uuid: str = done["result"]["uuid"]
    return uuid


def tagged(tags: dict[str, str]) -> dict[str, Any]:
    """A job's stored tag fields (``tags`` and the ``tag_pairs`` the store indexes)."""
    from pipelinejobs.domain.tags import fields

    return fields(tags)
