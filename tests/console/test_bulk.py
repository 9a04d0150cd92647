"""Bulk actions from the console (issue 15): the control on the jobs list and a run's
page, the dry run and its confirm page, the confirmed count (and a stale one), a user
key's limit, and a bulk action's page, live while it runs, and the list.

Jobs are launched over HTTP on the inline backend and left RUNNING (``report``), as
``tests/gateway/test_bulk.py`` launches them; executions are delivered as they are
published (``sync``), as a worker would run them.
"""

from __future__ import annotations

import dataclasses
import html
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from pipelinejobs.runtime.dispatch import Runtime
from tests.console.conftest import SAME_ORIGIN, Keys, a_run, csrf_of, signed_in, text_of
from tests.gateway.conftest import APP_PIPELINE, bearer, make_pipeline, result_of

HOSTILE = "<script>window.pwned = 1</script>"
CANCEL_STATES = "CREATED, INDEXING, RUNNING, VALIDATING"


def launch(app: Flask, key: str, pipeline: str, run: str, sample: str) -> str:
    """A job launched by ``key`` on the inline backend, left RUNNING; its uuid."""
    message = {
        "pipeline_uuid": pipeline,
        "parameters": {"sample_id": sample},
        "job_definition": {"report": ["RUNNING"]},
        "run": run,
    }
    answer = app.test_client().post(
        "/actors/v2/launcher-proxy/messages",
        json=message,
        query_string={"sync": "true"},
        headers=bearer(key),
    )
    execution = result_of(answer)
    assert execution["status"] == "COMPLETE", execution
    uuid: str = execution["result"]["uuid"]
    return uuid


def batch(
    app: Flask, runtime: Runtime, key: str, n: int, name: str = "batch"
) -> tuple[str, list[str]]:
    """A run of ``n`` RUNNING jobs launched by ``key``."""
    pipeline = make_pipeline(runtime, APP_PIPELINE)
    run = a_run(runtime, pipeline, name)
    return run, [
        launch(app, key, pipeline["uuid"], run, f"sample.tacc.{name}.{i}") for i in range(n)
    ]


def form_of(page: str, form_id: str) -> list[tuple[str, str]]:
    """The hidden fields of the form ``form_id`` on ``page``, as a browser sends them."""
    found = re.search(rf'<form [^>]*id="{form_id}".*?</form>', page, re.S)
    assert found, f"no form {form_id} on the page"
    return [
        (html.unescape(name), html.unescape(value))
        for name, value in re.findall(
            r'<input type="hidden" name="([^"]*)" value="([^"]*)">', found.group(0)
        )
    ]


def post(client: FlaskClient, url: str, fields: list[tuple[str, str]], **typed: str) -> Any:
    data = MultiDict([*fields, *typed.items()])
    return client.post(url, data=data, headers=SAME_ORIGIN)


def dry_run(client: FlaskClient, page_url: str, **typed: str) -> Any:
    """Open ``page_url`` (the jobs list, a run's page) and send its bulk control."""
    page = text_of(client.get(page_url))
    return post(client, "/ui/bulk/dry-run", form_of(page, "bulk-form"), **typed)


def states(runtime: Runtime, uuids: list[str]) -> list[str]:
    return [runtime.jobs.get(u)["state"] for u in uuids]


def test_a_dry_run_from_a_runs_page_shows_the_count_and_a_sample_and_changes_nothing(
    app: Flask, admin: FlaskClient, keys: Keys, runtime: Runtime, sync
) -> None:
    run, jobs = batch(app, runtime, keys.admin, 4)
    runtime.jobs.apply(jobs[0], "finish")
    before = [runtime.jobs.get(u)["version"] for u in jobs]
    page = text_of(admin.get(f"/ui/runs/{run}"))
    assert "Bulk action…" in page and ("run", run) in form_of(page, "bulk-form")

    answer = dry_run(admin, f"/ui/runs/{run}", operation="cancel", reason=HOSTILE)
    body = text_of(answer)
    assert answer.status_code == 200, body
    sentence = re.sub(r"<[^>]+>", "", re.search(r'<p id="bulk-sentence">(.*?)</p>', body).group(1))
    assert sentence == (
        f"This will cancel 3 jobs (4 match the filter; cancel acts on jobs in states "
        f"{CANCEL_STATES})."
    )
    assert re.findall(r'<tr data-uuid="([^"]+)"', body) == list(reversed(jobs[1:]))
    assert 'id="confirm"' in body and ("confirm", "3") in form_of(body, "bulk-confirm-form")
    # The reason is text: escaped on the page and carried back as it was typed.
    assert HOSTILE not in body and html.escape(HOSTILE) in body
    assert ("reason", HOSTILE) in form_of(body, "bulk-confirm-form")
    assert [runtime.jobs.get(u)["version"] for u in jobs] == before
    assert runtime.store.count("bulk") == 0


