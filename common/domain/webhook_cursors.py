"""Where each webhook subscription is in each job's events: one cursor document per
job (issue 16).

``webhook_cursors`` holds ``{id: job uuid, subs: {subscription id: {seq, retry}}}``:
``seq`` is the newest of the job's events the subscription has been given (delivered,
or passed over by its filter); ``retry``, when set, is the pending retry chain
``{attempt, since, at, due}`` that new notices leave the (subscription, job) to.

**Why one document per job, not one per (subscription, job).** A notifier execution
offers a job's new events to every subscription at once; with a document per pair,
ten subscriptions cost ten compare-and-set writes per event, which was most of what
webhooks cost an event. Here an execution reads the job's cursor once, delivers to
every subscription, and writes what moved in one compare-and-set (:meth:`settle`).

**Order under concurrency.** Positions only move forward: :meth:`settle` merges, it
does not overwrite, so an execution that got less far than another cannot move a
cursor back. An execution posts a job's events in order from the position it read
and each only after the one before it was acknowledged, so the first arrival of
every event is in order whichever execution posts it; an execution that read an old
position repeats deliveries the receiver already has (the same delivery ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelinejobs.adapters.store.base import Document, In, Store
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES
from pipelinejobs.errors import DuplicateDocument, StoreError

CURSORS = "webhook_cursors"


@dataclass
class Move:
    """What one execution did for one (subscription, job): reached ``seq``; and, when
    the next wanted event failed, the retry ``{attempt, since, at, due}`` it wants to
    schedule from there (``attempt``: one more than the chain it read, or 1)."""

    seq: int
    retry: Mapping[str, Any] | None = None


@dataclass
class Settled:
    """What :meth:`Cursors.settle` wrote: the subscriptions whose retry this execution
    scheduled (so it sends their retry messages; another execution that got further
    or scheduled first carries on instead)."""

    scheduled: list[str] = field(default_factory=list)


def position(doc: Mapping[str, Any], sub_id: str) -> tuple[int, Mapping[str, Any] | None]:
    """(seq, pending retry or None) of ``sub_id`` in a job's cursor document."""
    entry = (doc.get("subs") or {}).get(sub_id) or {}
    return int(entry.get("seq") or 0), entry.get("retry") or None


class Cursors:
    """The per-job cursor documents of one store."""

    def __init__(self, store: Store, *, retries: int = DEFAULT_RETRIES) -> None:
        self.store = store
        self.retries = retries

    def read(self, job_uuids: Iterable[str]) -> dict[str, Document]:
        """Each job's cursor document (``{"id": uuid, "subs": {}}`` when it has none
        yet), read in one query."""
        wanted = list(dict.fromkeys(job_uuids))
        found: dict[str, Document] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            page = self.store.find(CURSORS, {"id": In(chunk)}, limit=len(chunk))
            found.update((doc["id"], doc) for doc in page.items)
        return {uuid: found.get(uuid) or {"id": uuid, "subs": {}} for uuid in wanted}

    def settle(self, job_uuid: str, read: Document, moves: Mapping[str, Move]) -> Settled:
        """Merge ``moves`` (subscription id → :class:`Move`) into the job's cursor by
        compare-and-set, starting from the document as ``read``; re-read and merged
        again when another execution wrote in between."""
        doc = read
        for _ in range(self.retries + 1):
            subs, settled = _merged(doc.get("subs") or {}, moves)
            if subs == (doc.get("subs") or {}):
                return settled
            if "version" not in doc:
                try:
                    self.store.insert(CURSORS, {"id": job_uuid, "subs": subs})
                    return settled
                except DuplicateDocument:
                    pass
            else:
                written = self.store.update(
                    CURSORS, job_uuid, version=doc["version"], set={"subs": subs}
                )
                if written is not None:
                    return settled
            doc = self.store.get(CURSORS, job_uuid) or {"id": job_uuid, "subs": {}}
        raise StoreError(f"webhook cursor of job {job_uuid}: too much contention")

    def reset(self, job_uuid: str, sub_id: str, seq: int) -> None:
        """Put ``sub_id``'s position in the job back to ``seq`` (an operator's redo,
        and what tests use to act out a crash between posting and settling)."""
        doc = self.read([job_uuid])[job_uuid]
        subs = dict(doc.get("subs") or {})
        subs[sub_id] = {"seq": seq, "retry": None}
        if "version" in doc:
            self.store.update(CURSORS, job_uuid, version=doc["version"], set={"subs": subs})
        else:
            self.store.insert(CURSORS, {"id": job_uuid, "subs": subs})


def _merged(stored: Mapping[str, Any], moves: Mapping[str, Move]) -> tuple[dict[str, Any], Settled]:
    """The cursor's ``subs`` with ``moves`` merged in (positions only forward)."""
    subs = {k: dict(v) for k, v in stored.items()}
    settled = Settled()
    for sub_id, move in moves.items():
        entry = subs.setdefault(sub_id, {"seq": 0, "retry": None})
        seq, pending = int(entry.get("seq") or 0), entry.get("retry")
        if move.seq > seq:
            entry["seq"], entry["retry"], seq, pending = move.seq, None, move.seq, None
        if move.retry is None or seq > move.seq:
            continue  # delivered; or another execution got further: it carries on
        if pending and int(pending.get("attempt") or 0) >= int(move.retry["attempt"]):
            continue  # another execution scheduled this retry (or a later one) first
        entry["retry"] = dict(move.retry)
        settled.scheduled.append(sub_id)
    return subs, settled
