"""The console's runs: a list, newest first, and a run's page (issue 15).

A run stores no state (:mod:`pipelinejobs.domain.runs`): what the pages show of its
progress is read each time, as ``GET /runs`` and ``GET /runs/<uuid>`` read it — its
jobs counted by state (:func:`pipelinejobs.domain.runs.counts`, one grouped count on
the jobs' ``(run, state)`` index) and its status derived from those counts
(:func:`pipelinejobs.domain.runs.status`). A run's jobs are *done* once they are in a
terminal state: succeeded, unsuccessful or withdrawn.

The list filters as ``GET /runs`` does — pipeline, priority, owner, tag (indexed
fields the store intersects) and status — through the same
:func:`pipelinejobs.domain.runs.find`. A status is not stored, so that filter reads
runs newest first and keeps those whose status matches, reading at most
:func:`scan_budget` runs for one page; the page says so when it stopped short, and its
next page goes on from the last run read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request

from pipelinejobs.access.keys import owner_label
from pipelinejobs.adapters.store.base import Document, In, Store, not_found
from pipelinejobs.console import bulk, job_list, run_graph, views
from pipelinejobs.console.web import bp, console, principal, render
from pipelinejobs.domain import run_graph as domain_graph
from pipelinejobs.domain import runs as domain_runs
from pipelinejobs.domain import tags
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.domain.runs import PRIORITIES, STATUSES, SUCCEEDED, UNSUCCESSFUL, WITHDRAWN
from pipelinejobs.errors import ValidationError

#: Run names kept for the jobs list's run column (the newest runs).
NAMED_RUNS = 500


@dataclass(frozen=True)
class Progress:
    """A run's jobs counted by state (every state, zeros included) and what follows."""

    counts: dict[str, int]

    def _of(self, states: frozenset[Any]) -> int:
        return sum(self.counts.get(s.value, 0) for s in states)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def succeeded(self) -> int:
        return self._of(SUCCEEDED)

    @property
    def unsuccessful(self) -> int:
        return self._of(UNSUCCESSFUL)

    @property
    def withdrawn(self) -> int:
        return self._of(WITHDRAWN)

    @property
    def done(self) -> int:
        """Jobs in a terminal state: succeeded, unsuccessful or withdrawn."""
        return self.succeeded + self.unsuccessful + self.withdrawn

    @property
    def percent(self) -> int:
        return (100 * self.done) // self.total if self.total else 0

    @property
    def status(self) -> str:
        return domain_runs.status(self.counts)

    def nonzero(self) -> dict[str, int]:
        return {s: n for s, n in self.counts.items() if n}


def progress(store: Store, uuid: str) -> Progress:
    """The jobs of run ``uuid`` counted by state (one grouped count)."""
    return Progress(domain_runs.counts(store, uuid))


def scan_budget(limit: int) -> int:
    """Runs a status filter reads for a page of ``limit``: as many as the API reads."""
    return domain_runs.scan_budget(limit)


def run_names(store: Store, limit: int = NAMED_RUNS) -> dict[str, str]:
    """Run uuid -> name (the newest ``limit`` runs)."""
    page = store.find("runs", order="created", descending=True, limit=limit)
    return {r["uuid"]: str(r.get("name") or r["uuid"]) for r in page.items}


def owner_me() -> str:
    """The owner ``owner=me`` names: the signed-in key, as records keep owners."""
    return owner_label(principal().owner)


# -- the list ---------------------------------------------------------------------------


@dataclass
class RunFilter:
    """The runs list's filters, from its URL (the API's names, and ``status``)."""

    pipeline: str = ""
    priority: str = ""
    owner: str = ""
    tag: str = ""
    status: str = ""
    cursor: str = ""
    me: str = ""  #: whom ``owner=me`` names

    @classmethod
    def parse(cls, args: Any, me: str = "") -> RunFilter:
        """From a request's arguments; ValidationError (400) naming a bad one."""
        f = cls(
            pipeline=args.get("pipeline_uuid", "").strip(),
            priority=args.get("priority", "").strip(),
            owner=args.get("owner", "").strip()[:200],
            tag=args.get("tag", "").strip(),
            status=args.get("status", "").strip(),
            cursor=args.get("cursor", "").strip(),
            me=me,
        )
        job_list.check_uuid(f.pipeline, "pipeline", "pipeline", path="pipeline_uuid")
        if f.priority and f.priority not in PRIORITIES:
            raise ValidationError(
                f"priority must be one of {', '.join(PRIORITIES)}", path="priority"
            )
        if f.status and f.status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}", path="status")
        if f.tag:
            tags.parse_filter(f.tag)
        return f

    def where(self) -> dict[str, Any]:
        where: dict[str, Any] = {}
        if self.pipeline:
            where["pipeline_uuid"] = self.pipeline
        if self.priority:
            where["priority"] = self.priority
        if self.owner:
            where["owner"] = self.me if self.owner == "me" and self.me else self.owner
        if self.tag:
            where[tags.PAIRS] = tags.parse_filter(self.tag)
        return where

    def query(self, **changes: Any) -> dict[str, Any]:
        """The URL arguments of this filter (with ``changes``), for links."""
        args: dict[str, Any] = {
            "pipeline_uuid": self.pipeline,
            "priority": self.priority,
            "owner": self.owner,
            "tag": self.tag,
            "status": self.status,
            "cursor": self.cursor,
        }
        args.update(changes)
        return {k: v for k, v in args.items() if v}


