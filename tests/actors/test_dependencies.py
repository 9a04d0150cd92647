"""Jobs that wait for other jobs (issue 16), through the launcher-proxy with the inline
launcher on the stub bus: a dependent is created in CREATED, released when its parents
meet its condition, failed when one fails, and a release — repeated, redelivered or
racing another — launches it once."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from pipelinejobs.errors import PermissionDenied, ValidationError, http_status
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.test_launcher_proxy import LAUNCH, launched, register, run
from tests.support import stub

ALIAS = "launcher-proxy"


def job(name: str, *, report: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A launch of its own job (``data`` makes its uuid); ``report``: the statuses its
    inline compute reports (``["RUNNING"]`` leaves it running, to be moved by hand)."""
    message = copy.deepcopy(LAUNCH)
    message["data"] = {"name": name}
    if report is not None:
        message["job_definition"]["report"] = report
    message.update(extra)
    return message


def event(rt: Runtime, launched_job: dict[str, Any], name: str, **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"uuid": launched_job["uuid"], "name": name}
    body["token"] = launched_job["token"]
    if data:
        body["data"] = data
    execution = run(rt, "jobs-manager", body)
    assert execution["status"] == "COMPLETE", execution.get("error")
    return execution


def names(rt: Runtime, uuid: str) -> list[str]:
    return [e["name"] for e in rt.jobs.record(uuid)["history"]]


def release(rt: Runtime, uuid: str) -> dict[str, Any]:
    body = {"action": "release", "uuid": uuid, "token": rt.tokens.update_token(uuid)}
    execution = run(rt, ALIAS, body)
    assert execution["status"] == "COMPLETE", execution.get("error")
    return execution


def test_a_dependent_waits_in_created_until_its_parent_is_indexed(runtime: Runtime):
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"]))

    child = launched(runtime, job("b", depends_on=[parent["uuid"]]))

    assert child["released"] is False and child["waiting_for"] == [parent["uuid"]]
    stored = runtime.jobs.get(child["uuid"])
    assert stored["state"] == "CREATED"
    assert stored["depends_on"] == [parent["uuid"]]
    assert stored["dependency"] == {"condition": "indexed", "on_parent_failure": "fail"}
    assert parent["uuid"] in stored["derived_from"]
    assert stored["launch"]["job_definition"]["appId"] == LAUNCH["job_definition"]["appId"]

    event(runtime, parent, "finish")  # then indexed automatically, then the release

    assert runtime.jobs.get(parent["uuid"])["indexed_attempt"] == 1
    assert runtime.jobs.get(child["uuid"])["state"] == "FINISHED"
    history = runtime.jobs.record(child["uuid"])["history"]
    assert [e["name"] for e in history[:3]] == ["create", "update", "run"]
    assert history[1]["data"]["dependencies"] == "met"
    assert history[1]["data"]["parents"] == [parent["uuid"]]


def test_a_parent_that_already_met_the_condition_launches_its_dependent_at_once(
    runtime: Runtime,
):
    register(runtime)
    parent = launched(runtime, job("a"))  # runs, finishes and is indexed within the launch
    assert runtime.jobs.get(parent["uuid"])["state"] == "FINISHED"

    child = launched(runtime, job("b", depends_on=[parent["uuid"]]))

    assert child["released"] is True and child["launched"] is True
    assert runtime.jobs.get(child["uuid"])["state"] == "FINISHED"


@pytest.mark.parametrize(
    ("condition", "after_finish"),
    [("finished", "RUNNING"), ("indexed", "CREATED"), ("terminal", "CREATED")],
)
def test_finished_releases_before_indexing_indexed_and_terminal_after_it(
    runtime: Runtime, condition: str, after_finish: str
):
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"]))
    child = launched(
        runtime, job("b", depends_on=[parent["uuid"]], condition=condition, report=["RUNNING"])
    )
    # Straight to the store (no automatic indexing, no release), then a release by hand.
    runtime.jobs.apply(parent["uuid"], "finish")
    release(runtime, child["uuid"])
    assert runtime.jobs.get(child["uuid"])["state"] == after_finish

    runtime.jobs.apply(parent["uuid"], "indexed")
    release(runtime, child["uuid"])
    assert runtime.jobs.get(child["uuid"])["state"] == "RUNNING"


def test_a_parent_that_never_indexes_meets_indexed_when_it_finishes(runtime: Runtime):
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"], index=False))
    child = launched(runtime, job("b", depends_on=[parent["uuid"]]))

    event(runtime, parent, "finish")

    assert runtime.jobs.get(child["uuid"])["state"] == "FINISHED"


