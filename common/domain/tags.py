"""Tags: string → string labels on jobs, set at launch and changed by a ``tag`` message.

Their form (at most :data:`MAX_TAGS`, keys of 1–64 of ``A-Za-z0-9_.-``, values of at
most 256 characters without control characters) is the schema
``pipelinejob_tags.json``'s; this module adds what a schema cannot say: the number of
tags a change *leaves* on a job, and how tags are stored for filtering. A job keeps
``tags`` (the object) and ``tag_pairs`` (``key:value`` strings, sorted): the store
indexes the latter as an array field, so ``GET /jobs?tag=key:value`` is one index
lookup. A key holds no ``:``, so the first ``:`` of a filter separates key and value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pipelinejobs.errors import ValidationError

MAX_TAGS = 32
KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
MAX_VALUE = 256
#: The stored field the store indexes (``CollectionSpec.multi`` of jobs).
PAIRS = "tag_pairs"


def pairs(tags: Mapping[str, str]) -> list[str]:
    """``{"k": "v"}`` as the sorted ``["k:v"]`` the store indexes."""
    return sorted(f"{k}:{v}" for k, v in tags.items())


def fields(tags: Mapping[str, str]) -> dict[str, Any]:
    """The stored fields of ``tags``: ``tags`` and ``tag_pairs``."""
    return {"tags": dict(tags), PAIRS: pairs(tags)}


def changed(
    current: Mapping[str, str] | None, wanted: Mapping[str, str], remove: Iterable[str]
) -> dict[str, str]:
    """``current`` with ``wanted`` set, then the keys of ``remove`` removed (a key
    both set and removed is refused: which one was meant?). ValidationError naming the
    field when the result would hold more than :data:`MAX_TAGS` tags."""
    gone = list(remove)
    both = sorted(wanted.keys() & frozenset(gone))
    if both:
        raise ValidationError(
            f"tag {both[0]!r} is both set and removed: send one or the other", path="remove"
        )
    out = {**dict(current or {}), **dict(wanted)}
    for key in gone:
        out.pop(key, None)
    if len(out) > MAX_TAGS:
        raise ValidationError(
            f"a job holds at most {MAX_TAGS} tags; this change would leave {len(out)} "
            f"(remove some first)",
            path="set",
        )
    return out


def parse_filter(text: str) -> str:
    """A ``key:value`` filter as the stored pair it matches; ValidationError naming the
    ``tag`` parameter when it has no ``:`` or its key is not a tag key."""
    key, colon, value = text.partition(":")
    if not colon or not KEY.fullmatch(key) or len(value) > MAX_VALUE:
        raise ValidationError(
            f"tag filter {text[:80]!r} must be key:value (a key of 1-64 of A-Za-z0-9_.-, "
            f"a value of at most {MAX_VALUE} characters)",
            path="tag",
        )
    return f"{key}:{value}"
