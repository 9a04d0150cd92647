"""Bulk actions from the console (issue 15): cancel, retry, retire or tag every job a
filter selects, by its dry run and its confirmed count.

The jobs list and a run's page carry a "Bulk action…" control holding their filters
(the API's names: :data:`pipelinejobs.domain.job_filter.FIELDS`). Its form sends the
jobs-manager's ``bulk`` message with ``dry_run`` — through
:meth:`~pipelinejobs.runtime.dispatch.Runtime.submit` as the signed-in key, as
:mod:`.actions` sends its actions — and waits for the answer: how many jobs it would
act on, how many the filter selects, a sample, and whether this key may go on. That
answer is the confirm page; its form carries the same request and the count as
``confirm`` (with the session's CSRF token and a one-time form id naming the
execution, so a double submit starts one bulk action). The jobs-manager refuses a
count that is no longer the filter's (409): the page says so in its words and offers
the dry run again. What may be done to whose jobs is the jobs-manager's to decide
(:mod:`pipelinejobs.runtime.bulk`): an admin key acts on any job, a user key only on
its own and on at most ``bulk.user_limit`` — the pages say "your jobs" then.

A started bulk action is followed at ``/ui/bulk/<id>`` (:mod:`.bulk_progress`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import redirect, request, url_for
from werkzeug.datastructures import MultiDict

from pipelinejobs.access.keys import Principal
from pipelinejobs.console import actions, job_list, tag_editor
from pipelinejobs.console.web import bp, console, principal, render, safe_next
from pipelinejobs.domain import bulk as domain_bulk
from pipelinejobs.domain import job_filter
from pipelinejobs.errors import (
    PermissionDenied,
    PipelineJobsError,
    ValidationError,
    http_status,
    http_status_named,
)
from pipelinejobs.runtime.executions import FINISHED_STATUSES

ACTOR = "jobs-manager"
#: Most characters of a reason (the schema's).
MAX_REASON = 1024
#: What each operation does, said on the confirm page.
EXPLAINS = {
    domain_bulk.CANCEL: (
        "Each job gets the event 'fail' with your reason (a compute PipelineJobs runs is "
        "stopped; a retry policy does not retry it)."
    ),
    domain_bulk.RETRY: (
        "Each FAILED job is reset, made ready and its stored launch run again as its next attempt."
    ),
    domain_bulk.RETIRE: "Each job gets the event 'retire' with your reason.",
    domain_bulk.TAG: "Each job's tags are set and removed as you asked.",
}


@dataclass(frozen=True)
class Request:
    """What a bulk form asks for: an operation over the jobs a filter selects."""

    operation: str
    filter: dict[str, Any]
    reason: str = ""
    set: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)

    @classmethod
    def from_form(cls, form: MultiDict[str, str]) -> Request:
        """From a bulk form's fields; ValidationError (400) naming a bad one."""
        operation = form.get("operation", "")
        if operation not in domain_bulk.OPERATIONS:
            raise ValidationError(
                f"choose an operation: {', '.join(domain_bulk.OPERATIONS)}", path="operation"
            )
        reason = form.get("reason", "").strip()
        if len(reason) > MAX_REASON:
            raise ValidationError(f"the reason is over {MAX_REASON} characters", path="reason")
        if operation == domain_bulk.CANCEL and not reason:
            raise ValidationError(
                "say why the jobs are cancelled (the reason is kept)", path="reason"
            )
        typed = "\n".join(form.getlist("set"))
        gone = " ".join(form.getlist("remove"))
        if len(typed) > tag_editor.MAX_FIELD or len(gone) > tag_editor.MAX_FIELD:
            raise ValidationError(f"the tag fields take at most {tag_editor.MAX_FIELD} characters")
        wanted, remove = tag_editor.wanted_tags(typed), tag_editor.removed_keys(gone)
        if operation == domain_bulk.TAG and not wanted and not remove:
            raise ValidationError(
                "say which tags to set (key=value, one a line) or which keys to remove",
                path="set",
            )
        if operation != domain_bulk.TAG and (wanted or remove):
            raise ValidationError("tags are set and removed only by the tag operation", path="set")
        return cls(operation, filter_of(form), reason, wanted, remove)

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Request:
        """The request a bulk message made (to run its dry run again)."""
        return cls(
            str(message.get("operation")),
            dict(message.get("filter") or {}),
            str(message.get("reason") or ""),
            dict(message.get("set") or {}),
            list(message.get("remove") or []),
        )

    def message(self, **extra: Any) -> dict[str, Any]:
        """The jobs-manager's ``bulk`` message (``extra``: ``dry_run`` or ``confirm``)."""
        message: dict[str, Any] = {
            "action": "bulk",
            "operation": self.operation,
            "filter": self.filter,
            **extra,
        }
        if self.reason:
            message["reason"] = self.reason
        if self.set:
            message["set"] = self.set
        if self.remove:
            message["remove"] = self.remove
        return message

    def fields(self) -> list[tuple[str, str]]:
        """The hidden fields a form carries this request in."""
        carried = [("operation", self.operation), *filter_fields(self.filter)]
        if self.reason:
            carried.append(("reason", self.reason))
        carried += [("set", f"{k}={v}") for k, v in self.set.items()]
        carried += [("remove", k) for k in self.remove]
        return carried


