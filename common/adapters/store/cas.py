"""The one compare-and-set loop: read → change → conditional write, retried.

Every read-modify-write of a stored document goes through :func:`compare_and_set`
(jobs, executions, keys, nonces, pipelines), so they share one retry budget, one
back-off and one way of running out: :class:`~pipelinejobs.errors.TooManyConflicts`,
which the gateway answers with 503 and ``Retry-After`` — a caller may simply retry,
because nothing was written.

``change`` is handed the freshly read document and returns what to write (a
:class:`Change`), or ``None`` when there is nothing to write (the loop then returns
the document as read), or raises to refuse — a refusal is decided against the very
version the write would replace, and nothing is written. A lost race re-reads and
calls ``change`` again, so it must be a function of the document it is given (plus
what it closes over), not of an earlier read.

Each lost race is announced as :data:`pipelinejobs.signals.cas_conflict`, running out
as ``cas_gave_up`` (the metrics count them per collection: contention shows before it
turns into 503s).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelinejobs import signals
from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.errors import NotFound, TooManyConflicts

#: Compare-and-set attempts before giving up (``store.cas_retries`` overrides it).
DEFAULT_RETRIES = 1000
#: What a caller told to retry after running out should wait (s): the contention that
#: exhausted the budget is a burst, over in well under a second.
RETRY_AFTER = 1


@dataclass(frozen=True)
class Change:
    """What one compare-and-set writes: top-level fields set, items appended."""

    set: Mapping[str, Any] = field(default_factory=dict)
    push: Mapping[str, Sequence[Any]] = field(default_factory=dict)


def back_off(attempt: int) -> None:
    """Jittered exponential pause after a lost race: the first retries are immediate,
    later ones spread the contenders out (at most ~20 ms)."""
    if attempt >= 2:
        time.sleep(random.uniform(0, min(0.02, 0.0005 * 2 ** (attempt - 2))))


def compare_and_set(
    store: Store,
    collection: str,
    key: Any,
    change: Callable[[Document], Change | None],
    *,
    retries: int = DEFAULT_RETRIES,
    current: Document | None = None,
    what: str | None = None,
) -> Document:
    """Apply ``change`` to document ``key`` atomically; the document written (or read,
    when ``change`` had nothing to write). ``current``: a copy the caller just read,
    which saves the first read on a path where it is almost always still current.
    NotFound if there is no such document; TooManyConflicts past ``retries``."""
    doc = current
    for attempt in range(retries + 1):
        if doc is None:
            doc = store.get(collection, key)
            if doc is None:
                raise NotFound(f"no {collection} document {key}", key=key)
        wanted = change(doc)
        if wanted is None:
            return doc
        new = store.update(
            collection, key, version=doc["version"], set=wanted.set, push=wanted.push
        )
        if new is not None:
            return new
        signals.cas_conflict.send(collection=collection)
        doc = None
        back_off(attempt)
    signals.cas_gave_up.send(collection=collection)
    raise TooManyConflicts(
        f"{what or f'{collection} {key}'}: {retries} concurrent writers won in a row",
        key=key,
        retry_after=RETRY_AFTER,
    )
