"""The console's pages and live endpoints, through the Flask test client."""

from __future__ import annotations

import html
import re

from flask.testing import FlaskClient

from pipelinejobs.domain.lifecycle import State
from pipelinejobs.runtime.dispatch import Runtime
from tests.console.conftest import a_job, make_pipeline, text_of

XSS_NAME = '"><img src=x onerror="window.pwned=1"> tacos'
XSS_DATA = {"note": "<script>window.pwned=2</script>", "q": "'\"><svg/onload=alert(1)>"}


def counts_on(page: str) -> dict[str, int]:
    return {
        state: int(n.replace(",", ""))
        for state, n in re.findall(r'data-count="([A-Z]+)">([\d,]+)<', page)
    }


def test_the_overview_counts_jobs_by_state_as_the_api_does(
    admin: FlaskClient, runtime: Runtime
) -> None:
    pipeline = make_pipeline(runtime)
    for i, events in enumerate([(), ("run",), ("run",), ("run", "fail"), ("finish",)]):
        job = a_job(runtime, pipeline=pipeline, linkage=f"sample.tacc.{i}", data={"i": i})
        for event in events:
            runtime.jobs.apply(job["uuid"], event)
    page = text_of(admin.get("/ui/"))
    counts = counts_on(page)
    assert counts["ALL"] == 5
    assert (counts["CREATED"], counts["RUNNING"], counts["FAILED"], counts["FINISHED"]) == (
        1,
        2,
        1,
        1,
    )
    assert set(counts) == {"ALL", *State.__members__}
    # Each count links to the list it counts.
    assert 'href="/ui/jobs?state=RUNNING"' in page
    listed = text_of(admin.get("/ui/jobs?state=RUNNING"))
    assert listed.count('<tr data-uuid="') == 2
    # The last hour: 5 creations and 5 events, one failure.
    assert 'id="events-hour">10<' in page
    assert 'id="failed-hour">1<' in page
    # Pipelines, queues and workers.
    assert html.escape(pipeline["name"]) in page
    assert 'data-queue="jobs-manager">' in page
    assert "workers" in page


def test_the_live_overview_renders_the_same_parts(admin: FlaskClient, runtime: Runtime) -> None:
    a_job(runtime)
    live = admin.get("/ui/live/overview").get_json()
    assert set(live["parts"]) == {"counts", "activity", "pipelines", "queues", "failures"}
    assert counts_on(live["parts"]["counts"])["CREATED"] == 1


def test_the_jobs_list_filters_sorts_and_pages(admin: FlaskClient, runtime: Runtime) -> None:
    one, two = (
        make_pipeline(runtime),
        make_pipeline(
            runtime,
            {"name": "two", "components": [{"id": "app-2", "inputs": {}, "parameters": {}}]},
        ),
    )
    made = []
    for i in range(7):
        job = a_job(
            runtime,
            pipeline=one if i % 2 else two,
            linkage=f"sample.tacc.{i}",
            data={"i": i},
            name=f"job number {i}",
        )
        if i % 3 == 0:
            runtime.jobs.apply(job["uuid"], "run")
        made.append(job["uuid"])
    page = text_of(admin.get("/ui/jobs"))
    assert page.count('<tr data-uuid="') == 7 and "7 jobs match" in page
    several = text_of(admin.get("/ui/jobs?state=RUNNING&state=CREATED"))
    assert several.count('<tr data-uuid="') == 7
    running = text_of(admin.get("/ui/jobs?state=RUNNING"))
    assert running.count('<tr data-uuid="') == 3
    by_pipeline = text_of(admin.get(f"/ui/jobs?pipeline={one['uuid']}"))
    assert by_pipeline.count('<tr data-uuid="') == 3
    by_linkage = text_of(admin.get("/ui/jobs?linkage=sample.tacc.4"))
    assert re.findall(r'<tr data-uuid="([^"]+)"', by_linkage) == [made[4]]
    by_text = text_of(admin.get("/ui/jobs?q=NUMBER 5"))
    assert re.findall(r'<tr data-uuid="([^"]+)"', by_text) == [made[5]]
    by_uuid = text_of(admin.get(f"/ui/jobs?q={made[2][:12]}"))
    assert made[2] in re.findall(r'<tr data-uuid="([^"]+)"', by_uuid)
    since = text_of(admin.get("/ui/jobs?since=2999-01-01T00:00"))
    assert "No job matches" in since
    # Sorted, paged by the store's cursors.
    oldest = text_of(admin.get("/ui/jobs?sort=oldest"))
    order = re.findall(r'<tr data-uuid="([^"]+)"', oldest)
    created = {uuid: runtime.store.get("jobs", uuid)["created"] for uuid in made}
    # Oldest first (jobs made within one millisecond tie; the store breaks ties by key).
    assert sorted(order) == sorted(made)
    assert [created[uuid] for uuid in order] == sorted(created.values())
    first = admin.get("/ui/jobs?limit=3")  # (the console's page size is fixed)
    assert first.status_code == 200
    runtime.config  # noqa: B018


