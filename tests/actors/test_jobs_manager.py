"""The jobs-manager: the seed's three mechanisms, tokens, refusals, indexing, redelivery."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.actors.jobs_manager import event_for_status
from pipelinejobs.errors import MalformedMessage, NotFound, SchemaValidationError
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.jobs_support import (
    SEED_FILTERS,
    executions_of,
    make_job,
    names,
    run,
    token,
    write_files,
)
from tests.support import FakeClock, make_runtime
from tests.support import stub as bus

MANAGER = "jobs-manager"
#: The seed's URL-parameter example body.
ARBITRARY = {"arbitrary": "key value data"}


def agave_body(status: str) -> dict[str, Any]:
    """An agave_job_callback POST as the Agave jobs service sends it."""
    return {
        "id": "6388236498736566761-242ac113-0001-007",
        "owner": "sd2eadm",
        "appId": "tacobot9000-0.1.0u1",
        "executionSystem": "hpc-tacc-maverick2",
        "archivePath": "/products/v2/x/y",
        "archiveSystem": "data-sd2e-community",
        "status": status,
        "inputs": {},
        "parameters": {},
        "_links": {"self": {"href": "https://api.sd2e.org/jobs/v2/6388"}},
    }


def unchanged(before: dict, after: dict) -> None:
    assert after["version"] == before["version"]
    assert after["state"] == before["state"]
    assert after["event_count"] == before["event_count"]  # no record appended
    assert after["last_entry"] == before["last_entry"]


# -- the three mechanisms -------------------------------------------------------------


def json_event(uuid: str, tok: str) -> tuple[Any, dict, dict]:
    return {"uuid": uuid, "name": "finish", "token": tok}, {}, {}


def json_event_with_data(uuid: str, tok: str) -> tuple[Any, dict, dict]:
    return {"uuid": uuid, "name": "finish", "token": tok, "data": ARBITRARY}, {}, ARBITRARY


def json_event_token_in_params(uuid: str, tok: str) -> tuple[Any, dict, dict]:
    return {"uuid": uuid, "name": "finish"}, {"token": tok}, {}


def url_params_event(uuid: str, tok: str) -> tuple[Any, dict, dict]:
    return ARBITRARY, {"uuid": uuid, "event": "finish", "token": tok}, ARBITRARY


def url_params_name(uuid: str, tok: str) -> tuple[Any, dict, dict]:
    return ARBITRARY, {"uuid": uuid, "name": "finish", "token": tok}, ARBITRARY


def url_params_no_body(uuid: str, tok: str) -> tuple[Any, dict, dict]:
    return None, {"uuid": uuid, "event": "finish", "token": tok}, {}


def agave_callback(uuid: str, tok: str) -> tuple[Any, dict, dict]:
    body = agave_body("FINISHED")
    return body, {"uuid": uuid, "status": "FINISHED", "token": tok}, body


FORMS = [
    json_event,
    json_event_with_data,
    json_event_token_in_params,
    url_params_event,
    url_params_name,
    url_params_no_body,
    agave_callback,
]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
def test_finish_by_each_mechanism(runtime: Runtime, form):
    job = make_job(runtime, state="RUNNING")
    message, params, data = form(job["uuid"], token(runtime, job))
    execution = run(runtime, MANAGER, message, params)
    assert execution["status"] == "COMPLETE", execution["error"]
    assert execution["result"] == {
        "uuid": job["uuid"],
        "event": "finish",
        "state": "FINISHED",
        "applied": True,
        "duplicate": False,
        "indexing": None,
    }
    after = runtime.jobs.record(job["uuid"])
    assert after["state"] == "FINISHED" and after["last_event"] == "finish"
    assert names(after) == ["create", "run", "finish"]
    assert after["history"][-1]["data"] == data
    assert after["version"] == job["version"] + 1


STATUS_TABLE = [
    ("RUNNING", "run"),
    ("FINISHED", "finish"),
    ("FAILED", "fail"),
    ("STOPPED", "fail"),
    ("KILLED", "fail"),
    ("ARCHIVING_FAILED", "fail"),
    ("HEARTBEAT", "update"),
    ("PENDING", "resource"),
    ("QUEUED", "resource"),
    ("STAGING_INPUTS", "resource"),
    ("ARCHIVING", "resource"),
    ("ARCHIVING_FINISHED", "resource"),
    ("SOMETHING_AGAVE_INVENTED", "update"),
]
STATE_AFTER = {"run": "RUNNING", "finish": "FINISHED", "fail": "FAILED"}


@pytest.mark.parametrize(("status", "event"), STATUS_TABLE)
def test_agave_status_maps_to_event(status, event):
    assert event_for_status(status) == event
    assert event_for_status(f" {status.lower()} ") == event


@pytest.mark.parametrize(("status", "event"), STATUS_TABLE)
def test_agave_callback_applies_the_mapped_event(runtime: Runtime, status, event):
    job = make_job(runtime, state="RUNNING")
    body = agave_body(status)
    params = {"uuid": job["uuid"], "status": status, "token": token(runtime, job)}
    execution = run(runtime, MANAGER, body, params)
    assert execution["status"] == "COMPLETE", execution["error"]
    assert execution["result"]["event"] == event
    after = runtime.jobs.record(job["uuid"])
    assert names(after) == ["create", "run", event]
    assert after["state"] == STATE_AFTER.get(event, "RUNNING")
    assert after["history"][-1]["data"] == body


def test_agave_status_in_the_body_alone_is_a_callback(runtime: Runtime):
    job = make_job(runtime)
    params = {"uuid": job["uuid"], "token": token(runtime, job)}
    execution = run(runtime, MANAGER, agave_body("RUNNING"), params)
    assert execution["status"] == "COMPLETE", execution["error"]
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"


def test_callback_without_body_records_the_status_as_data(runtime: Runtime):
    job = make_job(runtime, state="RUNNING")
    params = {"uuid": job["uuid"], "status": "QUEUED", "token": token(runtime, job)}
    run(runtime, MANAGER, None, params)
    after = runtime.jobs.record(job["uuid"])
    assert after["history"][-1] == {**after["history"][-1], "name": "resource"}
    assert after["history"][-1]["data"] == {"status": "QUEUED"}


@pytest.mark.parametrize("key", ["event", "name"])
def test_an_explicit_event_param_wins_over_status(runtime: Runtime, key):
    job = make_job(runtime, state="RUNNING")
    params = {"uuid": job["uuid"], "status": "FAILED", key: "update", "token": token(runtime, job)}
    execution = run(runtime, MANAGER, agave_body("FAILED"), params)
    assert execution["result"]["event"] == "update"
    after = runtime.jobs.record(job["uuid"])
    assert after["state"] == "RUNNING"
    assert names(after)[-1] == "update"


# -- authorization --------------------------------------------------------------------


def test_create_is_reserved(runtime: Runtime):
    job = make_job(runtime)
    execution = run(
        runtime, MANAGER, {"uuid": job["uuid"], "name": "create", "token": token(runtime, job)}
    )
    assert execution["status"] == "ERROR"
    assert execution["error"]["error"] == "TransitionRefused"
    assert "reserved" in execution["error"]["message"]
    unchanged(job, runtime.jobs.get(job["uuid"]))


@pytest.mark.parametrize("event", ["reset", "ready"])
def test_admin_events_refuse_the_update_token(runtime: Runtime, event):
    job = make_job(runtime, state="RUNNING")
    if event == "ready":
        job = runtime.jobs.apply(job["uuid"], "reset").job
    message = {"uuid": job["uuid"], "name": event, "token": token(runtime, job)}
    execution = run(runtime, MANAGER, message)
    assert execution["status"] == "ERROR"
    assert execution["error"]["error"] == "PermissionDenied"
    assert "admin token" in execution["error"]["message"]
    unchanged(job, runtime.jobs.get(job["uuid"]))


def test_reset_and_ready_with_an_admin_token(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    admin = runtime.tokens.mint_admin_token()
    assert (
        run(runtime, MANAGER, {"uuid": job["uuid"], "name": "reset", "token": admin})["result"][
            "state"
        ]
        == "RESET"
    )
    execution = run(runtime, MANAGER, {"uuid": job["uuid"], "name": "ready"}, {"token": admin})
    assert execution["result"]["state"] == "CREATED"
    assert names(runtime.jobs.record(job["uuid"]))[-2:] == ["reset", "ready"]


def test_an_admin_token_stands_in_for_the_update_token(runtime: Runtime):
    job = make_job(runtime)
    admin = runtime.tokens.mint_admin_token()
    execution = run(runtime, MANAGER, {"uuid": job["uuid"], "name": "run", "token": admin})
    assert execution["status"] == "COMPLETE"
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_an_expired_admin_token_is_refused(tmp_path: Path, kind):
    clock = FakeClock()
    rt = make_runtime(tmp_path, kind, clock)
    try:
        job = make_job(rt, state="RUNNING")
        admin = rt.tokens.mint_admin_token()
        clock.advance(29)
        ok = run(rt, MANAGER, {"uuid": job["uuid"], "name": "update", "token": admin})
        assert ok["status"] == "COMPLETE"
        job = rt.jobs.get(job["uuid"])
        clock.advance(2)  # 31 s after minting: past the 30 s lifetime
        execution = run(rt, MANAGER, {"uuid": job["uuid"], "name": "reset", "token": admin})
        assert execution["status"] == "ERROR"
        assert execution["error"]["error"] == "PermissionDenied"
        assert "expired" in execution["error"]["message"]
        unchanged(job, rt.jobs.get(job["uuid"]))
    finally:
        rt.close()


def _other_jobs_token(rt: Runtime, job: dict) -> str | None:
    other = make_job(rt, linkage=("sample.other.1",))
    return token(rt, other)


@pytest.mark.parametrize(
    "bad_token",
    [
        lambda rt, job: "0" * 16,
        lambda rt, job: token(rt, job)[:-1] + ("0" if token(rt, job)[-1] != "0" else "1"),
        _other_jobs_token,
        lambda rt, job: "1" * 17,  # the length of an admin token, but not one
        lambda rt, job: None,
    ],
    ids=["zeros", "one-char-off", "another-jobs-token", "fake-admin", "missing"],
)
def test_a_bad_token_is_refused_and_nothing_changes(runtime: Runtime, bad_token):
    job = make_job(runtime, state="RUNNING")
    tok = bad_token(runtime, job)
    message = {"uuid": job["uuid"], "name": "finish"}
    if tok is not None:
        message["token"] = tok
    execution = run(runtime, MANAGER, message)
    assert execution["status"] == "ERROR"
    assert execution["error"]["error"] == "PermissionDenied"
    assert execution["error"]["uuid"] == job["uuid"]
    unchanged(job, runtime.jobs.get(job["uuid"]))


def test_a_bad_token_in_url_params_is_refused(runtime: Runtime):
    job = make_job(runtime, state="RUNNING")
    params = {"uuid": job["uuid"], "status": "FINISHED", "token": "f" * 16}
    execution = run(runtime, MANAGER, agave_body("FINISHED"), params)
    assert execution["error"]["error"] == "PermissionDenied"
    unchanged(job, runtime.jobs.get(job["uuid"]))


# -- refusals -------------------------------------------------------------------------


def test_an_unknown_job_is_not_found(runtime: Runtime):
    job = make_job(runtime)
    ghost = runtime.ids.job(job["pipeline_uuid"], ["sample.nowhere.0"], {})
    message = {"uuid": ghost, "name": "finish", "token": runtime.tokens.update_token(ghost)}
    execution = run(runtime, MANAGER, message)
    assert execution["status"] == "ERROR"
    assert execution["error"]["error"] == "NotFound"
    assert ghost in execution["error"]["message"]
    with pytest.raises(NotFound):
        runtime.jobs.get(ghost)


def test_a_refused_transition_says_why(runtime: Runtime):
    job = make_job(runtime)
    execution = run(
        runtime, MANAGER, {"uuid": job["uuid"], "name": "index", "token": token(runtime, job)}
    )
    assert execution["status"] == "ERROR"
    error = execution["error"]
    assert error["error"] == "TransitionRefused"
    assert error["state"] == "CREATED"
    assert error["event"] == "index"
    assert error["allowed"] == ["FINISHED", "INDEXING"]
    assert "CREATED" in error["message"] and "index" in error["message"]
    assert any("ERROR" in line for line in execution["logs"])
    unchanged(job, runtime.jobs.get(job["uuid"]))


GOOD_UUID = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
PIPELINE_UUID = "1063f4ff-c2b9-5190-bd9a-e6a406d9796a"


@pytest.mark.parametrize(
    ("message", "params", "path"),
    [
        ({"uuid": PIPELINE_UUID, "name": "finish", "token": "0dc73dc3ff39b49a"}, {}, "uuid"),
        ({"uuid": GOOD_UUID, "name": "explode", "token": "0dc73dc3ff39b49a"}, {}, "name"),
        ({"uuid": GOOD_UUID, "name": "finish", "token": "0dc73dc3ff39b49"}, {}, "token"),
        ({"uuid": GOOD_UUID, "name": "finish", "data": "text"}, {}, "data"),
        ({"name": "finish", "token": "0dc73dc3ff39b49a"}, {}, ""),
        (ARBITRARY, {"uuid": PIPELINE_UUID, "event": "finish"}, "uuid"),
        (ARBITRARY, {"uuid": GOOD_UUID, "event": "explode"}, "name"),
        (ARBITRARY, {"uuid": GOOD_UUID, "event": "finish", "token": "0dc73dc3ff39b49"}, "token"),
        (agave_body("FINISHED"), {"uuid": GOOD_UUID, "token": "0dc73dc3ff39b49"}, "token"),
    ],
    ids=[
        "json-pipeline-uuid",
        "json-unknown-event",
        "json-15-char-token",
        "json-data-not-object",
        "json-no-uuid",
        "params-pipeline-uuid",
        "params-unknown-event",
        "params-15-char-token",
        "callback-15-char-token",
    ],
)
def test_malformed_messages_are_refused_at_submit(runtime: Runtime, message, params, path):
    with pytest.raises(SchemaValidationError) as err:
        runtime.submit(MANAGER, message, params)
    assert err.value.path == path
    assert err.value.schema == "PipelineJobManagerEvent"
    assert runtime.store.count("executions") == 0
    assert bus(runtime).published == []


def test_a_non_object_message_is_refused_at_submit(runtime: Runtime):
    with pytest.raises(MalformedMessage):
        runtime.submit(MANAGER, ["finish"])
    assert runtime.store.count("executions") == 0


# -- automatic indexing ----------------------------------------------------------------


def test_finish_with_index_config_indexes_the_job(runtime: Runtime):
    job = make_job(runtime, index={"patterns": SEED_FILTERS, "level": "2"}, state="RUNNING")
    write_files(
        runtime,
        {
            "sample.uw_biofab.141715/reads.fastq": b"ACGT",
            "sample-uw_biofab-141715.csv": b"a,b\n",
            "other/unrelated.txt": b"x",
        },
    )
    execution = run(
        runtime, MANAGER, {"uuid": job["uuid"], "name": "finish"}, {"token": token(runtime, job)}
    )
    assert execution["status"] == "COMPLETE"
    child = execution["result"]["indexing"]
    indexer = runtime.executions.get(child)
    assert indexer["actor"] == "jobs-indexer" and indexer["status"] == "COMPLETE"
    assert indexer["parent"] == execution["id"] and indexer["sender"] == MANAGER
    assert indexer["message"]["filters"] == SEED_FILTERS
    assert indexer["message"]["level"] == "2"
    assert indexer["message"]["token"] == token(runtime, job)
    after = runtime.jobs.record(job["uuid"])
    assert after["state"] == "FINISHED"
    assert names(after) == ["create", "run", "finish", "index", "indexed"]
    files = runtime.store.find("files", {"job_uuid": job["uuid"]}).items
    assert sorted(f["relative_path"] for f in files) == [
        "sample-uw_biofab-141715.csv",
        "sample.uw_biofab.141715/reads.fastq",
    ]
    assert {f["level"] for f in files} == {"2"}


def test_finish_without_index_config_sends_no_index(runtime: Runtime):
    job = make_job(runtime, state="RUNNING")
    write_files(runtime, {"out.txt": b"x"})
    execution = run(
        runtime, MANAGER, {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)}
    )
    assert execution["result"]["indexing"] is None
    assert executions_of(runtime, "jobs-indexer") == []
    assert runtime.store.count("files") == 0
    assert names(runtime.jobs.record(job["uuid"])) == ["create", "run", "finish"]


def test_a_repeated_finish_does_not_index_again(runtime: Runtime):
    job = make_job(runtime, index={"level": "1"}, state="RUNNING")
    write_files(runtime, {"out.txt": b"x"})
    finish = {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)}
    first = run(runtime, MANAGER, finish)
    second = run(runtime, MANAGER, finish)
    assert first["result"]["indexing"] is not None
    assert second["result"]["applied"] is True
    assert second["result"]["indexing"] is None
    assert len(executions_of(runtime, "jobs-indexer")) == 1
    assert names(runtime.jobs.record(job["uuid"])) == [
        "create", "run", "finish", "index", "indexed", "finish"
    ]  # fmt: skip


@pytest.mark.parametrize("state", ["INDEXING", "FINISHED"])
def test_indexed_does_not_trigger_index(runtime: Runtime, state):
    job = make_job(runtime, index={"level": "1"}, state="FINISHED")
    if state == "INDEXING":
        job = runtime.jobs.apply(job["uuid"], "index").job
    message = {"uuid": job["uuid"], "name": "indexed", "token": token(runtime, job)}
    submitted = runtime.submit(MANAGER, message)
    # A small limit: an index -> indexed -> index loop fails here at once.
    assert bus(runtime).join(limit=10) == 1
    execution = runtime.executions.get(submitted["id"])
    assert execution["status"] == "COMPLETE"
    assert execution["result"]["indexing"] is None
    assert executions_of(runtime, "jobs-indexer") == []
    assert runtime.jobs.get(job["uuid"])["state"] == "FINISHED"


def test_a_stored_index_config_that_no_longer_validates_is_logged_not_sent(runtime: Runtime):
    job = make_job(runtime, state="RUNNING")
    stored = runtime.store.get("jobs", job["uuid"])
    runtime.store.update(
        "jobs", job["uuid"], version=stored["version"], set={"index": {"level": "9"}}
    )
    execution = run(
        runtime, MANAGER, {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)}
    )
    assert execution["status"] == "COMPLETE"
    assert execution["result"]["indexing"] is None
    assert any("not indexing" in line for line in execution["logs"])
    assert executions_of(runtime, "jobs-indexer") == []


# -- redelivery and idempotency -------------------------------------------------------


def test_a_completed_execution_delivered_again_does_nothing(runtime: Runtime):
    job = make_job(runtime, state="RUNNING")
    execution = run(
        runtime, MANAGER, {"uuid": job["uuid"], "name": "update", "token": token(runtime, job)}
    )
    job = runtime.jobs.get(job["uuid"])
    again = runtime.deliver(MANAGER, execution["id"])
    assert again == execution
    assert runtime.executions.get(execution["id"]) == execution
    unchanged(job, runtime.jobs.get(job["uuid"]))


def test_a_requeued_finish_is_a_duplicate_and_resends_the_same_index(runtime: Runtime):
    job = make_job(runtime, index={"level": "2"}, state="RUNNING")
    write_files(runtime, {"out.txt": b"x"})
    finish = run(
        runtime, MANAGER, {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)}
    )
    child = finish["result"]["indexing"]
    indexers = len(executions_of(runtime, "jobs-indexer"))
    published = len(bus(runtime).published)

    runtime.executions.requeue(finish["id"], "the worker died")
    again = runtime.deliver(MANAGER, finish["id"])
    bus(runtime).join()

    assert again is not None and again["status"] == "COMPLETE"
    assert again["attempts"] == 2
    assert again["result"]["duplicate"] is True and again["result"]["applied"] is False
    assert again["result"]["indexing"] == child
    assert len(executions_of(runtime, "jobs-indexer")) == indexers == 1
    assert len(bus(runtime).published) == published  # the finished child is not re-published
    after = runtime.jobs.record(job["uuid"])
    assert names(after).count("finish") == 1
    assert names(after).count("index") == 1


def test_a_finish_applied_before_a_crash_still_sends_its_index(runtime: Runtime):
    """The first delivery applied the event and died before sending ``index``."""
    job = make_job(runtime, index={"level": "1"}, state="RUNNING")
    write_files(runtime, {"out.txt": b"x"})
    execution = runtime.submit(
        MANAGER, {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)}
    )
    runtime.jobs.apply(job["uuid"], "finish", {}, delivery_id=execution["id"])
    bus(runtime).join()
    done = runtime.executions.get(execution["id"])
    assert done["result"]["duplicate"] is True
    assert done["result"]["indexing"] is not None
    assert len(executions_of(runtime, "jobs-indexer")) == 1
    after = runtime.jobs.record(job["uuid"])
    assert names(after) == ["create", "run", "finish", "index", "indexed"]
    assert runtime.store.count("files") == 1


def test_a_redelivered_repeat_finish_does_not_index(runtime: Runtime):
    """Regression: a duplicate used to be judged by the job's *current* state, so a
    redelivered FINISHED -> FINISHED report sent a second index request."""
    job = make_job(runtime, index={"level": "1"}, state="RUNNING")
    write_files(runtime, {"out.txt": b"x"})
    finish = {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)}
    run(runtime, MANAGER, finish)
    repeat = run(runtime, MANAGER, finish)
    runtime.executions.requeue(repeat["id"], "redelivered")
    again = runtime.deliver(MANAGER, repeat["id"])
    bus(runtime).join()
    assert again is not None and again["result"]["duplicate"] is True
    assert again["result"]["indexing"] is None
    assert len(executions_of(runtime, "jobs-indexer")) == 1


def test_concurrent_deliveries_lose_no_history(runtime: Runtime):
    job = make_job(runtime, state="RUNNING")
    tok = token(runtime, job)
    ids = [
        runtime.submit(
            MANAGER, {"uuid": job["uuid"], "name": "update", "data": {"i": i}}, {"token": tok}
        )["id"]
        for i in range(24)
    ]
    bus(runtime).queue.clear()
    errors: list[BaseException] = []

    def worker(chunk: list[str]) -> None:
        try:
            for execution_id in chunk:
                runtime.deliver(MANAGER, execution_id)
                runtime.deliver(MANAGER, execution_id)  # and each one twice
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    after = runtime.jobs.record(job["uuid"])
    updates = [h["data"]["i"] for h in after["history"] if h["name"] == "update"]
    assert sorted(updates) == list(range(24))
    assert after["version"] == job["version"] + 24
    assert {runtime.executions.get(i)["status"] for i in ids} == {"COMPLETE"}


@pytest.mark.parametrize("state", ["FINISHED", "FAILED"])
def test_a_late_running_callback_is_ignored_but_a_run_event_is_refused(runtime: Runtime, state):
    job = make_job(runtime, state="RUNNING")
    job = runtime.jobs.apply(job["uuid"], "finish" if state == "FINISHED" else "fail").job
    params = {"uuid": job["uuid"], "status": "RUNNING", "token": token(runtime, job)}
    late = run(runtime, MANAGER, agave_body("RUNNING"), params)
    assert late["status"] == "COMPLETE"
    assert late["result"]["applied"] is False and late["result"]["state"] == state
    unchanged(job, runtime.jobs.get(job["uuid"]))
    explicit = run(
        runtime, MANAGER, {"uuid": job["uuid"], "name": "run"}, {"token": params["token"]}
    )
    assert explicit["error"]["error"] == "TransitionRefused"
    unchanged(job, runtime.jobs.get(job["uuid"]))


@pytest.mark.parametrize("state", ["INDEXING", "VALIDATING"])
def test_a_repeated_finished_callback_after_the_finish_is_ignored(runtime: Runtime, state):
    """Indexing starts as soon as a job finishes (automatic since issue 13), so a backend's
    repeated FINISHED report (a retried notification) often arrives while it runs: it is
    superseded, not an error. An explicit ``finish`` event is still refused."""
    job = make_job(runtime, state="FINISHED")
    job = runtime.jobs.apply(job["uuid"], "index" if state == "INDEXING" else "validate").job
    params = {"uuid": job["uuid"], "status": "FINISHED", "token": token(runtime, job)}
    late = run(runtime, MANAGER, agave_body("FINISHED"), params)
    assert late["status"] == "COMPLETE", late["error"]
    assert late["result"] == {
        "uuid": job["uuid"],
        "event": "finish",
        "state": state,
        "applied": False,
        "ignored": "repeated FINISHED callback",
    }
    unchanged(job, runtime.jobs.get(job["uuid"]))
    explicit = run(runtime, MANAGER, ARBITRARY, {**params, "status": "", "event": "finish"})
    assert explicit["error"]["error"] == "TransitionRefused"
    unchanged(job, runtime.jobs.get(job["uuid"]))


def test_a_status_callback_body_must_be_an_agave_notification(runtime: Runtime):
    job = make_job(runtime, state="RUNNING")
    params = {"uuid": job["uuid"], "status": "FINISHED", "token": token(runtime, job)}
    executions = runtime.store.count("executions")

    with pytest.raises(SchemaValidationError) as err:
        runtime.submit(MANAGER, {"exitCode": 0}, params)

    assert err.value.path == "appId"
    assert err.value.message.startswith(
        "the body of a status callback must be an Agave job notification: AgaveJobsPost: "
        "(the message itself): 'appId' is a required property"
    )
    assert runtime.store.count("executions") == executions
    # The same data with an explicit event is the URL-parameter mechanism: any object.
    explicit = run(runtime, MANAGER, {"exitCode": 0}, {**params, "event": "finish"})
    assert explicit["status"] == "COMPLETE", explicit["error"]
