"""A job's history as an append-only log beside the job (DESIGN §3).

Each applied event is one **record** in the ``events`` collection::

    {uuid, job_uuid, seq, name, date, data, previous_state, sender?, version}

``uuid`` is the event's typed (108) uuid and the record's key, so a redelivered event
(whose uuid is derived from its delivery) cannot be appended twice; ``seq`` counts a
job's records 1, 2, 3... without gaps (unique per job); ``previous_state`` is the state
the event was applied to (None for ``create``), so a duplicate is answered from its
record alone. The job keeps ``event_count`` (its newest ``seq``) and, written by the
store, ``last_entry`` (its newest record): an event costs the same on a job with ten
entries or ten thousand, and no job document grows towards MongoDB's 16 MB limit.

**Reading** (:func:`read`) takes the job as read first, then its records after
``after`` up to the job's own count — never a record of a later version, so the page
agrees with the job it is shown with — and merges ``last_entry`` when the log lacks it
(MongoDB, between a transition and its record's insert: see
:mod:`pipelinejobs.adapters.store.mongo_log`), inserting it as it goes (roll forward).
Entries come out in the seed's shape ``{uuid, name, date, data}``.

**Jobs written before the log** embed their history in a ``history`` array. They are
read as they are, and converted one at a time by :func:`upgrade`: their records are
written (upserts: a rerun writes the same ones), then one compare-and-set on the job
removes ``history`` and sets ``event_count``/``last_entry``. A crash in between leaves
the job as it was, so converting it again finishes the job; two processes converting
it at once write the same records and one of them wins the compare-and-set. A worker
converts them all when it starts (:meth:`pipelinejobs.runtime.dispatch.Runtime.start_up`)
and notes it in the ``migrations`` collection, so later starts skip the scan; until
then an event for such a job converts it first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelinejobs.adapters.store.base import LAST_RECORD, Document, In, Range, Store
from pipelinejobs.adapters.store.cas import RETRY_AFTER, back_off
from pipelinejobs.domain import lifecycle
from pipelinejobs.domain.identifiers import Identifiers
from pipelinejobs.domain.lifecycle import Event, State
from pipelinejobs.errors import (
    CorruptDocument,
    DuplicateDocument,
    NotFound,
    StoreUnavailable,
    TooManyConflicts,
    TransitionRefused,
    ValidationError,
)

#: The log collection.
LOG = "events"
JOBS = "jobs"
#: Most entries one read returns, and how many ``GET /jobs/<uuid>`` shows inline.
PAGE = 1000
#: The field in which jobs written before the log embed their history.
LEGACY = "history"
#: The ``migrations`` record saying every job has been converted.
MIGRATION = "history-log"
#: Records written per batch while converting a job.
BATCH = 500


@dataclass(frozen=True)
class HistoryPage:
    """Entries ``after + 1`` to ``after + len(entries)`` of a job's history."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    #: The ``after`` of the next page; None when this page reaches the end.
    next: int | None = None
    #: How many entries the whole history holds.
    count: int = 0


def entry_of(record: Mapping[str, Any], detailed: bool = False) -> dict[str, Any]:
    """A record as a history entry in the seed's shape; ``detailed``: plus what the log
    knows beyond it, when it knows it — ``previous_state`` (the state the event was
    applied to; with the event's name, the state it led to) and ``sender`` (who sent
    it), as ``GET /jobs/<uuid>/history`` shows them."""
    entry = {
        "uuid": record.get("uuid"),
        "name": record.get("name"),
        "date": record.get("date"),
        "data": record.get("data") or {},
    }
    if detailed:
        if "previous_state" in record:
            entry["previous_state"] = record["previous_state"]
        if record.get("sender"):
            entry["sender"] = record["sender"]
    return entry


def check_data(data: Any) -> dict[str, Any]:
    """An event's data as stored; ValidationError unless it is a JSON object (or None)."""
    if data is not None and not isinstance(data, Mapping):
        raise ValidationError(
            f"event data must be a JSON object, not {type(data).__name__}", path="data"
        )
    return dict(data or {})


def new_record(
    job_uuid: str,
    seq: int,
    uuid: str,
    name: str,
    date: str,
    data: Mapping[str, Any] | None,
    previous_state: str | None,
    sender: str | None = None,
) -> Document:
    """The log record of one applied event."""
    record: Document = {
        "uuid": uuid,
        "job_uuid": job_uuid,
        "seq": seq,
        "name": name,
        "date": date,
        "data": check_data(data),
        "previous_state": previous_state,
    }
    if sender:
        record["sender"] = sender
    return record