def test_the_jobs_list_pages_with_cursors(
    admin: FlaskClient, runtime: Runtime, monkeypatch
) -> None:
    from pipelinejobs.console import views

    monkeypatch.setattr(views, "PAGE", 2)
    pipeline = make_pipeline(runtime)
    for i in range(5):
        a_job(runtime, pipeline=pipeline, linkage=f"sample.tacc.{i}", data={"i": i})
    seen: list[str] = []
    url = "/ui/jobs"
    while url:
        page = text_of(admin.get(url))
        seen += re.findall(r'<tr data-uuid="([^"]+)"', page)
        found = re.search(r'id="next-page" href="([^"]+)"', page)
        url = html.unescape(found.group(1)) if found else ""
    assert len(seen) == len(set(seen)) == 5


def test_bad_filters_are_a_400_page_naming_them(admin: FlaskClient) -> None:
    for query, field in (
        ("state=DONE", "unknown state"),
        ("pipeline=nope", "pipeline must be a pipeline UUID"),
        ("since=yesterday", "updated since must be a date"),
        ("sort=sideways", "sort must be one of"),
    ):
        answer = admin.get(f"/ui/jobs?{query}")
        assert answer.status_code == 400, query
        assert field in text_of(answer)


def test_the_live_list_returns_changed_rows(admin: FlaskClient, runtime: Runtime) -> None:
    first = a_job(runtime, linkage="sample.tacc.1", data={"i": 1})
    since = runtime.jobs.get(first["uuid"])["updated"]
    runtime.jobs.apply(first["uuid"], "run")
    second = a_job(runtime, linkage="sample.tacc.2", data={"i": 2})
    live = admin.get(f"/ui/live/jobs?since={since}").get_json()
    assert {r["uuid"] for r in live["rows"]} == {first["uuid"], second["uuid"]}
    assert live["since"] >= since
    row = next(r for r in live["rows"] if r["uuid"] == first["uuid"])
    assert "RUNNING" in row["html"] and 'data-version="1"' in row["html"]
    filtered = admin.get(f"/ui/live/jobs?since={since}&state=CREATED").get_json()
    assert [r["uuid"] for r in filtered["rows"]] == [second["uuid"]]
    assert admin.get("/ui/live/jobs").get_json()["rows"] == []


def test_a_job_page_shows_its_record_history_diagram_files_and_executions(
    admin: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime, name="tacos")
    for event in ("run", "finish"):
        runtime.jobs.apply(job["uuid"], event, {"status": event.upper()}, sender="key:abc")
    runtime.store.put_many(
        "files",
        [
            {
                "uuid": "105a0000-0000-5000-8000-000000000001",
                "job_uuid": job["uuid"],
                "path": "/products/v2/abc/def/ghi/out.csv",
                "relative_path": "out.csv",
                "name": "out.csv",
                "level": "2",
                "size": 2048,
                "sha256": "ab" * 32,
                "present": True,
            }
        ],
    )
    token = runtime.tokens.update_token(job["uuid"])
    runtime.submit("jobs-manager", {"uuid": job["uuid"], "name": "update", "token": token})
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    # The record and its history as a timeline, oldest first, with who sent each.
    assert "tacos" in page and "/products/v2/abc/def/ghi" in page
    events = re.findall(r'data-event="([a-z]+)"', page)
    assert events == ["create", "run", "finish", "update"]
    assert 'sent by <span class="mono">key:abc</span>' in page
    # The diagram: generated, the path taken highlighted, the current state marked.
    assert '<svg class="lifecycle"' in page
    assert re.search(r'<g class="node visited current" data-state="FINISHED">', page)
    assert re.search(r'<g class="edge taken" data-from="RUNNING" data-to="FINISHED">', page)
    assert re.search(r'<g class="edge" data-from="CREATED" data-to="FINISHED">', page)
    # Its files and its executions (the update above), with their logs.
    assert "out.csv" in page and "2.0 KiB" in page and "ab" * 32 in page
    assert re.search(r'<td>jobs-manager</td>\s*<td><span class="state state-COMPLETE">', page)
    # Its token never.
    assert token not in page


def test_the_live_job_endpoint_answers_changes_only(admin: FlaskClient, runtime: Runtime) -> None:
    job = a_job(runtime)
    first = admin.get(f"/ui/live/jobs/{job['uuid']}").get_json()
    assert first["changed"] and first["state"] == "CREATED"
    assert set(first["parts"]) == {
        "header", "fields", "diagram", "timeline", "files", "executions", "actions",
    }  # fmt: skip
    same = admin.get(f"/ui/live/jobs/{job['uuid']}?fp={first['fingerprint']}").get_json()
    assert same == {"fingerprint": first["fingerprint"], "state": "CREATED", "changed": False}
    runtime.jobs.apply(job["uuid"], "run")
    moved = admin.get(f"/ui/live/jobs/{job['uuid']}?fp={first['fingerprint']}").get_json()
    assert moved["changed"] and moved["state"] == "RUNNING"
    assert 'class="node visited current" data-state="RUNNING"' in moved["parts"]["diagram"]


