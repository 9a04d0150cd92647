"""Releasing jobs that wait for others (issue 16): the messages and their handling.

Two halves, both at least once and idempotent:

* :func:`follow` — called by every actor right after it applies an event to a job
  (the jobs-manager, the indexer's ``indexed``, the launcher-proxy's failed launch and
  its dependency failures). If the event moved the job into a state a dependent's
  condition tests (:data:`pipelinejobs.domain.dependencies.RELEASING`), it sends the
  launcher-proxy a ``release`` message for each waiting dependent — found by one
  index lookup on ``depends_on`` — keyed on the event's history uuid and the
  dependent, so a redelivered event sends each release once.
* :func:`evaluate` — run by the launcher-proxy for a ``release`` (and for a launch
  or retry of a job with ``depends_on``): it re-reads every parent and launches the
  job, fails it naming the parent, or leaves it waiting
  (:func:`pipelinejobs.domain.dependencies.decide`).

Launching or failing a waiting job is decided by one event keyed on the job and its
attempt (``dependencies:<attempt>``): an ``update`` saying the dependencies are met,
or the ``fail``. The history holds one record per uuid, so of two releases arriving
together (B and C of a diamond indexed at once) exactly one records it, and only the
execution that recorded it launches; a redelivery of that execution finds its own
record and goes on (the launch itself is keyed on the execution). A retried
dependent is on its next attempt, so it can be released again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelinejobs.adapters.store.base import LAST_RECORD, Document
from pipelinejobs.domain import dependencies, lifecycle, retry
from pipelinejobs.domain.job_log import LOG
from pipelinejobs.domain.jobs import EventResult
from pipelinejobs.domain.lifecycle import Event, State
from pipelinejobs.errors import Conflict, TransitionRefused, ValidationError
from pipelinejobs.runtime.actor import Context

#: Waiting dependents read per page when a parent releases them.
PAGE = 200
#: The launcher-proxy, which launches what a release lets go.
LAUNCHER = "launcher-proxy"


def follow(ctx: Context, result: EventResult, event: str) -> list[str]:
    """Send a ``release`` for each waiting dependent of the job ``result`` is about, if
    ``event`` moved it somewhere its dependents care about; the executions sent.

    Also run on a duplicate (a redelivered event): its first delivery may have died
    before sending, and the keyed sends find what it did send. A duplicate is judged
    by the state its first delivery moved the job to, not the job's state now (it
    may have moved on since: a failed parent being retried)."""
    job = result.job
    moved_to = str(job["state"])
    if result.duplicate:
        try:
            moved_to = lifecycle.next_state(result.previous_state, event).value
        except TransitionRefused:
            pass  # a record older than the table's rules: judged by the state now
    if not dependencies.is_releasing(result.previous_state, event, moved_to):
        return []
    sent = []
    for child in waiting_dependents(ctx.runtime.store, str(job["uuid"])):
        token = ctx.runtime.tokens.update_token(child["uuid"], int(child.get("token_rotation", 0)))
        message = {
            "action": "release",
            "uuid": child["uuid"],
            "token": token,
            "parent": job["uuid"],
        }
        key = f"release:{result.entry['uuid']}:{child['uuid']}"
        # At the dependent's priority: its launch is what the release leads to.
        sent.append(ctx.send(LAUNCHER, message, key=key, priority=child.get("priority")))
    if sent:
        ctx.log.info(f"Job {job['uuid']} is {moved_to}: sent {len(sent)} release(s)")
    return sent


def waiting_dependents(store: Any, uuid: str) -> list[Document]:
    """The jobs in CREATED that name ``uuid`` in ``depends_on`` (one index lookup per
    page)."""
    out: list[Document] = []
    after: str | None = None
    while True:
        page = store.find(
            "jobs", {"depends_on": uuid, "state": State.CREATED.value}, limit=PAGE, after=after
        )
        out.extend(page.items)
        if page.next is None:
            return out
        after = page.next


def decision(store: Any, job: Document, entry: str) -> Document | None:
    """The record deciding this attempt of ``job`` (its ``dependencies:<attempt>``
    event), if one was applied: as the job's last entry (which on MongoDB may not have
    reached the log yet) or in the log."""
    last = job.get(LAST_RECORD)
    if isinstance(last, dict) and last.get("uuid") == entry:
        return last
    record = store.get(LOG, entry)
    return record if record is not None and record.get("job_uuid") == job["uuid"] else None


#: Launches a released job (the launcher-proxy's replay of its stored launch).
Launch = Callable[[Document], dict[str, Any]]


def release(ctx: Context, job: Document, launch: Launch) -> dict[str, Any]:
    """A ``release`` message's work: :func:`evaluate` for a job that waits for others;
    nothing for one that waits for nobody (a release never launches such a job: it
    would start a job created to be launched by someone else)."""
    if dependencies.of_job(job) is None:
        return {"uuid": job["uuid"], "released": False, "state": job["state"],
                "message": f"job {job['uuid']} does not depend on other jobs"}  # fmt: skip
    return evaluate(ctx, job, launch)


def evaluate(ctx: Context, job: Document, launch: Launch) -> dict[str, Any]:
    """Launch ``job``, fail it, or leave it waiting, as its parents now stand (see the
    module docstring); what happened, as the execution's result."""
    rt, uuid = ctx.runtime, str(job["uuid"])
    dependency = dependencies.of_job(job)
    if dependency is None:
        return launch(job)
    attempt = retry.attempt_of(job)
    key = f"dependencies:{attempt}"
    mine = decision(rt.store, job, rt.ids.event(uuid, key))
    if job["state"] != State.CREATED and mine is None:
        return {"uuid": uuid, "released": False, "state": job["state"],
                "message": f"job {uuid} is {job['state']}: it is not waiting"}  # fmt: skip
    parents = {p: rt.store.get("jobs", p) for p in dependency.parents}
    verdict = dependencies.decide(dependency, parents)
    if mine is None and verdict.action == "wait":
        ctx.log.info(f"Job {uuid} waits for {len(verdict.pending)} parent(s)")
        return {"uuid": uuid, "released": False, "state": job["state"],
                "waiting_for": verdict.pending}  # fmt: skip

    def waiting(current: Document) -> None:
        if current["state"] != State.CREATED:
            raise Conflict(
                f"job {uuid} is {current['state']}: it is no longer waiting for its parents",
                uuid=uuid,
                state=current["state"],
            )

    name: str = Event.FAIL if verdict.action == "fail" else Event.UPDATE
    data: dict[str, Any] = (
        {"reason": verdict.reason, "parent": verdict.parent}
        if verdict.action == "fail"
        else {
            "dependencies": "met",
            "condition": dependency.condition,
            "parents": list(dependency.parents),
        }  # fmt: skip
    )
    data["execution"] = ctx.execution_id
    if mine is not None:  # decided before (by this execution: go on), found as a duplicate
        name, data = str(mine["name"]), dict(mine.get("data") or {})
    try:
        result = rt.jobs.apply(uuid, name, data, delivery_id=key, sender=LAUNCHER, check=waiting)
    except Conflict as moved:
        if moved.detail.get("state") in (None, State.CREATED):
            raise
        # Moved on since it was read (cancelled, launched by hand): nothing to do.
        return {"uuid": uuid, "released": False, "state": moved.detail["state"],
                "message": moved.message}  # fmt: skip
    decided = result.entry
    if (decided.get("data") or {}).get("execution") != ctx.execution_id:
        ctx.log.info(f"Job {uuid}: attempt {attempt} was already decided by another execution")
        return {"uuid": uuid, "released": False, "state": result.job["state"],
                "message": f"attempt {attempt} of job {uuid} was already released"}  # fmt: skip
    if decided["name"] == Event.FAIL:
        ctx.log.info(f"Job {uuid} failed: {decided['data'].get('reason')}")
        follow(ctx, result, Event.FAIL)  # its own dependents fail in turn
        return {"uuid": uuid, "released": False, "state": result.job["state"],
                "failed": decided["data"].get("reason")}  # fmt: skip
    ctx.log.info(f"Job {uuid}: its {len(dependency.parents)} parent(s) met; launching")
    return {**launch(rt.jobs.get(uuid)), "released": True}


def declared(store: Any, body: dict[str, Any]) -> dependencies.Dependency | None:
    """The dependency a launch declares, each parent checked to exist: refused (400
    naming ``depends_on/<i>``) before anything is stored otherwise. Parents must exist
    when the launch is sent, so a job can only wait for older jobs: no cycle can be
    made."""
    dependency = dependencies.from_launch(body)
    if dependency is None:
        return None
    for i, given in enumerate(body["depends_on"]):
        parent = str(given).removeprefix("uri:urn:")
        if store.get("jobs", parent) is None:
            raise ValidationError(
                f"depends_on/{i}: no job {parent}: a job can wait only for jobs that exist",
                path=f"depends_on/{i}",
            )
    return dependency
