"""Jobs in the store: creating them and applying lifecycle events, atomically.

Applying an event is a loop of *read → decide → advance*:

1. read the job (its state, ``version`` and ``event_count``);
2. decide with :mod:`pipelinejobs.domain.lifecycle` whether the event is allowed and where it
   leads — a refusal raises and nothing was written;
3. write ``state``/``last_event``/``updated``/``event_count`` and append the event's
   record to the job's history log (:mod:`pipelinejobs.domain.job_log`) in one
   ``Store.advance`` conditioned on the version read in step 1.

If another writer got there first the advance fails, and the loop starts again from
a fresh read (with a short, jittered back-off). No history entry is ever lost, the
sequence numbers have no gaps, and the decision is always made against the state it
is written over.

At-least-once delivery means the same message can arrive twice. An event sent with
a ``delivery_id`` gets a history UUID derived from it; if the log already holds that
UUID, the event is reported as a duplicate and not applied again, with the state its
first delivery was applied to (kept on its record). Two concurrent deliveries of the
same message cannot both pass: the log is unique on the UUID, so the second advance
raises DuplicateDocument and its re-read finds the first one's record.

The loop is its own rather than :func:`pipelinejobs.adapters.store.cas.compare_and_set`'s:
its write is ``advance``, not ``update``, and a duplicate raised by the write is not a
lost race to retry but an answer (the first delivery's record). It shares that
helper's back-off, budget and way of running out (TooManyConflicts with
``retry_after``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelinejobs import signals
from pipelinejobs.adapters.store.base import LAST_RECORD, Document, Store, not_found
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES, RETRY_AFTER, back_off
from pipelinejobs.domain import deadlines, dependencies, job_log, lifecycle, validation
from pipelinejobs.domain.clock import Clock, now, system_clock
from pipelinejobs.domain.identifiers import Identifiers, require_type
from pipelinejobs.domain.job_log import LOG, HistoryPage
from pipelinejobs.domain.lifecycle import Event, State
from pipelinejobs.errors import (
    TRANSIENT,
    Conflict,
    DuplicateDocument,
    PipelineJobsError,
    TooManyConflicts,
    ValidationError,
)

#: Called with the freshly read job before an event is applied; raises to refuse
#: (token checks live in this hook, so the check and the write see the same document).
Check = Callable[[Document], None]
#: Told of each event applied (not a duplicate): the job as written and the event's
#: history entry. The webhooks' notices listen here (pipelinejobs.runtime.notices).
Listener = Callable[[Document, dict[str, Any]], None]
#: Called with the freshly read job once the event is allowed: the fields the same
#: write sets besides the state (a tag change's ``tags``), computed from that read.
Changes = Callable[[Document], Mapping[str, Any]]


@dataclass(frozen=True)
class EventResult:
    """What :meth:`Jobs.apply` did."""

    job: Document
    entry: dict[str, Any]
    applied: bool
    #: The state the event was applied to. For a duplicate, the state *its first
    #: delivery* was applied to (its record's ``previous_state``), not the current one:
    #: a redelivered repeat ``finish`` (FINISHED -> FINISHED) must still look like a
    #: repeat, or the jobs-manager would index the job a second time.
    previous_state: str

    @property
    def duplicate(self) -> bool:
        return not self.applied


@dataclass(frozen=True)
class CreateResult:
    """What :meth:`Jobs.create` did: a new job, or the existing identical one."""

    job: Document
    created: bool


class Jobs:
    """Creates jobs and moves them through the lifecycle, in one store."""

    collection = "jobs"

    def __init__(
        self,
        store: Store,
        identifiers: Identifiers | None = None,
        *,
        clock: Clock = system_clock,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.store = store
        self.ids = identifiers or Identifiers()
        self.clock = clock
        self.retries = retries
        #: Told of every applied event, after it is stored (see :data:`Listener`).
        self.listeners: list[Listener] = []

    def _applied(self, job: Document, entry: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(job, entry)

    def get(self, uuid: str) -> Document:
        """The job ``uuid``; NotFound if there is none."""
        require_type(uuid, "pipelinejob")
        job = self.store.get(self.collection, uuid)
        if job is None:
            raise not_found(self.store, self.collection, uuid, f"no job {uuid}", uuid=uuid)
        return job

    def create(
        self,
        *,
        pipeline_uuid: str,
        linkage: Iterable[str],
        data: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        sender: str | None = None,
    ) -> CreateResult:
        """Create the job for (pipeline, linkage, data), or return the existing one.

        The UUID is derived from exactly those three, so a resubmission finds the
        record it made the first time. ``fields`` adds stored attributes that do not
        make up its identity (archive path, agent, index configuration...). The job
        and its ``create`` record are stored in one step (``Store.insert`` with a
        record); ``sender``, who asked for it, is kept on the record.
        """
        require_type(pipeline_uuid, "pipeline")
        links = sorted(set(linkage))
        if data is not None and not isinstance(data, Mapping):
            raise ValidationError("job data must be a JSON object", path="data")
        uuid = self.ids.job(pipeline_uuid, links, dict(data or {}))
        date = now(self.clock)
        job: Document = {
            **dict(fields or {}),
            "uuid": uuid,
            "pipeline_uuid": pipeline_uuid,
            "state": State.CREATED.value,
            "last_event": Event.CREATE.value,
            "created": date,
            "updated": date,
            "version": 0,
            "token_rotation": 0,
            "data": dict(data or {}),
            "child_of": links,
            "generated_by": [pipeline_uuid],
            "event_count": 1,
        }
        job.update(deadlines.on_create(job, date))  # its deadline runs from now
        validation.validate("pipelinejob", job)
        record = job_log.new_record(
            uuid, 1, self.ids.event(uuid, "create"), Event.CREATE.value, date, data, None, sender
        )
        try:
            stored = self.store.insert(self.collection, job, record=(LOG, record))
        except DuplicateDocument as exc:
            existing = self.store.get(self.collection, uuid)
            if existing is None:  # the job's uuid is free but its create record is not
                raise Conflict(
                    f"job {uuid} cannot be created again: the history log still holds the "
                    f"records of an earlier job with this uuid (set aside or deleted)",
                    uuid=uuid,
                ) from exc
            signals.event_duplicate.send(event=Event.CREATE.value)
            return CreateResult(existing, False)
        signals.event_applied.send(event=Event.CREATE.value, state=State.CREATED.value)
        self._applied(stored, job_log.entry_of(record))
        return CreateResult(stored, True)

    def apply(
        self,
        uuid: str,
        event: str,
        data: Mapping[str, Any] | None = None,
        *,
        delivery_id: str | None = None,
        sender: str | None = None,
        check: Check | None = None,
        allow_reserved: bool = False,
        changes: Changes | None = None,
    ) -> EventResult:
        """Apply ``event`` to job ``uuid`` atomically; see the module docstring.
        ``sender`` (who sent it, when known) is kept on the event's record;
        ``changes`` adds fields to the same compare-and-set (they may not be the
        lifecycle's own: state, last_event, updated, event_count).

        Raises NotFound, TransitionRefused (with state, event and allowed sources),
        ValidationError, whatever ``check`` raises, or TooManyConflicts if the
        advance lost more than ``retries`` times in a row.

        Says what happened on :mod:`pipelinejobs.signals` (``event_applied``,
        ``event_duplicate``, ``event_refused``; each lost race ``cas_conflict``), where
        the metrics count it.
        """
        require_type(uuid, "pipelinejob")
        name = lifecycle.parse_event(event)
        try:
            result = self._apply(
                uuid, name, data, delivery_id, sender, check, allow_reserved, changes
            )
        except TRANSIENT:
            raise  # not a refusal: the same event may well be applied on a retry
        except PipelineJobsError as exc:
            signals.event_refused.send(event=name.value, reason=type(exc).__name__)
            raise
        if result.applied:
            signals.event_applied.send(event=name.value, state=result.job["state"])
            self._applied(result.job, result.entry)
        else:
            signals.event_duplicate.send(event=name.value)
        return result

    def _apply(
        self,
        uuid: str,
        name: Event,
        data: Mapping[str, Any] | None,
        delivery_id: str | None,
        sender: str | None,
        check: Check | None,
        allow_reserved: bool,
        extra: Changes | None = None,
    ) -> EventResult:
        """:meth:`apply` once the event's name is known: the read → decide → advance
        loop of the module docstring."""
        if name in lifecycle.RESERVED_EVENTS and not allow_reserved:
            raise lifecycle.refuse_reserved(uuid, name)
        entry_uuid = self.ids.event(uuid, delivery_id)
        job_log.check_data(data)  # before any I/O
        for attempt in range(self.retries + 1):
            job = self._current(uuid)
            if delivery_id is not None:
                past = self._recorded(job, entry_uuid)
                if past is not None:
                    return self._duplicate(job, past)
            if check is not None:
                check(job)
            target = lifecycle.next_state(job["state"], name, uuid=uuid)
            date = now(self.clock)
            seq = int(job.get("event_count") or 0) + 1
            record = job_log.new_record(
                uuid, seq, entry_uuid, name.value, date, data, job["state"], sender
            )
            changes = {
                **(extra(job) if extra is not None else {}),
                # deadline_at / silent_at, in the same write: every event is a heartbeat.
                **deadlines.on_event(job, target.value, date),
                # What the dependents' conditions read (``indexed`` on which attempt).
                **dependencies.milestones(name, job),
                "state": target.value,
                "last_event": name.value,
                "updated": date,
                "event_count": seq,
            }
            try:
                new = self.store.advance(
                    self.collection, uuid, version=job["version"], set=changes, record=(LOG, record)
                )
            except DuplicateDocument:
                # The same delivery, applied by another worker since our read: its record
                # is the answer (the re-read sees it in the log or as last_entry).
                job = self._current(uuid)
                past = self._recorded(job, entry_uuid)
                if past is None:
                    raise
                return self._duplicate(job, past)
            if new is not None:
                return EventResult(new, job_log.entry_of(record), True, job["state"])
            signals.cas_conflict.send(collection=self.collection)
            back_off(attempt)
        signals.cas_gave_up.send(collection=self.collection)
        raise TooManyConflicts(
            f"job {uuid}: {self.retries} concurrent writers won in a row; "
            f"event '{name.value}' was not applied",
            uuid=uuid,
            retry_after=RETRY_AFTER,
        )

    def _current(self, uuid: str) -> Document:
        """The job, converted first if it still embeds its history (written before
        the log; see :mod:`pipelinejobs.domain.job_log`)."""
        job = self.get(uuid)
        if job_log.LEGACY in job:
            job = job_log.upgrade(self.store, self.ids, job, retries=self.retries)
        return job

    def _recorded(self, job: Document, entry_uuid: str) -> Document | None:
        """The record of event ``entry_uuid`` if ``job``'s log holds it: as its
        ``last_entry`` (which may not have reached the log yet on MongoDB) or in the
        log. Read after the job, so nothing applied before that read is missed."""
        last = job.get(LAST_RECORD)
        if isinstance(last, dict) and last.get("uuid") == entry_uuid:
            return last
        record = self.store.get(LOG, entry_uuid)
        if record is not None and record.get("job_uuid") == job["uuid"]:
            return record
        return None

    @staticmethod
    def _duplicate(job: Document, past: Document) -> EventResult:
        before = past.get("previous_state")
        return EventResult(job, job_log.entry_of(past), False, str(before or job["state"]))

    # -- history ---------------------------------------------------------------------------

    def history(
        self, uuid: str, after: int = 0, limit: int = job_log.PAGE, *, detailed: bool = False
    ) -> HistoryPage:
        """Entries ``after + 1`` … ``after + limit`` of job ``uuid``'s history, oldest
        first, and where the next page starts (``next``, None at the end). NotFound
        if there is no such job; ValidationError for a page out of range.
        ``detailed``: each entry with its ``previous_state`` and ``sender`` too."""
        job_log.check_page(after, limit)
        return job_log.read(self.store, self.get(uuid), after, limit, detailed=detailed)

    def record(self, uuid: str, limit: int = job_log.PAGE) -> Document:
        """Job ``uuid`` in the seed's record shape, as the read API shows it: its fields
        with ``history`` — the first ``limit`` entries, and ``history_next`` (the
        ``after`` of the rest, for :meth:`history`) when there are more."""
        job = self.get(uuid)
        page = job_log.read(self.store, job, 0, limit)
        out = {k: v for k, v in job.items() if k not in (LAST_RECORD, job_log.LEGACY)}
        out["history"] = page.entries
        if page.next is not None:
            out["history_next"] = page.next
        return out

    def upgrade(self, job: Document) -> Document:
        """Convert ``job`` if it still embeds its history (see
        :mod:`pipelinejobs.domain.job_log`); the job as it is afterwards."""
        return job_log.upgrade(self.store, self.ids, job, retries=self.retries)
