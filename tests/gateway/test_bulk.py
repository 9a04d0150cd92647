"""Bulk actions by filter (issue 15), over HTTP on the memory and SQLite stores: a dry
run counts and samples, the real one must confirm that count, acts through one
execution per job and is followed at ``/bulk/<id>``; who may act on which jobs, and
every refusal a 4xx naming why with nothing changed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pipelinejobs.domain import bulk
from tests.gateway.conftest import error_of, result_of
from tests.gateway.test_job_tags import APP_ID
from tests.gateway.test_runs import World, create_run, event, get
from tests.gateway.test_runs import world as world  # noqa: F401 - the fixture


def send(world: World, who: str = "admin", **body: Any) -> Any:
    return world.post("jobs-manager", {"action": "bulk", **body}, who)


def dry(world: World, operation: str, who: str = "admin", **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = world.done(
        "jobs-manager", {"action": "bulk", "operation": operation, "dry_run": True, **body}, who
    )
    return result


def act(world: World, operation: str, who: str = "admin", **body: Any) -> dict[str, Any]:
    """The dry run, then the real one confirming its count; the followed view."""
    count = dry(world, operation, who, **body)["count"]
    result = world.done(
        "jobs-manager", {"action": "bulk", "operation": operation, "confirm": count, **body}, who
    )
    assert result["total"] == count
    shown: dict[str, Any] = get(world, f"/bulk/{result['bulk']}", limit=500)
    return shown


def states(world: World, uuids: list[str]) -> list[str]:
    return [world.rt.jobs.get(u)["state"] for u in uuids]


def launch(world: World, sample: str, who: str = "user", **extra: Any) -> str:
    """A job launched on the inline backend, left RUNNING (it reports nothing more)."""
    message = {
        "parameters": {"sample_id": sample},
        "job_definition": {"appId": APP_ID, "report": ["RUNNING"]},
        **extra,
    }
    uuid: str = world.done("launcher-proxy", message, who)["uuid"]
    return uuid


def batch(world: World, n: int, name: str = "batch", who: str = "user") -> tuple[str, list[str]]:
    """A run of ``n`` RUNNING jobs."""
    run = create_run(world, name, who)["uuid"]
    return run, [launch(world, f"sample.tacc.{name}.{i}", who, run=run) for i in range(n)]


def test_a_dry_run_counts_and_samples_and_changes_nothing(world: World) -> None:
    run, jobs = batch(world, 6)
    for uuid in jobs[:2]:
        event(world, uuid, "finish")
    before = [world.rt.jobs.get(u)["version"] for u in jobs]

    answer = dry(world, "cancel", filter={"run": run})
    assert (answer["count"], answer["matched"], answer["confirm"]) == (4, 6, 4)
    assert answer["states"] == sorted(bulk.STATES["cancel"]) and answer["allowed"] is True
    assert sorted(s["uuid"] for s in answer["sample"]) == sorted(jobs[2:])
    assert {s["state"] for s in answer["sample"]} == {"RUNNING"}
    assert [world.rt.jobs.get(u)["version"] for u in jobs] == before
    # Not a bulk action to follow: nothing was stored for it.
    assert world.rt.store.count("bulk") == 0


def test_bulk_cancel_of_a_run_fails_its_unfinished_jobs_one_execution_each(world: World) -> None:
    run, jobs = batch(world, 5)
    event(world, jobs[0], "finish")
    shown = act(world, "cancel", filter={"run": run}, reason="wrong reagent")

    assert states(world, jobs) == ["FINISHED", *["FAILED"] * 4]
    assert shown["status"] == "COMPLETE" and shown["total"] == 4
    assert shown["counts"] == {"done": 4, "errors": 0, "skipped": 0, "running": 0, "pending": 0}
    assert sorted(o["uuid"] for o in shown["outcomes"]) == sorted(jobs[1:])
    assert {o["outcome"] for o in shown["outcomes"]} == {"done"}
    assert {o["message"] for o in shown["outcomes"]} == {"now FAILED"}
    history = result_of(world.client.get(f"/jobs/{jobs[1]}/history", headers=world.admin))
    last = history["history"][-1]
    assert last["name"] == "fail" and last["data"]["reason"] == "cancelled: wrong reagent"
    assert last["data"]["bulk"] == shown["id"] and last["data"]["cancelled"] is True
    listed = get(world, "/bulk")["bulk"]
    assert [(b["id"], b["operation"], b["total"]) for b in listed] == [(shown["id"], "cancel", 4)]
    assert listed[0]["filter"] == {"run": run} and "jobs" not in listed[0]


def test_bulk_retry_of_the_failed_jobs_of_a_run(world: World) -> None:
    run, jobs = batch(world, 6)
    for uuid in jobs[:4]:
        event(world, uuid, "fail", reason="bad tortilla")
    for uuid in jobs[4:]:
        event(world, uuid, "finish")
    assert dry(world, "retry", filter={"run": run})["count"] == 4

    shown = act(world, "retry", filter={"run": run}, reason="new batch of tortillas")
    assert shown["counts"]["done"] == 4, shown
    assert {o["message"] for o in shown["outcomes"]} == {"retried as attempt 2"}
    for uuid in jobs[:4]:
        job = world.rt.jobs.get(uuid)
        assert (job["state"], job["attempt"]) == ("RUNNING", 2)
        assert job["attempts"][0]["attempt"] == 1
    assert states(world, jobs[4:]) == ["FINISHED", "FINISHED"]


def test_bulk_tag_and_retire_act_only_where_they_apply(world: World) -> None:
    run, jobs = batch(world, 3)
    event(world, jobs[0], "fail", reason="x")
    event(world, jobs[0], "retire")
    shown = act(world, "tag", filter={"run": run}, set={"reviewed": "yes"})
    assert shown["total"] == 2  # the RETIRED job's tags cannot change: not selected
    assert [world.rt.jobs.get(u).get("tags", {}).get("reviewed") for u in jobs] == [
        None,
        "yes",
        "yes",
    ]
    assert world.jobs(tag="reviewed:yes") == sorted(jobs[1:])

    event(world, jobs[1], "finish")
    shown = act(world, "retire", filter={"run": run, "tag": "reviewed:yes"}, reason="old")
    assert shown["total"] == 1
    assert states(world, jobs) == ["RETIRED", "RETIRED", "RUNNING"]


def test_a_stale_confirmed_count_is_refused_and_nothing_changes(world: World) -> None:
    run, jobs = batch(world, 3)
    count = dry(world, "cancel", filter={"run": run})["count"]
    event(world, jobs[0], "finish")  # the jobs changed since the dry run
    response = send(world, operation="cancel", filter={"run": run}, confirm=count)
    error = error_of(response, 409)
    assert error["message"] == (
        "the filter now selects 2 jobs, not the 3 confirmed: the jobs changed since the dry "
        "run; run it again and confirm its count"
    )
    assert states(world, jobs) == ["FINISHED", "RUNNING", "RUNNING"]


def test_a_user_key_acts_only_on_its_own_jobs_and_within_its_limit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, mine = batch(world, 2)
    theirs = launch(world, "sample.tacc.theirs", "other", run=run)

    answer = dry(world, "cancel", "user", filter={"run": run})
    assert answer["count"] == 2  # the other user's job in the same run is not selected
    refused = send(world, "user", operation="cancel", filter={"run": run, "owner":
                   world.ids["other"]}, dry_run=True)  # fmt: skip
    assert "acts in bulk only on its own jobs" in error_of(refused, 403)["message"]

    limited = dataclasses.replace(world.rt.config.bulk, user_limit=1)
    monkeypatch.setattr(world.rt, "config", dataclasses.replace(world.rt.config, bulk=limited))
    over = send(world, "user", operation="cancel", filter={"run": run}, confirm=2)
    assert error_of(over, 403)["message"] == (
        "the filter selects 2 jobs; a user key acts on at most 1 in one bulk action "
        "(bulk.user_limit): narrow the filter or ask an admin"
    )
    assert dry(world, "cancel", "user", filter={"run": run})["allowed"] is False
    assert states(world, [*mine, theirs]) == ["RUNNING"] * 3

    shown = act(world, "cancel", "admin", filter={"run": run})  # an admin is not limited
    assert shown["total"] == 3
    assert states(world, [*mine, theirs]) == ["FAILED"] * 3


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"operation": "cancel", "filter": {"run": "nope"}, "dry_run": True}, "filter/run", ""),
        ({"operation": "cancel", "filter": {}, "dry_run": True}, "filter", ""),
        ({"operation": "cancel", "filter": {"colour": "red"}, "dry_run": True}, "filter", ""),
        ({"operation": "cancel", "filter": {"tag": "nocolon"}, "dry_run": True}, "filter/tag", ""),
        ({"operation": "cancel", "filter": {"state": "RUNNING"}}, "", "confirm"),
        ({"operation": "explode", "filter": {"state": "RUNNING"}, "dry_run": True}, "", ""),
        ({"operation": "tag", "filter": {"state": "RUNNING"}, "dry_run": True}, "", ""),
        (
            {"operation": "cancel", "filter": {"updated_since": "yesterday"}, "dry_run": True},
            "filter/updated_since",
            "RFC 3339",
        ),
    ],
)
def test_a_bad_bulk_message_is_a_400_naming_the_field(
    world: World, body: dict[str, Any], path: str, words: str
) -> None:
    run, jobs = batch(world, 1)
    error = error_of(send(world, **body), 400)
    text = str(error)
    assert path in text and words in text, error
    assert states(world, jobs) == ["RUNNING"]


def test_a_cancelled_job_with_a_retry_policy_is_not_retried(world: World) -> None:
    run, _ = batch(world, 0)
    uuid = launch(world, "sample.tacc.policy", run=run, retry={"limit": 3})
    act(world, "cancel", filter={"run": run})
    job = world.rt.jobs.get(uuid)
    assert (job["state"], job.get("attempt", 1)) == ("FAILED", 1)
    # An automatic retry would be a launcher-proxy execution about the job: none was sent.
    assert world.rt.store.count("executions", {"actor": "launcher-proxy", "job": uuid}) == 0


def test_a_redelivered_bulk_action_acts_on_each_job_once(world: World) -> None:
    run, jobs = batch(world, 4)
    shown = act(world, "cancel", filter={"run": run})
    bulk_id = shown["id"]
    # Delivered again (as after a worker's crash): the snapshot and the per-job keys hold.
    world.rt.executions.requeue(bulk_id, "the worker was lost")
    assert world.rt.deliver("jobs-manager", bulk_id)["status"] == "COMPLETE"
    assert world.rt.store.count("executions", {"parent": bulk_id}) == 4
    history = [world.rt.jobs.history(u, 0, 100).entries for u in jobs]
    assert [sum(e["name"] == "fail" for e in h) for h in history] == [1, 1, 1, 1]
    assert get(world, f"/bulk/{bulk_id}")["counts"]["done"] == 4


def test_following_an_unknown_or_dry_run_id_is_404(world: World) -> None:
    run, _ = batch(world, 1)
    execution = result_of(send(world, operation="cancel", filter={"run": run}, dry_run=True))[
        "executionId"
    ]
    assert error_of(world.client.get(f"/bulk/{execution}", headers=world.user), 404)
    assert error_of(world.client.get("/bulk/AAAAAAAAAAAAA", headers=world.user), 404)


def test_a_run_of_50_with_10_failed_is_partially_completed_and_its_failed_are_retried(
    world: World,
) -> None:
    """The issue's batch: 50 jobs of which 10 fail; exact counts; a bulk retry of the
    failed ones (dry run 10, then 10 retried as attempt 2, their history intact)."""
    run = create_run(world, "fifty")["uuid"]
    jobs = []
    for i in range(50):
        definition: dict[str, Any] = {"appId": APP_ID}
        if i % 5 == 0:
            definition["fail"] = "the plate reader jammed"
        message = {"parameters": {"sample_id": f"sample.tacc.fifty.{i}"},
                   "job_definition": definition, "run": run}  # fmt: skip
        jobs.append(world.done("launcher-proxy", message)["uuid"])
    failed = jobs[::5]
    shown = get(world, f"/runs/{run}")
    assert shown["status"] == "PARTIALLY_COMPLETED" and shown["jobs"] == 50
    assert {k: v for k, v in shown["counts"].items() if v} == {"FINISHED": 40, "FAILED": 10}
    before = {u: [e["name"] for e in world.rt.jobs.record(u)["history"]] for u in failed}

    answer = dry(world, "retry", filter={"run": run})
    assert (answer["count"], answer["matched"]) == (10, 50)
    shown = act(world, "retry", filter={"run": run}, reason="plate reader fixed")
    assert shown["status"] == "COMPLETE" and shown["counts"]["done"] == 10
    assert sorted(o["uuid"] for o in shown["outcomes"]) == sorted(failed)
    for uuid in failed:
        job = world.rt.jobs.record(uuid)
        assert job["attempt"] == 2 and job["state"] == "FAILED"  # the same definition fails
        names = [e["name"] for e in job["history"]]
        assert names[: len(before[uuid])] == before[uuid]  # the first attempt's, as it was
        assert names[len(before[uuid]) :][:2] == ["reset", "ready"]
        reset = job["history"][len(before[uuid])]
        assert reset["data"]["reason"] == "plate reader fixed" and reset["data"]["attempt"] == 2
    assert {k: v for k, v in get(world, f"/runs/{run}")["counts"].items() if v} == {
        "FINISHED": 40,
        "FAILED": 10,
    }