@dataclass
class RunsPage:
    rows: list[tuple[Document, Progress]]
    next: str | None
    total: int | None  #: how many runs match (None with a status filter: not counted)
    note: str = ""
    scanned: int = 0  #: runs a status filter read


def list_runs(store: Store, f: RunFilter, limit: int | None = None) -> RunsPage:
    """A page of the runs ``f`` selects, newest first, each with its progress (a page
    of :data:`~pipelinejobs.console.views.PAGE` unless ``limit`` says)."""
    limit = limit or views.PAGE
    where = f.where()
    budget = scan_budget(limit)
    listing = domain_runs.find(
        store,
        where,
        limit=limit,
        after=f.cursor or None,
        statuses=(f.status,) if f.status else (),
        budget=budget,
    )
    rows = [(run, Progress(counts)) for run, counts in listing.runs]
    if not f.status:
        return RunsPage(rows, listing.next, views.count(store, "runs", where))
    note = (
        f"A run's status is derived from its jobs, so this filter read {listing.scanned:,} "
        f"runs (newest first) for this page; the next page looks further back."
        if listing.next is not None and len(rows) < limit
        else ""
    )
    return RunsPage(rows, listing.next, None, note, listing.scanned)


@bp.get("/runs")
def runs() -> Any:
    c = console()
    f = RunFilter.parse(request.args, me=owner_me())
    page = list_runs(c.store, f)
    names = c.cached("pipeline-names", 10.0, lambda: views.pipeline_names(c.store))
    return render(
        "console/runs.html",
        title="Runs",
        f=f,
        page=page,
        names=names,
        priorities=PRIORITIES,
        statuses=STATUSES,
    )


# -- a run ------------------------------------------------------------------------------


@bp.get("/runs/<uuid>")
def run(uuid: str) -> Any:
    c = console()
    uuid = uuid.removeprefix("uri:urn:")
    require_type(uuid, "pipelinejob_run")
    doc = c.store.get("runs", uuid)
    if doc is None:
        raise not_found(c.store, "runs", uuid, f"no run {uuid}", uuid=uuid)
    states = [s for s in request.args.getlist("state") if s]
    bad = [s for s in states if s not in views.STATES]
    if bad:
        raise ValidationError(
            f"unknown state {bad[0]!r}; states: {', '.join(views.STATES)}", path="state"
        )
    states = list(dict.fromkeys(states))
    where: dict[str, Any] = {"run": uuid}
    if states:
        where["state"] = In(states)
    cursor = request.args.get("cursor", "").strip()
    jobs = c.store.find(
        "jobs", where, order="created", descending=True, limit=views.PAGE, after=cursor or None
    )
    shown = progress(c.store, uuid)
    pipeline = c.store.get("pipelines", doc.get("pipeline_uuid"))
    names = {doc["pipeline_uuid"]: str((pipeline or {}).get("name") or doc["pipeline_uuid"])}
    return render(
        "console/run.html",
        title=f"Run {doc.get('name') or uuid}",
        run=doc,
        pipeline=pipeline,
        progress=shown,
        jobs=jobs.items,
        next=jobs.next,
        cursor=cursor,
        states=views.STATES,
        chosen=states,
        matching=sum(shown.counts[s] for s in states) if states else shown.total,
        names={**names, uuid: str(doc.get("name") or uuid)},
        bulk=bulk.run_control(principal(), uuid, states),
        graph=run_graph.svg(domain_graph.graph(c.store, uuid), title=f"Dependencies of run {uuid}"),
    )
