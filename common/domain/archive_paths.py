"""Archive paths: where a job's outputs go, derived from what the job is.

``/products/v2/<pipeline uuid, no dashes>/<hash of linkage>/<hash of data>`` and,
when ``instanced`` (the launcher's default), a last directory
``<session>-YYYYMMDDTHHmmssZ`` so that two runs of the same job never write over
each other. The hashes are UUID5s (32 hex digits) in the deployment's namespace over
the canonical JSON of the sorted linkage ids and of the data.

A job's **session** is the short correlation string the original library gave every
job (``interestinganimal.generate(timestamp=False)``: ``adjective-animal``, e.g.
``eligible-awk``), written on the job and naming its instancing directory
(``eligible-awk-20181127T173243Z``). A launch may bring its own (:data:`SESSION`
is its form: it becomes a directory name).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import coolname

from pipelinejobs.domain.clock import Clock, system_clock
from pipelinejobs.domain.identifiers import canonical_json, namespace

PREFIX = "/products/v2"
#: What a session may be (it names a directory): 4–64 ASCII letters, digits, ``-``
#: and ``_``, starting with a letter or digit. Kept in step with
#: ``schemas/pipelinejob_session.json``.
SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,63}", re.ASCII)


def digest(value: Any, domain: str) -> str:
    """32 hex digits naming ``value`` (canonical JSON) in ``domain``'s namespace."""
    return uuid.uuid5(namespace(domain), canonical_json(value)).hex


def new_session() -> str:
    """A new session: ``adjective-animal`` (``eligible-awk``), as the original did."""
    return str(coolname.generate_slug(2))


def instanced_directory(session: str, clock: Clock = system_clock) -> str:
    """``<session>-YYYYMMDDTHHmmssZ``: the session stamped with the time (UTC)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    return f"{session.rstrip('-')}-{stamp}"


def session_name(clock: Clock = system_clock) -> str:
    """``adjective-animal-YYYYMMDDTHHmmssZ``: a new session's instancing directory."""
    return instanced_directory(new_session(), clock)


def archive_path(
    *,
    pipeline_uuid: str,
    linkage: Iterable[str],
    data: Mapping[str, Any] | None,
    domain: str,
    instanced: bool = True,
    clock: Clock = system_clock,
    session: str | None = None,
) -> str:
    """The archive path of a job (see the module docstring); when ``instanced``, its
    last directory is ``session`` (a new one if None) stamped with the time."""
    parts = [
        PREFIX,
        pipeline_uuid.replace("-", ""),
        digest(sorted(set(linkage)), domain),
        digest(dict(data or {}), domain),
    ]
    if instanced:
        parts.append(instanced_directory(session or new_session(), clock))
    return "/".join(parts)
