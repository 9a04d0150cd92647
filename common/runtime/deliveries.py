"""Delivering jobs' undelivered events to one webhook subscription (issue 16): what a
notifier execution does for each subscription it offers a notice's jobs to.

For each job the subscription wants, the events after its cursor position
(:mod:`pipelinejobs.domain.webhook_cursors`) are read from the ``events`` log and
filtered; the wanted ones are posted — one per POST when the subscription's
``batch`` is 1, else up to ``batch`` per POST across the jobs, each job's in order —
each POST only after the one before it was acknowledged. Positions reached are
returned as :class:`~pipelinejobs.domain.webhook_cursors.Move`\\ s, which the notifier
settles once per job for all subscriptions.

A POST that does not answer 2xx (or redirects: never followed, so a receiver cannot
send the request to another host) ends this subscription's work in this execution:
it is counted on the subscription, and each job left undelivered gets a retry
``{attempt, since, at}`` from its position, sent as a delayed message by the
notifier once settling shows no other execution got further.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pipelinejobs import __version__
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.domain import job_log, webhooks
from pipelinejobs.domain.clock import iso, now, parse
from pipelinejobs.domain.subscriptions import Subscriptions
from pipelinejobs.domain.webhook_cursors import Move, position
from pipelinejobs.runtime.notices import scope, wants

#: How long past its due time a pending retry is still trusted to come (s); after
#: that a new notice delivers itself (the retry message was lost).
GRACE = 60.0


class EventCache:
    """The jobs' events as read in one execution: most subscriptions' positions in a
    job are the same, so each (job, position) is read once for all of them."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._encoded: dict[str, webhooks.Encoded] = {}
        self._read: dict[tuple[str, int], list[Document]] = {}
        self._lock = threading.Lock()  # deliveries to several subscriptions run at once

    def encoded(self, record: Document, job: Document) -> webhooks.Encoded:
        """The event's delivery (and the state it led to), worked out once for every
        subscription it goes to."""
        key = str(record["uuid"])
        found = self._encoded.get(key)
        if found is None:
            found = self._encoded[key] = webhooks.Encoded(record, job)
        return found

    def prefetch(self, wanted: list[tuple[Document, int]]) -> None:
        """Read every (job, position)'s records at once (one query per distinct
        position: :func:`~pipelinejobs.domain.job_log.read_after_many`)."""
        distinct = {(job["uuid"], start): (job, start) for job, start in wanted}
        self._read.update(job_log.read_after_many(self.store, list(distinct.values())))

    def after(self, job: Document, start: int) -> list[Document]:
        """Every record of ``job``'s log after ``start`` (up to its ``event_count``),
        read once per (job, position): a notice's are prefetched together."""
        key = (job["uuid"], start)
        with self._lock:
            if key not in self._read:
                self._read.update(job_log.read_after_many(self.store, [(job, start)]))
            return self._read[key]


@dataclass
class Item:
    """One wanted event of one job, and where the job's position is once it has been
    acknowledged (past any unwanted events that follow it)."""

    job: Document
    record: Document
    reach: int