def check_page(after: int, limit: int) -> None:
    """ValidationError for a page the log cannot be asked for."""
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValidationError(f"after must be an integer >= 0, not {after!r}", path="after")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE:
        raise ValidationError(f"limit must be between 1 and {PAGE}, not {limit!r}", path="limit")


def read(
    store: Store, job: Document, after: int = 0, limit: int = PAGE, *, detailed: bool = False
) -> HistoryPage:
    """Entries ``after + 1`` … ``after + limit`` of ``job``'s history, as of ``job``
    (see the module docstring); ``detailed``: see :func:`entry_of`."""
    check_page(after, limit)
    legacy = job.get(LEGACY)
    if isinstance(legacy, list):
        upto = min(len(legacy), after + limit)
        entries = [
            entry_of(e, detailed) if isinstance(e, Mapping) else {} for e in legacy[after:upto]
        ]
        return HistoryPage(entries, upto if upto < len(legacy) else None, len(legacy))
    records, nxt, count = read_records(store, job, after, limit)
    return HistoryPage([entry_of(r, detailed) for r in records], nxt, count)


def read_records(
    store: Store, job: Document, after: int = 0, limit: int = PAGE
) -> tuple[list[Document], int | None, int]:
    """Records ``after + 1`` … ``after + limit`` of ``job``'s log as :func:`read` reads
    them, whole (``sender`` and ``previous_state`` included: what an operator's
    timeline shows): (records, the next page's ``after`` or None, the count). An
    embedded legacy history gives its entries as they are."""
    check_page(after, limit)
    legacy = job.get(LEGACY)
    if isinstance(legacy, list):
        upto = min(len(legacy), after + limit)
        entries = [dict(e) if isinstance(e, Mapping) else {} for e in legacy[after:upto]]
        return entries, upto if upto < len(legacy) else None, len(legacy)
    count = int(job.get("event_count") or 0)
    upto = min(count, after + limit)
    if upto <= after:
        return [], None, count
    page = store.find(
        LOG,
        {"job_uuid": job["uuid"], "seq": Range(gte=after + 1, lt=upto + 1)},
        order="seq",
        limit=upto - after,
    )
    records = {r["seq"]: r for r in page.items if isinstance(r.get("seq"), int)}
    last = job.get(LAST_RECORD)
    if isinstance(last, dict) and isinstance(last.get("seq"), int):
        if after < last["seq"] <= upto and last["seq"] not in records:
            records[last["seq"]] = last
            roll_forward(store, last)
    return [records[seq] for seq in sorted(records)], upto if upto < count else None, count


def read_after_many(
    store: Store, wanted: list[tuple[Document, int]], *, most: int = PAGE
) -> dict[tuple[str, int], list[Document]]:
    """Each (job, ``after``)'s records (up to its ``event_count``), for several
    jobs: one query per distinct ``after`` instead of one per job — jobs that move in
    step (a notice's jobs usually do) are read together. Read as :func:`read_records`
    reads (the newest from ``last_entry`` when the log lags). A group that would
    return more than ``most`` records, and an embedded legacy history, are read job
    by job."""
    out: dict[tuple[str, int], list[Document]] = {}
    groups: dict[int, list[Document]] = {}
    for job, after in wanted:
        if isinstance(job.get(LEGACY), list):
            out[job["uuid"], after] = _read_all_after(store, job, after)
        elif int(job.get("event_count") or 0) <= after:
            out[job["uuid"], after] = []
        else:
            groups.setdefault(after, []).append(job)
    for after, jobs in groups.items():
        newest = max(int(job.get("event_count") or 0) for job in jobs)
        # Every row the query can match (events applied since the jobs were read
        # included), so no job's records can be cut off by the limit.
        bound = len(jobs) * (newest - after)
        if len(jobs) == 1 or bound > most:
            for job in jobs:
                out[job["uuid"], after] = _read_all_after(store, job, after)
            continue
        page = store.find(
            LOG,
            {"job_uuid": In([job["uuid"] for job in jobs]),
             "seq": Range(gte=after + 1, lt=newest + 1)},
            order="seq",
            limit=bound,
        )  # fmt: skip
        found: dict[str, dict[int, Document]] = {job["uuid"]: {} for job in jobs}
        for record in page.items:
            seq = record.get("seq")
            if isinstance(seq, int) and record.get("job_uuid") in found:
                found[record["job_uuid"]][seq] = record
        for job in jobs:
            records = found[job["uuid"]]
            count = int(job.get("event_count") or 0)
            records = {seq: r for seq, r in records.items() if seq <= count}
            last = job.get(LAST_RECORD)
            if isinstance(last, dict) and isinstance(last.get("seq"), int):
                if after < last["seq"] <= count and last["seq"] not in records:
                    records[last["seq"]] = last
                    roll_forward(store, last)
            if len(records) < count - after:  # a gap (a log still being written): alone
                out[job["uuid"], after] = _read_all_after(store, job, after)
            else:
                out[job["uuid"], after] = [records[seq] for seq in sorted(records)]
    return out


