"""Runs (issue 15), over HTTP on the memory and SQLite stores: created by a
launcher-proxy ``create_run`` message, named by launches, listed and shown with their
jobs' counts by state and the status derived from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from pipelinejobs.domain import runs as runs_domain
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import error_of, result_of, token_of
from tests.gateway.test_job_tags import APP_ID, World, make_world

OTHER_PIPELINE = {
    "name": "Other",
    "components": [{"id": "other-0.1.0u1", "inputs": {}, "parameters": {}}],
}


@pytest.fixture(params=["memory", "sqlite"])
def world(
    request: pytest.FixtureRequest,
    build: Callable[..., tuple[Runtime, Flask]],
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    w = make_world(*build(request.param), monkeypatch)
    w.done("pipelines-manager", OTHER_PIPELINE, "admin")
    return w


def pipeline(world: World, app_id: str = APP_ID) -> str:
    uuid: str = world.rt.pipelines.resolve(uuid=None, app_id=app_id)["uuid"]
    return uuid


def create_run(world: World, name: str, who: str = "user", **extra: Any) -> dict[str, Any]:
    message = {"action": "create_run", "pipeline_uuid": pipeline(world), "name": name, **extra}
    return world.done("launcher-proxy", message, who)


def get(world: World, path: str, **query: Any) -> Any:
    return result_of(world.client.get(path, query_string=query, headers=world.user))


def create(world: World, sample: str, run: str) -> str:
    """A job created (not launched) in ``run``: CREATED until the events the test sends."""
    message = {
        "action": "create",
        "pipeline_uuid": pipeline(world),
        "parameters": {"sample_id": sample},
        "run": run,
    }
    uuid: str = world.done("launcher-proxy", message)["uuid"]
    return uuid


def event(world: World, uuid: str, name: str, **data: Any) -> None:
    token = token_of(world.rt, world.rt.jobs.get(uuid))
    message = {"uuid": uuid, "name": name, "token": token, **({"data": data} if data else {})}
    world.done("jobs-manager", message)


def test_a_run_is_created_with_its_fields_and_found_again(world: World) -> None:
    made = create_run(
        world, "batch 1", tags={"experiment": "e1"}, domain_context={"request": "r-7"}
    )
    assert made["created"] is True and made["uuid"].startswith("126")
    assert made["priority"] == "medium"

    run = get(world, f"/runs/{made['uuid']}")
    assert run["name"] == "batch 1" and run["pipeline_uuid"] == pipeline(world)
    assert run["tags"] == {"experiment": "e1"} and run["domain_context"] == {"request": "r-7"}
    assert run["owner"] == world.ids["user"] and run["created"]
    assert run["status"] == "QUEUED" and run["jobs"] == 0
    assert set(run["counts"]) == {
        "CREATED", "RUNNING", "FAILED", "FINISHED", "INDEXING", "VALIDATING", "VALIDATED",
        "REJECTED", "FINALIZED", "RETIRED", "RESET",
    }  # fmt: skip

    again = create_run(world, "batch 1", priority="high")
    assert again == {**made, "created": False}  # the same run, not changed


def test_a_run_of_five_jobs_with_mixed_outcomes(world: World) -> None:
    run = create_run(world, "mixed")["uuid"]
    jobs = [create(world, f"sample.tacc.{i}", run) for i in range(5)]
    stored = [world.rt.jobs.get(uuid) for uuid in jobs]
    assert [job["run"] for job in stored] == [run] * 5
    assert {job["state"] for job in stored} == {"CREATED"}
    assert get(world, f"/runs/{run}")["status"] == "QUEUED"

    event(world, jobs[0], "run")
    event(world, jobs[1], "run")
    event(world, jobs[1], "finish")
    shown = get(world, f"/runs/{run}")
    assert (shown["status"], shown["jobs"]) == ("RUNNING", 5)
    assert {k: v for k, v in shown["counts"].items() if v} == {
        "CREATED": 3,
        "RUNNING": 1,
        "FINISHED": 1,
    }

    event(world, jobs[0], "finish")
    event(world, jobs[2], "finish")
    event(world, jobs[3], "fail", reason="out of tortillas")
    event(world, jobs[4], "run")
    event(world, jobs[4], "fail", reason="no salsa")
    shown = get(world, f"/runs/{run}")
    assert shown["status"] == "PARTIALLY_COMPLETED"
    assert {k: v for k, v in shown["counts"].items() if v} == {"FINISHED": 3, "FAILED": 2}

    event(world, jobs[3], "retire")
    shown = get(world, f"/runs/{run}")
    assert shown["status"] == "CANCELLED"
    assert {k: v for k, v in shown["counts"].items() if v} == {
        "FINISHED": 3,
        "FAILED": 1,
        "RETIRED": 1,
    }

    listed = get(world, f"/runs/{run}/jobs", limit=2)
    assert len(listed["jobs"]) == 2 and listed["next"]
    rest = get(world, f"/runs/{run}/jobs", limit=10, cursor=listed["next"])
    assert sorted(j["uuid"] for j in [*listed["jobs"], *rest["jobs"]]) == sorted(jobs)
    assert rest["next"] is None
    failed = get(world, f"/runs/{run}/jobs", state="FAILED")["jobs"]
    assert [j["uuid"] for j in failed] == [jobs[4]]
    assert world.jobs(run=run) == sorted(jobs)
    assert world.jobs(run=run, state="FINISHED") == sorted(jobs[:3])
    launched = world.launch("sample.tacc.launched", run=run)["uuid"]  # a launch names it too
    assert world.rt.jobs.get(launched)["run"] == run
    outside = world.launch("sample.tacc.outside")["uuid"]
    assert outside not in world.jobs(run=run)


def test_runs_filter_by_pipeline_priority_tag_and_owner_and_page(world: World) -> None:
    a = create_run(world, "a", priority="high", tags={"experiment": "e1"})["uuid"]
    b = create_run(world, "b", tags={"experiment": "e2"})["uuid"]
    other = {"action": "create_run", "pipeline_uuid": pipeline(world, "other-0.1.0u1")}
    c = world.done("launcher-proxy", {**other, "name": "c", "priority": "low"}, "other")["uuid"]

    def runs(**query: Any) -> list[str]:
        return sorted(r["uuid"] for r in get(world, "/runs", **query)["runs"])

    assert runs() == sorted([a, b, c])
    assert runs(pipeline_uuid=pipeline(world)) == sorted([a, b])
    assert runs(priority="high") == [a]
    assert runs(priority="medium") == [b]
    assert runs(tag="experiment:e1") == [a]
    assert runs(owner="me") == sorted([a, b])
    assert runs(owner=world.ids["other"]) == [c]
    assert runs(owner=world.ids["other"], priority="high") == []
    first = get(world, "/runs", limit=2)
    second = get(world, "/runs", limit=2, cursor=first["next"])
    assert second["next"] is None
    assert sorted(r["uuid"] for r in [*first["runs"], *second["runs"]]) == sorted([a, b, c])


def test_a_launch_naming_a_missing_run_is_404_naming_it(world: World) -> None:
    missing = world.rt.ids.run(pipeline(world), "never made")
    response = world.post(
        "launcher-proxy",
        {
            "parameters": {"sample_id": "sample.tacc.s"},
            "job_definition": {"appId": APP_ID},
            "run": missing,
        },
    )
    assert error_of(response, 404)["message"] == (
        f"run {missing} does not exist: create it first (create_run)"
    )
    assert world.jobs() == []


def test_a_launch_naming_a_run_of_another_pipeline_is_400_naming_both(world: World) -> None:
    other = pipeline(world, "other-0.1.0u1")
    run = world.done("launcher-proxy", {"action": "create_run", "pipeline_uuid": other,
                                        "name": "theirs"})["uuid"]  # fmt: skip
    response = world.post(
        "launcher-proxy",
        {
            "parameters": {"sample_id": "sample.tacc.s"},
            "job_definition": {"appId": APP_ID},
            "run": run,
        },
    )
    assert error_of(response, 400)["message"] == (
        f"run {run} belongs to pipeline {other}, not to this job's pipeline {pipeline(world)}"
    )
    assert world.jobs() == []


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"name": "x", "priority": "urgent"}, "priority"),
        ({"name": ""}, "name"),
        ({"name": "x", "tags": {"a:b": "c"}}, "tags"),
        ({"name": "x", "domain_context": []}, "domain_context"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({}, "name"),
    ],
)
def test_a_malformed_create_run_is_400_naming_the_field(
    world: World, message: dict[str, Any], expected: str
) -> None:
    body = {"action": "create_run", "pipeline_uuid": pipeline(world), **message}
    error = error_of(world.post("launcher-proxy", body), 400)
    assert expected in error["message"], error
    assert get(world, "/runs")["runs"] == []


def test_a_run_of_an_unknown_pipeline_is_404(world: World) -> None:
    unknown = world.rt.ids.pipeline([{"id": "nobody"}])
    body = {"action": "create_run", "pipeline_uuid": unknown, "name": "x"}
    assert error_of(world.post("launcher-proxy", body), 404)["message"] == f"no pipeline {unknown}"


def test_run_routes_refuse_bad_parameters_and_unknown_runs(world: World) -> None:
    def refused(path: str, status: int, **query: Any) -> str:
        response = world.client.get(path, query_string=query, headers=world.user)
        message: str = error_of(response, status)["message"]
        return message

    assert "'priority'" in refused("/runs", 400, priority="urgent")
    assert "'tag'" in refused("/runs", 400, tag="nocolon")
    assert "'run'" in refused("/jobs", 400, run="not-a-run")
    assert "'state'" in refused(f"/runs/{world.rt.ids.run('p', 'n')}/jobs", 400, state="DONE")
    missing = world.rt.ids.run(pipeline(world), "nothing")
    assert refused(f"/runs/{missing}", 404) == f"no run {missing}"
    assert refused(f"/runs/{missing}/jobs", 404) == f"no run {missing}"
    job_uuid = world.rt.ids.job(pipeline(world), ["x"], {})
    assert "expected a pipelinejob_run UUID" in refused(f"/runs/{job_uuid}", 400)


# -- the status filter (derived, not stored) ---------------------------------------------


def runs_in_each_status(world: World, suffix: str = "") -> dict[str, str]:
    """Four runs, one QUEUED, RUNNING, COMPLETED and PARTIALLY_COMPLETED, named with
    ``suffix``; status -> run uuid."""
    made: dict[str, str] = {}
    for status, outcomes in (
        ("QUEUED", ["", ""]),
        ("RUNNING", ["run", ""]),
        ("COMPLETED", ["finish", "finish"]),
        ("PARTIALLY_COMPLETED", ["finish", "fail"]),
    ):
        run = create_run(world, f"run {status}{suffix}")["uuid"]
        for i, outcome in enumerate(outcomes):
            job = create(world, f"sample.tacc.{status.lower()}{suffix}.{i}", run)
            if outcome == "run":
                event(world, job, "run")
            elif outcome:
                event(world, job, outcome, **({"reason": "no salsa"} if outcome == "fail" else {}))
        made[status] = run
    return made


def test_runs_are_listed_with_their_counts_and_status(world: World) -> None:
    made = runs_in_each_status(world)
    listed = {r["uuid"]: r for r in get(world, "/runs")["runs"]}
    assert {uuid: listed[uuid]["status"] for uuid in made.values()} == {
        uuid: status for status, uuid in made.items()
    }
    partial = listed[made["PARTIALLY_COMPLETED"]]
    assert partial["jobs"] == 2 and len(partial["counts"]) == 11
    assert {k: v for k, v in partial["counts"].items() if v} == {"FINISHED": 1, "FAILED": 1}
    assert partial == get(world, f"/runs/{made['PARTIALLY_COMPLETED']}")  # as /runs/<id>
    assert "scanned" not in get(world, "/runs")  # only a status filter reads more


def test_runs_filter_by_derived_status(world: World) -> None:
    made = runs_in_each_status(world)
    for status, uuid in made.items():
        page = get(world, "/runs", status=status)
        assert [r["uuid"] for r in page["runs"]] == [uuid], status
        assert page["runs"][0]["status"] == status and page["next"] is None
        assert page["scanned"] == 4
    assert get(world, "/runs", status="FAILED")["runs"] == []
    both = get(world, "/runs", status=["QUEUED", "COMPLETED"])["runs"]
    assert sorted(r["uuid"] for r in both) == sorted([made["QUEUED"], made["COMPLETED"]])
    combined = get(world, "/runs", status="RUNNING", owner="me", tag="nope:x")  # store-side
    assert combined["runs"] == [] and combined["scanned"] == 0


def test_a_status_filter_reads_a_bounded_number_of_runs_and_resumes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a budget smaller than the runs to read, pages come back short — even
    empty — with a ``next`` that resumes where the reading stopped: followed to its
    end, it yields every match once, newest first."""
    made = runs_in_each_status(world)
    again = runs_in_each_status(world, "-again")
    newest_first = [r["uuid"] for r in get(world, "/runs", limit=50)["runs"]]
    wanted = {made["COMPLETED"], again["COMPLETED"], made["QUEUED"], again["QUEUED"]}
    expected = [uuid for uuid in newest_first if uuid in wanted]
    monkeypatch.setattr(runs_domain, "SCAN_PER_RUN", 1)  # a page of 1 reads 1 run at most
    found: list[str] = []
    shown: list[int] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"status": ["COMPLETED", "QUEUED"], "limit": 1}
        page = get(world, "/runs", **query, **({"cursor": cursor} if cursor else {}))
        assert page["scanned"] == 1 and len(page["runs"]) <= 1
        shown.append(len(page["runs"]))
        found.extend(r["uuid"] for r in page["runs"])
        cursor = page["next"]
        if cursor is None:
            break
    assert found == expected
    assert shown.count(0) == 4  # a page that found nothing in its budget still went on
    # Stopping inside a store page resumes right after the last run read, too.
    monkeypatch.setattr(runs_domain, "SCAN_PER_RUN", 20)
    first = get(world, "/runs", status=["COMPLETED", "QUEUED"], limit=1)
    rest = get(world, "/runs", status=["COMPLETED", "QUEUED"], limit=10, cursor=first["next"])
    assert [r["uuid"] for r in [*first["runs"], *rest["runs"]]] == expected
    assert rest["next"] is None


