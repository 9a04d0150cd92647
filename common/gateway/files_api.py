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

from common import schemas
from common.errors import ValidationError
from common.gateway.auth import requires
from common.gateway.http import envelope, page_args
from common.gateway.read_api import one, public
from common.identifiers import require_type

bp = Blueprint("files", __name__)
BOOLEANS = {"true": True, "false": False}


def _store() -> Any:
    return current_app.config["PIPELINEJOBS"].store


def _files_filter() -> dict[str, Any]:
    """The store filter of a ``/files`` request; 400 (naming the parameter) for
    anything that could only select nothing by mistake."""
    args = request.args
    job = args.get("job")
    if not job:
        raise ValidationError(
            "files are listed per job: give job=<pipelinejob uuid> (prefix 107)", path="job"
        )
    where: dict[str, Any] = {"job_uuid": require_type(job, "pipelinejob")}
    if args.get("level"):
        levels = schemas.schema_documents()["processing_level"]["enum"]
        if args["level"] not in levels:
            raise ValidationError(
                f"level {args['level']!r} is not a processing level; levels: {', '.join(levels)}",
                path="level",
                allowed=list(levels),
            )
        where["level"] = args["level"]
    if "present" in args:
        value = args["present"].strip().lower()
        if value not in BOOLEANS:
            raise ValidationError(
                f"present must be true or false, not {args['present']!r}",
                path="present",
                allowed=list(BOOLEANS),
            )
        where["present"] = BOOLEANS[value]
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
