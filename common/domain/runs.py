"""Runs: a named batch of one pipeline's jobs (Polly's model, issue 15).

A run is created by a ``create_run`` message to the launcher-proxy and keyed by a
typed UUID (prefix 126) derived from its pipeline and name, so creating the same run
twice finds it. A launch names its run (``run``); the job keeps it, indexed. A run
stores no state of its own: its status is derived, each time it is read, from the
number of its jobs in each state by :func:`status` — a pure function of those counts,
so it never drifts from the jobs. Listing runs by status therefore reads them
(:func:`find`): a bounded number per page, resumable where it stopped. A run's
priority levels are the launches' (:mod:`pipelinejobs.domain.priority`, re-exported
here); a job launched in a run without a priority of its own takes the run's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelinejobs.adapters.store.base import Document, Filter, Store, encode_cursor
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.domain.priority import DEFAULT_PRIORITY as DEFAULT_PRIORITY
from pipelinejobs.domain.priority import PRIORITIES as PRIORITIES
from pipelinejobs.domain.priority import priority_of
from pipelinejobs.errors import PipelineJobsError

QUEUED = "QUEUED"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
PARTIALLY_COMPLETED = "PARTIALLY_COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
STATUSES = (QUEUED, RUNNING, COMPLETED, PARTIALLY_COMPLETED, FAILED, CANCELLED)

#: Not started: launched but not yet running.
WAITING = frozenset({State.CREATED})
#: Started and not done: computing, being indexed or validated, or reset for a retry.
ACTIVE = frozenset({State.RUNNING, State.INDEXING, State.VALIDATING, State.RESET})
#: Done, successfully.
SUCCEEDED = frozenset({State.FINISHED, State.VALIDATED, State.FINALIZED})
#: Done, unsuccessfully (a cancel is a ``fail`` with a reason: it is counted here).
UNSUCCESSFUL = frozenset({State.FAILED, State.REJECTED})
#: Done, withdrawn.
WITHDRAWN = frozenset({State.RETIRED})


def status(counts: Mapping[str, int]) -> str:
    """A run's status from the number of its jobs in each state (missing: 0).

    * QUEUED: no job has started — every job is CREATED (or the run has none);
    * RUNNING: at least one job has started and at least one is not done (CREATED,
      RUNNING, INDEXING, VALIDATING or RESET);
    * otherwise every job is done, and the run is
      CANCELLED if at least one is RETIRED, else
      COMPLETED if every one is FINISHED, VALIDATED or FINALIZED, else
      PARTIALLY_COMPLETED if at least one is and at least one FAILED or REJECTED, else
      FAILED (every one FAILED or REJECTED).
    """

    def total(states: frozenset[State]) -> int:
        return sum(int(counts.get(s.value, 0)) for s in states)

    waiting, active = total(WAITING), total(ACTIVE)
    succeeded, unsuccessful, withdrawn = total(SUCCEEDED), total(UNSUCCESSFUL), total(WITHDRAWN)
    started = active + succeeded + unsuccessful + withdrawn
    if started == 0:
        return QUEUED
    if waiting or active:
        return RUNNING
    if withdrawn:
        return CANCELLED
    if not unsuccessful:
        return COMPLETED
    return PARTIALLY_COMPLETED if succeeded else FAILED


def job_priority(named: Any, run: Mapping[str, Any] | None) -> str:
    """A new job's priority: the one its launch names, else its run's, else medium."""
    return priority_of(named) or priority_of((run or {}).get("priority")) or DEFAULT_PRIORITY


def run_priority(store: Store, message: Mapping[str, Any]) -> str | None:
    """The priority of the run a launch or create message names (``run``, a typed 126
    uuid): one read of the run; None when it names none, or no run is found (the
    message's own handling says what is wrong)."""
    named = message.get("run")
    uuid = named.removeprefix("uri:urn:") if isinstance(named, str) else ""
    if not uuid.startswith("126"):
        return None
    try:
        run = store.get("runs", uuid)
    except PipelineJobsError:
        return None
    return priority_of((run or {}).get("priority"))


def counts(store: Store, uuid: str) -> dict[str, int]:
    """The jobs of run ``uuid`` in each of the states (zeros included): one grouped
    count on the jobs' ``(run, state)`` index."""
    grouped = store.count("jobs", {"run": uuid}, group_by="state")
    assert isinstance(grouped, Mapping)
    return {state: int(grouped.get(state, 0)) for state in State.__members__}


#: Runs read per store page while a status filter looks for matches.
SCAN_PAGE = 100
#: Runs a status filter reads for one page: this many per run asked for...
SCAN_PER_RUN = 20
#: ... and never more than this many.
MAX_SCAN = 1000


def scan_budget(limit: int) -> int:
    """How many runs a status filter reads for a page of ``limit``."""
    return min(SCAN_PER_RUN * limit, MAX_SCAN)


@dataclass
class Listing:
    """A page of runs, newest first, each with its jobs' counts by state."""

    runs: list[tuple[Document, dict[str, int]]] = field(default_factory=list)
    #: Where the next page starts (a store cursor), None at the end.
    next: str | None = None
    #: Runs read for this page (with a status filter, more than it shows).
    scanned: int = 0


def find(
    store: Store,
    where: Filter,
    *,
    limit: int,
    after: str | None = None,
    statuses: Collection[str] = (),
    budget: int = 1000,
) -> Listing:
    """Runs matching ``where`` (indexed fields: the store filters), newest first,
    each with :func:`counts`; with ``statuses``, only those whose :func:`status` is one
    of them.

    A status is derived, not stored, so that filter reads runs in order, counting each
    one's jobs, until ``limit`` match or ``budget`` runs are read; ``next`` then
    resumes right after the last run read — also when the page is short, or empty: a
    client following ``next`` to its end sees every match exactly once."""
    if not statuses:
        page = store.find("runs", where, order="created", descending=True, limit=limit,
                          after=after)  # fmt: skip
        listed = [(run, counts(store, run["uuid"])) for run in page.items]
        return Listing(listed, page.next, len(page.items))
    out = Listing(next=after)
    while True:
        size = min(SCAN_PAGE, budget - out.scanned)
        page = store.find("runs", where, order="created", descending=True, limit=size,
                          after=out.next)  # fmt: skip
        for i, run in enumerate(page.items):
            out.scanned += 1
            shown = counts(store, run["uuid"])
            if status(shown) in statuses:
                out.runs.append((run, shown))
            if len(out.runs) >= limit or out.scanned >= budget:
                last = i == len(page.items) - 1
                out.next = page.next if last else encode_cursor(run.get("created"), run["uuid"])
                return out
        out.next = page.next
        if out.next is None:
            return out
