"""Webhook subscriptions in the store: made, listed, deleted, disabled; and the
record of every delivery attempt. (Where each subscription is in each job's events:
:mod:`pipelinejobs.domain.webhook_cursors`.)

Two collections:

* ``webhooks``, one document per subscription: ``{id, url, filter, secret, owner,
  role, batch, enabled, failures, disabled_reason, created, updated}``. The secret is stored
  because the notifier signs with it; :func:`public` is the only shape that leaves
  this module for the API and the console, and it has no secret.
* ``webhook_deliveries``: one record per attempt (status code, error, duration),
  newest first per subscription.

``failures`` counts consecutive failed attempts; a success resets it; reaching the
configured limit disables the subscription with the reason.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from pipelinejobs.adapters.store.base import Document, Page, Store
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES, Change, compare_and_set
from pipelinejobs.domain import validation
from pipelinejobs.domain.clock import Clock, now, system_clock
from pipelinejobs.domain.webhooks import WebhookFilter, check_url
from pipelinejobs.errors import NotFound, ValidationError

SUBSCRIPTIONS = "webhooks"
DELIVERIES = "webhook_deliveries"
#: Fields never shown outside this module.
PRIVATE = ("secret", "version")
MIN_SECRET = 16
MAX_SECRET = 256
#: Most events one delivery (one POST) may carry (a subscription's ``batch``).
MAX_BATCH = 500


def public(doc: Mapping[str, Any]) -> Document:
    """A subscription as anyone may see it: without its secret."""
    return {k: v for k, v in doc.items() if k not in PRIVATE}


class Subscriptions:
    """Webhook subscriptions, their cursors and delivery records in one store."""

    def __init__(
        self, store: Store, *, clock: Clock = system_clock, retries: int = DEFAULT_RETRIES
    ) -> None:
        self.store = store
        self.clock = clock
        self.retries = retries

    # -- subscriptions -------------------------------------------------------------------

    def create(
        self,
        body: Any,
        *,
        owner: str,
        role: str,
        allow_private: bool,
    ) -> tuple[Document, str]:
        """A new subscription from a request body ``{url, filter?, secret?,
        description?, batch?}``; (its public form, its secret) — the secret is shown this once.
        ``owner``: the creating key's listed id; ``role``: its role."""
        if not isinstance(body, Mapping):
            raise ValidationError("the body must be a JSON object", path="")
        unknown = sorted(set(body) - {"url", "filter", "secret", "description", "batch"})
        if unknown:
            raise ValidationError(f"unknown field {unknown[0]!r}", path=unknown[0])
        url = check_url(body.get("url"), allow_private=allow_private)
        flt = WebhookFilter.parse(body.get("filter"))
        secret = body.get("secret")
        if secret is None:
            secret = secrets.token_hex(32)
        elif not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET:
            raise ValidationError(
                f"secret must be a string of {MIN_SECRET} to {MAX_SECRET} characters",
                path="secret",
            )
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            raise ValidationError("description must be text of at most 500", path="description")
        batch = body.get("batch", 1)
        if isinstance(batch, float) and batch.is_integer():
            batch = int(batch)  # 10.0 is the integer 10 in JSON (and in the schema)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
            raise ValidationError(
                f"batch must be an integer from 1 (one event per delivery) to {MAX_BATCH}, "
                f"not {batch!r}",
                path="batch",
            )
        # The checks above name the field in their own words; the schema (the OpenAPI
        # document's request body) is the backstop, so the two cannot disagree.
        validation.validate("webhook_subscription", dict(body))
        date = now(self.clock)
        doc: Document = {
            "id": "wh-" + secrets.token_hex(8),
            "url": url,
            "filter": flt.as_json(),
            "secret": secret,
            "description": description,
            "batch": batch,
            "owner": owner,
            "role": role,
            "enabled": True,
            "failures": 0,
            "disabled_reason": None,
            "created": date,
            "updated": date,
        }
        stored = self.store.insert(SUBSCRIPTIONS, doc)
        return public(stored), secret

    def get(self, sub_id: str) -> Document:
        """The whole subscription (with its secret: for the notifier); NotFound."""
        doc = self.store.get(SUBSCRIPTIONS, sub_id)
        if doc is None:
            raise NotFound(f"no webhook subscription {sub_id}", id=sub_id)
        return doc

    def page(self, owner: str | None = None, *, limit: int = 100, after: str | None = None) -> Page:
        """Subscriptions (``owner``'s, or all), newest first, whole: callers show
        them through :func:`public`."""
        where = {"owner": owner} if owner is not None else None
        return self.store.find(
            SUBSCRIPTIONS, where, order="created", descending=True, limit=limit, after=after
        )

    def enabled(self) -> list[Document]:
        """Every enabled subscription (the notifier's and the notice cache's read)."""
        found: list[Document] = []
        after = None
        while True:
            page = self.store.find(SUBSCRIPTIONS, {"enabled": True}, limit=500, after=after)
            found.extend(page.items)
            if page.next is None:
                return found
            after = page.next

    def delete(self, sub_id: str) -> bool:
        """Remove a subscription (its cursors and delivery records stay, orphaned and
        harmless: nothing offers events to a deleted subscription)."""
        return self.store.delete(SUBSCRIPTIONS, sub_id)

    def succeeded(self, sub: Document) -> None:
        """A delivery went through: consecutive failures start again from 0."""
        if int(sub.get("failures") or 0) == 0:
            return

        def change(doc: Document) -> Change | None:
            if not doc.get("failures"):
                return None
            return Change(set={"failures": 0, "updated": now(self.clock)})

        self._cas(sub["id"], change)

    def failed(self, sub: Document, reason: str, max_failures: int) -> Document:
        """One more consecutive failure; at ``max_failures`` the subscription is
        disabled, saying why. The subscription as written."""

        def change(doc: Document) -> Change | None:
            if not doc.get("enabled"):
                return None
            failures = int(doc.get("failures") or 0) + 1
            fields: dict[str, Any] = {"failures": failures, "updated": now(self.clock)}
            if failures >= max_failures:
                fields["enabled"] = False
                fields["disabled_reason"] = (
                    f"disabled after {failures} consecutive failed deliveries; last: {reason}"
                )
            return Change(set=fields)

        return self._cas(sub["id"], change)

    def disable(self, sub_id: str, reason: str) -> Document:
        """Disable a subscription with ``reason`` (retries ran out)."""

        def change(doc: Document) -> Change | None:
            if not doc.get("enabled"):
                return None
            return Change(
                set={"enabled": False, "disabled_reason": reason, "updated": now(self.clock)}
            )

        return self._cas(sub_id, change)

    def enable(self, sub_id: str) -> Document:
        """Enable a subscription again (after its receiver was fixed): failures back
        to 0, the reason cleared, and ``enabled_at`` noted — retry windows count from
        it, so a chain that began before the subscription was disabled does not
        disable it again at once. The subscription as written."""

        def change(doc: Document) -> Change | None:
            if doc.get("enabled"):
                return None
            date = now(self.clock)
            return Change(set={"enabled": True, "failures": 0, "disabled_reason": None,
                               "enabled_at": date, "updated": date})  # fmt: skip

        return self._cas(sub_id, change)

    def _cas(self, sub_id: str, change: Any) -> Document:
        return compare_and_set(
            self.store, SUBSCRIPTIONS, sub_id, change, retries=self.retries,
            what=f"webhook {sub_id}",
        )  # fmt: skip

    # -- delivery records ----------------------------------------------------------------

    def attempt(self, sub_id: str, **fields: Any) -> Document:
        """The record of one delivery attempt (``delivery_id``, ``job_uuid``, ``seq``,
        ``event``, ``status_code``, ``error``, ``duration_ms``, ``attempt``), to be
        stored with :meth:`record`. Its id sorts by time, so a subscription's page
        of them is newest first on the key alone."""
        return {
            "id": f"{time.time_ns():020d}-{secrets.token_hex(4)}",
            "subscription": sub_id,
            "date": now(self.clock),
            **fields,
        }

    def record(self, attempts: list[Document]) -> None:
        """Store delivery attempts, in one batch (one write for a run of deliveries)."""
        if attempts:
            self.store.put_many(DELIVERIES, attempts)

    def deliveries(self, sub_id: str, *, limit: int = 100, after: str | None = None) -> Page:
        """A page of ``sub_id``'s delivery attempts, newest first."""
        return self.store.find(
            DELIVERIES, {"subscription": sub_id}, order="id", descending=True, limit=limit,
            after=after,
        )  # fmt: skip
