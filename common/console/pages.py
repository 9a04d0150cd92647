"""The console's pages: overview, jobs, a job, pipelines, executions.

Each page is rendered whole on the server (Jinja, autoescaped: a job's name, data,
files and logs are user input and reach the page only as text). The live parts of a
page are the same templates rendered again by :mod:`pipelinejobs.console.live`.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, request

from pipelinejobs.adapters.store.base import not_found
from pipelinejobs.console import actions, bulk, diagram, job_list, runs, tag_editor, views
from pipelinejobs.console.web import bp, console, principal, render
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.errors import NotFound, PipelineJobsError, ValidationError

#: Statuses of an execution, for the executions filter.
EXECUTION_STATUSES = ("SUBMITTED", "RUNNING", "COMPLETE", "ERROR")


def overview_data() -> dict[str, Any]:
    """Everything the overview shows (reused for ``Console.cache_ttl`` seconds)."""
    c = console()
    store, runtime = c.store, c.runtime

    def compute() -> dict[str, Any]:
        counts = views.state_counts(store)
        pipelines, more = views.pipeline_rows(store)
        with c.lock:  # one computation at a time updates the remembered minutes
            activity = views.activity(store, runtime.clock(), c.minutes)
        return {
            "counts": counts,
            "total": sum(counts.values()),
            "pipelines": pipelines,
            "more_pipelines": more,
            "activity": activity,
            "failed_jobs": views.recent(store, "jobs", {"state": "FAILED"}),
            "error_executions": views.recent(store, "executions", {"status": "ERROR"}),
            "queues": queue_depths(),
            "workers": workers_seen(),
            "computed": time.time(),
        }

    data: dict[str, Any] = c.cached("overview", c.cache_ttl, compute)
    return data


def queue_depths() -> dict[str, int | None]:
    """Messages waiting per actor, from the broker (None where it cannot tell). Asked
    at most every 2 s per process: a broker round trip each."""
    c = console()
    bus = c.runtime.bus

    def ask() -> dict[str, int | None]:
        depths: dict[str, int | None] = {}
        for alias in c.runtime.actors:
            try:
                depths[alias] = bus.depth(alias) if bus is not None else None
            except PipelineJobsError:
                depths[alias] = None
        return depths

    found: dict[str, int | None] = c.cached("queues", 2.0, ask)
    return found


#: How recent a worker's heartbeat must be to show on the overview (s).
WORKERS_WITHIN = 120.0


def workers_seen() -> list[dict[str, Any]] | None:
    """The workers whose heartbeat is recent (:mod:`pipelinejobs.observability`), or
    None when this installation keeps no heartbeats: the overview then says
    "workers: unknown" rather than "none"."""
    try:
        from pipelinejobs.observability.heartbeats import recent_workers
    except ImportError:  # pragma: no cover - an installation without heartbeats
        return None
    c = console()
    try:
        return list(recent_workers(c.store, WORKERS_WITHIN, clock=c.runtime.clock))
    except PipelineJobsError:
        return None


@bp.get("/")
def overview() -> Any:
    return render("console/overview.html", title="Overview", d=overview_data())


@bp.get("/jobs")
def jobs() -> Any:
    c = console()
    f = job_list.JobFilter.parse(request.args, me=runs.owner_me())
    page = job_list.list_jobs(c.store, f)
    return render(
        "console/jobs.html",
        title="Jobs",
        f=f,
        page=page,
        names=row_names(),
        states=views.STATES,
        sorts=job_list.SORTS,
        since_now=views.iso(c.runtime.clock()),
        bulk=bulk.jobs_control(principal(), f),
    )


def row_names() -> dict[str, str]:
    """The names a job row shows for a pipeline or run uuid (kept for 10 s)."""
    c = console()
    pipelines = c.cached("pipeline-names", 10.0, lambda: views.pipeline_names(c.store))
    named_runs = c.cached("run-names", 10.0, lambda: runs.run_names(c.store))
    return {**pipelines, **named_runs}


def job_page_data(uuid: str, history_after: int | None = None) -> dict[str, Any]:
    c = console()
    require_type(uuid, "pipelinejob")
    view = views.job_view(c.store, c.runtime.jobs, c.runtime.config.log_dir, uuid, history_after)
    job = view.job
    pipeline = c.store.get("pipelines", job.get("pipeline_uuid"))
    return {
        "view": view,
        "job": job,
        "name": views.job_name(job),
        "pipeline": pipeline,
        "diagram": diagram.svg(job.get("state"), view.taken, title=f"Lifecycle of job {uuid}"),
        "run": c.store.get("runs", job["run"]) if job.get("run") else None,
        "available": actions.available(principal(), job),
        "tag_editor": tag_editor.editor(principal(), job),
        "running": job.get("state") in views.ACTIVE,
        "log_start": views.log_start(views.log_path(c.runtime.config.log_dir, uuid), view.log_size)
        if view.log_size
        else 0,
    }


@bp.get("/jobs/<uuid>")
def job(uuid: str) -> Any:
    after = request.args.get("history_after")
    history_after = None
    if after:
        if not after.isdigit():
            raise ValidationError("history_after must be a number", path="history_after")
        history_after = int(after)
    return render("console/job.html", title=f"Job {uuid}", d=job_page_data(uuid, history_after))


@bp.get("/jobs/<uuid>/log")
def job_log(uuid: str) -> Any:
    """The job's compute log from byte ``offset`` (text; ``X-Log-Next-Offset`` says
    where to go on), as ``GET /jobs/<uuid>/log`` serves it to API clients — but whole
    lines only while it runs, and the job's token masked if its compute printed it."""
    c = console()
    raw = request.args.get("offset", "0")
    if not raw.isdigit() or len(raw) > 15:
        raise ValidationError("offset must be a number of bytes", path="offset")
    offset = int(raw)
    path = views.log_path(c.runtime.config.log_dir, uuid)
    if not path.is_file():
        raise NotFound(
            f"job {uuid} has no log: only local, docker and Slurm jobs keep one, once they have "
            f"started"
        )
    job = c.runtime.jobs.get(uuid)
    data = views.read_log(path, offset, whole_lines=job.get("state") in views.ACTIVE)
    next_offset = offset + len(data)
    token = c.runtime.tokens.update_token(uuid, int(job.get("token_rotation", 0)))
    response = Response(views.mask_log(data, [token]), mimetype="text/plain")
    response.headers["X-Log-Next-Offset"] = str(next_offset)
    return response


