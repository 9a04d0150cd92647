"""Retrying FAILED jobs through the launcher-proxy (issue 15): manual retries, their
refusals, and retry policies, with the inline launcher on the stub bus."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipelinejobs.errors import Conflict, PermissionDenied, ValidationError, http_status
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.test_launcher_proxy import LAUNCH, launched, register, run
from tests.support import stub

ALIAS = "launcher-proxy"


def failing(retry: dict[str, Any] | None = None, **definition: Any) -> dict[str, Any]:
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["fail"] = "out of salsa"
    message["job_definition"].update(definition)
    if retry is not None:
        message["retry"] = retry
    return message


def retry_message(uuid: str, token: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"action": "retry", "uuid": uuid, **extra}
    if token is not None:
        body["token"] = token
    return body


def test_a_failed_job_is_retried_as_attempt_2_in_a_new_instancing_directory(runtime: Runtime):
    register(runtime)
    result = launched(runtime, failing())
    uuid, token = result["uuid"], result["token"]
    first = runtime.jobs.get(uuid)
    assert first["state"] == "FAILED" and "attempt" not in first

    execution = run(runtime, ALIAS, retry_message(uuid, token, reason="salsa restocked"))

    assert execution["status"] == "COMPLETE", execution.get("error")
    assert execution["result"]["retried"] is True and execution["result"]["attempt"] == 2
    job = runtime.jobs.record(uuid)
    assert job["attempt"] == 2 and job["state"] == "FAILED"  # the same definition fails again
    assert job["archive_path"] != first["archive_path"]
    assert job["archive_path"].rsplit("/", 1)[0] == first["archive_path"].rsplit("/", 1)[0]
    assert job["attempts"] == [
        {
            "attempt": 1,
            "archive_path": first["archive_path"],
            "reason": "salsa restocked",
            "retried": job["attempts"][0]["retried"],
            "execution": execution["id"],
        }
    ]
    names = [e["name"] for e in job["history"]]
    assert names == ["create", "run", "run", "fail", "reset", "ready", "run", "run", "fail"]
    reset = next(e for e in job["history"] if e["name"] == "reset")
    assert reset["data"]["reason"] == "salsa restocked"
    assert reset["data"]["attempt"] == 2
    assert reset["data"]["requested_by"] == execution.get("sender", "unknown")
    detailed = runtime.jobs.history(uuid, detailed=True).entries
    assert {e["sender"] for e in detailed if e["name"] in ("reset", "ready")} == {ALIAS}


def test_a_redelivered_retry_does_not_make_attempt_3(runtime: Runtime):
    register(runtime)
    result = launched(runtime, failing())
    uuid, token = result["uuid"], result["token"]
    execution = run(runtime, ALIAS, retry_message(uuid, token))
    assert execution["status"] == "COMPLETE", execution.get("error")
    events = runtime.jobs.get(uuid)["event_count"]

    # The same execution delivered again (its worker lost): nothing new happens.
    runtime.store.update(
        "executions", execution["id"], version=execution["version"], set={"status": "SUBMITTED"}
    )
    runtime.publish(ALIAS, execution["id"])
    stub(runtime).join()

    job = runtime.jobs.get(uuid)
    assert job["attempt"] == 2 and job["event_count"] == events
    # An automatic retry of attempt 1 arriving late finds attempt 2 started.
    late = run(runtime, ALIAS, retry_message(uuid, token, attempt=1))
    assert late["status"] == "COMPLETE", late.get("error")
    assert late["result"]["retried"] is False
    assert runtime.jobs.get(uuid)["attempt"] == 2


def test_an_admin_key_retries_without_a_token(runtime: Runtime):
    register(runtime)
    uuid = launched(runtime, failing())["uuid"]
    execution = runtime.submit(ALIAS, retry_message(uuid, None), role="admin")
    stub(runtime).join()
    assert runtime.executions.get(execution["id"])["status"] == "COMPLETE"
    assert runtime.jobs.get(uuid)["attempt"] == 2


def test_retrying_a_job_that_is_not_failed_is_refused_naming_its_state(runtime: Runtime):
    register(runtime)
    result = launched(runtime)
    with pytest.raises(Conflict) as refused:
        runtime.submit(ALIAS, retry_message(result["uuid"], result["token"]))
    assert refused.value.message == (
        f"job {result['uuid']} is FINISHED: only a FAILED job can be retried"
    )
    assert http_status(refused.value) == 409


def test_retrying_with_a_wrong_token_is_refused(runtime: Runtime):
    register(runtime)
    uuid = launched(runtime, failing())["uuid"]
    with pytest.raises(PermissionDenied) as refused:
        runtime.submit(ALIAS, retry_message(uuid, "0" * 16))
    assert refused.value.message == (
        f"cannot retry {uuid}: the token is not the update token of this document"
    )
    assert http_status(refused.value) == 403
    with pytest.raises(PermissionDenied) as missing:
        runtime.submit(ALIAS, retry_message(uuid, None))
    assert missing.value.message == (
        f"to retry {uuid} you must send its update token or an admin token "
        f"(field 'token' or URL parameter token=)"
    )


def test_a_retry_policy_retries_until_its_limit_with_back_off(runtime: Runtime):
    register(runtime)
    policy = {"limit": 3, "backoff": 2, "max_backoff": 3}
    uuid = launched(runtime, failing(policy))["uuid"]

    job = runtime.jobs.record(uuid)
    assert job["state"] == "FAILED" and job["attempt"] == 3  # limit: three in all
    assert [a["attempt"] for a in job["attempts"]] == [1, 2]
    assert job["attempts"][0]["reason"].startswith("automatic retry of attempt 1 (")
    retries = [
        e for e in runtime.store.find("executions", {"actor": ALIAS}, limit=100).items
        if e["message"].get("action") == "retry"
    ]  # fmt: skip
    assert sorted(e["message"]["attempt"] for e in retries) == [1, 2]
    delays = sorted(stub(runtime).delays[e["id"]] for e in retries)
    assert 1 <= delays[0] <= 2 and 1.5 <= delays[1] <= 3  # 2 × 2^0, 2 × 2^1 capped at 3
    assert all(e.get("retry_at") for e in retries)


def test_a_policy_retries_only_the_failures_it_names(runtime: Runtime):
    register(runtime)
    uuid = launched(runtime, failing({"limit": 3, "on": ["timeout"]}))["uuid"]
    job = runtime.jobs.get(uuid)
    assert job["state"] == "FAILED" and "attempt" not in job


def test_a_retry_policy_is_validated_by_the_launch_schema(runtime: Runtime):
    register(runtime)
    for bad in ({"limit": 0}, {"backoff": 1}, {"limit": 2, "every": 1}):
        with pytest.raises(ValidationError):
            runtime.submit(ALIAS, failing(bad))


def test_the_files_of_an_earlier_attempt_stay_linked_to_it(runtime: Runtime):
    register(runtime)
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["outputs"] = {"tacos.csv": "eggs\n1\n"}
    message["job_definition"]["report"] = ["RUNNING"]
    result = launched(runtime, message)
    uuid, token = result["uuid"], result["token"]
    run(runtime, "jobs-manager", {"uuid": uuid, "token": token, "name": "finish"})
    run(runtime, "jobs-manager", {"uuid": uuid, "token": token, "name": "index"})
    run(runtime, "jobs-manager", {"uuid": uuid, "token": token, "name": "fail",
                                  "data": {"reason": "x"}})  # fmt: skip
    assert runtime.jobs.get(uuid)["state"] == "FAILED"
    run(runtime, ALIAS, retry_message(uuid, token))
    run(runtime, "jobs-manager", {"uuid": uuid, "token": token, "name": "finish"})

    records = runtime.store.find("files", {"job_uuid": uuid}, limit=10).items
    by_attempt = {f["attempt"]: f for f in records}
    assert sorted(by_attempt) == [1, 2]
    assert all(f["present"] for f in records)  # attempt 1's file did not "vanish"
    job = runtime.jobs.get(uuid)
    assert by_attempt[2]["path"].startswith(job["archive_path"] + "/")
    assert by_attempt[1]["path"].startswith(job["attempts"][0]["archive_path"] + "/")
