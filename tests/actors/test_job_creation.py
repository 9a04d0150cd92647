"""Jobs created without a launch (``pipelinejob_create`` to the launcher-proxy), and
events named by an ``event_key`` (the jobs-manager and the jobs-indexer).

What the client library's ManagedPipelineJob relies on: a create message makes the job
in CREATED and answers its token to the request that made it; the same pipeline,
linkage and data is the same job; and an event sent with an ``event_key`` is one event
whichever execution carries it — including what it sets off (the finish's index, the
index's indexed).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from pipelinejobs.adapters.store.base import Document
from pipelinejobs.errors import NotFound, SchemaValidationError, ValidationError
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.jobs_support import executions_of, names
from tests.support import stub

LAUNCHER, MANAGER, INDEXER = "launcher-proxy", "jobs-manager", "jobs-indexer"
APP = {"name": "Step A", "components": [{"id": "step-a-0.1", "inputs": {}, "parameters": {}}]}
SAMPLE = "sample.tacc.abcde"


def run(rt: Runtime, alias: str, message: Any, **submit: Any) -> Document:
    execution = rt.submit(alias, message, **submit)
    stub(rt).join()
    return rt.executions.get(execution["id"])


def done(rt: Runtime, alias: str, message: Any, **submit: Any) -> dict[str, Any]:
    execution = run(rt, alias, message, **submit)
    assert execution["status"] == "COMPLETE", execution["error"]
    return dict(execution["result"])


def pipeline(rt: Runtime, definition: dict[str, Any] = APP) -> str:
    return str(done(rt, "pipelines-manager", definition)["uuid"])


def create(rt: Runtime, pipeline_uuid: str, **fields: Any) -> dict[str, Any]:
    message = {"action": "create", "pipeline_uuid": pipeline_uuid, **fields}
    message.setdefault("parameters", {"sample_id": SAMPLE})
    return done(rt, LAUNCHER, message)


def event(job: dict[str, Any], name: str, key: str | None = None, **extra: Any) -> dict:
    body = {"uuid": job["uuid"], "name": name, "token": job["token"], **extra}
    if key:
        body["event_key"] = key
    return body


def refused(rt: Runtime, message: dict[str, Any]) -> Any:
    """The error ``message`` is refused with before anything is stored."""
    before = len(executions_of(rt, LAUNCHER))
    with pytest.raises(Exception) as caught:  # noqa: PT011 - each test names the class
        rt.submit(LAUNCHER, message)
    assert len(executions_of(rt, LAUNCHER)) == before
    return caught.value


# -- creating ----------------------------------------------------------------------------


def test_a_create_message_makes_the_job_in_created_with_its_token(runtime: Runtime) -> None:
    p = pipeline(runtime)
    made = create(runtime, p, data={"reads": 10}, session="casual-bass")
    assert made["created"] is True and made["state"] == "CREATED"
    assert re.fullmatch(r"[0-9a-f]{16}", made["token"])
    assert made["token"] == runtime.tokens.update_token(made["uuid"], 0)
    job = runtime.jobs.record(made["uuid"])
    assert names(job) == ["create"]
    assert job["pipeline_uuid"] == p and job["child_of"] == [SAMPLE]
    assert job["data"] == {"reads": 10} and job["session"] == "casual-bass"
    hashes = r"/products/v2/[0-9a-f]{32}/[0-9a-f]{32}/[0-9a-f]{32}"
    assert re.fullmatch(hashes + r"/casual-bass-\d{8}T\d{6}Z", job["archive_path"])
    assert job["task"].endswith("/executions/" + executions_of(runtime, LAUNCHER)[0]["id"])
    assert "launch" not in job  # nothing was launched
    assert job["index"] == {"patterns": [], "level": "1"}  # indexed when it finishes


def test_the_same_pipeline_linkage_and_data_is_the_same_job(runtime: Runtime) -> None:
    p = pipeline(runtime)
    first = create(runtime, p, data={"reads": 10})
    again = create(runtime, p, data={"reads": 10}, session="other-session")
    assert again == {
        "uuid": first["uuid"],
        "created": False,
        "state": "CREATED",
        "pipeline_uuid": p,
        "archive_path": first["archive_path"],
        "session": first["session"],
        "message": "this job already exists; use the token issued when it was created",
    }
    assert len(runtime.store.find("jobs", {}).items) == 1
    assert create(runtime, p, data={"reads": 11})["uuid"] != first["uuid"]


def test_the_execution_that_created_a_job_is_told_its_token_again(runtime: Runtime) -> None:
    """A redelivery (or a POST repeating its Idempotency-Key: the same execution)."""
    p = pipeline(runtime)
    message = {"action": "create", "pipeline_uuid": p, "parameters": {"sample_id": SAMPLE}}
    first = done(runtime, LAUNCHER, message, execution_id="createexec001")
    runtime.store.update(
        "executions",
        "createexec001",
        version=runtime.executions.get("createexec001")["version"],
        set={"status": "SUBMITTED"},
    )
    runtime.deliver(LAUNCHER, "createexec001")
    again = runtime.executions.get("createexec001")["result"]
    assert again["created"] is False and again["token"] == first["token"]


def test_parent_jobs_and_files_are_recorded_in_derived_from(runtime: Runtime) -> None:
    p = pipeline(runtime)
    parent = create(runtime, p, data={"step": 1})
    file_uuid = runtime.ids.file(runtime.storage.system, "/products/v2/x/a.csv")
    runtime.store.put_many("files", [{"uuid": file_uuid, "name": "a.csv", "path": "/x/a.csv"}])
    child = create(
        runtime, p, data={"step": 2}, derived_from=[parent["uuid"], f"uri:urn:{file_uuid}"]
    )
    job = runtime.jobs.get(child["uuid"])
    assert job["derived_from"] == [parent["uuid"], file_uuid]
    assert [j["uuid"] for j in runtime.store.find("jobs", {"derived_from": file_uuid}).items] == [
        child["uuid"]
    ]


def test_index_false_turns_automatic_indexing_off(runtime: Runtime) -> None:
    p = pipeline(runtime)
    made = create(runtime, p, index=False)
    assert "index" not in runtime.jobs.get(made["uuid"])
    refined = create(
        runtime, p, data={"x": 1}, index_patterns=["csv$"], processing_level="2", index_fixity=True
    )
    assert runtime.jobs.get(refined["uuid"])["index"] == {
        "patterns": ["csv$"],
        "level": "2",
        "fixity": True,
    }


def test_an_explicit_archive_path_is_used_as_given(runtime: Runtime) -> None:
    p = pipeline(runtime)
    made = create(runtime, p, archive_path=f"agave://{runtime.storage.system}/my/place")
    assert made["archive_path"] == "/my/place"
    flat = create(runtime, p, data={"x": 2}, instanced=False)
    assert re.fullmatch(
        r"/products/v2/[0-9a-f]{32}/[0-9a-f]{32}/[0-9a-f]{32}", flat["archive_path"]
    )


# -- refusals, each with its message -------------------------------------------------------


def test_an_unknown_pipeline_is_refused(runtime: Runtime) -> None:
    missing = "106bd127-e2d2-57ac-b9be-11ed06042e68"
    error = refused(
        runtime, {"action": "create", "pipeline_uuid": missing, "parameters": {"sample_id": SAMPLE}}
    )
    assert isinstance(error, NotFound)
    assert error.message == f"no pipeline {missing}"


def test_a_disabled_pipeline_takes_no_new_jobs(runtime: Runtime) -> None:
    p = pipeline(runtime)
    runtime.pipelines.set_status(p, "disable")
    error = refused(
        runtime, {"action": "create", "pipeline_uuid": p, "parameters": {"sample_id": SAMPLE}}
    )
    assert error.message == f"pipeline {p} is disabled and accepts no new jobs"


def test_a_parent_that_does_not_exist_is_refused_naming_it(runtime: Runtime) -> None:
    p = pipeline(runtime)
    ghost = "1071269f-b251-5a5f-bec1-6d7f77131f3f"
    error = refused(
        runtime,
        {
            "action": "create",
            "pipeline_uuid": p,
            "parameters": {"sample_id": SAMPLE},
            "derived_from": [ghost],
        },
    )
    assert isinstance(error, ValidationError) and error.detail["path"] == "derived_from/0"
    assert error.message == (
        f"derived_from/0: no job {ghost}: a job can derive only from jobs and files that exist"
    )


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            {"derived_from": ["nope"]},
            "derived_from/0",
            "PipelineJobCreate: derived_from/0: matches none of the allowed forms: "
            "pipelinejob_uuid ('nope' does not match",
        ),
        (
            {"session": "../up"},
            "session",
            "PipelineJobCreate: session: '../up' does not match '^[A-Za-z0-9][A-Za-z0-9_-]{3,63}$'",
        ),
        (
            {"parameters": {}},
            "parameters",
            "PipelineJobCreate: parameters: ",
        ),
        (
            {"job_definition": {"appId": "x"}},
            "",
            "PipelineJobCreate: (the message itself): Additional properties are not allowed "
            "('job_definition' was unexpected)",
        ),
        (
            {"instanced": "yes"},
            "instanced",
            "PipelineJobCreate: instanced: 'yes' is not of type 'boolean'",
        ),
    ],
)
def test_a_malformed_create_is_refused_naming_the_field(
    runtime: Runtime, change: dict[str, Any], path: str, message: str
) -> None:
    p = pipeline(runtime)
    body = {"action": "create", "pipeline_uuid": p, "parameters": {"sample_id": SAMPLE}, **change}
    error = refused(runtime, body)
    assert isinstance(error, SchemaValidationError)
    assert error.detail["path"] == path
    assert error.message.startswith(message), error.message


def test_index_false_with_refinements_is_refused(runtime: Runtime) -> None:
    p = pipeline(runtime)
    error = refused(
        runtime,
        {
            "action": "create",
            "pipeline_uuid": p,
            "index": False,
            "parameters": {"sample_id": SAMPLE},
            "processing_level": "2",
        },
    )
    assert error.detail["path"] == "processing_level"
    assert error.message == (
        "index is false, so processing_level has nothing to refine: automatic indexing is off "
        "(send an index request to the jobs-indexer instead)"
    )


def test_an_archive_path_on_another_system_is_refused(runtime: Runtime) -> None:
    p = pipeline(runtime)
    execution = run(
        runtime,
        LAUNCHER,
        {
            "action": "create",
            "pipeline_uuid": p,
            "parameters": {"sample_id": SAMPLE},
            "archive_path": "agave://elsewhere/x",
        },
    )
    assert execution["status"] == "ERROR"
    assert execution["error"]["message"] == (
        "archive path 'agave://elsewhere/x' is on storage system 'elsewhere'; this deployment "
        f"archives to {runtime.storage.system!r}"
    )


# -- event keys ------------------------------------------------------------------------------


def test_an_event_key_is_one_event_whichever_execution_carries_it(runtime: Runtime) -> None:
    p = pipeline(runtime)
    job = create(runtime, p, index=False)
    first = done(runtime, MANAGER, event(job, "run", "run:1"))
    again = done(runtime, MANAGER, event(job, "run", "run:1", data={"other": "data"}))
    assert first["applied"] is True and again == {**first, "applied": False, "duplicate": True}
    done(runtime, MANAGER, event(job, "update", "update:1", data={"n": 1}))
    done(runtime, MANAGER, event(job, "update", "update:1", data={"n": 1}))
    done(runtime, MANAGER, event(job, "update", "update:2", data={"n": 2}))
    record = runtime.jobs.record(job["uuid"])
    assert names(record) == ["create", "run", "update", "update"]
    assert record["history"][1]["uuid"] == runtime.ids.event(job["uuid"], "key:run:1")
    assert [e["data"] for e in record["history"][2:]] == [{"n": 1}, {"n": 2}]


def test_a_repeated_keyed_finish_does_not_index_twice(runtime: Runtime) -> None:
    p = pipeline(runtime)
    job = create(runtime, p)
    runtime.storage.write(runtime.jobs.get(job["uuid"])["archive_path"], "out.csv", b"1\n")
    done(runtime, MANAGER, event(job, "run", "run:1"))
    first = done(runtime, MANAGER, event(job, "finish", "finish:1"))
    again = done(runtime, MANAGER, event(job, "finish", "finish:1"))
    assert again["duplicate"] is True and again["indexing"] == first["indexing"]
    assert names(runtime.jobs.record(job["uuid"])) == [
        "create",
        "run",
        "finish",
        "index",
        "indexed",
    ]
    assert len(executions_of(runtime, INDEXER)) == 1


def test_a_repeated_keyed_index_is_not_run_again(runtime: Runtime) -> None:
    p = pipeline(runtime)
    job = create(runtime, p, index=False)
    runtime.storage.write(runtime.jobs.get(job["uuid"])["archive_path"], "out.csv", b"1\n")
    done(runtime, MANAGER, event(job, "finish", "finish:1"))
    first = done(runtime, INDEXER, event(job, "index", "index:1"))
    again = done(runtime, INDEXER, event(job, "index", "index:1"))
    index_execution = executions_of(runtime, INDEXER)
    assert first["indexed"] == 1
    assert again == {"uuid": job["uuid"], "duplicate": True, "execution": again["execution"]}
    assert again["execution"] in {e["id"] for e in index_execution}
    done(runtime, INDEXER, event(job, "indexed", "indexed:1"))
    assert names(runtime.jobs.record(job["uuid"])) == [
        "create",
        "finish",
        "index",
        "indexed",
        "indexed",
    ]


def test_a_keyed_event_with_a_wrong_token_learns_nothing(runtime: Runtime) -> None:
    p = pipeline(runtime)
    job = create(runtime, p, index=False)
    done(runtime, MANAGER, event(job, "run", "run:1"))
    execution = run(runtime, MANAGER, {**event(job, "run", "run:1"), "token": "0" * 16})
    assert execution["status"] == "ERROR"
    assert execution["error"]["error"] == "PermissionDenied"
    assert execution["error"]["message"] == (
        f"cannot send 'run' to {job['uuid']}: the token is not the update token of this document"
    )


def test_an_event_key_is_refused_when_malformed(runtime: Runtime) -> None:
    p = pipeline(runtime)
    job = create(runtime, p, index=False)
    with pytest.raises(SchemaValidationError) as caught:
        runtime.submit(MANAGER, event(job, "run", "has space"))
    assert caught.value.detail["path"] == "event_key"
    assert caught.value.message == (
        "PipelineJobManagerEvent: event_key: 'has space' does not match "
        "'^[\\\\x21-\\\\x7e]{1,255}$'"
    )
