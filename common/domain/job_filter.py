"""Which jobs a filter selects: the one reading of ``GET /jobs``' parameters.

The jobs list and the bulk actions (:mod:`pipelinejobs.domain.bulk`) take the same
filter — ``state``, ``pipeline_uuid``, ``linkage`` (alias ``child_of``),
``updated_since``, ``tag``, ``owner``, ``run`` — the list as query parameters, a bulk
message as an object. Both are read here into the store's filter, so a dry run counts
exactly the jobs the list shows for the same filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipelinejobs.adapters.store.base import In, Range
from pipelinejobs.domain import tags
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.errors import ValidationError

#: The filter's fields, as ``GET /jobs`` names its parameters.
FIELDS = ("state", "pipeline_uuid", "linkage", "updated_since", "tag", "owner", "run")

#: The stored form of the first and last moments a stored date can have.
EARLIEST, LATEST = "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"


def as_list(value: Any) -> list[str]:
    """A field given once or several times (``?state=A&state=B``, ``["A", "B"]``)."""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def where(given: Mapping[str, Any], *, me: str | None = None, prefix: str = "") -> dict[str, Any]:
    """The store filter of ``given`` (values checked against their declarations or
    schema already; what those cannot say is checked here, errors naming
    ``prefix + field``). ``me``: who ``owner: me`` is (the caller's owner label)."""
    out: dict[str, Any] = {}
    if given.get("state"):
        out["state"] = In(as_list(given["state"]))
    if given.get("pipeline_uuid"):
        out["pipeline_uuid"] = require_type(str(given["pipeline_uuid"]), "pipeline")
    linkage = as_list(given.get("linkage") or given.get("child_of") or [])
    if linkage:
        out["child_of"] = In(linkage)
    if given.get("updated_since"):
        out["updated"] = Range(
            gte=since(str(given["updated_since"]), path=f"{prefix}updated_since")
        )
    if given.get("tag"):
        try:
            out[tags.PAIRS] = tags.parse_filter(str(given["tag"]))
        except ValidationError as exc:
            raise ValidationError(exc.message, path=f"{prefix}tag") from exc
    if given.get("owner"):
        owner = str(given["owner"])
        out["owner"] = me if owner == "me" and me is not None else owner
    if given.get("run"):
        out["run"] = require_type(str(given["run"]), "pipelinejob_run").removeprefix("uri:urn:")
    return out


def since(text: str, *, path: str = "updated_since") -> str:
    """An RFC 3339 date-time in the stored form: dates are compared as text, so
    ``...T10:00:00+02:00`` or ``...T08:00:00Z`` (no milliseconds) must be rewritten
    as the service writes dates, or they would select the wrong jobs. A moment whose
    UTC form falls outside years 1 to 9999 (``9999-12-31T23:59:59-23:59``) is before
    or after every stored date."""
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(
            f"{path} must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z, not {text!r}",
            path=path,
        ) from exc
    if moment.tzinfo is None:
        raise ValidationError(
            f"{path} needs its offset (Z or +hh:mm; a '+' in a URL is %2B), not {text!r}",
            path=path,
        )
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        return LATEST if moment.year == 9999 else EARLIEST
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