def test_confirming_cancels_the_jobs_and_the_bulk_page_shows_their_outcomes(
    app: Flask, admin: FlaskClient, keys: Keys, runtime: Runtime, sync
) -> None:
    run, jobs = batch(app, runtime, keys.admin, 3)
    confirm = text_of(dry_run(admin, f"/ui/runs/{run}", operation="cancel", reason="wrong salsa"))
    fields = form_of(confirm, "bulk-confirm-form")
    started = post(admin, "/ui/bulk", fields)
    assert started.status_code == 303, text_of(started)
    bulk_id = started.headers["Location"].rsplit("/", 1)[1]
    assert states(runtime, jobs) == ["FAILED"] * 3
    last = runtime.jobs.get(jobs[0])["last_entry"]
    assert last["data"]["reason"] == "cancelled: wrong salsa" and last["data"]["bulk"] == bulk_id

    page = text_of(admin.get(f"/ui/bulk/{bulk_id}"))
    assert 'id="bulk-status">COMPLETE<' in page and "data-live-bulk" not in page
    assert '<progress value="3" max="3">100%</progress>' in page
    counts = dict(re.findall(r'data-bulk-count="([a-z]+)">(\d+)<', page))
    assert counts == {"done": "3", "errors": "0", "skipped": "0", "running": "0", "pending": "0"}
    outcomes = re.findall(r'<tr data-uuid="([^"]+)" data-outcome="([a-z]+)">', page)
    assert sorted(outcomes) == sorted((u, "done") for u in jobs)
    for uuid in jobs:
        assert f'href="/ui/jobs/{uuid}"' in page
    assert page.count("now FAILED") == 3 and "wrong salsa" in page
    # Sent again (a double submit): the same bulk action, not a second one.
    again = post(admin, "/ui/bulk", fields)
    assert again.status_code == 303 and again.headers["Location"].endswith(f"/ui/bulk/{bulk_id}")
    assert runtime.store.count("bulk") == 1
    # Listed, newest first, from the navigation.
    listed = text_of(admin.get("/ui/bulk"))
    assert 'class="here">Bulk</a>' in listed
    assert re.findall(r'<tr data-bulk="([^"]+)" data-status="([A-Z]+)"', listed) == [
        (bulk_id, "COMPLETE")
    ]


def test_a_stale_count_shows_the_409_message_and_changes_nothing(
    app: Flask, admin: FlaskClient, keys: Keys, runtime: Runtime, sync
) -> None:
    run, jobs = batch(app, runtime, keys.admin, 3)
    confirm = text_of(dry_run(admin, f"/ui/jobs?run={run}", operation="cancel", reason="stale"))
    runtime.jobs.apply(jobs[0], "finish")  # the jobs changed since the dry run
    refused = post(admin, "/ui/bulk", form_of(confirm, "bulk-confirm-form"))
    body = text_of(refused)
    assert refused.status_code == 409
    message = (
        "the filter now selects 2 jobs, not the 3 confirmed: the jobs changed since the dry "
        "run; run it again and confirm its count"
    )
    assert f"Refused (Conflict): {message}" in body
    assert states(runtime, jobs) == ["FINISHED", "RUNNING", "RUNNING"]
    assert runtime.store.count("bulk") == 0
    # The dry run again, from the refusal: the jobs as they are now.
    again = post(admin, "/ui/bulk/dry-run", form_of(body, "dry-run-again"))
    assert 'id="bulk-count">2<' in text_of(again)


def test_a_user_key_over_its_limit_sees_the_refusal_and_no_confirm_button(
    app: Flask, user: FlaskClient, keys: Keys, runtime: Runtime, sync, monkeypatch
) -> None:
    run, mine = batch(app, runtime, keys.user, 2)
    pipeline = runtime.store.get("runs", run)["pipeline_uuid"]
    theirs = launch(app, keys.admin, pipeline, run, "sample.tacc.theirs")
    limited = dataclasses.replace(runtime.config.bulk, user_limit=1)
    monkeypatch.setattr(runtime, "config", dataclasses.replace(runtime.config, bulk=limited))

    page = text_of(user.get(f"/ui/jobs?run={run}"))
    assert "On your jobs this filter selects" in page
    answer = dry_run(user, f"/ui/jobs?run={run}", operation="cancel", reason="mine only")
    body = text_of(answer)
    assert answer.status_code == 200, body
    sentence = re.sub(r"<[^>]+>", "", re.search(r'<p id="bulk-sentence">(.*?)</p>', body).group(1))
    assert sentence.startswith("This will cancel 2 of your jobs (2 of your jobs match the filter;")
    assert 'id="refusal"' in body and (
        "a user key acts on at most 1 in one bulk action (bulk.user_limit)" in body
    )
    assert 'id="confirm"' not in body and "bulk-confirm-form" not in body
    assert theirs not in re.findall(r'<tr data-uuid="([^"]+)"', body)
    # Sent anyway (a hand-made form): refused by the jobs-manager, nothing changed.
    fields = [("operation", "cancel"), ("run", run), ("reason", "x"), ("confirm", "2")]
    forced = post(user, "/ui/bulk", [*fields, ("csrf", csrf_of(user))])
    assert forced.status_code == 403 and "bulk.user_limit" in text_of(forced)
    assert states(runtime, [*mine, theirs]) == ["RUNNING"] * 3


