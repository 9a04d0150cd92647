"""The lineage API: the graph of what a job or file came from and what was made from it.

``GET /jobs/<uuid>/lineage`` and ``GET /files/<uuid>/lineage``, with ``direction``
(``up``, ``down`` or ``both``, the default) and ``depth`` (edges from the start, 1 to
:data:`~pipelinejobs.domain.lineage.MAX_DEPTH`, default 3) — both checked against their
declarations (:mod:`pipelinejobs.gateway.parameters`) before the route runs. The walk is
:mod:`pipelinejobs.domain.lineage`; this module only reads the request and answers.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from pipelinejobs.domain.lineage import BOTH, DEFAULT_DEPTH, Lineage
from pipelinejobs.gateway.auth import requires
from pipelinejobs.gateway.http import envelope

bp = Blueprint("lineage", __name__)


def _lineage() -> Lineage:
    return Lineage(current_app.config["PIPELINEJOBS"].store)


def _args() -> tuple[str, int]:
    """``direction`` and ``depth`` (their values were checked before the route ran)."""
    return request.args.get("direction", BOTH), int(request.args.get("depth", DEFAULT_DEPTH))


@bp.get("/jobs/<uuid>/lineage")
@requires("READ")
def job_lineage(uuid: str) -> Any:
    return envelope(_lineage().of_job(uuid, *_args()))


@bp.get("/files/<uuid>/lineage")
@requires("READ")
def file_lineage(uuid: str) -> Any:
    return envelope(_lineage().of_file(uuid, *_args()))