def _read_all_after(store: Store, job: Document, after: int) -> list[Document]:
    out: list[Document] = []
    while True:
        records, nxt, _ = read_records(store, job, after, PAGE)
        out.extend(records)
        if nxt is None or not records:
            return out
        after = nxt


def roll_forward(store: Store, record: Document) -> bool:
    """Put a job's ``last_entry`` into the log if it is not there (a reader's share of
    the MongoDB protocol); True if this call inserted it. Best effort: the reader has
    merged it already, and the next writer inserts it anyway."""
    try:
        store.insert(LOG, {k: v for k, v in record.items() if k != "version"})
    except (DuplicateDocument, StoreUnavailable):
        return False
    return True


# -- jobs written before the log ---------------------------------------------------------


def legacy_records(ids: Identifiers, job: Document) -> list[Document]:
    """The records of an embedded ``history``, oldest first: sequence numbers in order,
    ``previous_state`` replayed through the lifecycle table (None from the first
    entry the table no longer replays), a uuid derived for an entry without one (or
    repeating an earlier one, which would otherwise overwrite it)."""
    uuid = job["uuid"]
    history = job.get(LEGACY)
    if not isinstance(history, list):
        raise CorruptDocument(JOBS, uuid, f"its embedded {LEGACY!r} is not a list")
    records, seen = [], set()
    state: str | None = None
    for seq, entry in enumerate(history, 1):
        entry = entry if isinstance(entry, Mapping) else {}
        entry_uuid = entry.get("uuid")
        if not isinstance(entry_uuid, str) or not entry_uuid or entry_uuid in seen:
            entry_uuid = ids.event(uuid, f"legacy:{seq}")
        seen.add(entry_uuid)
        name = str(entry.get("name") or Event.UPDATE.value)
        data = entry.get("data") if isinstance(entry.get("data"), Mapping) else {}
        date = str(entry.get("date") or job.get("updated") or "")
        records.append(new_record(uuid, seq, entry_uuid, name, date, data, state))
        state = _replay(state, name)
    return records


def _replay(state: str | None, name: str) -> str | None:
    if name == Event.CREATE.value:
        return State.CREATED.value
    if state is None:
        return None
    try:
        return lifecycle.next_state(state, name).value
    except (TransitionRefused, ValidationError):
        return None


def upgrade(store: Store, ids: Identifiers, job: Document, *, retries: int) -> Document:
    """Convert one job that embeds its history; the job as it is afterwards (converted
    here or by another process). See the module docstring for why it is safe to run
    twice, at once, or again after a crash."""
    uuid = job["uuid"]
    for attempt in range(retries + 1):
        if LEGACY not in job:
            return job
        records = legacy_records(ids, job)
        for start in range(0, len(records), BATCH):
            store.put_many(LOG, records[start : start + BATCH])
        fields: Document = {"event_count": len(records)}
        if records:
            fields[LAST_RECORD] = {**records[-1], "version": 0}
        new = store.update(JOBS, uuid, version=job["version"], set=fields, unset=[LEGACY])
        if new is not None:
            return new
        back_off(attempt)
        current = store.get(JOBS, uuid)
        if current is None:
            raise NotFound(f"no job {uuid}", uuid=uuid)
        job = current
    raise TooManyConflicts(
        f"job {uuid}: {retries} concurrent writers won in a row; not converted yet",
        uuid=uuid,
        retry_after=RETRY_AFTER,
    )


def migration_done(store: Store) -> bool:
    """Whether every job of this store has been converted (and noted so)."""
    return store.get("migrations", MIGRATION) is not None


def legacy_jobs(store: Store, batch: int = 100) -> Iterator[Document]:
    """Every job that still embeds its history, a page at a time."""
    after = None
    while True:
        page = store.find(JOBS, limit=batch, after=after)
        yield from (job for job in page.items if LEGACY in job)
        if page.next is None:
            return
        after = page.next


def mark_migrated(store: Store, date: str, converted: int) -> None:
    """Note that every job is converted (another process may have noted it first)."""
    try:
        store.insert("migrations", {"id": MIGRATION, "date": date, "converted": converted})
    except DuplicateDocument:
        pass
