"""Runs, owners and tags in the console (issue 15): the runs list and a run's page with
their jobs' counts, status and progress; the jobs list's and a job's page's owners,
tags, runs and attempts."""

from __future__ import annotations

import html
import json
import re

from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime
from tests.console.conftest import a_job, a_run, make_pipeline, tagged, text_of

HOSTILE = "<script>alert(1)</script>"


def rows_of(page: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)"', page)


def job_rows(page: str) -> list[str]:
    return re.findall(r'<tr data-uuid="([^"]+)"', page)


def run_row(page: str, uuid: str) -> str:
    found = re.search(rf'<tr data-run="{uuid}".*?</tr>', page, re.S)
    assert found, f"no row of run {uuid}"
    return found.group(0)


def mixed_run(runtime: Runtime, pipeline, name: str = "mixed", **fields) -> tuple[str, list[str]]:
    """A run of five jobs: one CREATED, one RUNNING, two FINISHED, one FAILED."""
    run = a_run(runtime, pipeline, name, **fields)
    jobs = []
    for i, events in enumerate([(), ("run",), ("run", "finish"), ("finish",), ("run", "fail")]):
        job = a_job(
            runtime, pipeline=pipeline, run=run, linkage=f"sample.tacc.{name}.{i}", data={"i": i}
        )
        for event in events:
            runtime.jobs.apply(job["uuid"], event)
        jobs.append(job["uuid"])
    return run, jobs


def test_the_runs_list_shows_each_runs_status_progress_and_counts(
    admin: FlaskClient, runtime: Runtime
) -> None:
    pipeline = make_pipeline(runtime)
    older, _ = mixed_run(runtime, pipeline, "mixed", tags={"experiment": "e1"}, priority="high")
    newer = a_run(runtime, pipeline, "empty", owner="k" * 64)
    page = text_of(admin.get("/ui/runs"))
    assert 'href="/ui/runs" class="here">Runs</a>' in page  # in the navigation
    assert rows_of(page) == [newer, older]  # newest first
    assert "2 runs match" in page
    row = run_row(page, older)
    assert 'data-status="RUNNING"' in row and "mixed" in row and "high" in row
    # Done: the three jobs in a terminal state (two FINISHED, one FAILED) of five.
    assert '<progress value="3" max="5">60%</progress>' in row
    assert "3 of 5 done (60%)" in row
    counts = dict(re.findall(r'data-state-count="([A-Z]+)">[A-Z]+ (\d+)<', row))
    assert counts == {"CREATED": "1", "RUNNING": "1", "FINISHED": "2", "FAILED": "1"}
    assert f'href="/ui/runs/{older}?state=FAILED"' in row
    assert "experiment=e1" in row and 'href="/ui/runs?tag=experiment:e1"' in row
    empty = run_row(page, newer)
    assert 'data-status="QUEUED"' in empty and "no jobs yet" in empty
    assert "k" * 12 in empty and "k" * 13 not in empty  # the owner: the key's listed id


def test_the_runs_list_filters_as_the_api_does_and_by_status(
    admin: FlaskClient, runtime: Runtime
) -> None:
    one = make_pipeline(runtime)
    two = make_pipeline(
        runtime, {"name": "two", "components": [{"id": "app-2", "inputs": {}, "parameters": {}}]}
    )
    running, _ = mixed_run(runtime, one, "running", tags={"batch": "b1"})
    queued = a_run(runtime, one, "queued", priority="low", owner="a" * 64)
    done = a_run(runtime, two, "done", tags={"batch": "b2"})
    finished = a_job(runtime, pipeline=two, run=done, linkage="sample.tacc.done")
    runtime.jobs.apply(finished["uuid"], "finish")
    assert set(rows_of(text_of(admin.get("/ui/runs")))) == {running, queued, done}
    for query, expected in (
        (f"pipeline_uuid={one['uuid']}", [queued, running]),
        (f"pipeline_uuid={two['uuid']}", [done]),
        ("priority=low", [queued]),
        ("tag=batch:b2", [done]),
        (f"owner={'a' * 12}", [queued]),
        ("status=COMPLETED", [done]),
        ("status=RUNNING", [running]),
        ("status=QUEUED&priority=low", [queued]),
        ("status=FAILED", []),
    ):
        page = text_of(admin.get(f"/ui/runs?{query}"))
        assert rows_of(page) == expected, query
    assert "No run matches" in text_of(admin.get("/ui/runs?status=CANCELLED"))
    for query, field in (
        ("status=DONE", "status must be one of"),
        ("priority=urgent", "priority must be one of"),
        ("pipeline_uuid=nope", "pipeline must be a pipeline UUID"),
        ("tag=nocolon", "must be key:value"),
    ):
        answer = admin.get(f"/ui/runs?{query}")
        assert answer.status_code == 400, query
        assert field in html.unescape(text_of(answer))


