"""Archive paths: where a job's outputs go, derived from what the job is.

``/products/v2/<pipeline uuid, no dashes>/<hash of linkage>/<hash of data>`` and,
when ``instanced`` (the launcher's default), a last directory
``<adjective-animal>-YYYYMMDDTHHmmssZ`` so that two runs of the same job never
write over each other. The hashes are UUID5s (32 hex digits) in the deployment's
namespace over the canonical JSON of the sorted linkage ids and of the data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import coolname

from pipelinejobs.domain.clock import Clock, system_clock
from pipelinejobs.domain.identifiers import canonical_json, namespace

PREFIX = "/products/v2"


def digest(value: Any, domain: str) -> str:
    """32 hex digits naming ``value`` (canonical JSON) in ``domain``'s namespace."""
    return uuid.uuid5(namespace(domain), canonical_json(value)).hex


def session_name(clock: Clock = system_clock) -> str:
    """``adjective-animal-YYYYMMDDTHHmmssZ``: readable and unique enough per job."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    return f"{coolname.generate_slug(2)}-{stamp}"


def archive_path(
    *,
    pipeline_uuid: str,
    linkage: Iterable[str],
    data: Mapping[str, Any] | None,
    domain: str,
    instanced: bool = True,
    clock: Clock = system_clock,
) -> str:
    """The archive path of a job (see the module docstring)."""
    parts = [
        PREFIX,
        pipeline_uuid.replace("-", ""),
        digest(sorted(set(linkage)), domain),
        digest(dict(data or {}), domain),
    ]
    if instanced:
        parts.append(session_name(clock))
    return "/".join(parts)
