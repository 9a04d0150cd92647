"""Acting on a job from the console: confirmed, sent through Runtime.submit, answered.

Executions are delivered as they are published (``sync``), as a worker would run
them, so the outcome page sees what the jobs-manager did.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime
from tests.console.conftest import SAME_ORIGIN, Keys, a_job, csrf_of, form_token, signed_in, text_of


def actions_on(page: str) -> list[str]:
    return re.findall(r'data-action="([a-z]+)"', page)


def confirm_and_send(client: FlaskClient, uuid: str, action: str, **fields: str):
    """Open the action's confirmation page, then send its form (as a person would)."""
    page = client.get(f"/ui/jobs/{uuid}/actions/{action}")
    assert page.status_code == 200, text_of(page)
    html = text_of(page)
    data = {"csrf": form_token(html), "form_id": form_token(html, "form_id"), **fields}
    return client.post(f"/ui/jobs/{uuid}/actions/{action}", data=data, headers=SAME_ORIGIN)


def test_an_admin_cancels_a_running_job_after_confirming(
    admin: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime)
    runtime.jobs.apply(job["uuid"], "run")
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert actions_on(page) == ["cancel", "reset"]  # retire is not open from RUNNING
    confirm = text_of(admin.get(f"/ui/jobs/{job['uuid']}/actions/cancel"))
    assert "sends the event &#39;fail&#39; with your reason" in confirm
    assert 'name="token"' not in confirm  # the admin key stands in for the token
    done = confirm_and_send(admin, job["uuid"], "cancel", reason="not needed <any more>")
    body = text_of(done)
    assert done.status_code == 200 and "Done: 'fail' was applied" in body
    assert "state-FAILED" in body
    stored = runtime.jobs.get(job["uuid"])
    assert stored["state"] == "FAILED"
    record = stored["last_entry"]
    assert record["data"] == {"reason": "not needed <any more>", "via": "console",
                              "cancelled": True}  # fmt: skip
    assert record["sender"].startswith("console:key:")
    # It went through the jobs-manager like any message: an execution, its owner the key.
    execution = runtime.store.find("executions", {"job": job["uuid"]}, limit=5).items[0]
    assert execution["actor"] == "jobs-manager" and execution["status"] == "COMPLETE"
    token = runtime.tokens.update_token(job["uuid"])
    assert token not in body and token not in text_of(admin.get(f"/ui/jobs/{job['uuid']}"))


def test_a_double_submitted_form_sends_one_message(
    admin: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime)
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}/actions/cancel"))
    data = {"csrf": form_token(page), "form_id": form_token(page, "form_id"), "reason": "twice"}
    url = f"/ui/jobs/{job['uuid']}/actions/cancel"
    first = admin.post(url, data=data, headers=SAME_ORIGIN)
    second = admin.post(url, data=data, headers=SAME_ORIGIN)
    assert first.status_code == second.status_code == 200
    assert runtime.jobs.get(job["uuid"])["event_count"] == 2  # create, one fail
    assert runtime.store.count("executions", {"job": job["uuid"]}) == 1


def test_reset_and_ready_are_an_admins_with_an_admin_token(
    admin: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime)
    runtime.jobs.apply(job["uuid"], "run")
    assert "Done" in text_of(confirm_and_send(admin, job["uuid"], "reset", reason="redo"))
    assert runtime.jobs.get(job["uuid"])["state"] == "RESET"
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert actions_on(page) == ["reset", "ready"]
    assert "Done" in text_of(confirm_and_send(admin, job["uuid"], "ready"))
    assert runtime.jobs.get(job["uuid"])["state"] == "CREATED"


def test_a_user_key_does_not_see_admin_actions_and_is_refused_them(
    user: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime)
    runtime.jobs.apply(job["uuid"], "run")
    page = text_of(user.get(f"/ui/jobs/{job['uuid']}"))
    assert actions_on(page) == ["cancel"]
    assert user.get(f"/ui/jobs/{job['uuid']}/actions/reset").status_code == 403
    refused = user.post(
        f"/ui/jobs/{job['uuid']}/actions/reset",
        data={"csrf": csrf_of(user), "token": runtime.tokens.mint_admin_token()},
        headers=SAME_ORIGIN,
    )
    assert refused.status_code == 403
    assert "needs an admin key" in text_of(refused)
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"
    assert runtime.store.count("executions") == 0


