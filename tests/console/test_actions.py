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
    assert record["data"] == {"reason": "not needed <any more>", "via": "console"}
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