def test_a_status_filter_pages_through_the_runs(
    admin: FlaskClient, runtime: Runtime, monkeypatch
) -> None:
    from pipelinejobs.console import runs, views

    monkeypatch.setattr(views, "PAGE", 2)
    monkeypatch.setattr(runs, "scan_budget", lambda limit: 2)
    pipeline = make_pipeline(runtime)
    for i in range(5):
        a_run(runtime, pipeline, f"run {i}")
    # As listed, newest first (runs made within one millisecond tie: the store breaks
    # ties by key); the last listed is started.
    made = [r["uuid"] for r in runtime.store.find("runs", order="created", descending=True).items]
    started = a_job(runtime, pipeline=pipeline, run=made[-1], linkage="sample.tacc.s")
    runtime.jobs.apply(started["uuid"], "run")
    seen: list[str] = []
    url = "/ui/runs?status=QUEUED"
    while url:
        page = text_of(admin.get(url))
        seen += rows_of(page)
        found = re.search(r'id="next-page" href="([^"]+)"', page)
        url = html.unescape(found.group(1)) if found else ""
    assert seen == made[:-1]
    page = text_of(admin.get("/ui/runs?status=RUNNING"))
    assert rows_of(page) == [] and "this filter read 2 runs" in page


def test_a_runs_page_shows_its_record_counts_progress_and_jobs(
    admin: FlaskClient, runtime: Runtime, monkeypatch
) -> None:
    from pipelinejobs.console import views

    pipeline = make_pipeline(runtime)
    run, jobs = mixed_run(
        runtime, pipeline, "batch 7", domain_context={"request": "r-7", "n": [1, 2]}
    )
    page = text_of(admin.get(f"/ui/runs/{run}"))
    assert 'id="run-name">batch 7<' in page and pipeline["name"] in page
    context = re.search(r'<pre class="json" id="run-context">(.*?)</pre>', page, re.S)
    assert context and json.loads(html.unescape(context.group(1))) == {
        "n": [1, 2],
        "request": "r-7",
    }
    assert 'id="run-status">RUNNING<' in page and "3 of 5 done (60%)" in page
    counts = dict(re.findall(r'data-run-count="([A-Z]+)">(\d+)<', page))
    assert counts["ALL"] == "5" and counts["FINISHED"] == "2" and counts["RETIRED"] == "0"
    assert sorted(job_rows(page)) == sorted(jobs)
    for uuid in jobs:
        assert f'href="/ui/jobs/{uuid}"' in page
    assert f'href="/ui/jobs?run={run}"' in page
    # Filtered by state, and paged.
    failed = text_of(admin.get(f"/ui/runs/{run}?state=FAILED"))
    assert job_rows(failed) == [jobs[4]]
    two = text_of(admin.get(f"/ui/runs/{run}?state=FINISHED&state=CREATED"))
    assert sorted(job_rows(two)) == sorted([jobs[0], jobs[2], jobs[3]])
    monkeypatch.setattr(views, "PAGE", 2)
    seen: list[str] = []
    url = f"/ui/runs/{run}"
    while url:
        got = text_of(admin.get(url))
        seen += job_rows(got)
        found = re.search(r'id="next-page" href="([^"]+)"', got)
        url = html.unescape(found.group(1)) if found else ""
    assert sorted(seen) == sorted(jobs) and len(seen) == 5
    assert admin.get(f"/ui/runs/{run}?state=DONE").status_code == 400


def test_a_run_that_is_not_there_is_a_404_page(admin: FlaskClient, runtime: Runtime) -> None:
    missing = runtime.ids.run(make_pipeline(runtime)["uuid"], "nothing")
    answer = admin.get(f"/ui/runs/{missing}")
    assert answer.status_code == 404 and "no run" in text_of(answer)
    assert admin.get("/ui/runs/not-a-uuid").status_code == 400


