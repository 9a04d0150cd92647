"""Runs: a named batch of one pipeline's jobs (Polly's model, issue 15).

A run is created by a ``create_run`` message to the launcher-proxy and keyed by a
typed UUID (prefix 126) derived from its pipeline and name, so creating the same run
twice finds it. A launch names its run (``run``); the job keeps it, indexed. A run
stores no state of its own: its status is derived, each time it is read, from the
number of its jobs in each state by :func:`status` — a pure function of those counts,
so it never drifts from the jobs. A run's priority levels are the launches'
(:mod:`pipelinejobs.domain.priority`, re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping

from pipelinejobs.domain.lifecycle import State
from pipelinejobs.domain.priority import DEFAULT_PRIORITY as DEFAULT_PRIORITY
from pipelinejobs.domain.priority import PRIORITIES as PRIORITIES

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
