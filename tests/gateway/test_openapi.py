"""Operations: /healthz and /openapi.json (checked against the app's own routes)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.errors import BusUnavailable, StoreUnavailable
from common.runtime import Runtime
from tests.gateway.conftest import body_of, error_of, result_of

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def test_healthz_is_200_when_store_and_broker_answer(client: FlaskClient) -> None:
    response = client.get("/healthz")  # no credential needed

    assert result_of(response) == {"store": "ok", "broker": "ok"}
    assert body_of(response)["message"] == "healthy"


def test_healthz_is_503_when_the_store_is_unavailable(
    runtime: Runtime, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> None:
        raise StoreUnavailable("the store is down for maintenance")

    monkeypatch.setattr(runtime.store, "ping", down)

    data = error_of(client.get("/healthz"), 503)

    assert data["result"] == {"store": "the store is down for maintenance", "broker": "ok"}


def test_healthz_is_503_when_the_broker_is_unavailable(
    runtime: Runtime, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> None:
        raise BusUnavailable("no broker at redis://nowhere")

    assert runtime.bus is not None
    monkeypatch.setattr(runtime.bus, "ping", down)

    data = error_of(client.get("/healthz"), 503)

    assert data["result"] == {"store": "ok", "broker": "no broker at redis://nowhere"}


def test_healthz_is_503_without_a_broker(
    runtime: Runtime, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "bus", None)

    assert error_of(client.get("/healthz"), 503)["result"]["broker"] == "not configured"


def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")  # no credential needed
    assert response.status_code == 200
    data = response.get_json()
    assert isinstance(data, dict)
    return data


def test_openapi_is_version_3_with_info_and_security(runtime: Runtime, client: FlaskClient) -> None:
    data = spec(client)

    assert re.fullmatch(r"3\.\d+\.\d+", data["openapi"])
    assert data["info"]["title"] and data["info"]["version"]
    assert runtime.actor_id("jobs-manager") in data["info"]["description"]
    assert set(data["components"]["securitySchemes"]) == {"bearer", "nonce"}


def app_routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in IGNORED_METHODS:
                routes.add((path, method.lower()))
    return routes


def test_openapi_paths_are_exactly_the_apps_routes(app: Flask, client: FlaskClient) -> None:
    documented = {
        (path, method)
        for path, operations in spec(client)["paths"].items()
        for method in operations
    }

    assert documented == app_routes(app)
    assert ("/actors/v2/{actor}/messages", "post") in documented
    assert len(documented) >= 15


def test_every_operation_declares_its_path_parameters_and_responses(client: FlaskClient) -> None:
    for path, operations in spec(client)["paths"].items():
        wanted = set(re.findall(r"{([^}]+)}", path))
        for method, operation in operations.items():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == wanted, (path, method)
            assert operation["summary"]
            assert "default" in operation["responses"]
            assert any(code.startswith("2") for code in operation["responses"]), (path, method)


def test_operations_without_credentials_are_marked_public(client: FlaskClient) -> None:
    paths = spec(client)["paths"]

    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/openapi.json"]["get"]["security"] == []
    assert "security" not in paths["/jobs"]["get"]  # the document's default: a credential
    assert client.get("/jobs").status_code == 401
