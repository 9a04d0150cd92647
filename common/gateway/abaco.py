"""Abaco v2's wire where it differs from the gateway's own habits: messages, links, paging.

**A message wrapped in ``message``.** Abaco's clients send a message as a ``message``
field: agavepy's ``sendMessage(actorId, body={"message": X})`` (what every Reactor's
``rx.send_message`` does) and tapipy's ``actors.send_message(message=X)`` post the JSON
``{"message": X}``, and ``curl -d message=...`` (Abaco's classic form) posts the form
field ``message=<text>``. So, for an actor none of whose schemas defines a top-level
``message`` field (none of the four here), a JSON body that is exactly
``{"message": X}`` is read as the message X, and a form body that is exactly
``message=<text>`` as the message the text holds. X that is a string is the
message's JSON text (``abaco run -m "$(jq -c . msg.json)"`` sends it so), decoded like
a body; any other X is the message itself. Both go through the same boundary decoder
(:mod:`pipelinejobs.access.boundary`) and then the actor's own validation, so an
unwrapped message is refused exactly as the same message posted bare would be, its
errors naming paths inside the message. A body with any other field beside
``message`` is left as it is. An actor whose schema has a ``message`` field of its
own would take ``{"message": ...}`` as it is: the rule is decided per actor, from its
schemas.

**Links.** ``_links`` are absolute URLs on the public base URL
(:func:`pipelinejobs.gateway.public_url.base_url`): ``gateway.public_url`` when set,
else the request's own scheme and host — ``X-Forwarded-Proto`` / ``X-Forwarded-Host``
believed only from an address ``gateway.trusted_proxies`` lists (a TLS-terminating
proxy), since anyone can send those headers.

**Paging by offset.** Abaco pages with ``limit`` and ``offset``; this gateway with
opaque cursors (a page's ``next``), which cost the same on page 1 and page 10,000.
``offset`` is honoured — agavepy's ``listExecutions(limit=2, offset=2)`` gets the
third and fourth executions — by reading past the ``offset`` first ones in pages; that
costs a read of every execution it skips, so it is bounded by :data:`MAX_OFFSET`,
beyond which the answer is a 400 that says to follow ``next`` instead. With a
``cursor`` too, the offset counts from where the cursor points.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from typing import Any

from flask import current_app, request

from pipelinejobs.access import boundary
from pipelinejobs.adapters.store.base import Page
from pipelinejobs.domain import validation
from pipelinejobs.errors import MalformedMessage, ValidationError
from pipelinejobs.gateway import public_url
from pipelinejobs.gateway.http import read_json_body
from pipelinejobs.runtime.actor import Actor

#: The field Abaco's clients wrap a message in.
FIELD = "message"
FORM_TYPES = ("", "application/x-www-form-urlencoded")
#: The largest ``offset`` honoured (each skipped record is read): beyond, page with
#: ``cursor``.
MAX_OFFSET = 10_000
#: Abaco's actor status when something consumes its queue, and when nothing was seen to.
READY, WAITING = "READY", "SUBMITTED"


def _fields(schema: Any, docs: dict[str, Any], seen: frozenset[str]) -> set[str]:
    """The top-level property names a schema (and what it combines or refers to) defines."""
    if not isinstance(schema, dict):
        return set()
    names = set(schema.get("properties") or {})
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or ():
            names |= _fields(sub, docs, seen)
    for key in ("if", "then", "else"):
        names |= _fields(schema.get(key), docs, seen)
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.endswith(".json"):
        name = ref.rsplit("/", 1)[-1].removesuffix(".json")
        if name in docs and name not in seen:
            names |= _fields(docs[name], docs, seen | {name})
    return names


@functools.cache
def defines_message(accepts: tuple[str, ...]) -> bool:
    """Whether any of these schemas defines a top-level ``message`` field: then a
    ``{"message": ...}`` body is that actor's own message and is not unwrapped."""
    docs = validation.schema_documents()
    return any(FIELD in _fields(docs[name], docs, frozenset({name})) for name in accepts)


def _message_text(text: str, depth: int) -> Any:
    """The message a ``message`` string holds: its JSON text, decoded at the boundary
    (an empty one is an empty message, as an empty body is)."""
    if not text.strip():
        return {}
    try:
        return boundary.decode(text, max_depth=depth, where=FIELD)
    except MalformedMessage as exc:
        raise MalformedMessage(
            f"the {FIELD} field is read as the message's JSON text: {exc.message}",
            **exc.detail,
        ) from exc


def _form_message(raw: bytes) -> str | None:
    """The text of a form body that is exactly ``message=<text>``; None for any other
    body (JSON, which ``curl --data`` also sends as a form)."""
    if (request.mimetype or "") not in FORM_TYPES or not raw.startswith(FIELD.encode() + b"="):
        return None
    try:
        pairs = urllib.parse.parse_qsl(
            raw.decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except (UnicodeError, ValueError) as exc:
        raise MalformedMessage(
            f"the form body is not message=<URL-encoded JSON text>: {exc}", path=FIELD
        ) from None
    if len(pairs) != 1:
        raise MalformedMessage(
            f"a form body takes one field, message=<JSON text>; this one has "
            f"{', '.join(sorted({k for k, _ in pairs}))}",
            path=FIELD,
        )
    return pairs[0][1]


def read_message(actor: Actor) -> Any:
    """The message a POST to ``actor``'s ``/messages`` carries (see the module
    docstring): the JSON body, or what its ``message`` wrapper holds."""
    depth = current_app.config["PIPELINEJOBS"].config.gateway.max_depth
    wraps = not defines_message(tuple(actor.accepts))
    if wraps:
        text = _form_message(request.get_data(cache=True))
        if text is not None:
            return _message_text(text, depth)
    body = read_json_body()
    if wraps and isinstance(body, dict) and list(body) == [FIELD]:
        inner = body[FIELD]
        body = _message_text(inner, depth) if isinstance(inner, str) else inner
    if body is None:  # a JSON null: not a message (no body at all is an empty one)
        raise MalformedMessage(
            "the message is null; send a JSON object, or no body at all", path=""
        )
    return body


def base() -> str:
    """The public base URL of this request (``_links`` start with it)."""
    return public_url.base_url(current_app.config["PIPELINEJOBS"].config)


def offset_arg() -> int:
    """The request's ``offset`` (already checked against its declaration), 0 when it
    has none; a 400 beyond :data:`MAX_OFFSET`."""
    raw = request.args.get("offset")
    if raw is None:
        return 0
    offset = int(raw)
    if offset > MAX_OFFSET:
        raise ValidationError(
            f"offset is at most {MAX_OFFSET} (each record before it is read); page "
            f"further by following each page's next as cursor",
            path="offset",
        )
    return offset


def skip(
    fetch: Callable[[int, str | None], Page],
    offset: int,
    limit: int,
    most: int,
    after: str | None = None,
) -> Page:
    """The page of ``limit`` records after the first ``offset`` ones from cursor
    ``after`` (the start when None), read by ``fetch(limit, after)`` in pages of at most
    ``most``; its ``next`` continues it."""
    while offset > 0:
        page = fetch(min(offset, most), after)
        offset -= len(page.items) + len(page.skipped)
        after = page.next
        if after is None:  # fewer records than the offset: an empty last page
            return Page(items=[], next=None)
    return fetch(limit, after)
