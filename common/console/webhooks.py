"""Webhooks in the console (issue 16): the subscriptions and each one's deliveries.

``/ui/webhooks`` lists subscriptions newest first — every one for an admin, the
signed-in key's own for anyone else — with whether each is enabled and, if not, why.
``/ui/webhooks/<id>`` shows one and a page of its recent delivery attempts (status
code, error, duration), newest first. Read only: subscriptions are made and deleted
through the API (``POST /webhooks``), whose answer is the only place a secret is
ever shown; these pages read through
:func:`pipelinejobs.domain.subscriptions.public`, which has none.
"""

from __future__ import annotations

from typing import Any

from flask import request

from pipelinejobs.access.keys import owner_label
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.console import views
from pipelinejobs.console.web import bp, console, principal, render
from pipelinejobs.domain.subscriptions import Subscriptions, public
from pipelinejobs.errors import NotFound


def _subscriptions() -> Subscriptions:
    found: Subscriptions = console().runtime.notices.subscriptions
    return found


def _visible(webhook_id: str) -> Document:
    """The subscription, if the signed-in key may see it (404 as if absent otherwise)."""
    try:
        sub = _subscriptions().get(webhook_id)
    except NotFound:
        sub = None
    me = principal()
    if sub is None or (not me.is_admin and sub.get("owner") != owner_label(me.owner)):
        raise NotFound(f"no webhook subscription {webhook_id}", id=webhook_id)
    return public(sub)


@bp.get("/webhooks")
def webhooks() -> Any:
    me = principal()
    cursor = request.args.get("cursor", "").strip()
    owner = None if me.is_admin else owner_label(me.owner)
    page = _subscriptions().page(owner, limit=views.PAGE, after=cursor or None)
    return render(
        "console/webhooks.html",
        title="Webhooks",
        rows=[public(s) for s in page.items],
        next=page.next,
        cursor=cursor,
        everyone=me.is_admin,
    )


@bp.get("/webhooks/<webhook_id>")
def webhook(webhook_id: str) -> Any:
    sub = _visible(webhook_id)
    cursor = request.args.get("cursor", "").strip()
    page = _subscriptions().deliveries(webhook_id, limit=views.PAGE, after=cursor or None)
    return render(
        "console/webhook.html",
        title=f"Webhook {webhook_id}",
        sub=sub,
        deliveries=[public(d) for d in page.items],
        next=page.next,
        cursor=cursor,
    )