def test_a_failed_parent_fails_its_dependents_and_theirs_naming_it(runtime: Runtime):
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"]))
    child = launched(runtime, job("b", depends_on=[parent["uuid"]]))
    grandchild = launched(runtime, job("c", depends_on=[child["uuid"]]))

    event(runtime, parent, "fail", reason="out of salsa")

    failed = runtime.jobs.record(child["uuid"])
    assert failed["state"] == "FAILED"
    assert failed["history"][-1]["data"]["reason"] == (
        f"parent job {parent['uuid']} is FAILED: its dependents do not run"
    )
    assert failed["history"][-1]["data"]["parent"] == parent["uuid"]
    assert names(runtime, child["uuid"]) == ["create", "fail"]  # never launched
    assert (
        runtime.jobs.record(grandchild["uuid"])["history"][-1]["data"]["parent"] == (child["uuid"])
    )


def test_ignore_waits_for_terminal_and_runs_after_a_failed_parent(runtime: Runtime):
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"]))
    child = launched(runtime, job("b", depends_on=[parent["uuid"]], on_parent_failure="ignore"))
    assert runtime.jobs.get(child["uuid"])["state"] == "CREATED"

    event(runtime, parent, "fail", reason="out of salsa")

    assert runtime.jobs.get(child["uuid"])["state"] == "FINISHED"


def test_a_retried_dependent_waits_for_its_parents_again(runtime: Runtime):
    """A dependent failed by its parent is not revived when the parent is retried; a
    retry of the dependent waits for the parent's new attempt."""
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"]))
    child = launched(runtime, job("b", depends_on=[parent["uuid"]]))
    event(runtime, parent, "fail", reason="out of salsa")
    assert runtime.jobs.get(child["uuid"])["state"] == "FAILED"

    retried = run(runtime, ALIAS, {"action": "retry", "uuid": parent["uuid"],
                                   "token": parent["token"]})  # fmt: skip
    assert retried["status"] == "COMPLETE", retried.get("error")
    assert runtime.jobs.get(parent["uuid"])["state"] == "RUNNING"
    assert runtime.jobs.get(child["uuid"])["state"] == "FAILED"  # not revived

    again = run(runtime, ALIAS, {"action": "retry", "uuid": child["uuid"],
                                 "token": child["token"]})  # fmt: skip
    assert again["status"] == "COMPLETE", again.get("error")
    assert again["result"]["waiting_for"] == [parent["uuid"]]
    assert runtime.jobs.get(child["uuid"])["state"] == "CREATED"

    event(runtime, parent, "finish")
    record = runtime.jobs.get(child["uuid"])
    assert record["state"] == "FINISHED" and record["attempt"] == 2


def test_a_parent_with_retries_left_keeps_its_dependent_waiting(runtime: Runtime):
    register(runtime)
    flaky = job("a", retry={"limit": 2, "backoff": 0.01, "max_backoff": 0.01})
    flaky["job_definition"]["report"] = ["RUNNING"]
    parent = launched(runtime, flaky)
    child = launched(runtime, job("b", depends_on=[parent["uuid"]]))

    event(runtime, parent, "fail", reason="flaky")  # retried as attempt 2, RUNNING again

    assert runtime.jobs.get(parent["uuid"])["attempt"] == 2
    assert runtime.jobs.get(child["uuid"])["state"] == "CREATED"
    event(runtime, parent, "fail", reason="flaky")  # no attempt left
    assert runtime.jobs.get(child["uuid"])["state"] == "FAILED"


def test_a_missing_parent_is_refused_before_anything_is_stored(runtime: Runtime):
    register(runtime)
    parent = launched(runtime, job("a"))
    missing = "107" + parent["uuid"][3:-4] + "0000"
    before = runtime.store.count("jobs")

    with pytest.raises(ValidationError) as refused:
        runtime.submit(ALIAS, job("b", depends_on=[parent["uuid"], missing]))

    assert refused.value.detail["path"] == "depends_on/1"
    assert missing in refused.value.message and http_status(refused.value) == 400
    assert runtime.store.count("jobs") == before
    assert runtime.store.count("executions", {"actor": ALIAS}) == 1  # the parent's only


def test_condition_without_depends_on_is_refused(runtime: Runtime):
    register(runtime)
    with pytest.raises(ValidationError) as refused:
        runtime.submit(ALIAS, job("b", condition="finished"))
    assert refused.value.detail["path"] == "condition"


def test_releases_repeated_or_redelivered_launch_once(runtime: Runtime):
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"]))
    child = launched(runtime, job("b", depends_on=[parent["uuid"]], report=["RUNNING"]))
    event(runtime, parent, "finish")
    assert runtime.jobs.get(child["uuid"])["state"] == "RUNNING"
    count = runtime.jobs.get(child["uuid"])["event_count"]

    # Another release (a second parent's, a person's): the job is not waiting any more.
    second = release(runtime, child["uuid"])
    assert second["result"]["released"] is False

    # The release that launched it, delivered again (its worker lost): its decision is
    # found, as is its run event; nothing is added to the history.
    first = next(
        e
        for e in runtime.store.find("executions", {"actor": ALIAS}, limit=100).items
        if (e.get("result") or {}).get("released") is True
    )
    runtime.store.update(
        "executions", first["id"], version=first["version"], set={"status": "SUBMITTED"}
    )
    runtime.publish(ALIAS, first["id"])
    stub(runtime).join()
    redelivered = runtime.executions.get(first["id"])
    assert redelivered["status"] == "COMPLETE", redelivered.get("error")
    history = names(runtime, child["uuid"])
    assert history.count("update") == 1 and history.count("run") == 2  # launch + RUNNING
    assert runtime.jobs.get(child["uuid"])["event_count"] == count


