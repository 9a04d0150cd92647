"""Following bulk actions: ``GET /bulk`` (newest first) and ``GET /bulk/<id>``.

A bulk action is started by a ``bulk`` message to the jobs-manager
(:mod:`pipelinejobs.runtime.bulk`); its id is that message's execution id. These
routes only read: the action's status, its per-job outcomes counted and paged. A
dry run stores nothing to follow (its answer is its execution's result).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from pipelinejobs.errors import NotFound
from pipelinejobs.gateway.auth import owner_named, requires
from pipelinejobs.gateway.http import envelope, page_args
from pipelinejobs.runtime import bulk

bp = Blueprint("bulk", __name__)
#: What the list shows of each bulk action (not the uuids of all its jobs).
LISTED = ("id", "operation", "filter", "reason", "set", "remove", "owner", "total", "created")


def _gateway() -> Any:
    return current_app.config["PIPELINEJOBS"]


@bp.get("/bulk")
@requires("READ")
def list_bulk() -> Any:
    """Bulk actions, newest first (optionally one owner's), each with its operation,
    filter, reason, owner, number of jobs and date."""
    limit, cursor = page_args()
    where: dict[str, Any] = {}
    if "owner" in request.args:
        where["owner"] = owner_named(request.args["owner"])
    page = _gateway().store.find(
        bulk.COLLECTION, where, order="created", descending=True, limit=limit, after=cursor
    )
    items = [{k: doc[k] for k in LISTED if k in doc} for doc in page.items]
    return envelope({"bulk": items, "next": page.next})


@bp.get("/bulk/<execution_id>")
@requires("READ")
def get_bulk(execution_id: str) -> Any:
    """A bulk action's status, counts by outcome, the jobs skipped when it was sent and
    a page of per-job outcomes (``errors=true``: only those that failed or were
    refused). 404 for an id that is no bulk action (a dry run is not one)."""
    gateway = _gateway()
    execution = gateway.store.get("executions", execution_id)
    message = (execution or {}).get("message") or {}
    if (
        execution is None
        or execution.get("actor") != "jobs-manager"
        or message.get("action") != "bulk"
        or message.get("dry_run")
    ):
        raise NotFound(f"no bulk action {execution_id}", uuid=execution_id)
    limit, cursor = page_args()
    errors = request.args.get("errors") == "true"
    return envelope(
        bulk.view(gateway.store, execution, limit=limit, after=cursor, errors_only=errors)
    )