def test_the_jobs_list_shows_and_filters_owners_tags_and_runs(
    admin: FlaskClient, runtime: Runtime, keys
) -> None:
    from pipelinejobs.access.keys import digest

    me = digest(keys.admin)[:12]
    pipeline = make_pipeline(runtime)
    run = a_run(runtime, pipeline, "the run")
    mine = a_job(
        runtime, pipeline=pipeline, linkage="sample.tacc.m", owner=me, run=run,
        **tagged({"experiment": "e1", "lab": "uw"}),
    )  # fmt: skip
    theirs = a_job(
        runtime, pipeline=pipeline, linkage="sample.tacc.t", owner="b" * 12,
        **tagged({"experiment": "e2"}),
    )  # fmt: skip
    page = text_of(admin.get("/ui/jobs"))
    row = re.search(rf'<tr data-uuid="{mine["uuid"]}".*?</tr>', page, re.S)
    assert row
    assert f'href="/ui/runs/{run}" class="job-run">the run<' in row.group(0)
    assert f'href="/ui/jobs?owner={me}">{me}<' in row.group(0)
    assert "experiment=e1" in row.group(0) and 'href="/ui/jobs?tag=experiment%3Ae1"' in row.group(0)
    for query, expected in (
        ("tag=experiment:e1", [mine]),
        ("tag=experiment:e2", [theirs]),
        ("tag=lab:uw&owner=me", [mine]),
        (f"owner={me}", [mine]),
        ("owner=me", [mine]),
        (f"owner={'b' * 12}", [theirs]),
        (f"run={run}", [mine]),
        (f"run=uri:urn:{run}", [mine]),
        ("tag=experiment:e3", []),
    ):
        got = text_of(admin.get(f"/ui/jobs?{query}"))
        assert job_rows(got) == [j["uuid"] for j in expected], query
    # The live list filters the same way.
    since = runtime.jobs.get(theirs["uuid"])["created"]
    live = admin.get(f"/ui/live/jobs?since={since}&tag=experiment:e2").get_json()
    assert [r["uuid"] for r in live["rows"]] == [theirs["uuid"]]
    for query, field in (("tag=nocolon", "must be key:value"), ("run=nope", "run must be a run")):
        answer = admin.get(f"/ui/jobs?{query}")
        assert answer.status_code == 400 and field in html.unescape(text_of(answer)), query


def test_a_job_page_shows_its_owner_tags_run_and_attempts(
    admin: FlaskClient, runtime: Runtime
) -> None:
    pipeline = make_pipeline(runtime)
    run = a_run(runtime, pipeline, "attempted")
    job = a_job(
        runtime, pipeline=pipeline, owner="c" * 12, run=run, attempt=3,
        attempts=[
            {"attempt": 1, "archive_path": "/products/v2/a/one", "reason": "salsa restocked",
             "retried": "2026-11-30T07:00:00.000Z"},
            {"attempt": 2, "archive_path": "/products/v2/a/two", "reason": "again"},
        ],
        **tagged({"experiment": "e1"}),
    )  # fmt: skip
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert f'id="job-owner"><a class="mono" href="/ui/jobs?owner={"c" * 12}"' in page
    assert 'href="/ui/jobs?tag=experiment:e1" data-tag="experiment">experiment=e1<' in page
    assert f'id="job-run"><a href="/ui/runs/{run}">attempted</a>' in page
    assert 'id="job-attempt">3<' in page
    assert re.findall(r'<li data-attempt="(\d)">', page) == ["1", "2"]
    assert "/products/v2/a/one" in page and "salsa restocked" in page
    # The live part shows the same.
    fields = admin.get(f"/ui/live/jobs/{job['uuid']}").get_json()["parts"]["fields"]
    assert 'id="job-attempt">3<' in fields and "attempted" in fields
    bare = text_of(admin.get(f"/ui/jobs/{a_job(runtime, linkage='sample.tacc.bare')['uuid']}"))
    assert 'id="job-attempt">1<' in bare and 'id="job-run">—<' in bare