def test_releases_racing_in_threads_launch_once(runtime: Runtime):
    """Releases delivered at the same moment on several threads (B and C of a diamond
    indexed together): each reads the job CREATED and its parents met; exactly one
    records the decision and launches, the others find it."""
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"]))
    child = launched(runtime, job("b", depends_on=[parent["uuid"]], report=["RUNNING"]))
    for name in ("finish", "indexed"):  # straight to the store: no release is sent
        runtime.jobs.apply(parent["uuid"], name)
    token = runtime.tokens.update_token(child["uuid"])
    body = {"action": "release", "uuid": child["uuid"], "token": token}
    ids = [runtime.submit(ALIAS, dict(body))["id"] for _ in range(4)]
    stub(runtime).queue.clear()  # delivered by the threads below instead
    start = threading.Barrier(len(ids))

    def deliver(execution_id: str) -> None:
        start.wait()
        runtime.deliver(ALIAS, execution_id)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stub(runtime).join()

    results = [runtime.executions.get(i) for i in ids]
    assert all(r["status"] == "COMPLETE" for r in results), [r.get("error") for r in results]
    assert sum(1 for r in results if r["result"].get("released") is True) == 1
    history = names(runtime, child["uuid"])
    assert history.count("update") == 1 and history.count("run") == 2  # launch + RUNNING
    assert runtime.jobs.get(child["uuid"])["state"] == "RUNNING"


def test_a_release_of_a_job_that_waits_for_nobody_does_nothing(runtime: Runtime):
    pipeline, _ = register(runtime)
    created = run(runtime, ALIAS, {"action": "create", "pipeline_uuid": pipeline,
                                   "parameters": {"sample_id": "sample.tacc.x"}})  # fmt: skip
    uuid = created["result"]["uuid"]

    answer = release(runtime, uuid)

    assert answer["result"]["released"] is False
    assert names(runtime, uuid) == ["create"]


def test_a_release_with_a_wrong_token_is_refused(runtime: Runtime):
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"]))
    child = launched(runtime, job("b", depends_on=[parent["uuid"]]))
    with pytest.raises(PermissionDenied) as refused:
        runtime.submit(ALIAS, {"action": "release", "uuid": child["uuid"], "token": "0" * 16})
    assert refused.value.message.startswith(f"cannot release {child['uuid']}: ")


def test_a_release_runs_at_its_dependents_priority_not_its_parents(runtime: Runtime):
    register(runtime)
    parent = launched(runtime, job("a", report=["RUNNING"], priority="low"))
    child = launched(runtime, job("b", depends_on=[parent["uuid"]], priority="high"))

    event(runtime, parent, "finish")

    sent = [e for e in runtime.store.find("executions", {"actor": ALIAS}, limit=100).items
            if e["message"].get("action") == "release"]  # fmt: skip
    assert sent and {e["priority"] for e in sent} == {"high"}
    assert runtime.jobs.get(child["uuid"])["state"] == "FINISHED"


def test_a_redelivered_parent_event_sends_each_release_once(runtime: Runtime):
    register(runtime)
    flaky = job("a", retry={"limit": 2, "backoff": 0.01, "max_backoff": 0.01})
    flaky["job_definition"]["report"] = ["RUNNING"]
    parent = launched(runtime, flaky)
    waiting = [launched(runtime, job(f"child {i}", depends_on=[parent["uuid"]])) for i in range(3)]
    failed = event(runtime, parent, "fail", reason="flaky")  # to be retried: they wait
    assert len(failed["result"]["releases"]) == 3

    # The fail, delivered again (its worker lost after sending): the children still
    # wait, so it sends their releases again — and finds them, keyed on the event.
    runtime.store.update(
        "executions", failed["id"], version=failed["version"], set={"status": "SUBMITTED"}
    )
    runtime.publish("jobs-manager", failed["id"])
    stub(runtime).join()

    again = runtime.executions.get(failed["id"])
    assert again["status"] == "COMPLETE" and again["result"]["duplicate"] is True
    assert sorted(again["result"]["releases"]) == sorted(failed["result"]["releases"])
    sent = [e for e in runtime.store.find("executions", {"actor": ALIAS}, limit=100).items
            if e["message"].get("action") == "release"]  # fmt: skip
    assert len(sent) == 3
    for child in waiting:
        assert names(runtime, child["uuid"]) == ["create"]