@bp.get("/pipelines")
def pipelines() -> Any:
    c = console()
    cursor = request.args.get("cursor") or None
    page = c.store.find(
        "pipelines", order="created", descending=True, limit=views.PAGE, after=cursor
    )
    counts = {
        p["uuid"]: views.count(c.store, "jobs", {"pipeline_uuid": p["uuid"]}) for p in page.items
    }
    return render(
        "console/pipelines.html",
        title="Pipelines",
        pipelines=page.items,
        next=page.next,
        counts=counts,
    )


@bp.get("/pipelines/<uuid>")
def pipeline(uuid: str) -> Any:
    c = console()
    require_type(uuid, "pipeline")
    doc = c.store.get("pipelines", uuid)
    if doc is None:
        raise not_found(c.store, "pipelines", uuid, f"no pipeline {uuid}", uuid=uuid)
    recent = c.store.find(
        "jobs", {"pipeline_uuid": uuid}, order="created", descending=True, limit=views.PAGE
    )
    return render(
        "console/pipeline.html",
        title=f"Pipeline {doc.get('name') or uuid}",
        pipeline=doc,
        counts=views.state_counts(c.store, {"pipeline_uuid": uuid}),
        jobs=recent.items,
        more=recent.next is not None,
    )


@bp.get("/executions")
def executions_index() -> Any:
    c = console()
    rows = []
    depths = queue_depths()
    for alias in c.runtime.actors:
        rows.append(
            {
                "alias": alias,
                "id": c.runtime.actor_id(alias),
                "depth": depths.get(alias),
                "running": views.count(
                    c.store, "executions", {"actor": alias, "status": "RUNNING"}
                ),
                "submitted": views.count(
                    c.store, "executions", {"actor": alias, "status": "SUBMITTED"}
                ),
            }
        )
    return render("console/executions_index.html", title="Executions", actors=rows)


@bp.get("/executions/<actor>")
def executions(actor: str) -> Any:
    c = console()
    alias = c.runtime.actor(actor).alias
    status = request.args.get("status") or None
    if status is not None and status not in EXECUTION_STATUSES:
        raise ValidationError(
            f"status must be one of {', '.join(EXECUTION_STATUSES)}", path="status"
        )
    cursor = request.args.get("cursor") or None
    page = c.runtime.executions.page(alias, limit=views.PAGE, after=cursor, status=status)
    return render(
        "console/executions.html",
        title=f"Executions of {alias}",
        alias=alias,
        status=status,
        statuses=EXECUTION_STATUSES,
        executions=page.items,
        next=page.next,
    )


@bp.get("/executions/<actor>/<execution_id>")
def execution(actor: str, execution_id: str) -> Any:
    c = console()
    alias = c.runtime.actor(actor).alias
    doc = c.store.get("executions", execution_id)
    if doc is None or doc.get("actor") != alias:
        if doc is None:
            raise not_found(
                c.store, "executions", execution_id, f"no execution {execution_id} of {alias}"
            )
        raise NotFound(f"no execution {execution_id} of actor {alias}")
    return render(
        "console/execution.html",
        title=f"Execution {execution_id}",
        alias=alias,
        execution=doc,
        message=views.redact(doc.get("message")),
        params=views.redact(doc.get("params") or {}),
        # Tokens are never shown in a page, not even to the key that sent the message.
        result=views.redact(doc.get("result")),
    )
