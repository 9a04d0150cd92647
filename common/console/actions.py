"""Acting on a job from the console: cancel, retire, reset, ready — and retry.

Each action is one message sent the way any client sends it: a lifecycle event to the
jobs-manager, or (retry, issue 15) a ``{"action": "retry"}`` request to the
launcher-proxy, which resets the FAILED job, makes it ready and replays its stored
launch as its next attempt. The message goes through
:meth:`~pipelinejobs.runtime.dispatch.Runtime.submit` — the actor's own validation and
``admit`` check, the execution record, the queue — and the actor checks the job's
token and its rules when it runs. Nothing here changes a job.

* **Who may.** The key must be allowed to post to the action's actor. ``reset`` and
  ``ready`` are for admin keys only (they need an admin token; the console mints one,
  valid ``tokens.admin_token_ttl`` s, for that one message). An admin key acts on any
  job: the console supplies the job's update token itself. A user key acts on a job
  only with that job's update token, pasted into the action's form — the token model
  does not get weaker because a browser is in the way. No token is ever written
  into a page: the form's field is a password field, and answers are redacted.
  **Retry** follows the same rule rather than being an admin's only: the
  launcher-proxy lets an admin key retry any job and anyone else retry with the job's
  update token — the console does not have that token, but the person holding it
  does (it was returned when they launched the job), so a user key is asked for it
  as for cancel. Hiding the button from them would make the console weaker than the
  API they may already use; offering it without a way to succeed would show only a
  refusal.
* **Confirmation.** Each action is a page of its own that says what will happen; the
  form there is what sends it (with the session's CSRF token and a one-time form id,
  so a double submit sends one message: the id names the execution, as an
  ``Idempotency-Key`` does over HTTP).
* **Outcome.** The page waits a few seconds for the execution and says what it did:
  the state the job moved to, the compute asked to stop — or why it was refused,
  in the words of the error the actor raised.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from flask import request

from pipelinejobs.access.keys import Principal
from pipelinejobs.console import views
from pipelinejobs.console.web import bp, console, principal, render
from pipelinejobs.domain import lifecycle, retry
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.errors import (
    NotFound,
    PermissionDenied,
    PipelineJobsError,
    ValidationError,
    http_status,
    http_status_named,
)
from pipelinejobs.runtime import idempotency
from pipelinejobs.runtime.executions import FINISHED_STATUSES

ACTOR = "jobs-manager"
#: Where a retry is sent (pipelinejobs.domain.retry).
RETRY_ACTOR = "launcher-proxy"
#: Longest the outcome page waits for the action's execution (s).
WAIT = 10.0
MAX_REASON = 1000


@dataclass(frozen=True)
class Action:
    """One thing the console can do to a job."""

    name: str
    event: str
    title: str
    admin: bool
    #: What it does, said before it is done.
    explains: str
    reason: bool = False  #: asks for a reason (kept in the event's data)
    danger: bool = False
    actor: str = ACTOR  #: the actor the message goes to


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "cancel",
            "fail",
            "Cancel",
            admin=False,
            reason=True,
            danger=True,
            explains=(
                "sends the event 'fail' with your reason to the jobs-manager: the job becomes "
                "FAILED, and if PipelineJobs runs its compute (a local, docker or Slurm job) that "
                "compute is stopped within about a second. A job running elsewhere is only "
                "marked."
            ),
        ),
        Action(
            "retire",
            "retire",
            "Retire",
            admin=False,
            reason=True,
            explains=(
                "sends the event 'retire': the job becomes RETIRED — kept with its history "
                "and files, but accepting no further events but an admin's reset."
            ),
        ),
        Action(
            "reset",
            "reset",
            "Reset",
            admin=True,
            reason=True,
            danger=True,
            explains=(
                "sends the event 'reset' with an admin token: the job becomes RESET from "
                "whatever state it is in, and a local, docker or Slurm compute still running is "
                "stopped. Send 'ready' afterwards to make it CREATED again."
            ),
        ),
        Action(
            "ready",
            "ready",
            "Ready",
            admin=True,
            explains="sends the event 'ready' with an admin token: the RESET job becomes CREATED.",
        ),
        Action(
            "retry",
            "retry",
            "Retry",
            admin=False,
            reason=True,
            actor=RETRY_ACTOR,
            explains=(
                "asks the launcher-proxy to retry the FAILED job: it is reset, made ready "
                "and its stored launch is run again as its next attempt (in a new "
                "instancing directory when its archive path has one). The attempt that "
                "failed stays listed on the job with its archive path and your reason."
            ),
        ),
    )
}


def refusal(action: Action, job: dict[str, Any]) -> str | None:
    """Why ``job`` as it is now would refuse ``action`` (None: it would not)."""
    state = str(job.get("state"))
    if action.name == "retry":
        return retry.refusal(job)
    if not lifecycle.is_allowed(state, action.event):
        sources = ", ".join(s.value for s in lifecycle.allowed_sources(action.event))
        return f"A job in {state} does not accept '{action.event}' (it is accepted from {sources})"
    return None


def available(who: Principal, job: dict[str, Any]) -> list[Action]:
    """The actions ``who`` may take on ``job`` as it is now: its state accepts the
    event, and the key has the role (admin actions are not even shown to others)."""
    return [
        a
        for a in ACTIONS.values()
        if who.may_post(a.actor) and (who.is_admin or not a.admin) and refusal(a, job) is None
    ]


def _action(name: str) -> Action:
    try:
        return ACTIONS[name]
    except KeyError:
        raise NotFound(f"no action {name!r}; actions: {', '.join(ACTIONS)}") from None


def check_right(who: Principal, action: Action) -> None:
    if not who.may_post(action.actor):
        raise PermissionDenied(
            f"this key may not post to {action.actor}; it may post to: {', '.join(who.actors)}"
        )
    if action.admin and not who.is_admin:
        raise PermissionDenied(f"'{action.event}' needs an admin key")


@bp.get("/jobs/<uuid>/actions/<name>")
def confirm(uuid: str, name: str) -> Any:
    require_type(uuid, "pipelinejob")
    action = _action(name)
    who = principal()
    check_right(who, action)
    job = console().runtime.jobs.get(uuid)
    return render(
        "console/action.html",
        title=f"{action.title} job {uuid}",
        action=action,
        job=job,
        name=views.job_name(job),
        refusal=refusal(action, job),
        sources=[s.value for s in lifecycle.allowed_sources(action.event)]
        if action.actor == ACTOR
        else [],
        form_id=secrets.token_urlsafe(16),
        needs_token=not who.is_admin,
    )


@bp.post("/jobs/<uuid>/actions/<name>")
def act(uuid: str, name: str) -> Any:
    require_type(uuid, "pipelinejob")
    action = _action(name)
    who = principal()
    check_right(who, action)
    c = console()
    runtime = c.runtime
    job = runtime.jobs.get(uuid)
    reason = request.form.get("reason", "").strip()
    if len(reason) > MAX_REASON:
        raise ValidationError(f"the reason is over {MAX_REASON} characters", path="reason")
    if action.name == "cancel" and not reason:
        raise ValidationError("say why the job is cancelled (the reason is kept)", path="reason")
    if action.actor == RETRY_ACTOR:
        # An admin key may retry any job (the launcher-proxy checks the role it is sent
        # with); anyone else sends the job's update token.
        message: dict[str, Any] = {"action": "retry", "uuid": uuid}
        if reason:
            message["reason"] = reason
        if not who.is_admin:
            message["token"] = pasted_token()
    else:
        if who.is_admin:
            # The key's right stands in for the token: the console supplies it, server-side.
            token = (
                runtime.tokens.mint_admin_token()
                if action.event in lifecycle.ADMIN_EVENTS
                else runtime.tokens.update_token(uuid, int(job.get("token_rotation", 0)))
            )
        else:
            token = pasted_token()
        message = {"uuid": uuid, "name": action.event, "token": token}
        data: dict[str, Any] = {"via": "console"}
        if reason:
            data["reason"] = reason
        if action.name == "cancel":
            data["cancelled"] = True  # a person's decision: no retry policy retries it
        message["data"] = data
    try:
        execution = send(action.actor, message)
    except PipelineJobsError as exc:
        return outcome(action, job, None, refused=exc)
    return outcome(action, job, wait(execution))


def pasted_token() -> str:
    """The job's update token a user key pasted into the form (400 without one)."""
    token = request.form.get("token", "").strip()
    if not token:
        raise ValidationError(
            "paste the job's update token (returned when the job was created) to act on "
            "it with a user key",
            path="token",
        )
    return token


