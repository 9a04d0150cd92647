"""Notifier: delivers job state changes to webhook subscribers (issue 16).

It accepts one message, ``webhook_notice`` ``{job_uuid, seq}``, which the service
sends itself after an applied event that some subscription wants
(:mod:`pipelinejobs.runtime.notices`). For each enabled subscription whose filter
takes the job, it delivers **every undelivered event of the job**, oldest first,
read from the ``events`` log — not just event ``seq`` — so a lost or late notice
costs nothing but time, and the order per job is the log's.

**Order under concurrency.** Each (subscription, job) has a cursor,
``delivered_seq`` (:class:`pipelinejobs.domain.subscriptions.Subscriptions`). An
execution reads it, posts the next event, and moves it forward by compare-and-set;
one that loses the race re-reads and goes on from where the winner got. An event is
first posted only after every earlier one was acknowledged, so a receiver that drops
repeated delivery ids sees each job's events once, in order. Two executions may post
the same event (at least once): it carries the same delivery id both times.

**Failures.** A delivery that does not answer 2xx in ``webhooks.timeout`` (or
redirects: redirects are never followed, so a receiver cannot send the request to
another host) is recorded, counted on the subscription, and retried by a delayed
message to this actor (``subscription``, ``attempt``): exponential back-off with
jitter. While that retry is pending, new notices for the (subscription, job) leave
it to the retry, which delivers everything undelivered by then. A subscription is
disabled, with the reason, after ``webhooks.max_failures`` consecutive failures or
when one job's retries have lasted ``webhooks.retry_for`` (24 h).

Every attempt is a record in ``webhook_deliveries`` (``GET /webhooks/<id>/deliveries``).
The secret signs and is never logged.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

from pipelinejobs import __version__
from pipelinejobs.access.keys import ADMIN
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.domain import job_log, webhooks
from pipelinejobs.domain.clock import iso, now, parse
from pipelinejobs.domain.subscriptions import Subscriptions
from pipelinejobs.errors import PermissionDenied
from pipelinejobs.runtime.actor import Actor, Context, Message, Params
from pipelinejobs.runtime.notices import NOTIFIER, scope, wants

#: Events read from the log per step.
BATCH = 100
#: How long past its due time a pending retry is still trusted to come (s); after
#: that a new notice delivers itself (the retry message was lost).
GRACE = 60.0


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
        job = store.get("jobs", body["job_uuid"])
        if job is None:
            ctx.log.warning(f"job {body['job_uuid']} is gone: nothing to deliver")
            return {"job_uuid": body["job_uuid"], "subscriptions": {}}
        retry = body.get("subscription")
        if retry:
            sub = store.get("webhooks", retry)
            candidates = [sub] if sub is not None and sub.get("enabled") else []
        else:
            candidates = subs.enabled()
        outcomes: dict[str, str] = {}
        shared = Shared(ctx.runtime.store, job)
        try:
            for sub in candidates:
                owner, flt = scope(sub)
                if not webhooks.matches_job(flt, job, owner):
                    continue
                attempt = body.get("attempt") if retry else None
                delivery = Delivery(ctx, subs, sub, job, attempt, body.get("since"), shared)
                outcomes[sub["id"]] = delivery.run()
        finally:
            subs.record(shared.attempts)  # every subscription's attempts: one write
        return {"job_uuid": job["uuid"], "seq": body["seq"], "subscriptions": outcomes}


def _require_admin(role: str) -> None:
    if role != ADMIN:
        raise PermissionDenied("only the service itself (an admin key) sends the notifier")


class Shared:
    """What one execution's deliveries to several subscriptions share: the job's
    events as read (most subscriptions' cursors are at the same place: one read) and
    the attempts made, stored together at the end."""

    def __init__(self, store: Any, job: Document) -> None:
        self.store = store
        self.job = job
        self.attempts: list[Document] = []
        self._pages: dict[tuple[int, int], list[Document]] = {}

    def events(self, after: int, limit: int) -> list[Document]:
        key = (after, limit)
        if key not in self._pages:
            self._pages[key] = job_log.read_records(self.store, self.job, after, limit)[0]
        return self._pages[key]


class Delivery:
    """Delivering one job's undelivered events to one subscription."""

    def __init__(
        self,
        ctx: Context,
        subs: Subscriptions,
        sub: Document,
        job: Document,
        attempt: int | None,
        since: str | None,
        shared: Shared,
    ) -> None:
        self.ctx = ctx
        self.subs = subs
        self.sub = sub
        self.job = job
        self.attempt = attempt
        self.since = since
        self.scope = scope(sub)
        self.settings = ctx.runtime.config.webhooks
        #: Attempts made, stored in one batch when the execution ends.
        self.attempts = shared.attempts
        self.shared = shared

    def run(self) -> str:
        """Deliver up to the job's newest event; what happened, in a word."""
        clock = self.ctx.runtime.clock
        delivered = 0
        while True:
            cursor = self.subs.cursor(self.sub["id"], self.job["uuid"])
            pending = cursor.get("retry")
            if pending:
                if self.attempt is None and clock() < float(pending.get("at", 0)) + GRACE:
                    return "left to its pending retry"
                if self.attempt is not None and pending.get("attempt") != self.attempt:
                    return "superseded by a later retry"
            start = int(cursor.get("delivered_seq") or 0)
            newest = int(self.job.get("event_count") or 0)
            if start >= newest:
                return f"delivered {delivered}" if delivered else "up to date"
            records = self.shared.events(start, min(BATCH, newest - start))
            if not records:
                return "up to date"
            # Each event is posted only once the one before it was acknowledged, so
            # the first arrival of each is in order whichever execution posts it; the
            # cursor moves once per batch (a crash repeats at most a batch, same ids).
            done = start
            for record in records:
                if self._wanted(record):
                    error = self._post(record)
                    if error is not None:
                        cursor = self.subs.advance(cursor, done)
                        self._retry(cursor, record, error)
                        return f"failed: {error}"
                    delivered += 1
                done = int(record["seq"])
            self.subs.advance(cursor, done)

    def _wanted(self, record: Document) -> bool:
        if str(record.get("date") or "") < str(self.sub.get("created") or ""):
            return False  # before the subscription existed
        state = webhooks.state_after(record)
        return wants(self.scope, self.job, str(record.get("name") or ""), state)

    def _post(self, record: Document) -> str | None:
        """POST one event; None when the receiver took it, else why not. Recorded."""
        document = webhooks.payload(self.sub["id"], record, self.job)
        body = webhooks.body_of(document)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"PipelineJobs/{__version__}",
            webhooks.SIGNATURE_HEADER: webhooks.sign(str(self.sub["secret"]), body),
            webhooks.DELIVERY_HEADER: document["delivery_id"],
        }
        started = time.monotonic()
        status: int | None = None
        error = self._refused_host()
        if error is None:
            status, error = self.ctx.runtime.webhook_sender.post(
                str(self.sub["url"]), body, headers, float(self.settings.timeout)
            )
        self.attempts.append(self.subs.attempt(
            self.sub["id"],
            delivery_id=document["delivery_id"],
            job_uuid=self.job["uuid"],
            seq=record["seq"],
            event=record.get("name"),
            state=document["event"]["state"],
            status_code=status,
            error=error,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            attempt=self.attempt or 0,
            execution=self.ctx.execution_id,
        ))  # fmt: skip
        if error is None:
            self.subs.succeeded(self.sub)
        return error

    def _refused_host(self) -> str | None:
        """Why the URL's host may not be called now (SSRF: what its name resolves to
        today), or None."""
        if self.ctx.runtime.config.webhooks_allow_private:
            return None
        parts = urlsplit(str(self.sub["url"]))
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
        except OSError as exc:
            return f"cannot resolve {parts.hostname}: {exc}"
        bad = webhooks.refused_address(str(info[4][0]) for info in infos)
        return f"{parts.hostname} resolves to non-public address {bad}" if bad else None

    def _retry(self, cursor: Document, record: Document, error: str) -> None:
        """Count the failure and schedule the next attempt (or give up)."""
        sub = self.subs.failed(self.sub, error, int(self.settings.max_failures))
        if not sub.get("enabled"):
            self.ctx.log.warning(f"webhook {sub['id']} disabled: {sub.get('disabled_reason')}")
            return
        clock = self.ctx.runtime.clock
        pending = cursor.get("retry") or {}
        since = self.since or pending.get("since") or now(clock)
        if clock() - parse(since) > float(self.settings.retry_for):
            self.subs.disable(
                sub["id"],
                f"event {record['seq']} of job {self.job['uuid']} undelivered since {since} "
                f"(retried for {self.settings.retry_for:g} s); last: {error}",
            )
            return
        attempt = int(pending.get("attempt") or 0) + 1
        delay = webhooks.retry_delay(attempt, self.settings.retry_base, self.settings.retry_cap)
        noted = self.subs.await_retry(
            cursor, {"attempt": attempt, "since": since, "at": clock() + delay,
                     "due": iso(clock() + delay)}
        )  # fmt: skip
        if noted is None:
            return  # another execution got further with this job: it carries on
        self.ctx.send(
            NOTIFIER,
            {
                "job_uuid": self.job["uuid"],
                "seq": int(record["seq"]),
                "subscription": sub["id"],
                "attempt": attempt,
                "since": since,
            },
            # One retry per chain and attempt, whichever execution schedules it (a
            # chain is named by when it began: a later failure starts a new one).
            key=f"webhook-retry:{sub['id']}:{self.job['uuid']}:{since}:{attempt}",
            delay=delay,
        )


ACTOR = Notifier()
