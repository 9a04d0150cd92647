"""Operations: /healthz and /openapi.json (checked against the app's own routes)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.errors import BusUnavailable, StoreUnavailable
from pipelinejobs.runtime.dispatch import Runtime
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
    assert set(data["components"]["securitySchemes"]) == {"bearer", "tapis", "nonce"}
    assert data["components"]["securitySchemes"]["tapis"]["name"] == "X-Tapis-Token"


def app_routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        # The console's pages (/ui/..., and / leading there) are HTML for people, not
        # the API: they are not in the OpenAPI document.
        if rule.endpoint == "static" or rule.endpoint.startswith("console"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in IGNORED_METHODS:
                routes.add((path, method.lower()))
    return routes


def documented_routes(data: dict[str, Any], runtime: Runtime) -> set[tuple[str, str]]:
    """(route template, method) of every operation, a per-actor path
    (``/actors/v2/jobs-manager/messages``, ``/v3/actors/jobs-manager/messages``) read
    as the route it is an instance of."""
    routes = set()
    for path, operations in data["paths"].items():
        for alias in runtime.actors:
            for prefix in ("/actors/v2", "/v3/actors"):
                path = path.replace(f"{prefix}/{alias}/", prefix + "/{actor}/")
        routes |= {(path, method) for method in operations}
    return routes


def test_openapi_paths_are_exactly_the_apps_routes(
    runtime: Runtime, app: Flask, client: FlaskClient
) -> None:
    data = spec(client)
    documented = documented_routes(data, runtime)

    assert documented == app_routes(app)
    assert len(documented) >= 15
    # Messages: one path per actor, each with that actor's own body; every other actor
    # route is documented once, with {actor} (an alias or an id).
    for alias in runtime.actors:
        assert "post" in data["paths"][f"/actors/v2/{alias}/messages"]
        assert "post" in data["paths"][f"/v3/actors/{alias}/messages"]
    assert "/actors/v2/{actor}/messages" not in data["paths"]
    for path in data["paths"]:
        assert not any(f"/actors/v2/{a}/" in path for a in runtime.actors) or path.endswith(
            "/messages"
        )


def test_tapis_v3_documents_every_abaco_v2_route_again(client: FlaskClient) -> None:
    paths = spec(client)["paths"]
    v2 = {p for p in paths if p == "/actors/v2" or p.startswith("/actors/v2/")}
    v3 = {p for p in paths if p == "/v3/actors" or p.startswith("/v3/actors/")}

    assert {"/v3/actors" + p.removeprefix("/actors/v2") for p in v2} == v3
    for path in v2:
        twin = paths["/v3/actors" + path.removeprefix("/actors/v2")]
        assert set(twin) == set(paths[path])
        for method, operation in paths[path].items():
            assert twin[method]["operationId"] == "v3_" + operation["operationId"]
            assert twin[method]["parameters"] == operation["parameters"]
    assert paths["/v3/tenants"]["get"]["security"] == []


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


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(data: dict[str, Any], pointer: str) -> Any:
    node: Any = data
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_self_contained_and_its_schemas_are_2020_12(client: FlaskClient) -> None:
    from jsonschema import Draft202012Validator

    data = spec(client)

    assert data["openapi"] == "3.1.0"
    for ref in refs(data):
        assert ref.startswith("#/components/schemas/"), ref
        resolve(data, ref)  # every reference leads somewhere
    for schema in data["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert not any("$id" in s or "$schema" in s for s in data["components"]["schemas"].values())


def test_schemathesis_reads_every_operation(client: FlaskClient) -> None:
    import schemathesis

    data = spec(client)
    loaded = schemathesis.openapi.from_dict(data)
    operations = list(loaded.get_all_operations())

    assert all(op.ok() for op in operations)
    # 32 of Abaco v2 and the read API (4 of them runs', 1 of those the graph; 2 bulk
    # actions'; the notifier's messages), 6 webhooks' (issue 16), 6 of Abaco v2
    # discovery and results, each of the 18 actor operations again under Tapis v3's
    # /v3/actors, and its tenants and sites.
    total = 32 + 6 + 6 + 18 + 2
    assert len(operations) == sum(len(ops) for ops in data["paths"].values()) == total


def test_each_actors_messages_are_the_schemas_it_accepts(
    runtime: Runtime, client: FlaskClient
) -> None:
    paths = spec(client)["paths"]
    for alias, actor in runtime.actors.items():
        body = paths[f"/actors/v2/{alias}/messages"]["post"]["requestBody"]
        forms = body["content"]["application/json"]["schema"]["anyOf"]
        named = [f["$ref"].rsplit("/", 1)[-1] for f in forms if "$ref" in f and "title" not in f]
        assert named == list(actor.accepts), alias
        # The two actors with a URL-parameter form take a body without its fields too.
        # (The notifier takes JSON only: its messages are the service's own.)
        assert body["required"] == (alias in ("pipelines-manager", "launcher-proxy", "notifier"))


def test_a_nonce_request_is_its_schema(client: FlaskClient) -> None:
    data = spec(client)
    body = data["paths"]["/actors/v2/{actor}/nonces"]["post"]["requestBody"]
    schema = data["components"]["schemas"]["nonce_request"]

    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/nonce_request"
    }
    assert schema["additionalProperties"] is False
    assert schema["properties"]["expiresIn"]["maximum"] == 315_576_000


def constrained(schema: dict[str, Any], data: dict[str, Any]) -> bool:
    """True when a parameter schema says more than its type (or is a boolean)."""
    if "$ref" in schema:
        return constrained(resolve(data, schema["$ref"]), data)
    if schema.get("type") == "array":
        return constrained(schema["items"], data)
    keys = {"enum", "pattern", "format", "minimum", "maximum", "const"}
    return schema.get("type") == "boolean" or bool(keys & set(schema))


def test_every_parameter_carries_its_pattern_enum_or_range(client: FlaskClient) -> None:
    data = spec(client)
    for path, operations in data["paths"].items():
        for method, operation in operations.items():
            for param in operation["parameters"]:
                assert constrained(param["schema"], data), (path, method, param["name"])


def test_the_documents_parameters_are_the_ones_the_gateway_enforces(
    runtime: Runtime, client: FlaskClient
) -> None:
    from pipelinejobs.gateway.parameters import route_params

    for path, operations in spec(client)["paths"].items():
        for operation in operations.values():
            endpoint = operation["operationId"].removeprefix("v3_")
            actor = next((a for a in runtime.actors if f"/{a}/" in path), None)
            name = endpoint.removesuffix(f"_{actor}") if actor else endpoint
            declared = route_params(name.replace("_", ".", 1), runtime.config.gateway, actor)
            documented = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
            assert documented == [p.name for p in declared or ()], path


def test_errors_and_free_form_json_are_described(client: FlaskClient) -> None:
    data = spec(client)
    schemas = data["components"]["schemas"]
    for path, operations in data["paths"].items():
        for operation in operations.values():
            if operation.get("security") != []:
                assert {"400", "401", "403"} <= set(operation["responses"]), path
    integer = next(b for b in schemas["JsonValue"]["anyOf"] if b.get("type") == "integer")
    assert (integer["minimum"], integer["maximum"]) == (-(2**63), 2**63 - 1)
    assert schemas["JsonKey"]["maxLength"] == 1024
    assert set(schemas["Error"]["required"]) == {"status", "message", "result", "version"}
