"""The read API: pipelines, jobs (filtered, paged, counted), one job's history and files.

Lists are keyset-paged: ``limit`` and the ``cursor`` a previous page returned as
``next``. Jobs are newest first; with ``updated_since`` they come oldest change
first, which makes the endpoint a change feed a client can poll. Nothing secret is
in any of these documents; the token rotation counter is internal and left out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request

from common.clock import iso
from common.errors import NotFound, ValidationError
from common.gateway.auth import requires
from common.gateway.http import envelope, page_args, truthy
from common.identifiers import require_type
from common.lifecycle import State
from common.store.base import Document, In, Range

bp = Blueprint("read", __name__)
INTERNAL = frozenset({"token_rotation", "version"})


def _store() -> Any:
    return current_app.config["PIPELINEJOBS"].store


def public(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if k not in INTERNAL}


def _page(collection: str, where: dict[str, Any], order: str, descending: bool) -> Any:
    limit, cursor = page_args()
    page = _store().find(
        collection, where, order=order, descending=descending, limit=limit, after=cursor
    )
    return [public(d) for d in page.items], page.next


@bp.get("/pipelines")
@requires("READ")
def list_pipelines() -> Any:
    where: dict[str, Any] = {}
    if request.args.get("status"):
        where["status"] = request.args["status"]
    items, nxt = _page("pipelines", where, "created", True)
    return envelope({"pipelines": items, "next": nxt})


@bp.get("/pipelines/<uuid>")
@requires("READ")
def get_pipeline(uuid: str) -> Any:
    return envelope(public(one("pipelines", "pipeline", uuid, "pipeline")))


def _job_filter() -> dict[str, Any]:
    args = request.args
    where: dict[str, Any] = {}
    states = args.getlist("state")
    for state in states:
        if state not in State.__members__:
            raise ValidationError(
                f"unknown state {state!r}; states: {', '.join(State.__members__)}",
                path="state",
                allowed=list(State.__members__),
            )
    if states:
        where["state"] = In(states)
    if args.get("pipeline_uuid"):
        where["pipeline_uuid"] = require_type(args["pipeline_uuid"], "pipeline")
    linkage = args.getlist("linkage") or args.getlist("child_of")
    if linkage:
        where["child_of"] = In(linkage)
    if args.get("updated_since"):
        where["updated"] = Range(gte=_since(args["updated_since"]))
    return where


def _since(text: str) -> str:
    """``updated_since`` in the stored form: dates are compared as text, so
    ``...T10:00:00+02:00`` or ``...T08:00:00Z`` (no milliseconds) must be rewritten
    as the service writes dates, or they would select the wrong jobs. No offset
    means UTC; a '+' left unescaped in the URL arrives as a space and is put back."""
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip())
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:  # stored dates are UTC; so is a date without offset
            moment = moment.replace(tzinfo=UTC)
        return iso(moment.timestamp())
    except (ValueError, OverflowError, OSError) as exc:
        raise ValidationError(
            f"updated_since must be an RFC 3339 date-time such as "
            f"2026-01-31T12:00:00Z, not {text!r}",
            path="updated_since",
        ) from exc


@bp.get("/jobs")
@requires("READ")
def list_jobs() -> Any:
    where = _job_filter()
    since = "updated" in where
    items, nxt = _page("jobs", where, "updated" if since else "created", not since)
    for item in items:
        item.pop("history", None)  # one job's history is at /jobs/<uuid>
    result: dict[str, Any] = {"jobs": items, "next": nxt}
    if truthy(request.args.get("counts")):
        counts = _store().count("jobs", where, group_by="state")
        result["counts"] = {state: counts.get(state, 0) for state in State.__members__}
    return envelope(result)


def one(collection: str, kind: str, uuid: str, label: str) -> Document:
    """The ``collection`` document ``uuid``: 400 if it is not a ``kind`` UUID, 404 if
    there is none."""
    require_type(uuid, kind)
    doc = _store().get(collection, uuid)
    if doc is None:
        raise NotFound(f"no {label} {uuid}", uuid=uuid)
    return doc


def _job(uuid: str) -> Document:
    return one("jobs", "pipelinejob", uuid, "job")


@bp.get("/jobs/<uuid>")
@requires("READ")
def get_job(uuid: str) -> Any:
    return envelope(public(_job(uuid)))


@bp.get("/jobs/<uuid>/files")
@requires("READ")
def job_files(uuid: str) -> Any:
    _job(uuid)
    where: dict[str, Any] = {"job_uuid": uuid}
    if request.args.get("level"):
        where["level"] = request.args["level"]
    items, nxt = _page("files", where, "path", False)
    return envelope({"files": items, "next": nxt})


#: Largest slice of a log one request returns; ask again from ``X-Log-Next-Offset``.
LOG_CHUNK = 1 << 20


@bp.get("/jobs/<uuid>/log")
@requires("READ")
def job_log(uuid: str) -> Any:
    """The stdout and stderr of a local or docker job, from byte ``offset`` on.

    Plain text; the ``X-Log-Next-Offset`` header says where to continue, so a client
    can follow a running job's log by asking again from there.
    """
    _job(uuid)
    raw = request.args.get("offset", "0")
    if not raw.isdigit():
        raise ValidationError(f"offset must be a non-negative integer, not {raw!r}", path="offset")
    path = current_app.config["PIPELINEJOBS"].config.log_dir / f"{uuid}.log"
    if not path.is_file():
        raise NotFound(
            f"job {uuid} has no log: only local and docker jobs keep one, once they have started",
            uuid=uuid,
        )
    with open(path, "rb") as fh:
        fh.seek(int(raw))
        data = fh.read(LOG_CHUNK)
    return Response(
        data, mimetype="text/plain", headers={"X-Log-Next-Offset": str(int(raw) + len(data))}
    )