def test_an_unknown_status_is_400_naming_the_allowed_ones(world: World) -> None:
    response = world.client.get("/runs", query_string={"status": "DONE"}, headers=world.user)
    error = error_of(response, 400)
    assert "'status'" in error["message"]
    for status in runs_domain.STATUSES:
        assert status in error["message"], error
    assert error["result"]["allowed"] == list(runs_domain.STATUSES)
    response = world.client.get(
        "/runs", query_string={"status": ["QUEUED", "queued"]}, headers=world.user
    )
    assert "'status'[1]" in error_of(response, 400)["message"]


# -- the dependency graph (issue 16) --------------------------------------------------------


def test_a_runs_graph_has_its_jobs_as_nodes_and_their_dependencies_as_edges(world: World):
    run = create_run(world, "diamond")["uuid"]
    running = {"appId": APP_ID, "report": ["RUNNING"]}
    outside = world.launch("sample.tacc.outside", job_definition=running)

    def launch(sample: str, **extra: Any) -> str:
        definition = {"appId": APP_ID, "name": f"job {sample}", "report": ["RUNNING"]}
        result = world.launch(f"sample.tacc.{sample}", run=run, job_definition=definition,
                              **extra)  # fmt: skip
        uuid: str = result["uuid"]
        return uuid

    a = launch("a")
    b = launch("b", depends_on=[a])
    c = launch("c", depends_on=[a, outside["uuid"]], condition="finished")
    d = launch("d", depends_on=[b, c], on_parent_failure="ignore")

    graph = get(world, f"/runs/{run}/graph")

    nodes = {n["uuid"]: n for n in graph["nodes"]}
    assert list(nodes)[:4] == [a, b, c, d] and graph["truncated"] is False
    assert nodes[a] == {"uuid": a, "state": "RUNNING", "pipeline_uuid": pipeline(world),
                        "name": "job a", "child_of": ["sample.tacc.a"], "in_run": True}  # fmt: skip
    assert nodes[d]["state"] == "CREATED"
    assert nodes[outside["uuid"]]["in_run"] is False
    assert sorted((e["from"], e["to"], e["condition"]) for e in graph["edges"]) == sorted([
        (a, b, "indexed"),
        (a, c, "finished"),
        (outside["uuid"], c, "finished"),
        (b, d, "terminal"),
        (c, d, "terminal"),
    ])  # fmt: skip


def test_the_graph_of_an_unknown_run_is_a_404(world: World):
    missing = create_run(world, "gone")["uuid"][:-4] + "0000"
    error = error_of(world.client.get(f"/runs/{missing}/graph", headers=world.user), 404)
    assert missing in error["message"]


def test_a_launch_waiting_for_a_job_that_does_not_exist_is_a_400_naming_it(world: World):
    parent = world.launch("sample.tacc.there")["uuid"]
    missing = parent[:-4] + ("0000" if not parent.endswith("0000") else "1111")
    before = world.rt.store.count("jobs")

    response = world.post(
        "launcher-proxy",
        {
            "parameters": {"sample_id": "sample.tacc.child"},
            "job_definition": {"appId": APP_ID},
            "depends_on": [parent, missing],
        },  # fmt: skip
    )

    error = error_of(response, 400)
    assert missing in error["message"] and error["result"]["path"] == "depends_on/1"
    assert world.rt.store.count("jobs") == before
