"""Running a bulk action (the jobs-manager's ``bulk`` message) and reading its progress.

What a bulk action is, and why it is confirmed by its count, is
:mod:`pipelinejobs.domain.bulk`'s. Here: who may run one over which jobs, the
snapshot of the jobs it acts on, the one message per job, and its view.

* **Who**: an admin key acts on any job; any other caller only on its own (the jobs
  whose ``owner`` it is: a filter naming another owner is refused, 403), and on at
  most ``bulk.user_limit`` of them. Nobody acts on more than ``bulk.max_jobs`` at once.
* **Once**: the first delivery stores the uuids it selected in a ``bulk`` record keyed
  by the execution's id; a redelivery (after a crash) acts on that very list, and each
  job's message is keyed on (bulk action, job), so a job is never acted on twice.
* **Followed**: ``GET /bulk/<id>`` (:func:`view`) counts the per-job executions by
  status — they name the bulk action as their ``parent``, an indexed field — and pages
  their outcomes; the coordinator's own execution shows how many it has sent.
"""

from __future__ import annotations

import time
from typing import Any

from pipelinejobs.access.keys import owner_label
from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.adapters.store.cas import Change, compare_and_set
from pipelinejobs.domain import bulk, job_filter
from pipelinejobs.domain.clock import now
from pipelinejobs.errors import (
    AuthError,
    Conflict,
    DuplicateDocument,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pipelinejobs.runtime.actor import Context

COLLECTION = "bulk"
#: Jobs read per store page while selecting.
PAGE = 1000
#: At most one progress write per this many seconds while sending.
PROGRESS_EVERY = 1.0


def scope(
    runtime: Any, body: dict[str, Any], role: str, owner: str | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the jobs the filter selects in any state, those the operation acts on — None
    when none can be), both as store filters, restricted to the caller's own jobs
    unless it is an admin."""
    me = owner_label(owner) if owner else None
    where = job_filter.where(body["filter"], me=me, prefix="filter/")
    if role != "admin":
        if me is None:
            raise PermissionDenied("a bulk action without a credential must be sent as admin")
        if where.get("owner", me) != me:
            raise PermissionDenied(
                f"a user key acts in bulk only on its own jobs (owner {me}), not on "
                f"{where['owner']}'s: leave owner out or ask an admin"
            )
        where["owner"] = me
    return where, bulk.selection(body["operation"], where)


def _count(runtime: Any, where: dict[str, Any] | None) -> int:
    return int(runtime.store.count("jobs", where)) if where is not None else 0


def _refuse_limit(runtime: Any, count: int, role: str) -> None:
    settings = runtime.config.bulk
    refused = bulk.limit_refusal(
        count, admin=role == "admin", user_limit=settings.user_limit, max_jobs=settings.max_jobs
    )
    if refused:
        raise PermissionDenied(refused)


def _refuse_stale(count: int, confirmed: int) -> None:
    if count != confirmed:
        raise Conflict(
            f"the filter now selects {count} jobs, not the {confirmed} confirmed: the jobs "
            f"changed since the dry run; run it again and confirm its count"
        )


def admit(runtime: Any, body: dict[str, Any], role: str, owner: str | None) -> None:
    """Refused before it is queued: a filter that does not read (400), another owner's
    jobs for a user key or a count over the caller's limit (403), a confirmed count
    that is no longer the filter's (409). A dry run is refused only the first."""
    _, selected = scope(runtime, body, role, owner)
    if body.get("dry_run"):
        return
    count = _count(runtime, selected)
    _refuse_limit(runtime, count, role)
    _refuse_stale(count, int(body["confirm"]))


def dry_run(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """How many jobs the action would act on, how many the filter selects in any state,
    a sample of the first, and whether this caller may go on."""
    rt, operation = ctx.runtime, body["operation"]
    matched, selected = scope(rt, body, ctx.role, ctx.execution.get("owner"))
    count = _count(rt, selected)
    sample: list[Document] = []
    if selected is not None:
        page = rt.store.find("jobs", selected, order="created", descending=True, limit=bulk.SAMPLE)
        sample = [bulk.sample_item(job) for job in page.items]
    settings = rt.config.bulk
    refused = bulk.limit_refusal(
        count,
        admin=ctx.role == "admin",
        user_limit=settings.user_limit,
        max_jobs=settings.max_jobs,
    )
    ctx.log.info(f"Dry run of bulk {operation}: {count} jobs")
    return {
        "dry_run": True,
        "operation": operation,
        "count": count,
        "matched": _count(rt, matched),
        "states": sorted(bulk.STATES[operation]),
        "sample": sample,
        "confirm": count,
        "allowed": refused is None,
        **({"refused": refused} if refused else {}),
    }


def _select(runtime: Any, selected: dict[str, Any] | None, most: int) -> list[str]:
    """The uuids the action acts on, oldest first (at most ``most`` + 1: one more
    than allowed is enough to refuse)."""
    if selected is None:
        return []
    uuids: list[str] = []
    after = None
    while len(uuids) <= most:
        page = runtime.store.find("jobs", selected, order="created", limit=PAGE, after=after)
        uuids.extend(job["uuid"] for job in page.items)
        after = page.next
        if after is None:
            break
    return uuids


def _snapshot(ctx: Context, body: dict[str, Any]) -> Document:
    """The bulk record of this execution: found (a redelivery), or made from the jobs
    the filter selects now, refused if their number is not the confirmed one."""
    rt = ctx.runtime
    found = rt.store.get(COLLECTION, ctx.execution_id)
    if found is not None:
        return dict(found)
    _, selected = scope(rt, body, ctx.role, ctx.execution.get("owner"))
    uuids = _select(rt, selected, rt.config.bulk.max_jobs)
    _refuse_limit(rt, len(uuids), ctx.role)
    _refuse_stale(len(uuids), int(body["confirm"]))
    record: Document = {
        "id": ctx.execution_id,
        "operation": body["operation"],
        "filter": body["filter"],
        "reason": body.get("reason"),
        **{key: body[key] for key in ("set", "remove") if key in body},
        "jobs": uuids,
        "total": len(uuids),
        "skipped": {},
        "owner": ctx.owner,
        "role": ctx.role,
        "created": now(rt.clock),
    }
    try:
        rt.store.insert(COLLECTION, record)
    except DuplicateDocument:  # another delivery of this execution got there first
        return dict(rt.store.get(COLLECTION, ctx.execution_id) or record)
    return record


#: What a per-job message may be refused with at send time (its actor's ``admit``):
#: that job's outcome, not the bulk action's failure.
SEND_REFUSALS = (ValidationError, AuthError, NotFound, Conflict)


def run(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the jobs, then send each its message (keyed on the job: a redelivery
    finds the ones already sent). A job whose message is refused at once (it is no
    longer in a state the action applies to, it is gone) is recorded as skipped."""
    if body.get("dry_run"):
        return dry_run(ctx, body)
    rt, operation = ctx.runtime, body["operation"]
    record = _snapshot(ctx, body)
    skipped: dict[str, str] = dict(record.get("skipped") or {})
    total, sent, last = int(record["total"]), 0, time.monotonic()
    ctx.log.info(f"Bulk {operation} of {total} jobs")
    for uuid in record["jobs"]:
        job = rt.store.get("jobs", uuid)
        if job is None:
            skipped[uuid] = f"job {uuid} no longer exists"
            continue
        token = rt.tokens.update_token(uuid, int(job.get("token_rotation", 0)))
        actor, message = bulk.request(operation, job, token, record, ctx.execution_id)
        try:
            ctx.send(actor, message, key=f"bulk:{ctx.execution_id}:{uuid}")
        except SEND_REFUSALS as exc:
            skipped[uuid] = exc.message
            continue
        sent += 1
        if time.monotonic() - last >= PROGRESS_EVERY:
            ctx.progress(sent=sent, skipped=len(skipped), total=total)
            last = time.monotonic()
    if skipped:
        _record_skipped(rt.store, ctx.execution_id, skipped)
    ctx.progress(sent=sent, skipped=len(skipped), total=total)
    ctx.log.info(f"Bulk {operation}: sent {sent} of {total} ({len(skipped)} skipped)")
    return {
        "bulk": ctx.execution_id,
        "operation": operation,
        "total": total,
        "sent": sent,
        "skipped": len(skipped),
        "follow": f"/bulk/{ctx.execution_id}",
    }


def _record_skipped(store: Store, bulk_id: str, skipped: dict[str, str]) -> None:
    def merge(doc: Document) -> Change | None:
        merged = {**(doc.get("skipped") or {}), **skipped}
        return None if merged == doc.get("skipped") else Change(set={"skipped": merged})

    compare_and_set(store, COLLECTION, bulk_id, merge, what=f"bulk action {bulk_id}")


def view(
    store: Store,
    execution: Document,
    *,
    limit: int = 100,
    after: str | None = None,
    errors_only: bool = False,
) -> dict[str, Any]:
    """A bulk action as ``GET /bulk/<id>`` shows it: its status, counts of its per-job
    executions by outcome, and a page of those outcomes (oldest first; only the
    failed and refused ones with ``errors_only``). ``execution`` is the coordinator's."""
    bulk_id = execution["id"]
    record = store.get(COLLECTION, bulk_id) or {}
    grouped = store.count("executions", {"parent": bulk_id}, group_by="status")
    by_status: dict[Any, int] = grouped if isinstance(grouped, dict) else {}
    done, errors = int(by_status.get("COMPLETE", 0)), int(by_status.get("ERROR", 0))
    running = int(by_status.get("RUNNING", 0))
    sent = sum(int(n) for n in by_status.values())
    skipped = record.get("skipped") or {}
    total = int(record.get("total", 0))
    where: dict[str, Any] = {"parent": bulk_id}
    if errors_only:
        where["status"] = "ERROR"
    page = store.find("executions", where, order="created", limit=limit, after=after)
    error = execution.get("error") or {}
    state = bulk.status(str(execution.get("status")), total, done + errors + len(skipped))
    if state == "FAILED" and error.get("error") in ("Conflict", "PermissionDenied"):
        state = "REFUSED"
    message = execution.get("message") or {}
    return {
        "id": bulk_id,
        "operation": record.get("operation") or message.get("operation"),
        "filter": record.get("filter") or message.get("filter"),
        "reason": record.get("reason") or message.get("reason"),
        "owner": record.get("owner"),
        "created": execution.get("created"),
        "status": state,
        **({"error": error.get("message")} if error else {}),
        "total": total,
        "counts": {
            "done": done,
            "errors": errors,
            "skipped": len(skipped),
            "running": running,
            "pending": max(total - len(skipped) - sent, 0) + sent - done - errors - running,
        },
        "skipped": [
            {"uuid": u, "outcome": bulk.REFUSED, "message": m} for u, m in sorted(skipped.items())
        ][:limit],  # fmt: skip
        "outcomes": [bulk.outcome(e) for e in page.items],
        "next": page.next,
    }
