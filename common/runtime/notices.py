"""Telling the notifier about applied job events (issue 16).

Every job event is applied by :class:`pipelinejobs.domain.jobs.Jobs` (``create`` and
``apply``), whoever applies it — an actor, the gateway, the CLI — so that is where
webhooks hear of them: the runtime registers :class:`Notices` as a listener of its
``Jobs``. For each applied event (not a duplicate), it checks the event against the
enabled subscriptions and, when at least one matches, submits one message to the
``notifier`` actor: ``{job_uuid, seq}``. The notifier works out the rest from the
``events`` log (which subscriptions, which earlier events are still undelivered).

**The hot path.** With no subscription, an event costs one look at a cached list.
The list of enabled subscriptions is read from the store at most once per
``webhooks.cache_seconds`` per process (a new subscription is heard of that late);
with subscriptions but none matching, a few comparisons.

**Nothing here can fail an event.** The event is already stored when the listener
runs; a notice that cannot be submitted (the broker is down) is logged and dropped.
That loses no delivery for good: the next event of the same job makes the notifier
deliver every undelivered event of the job up to it, in order (the cursor). Only
the last event of a job whose notice was lost waits for an operator's resend
(``pipelinejobs send notifier '{"job_uuid": ..., "seq": ...}'``). The notice's
execution id is derived from the event's uuid, so sending it twice sends one message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from pipelinejobs.access.keys import ADMIN
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.domain.subscriptions import Subscriptions
from pipelinejobs.domain.webhooks import WebhookFilter, matches_event, matches_job
from pipelinejobs.errors import PipelineJobsError
from pipelinejobs.runtime.executions import derived_id

if TYPE_CHECKING:  # pragma: no cover
    from pipelinejobs.runtime.dispatch import Runtime

log = logging.getLogger("pipelinejobs.webhooks")

NOTIFIER = "notifier"

#: A subscription as the cache keeps it: (its owner when it sees only its owner's jobs,
#: its parsed filter).
Cached = tuple[str | None, WebhookFilter]


def scope(sub: Document) -> Cached:
    """What a subscription matches: a user key's sees only its own jobs."""
    owner = None if sub.get("role") == ADMIN else str(sub.get("owner") or "")
    return owner, WebhookFilter.parse(sub.get("filter"))


def wants(cached: Cached, job: Document, event: str, state: str | None) -> bool:
    owner, flt = cached
    return matches_job(flt, job, owner) and matches_event(flt, event, state)


class Notices:
    """The listener of applied events that sends the notifier its messages."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.subscriptions = Subscriptions(runtime.store, clock=runtime.clock)
        self.ttl = float(runtime.config.webhooks.cache_seconds)
        self._cached: list[Cached] = []
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> list[Cached]:
        """The enabled subscriptions, read again once the cached copy is too old."""
        if time.monotonic() - self._read_at < self.ttl:
            return self._cached
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                try:
                    self._cached = [scope(sub) for sub in self.subscriptions.enabled()]
                except PipelineJobsError as exc:
                    log.warning("webhook subscriptions unreadable (%s); kept the last", exc)
                self._read_at = time.monotonic()
        return self._cached

    def forget(self) -> None:
        """Read the subscriptions again at the next event (one was just made here)."""
        self._read_at = float("-inf")

    def __call__(self, job: Document, entry: dict[str, Any]) -> None:
        cached = self.current()
        if not cached:
            return
        event = str(entry.get("name") or "")
        if not any(wants(c, job, event, job.get("state")) for c in cached):
            return
        message = {"job_uuid": job["uuid"], "seq": int(job.get("event_count") or 1)}
        try:
            self.runtime.submit(
                NOTIFIER,
                message,
                execution_id=derived_id("webhook-notice", str(entry["uuid"])),
                sender="webhooks",
                role=ADMIN,
                priority=job.get("priority"),
            )
        except PipelineJobsError as exc:
            log.warning(
                "webhook notice for job %s event %s not sent (%s); the job's next event "
                "delivers it",
                job["uuid"],
                message["seq"],
                exc,
            )
