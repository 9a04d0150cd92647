"""Jobs in the store: creating them and applying lifecycle events, atomically.

Applying an event is a loop of *read → decide → compare-and-set*:

1. read the job (its state and ``version``);
2. decide with :mod:`pipelinejobs.domain.lifecycle` whether the event is allowed and where it
   leads — a refusal raises and nothing was written;
3. write ``state``/``last_event``/``updated`` and append the history entry in one
   ``Store.update`` conditioned on the version read in step 1.

If another writer got there first the CAS fails, and the loop starts again from
a fresh read (with a short, jittered back-off). No history entry is ever lost,
and the decision is always made against the state it is written over.

At-least-once delivery means the same message can arrive twice. An event sent with
a ``delivery_id`` gets a history UUID derived from it; if that UUID is already in
the history, the event is reported as a duplicate and not applied again — and
because the check runs inside the CAS loop, two concurrent deliveries of the same
message cannot both pass it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelinejobs.adapters.store.base import Document, Store, not_found
from pipelinejobs.domain import lifecycle, validation
from pipelinejobs.domain.clock import Clock, now, system_clock
from pipelinejobs.domain.identifiers import Identifiers, require_type
from pipelinejobs.domain.lifecycle import Event, State
from pipelinejobs.errors import (
    DuplicateDocument,
    TooManyConflicts,
    TransitionRefused,
    ValidationError,
)

#: Called with the freshly read job before an event is applied; raises to refuse
#: (token checks live in this hook, so the check and the write see the same document).
Check = Callable[[Document], None]


@dataclass(frozen=True)
class EventResult:
    """What :meth:`Jobs.apply` did."""

    job: Document
    entry: dict[str, Any]
    applied: bool
    #: The state the event was applied to. For a duplicate, the state *its first
    #: delivery* was applied to (replayed from the history), not the current one:
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


def state_before(history: Iterable[Mapping[str, Any]], entry_uuid: str) -> str | None:
    """The state a job was in when history entry ``entry_uuid`` was applied.

    Replays the history through the lifecycle table (every applied event is in it,
    oldest first, starting with ``create``). None if the entry is not there or the
    history no longer replays (a table changed since it was written).
    """
    state: str | None = None
    for entry in history:
        if entry.get("uuid") == entry_uuid:
            return state
        name = str(entry.get("name"))
        if name == Event.CREATE.value:
            state = State.CREATED.value
            continue
        try:
            state = lifecycle.next_state(str(state), name).value
        except (TransitionRefused, ValidationError):
            return None
    return None


def _history_entry(uuid: str, name: str, date: str, data: Mapping[str, Any] | None) -> dict:
    if data is not None and not isinstance(data, Mapping):
        raise ValidationError(
            f"event data must be a JSON object, not {type(data).__name__}", path="data"
        )
    return {"uuid": uuid, "name": name, "date": date, "data": dict(data or {})}


class Jobs:
    """Creates jobs and moves them through the lifecycle, in one store."""

    collection = "jobs"

    def __init__(
        self,
        store: Store,
        identifiers: Identifiers | None = None,
        *,
        clock: Clock = system_clock,
        retries: int = 1000,
    ) -> None:
        self.store = store
        self.ids = identifiers or Identifiers()
        self.clock = clock
        self.retries = retries

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
    ) -> CreateResult:
        """Create the job for (pipeline, linkage, data), or return the existing one.

        The UUID is derived from exactly those three, so a resubmission finds the
        record it made the first time. ``fields`` adds stored attributes that do not
        make up its identity (archive path, agent, index configuration...).
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
            "history": [
                _history_entry(self.ids.event(uuid, "create"), Event.CREATE.value, date, data)
            ],
        }
        validation.validate("pipelinejob", job)
        try:
            return CreateResult(self.store.insert(self.collection, job), True)
        except DuplicateDocument:
            return CreateResult(self.get(uuid), False)

    def apply(
        self,
        uuid: str,
        event: str,
        data: Mapping[str, Any] | None = None,
        *,
        delivery_id: str | None = None,
        check: Check | None = None,
        allow_reserved: bool = False,
    ) -> EventResult:
        """Apply ``event`` to job ``uuid`` atomically; see the module docstring.

        Raises NotFound, TransitionRefused (with state, event and allowed sources),
        ValidationError, whatever ``check`` raises, or TooManyConflicts if the
        compare-and-set lost more than ``retries`` times in a row.
        """
        require_type(uuid, "pipelinejob")
        name = lifecycle.parse_event(event)
        if name in lifecycle.RESERVED_EVENTS and not allow_reserved:
            raise lifecycle.refuse_reserved(uuid, name)
        entry_uuid = self.ids.event(uuid, delivery_id)
        _history_entry(entry_uuid, name.value, "", data)  # validate before any I/O
        for attempt in range(self.retries + 1):
            job = self.get(uuid)
            if delivery_id is not None:
                for past in job.get("history", ()):
                    if past.get("uuid") == entry_uuid:
                        before = state_before(job["history"], entry_uuid)
                        return EventResult(job, past, False, before or job["state"])
            if check is not None:
                check(job)
            target = lifecycle.next_state(job["state"], name, uuid=uuid)
            date = now(self.clock)
            entry = _history_entry(entry_uuid, name.value, date, data)
            new = self.store.update(
                self.collection,
                uuid,
                version=job["version"],
                set={"state": target.value, "last_event": name.value, "updated": date},
                push={"history": [entry]},
            )
            if new is not None:
                return EventResult(new, entry, True, job["state"])
            self._back_off(attempt)
        raise TooManyConflicts(
            f"job {uuid}: {self.retries} concurrent writers won in a row; "
            f"event '{name.value}' was not applied",
            uuid=uuid,
        )

    @staticmethod
    def _back_off(attempt: int) -> None:
        """Jittered exponential pause after a lost CAS: the first retries are immediate,
        later ones spread the contenders out (at most ~20 ms)."""
        if attempt >= 2:
            time.sleep(random.uniform(0, min(0.02, 0.0005 * 2 ** (attempt - 2))))
