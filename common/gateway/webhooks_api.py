"""The webhooks API (issue 16): subscriptions made, listed, shown and deleted, and
each one's delivery attempts.

``POST /webhooks`` writes the subscription directly, as ``POST .../nonces`` writes a
nonce: a subscription is a credential-like setting of the gateway's caller, not an
event of the lifecycle, so it needs no actor; the deliveries it leads to are the
notifier actor's work, driven by messages.

Who sees what: an admin key every subscription; any other key its own only (another
key's answers 404, as if absent, so ids cannot be probed). A user key's subscription
delivers only its own jobs' events (:mod:`pipelinejobs.runtime.notices`), and the
jobs and runs it names in its filter must be its own (403 naming the field).
Nonces are refused: a nonce is a single-purpose credential for one actor.

The secret is in the answer to ``POST`` only, and never again.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, request

from pipelinejobs.adapters.store.base import Document
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.domain.subscriptions import Subscriptions, public
from pipelinejobs.errors import NotFound, PermissionDenied, ValidationError
from pipelinejobs.gateway.auth import caller_owner, requires
from pipelinejobs.gateway.http import envelope, page_args, read_json_body

bp = Blueprint("webhooks", __name__)


def _subscriptions() -> Subscriptions:
    subscriptions: Subscriptions = current_app.config["PIPELINEJOBS"].runtime.notices.subscriptions
    return subscriptions


def _visible(webhook_id: str) -> Document:
    """Subscription ``webhook_id`` if the caller may see it; NotFound otherwise."""
    try:
        sub = _subscriptions().get(webhook_id)
    except NotFound:
        sub = None
    if sub is None or (not g.principal.is_admin and sub.get("owner") != caller_owner()):
        raise NotFound(f"no webhook subscription {webhook_id}", id=webhook_id)
    return sub


def _check_own(body: Any) -> None:
    """A user key may only name its own jobs and runs in a filter."""
    if g.principal.is_admin or not isinstance(body, dict):
        return
    flt = body.get("filter")
    if not isinstance(flt, dict):
        return
    store = current_app.config["PIPELINEJOBS"].store
    for field, collection, kind in (
        ("jobs", "jobs", "pipelinejob"),
        ("runs", "runs", "pipelinejob_run"),
    ):
        values = flt.get(field) or []
        for value in values if isinstance(values, list) else [values]:
            path = f"filter.{field}"
            try:
                require_type(str(value), kind)
            except ValidationError as exc:
                raise ValidationError(f"{path}: {exc.message}", path=path) from exc
            doc = store.get(collection, value)
            if doc is None or doc.get("owner") != caller_owner():
                raise PermissionDenied(
                    f"{path}: {value} is not one of this key's {collection}", path=path
                )


@bp.post("/webhooks")
@requires("UPDATE", keys_only=True)
def create_webhook() -> Any:
    """A new subscription; its secret is in this answer and never again."""
    body = read_json_body(allow_empty=False)
    _check_own(body)
    gateway = current_app.config["PIPELINEJOBS"]
    made, secret = _subscriptions().create(
        body,
        owner=caller_owner(),
        role=g.principal.role,
        allow_private=gateway.config.webhooks_allow_private,
    )
    gateway.runtime.notices.forget()  # heard of here at once, elsewhere within the cache
    return envelope(
        {**made, "secret": secret},
        "subscription created; keep its secret: it is not shown again",
        201,
    )


@bp.get("/webhooks")
@requires("READ", keys_only=True)
def list_webhooks() -> Any:
    """Subscriptions, newest first: all of them for an admin key (or one owner's
    with ``owner``), the caller's own for any other."""
    limit, cursor = page_args()
    owner: str | None = caller_owner()
    if g.principal.is_admin:
        wanted = request.args.get("owner")
        owner = caller_owner() if wanted == "me" else wanted
    page = _subscriptions().page(owner, limit=limit, after=cursor)
    return envelope({"webhooks": [public(s) for s in page.items], "next": page.next})


@bp.get("/webhooks/<webhook_id>")
@requires("READ", keys_only=True)
def get_webhook(webhook_id: str) -> Any:
    """One subscription (enabled or why not, its consecutive failures), no secret."""
    return envelope(public(_visible(webhook_id)))


@bp.delete("/webhooks/<webhook_id>")
@requires("UPDATE", keys_only=True)
def delete_webhook(webhook_id: str) -> Any:
    """Remove a subscription: no delivery starts for it afterwards."""
    _visible(webhook_id)
    _subscriptions().delete(webhook_id)
    current_app.config["PIPELINEJOBS"].runtime.notices.forget()
    return envelope({"id": webhook_id, "deleted": True})


@bp.post("/webhooks/<webhook_id>/enable")
@requires("UPDATE", keys_only=True)
def enable_webhook(webhook_id: str) -> Any:
    """Enable a disabled subscription again (its receiver is fixed): deliveries resume
    for each job from where they stopped, at the job's next event."""
    read_json_body(allow_empty=True)
    sub = _visible(webhook_id)
    was = bool(sub.get("enabled"))
    enabled = _subscriptions().enable(webhook_id)
    current_app.config["PIPELINEJOBS"].runtime.notices.forget()
    message = "already enabled" if was else "subscription enabled"
    return envelope(public(enabled), message)


@bp.get("/webhooks/<webhook_id>/deliveries")
@requires("READ", keys_only=True)
def webhook_deliveries(webhook_id: str) -> Any:
    """A page of the subscription's delivery attempts, newest first."""
    _visible(webhook_id)
    limit, cursor = page_args()
    page = _subscriptions().deliveries(webhook_id, limit=limit, after=cursor)
    return envelope({"deliveries": [public(d) for d in page.items], "next": page.next})