def test_the_jobs_list_carries_its_filters_but_not_its_text_search(
    app: Flask, admin: FlaskClient, keys: Keys
) -> None:
    page = text_of(admin.get("/ui/jobs?state=RUNNING&state=FAILED&tag=experiment:e1&owner=me"))
    fields = form_of(page, "bulk-form")
    assert [f for f in fields if f[0] not in ("csrf", "back")] == [
        ("state", "RUNNING"),
        ("state", "FAILED"),
        ("tag", "experiment:e1"),
        ("owner", "me"),
    ]
    searched = text_of(admin.get("/ui/jobs?state=RUNNING&q=salsa"))
    assert "not its text search" in searched and 'id="bulk-form"' not in searched
    unfiltered = text_of(admin.get("/ui/jobs"))
    assert "Choose a filter first" in unfiltered and 'id="bulk-form"' not in unfiltered
    limited = signed_in(app, keys.limited)  # may not post to the jobs-manager
    assert "Bulk action" not in text_of(limited.get("/ui/jobs?state=RUNNING"))


def test_a_bulk_tag_shows_hostile_tags_and_reasons_as_text(
    app: Flask, admin: FlaskClient, keys: Keys, runtime: Runtime, sync
) -> None:
    run, jobs = batch(app, runtime, keys.admin, 2)
    confirm = dry_run(
        admin, f"/ui/runs/{run}", operation="tag", set=f"note={HOSTILE}", reason=HOSTILE
    )
    body = text_of(confirm)
    assert 'id="bulk-count">2<' in body and HOSTILE not in body
    started = post(admin, "/ui/bulk", form_of(body, "bulk-confirm-form"))
    assert started.status_code == 303, text_of(started)
    assert [runtime.jobs.get(u)["tags"] for u in jobs] == [{"note": HOSTILE}] * 2
    for url in (started.headers["Location"], "/ui/bulk"):
        page = text_of(admin.get(url))
        assert HOSTILE not in page and html.escape(HOSTILE) in page
    missing = dry_run(admin, f"/ui/runs/{run}", operation="tag")
    assert missing.status_code == 400 and "say which tags to set" in text_of(missing)
    no_reason = dry_run(admin, f"/ui/runs/{run}", operation="cancel")
    assert no_reason.status_code == 400 and "say why the jobs are cancelled" in text_of(no_reason)


def test_a_bulk_actions_page_is_live_while_it_sends_and_runs(
    app: Flask, admin: FlaskClient, keys: Keys, runtime: Runtime, sync, monkeypatch
) -> None:
    from tests.support import stub

    run, jobs = batch(app, runtime, keys.admin, 2)
    monkeypatch.undo()  # from now on, messages wait in the stub bus's queues
    message = {"action": "bulk", "operation": "cancel", "filter": {"run": run}}
    execution = runtime.submit("jobs-manager", {**message, "confirm": 2}, role="admin")
    page = text_of(admin.get(f"/ui/bulk/{execution['id']}"))
    assert 'id="bulk-status">SENDING<' in page
    live_url = html.unescape(re.search(r'data-live-bulk="([^"]+)"', page).group(1))
    live = admin.get(live_url).get_json()
    assert live["status"] == "SENDING" and live["live"] is True
    assert set(live["parts"]) == {"record", "summary", "outcomes"}
    stub(runtime).join()
    done = admin.get(live_url).get_json()
    assert done["status"] == "COMPLETE" and done["live"] is False
    assert 'id="bulk-status">COMPLETE<' in done["parts"]["summary"]
    assert done["parts"]["outcomes"].count('data-outcome="done"') == 2
    # A dry run is no bulk action to follow.
    dry = runtime.submit("jobs-manager", {**message, "dry_run": True}, role="admin")
    assert admin.get(f"/ui/bulk/{dry['id']}").status_code == 404
    assert states(runtime, jobs) == ["FAILED", "FAILED"]


@pytest.mark.parametrize("operation", ["retry", "retire"])
def test_an_operation_with_no_job_in_its_states_has_nothing_to_confirm(
    app: Flask, admin: FlaskClient, keys: Keys, runtime: Runtime, sync, operation: str
) -> None:
    run, _ = batch(app, runtime, keys.admin, 1)
    body = text_of(dry_run(admin, f"/ui/runs/{run}", operation=operation))
    assert 'id="bulk-count">0<' in body and 'id="nothing"' in body
    assert 'id="confirm"' not in body
