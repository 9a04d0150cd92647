"""Following bulk actions in the console (issue 15): a bulk action's page and the list.

A bulk action's page (``/ui/bulk/<id>``) shows what ``GET /bulk/<id>`` shows, read by
the same :func:`pipelinejobs.runtime.bulk.view`: its status, a progress bar of its jobs
finished (done, errors and skipped) of its total, its counts and a page of its per-job
outcomes, each linking to the job and to the execution that acted on it. While it is
SENDING or RUNNING the page polls ``/ui/live/bulk/<id>`` (console.js) for those parts,
rendered by the same macros (``_bulk.html``), and stops once it is finished. A bulk
action refused when it ran (its count gone stale meanwhile) says so, with its dry run
to run again. ``/ui/bulk`` lists bulk actions newest first (``owner=me``: your own).
Started from :mod:`.bulk`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import get_template_attribute, request, url_for

from pipelinejobs.access.keys import owner_label
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.console import views
from pipelinejobs.console.bulk import ACTOR, Request, describe_filter
from pipelinejobs.console.web import bp, console, principal, render, session
from pipelinejobs.domain import bulk as domain_bulk
from pipelinejobs.errors import NotFound
from pipelinejobs.runtime import bulk as runtime_bulk

#: A bulk action's statuses that still change.
LIVE = ("SENDING", "RUNNING")
PARTS = "console/_bulk.html"


@dataclass(frozen=True)
class Progress:
    """A bulk action's jobs finished (done, errors, skipped) of its total."""

    total: int
    done: int
    errors: int
    skipped: int

    @classmethod
    def of(cls, view: dict[str, Any]) -> Progress:
        """From a bulk action's view (:func:`pipelinejobs.runtime.bulk.view`)."""
        counts = view["counts"]
        return cls(int(view["total"]), counts["done"], counts["errors"], counts["skipped"])

    @property
    def finished(self) -> int:
        return self.done + self.errors + self.skipped

    @property
    def percent(self) -> int:
        return (100 * self.finished) // self.total if self.total else 0


def coordinator(bulk_id: str) -> Document:
    """The execution a bulk action is (404 for any other id, a dry run's included)."""
    execution = console().store.get("executions", bulk_id)
    message = (execution or {}).get("message") or {}
    if (
        execution is None
        or execution.get("actor") != ACTOR
        or message.get("action") != "bulk"
        or message.get("dry_run")
    ):
        raise NotFound(f"no bulk action {bulk_id}", uuid=bulk_id)
    return execution


def page_data(bulk_id: str) -> dict[str, Any]:
    """What a bulk action's page shows (its outcomes paged by the URL's ``cursor``;
    only the failed and refused ones with ``errors=true``)."""
    c = console()
    execution = coordinator(bulk_id)
    cursor = request.args.get("cursor", "").strip()
    errors_only = request.args.get("errors") == "true"
    view = runtime_bulk.view(
        c.store, execution, limit=views.PAGE, after=cursor or None, errors_only=errors_only
    )
    record = c.store.get(runtime_bulk.COLLECTION, bulk_id) or {}
    return {
        "v": view,
        "set": record.get("set") or {},
        "remove": record.get("remove") or [],
        "describe": describe_filter(view.get("filter") or {}),
        "progress": Progress.of(view),
        "live": view["status"] in LIVE,
        "cursor": cursor,
        "errors_only": errors_only,
        "again": Request.from_message(execution.get("message") or {}),
        "back": url_for("console.bulk_action", bulk_id=bulk_id),
        "csrf": session().csrf,
        "job_actor": "launcher-proxy" if view["operation"] == domain_bulk.RETRY else ACTOR,
    }


@bp.get("/bulk/<bulk_id>")
def bulk_action(bulk_id: str) -> Any:
    d = page_data(bulk_id)
    return render("console/bulk.html", title=f"Bulk {d['v']['operation']} {bulk_id}", d=d)


@bp.get("/live/bulk/<bulk_id>")
def live_bulk(bulk_id: str) -> Any:
    d = page_data(bulk_id)
    return {
        "status": d["v"]["status"],
        "live": d["live"],
        "parts": {
            name: str(get_template_attribute(PARTS, f"bulk_{name}")(d))
            for name in ("record", "summary", "outcomes")
        },
    }


@bp.get("/bulk")
def bulk_list() -> Any:
    c = console()
    owner = request.args.get("owner", "").strip()[:200]
    cursor = request.args.get("cursor", "").strip()
    where: dict[str, Any] = {}
    if owner:
        where["owner"] = owner_label(principal().owner) if owner == "me" else owner
    page = c.store.find(
        runtime_bulk.COLLECTION,
        where,
        order="created",
        descending=True,
        limit=views.PAGE,
        after=cursor or None,
    )
    rows = []
    for doc in page.items:
        execution = c.store.get("executions", doc["id"]) or {"id": doc["id"], "status": "?"}
        view = runtime_bulk.view(c.store, execution, limit=1)
        rows.append(
            {
                "doc": doc,
                "status": view["status"],
                "describe": describe_filter(doc.get("filter") or {}),
                "progress": Progress.of(view),
            }
        )
    return render(
        "console/bulk_list.html",
        title="Bulk actions",
        rows=rows,
        next=page.next,
        cursor=cursor,
        owner=owner,
    )
