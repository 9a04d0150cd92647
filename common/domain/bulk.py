"""Bulk actions: cancel, retry, retire or tag every job a filter selects (issue 15).

A bulk action is two requests. The **dry run** answers how many jobs it would act on
and shows a sample; the **real one** repeats that number as ``confirm``, and is
refused (409) when the filter now selects a different number — the jobs changed
meanwhile, and what the person agreed to is not what would happen. Each operation
acts only on the jobs in a state it applies to (:data:`STATES`): "cancel the run"
cancels its unfinished jobs and leaves the finished ones alone, without the person
having to spell the states out. The filter may narrow the states further.

The real one snapshots the selected jobs' uuids, then sends one message per job to
the actor that does it (the jobs-manager, or the launcher-proxy for a retry), each an
execution of its own: the same event, authorization and history as a request for that
one job. A person's key cannot hold every job's token, so the coordinator sends each
message with the job's token under the system's authority; who may do that is
decided up front (:func:`limit_refusal` and the owner rule in
:mod:`pipelinejobs.runtime.bulk`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelinejobs.adapters.store.base import Document, In
from pipelinejobs.domain.lifecycle import TABLE, Event, State

CANCEL, RETRY, RETIRE, TAG = "cancel", "retry", "retire", "tag"
OPERATIONS = (CANCEL, RETRY, RETIRE, TAG)


def _sources(event: Event) -> frozenset[str]:
    return frozenset(s.value for e, sources, _ in TABLE if e == event for s in sources)


#: The states each operation applies to: those its event may be applied in (a retry:
#: FAILED, what :func:`pipelinejobs.domain.retry.refusal` allows).
STATES: dict[str, frozenset[str]] = {
    CANCEL: _sources(Event.FAIL),
    RETRY: frozenset({State.FAILED.value}),
    RETIRE: _sources(Event.RETIRE),
    TAG: _sources(Event.UPDATE),
}

#: Jobs a dry run shows.
SAMPLE = 10


def selection(operation: str, where: Mapping[str, Any]) -> dict[str, Any] | None:
    """The store filter of the jobs ``operation`` acts on among those ``where``
    selects; None when no state both is asked for and is one it applies to."""
    allowed = STATES[operation]
    asked = where.get("state")
    if isinstance(asked, In):
        states = sorted(s for s in asked.values if s in allowed)
    elif isinstance(asked, str):
        states = [asked] if asked in allowed else []
    else:
        states = sorted(allowed)
    if not states:
        return None
    return {**where, "state": In(states)}


def sample_item(job: Mapping[str, Any]) -> dict[str, Any]:
    """What a dry run shows of one job."""
    return {
        "uuid": job["uuid"],
        "state": job.get("state"),
        "pipeline_uuid": job.get("pipeline_uuid"),
        "run": job.get("run"),
        "owner": job.get("owner"),
        "tags": job.get("tags") or {},
        "attempt": int(job.get("attempt") or 1),
        "updated": job.get("updated"),
    }


def limit_refusal(count: int, *, admin: bool, user_limit: int, max_jobs: int) -> str | None:
    """Why a bulk action over ``count`` jobs is refused for this caller (None: it is
    not): anyone beyond ``max_jobs``, a non-admin beyond ``user_limit``."""
    if count > max_jobs:
        return (
            f"the filter selects {count} jobs; one bulk action acts on at most {max_jobs} "
            f"(bulk.max_jobs): narrow the filter"
        )
    if not admin and count > user_limit:
        return (
            f"the filter selects {count} jobs; a user key acts on at most {user_limit} "
            f"in one bulk action (bulk.user_limit): narrow the filter or ask an admin"
        )
    return None


def request(
    operation: str, job: Document, token: str, body: Mapping[str, Any], bulk_id: str
) -> tuple[str, dict[str, Any]]:
    """(actor, message) acting on one job: what a person would send for it alone,
    with the job's token, its reason saying which bulk action it came from."""
    uuid = job["uuid"]
    why = str(body.get("reason") or f"bulk {operation}")
    if operation == CANCEL:
        # ``cancelled`` tells the retry policy this failure is a person's decision.
        data = {"reason": f"cancelled: {why}", "cancelled": True, "bulk": bulk_id}
        return "jobs-manager", {"uuid": uuid, "name": "fail", "token": token, "data": data}
    if operation == RETIRE:
        data = {"reason": why, "bulk": bulk_id}
        return "jobs-manager", {"uuid": uuid, "name": "retire", "token": token, "data": data}
    if operation == RETRY:
        message = {"action": "retry", "uuid": uuid, "token": token, "reason": why[:1024]}
        return "launcher-proxy", message
    message = {"action": "tag", "uuid": uuid, "token": token}
    for key in ("set", "remove"):
        if key in body:
            message[key] = body[key]
    return "jobs-manager", message


#: How a per-job execution's status reads as an outcome.
PENDING, RUNNING, DONE, REFUSED, FAILED = "pending", "running", "done", "refused", "failed"
#: Errors that say the request for that job was not allowed now (its state moved on,
#: its token changed): a 4xx had it been sent alone.
REFUSALS = frozenset({
    "TransitionRefused", "Conflict", "PermissionDenied", "InvalidCredential", "NotFound",
    "ValidationError", "SchemaValidationError", "Quarantined",
})  # fmt: skip


def outcome(execution: Mapping[str, Any]) -> dict[str, Any]:
    """One job's outcome, from the execution that acted on it."""
    status = execution.get("status")
    out: dict[str, Any] = {"uuid": execution.get("job"), "execution": execution.get("id")}
    if status == "COMPLETE":
        result = execution.get("result") or {}
        out["outcome"] = DONE
        out["message"] = describe(result)
        for key in ("state", "attempt", "tags"):
            if key in result:
                out[key] = result[key]
    elif status == "ERROR":
        error = execution.get("error") or {}
        out["outcome"] = REFUSED if error.get("error") in REFUSALS else FAILED
        out["message"] = str(error.get("message") or "the execution failed")
    else:
        out["outcome"] = RUNNING if status == "RUNNING" else PENDING
    return out


def describe(result: Mapping[str, Any]) -> str:
    """A done per-job execution's result in a few words."""
    if "retried" in result:
        if result["retried"]:
            return f"retried as attempt {result.get('attempt')}"
        return str(result.get("message") or "not retried")
    if "tags" in result:
        return "tags now " + ", ".join(f"{k}={v}" for k, v in sorted(result["tags"].items()))
    if result.get("applied") is False:
        return f"already {result.get('state')}"
    return f"now {result.get('state')}"


def status(coordinator: str, total: int, finished: int) -> str:
    """The bulk action's status from its coordinator execution's and how many of its
    ``total`` jobs are finished: ``SENDING`` while its messages are being sent,
    ``RUNNING`` until every one has finished, then ``COMPLETE``; ``FAILED`` when the
    coordinator ended in error (the view says ``REFUSED`` when that error was a
    refusal: a stale count, a limit)."""
    if coordinator == "ERROR":
        return FAILED.upper()
    if coordinator != "COMPLETE":
        return "SENDING"
    return "COMPLETE" if finished >= total else "RUNNING"
