"""The runs API (issue 15): runs listed with their jobs' counts and derived status,
filtered by status too; one run; a page of a run's jobs.

A run's status is derived from its jobs' states when it is read
(:mod:`pipelinejobs.domain.runs`), never stored, so ``GET /runs?status=`` cannot be
an index lookup: it reads runs newest first (the other filters applied by the store),
counting each one's jobs on their ``(run, state)`` index, until a page of matches is
found or a bounded number of runs has been read
(:func:`pipelinejobs.domain.runs.scan_budget`: 20 per run asked for, at most 1,000)
— and ``next`` resumes right after the last run read.
A page may therefore come back short, or empty, with a ``next``: a client following
``next`` to its end gets every match, and ``scanned`` says how many runs a page read.
Kept apart from :mod:`pipelinejobs.gateway.read_api` so each stays one concern.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from pipelinejobs.adapters.store.base import Document, In
from pipelinejobs.domain import run_graph, runs, tags
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.gateway.auth import owner_named, requires
from pipelinejobs.gateway.http import envelope, page_args
from pipelinejobs.gateway.read_api import one, public

bp = Blueprint("runs", __name__)


def _store() -> Any:
    return current_app.config["PIPELINEJOBS"].store


def with_status(run: Document, counts: dict[str, int]) -> Document:
    """A run as the API shows it: its fields, its jobs in each state, their total and
    the status derived from them."""
    return {**public(run), "counts": counts, "jobs": sum(counts.values()),
            "status": runs.status(counts)}  # fmt: skip


def _where() -> dict[str, Any]:
    """The store filter of a ``/runs`` request (values checked by their declarations
    in pipelinejobs.gateway.parameters before the route ran)."""
    args = request.args
    where: dict[str, Any] = {}
    if "pipeline_uuid" in args:
        where["pipeline_uuid"] = require_type(args["pipeline_uuid"], "pipeline")
    if "priority" in args:
        where["priority"] = args["priority"]
    if "tag" in args:
        where[tags.PAIRS] = tags.parse_filter(args["tag"])
    if "owner" in args:
        where["owner"] = owner_named(args["owner"])
    return where


@bp.get("/runs")
@requires("READ")
def list_runs() -> Any:
    """Runs, newest first, filtered by pipeline, priority, tag and owner (indexed
    fields: the store intersects them) and by derived ``status`` (repeatable: any of
    them), each with its counts and status."""
    limit, cursor = page_args()
    statuses = request.args.getlist("status")
    listing = runs.find(
        _store(),
        _where(),
        limit=limit,
        after=cursor,
        statuses=statuses,
        budget=runs.scan_budget(limit),
    )
    result: dict[str, Any] = {
        "runs": [with_status(run, counts) for run, counts in listing.runs],
        "next": listing.next,
    }
    if statuses:
        result["scanned"] = listing.scanned
    return envelope(result)


def _run(uuid: str) -> Document:
    return one("runs", "pipelinejob_run", uuid.removeprefix("uri:urn:"), "run")


@bp.get("/runs/<uuid>")
@requires("READ")
def get_run(uuid: str) -> Any:
    """The run with the number of its jobs in each state (every state, 0 included),
    their total and the status derived from them (pipelinejobs.domain.runs)."""
    run = _run(uuid)
    return envelope(with_status(run, runs.counts(_store(), run["uuid"])))


@bp.get("/runs/<uuid>/jobs")
@requires("READ")
def run_jobs(uuid: str) -> Any:
    """A page of the run's jobs, newest first (optionally in some states only)."""
    where: dict[str, Any] = {"run": _run(uuid)["uuid"]}
    if "state" in request.args:
        where["state"] = In(request.args.getlist("state"))
    limit, cursor = page_args()
    page = _store().find("jobs", where, order="created", descending=True, limit=limit,
                         after=cursor)  # fmt: skip
    jobs = [public(job) for job in page.items]
    for job in jobs:
        job.pop("history", None)  # a job written before the history log embeds it
    return envelope({"jobs": jobs, "next": page.next})


@bp.get("/runs/<uuid>/graph")
@requires("READ")
def graph(uuid: str) -> Any:
    """The run's jobs and the dependencies between them (issue 16): nodes with their
    state, edges parent -> child with their condition (pipelinejobs.domain.run_graph)."""
    return envelope(run_graph.graph(_store(), _run(uuid)["uuid"]))