def test_job_data_and_names_are_shown_as_text(admin: FlaskClient, runtime: Runtime) -> None:
    pipeline = make_pipeline(
        runtime,
        {"name": "<b>bold</b>", "components": [{"id": "x-1", "inputs": {}, "parameters": {}}]},
    )
    job = a_job(runtime, pipeline=pipeline, name=XSS_NAME, data=XSS_DATA)
    runtime.jobs.apply(job["uuid"], "update", {"error": "<script>window.pwned=3</script>"})
    for url in (
        f"/ui/jobs/{job['uuid']}",
        "/ui/jobs",
        "/ui/",
        f"/ui/pipelines/{pipeline['uuid']}",
        "/ui/pipelines",
        f"/ui/jobs/{job['uuid']}/actions/cancel",
    ):
        page = text_of(admin.get(url))
        for raw in ("<script>window", "<img src=x", "<svg/onload", "<b>bold</b>"):
            assert raw not in page, (url, raw)
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert html.escape(XSS_NAME, quote=False).replace('"', "&#34;") in page
    for part in admin.get(f"/ui/live/jobs/{job['uuid']}").get_json()["parts"].values():
        assert "<script>window" not in part and "<img src=x" not in part


def test_a_job_that_is_not_there_is_a_404_page(admin: FlaskClient, runtime: Runtime) -> None:
    missing = runtime.ids.job(make_pipeline(runtime)["uuid"], ["sample.none"], {})
    answer = admin.get(f"/ui/jobs/{missing}")
    assert answer.status_code == 404 and "no job" in text_of(answer)
    assert admin.get("/ui/jobs/not-a-uuid").status_code == 400


def test_the_compute_log_is_served_from_an_offset(admin: FlaskClient, runtime: Runtime) -> None:
    job = a_job(runtime)
    assert admin.get(f"/ui/jobs/{job['uuid']}/log").status_code == 404
    log_dir = runtime.config.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{job['uuid']}.log").write_bytes(b"line 1\n<script>x</script>\n")
    whole = admin.get(f"/ui/jobs/{job['uuid']}/log")
    assert whole.mimetype == "text/plain" and whole.headers["X-Log-Next-Offset"] == "26"
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    rest = admin.get(f"/ui/jobs/{job['uuid']}/log?offset=7")
    assert rest.get_data() == b"<script>x</script>\n"
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert 'id="job-log"' in page
    assert admin.get(f"/ui/jobs/{job['uuid']}/log?offset=-1").status_code == 400


def test_pipelines_and_executions_pages(admin: FlaskClient, runtime: Runtime, sync) -> None:
    pipeline = make_pipeline(runtime)
    job = a_job(runtime, pipeline=pipeline)
    token = runtime.tokens.update_token(job["uuid"])
    execution = runtime.submit("jobs-manager", {"uuid": job["uuid"], "name": "run", "token": token})
    listed = text_of(admin.get("/ui/pipelines"))
    assert pipeline["uuid"] in listed
    one = text_of(admin.get(f"/ui/pipelines/{pipeline['uuid']}"))
    assert "sd2e/tacobot" in one and job["uuid"] in one
    assert text_of(admin.get("/ui/executions")).count("/ui/executions/") >= 4
    by_actor = text_of(admin.get("/ui/executions/jobs-manager"))
    assert execution["id"] in by_actor
    detail = text_of(admin.get(f"/ui/executions/jobs-manager/{execution['id']}"))
    assert "COMPLETE" in detail and token not in detail and "********" in detail
    assert admin.get("/ui/executions/nobody").status_code == 404
    assert admin.get("/ui/executions/jobs-manager?status=DONE").status_code == 400


def test_secrets_inside_texts_and_logs_are_masked(admin: FlaskClient, runtime: Runtime) -> None:
    job = a_job(runtime)
    runtime.jobs.apply(job["uuid"], "run")
    token = runtime.tokens.update_token(job["uuid"])
    url = (
        f"http://x/actors/v2/jobs-manager/messages?uuid={job['uuid']}&token={token}&x-nonce=PJ_abc"
    )
    runtime.jobs.apply(job["uuid"], "update", {"error": f"call {url} failed", "url": url})
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert token not in page and "PJ_abc" not in page and "token=********" in page
    log_dir = runtime.config.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{job['uuid']}.log"
    log.write_bytes(f"PIPELINEJOBS_JOB_TOKEN={token}\nhalf a li".encode())
    served = admin.get(f"/ui/jobs/{job['uuid']}/log")
    assert served.get_data() == b"PIPELINEJOBS_JOB_TOKEN=********\n"  # whole lines while it runs
    assert served.headers["X-Log-Next-Offset"] == str(len(f"PIPELINEJOBS_JOB_TOKEN={token}\n"))
    runtime.jobs.apply(job["uuid"], "finish")
    rest = admin.get(f"/ui/jobs/{job['uuid']}/log?offset={served.headers['X-Log-Next-Offset']}")
    assert rest.get_data() == b"half a li"  # the end, once it no longer runs