def test_hostile_run_names_tags_and_contexts_are_shown_as_text(
    admin: FlaskClient, runtime: Runtime
) -> None:
    pipeline = make_pipeline(runtime)
    run = a_run(
        runtime,
        pipeline,
        f"{HOSTILE} run",
        tags={"note": HOSTILE},
        domain_context={"html": '"><img src=x onerror=alert(2)>', "s": HOSTILE},
    )
    job = a_job(runtime, pipeline=pipeline, run=run, owner=HOSTILE, **tagged({"note": HOSTILE}))
    runtime.jobs.apply(job["uuid"], "run")
    runtime.jobs.apply(job["uuid"], "fail", {"reason": HOSTILE})
    for url in (
        "/ui/runs",
        f"/ui/runs/{run}",
        "/ui/jobs",
        f"/ui/jobs/{job['uuid']}",
        f"/ui/jobs?tag=note:{HOSTILE}",
        f"/ui/runs?tag=note:{HOSTILE}",
        f"/ui/jobs/{job['uuid']}/actions/retry",
    ):
        page = text_of(admin.get(url))
        assert "<script>alert" not in page and "<img src=x" not in page, url
    listed = text_of(admin.get(f"/ui/runs?tag=note:{HOSTILE}"))
    assert rows_of(listed) == [run]
    assert "note=&lt;script&gt;alert(1)&lt;/script&gt;" in listed
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert "note=&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert job_rows(text_of(admin.get(f"/ui/jobs?tag=note:{HOSTILE}"))) == [job["uuid"]]
    for part in admin.get(f"/ui/live/jobs/{job['uuid']}").get_json()["parts"].values():
        assert "<script>alert" not in part


# -- the dependency graph (issue 16) --------------------------------------------------------


def test_a_runs_page_draws_its_dependency_graph_with_each_jobs_state(
    admin: FlaskClient, runtime: Runtime
) -> None:
    from pipelinejobs.domain.dependencies import Dependency

    pipeline = make_pipeline(runtime)
    run = a_run(runtime, pipeline, "diamond")

    def job(node: str, *parents: str, name: str | None = None, **rule: str) -> str:
        fields = Dependency(tuple(parents), **rule).fields() if parents else {}
        made = a_job(runtime, pipeline=pipeline, run=run, linkage=f"sample.tacc.{node}",
                     data={"node": node}, name=name or f"node {node}", **fields)  # fmt: skip
        uuid: str = made["uuid"]
        return uuid

    a = job("a", name=HOSTILE)
    runtime.jobs.apply(a, "run")
    b = job("b", a)
    c = job("c", a, condition="finished")
    d = job("d", b, c, on_parent_failure="ignore")
    runtime.jobs.apply(c, "fail")

    page = text_of(admin.get(f"/ui/runs/{run}"))

    drawn = re.search(r'<svg class="run-graph".*?</svg>', page, re.S)
    assert drawn, "no dependency graph on the run page"
    svg = drawn.group(0)
    states = dict(re.findall(r'data-uuid="([^"]+)"\s+data-state="([^"]+)"', svg))
    assert states == {a: "RUNNING", b: "CREATED", c: "FAILED", d: "CREATED"}
    assert f'href="/ui/jobs/{a}"' in svg
    edges = re.findall(r'data-from="([^"]+)" data-to="([^"]+)" data-condition="([^"]+)"', svg)
    assert sorted(edges) == sorted(
        [(a, b, "indexed"), (a, c, "finished"), (b, d, "terminal"), (c, d, "terminal")]
    )
    # A job's name is user text: escaped, never markup.
    assert HOSTILE not in page and html.escape(HOSTILE)[:20] in svg
    # Columns follow depth: A left of B and C, which are left of D.
    x = {u: float(v) for u, v in re.findall(r'data-uuid="([^"]+)".*?<rect x="([\d.]+)"', svg)}
    assert x[a] < x[b] == x[c] < x[d]


def test_a_run_without_dependencies_draws_no_graph(admin: FlaskClient, runtime: Runtime) -> None:
    pipeline = make_pipeline(runtime)
    run, _ = mixed_run(runtime, pipeline)
    page = text_of(admin.get(f"/ui/runs/{run}"))
    assert "run-graph" not in page


def test_a_jobs_page_names_the_jobs_it_waits_for(admin: FlaskClient, runtime: Runtime) -> None:
    from pipelinejobs.domain.dependencies import Dependency

    pipeline = make_pipeline(runtime)
    parent = a_job(runtime, pipeline=pipeline, linkage="sample.tacc.p", data={"p": 1})
    child = a_job(runtime, pipeline=pipeline, linkage="sample.tacc.c", data={"c": 1},
                  **Dependency((parent["uuid"],), "finished").fields())  # fmt: skip

    page = text_of(admin.get(f"/ui/jobs/{child['uuid']}"))

    found = re.search(r'<dd id="job-depends-on">(.*?)</dd>', page, re.S)
    assert found, "no 'waits for' on the job page"
    assert f'href="/ui/jobs/{parent["uuid"]}"' in found.group(1)
    assert "until finished" in found.group(1)
    assert 'id="job-depends-on"' not in text_of(admin.get(f"/ui/jobs/{parent['uuid']}"))
