"""Notifier: delivers job state changes to webhook subscribers (issue 16).

It accepts one message, ``webhook_notice``: ``{jobs: [{job_uuid, seq}, ...]}``,
which the service sends itself for the applied events some subscription wants,
gathered per process for ``webhooks.notice_window`` seconds
(:mod:`pipelinejobs.runtime.notices`); or ``{job_uuid, seq}`` for one job. For each
enabled subscription, it delivers **every undelivered event of each job** the
subscription takes, oldest first, read from the ``events`` log — not just up to
``seq`` — so a lost or late notice costs nothing but time, and the order per job is
the log's (:mod:`pipelinejobs.runtime.deliveries`: one event per POST, or up to the
subscription's ``batch`` per POST).

**Order under concurrency.** Each job has one cursor document holding every
subscription's position in its events
(:mod:`pipelinejobs.domain.webhook_cursors`). An execution reads the cursors of its
jobs, posts from there, and merges the positions it reached back by compare-and-set,
one write per job; positions only move forward. An event is first posted only after
every earlier one of its job was acknowledged, so a receiver that drops repeated
delivery ids sees each job's events once, in order. Two executions may post the
same event (at least once): it carries the same delivery id both times.

**Failures.** A delivery that does not answer 2xx in ``webhooks.timeout`` (or
redirects: redirects are never followed, so a receiver cannot send the request to
another host) is recorded, counted on the subscription, and retried by a delayed
message to this actor per job (``subscription``, ``attempt``): exponential back-off
with jitter. While that retry is pending, new notices for the (subscription, job)
leave it to the retry, which delivers everything undelivered by then. A subscription is
disabled, with the reason, after ``webhooks.max_failures`` consecutive failures or
when one job's retries have lasted ``webhooks.retry_for`` (24 h).

Every attempt is a record in ``webhook_deliveries`` (``GET /webhooks/<id>/deliveries``).
The secret signs and is never logged.
"""

from __future__ import annotations

from typing import Any

from pipelinejobs.access.keys import ADMIN
from pipelinejobs.adapters.store.base import Document, In
from pipelinejobs.domain import webhooks
from pipelinejobs.domain.subscriptions import Subscriptions
from pipelinejobs.domain.webhook_cursors import Cursors, Move, position
from pipelinejobs.errors import PermissionDenied
from pipelinejobs.runtime.actor import Actor, Context, Message, Params
from pipelinejobs.runtime.deliveries import Delivery, EventCache
from pipelinejobs.runtime.notices import NOTIFIER, scope


class Notifier(Actor):
    alias = NOTIFIER
    description = "Delivers job state changes to webhook subscribers"
    accepts = ("webhook_notice",)

    def parse(self, message: Any, params: Params) -> Message:
        # JSON only: these messages are the service's own (an operator may resend one).
        body = dict(self.body_of(message))
        return Message("notice", self.validated("webhook_notice", body))

    def admit(self, runtime: Any, msg: Message, role: str, owner: str | None = None) -> None:
        _require_admin(role)

    def handle(self, ctx: Context, msg: Message) -> dict[str, Any]:
        _require_admin(ctx.role)
        body = msg.body
        store = ctx.runtime.store
        subs = Subscriptions(store, clock=ctx.runtime.clock)
        listed = body.get("jobs") or [{"job_uuid": body["job_uuid"], "seq": body["seq"]}]
        uuids = list(dict.fromkeys(str(item["job_uuid"]) for item in listed))
        found = {
            job["uuid"]: job
            for job in store.find("jobs", {"uuid": In(uuids)}, limit=len(uuids)).items
        }
        jobs = [found[uuid] for uuid in uuids if uuid in found]
        if len(jobs) < len(uuids):
            gone = sorted(set(uuids) - {job["uuid"] for job in jobs})
            ctx.log.warning(f"jobs gone, nothing to deliver for them: {', '.join(gone)}")
        retry = body.get("subscription")
        if retry:
            sub = store.get("webhooks", retry)
            candidates = [sub] if sub is not None and sub.get("enabled") else []
        else:
            candidates = subs.enabled()
        cursors = Cursors(store)
        read = cursors.read(job["uuid"] for job in jobs) if candidates and jobs else {}
        events = EventCache(store)
        attempts: list[Document] = []
        deliveries: list[tuple[Delivery, list[Document]]] = []
        for sub in candidates:
            owner, flt = scope(sub)
            taken = [job for job in jobs if webhooks.matches_job(flt, job, owner)]
            if taken:
                delivery = Delivery(
                    ctx, subs, sub, events, attempts,
                    attempt=body.get("attempt"), since=body.get("since"),
                )  # fmt: skip
                deliveries.append((delivery, taken))
        events.prefetch([
            (job, position(read[job["uuid"]], d.sub["id"])[0]) for d, taken in deliveries
            for job in taken
        ])  # fmt: skip
        try:
            # Each subscription's deliveries on a thread of their own: receivers are
            # waited on together (their positions are settled together below).
            results = ctx.runtime.webhook_sender.each(
                lambda pair: pair[0].run(pair[1], read), deliveries
            )
            outcomes = {d.sub["id"]: r for (d, _), r in zip(deliveries, results, strict=True)}
        finally:
            subs.record(attempts)  # every subscription's attempts: one write
            self._settle(ctx, cursors, read, [d for d, _ in deliveries])
        return {"jobs": len(jobs), "subscriptions": outcomes}

    def _settle(
        self, ctx: Context, cursors: Cursors, read: dict[str, Document], done: list[Delivery]
    ) -> None:
        """Write each job's new positions (one compare-and-set per job, every
        subscription's together), then send the retries this execution scheduled."""
        by_job: dict[str, dict[str, Move]] = {}
        for delivery in done:
            for uuid, move in delivery.moves.items():
                by_job.setdefault(uuid, {})[delivery.sub["id"]] = move
        by_sub = {delivery.sub["id"]: delivery for delivery in done}
        for uuid, moves in by_job.items():
            settled = cursors.settle(uuid, read[uuid], moves)
            for sub_id in settled.scheduled:
                message, key, delay = by_sub[sub_id].retry_message(uuid)
                ctx.send(NOTIFIER, message, key=key, delay=delay)


def _require_admin(role: str) -> None:
    if role != ADMIN:
        raise PermissionDenied("only the service itself (an admin key) sends the notifier")


ACTOR = Notifier()
