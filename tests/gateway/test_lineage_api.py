"""The lineage routes: ``GET /jobs/<uuid>/lineage`` and ``GET /files/<uuid>/lineage``,
their parameters refused with the exact message, and their place in the OpenAPI
document. The walk itself is tests/domain/test_lineage.py's."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import error_of, make_job, make_pipeline, result_of

FILE = "1059a8c1-0000-5000-8000-000000000000"


def stored_file(rt: Runtime, job_uuid: str) -> str:
    uuid = rt.ids.file(rt.storage.system, "/products/v2/x/out.csv")
    record = {
        "uuid": uuid,
        "name": "out.csv",
        "path": "/products/v2/x/out.csv",
        "relative_path": "out.csv",
        "job_uuid": job_uuid,
        "generated_by": [job_uuid],
        "child_of": ["sample.uw_biofab.141715"],
        "level": "1",
        "present": True,
    }
    rt.store.put_many("files", [record])
    return uuid


def test_a_job_s_lineage(client: FlaskClient, runtime: Runtime, user: dict[str, str]) -> None:
    pipeline = make_pipeline(runtime)
    job = make_job(runtime, pipeline=pipeline)
    file = stored_file(runtime, job["uuid"])
    graph = result_of(client.get(f"/jobs/{job['uuid']}/lineage", headers=user))
    assert graph["root"] == {"id": job["uuid"], "kind": "job"}
    assert graph["direction"] == "both" and graph["depth"] == 3
    assert {(e["from"], e["type"], e["to"]) for e in graph["edges"]} == {
        (job["uuid"], "generated_by", pipeline["uuid"]),
        (job["uuid"], "child_of", "sample.uw_biofab.141715"),
        (file, "generated_by", job["uuid"]),
    }
    up = result_of(client.get(f"/jobs/{job['uuid']}/lineage?direction=up&depth=1", headers=user))
    assert {n["kind"] for n in up["nodes"]} == {"job", "pipeline", "linkage"}


def test_a_file_s_lineage(client: FlaskClient, runtime: Runtime, user: dict[str, str]) -> None:
    job = make_job(runtime)
    file = stored_file(runtime, job["uuid"])
    graph = result_of(client.get(f"/files/{file}/lineage?direction=up", headers=user))
    assert graph["root"] == {"id": file, "kind": "file"}
    assert job["uuid"] in {n["id"] for n in graph["nodes"]}
    down = result_of(client.get(f"/files/{file}/lineage?direction=down", headers=user))
    assert [n["id"] for n in down["nodes"]] == [file] and down["edges"] == []


@pytest.mark.parametrize(
    ("query", "name", "message", "allowed"),
    [
        (
            "direction=sideways",
            "direction",
            "URL parameter 'direction': 'sideways' is not one of ['up', 'down', 'both']",
            ["up", "down", "both"],
        ),
        ("depth=0", "depth", "URL parameter 'depth': 0 is less than the minimum of 1", None),
        ("depth=11", "depth", "URL parameter 'depth': 11 is greater than the maximum of 10", None),
        ("depth=two", "depth", "URL parameter 'depth' must be an integer, not 'two'", None),
        ("depth=1&depth=2", "depth", "URL parameter 'depth' is given 2 times; give it once", None),
    ],
)
def test_a_parameter_it_does_not_take_is_400_naming_it(
    client: FlaskClient,
    runtime: Runtime,
    user: dict[str, str],
    query: str,
    name: str,
    message: str,
    allowed: list[str] | None,
) -> None:
    job = make_job(runtime)
    for url in (f"/jobs/{job['uuid']}/lineage?{query}", f"/files/{FILE}/lineage?{query}"):
        data = error_of(client.get(url, headers=user), 400)
        assert data["result"]["path"] == name
        assert data["message"] == message, data["message"]
        assert data["result"].get("allowed") == allowed


def test_an_unknown_job_or_file_is_404_and_a_wrong_uuid_400(
    client: FlaskClient, user: dict[str, str]
) -> None:
    job = "1071269f-b251-5a5f-bec1-6d7f77131f3f"
    assert error_of(client.get(f"/jobs/{job}/lineage", headers=user), 404)["message"] == (
        f"no job {job}"
    )
    assert error_of(client.get(f"/files/{FILE}/lineage", headers=user), 404)["message"] == (
        f"no file {FILE}"
    )
    wrong = error_of(client.get(f"/jobs/{FILE}/lineage", headers=user), 400)
    assert wrong["message"] == (
        f"{FILE} is a file UUID (prefix 105), expected a pipelinejob UUID (prefix 107)"
    )


def test_lineage_needs_a_credential(client: FlaskClient, runtime: Runtime) -> None:
    job = make_job(runtime)
    assert error_of(client.get(f"/jobs/{job['uuid']}/lineage"), 401)


def test_the_routes_and_their_parameters_are_in_the_openapi_document(
    client: FlaskClient,
) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    for path, operation in (
        ("/jobs/{uuid}/lineage", "lineage_job_lineage"),
        ("/files/{uuid}/lineage", "lineage_file_lineage"),
    ):
        op = paths[path]["get"]
        assert op["operationId"] == operation
        params = {p["name"]: p for p in op["parameters"]}
        assert params["direction"]["schema"] == {"type": "string", "enum": ["up", "down", "both"]}
        assert params["depth"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 10}