def test_a_user_key_acts_only_with_the_jobs_update_token(
    user: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime)
    runtime.jobs.apply(job["uuid"], "run")
    form = text_of(user.get(f"/ui/jobs/{job['uuid']}/actions/cancel"))
    assert 'type="password" id="token" name="token"' in form
    missing = confirm_and_send(user, job["uuid"], "cancel", reason="stop")
    assert missing.status_code == 400 and "paste the job&#39;s update token" in text_of(missing)
    other = a_job(runtime, linkage="sample.tacc.other", data={"other": True})
    wrong = confirm_and_send(
        user, job["uuid"], "cancel", reason="stop", token=runtime.tokens.update_token(other["uuid"])
    )
    assert wrong.status_code == 403
    assert "Refused (PermissionDenied)" in text_of(wrong)
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"
    token = runtime.tokens.update_token(job["uuid"])
    done = confirm_and_send(user, job["uuid"], "cancel", reason="stop", token=token)
    assert done.status_code == 200 and token not in text_of(done)
    assert runtime.jobs.get(job["uuid"])["state"] == "FAILED"


def test_a_refused_transition_says_why(admin: FlaskClient, runtime: Runtime, sync) -> None:
    job = a_job(runtime)
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}/actions/retire"))
    assert "does not accept 'retire'" in page  # said before it is sent
    refused = confirm_and_send(admin, job["uuid"], "retire")
    assert refused.status_code == 409
    assert "TransitionRefused" in text_of(refused) and "CREATED" in text_of(refused)


def test_cancel_needs_a_reason(admin: FlaskClient, runtime: Runtime, sync) -> None:
    job = a_job(runtime)
    answer = confirm_and_send(admin, job["uuid"], "cancel", reason="  ")
    assert answer.status_code == 400 and "say why" in text_of(answer)


def test_a_key_that_may_not_post_to_the_jobs_manager_gets_no_actions(
    app: Flask, keys: Keys, runtime: Runtime
) -> None:
    client = signed_in(app, keys.limited)
    job = a_job(runtime)
    assert actions_on(text_of(client.get(f"/ui/jobs/{job['uuid']}"))) == []
    assert client.get(f"/ui/jobs/{job['uuid']}/actions/cancel").status_code == 403


@pytest.mark.parametrize("action", ["cancel", "retire", "reset", "ready"])
def test_every_action_is_a_lifecycle_event(action: str) -> None:
    from pipelinejobs.console.actions import ACTIONS
    from pipelinejobs.domain.lifecycle import ADMIN_EVENTS, Event

    assert Event(ACTIONS[action].event)
    assert ACTIONS[action].admin == (ACTIONS[action].event in ADMIN_EVENTS)


# -- retry and tags (issue 15) -----------------------------------------------------------


def a_failed_job(runtime: Runtime, **fields):
    """A launched job (its launch stored, to replay) that FAILED."""
    job = a_job(runtime, **fields)
    runtime.jobs.apply(job["uuid"], "run")
    runtime.jobs.apply(job["uuid"], "fail", {"reason": "out of salsa"})
    return job


