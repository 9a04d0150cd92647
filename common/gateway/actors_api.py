"""Abaco's actors API: messages, executions, logs and nonces of one actor.

``POST /actors/v2/<actor>/messages`` takes a JSON body, URL parameters, or both (as
each actor accepts) — a body that is only ``{"message": X}``, or the form field
``message=``, is Abaco's clients' wrapping and is read as X
(:mod:`pipelinejobs.gateway.abaco`) —, validates the message with the actor's own ``parse`` before
anything is queued, stores the execution and publishes it. With
``?_abaco_synchronous=true`` (or ``sync=true``) it waits, bounded by
``gateway.sync_timeout``, and answers with the finished execution — an actor's
refusal mapped to the HTTP code of its error.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, current_app, g, request

from pipelinejobs.access.boundary import check_params
from pipelinejobs.access.keys import owner_label
from pipelinejobs.access.nonces import public as public_nonce
from pipelinejobs.adapters.store.base import Document, not_found
from pipelinejobs.domain import validation
from pipelinejobs.errors import NotFound, StoreError, ValidationError, http_status_named
from pipelinejobs.gateway import abaco, public_url
from pipelinejobs.gateway.auth import requires
from pipelinejobs.gateway.http import (
    REDACTED,
    envelope,
    failure,
    page_args,
    read_json_body,
    redact,
    truthy,
)
from pipelinejobs.runtime import idempotency
from pipelinejobs.runtime.executions import FINISHED_STATUSES

bp = Blueprint("actors", __name__)
log = logging.getLogger("pipelinejobs.gateway")

#: URL parameters that steer the gateway and are not part of the message (agavepy's
#: ``environment``: see pipelinejobs.gateway.parameters.ENVIRONMENT).
RESERVED = frozenset({"x-nonce", "_abaco_synchronous", "sync", "environment"})
#: The fields of a nonce request (schemas/nonce_request.json).
NONCE_FIELDS = ("level", "maxUses", "description", "expiresIn")
#: The same fields as Tapis v3 (tapipy's ``create_nonce(max_uses=...)``) spells them.
SNAKE_CASE = {"max_uses": "maxUses", "expires_in": "expiresIn"}


def _gateway() -> Any:
    return current_app.config["PIPELINEJOBS"]


def _links(alias: str, execution_id: str, owner: str | None = None) -> dict[str, str]:
    """An execution's ``_links``: absolute URLs on the public base URL (through a
    trusted TLS proxy, its scheme and host: :mod:`pipelinejobs.gateway.abaco`), and the
    owner as the API names it."""
    where = f"{abaco.base()}/actors/v2/{alias}/executions/{execution_id}"
    return {
        "self": where,
        "logs": f"{where}/logs",
        "owner": owner_label(owner if owner is not None else g.principal.owner),
    }


def _view(execution: Document) -> dict[str, Any]:
    """An execution as a caller sees it: secrets in the message masked; the result
    (which may hold a new document's token) only for whoever sent it, or an admin."""
    own = g.principal.is_admin or execution.get("owner") == g.principal.owner
    out = {
        "id": execution["id"],
        "actorId": execution["actor"],
        "status": execution["status"],
        "message": redact(execution.get("message")),
        "params": redact(execution.get("params") or {}),
        "result": execution.get("result") if own else redact(execution.get("result")),
        "error": execution.get("error"),
        "progress": execution.get("progress"),
        "attempts": execution.get("attempts", 0),
        "parent": execution.get("parent"),
        "createTime": execution["created"],
        "startTime": execution.get("started"),
        "finishTime": execution.get("finished"),
        # Abaco's names for who sent it, when it arrived, and where to find it.
        "executor": owner_label(str(execution.get("owner") or "")) or None,
        "messageReceivedTime": execution["created"],
        "workerId": execution.get("worker"),
        "_links": _links(execution["actor"], execution["id"], str(execution.get("owner") or "")),
    }
    return out


@bp.post("/actors/v2/<actor>/messages")
@requires("EXECUTE")
def post_message(actor: str) -> Any:
    gateway = _gateway()
    message = abaco.read_message(g.actor)
    args = check_params(request.args, multi=("environment",))
    params = {k: v for k, v in args.items() if k not in RESERVED}
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    wait = truthy(request.args.get("_abaco_synchronous")) or truthy(request.args.get("sync"))
    echo = redact(message)  # made before anything is stored: nothing after may fail
    execution_id = None
    if key is not None:
        execution_id = idempotency.execution_id(
            gateway.store,
            caller=f"{g.principal.kind}:{g.principal.id}",
            actor=g.actor.alias,
            key=key,
            ttl=gateway.config.gateway.idempotency_ttl,
            now=gateway.runtime.clock(),
        )
    execution = gateway.runtime.submit(
        g.actor.alias,
        message,
        params,
        execution_id=execution_id,
        sender=f"key:{g.principal.owner[:12]}",
        owner=g.principal.owner,
        role=g.principal.sends_as,
        base_url=public_url.base_url(gateway.config),
    )
    if key is not None:
        # Refused before anything new was stored: the existing execution is untouched.
        idempotency.require_same(execution, message, params)
    links = _links(g.actor.alias, execution["id"])
    if not wait:
        return envelope(
            {"executionId": execution["id"], "msg": echo, "_links": links},
            "The request was successful",
        )
    deadline = time.monotonic() + gateway.config.gateway.sync_timeout
    while execution["status"] not in FINISHED_STATUSES and time.monotonic() < deadline:
        time.sleep(0.01)
        try:
            execution = gateway.runtime.executions.get(execution["id"])
        except StoreError:
            # The message is accepted: a store hiccup while waiting must not turn that
            # into an error the client would retry. It gets the 202 "still running".
            log.warning("waiting on execution %s: the store failed", execution["id"])
            break
    view = {
        **_view(execution),
        "executionId": execution["id"],
        "_links": links,
        "logs": execution.get("logs", []),
    }
    if execution["status"] == "COMPLETE":
        return envelope(view, "The execution completed")
    if execution["status"] == "ERROR":
        error = execution.get("error") or {}
        return failure(
            error.get("message", "the execution failed"),
            view,
            http_status_named(str(error.get("error", ""))),
        )
    return envelope(
        view,
        f"The execution is still {execution['status']} after "
        f"{gateway.config.gateway.sync_timeout:.0f} s",
        202,
    )


def actor_execution(alias: str, execution_id: str) -> Document:
    """The execution, if it is ``alias``'s: a quarantined one answers 404 with the
    reason, a corrupt one 500 naming it (see :func:`pipelinejobs.gateway.read_api.one`)."""
    store = _gateway().store
    execution = store.get("executions", execution_id)
    message = f"no execution {execution_id} of actor {alias}"
    if execution is None:
        raise not_found(store, "executions", execution_id, message, execution=execution_id)
    if execution.get("actor") != alias:
        raise NotFound(message, execution=execution_id)
    return execution


@bp.get("/actors/v2/<actor>/executions")
@requires("READ")
def list_executions(actor: str) -> Any:
    """Newest first: a page from ``cursor`` and (Abaco's paging) ``offset`` past it."""
    limit, cursor = page_args()
    offset = abaco.offset_arg()
    gateway = _gateway()
    status = request.args.get("status") or None

    def fetch(size: int, after: str | None) -> Any:
        return gateway.runtime.executions.page(
            g.actor.alias, limit=size, after=after, status=status
        )

    page = abaco.skip(fetch, offset, limit, gateway.config.gateway.max_page_size, cursor)
    summaries = [
        {
            "id": e["id"],
            "status": e.get("status"),
            "createTime": e.get("created"),
            "messageReceivedTime": e.get("created"),
            "startTime": e.get("started"),
            "finishTime": e.get("finished"),
        }
        for e in page.items
    ]
    where = {"actor": g.actor.alias, **({"status": status} if status else {})}
    total = gateway.store.count("executions", where)
    base = f"{abaco.base()}/actors/v2/{g.actor.alias}"
    return envelope(
        {
            "actorId": g.actor.alias,
            "executions": summaries,
            "next": page.next,
            "totalExecutions": total,
            "_links": {"self": f"{base}/executions", "actor": base},
        }
    )


@bp.get("/actors/v2/<actor>/executions/<execution_id>")
@requires("READ")
def get_execution(actor: str, execution_id: str) -> Any:
    return envelope(_view(actor_execution(g.actor.alias, execution_id)))


@bp.get("/actors/v2/<actor>/executions/<execution_id>/logs")
@requires("READ")
def get_logs(actor: str, execution_id: str) -> Any:
    execution = actor_execution(g.actor.alias, execution_id)
    return envelope(
        {
            "logs": "\n".join(execution.get("logs") or []),
            "_links": _links(g.actor.alias, execution_id, str(execution.get("owner") or "")),
        }
    )


@bp.post("/actors/v2/<actor>/nonces")
@requires("EXECUTE", keys_only=True)
def create_nonce(actor: str) -> Any:
    """A nonce made from a ``nonce_request`` body (schemas/nonce_request.json): the
    schema bounds every field, so a use count or a lifetime no clock can hold is a
    400 naming the field, not an overflow."""
    body = read_json_body()
    if not isinstance(body, dict):
        raise ValidationError("the nonce request must be a JSON object", path="")
    for snake, camel in SNAKE_CASE.items():
        if snake in body:
            if camel in body:
                raise ValidationError(f"give {camel} or {snake}, not both", path=snake)
            body[camel] = body.pop(snake)
    unknown = sorted(set(body) - set(NONCE_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown nonce fields {unknown}; allowed: {', '.join(NONCE_FIELDS)}",
            path=unknown[0],
        )
    validation.validate("nonce_request", body)
    max_uses = body.get("maxUses", -1)
    secret, doc = _gateway().nonces.create(
        g.actor.alias,
        g.principal,
        level=body.get("level", "EXECUTE"),
        # JSON Schema's integer is a number's value, not its spelling: 5.0 is 5.
        max_uses=int(max_uses),
        description=body.get("description", ""),
        expires_in=body.get("expiresIn"),
    )
    shown = {**_nonce_view(doc), "id": secret}
    return envelope(shown, "Nonce created", 201)


@bp.get("/actors/v2/<actor>/nonces")
@requires("READ", keys_only=True)
def list_nonces(actor: str) -> Any:
    mine = [
        n
        for n in _gateway().nonces.list(g.actor.alias)
        if g.principal.is_admin or n["owner"] == g.principal.owner
    ]
    return envelope([_nonce_view(n) for n in mine])


def _nonce_view(doc: Document) -> dict[str, Any]:
    """A nonce in Abaco's fields: its usable id for its owner (as Abaco lists it; see
    :mod:`pipelinejobs.access.nonces`), else — an admin looking at another's, or one
    made with a random id — the 12 characters naming it; and its ``_links``."""
    shown = _gateway().nonces.reveal(doc) if doc["owner"] == g.principal.owner else None
    view = public_nonce(doc, shown)
    base = f"{abaco.base()}/actors/v2/{doc['actor']}"
    view["_links"] = {"self": f"{base}/nonces/{doc['id'][:12]}", "actor": base}
    return view


def _own_nonce(alias: str, nonce_id: str) -> Document:
    doc = _gateway().nonces.find(alias, nonce_id)
    if not (g.principal.is_admin or doc["owner"] == g.principal.owner):
        raise NotFound(f"no nonce {nonce_id!r} of yours on actor {alias}")
    return doc


@bp.get("/actors/v2/<actor>/nonces/<nonce_id>")
@requires("READ", keys_only=True)
def get_nonce(actor: str, nonce_id: str) -> Any:
    return envelope(_nonce_view(_own_nonce(g.actor.alias, nonce_id)))


@bp.delete("/actors/v2/<actor>/nonces/<nonce_id>")
@requires("EXECUTE", keys_only=True)
def delete_nonce(actor: str, nonce_id: str) -> Any:
    doc = _own_nonce(g.actor.alias, nonce_id)
    _gateway().store.delete("nonces", doc["id"])
    return envelope(None, f"Nonce {doc['id'][:12]} deleted")


__all__ = ["bp", "REDACTED"]
