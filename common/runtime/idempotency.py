"""Retry-safe POSTs: an ``Idempotency-Key`` names one logical request.

A client that timed out, lost its connection or got a 5xx cannot know whether its
message was taken. Sending it again must not apply it twice, so a POST may carry an
``Idempotency-Key`` header (any client: curl, the CLI, agavepy with a header added)
and a repeat with the same key returns the *first* execution instead of making a
second.

No table of keys is kept: the key decides the execution's id. The id is derived from
the caller (its key or nonce id, so two callers' keys never meet), the actor and the
key, and the executions' unique id does the rest — twenty copies sent at once race
for one insert, and nineteen find the winner's record (``Executions.submit``). A key
names its execution for ``gateway.idempotency_ttl`` seconds (24 h by default); after
that the same key starts a new *generation* — the next derived id — so a client
that reuses a key for a nightly job gets a new execution each night. A repeat whose
message or parameters differ from the first is refused (409): it is a client bug,
and quietly answering with the first request's execution would hide it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import re2

from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.domain.clock import parse
from pipelinejobs.errors import Conflict, ValidationError
from pipelinejobs.runtime.executions import derived_id, stored_message

HEADER = "Idempotency-Key"
#: Visible ASCII, as the IETF draft (httpapi-idempotency-key-header) suggests keys be
#: (a UUID is typical); long enough for any client's scheme, short enough to log.
_FORM = re2.compile(r"[\x21-\x7e]{1,255}")


def parse_key(value: str | None) -> str | None:
    """The header's key, None when absent; a 400 naming the header when malformed."""
    if value is None:
        return None
    if not _FORM.fullmatch(value):
        raise ValidationError(
            f"the {HEADER} header must be 1 to 255 visible ASCII characters (a UUID is a "
            f"good choice)",
            path=HEADER,
        )
    return value


def _age(execution: Document, now: float) -> float:
    return now - parse(str(execution["created"]))


def execution_id(store: Store, *, caller: str, actor: str, key: str, ttl: float, now: float) -> str:
    """The id of the execution this request is: the current generation's, whether
    or not it exists yet (the caller submits with it either way)."""
    for generation in itertools.count():
        candidate = derived_id("idempotency", caller, actor, key, str(generation))
        existing = store.get("executions", candidate)
        if existing is None or _age(existing, now) < ttl:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def require_same(execution: Document, message: Any, params: Mapping[str, Any]) -> None:
    """Refuse a repeat that is not the request the key first named (409)."""
    if execution.get("message") != stored_message(message) or dict(
        execution.get("params") or {}
    ) != dict(params):
        raise Conflict(
            f"this {HEADER} was first used for a different request (execution "
            f"{execution['id']}); use a new key for a new request",
            execution=execution["id"],
        )
