"""The read API's file records: the files of a job, and one file.

``GET /files?job=<uuid>`` is the catalog-side view of what the indexer wrote, with
the filters a client needs to follow a job's outputs: ``level`` (processing level)
and ``present`` (``false`` lists the files that vanished since they were indexed).
It is keyset-paged like ``/jobs``, ordered by path. A job is required: the files
collection is indexed by job, and an unbounded scan of every file in the catalog is
not something one request should start. Kept apart from ``read_api`` so each
module stays one concept.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.gateway.auth import requires
from pipelinejobs.gateway.http import envelope, page_args
from pipelinejobs.gateway.read_api import one, public

bp = Blueprint("files", __name__)


def _store() -> Any:
    return current_app.config["PIPELINEJOBS"].store


def _files_filter() -> dict[str, Any]:
    """The store filter of a ``/files`` request. ``job`` is required and every value
    was checked against its declaration (pipelinejobs.gateway.parameters) before the
    route ran: nothing here can select nothing by mistake."""
    args = request.args
    where: dict[str, Any] = {"job_uuid": require_type(args["job"], "pipelinejob")}
    if "level" in args:
        where["level"] = args["level"]
    if "present" in args:
        where["present"] = args["present"] == "true"
    return where


@bp.get("/files")
@requires("READ")
def list_files() -> Any:
    where = _files_filter()
    limit, cursor = page_args()
    page = _store().find("files", where, order="path", limit=limit, after=cursor)
    return envelope({"files": [public(d) for d in page.items], "next": page.next})


@bp.get("/files/<uuid>")
@requires("READ")
def get_file(uuid: str) -> Any:
    return envelope(public(one("files", "file", uuid, "file")))