def send(actor: str, message: dict[str, Any]) -> dict[str, Any]:
    """Submit ``message`` to ``actor`` as the signed-in key (its owner, its role); the
    execution. The form's one-time id names the execution, so a form sent twice
    sends one message. A refusal (the actor's validation or ``admit``) is raised."""
    c = console()
    runtime, who = c.runtime, principal()
    execution: dict[str, Any] = runtime.submit(
        actor,
        message,
        {},
        execution_id=form_execution_id(actor),
        sender=f"console:key:{who.owner[:12]}",
        owner=who.owner,
        role=who.sends_as,
    )
    return execution


def form_execution_id(actor: str) -> str | None:
    """The id of the execution the form's one-time id names (None: the form has none)."""
    form_id = request.form.get("form_id", "")
    if not form_id:
        return None
    c = console()
    return idempotency.execution_id(
        c.store,
        caller=f"console:{principal().id}",
        actor=actor,
        key=idempotency.parse_key(form_id) or form_id,
        ttl=c.runtime.config.gateway.idempotency_ttl,
        now=c.runtime.clock(),
    )


def wait(execution: dict[str, Any]) -> dict[str, Any]:
    """``execution`` once it has finished, or as it is after :data:`WAIT` seconds."""
    runtime = console().runtime
    deadline = time.monotonic() + WAIT
    while execution["status"] not in FINISHED_STATUSES and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            execution = runtime.executions.get(execution["id"])
        except PipelineJobsError:
            break
    return execution


def outcome(
    action: Action,
    job: dict[str, Any],
    execution: dict[str, Any] | None,
    refused: PipelineJobsError | None = None,
) -> Any:
    """The outcome page: what the action did, or why not (with the HTTP status the
    API would have answered)."""
    status, code, kind, message = "refused", 200, "", ""
    result: dict[str, Any] = {}
    if refused is not None:
        code, kind, message = http_status(refused), type(refused).__name__, refused.message
    elif execution is not None and execution["status"] == "COMPLETE":
        status = "done"
        result = views.redact(execution.get("result") or {})
    elif execution is not None and execution["status"] == "ERROR":
        error = execution.get("error") or {}
        kind = str(error.get("error") or "Error")
        code = http_status_named(kind)
        message = str(error.get("message") or "the execution failed")
    else:
        status = "pending"
    return (
        render(
            "console/outcome.html",
            title=f"{action.title}: {status}",
            action=action,
            job=job,
            execution=execution,
            status=status,
            kind=kind,
            message=message,
            result=result,
        ),
        code if status == "refused" else 200,
    )
