"""Telling the notifier about applied job events (issue 16).

Every job event is applied by :class:`pipelinejobs.domain.jobs.Jobs` (``create`` and
``apply``), whoever applies it — an actor, the gateway, the CLI — so that is where
webhooks hear of them: the runtime registers :class:`Notices` as a listener of its
``Jobs``. For each applied event (not a duplicate), it checks the event against the
enabled subscriptions and, when at least one matches, notes the job and its newest
``seq``; ``webhooks.notice_window`` seconds after the first noted event, the
process submits one message to the ``notifier`` actor for every job noted since:
``{jobs: [{job_uuid, seq}, ...]}`` (with a window of 0, ``{job_uuid, seq}`` per
event, at once). The notifier works out the rest from the ``events`` log (which
subscriptions, which earlier events are still undelivered).

**Why gather.** A notice is an execution stored and a message published: one per
event cost an event more than the event itself, and the notifier then delivered
jobs one at a time. Gathered, a burst of events costs one notice, one read of the
subscriptions and one cursor write per job, and a subscription with ``batch`` > 1
gets the burst in a few POSTs.

**The hot path.** With no subscription, an event costs one look at a cached list.
The list of enabled subscriptions is read from the store at most once per
``webhooks.cache_seconds`` per process (a new subscription is heard of that late);
with subscriptions but none matching, a few comparisons.

**Nothing here can fail an event.** The event is already stored when the listener
runs; a notice that cannot be submitted (the broker is down) is logged and dropped,
and so are the events noted in a process that dies within the window. That loses
no delivery for good: the next event of the same job makes the notifier deliver
every undelivered event of the job up to it, in order (the cursor). Only the last
event of a job whose notice was lost waits for an operator's resend
(``pipelinejobs send notifier '{"job_uuid": ..., "seq": ...}'``). The notice's
execution id is derived from its events' uuids, so sending it twice sends one message.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
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
        self.window = float(runtime.config.webhooks.notice_window)
        #: Noted since the last flush: job uuid -> (newest seq, priority); event uuids.
        self._noted: dict[str, tuple[int, Any]] = {}
        self._events: list[str] = []
        self._timer: threading.Timer | None = None
        self._noted_lock = threading.Lock()
        atexit.register(_flush_at_exit, weakref.ref(self))

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
        seq = int(job.get("event_count") or 1)
        if self.window <= 0:
            self._submit({"job_uuid": job["uuid"], "seq": seq}, [str(entry["uuid"])],
                         job.get("priority"))  # fmt: skip
            return
        with self._noted_lock:
            before = self._noted.get(job["uuid"])
            self._noted[job["uuid"]] = (max(seq, before[0] if before else 0), job.get("priority"))
            self._events.append(str(entry["uuid"]))
            if self._timer is None:
                self._timer = threading.Timer(self.window, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Send the notice for every event noted since the last flush (the window's
        timer calls it; so does the runtime's close)."""
        with self._noted_lock:
            noted, events = self._noted, self._events
            self._noted, self._events = {}, []
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if not noted:
            return
        items = list(noted.items())
        for start in range(0, len(items), MAX_JOBS):
            chunk = items[start : start + MAX_JOBS]
            jobs = [{"job_uuid": uuid, "seq": seq} for uuid, (seq, _) in chunk]
            priorities = [p for _, (_, p) in chunk if isinstance(p, int)]
            ids = events if len(items) <= MAX_JOBS else [*events, str(start)]
            self._submit({"jobs": jobs}, ids, max(priorities) if priorities else None)

    def _submit(self, message: dict[str, Any], events: list[str], priority: Any) -> None:
        try:
            self.runtime.submit(
                NOTIFIER,
                message,
                execution_id=derived_id("webhook-notice", *events),
                sender="webhooks",
                role=ADMIN,
                priority=priority,
            )
        except PipelineJobsError as exc:
            log.warning(
                "webhook notice %s not sent (%s); each job's next event delivers it",
                message,
                exc,
            )


#: Most jobs one notice names (the schema's limit).
MAX_JOBS = 1000


def _flush_at_exit(ref: weakref.ref[Notices]) -> None:
    """A process that stops sends what it noted (best effort: the broker may be gone)."""
    notices = ref()
    if notices is not None:
        try:
            notices.flush()
        except Exception:  # noqa: BLE001 - exiting: nothing left to tell
            pass
