"""Executions: the record of one message delivered to one actor (Abaco's term).

An execution is stored **before** its message is published, so a caller can look it
up at once and a crash between the two loses nothing: a starting worker re-publishes
executions left in SUBMITTED (see :meth:`Executions.stale`). Its status moves
SUBMITTED → RUNNING → COMPLETE | ERROR; a redelivery of a finished execution is
recognised and not run again.

Ids look like Abaco's (13 characters of ``[A-Za-z0-9]``). A message an actor sends
while handling an execution gets an id derived from the parent's id and the send's
position, so re-running the parent after a crash re-sends the *same* child, which
the store's unique key turns into a no-op instead of a second message.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from pipelinejobs.adapters.store.base import Document, In, Page, Range, Store, not_found
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES, Change, compare_and_set
from pipelinejobs.domain.clock import Clock, iso, now, system_clock
from pipelinejobs.domain.identifiers import uuid_type
from pipelinejobs.errors import DuplicateDocument, UnknownIdentifierType

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 13

SUBMITTED, RUNNING, COMPLETE, ERROR = "SUBMITTED", "RUNNING", "COMPLETE", "ERROR"
FINISHED_STATUSES = frozenset({COMPLETE, ERROR})


def new_id() -> str:
    """A random Abaco-style id (one read of the OS's randomness, not one per character;
    128 bits spread over 13 base-62 digits leave no measurable bias)."""
    return _base62(int.from_bytes(secrets.token_bytes(16), "big"))


def derived_id(*parts: str) -> str:
    """A deterministic Abaco-style id from ``parts`` (same parts, same id)."""
    return _base62(int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest(), "big"))


def _base62(number: int) -> str:
    chars = []
    for _ in range(ID_LENGTH):
        number, rem = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[rem])
    return "".join(chars)


def stored_message(message: Any) -> dict[str, Any]:
    """The form a message is stored in (an execution's ``message`` is an object).

    An empty body (None or "") is stored as ``{}`` — what every actor's ``parse``
    reads it as — so the worker parses the very message the gateway validated
    (wrapped as ``{"raw": None}`` it became the event's data). Any other non-object
    is kept under ``raw`` for the record; actors refuse those before storing.
    """
    if isinstance(message, dict):
        return message
    if message is None or message == "":
        return {}
    return {"raw": message}


def job_of(message: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    """The job a message is about — the job UUID (107) in its ``uuid`` field or URL
    parameter — or None; kept on the execution so a job's executions can be listed."""
    for value in (message.get("uuid"), params.get("uuid")):
        if isinstance(value, str):
            try:
                if uuid_type(value) == "pipelinejob":
                    return value
            except UnknownIdentifierType:
                pass
    return None


class Executions:
    """Execution records in the store."""

    collection = "executions"

    def __init__(
        self, store: Store, *, clock: Clock = system_clock, retries: int = DEFAULT_RETRIES
    ) -> None:
        self.store = store
        self.clock = clock
        #: Compare-and-set budget (``store.cas_retries``), shared with every other loop.
        self.retries = retries

    def submit(
        self,
        actor: str,
        message: Any,
        params: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        parent: str | None = None,
        sender: str | None = None,
        owner: str | None = None,
        role: str | None = None,
        base_url: str | None = None,
        delay: float = 0.0,
        priority: str | None = None,
    ) -> tuple[Document, bool]:
        """Store a new SUBMITTED execution; returns (execution, created).

        ``base_url``: the public base URL the message came in through (see
        :mod:`pipelinejobs.gateway.public_url`), kept for the worker, which has no
        request. ``delay``: it is published that many seconds late (``retry_at`` says
        when it is due, so a recovery sweep does not publish it early). ``priority``:
        what it is published with, kept for every re-publish.

        With an ``execution_id`` that already exists, the existing record is returned
        with ``created=False`` — the caller must not assume it still needs publishing
        unless it is still SUBMITTED.
        """
        date = now(self.clock)
        doc: Document = {
            "id": execution_id or new_id(),
            "actor": actor,
            "status": SUBMITTED,
            "message": stored_message(message),
            "params": dict(params or {}),
            "logs": [],
            "created": date,
            "updated": date,
            "attempts": 0,
        }
        if parent:
            doc["parent"] = parent
        job = job_of(doc["message"], doc["params"])
        if job:
            doc["job"] = job
        if sender:
            doc["sender"] = sender
        if owner:
            doc["owner"] = owner
        if role:
            doc["role"] = role
        if base_url:
            doc["base_url"] = base_url
        if priority:
            doc["priority"] = priority
        if delay > 0:  # published delayed: recovery leaves it alone until it is due
            doc["retry_at"] = iso(self.clock() + delay)
        try:
            return self.store.insert(self.collection, doc), True
        except DuplicateDocument:
            return self.get(doc["id"]), False

    def get(self, execution_id: str) -> Document:
        doc = self.store.get(self.collection, execution_id)
        if doc is None:
            message = f"no execution {execution_id}"
            raise not_found(
                self.store, self.collection, execution_id, message, execution=execution_id
            )
        return doc

    def _change(
        self, execution_id: str, current: Document | None = None, **fields: Any
    ) -> Document:
        """Set ``fields`` on an execution by compare-and-set (a lost race re-reads and
        writes them again: they do not depend on what another writer changed).

        ``current``, a copy the caller just read, saves the first read: on the hot path
        (start, finish) it is almost always still current.
        """
        return self._cas(
            execution_id, lambda doc: Change(set={**fields, "updated": now(self.clock)}), current
        )

    def _cas(
        self,
        execution_id: str,
        change: Callable[[Document], Change | None],
        current: Document | None,
    ) -> Document:
        """One compare-and-set of an execution, from ``current`` (or a fresh read)."""
        return compare_and_set(
            self.store,
            self.collection,
            execution_id,
            change,
            retries=self.retries,
            current=current or self.get(execution_id),
            what=f"execution {execution_id}",
        )

    def _started(self, doc: Document, worker: str | None, started: str) -> dict[str, Any]:
        """What starting ``doc`` sets: RUNNING, when, which attempt (counted from the
        version being replaced), by which worker."""
        fields: dict[str, Any] = {
            "status": RUNNING,
            "started": started,
            "attempts": int(doc.get("attempts", 0)) + 1,
            "updated": now(self.clock),
        }
        if worker:
            fields["worker"] = worker
        return fields

    def start(
        self,
        execution_id: str,
        worker: str | None = None,
        *,
        current: Document | None = None,
        started: str | None = None,
    ) -> Document:
        """Mark RUNNING and count the attempt (``current``: the copy just read). The
        count is taken from the version being replaced, so two deliveries racing to
        start it count two attempts, never one. ``started``: when it did (a start
        written late, see :meth:`begun`); now by default."""
        when = started or now(self.clock)

        def run(doc: Document) -> Change:
            return Change(set=self._started(doc, worker, when))

        return self._cas(execution_id, run, current)

    def progress(
        self,
        execution_id: str,
        progress: Mapping[str, Any],
        logs: list[str] | None = None,
        current: Document | None = None,
        *,
        attempt: int | None = None,
    ) -> Document:
        """Record how far a running execution got (readable while it runs).

        With ``attempt`` (the delivery's, as :meth:`start` counted it), the progress is
        stamped with it and the time, and written only while the execution is RUNNING
        that very attempt: a delivery that lost its message to a redelivery (which
        starts again from zero) or whose execution has finished cannot overwrite the
        progress, or the logs, of the one that counts. The document is returned as
        read when nothing was written."""
        fields: dict[str, Any] = {"progress": dict(progress)}
        if attempt is not None:
            fields["progress"].update(attempt=attempt, updated=now(self.clock))
        if logs is not None:
            fields["logs"] = list(logs)
        if attempt is None:
            return self._change(execution_id, current, **fields)

        def mine(doc: Document) -> Change | None:
            if doc.get("status") != RUNNING or int(doc.get("attempts") or 0) != attempt:
                return None
            return Change(set={**fields, "updated": now(self.clock)})

        return self._cas(execution_id, mine, current)

    def begun(self, doc: Document, worker: str | None = None) -> Document:
        """``doc`` as :meth:`start` would leave it, without writing it: for a delivery
        whose start is written with its end (:meth:`finish`'s ``begun``) or, if it
        fails, by :meth:`start` before the failure is recorded."""
        return {**doc, **self._started(doc, worker, now(self.clock))}

    def finish(
        self,
        execution_id: str,
        *,
        result: Any = None,
        error: Mapping[str, Any] | None = None,
        logs: list[str] | None = None,
        current: Document | None = None,
        begun: Document | None = None,
    ) -> Document:
        """Close an execution as COMPLETE (no ``error``) or ERROR. ``begun``:
        :meth:`begun`'s copy of ``current`` (the record as read), whose start — when,
        by which worker, one more attempt — was never written: it is written now, in
        the same compare-and-set, the attempt counted from the version replaced."""
        fields: dict[str, Any] = {
            "status": ERROR if error else COMPLETE,
            "finished": now(self.clock),
            "result": result,
            "error": dict(error) if error else None,
        }
        if logs is not None:
            fields["logs"] = list(logs)
        if begun is None:
            return self._change(execution_id, current, **fields)
        worker, started = begun.get("worker"), str(begun.get("started"))

        def end(doc: Document) -> Change:
            return Change(set={**self._started(doc, worker, started), **fields})

        return self._cas(execution_id, end, current)

    def requeue(self, execution_id: str, reason: str, delay: float = 0.0) -> Document:
        """Put an execution back to SUBMITTED (a transient failure will be retried in
        ``delay`` s: until then a recovery sweep leaves it alone)."""
        return self._change(
            execution_id,
            status=SUBMITTED,
            retry_reason=reason,
            retry_at=iso(self.clock() + delay),
        )

    def claim_recovery(self, execution: Document) -> Document | None:
        """Mark a stale execution as being re-published by this caller (one CAS): None
        if another worker changed it first — it started, finished, or was claimed."""
        return self.store.update(
            self.collection,
            execution["id"],
            version=execution["version"],
            set={
                "updated": now(self.clock),
                "recoveries": int(execution.get("recoveries", 0)) + 1,
            },
        )

    def page(
        self, actor: str, *, limit: int = 50, after: str | None = None, status: str | None = None
    ) -> Page:
        """Newest first, paginated."""
        where: dict[str, Any] = {"actor": actor}
        if status:
            where["status"] = status
        return self.store.find(
            self.collection, where, order="created", descending=True, limit=limit, after=after
        )

    def stale(
        self,
        *,
        older_than: float,
        statuses: tuple[str, ...] = (SUBMITTED,),
        actors: list[str] | None = None,
        limit: int = 1000,
    ) -> Page:
        """Executions still in ``statuses`` that were last touched more than
        ``older_than`` seconds ago — the ones a crash may have orphaned — oldest first.
        A page, so the caller also sees the ones that could not be read (``skipped``)."""
        where: dict[str, Any] = {
            "status": In(statuses),
            "updated": Range(lt=iso(self.clock() - older_than)),
        }
        if actors:
            where["actor"] = In(actors)
        return self.store.find(self.collection, where, order="updated", limit=limit)
