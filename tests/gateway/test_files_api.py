"""The files read API: ``GET /files?job=…`` (level, present, paging) and
``GET /files/<uuid>``, on both stores.

One job is indexed twice at two levels (the second time with checksums), then a
file is deleted and the first level indexed again, so the job has present and
vanished files at both levels.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import ARCHIVE, error_of, make_job, result_of, stub, token_of

CONTENTS = {"a/1.txt": b"one", "a/2.txt": b"two", "b/3.csv": b"3,3\n", "b/4.csv": b"4,4\n"}


def index(rt: Runtime, job: dict[str, Any], **extra: Any) -> None:
    execution = rt.submit(
        "jobs-indexer", {"uuid": job["uuid"], "token": token_of(rt, job), **extra}
    )
    stub(rt).join()
    assert rt.executions.get(execution["id"])["status"] == "COMPLETE"


@pytest.fixture
def job(runtime: Runtime) -> dict[str, Any]:
    job = make_job(runtime, events=("run", "finish"))
    for relative, content in CONTENTS.items():
        runtime.storage.write(ARCHIVE, relative, content)
    index(runtime, job, level="1", filters=["^a/"])
    index(runtime, job, level="2", filters=["^b/"], fixity=True)
    (runtime.storage.resolve(ARCHIVE) / "a/2.txt").unlink()
    index(runtime, job, level="1", filters=["^a/"])
    return job


def paths(result: dict[str, Any]) -> list[str]:
    return [f["relative_path"] for f in result["files"]]


def files(client: FlaskClient, admin: dict[str, str], **query: Any) -> Any:
    return client.get("/files", query_string=query, headers=admin)


def test_a_jobs_files_by_path(client: FlaskClient, admin: dict[str, str], job: dict[str, Any]):
    listed = result_of(files(client, admin, job=job["uuid"]))

    assert paths(listed) == ["a/1.txt", "a/2.txt", "b/3.csv", "b/4.csv"]
    assert listed["next"] is None
    for record in listed["files"]:
        assert record["uuid"].startswith("105") and record["job_uuid"] == job["uuid"]
        assert "version" not in record


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"level": "1"}, ["a/1.txt", "a/2.txt"]),
        ({"level": "2"}, ["b/3.csv", "b/4.csv"]),
        ({"level": "3"}, []),
        ({"present": "true"}, ["a/1.txt", "b/3.csv", "b/4.csv"]),
        ({"present": "false"}, ["a/2.txt"]),
        ({"present": "false", "level": "1"}, ["a/2.txt"]),
        ({"present": "true", "level": "2"}, ["b/3.csv", "b/4.csv"]),
    ],
)
def test_level_and_present_filters(
    client: FlaskClient,
    admin: dict[str, str],
    job: dict[str, Any],
    query: dict[str, str],
    expected: list[str],
):
    assert paths(result_of(files(client, admin, job=job["uuid"], **query))) == expected


@pytest.mark.parametrize("limit", [1, 3])
def test_paging_walks_every_file_once(
    client: FlaskClient, admin: dict[str, str], job: dict[str, Any], limit: int
):
    walked: list[str] = []
    cursor = None
    for _ in range(10):
        more = {"cursor": cursor} if cursor else {}
        page = result_of(files(client, admin, job=job["uuid"], limit=limit, **more))
        assert len(page["files"]) <= limit
        walked += paths(page)
        cursor = page["next"]
        if cursor is None:
            break

    assert walked == list(CONTENTS)


def test_a_job_without_files_or_unknown_lists_nothing(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], job: dict[str, Any]
):
    other = make_job(runtime, linkage=("sample.uw_biofab.2",), archive=None)
    ghost = runtime.ids.job(job["pipeline_uuid"], ["sample.nowhere.0"], {})

    assert result_of(files(client, admin, job=other["uuid"])) == {"files": [], "next": None}
    assert result_of(files(client, admin, job=ghost))["files"] == []


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({}, "job"),
        ({"job": ""}, "job"),
        ({"level": "1"}, "job"),
        ({"job": "pipeline"}, None),
        ({"job": "12345"}, None),
        ({"job": "job", "level": "9"}, "level"),
        ({"job": "job", "present": "maybe"}, "present"),
        ({"job": "job", "present": "False"}, "present"),
        ({"job": "job", "limit": "0"}, "limit"),
        ({"job": "job", "cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
    ],
    ids=[
        "no-job",
        "empty-job",
        "level-only",
        "pipeline-uuid",
        "not-a-uuid",
        "bad-level",
        "bad-present",
        "present-not-spelled-false",
        "bad-limit",
        "bad-cursor",
    ],
)
def test_bad_file_queries_are_400(
    client: FlaskClient,
    admin: dict[str, str],
    job: dict[str, Any],
    query: dict[str, str],
    path: str | None,
):
    values = {"job": job["uuid"], "pipeline": job["pipeline_uuid"]}
    query = {k: values.get(v, v) if k == "job" else v for k, v in query.items()}

    data = error_of(files(client, admin, **query), 400)

    if path is not None:
        assert data["result"]["path"] == path


def test_one_file(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], job: dict[str, Any]
):
    listed = result_of(files(client, admin, job=job["uuid"]))["files"]
    by_path = {f["relative_path"]: f for f in listed}

    csv = result_of(client.get(f"/files/{by_path['b/3.csv']['uuid']}", headers=admin))
    gone = result_of(client.get(f"/files/{by_path['a/2.txt']['uuid']}", headers=admin))

    assert csv == by_path["b/3.csv"]
    assert csv["checksum"] == hashlib.sha256(CONTENTS["b/3.csv"]).hexdigest()
    assert csv["path"] == f"{ARCHIVE}/b/3.csv" and csv["level"] == "2"
    assert csv["generated_by"] == [job["uuid"]]
    assert "version" not in csv
    assert gone["present"] is False and "checksum" not in gone


def test_an_unknown_file_is_404_and_a_wrong_type_400(
    runtime: Runtime, client: FlaskClient, admin: dict[str, str], job: dict[str, Any]
):
    ghost = runtime.ids.file(runtime.storage.system, "/products/nowhere.txt")

    assert ghost in error_of(client.get(f"/files/{ghost}", headers=admin), 404)["message"]
    error_of(client.get(f"/files/{job['uuid']}", headers=admin), 400)
    error_of(client.get("/files/12345", headers=admin), 400)


def test_files_need_a_bearer_key(client: FlaskClient, job: dict[str, Any]):
    error_of(client.get("/files", query_string={"job": job["uuid"]}), 401)
    error_of(client.get(f"/files/{job['uuid']}"), 401)