def filter_of(form: MultiDict[str, str]) -> dict[str, Any]:
    """The API filter a form's fields name (``state`` and ``linkage`` repeatable); 400
    without any: a bulk action needs at least one filter."""
    chosen: dict[str, Any] = {}
    for name in job_filter.FIELDS:
        values = [v.strip() for v in form.getlist(name) if v.strip()]
        if not values:
            continue
        if name == "state":
            chosen[name] = values[0] if len(values) == 1 else list(dict.fromkeys(values))
        elif name == "linkage":
            chosen[name] = values
        else:
            chosen[name] = values[0]
    if not chosen:
        raise ValidationError(
            "a bulk action needs at least one filter: a state, pipeline, linkage, tag, "
            "owner or run",
            path="filter",
        )
    return chosen


def filter_fields(chosen: dict[str, Any]) -> list[tuple[str, str]]:
    """A filter as (name, value) form fields, a repeated field once per value."""
    return [(name, str(v)) for name, value in chosen.items() for v in job_filter.as_list(value)]


def describe_filter(chosen: dict[str, Any]) -> str:
    """A filter in a line of text (shown escaped)."""
    return ", ".join(
        f"{name}={'|'.join(job_filter.as_list(value))}" for name, value in chosen.items()
    )


# -- the control on the jobs list and a run's page --------------------------------------


def control(who: Principal, chosen: dict[str, Any], note: str = "") -> dict[str, Any] | None:
    """What the "Bulk action…" control needs (None: this key may not post to the
    jobs-manager). ``note``: why it cannot be used on this page as it is."""
    if not who.may_post(ACTOR):
        return None
    if not chosen and not note:
        note = (
            "Choose a filter first (a state, pipeline, tag, owner or run): a bulk action "
            "needs at least one."
        )
    return {
        "fields": filter_fields(chosen),
        "describe": describe_filter(chosen),
        "operations": domain_bulk.OPERATIONS,
        "yours": not who.is_admin,
        "note": note,
        "back": request.full_path.rstrip("?"),
    }


def jobs_control(who: Principal, f: job_list.JobFilter) -> dict[str, Any] | None:
    """The control of the jobs list, with its filters (not its text search, which
    the API does not take)."""
    chosen: dict[str, Any] = {}
    if f.states:
        chosen["state"] = f.states
    for name, value in (
        ("pipeline_uuid", f.pipeline),
        ("linkage", f.linkage),
        ("updated_since", f.since_stored()),
        ("tag", f.tag),
        ("owner", f.owner),
        ("run", f.run),
    ):
        if value:
            chosen[name] = value
    note = (
        "A bulk action takes the list's filters but not its text search: clear the text "
        "to act on the jobs the other filters select."
        if f.text
        else ""
    )
    return control(who, chosen, note)


def run_control(who: Principal, run: str, states: list[str]) -> dict[str, Any] | None:
    """The control of a run's page: its jobs (in the states chosen there)."""
    chosen: dict[str, Any] = {"run": run}
    if states:
        chosen["state"] = states
    return control(who, chosen)


# -- the dry run and the real one -------------------------------------------------------


def check_right(who: Principal) -> None:
    if not who.may_post(ACTOR):
        raise PermissionDenied(
            f"this key may not post to {ACTOR}; it may post to: {', '.join(who.actors)}"
        )


def back() -> str:
    return safe_next(request.form.get("back"))


def refused(req: Request, kind: str, message: str, code: int, title: str = "") -> Any:
    """A refusal in the API's words, with the dry run to run again."""
    return (
        render(
            "console/bulk_refused.html",
            title=title or f"Bulk {req.operation}: refused",
            req=req,
            kind=kind,
            message=message,
            back=back(),
        ),
        code,
    )


@bp.post("/bulk/dry-run")
def bulk_dry_run() -> Any:
    who = principal()
    check_right(who)
    req = Request.from_form(request.form)
    try:
        execution = actions.wait(actions.send(ACTOR, req.message(dry_run=True)))
    except PipelineJobsError as exc:
        return refused(req, type(exc).__name__, exc.message, http_status(exc))
    if execution["status"] == "ERROR":
        error = execution.get("error") or {}
        kind = str(error.get("error") or "Error")
        message = str(error.get("message") or "the dry run failed")
        return refused(req, kind, message, http_status_named(kind))
    if execution["status"] not in FINISHED_STATUSES:
        message = (
            f"the dry run (execution {execution['id']}) has not finished after "
            f"{actions.WAIT:g} s: the workers may be busy; run it again"
        )
        return refused(req, "Pending", message, 503, title=f"Bulk {req.operation}: pending")
    result = dict(execution.get("result") or {})
    return render(
        "console/bulk_confirm.html",
        title=f"Bulk {req.operation}: {result.get('count', 0)} jobs?",
        req=req,
        result=result,
        explains=EXPLAINS[req.operation],
        describe=describe_filter(req.filter),
        yours=not who.is_admin,
        user_limit=console().runtime.config.bulk.user_limit,
        form_id=secrets.token_urlsafe(16),
        back=back(),
        execution=execution,
    )


@bp.post("/bulk")
def bulk_start() -> Any:
    who = principal()
    check_right(who)
    req = Request.from_form(request.form)
    try:
        confirm = int(request.form.get("confirm", ""))
    except ValueError:
        raise ValidationError("confirm must be the dry run's count", path="confirm") from None
    existing = actions.form_execution_id(ACTOR)
    if existing and console().store.get("executions", existing) is not None:
        return redirect(url_for("console.bulk_action", bulk_id=existing), code=303)
    try:
        execution = actions.send(ACTOR, req.message(confirm=confirm))
    except PipelineJobsError as exc:
        return refused(req, type(exc).__name__, exc.message, http_status(exc))
    return redirect(url_for("console.bulk_action", bulk_id=execution["id"]), code=303)