class Delivery:
    """One subscription, the jobs of one notice (or of one retry)."""

    def __init__(
        self,
        ctx: Any,
        subs: Subscriptions,
        sub: Document,
        events: EventCache,
        attempts: list[Document],
        *,
        attempt: int | None = None,
        since: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.subs = subs
        self.sub = sub
        self.events = events
        self.attempts = attempts
        self.attempt = attempt
        self.since = since
        self.scope = scope(sub)
        self.settings = ctx.runtime.config.webhooks
        self.size = max(1, int(sub.get("batch") or 1))
        #: Job uuid → the retry chain pending when read; the position reached.
        self.pending: dict[str, Any] = {}
        self.moves: dict[str, Move] = {}

    def run(self, jobs: list[Document], cursors: dict[str, Document]) -> str:
        """Deliver up to each job's newest event; what happened, in a word. The
        positions reached are in :attr:`moves`."""
        queue: list[Item] = []
        skipped = 0
        for job in jobs:
            start, pending = position(cursors[job["uuid"]], self.sub["id"])
            if not self._mine(pending):
                skipped += 1
                continue
            self.pending[job["uuid"]] = pending
            records = self.events.after(job, start)
            if not records:
                continue
            wanted = [r for r in records if self._wanted(job, r)]
            last = int(records[-1]["seq"])
            # Unwanted events before the first wanted one: passed over at once.
            self.moves[job["uuid"]] = Move(int(wanted[0]["seq"]) - 1 if wanted else last)
            for i, record in enumerate(wanted):
                reach = int(wanted[i + 1]["seq"]) - 1 if i + 1 < len(wanted) else last
                queue.append(Item(job, record, reach))
        delivered = 0
        for begin in range(0, len(queue), self.size):
            chunk = queue[begin : begin + self.size]
            error = self._post(chunk)
            if error is not None:
                self._retry(queue[begin:], error)
                return f"failed: {error}"
            delivered += len(chunk)
            for item in chunk:
                self.moves[item.job["uuid"]].seq = max(self.moves[item.job["uuid"]].seq, item.reach)
        if delivered:
            return f"delivered {delivered}"
        return "left to its pending retry" if skipped else "up to date"

    def _mine(self, pending: Any) -> bool:
        """Whether this execution delivers the job (not when a retry chain it is not
        is pending: that retry delivers everything undelivered by then)."""
        if pending and str(pending.get("due") or "") < str(self.sub.get("enabled_at") or ""):
            pending = None  # a chain dropped when the subscription was disabled
        if not pending:
            return self.attempt is None
        if self.attempt is not None:
            return bool(pending.get("attempt") == self.attempt)
        return bool(self.ctx.runtime.clock() >= float(pending.get("at", 0)) + GRACE)

    def _wanted(self, job: Document, record: Document) -> bool:
        if str(record.get("date") or "") < str(self.sub.get("created") or ""):
            return False  # before the subscription existed
        state = self.events.encoded(record, job).event["state"]
        return wants(self.scope, job, str(record.get("name") or ""), state)

    def _post(self, chunk: list[Item]) -> str | None:
        """POST ``chunk`` as one delivery; None when the receiver took it, else why
        not. Recorded as one attempt."""
        encoded = [self.events.encoded(i.record, i.job) for i in chunk]
        items = [e.item(self.sub["id"]) for e in encoded]
        batched = self.size > 1
        if batched:
            delivery, body = webhooks.encoded_batch(self.sub["id"], items)
        else:
            delivery, body = items[0][0], items[0][1].encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"PipelineJobs/{__version__}",
            webhooks.SIGNATURE_HEADER: webhooks.sign(str(self.sub["secret"]), body),
            webhooks.DELIVERY_HEADER: delivery,
        }
        started = time.monotonic()
        status: int | None = None
        error = self._refused_host()
        if error is None:
            status, error = self.ctx.runtime.webhook_sender.post(
                str(self.sub["url"]), body, headers, float(self.settings.timeout)
            )
        first = encoded[0].event
        fields: dict[str, Any] = {
            "delivery_id": delivery,
            "job_uuid": chunk[0].job["uuid"],
            "seq": first["seq"],
            "event": first["name"],
            "state": first["state"],
            "events": len(chunk),
        }
        if batched:
            fields["items"] = [
                {"delivery_id": ident, "job_uuid": i.job["uuid"], "seq": e.event["seq"],
                 "event": e.event["name"]}
                for (ident, _), i, e in zip(items, chunk, encoded, strict=True)
            ]  # fmt: skip
        self.attempts.append(self.subs.attempt(
            self.sub["id"], **fields, status_code=status, error=error,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            attempt=self.attempt or 0, execution=self.ctx.execution_id,
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

    def _retry(self, undelivered: list[Item], error: str) -> None:
        """Count the failure; give each job left undelivered its next retry (or
        disable the subscription when they have lasted ``retry_for``)."""
        sub = self.subs.failed(self.sub, error, int(self.settings.max_failures))
        if not sub.get("enabled"):
            self.ctx.log.warning(f"webhook {sub['id']} disabled: {sub.get('disabled_reason')}")
            return
        clock = self.ctx.runtime.clock
        first: dict[str, Item] = {}
        for item in undelivered:
            first.setdefault(item.job["uuid"], item)
        for uuid, item in first.items():
            pending = self.pending.get(uuid) or {}
            since = self.since or pending.get("since") or now(clock)
            since = max(since, str(sub.get("enabled_at") or ""))  # re-enabled since then
            if clock() - parse(since) > float(self.settings.retry_for):
                self.subs.disable(
                    sub["id"],
                    f"event {item.record['seq']} of job {uuid} undelivered since {since} "
                    f"(retried for {self.settings.retry_for:g} s); last: {error}",
                )
                return
            attempt = int(pending.get("attempt") or 0) + 1
            delay = webhooks.retry_delay(attempt, self.settings.retry_base, self.settings.retry_cap)
            move = self.moves[uuid]
            move.retry = {"attempt": attempt, "since": since, "at": clock() + delay,
                          "due": iso(clock() + delay), "delay": delay}  # fmt: skip

    def retry_message(self, job_uuid: str) -> tuple[dict[str, Any], str, float]:
        """(body, idempotency key, delay) of the retry scheduled for ``job_uuid``."""
        retry = self.moves[job_uuid].retry
        assert retry is not None
        body = {
            "job_uuid": job_uuid,
            "seq": self.moves[job_uuid].seq + 1,
            "subscription": self.sub["id"],
            "attempt": int(retry["attempt"]),
            "since": retry["since"],
        }
        # One retry per chain and attempt, whichever execution schedules it (a chain
        # is named by when it began: a later failure starts a new one).
        key = f"webhook-retry:{self.sub['id']}:{job_uuid}:{retry['since']}:{retry['attempt']}"
        return body, key, float(retry["delay"])
