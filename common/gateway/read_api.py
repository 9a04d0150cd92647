"""The read API: pipelines, jobs (filtered, paged, counted), one job's history and files.

Lists are keyset-paged: ``limit`` and the ``cursor`` a previous page returned as
``next``. Jobs are newest first; with ``updated_since`` they come oldest change
first, which makes the endpoint a change feed a client can poll. Nothing secret is
in any of these documents; the token rotation counter is internal and left out.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from pipelinejobs.adapters.store.base import LAST_RECORD, Document, not_found
from pipelinejobs.domain import job_filter
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.domain.job_log import PAGE
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.errors import NotFound
from pipelinejobs.gateway.auth import caller_owner, requires
from pipelinejobs.gateway.http import envelope, page_args

bp = Blueprint("read", __name__)
#: Stored bookkeeping no reader needs: the token rotation, the compare-and-set
#: version, and the newest history record the store keeps on a job (its ``history``
#: shows it).
INTERNAL = frozenset({"token_rotation", "version", LAST_RECORD})


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
    if "status" in request.args:
        where["status"] = request.args["status"]
    items, nxt = _page("pipelines", where, "created", True)
    return envelope({"pipelines": items, "next": nxt})


@bp.get("/pipelines/<uuid>")
@requires("READ")
def get_pipeline(uuid: str) -> Any:
    return envelope(public(one("pipelines", "pipeline", uuid, "pipeline")))


def _job_filter() -> dict[str, Any]:
    """The store filter of a ``/jobs`` request (pipelinejobs.domain.job_filter). The
    values were checked against their declarations (pipelinejobs.gateway.parameters)
    before the route ran; ``state`` and ``linkage`` may be repeated."""
    args = request.args
    given: dict[str, Any] = {k: args[k] for k in job_filter.FIELDS if k in args}
    for name in ("state", "linkage", "child_of"):
        if name in args:
            given[name] = args.getlist(name)
    return job_filter.where(given, me=caller_owner())


@bp.get("/jobs")
@requires("READ")
def list_jobs() -> Any:
    where = _job_filter()
    since = "updated" in where
    items, nxt = _page("jobs", where, "updated" if since else "created", not since)
    for item in items:
        item.pop("history", None)  # a job written before the history log embeds it
    result: dict[str, Any] = {"jobs": items, "next": nxt}
    if request.args.get("counts") == "true":
        counts = _store().count("jobs", where, group_by="state")
        result["counts"] = {state: counts.get(state, 0) for state in State.__members__}
    return envelope(result)


def one(collection: str, kind: str, uuid: str, label: str) -> Document:
    """The ``collection`` document ``uuid``: 400 if it is not a ``kind`` UUID, 404 if
    there is none.

    A record that was quarantined answers 404 "quarantined: <reason>" (it is no longer
    there, and the caller learns why); one that is corrupt but not yet set aside
    answers 500 in the JSON envelope naming the collection, key and reason (the
    store's CorruptDocument): a server-side fault, never the record as non-JSON. Reads
    do not move records: a worker sets it aside when it meets it.
    """
    require_type(uuid, kind)
    doc = _store().get(collection, uuid)
    if doc is None:
        raise not_found(_store(), collection, uuid, f"no {label} {uuid}", uuid=uuid)
    return doc


def _job(uuid: str) -> Document:
    return one("jobs", "pipelinejob", uuid, "job")


def _jobs() -> Any:
    return current_app.config["PIPELINEJOBS"].runtime.jobs


@bp.get("/jobs/<uuid>")
@requires("READ")
def get_job(uuid: str) -> Any:
    """The job in the seed's record shape: its ``history`` inline, oldest first, up to
    1,000 entries; a longer one says where the rest starts (``history_next``, the
    ``after`` of ``/jobs/<uuid>/history``), so one request never reads an unbounded
    log."""
    require_type(uuid, "pipelinejob")
    return envelope(public(_jobs().record(uuid)))


@bp.get("/jobs/<uuid>/history")
@requires("READ")
def job_history(uuid: str) -> Any:
    """A page of a job's history: the entries after the ``after``-th (0, the default:
    from the first), at most ``limit`` (default and most 1,000), oldest first. ``next``
    is the ``after`` of the following page, null at the end; a client following a job
    asks again from its last ``after`` + the entries it got. Each entry also says the
    state its event was applied to (``previous_state``) and who sent it (``sender``),
    when known: what a follower needs to show the state it led to, and by whom."""
    require_type(uuid, "pipelinejob")
    after = int(request.args.get("after", "0"))  # checked by parameters.py
    limit = int(request.args.get("limit", str(PAGE)))
    page = _jobs().history(uuid, after, limit, detailed=True)
    return envelope({"uuid": uuid, "history": page.entries, "next": page.next, "count": page.count})


@bp.get("/jobs/<uuid>/files")
@requires("READ")
def job_files(uuid: str) -> Any:
    _job(uuid)
    where: dict[str, Any] = {"job_uuid": uuid}
    if "level" in request.args:
        where["level"] = request.args["level"]
    items, nxt = _page("files", where, "path", False)
    return envelope({"files": items, "next": nxt})


#: Largest slice of a log one request returns; ask again from ``X-Log-Next-Offset``.
LOG_CHUNK = 1 << 20


@bp.get("/jobs/<uuid>/log")
@requires("READ")
def job_log(uuid: str) -> Any:
    """The stdout and stderr of a local, docker or Slurm job, from byte ``offset`` on.

    Plain text; the ``X-Log-Next-Offset`` header says where to continue, so a client
    can follow a running job's log by asking again from there.
    """
    _job(uuid)
    offset = int(request.args.get("offset", "0"))  # checked: 0 to parameters.MAX_OFFSET
    path = current_app.config["PIPELINEJOBS"].config.log_dir / f"{uuid}.log"
    if not path.is_file():
        raise NotFound(
            f"job {uuid} has no log: only local, docker and Slurm jobs keep one, once they "
            f"have started",
            uuid=uuid,
        )
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(LOG_CHUNK)
    return Response(
        data, mimetype="text/plain", headers={"X-Log-Next-Offset": str(offset + len(data))}
    )