def test_an_admin_retries_a_failed_job_from_its_page(
    admin: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_failed_job(runtime, name="salsa")
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert "retry" in actions_on(page)
    confirm = text_of(admin.get(f"/ui/jobs/{job['uuid']}/actions/retry"))
    assert "asks the launcher-proxy to retry the FAILED job" in confirm
    assert 'name="token"' not in confirm and 'id="refusal"' not in confirm
    done = confirm_and_send(admin, job["uuid"], "retry", reason="salsa restocked")
    body = text_of(done)
    assert done.status_code == 200, body
    assert "Done: the job was retried as attempt 2" in body
    assert "/ui/executions/launcher-proxy/" in body
    stored = runtime.jobs.get(job["uuid"])
    assert stored["attempt"] == 2 and stored["state"] == "FINISHED"  # the inline launch
    assert stored["attempts"][0]["reason"] == "salsa restocked"
    execution = runtime.store.find("executions", {"actor": "launcher-proxy"}, limit=5).items[0]
    assert execution["message"] == {
        "action": "retry",
        "uuid": job["uuid"],
        "reason": "salsa restocked",
    }
    assert execution["owner"] and execution["status"] == "COMPLETE"
    # The job's page now shows the attempt and the one before it; retry is not offered.
    page = text_of(admin.get(f"/ui/jobs/{job['uuid']}"))
    assert 'id="job-attempt">2<' in page and 'data-attempt="1"' in page
    assert "retry" not in actions_on(page)
    token = runtime.tokens.update_token(job["uuid"])
    assert token not in body and token not in page


def test_retrying_a_job_that_is_not_failed_shows_the_apis_refusal(
    admin: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime)
    runtime.jobs.apply(job["uuid"], "run")
    assert "retry" not in actions_on(text_of(admin.get(f"/ui/jobs/{job['uuid']}")))
    confirm = text_of(admin.get(f"/ui/jobs/{job['uuid']}/actions/retry"))
    assert "only a FAILED job can be retried; sending it will be refused" in confirm
    refused = confirm_and_send(admin, job["uuid"], "retry")
    body = text_of(refused)
    assert refused.status_code == 409
    assert (
        f"Refused (Conflict): job {job['uuid']} is RUNNING: only a FAILED job can be retried"
        in body
    )
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"
    assert runtime.store.count("executions", {"actor": "launcher-proxy"}) == 0


def test_a_user_key_retries_only_with_the_jobs_update_token(
    user: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_failed_job(runtime)
    assert "retry" in actions_on(text_of(user.get(f"/ui/jobs/{job['uuid']}")))
    form = text_of(user.get(f"/ui/jobs/{job['uuid']}/actions/retry"))
    assert 'type="password" id="token" name="token"' in form
    missing = confirm_and_send(user, job["uuid"], "retry")
    assert missing.status_code == 400 and "paste the job&#39;s update token" in text_of(missing)
    other = a_job(runtime, linkage="sample.tacc.other", data={"other": True})
    wrong = confirm_and_send(
        user, job["uuid"], "retry", token=runtime.tokens.update_token(other["uuid"])
    )
    assert wrong.status_code == 403 and "Refused (PermissionDenied)" in text_of(wrong)
    assert runtime.jobs.get(job["uuid"])["state"] == "FAILED"
    token = runtime.tokens.update_token(job["uuid"])
    done = confirm_and_send(user, job["uuid"], "retry", token=token)
    assert done.status_code == 200 and "retried as attempt 2" in text_of(done)
    assert token not in text_of(done)


def tag_form(client: FlaskClient, uuid: str, **fields: str):
    """Send the job page's tag editor (as a person would)."""
    page = text_of(client.get(f"/ui/jobs/{uuid}"))
    assert 'id="tag-form"' in page
    data = {"csrf": form_token(page), "form_id": form_token(page, "form_id"), **fields}
    return client.post(f"/ui/jobs/{uuid}/tags", data=data, headers=SAME_ORIGIN)


def test_an_admin_sets_and_removes_tags_from_the_jobs_page(
    admin: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime)
    done = tag_form(admin, job["uuid"], set="experiment = e1\n\nlab=uw\nnote=<b>x</b>")
    body = text_of(done)
    assert done.status_code == 200, body
    assert "Done: the job's tags are now" in body
    assert "note=&lt;b&gt;x&lt;/b&gt;" in body and "<b>x</b>" not in body
    stored = runtime.jobs.get(job["uuid"])
    assert stored["tags"] == {"experiment": "e1", "lab": "uw", "note": "<b>x</b>"}
    assert stored["tag_pairs"] == ["experiment:e1", "lab:uw", "note:<b>x</b>"]
    assert text_of(tag_form(admin, job["uuid"], remove="lab, note")).count("Done") == 1
    assert runtime.jobs.get(job["uuid"])["tags"] == {"experiment": "e1"}
    last = runtime.jobs.get(job["uuid"])["last_entry"]
    assert last["name"] == "update" and last["sender"].startswith("console:key:")
    # Refusals in the actor's words: a key that is not a tag key, a line without '='.
    bad = tag_form(admin, job["uuid"], set="not a key=1")
    assert bad.status_code == 400 and "Refused (" in text_of(bad)
    assert tag_form(admin, job["uuid"], set="novalue").status_code == 400
    assert tag_form(admin, job["uuid"]).status_code == 400
    # A RETIRED job's tags cannot change: no editor.
    for event in ("finish", "retire"):
        runtime.jobs.apply(job["uuid"], event)
    assert 'id="tag-form"' not in text_of(admin.get(f"/ui/jobs/{job['uuid']}"))


def test_a_user_key_changes_tags_only_with_the_jobs_update_token(
    user: FlaskClient, runtime: Runtime, sync
) -> None:
    job = a_job(runtime)
    page = text_of(user.get(f"/ui/jobs/{job['uuid']}"))
    assert 'type="password" id="tag-token" name="token"' in page
    missing = tag_form(user, job["uuid"], set="a=1")
    assert missing.status_code == 400 and "paste the job&#39;s update token" in text_of(missing)
    wrong = tag_form(user, job["uuid"], set="a=1", token="0" * 16)
    assert wrong.status_code in (400, 403) and "Refused (" in text_of(wrong)
    assert not runtime.jobs.get(job["uuid"]).get("tags")
    token = runtime.tokens.update_token(job["uuid"])
    done = tag_form(user, job["uuid"], set="a=1", token=token)
    assert done.status_code == 200 and token not in text_of(done)
    assert runtime.jobs.get(job["uuid"])["tags"] == {"a": "1"}


def test_a_key_that_may_not_post_to_the_jobs_manager_gets_no_tag_editor(
    app: Flask, keys: Keys, runtime: Runtime
) -> None:
    client = signed_in(app, keys.limited)
    job = a_job(runtime)
    assert 'id="tag-form"' not in text_of(client.get(f"/ui/jobs/{job['uuid']}"))
    refused = client.post(
        f"/ui/jobs/{job['uuid']}/tags",
        data={"csrf": csrf_of(client), "set": "a=1"},
        headers=SAME_ORIGIN,
    )
    assert refused.status_code == 403 and "may not post to jobs-manager" in text_of(refused)
