"""Retrying a FAILED job: attempts, retry policies and their back-off.

A job runs as **attempts** numbered from 1 (a job without an ``attempt`` field is on
its first). Retrying a FAILED job replays its stored launch as attempt n+1 on the same
job uuid; the archive of an instanced launch gets a new instancing directory, and the
earlier attempts are listed on the job (``attempts``: each one's number, archive path
and the reason it failed), so their files stay linked to them by path.

A launch may carry a **retry policy** (TileDB's ``retry_strategy``)::

    {"limit": 3, "backoff": 2, "max_backoff": 60, "on": ["FAILED", "timeout"]}

``limit`` is the most attempts in all (``limit: 3`` runs at most three times);
``backoff`` (s, default 1) doubles with every attempt, capped at ``max_backoff`` (s,
default 300), with full jitter over the upper half; ``on`` (default: any failure)
lists what a failure must match to be retried — a callback status (``FAILED``,
``KILLED``, ``STOPPED``, ``ARCHIVING_FAILED``) or words of the ``fail``'s reason
(case-insensitive substring). A failure by the reconciler (a deadline passed, no
heartbeat) is retried only when ``on`` names a word of its reason (``deadline``,
``heartbeat``); the retried attempt's deadline runs again from its start.
"""

from __future__ import annotations

import posixpath
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from pipelinejobs.domain import archive_paths
from pipelinejobs.domain.clock import Clock, system_clock
from pipelinejobs.domain.lifecycle import State

DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 300.0
#: ``<session>-YYYYMMDDTHHmmssZ``'s stamp: how an instanced archive path ends.
STAMP = re.compile(r"-\d{8}T\d{6}Z$")


def attempt_of(job: Mapping[str, Any]) -> int:
    """The attempt a job is on (1 for a job that was never retried)."""
    return int(job.get("attempt") or 1)


def refusal(job: Mapping[str, Any]) -> str | None:
    """Why ``job`` cannot be retried now (None: it can)."""
    if job.get("state") != State.FAILED:
        return f"job {job.get('uuid')} is {job.get('state')}: only a FAILED job can be retried"
    if not isinstance(job.get("launch"), Mapping) or "job_definition" not in job["launch"]:
        return (
            f"job {job.get('uuid')} was not started by a launch (no stored job definition "
            f"to replay): only a launched job can be retried"
        )
    return None


def delay(
    policy: Mapping[str, Any], attempt: int, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retrying failed attempt ``attempt``:
    ``backoff × 2^(attempt−1)``, capped at ``max_backoff``, jittered over its upper half
    (so retries of a batch that failed together spread out but none comes early)."""
    backoff = float(policy.get("backoff", DEFAULT_BACKOFF))
    cap = float(policy.get("max_backoff", DEFAULT_MAX_BACKOFF))
    base = min(backoff * 2 ** max(attempt - 1, 0), cap)
    return base / 2 + rand() * base / 2


def matches(policy: Mapping[str, Any], data: Mapping[str, Any] | None) -> bool:
    """Whether a ``fail`` with ``data`` is one ``policy`` retries (``on``: any status
    equal, or any reason containing the word, case-insensitive; no ``on``: every
    failure). A cancel (``data.cancelled``) never is."""
    data = data or {}
    if data.get("cancelled"):
        return False  # a person's decision, not a failure to retry (a bulk cancel)
    wanted = [str(w).lower() for w in policy.get("on") or []]
    overdue = data.get("overdue")
    if isinstance(overdue, Mapping):
        # The reconciler's (issue 16): retried only when ``on`` names it — a word of
        # its reason ("deadline", "heartbeat") — never by default nor by ``FAILED``: a
        # job that ran out of time would most likely run out of it again.
        reason = str(data.get("reason") or "").lower()
        return any(w in reason for w in wanted)
    if not wanted:
        return True
    status = str(data.get("status") or "FAILED").lower()
    reason = str(data.get("reason") or data.get("error") or "").lower()
    return any(w == status or (w and w in reason) for w in wanted)


def should_retry(job: Mapping[str, Any], data: Mapping[str, Any] | None) -> bool:
    """A FAILED job whose launch has a policy that allows another attempt for this
    failure."""
    policy = (job.get("launch") or {}).get("retry")
    if not isinstance(policy, Mapping) or job.get("state") != State.FAILED:
        return False
    return attempt_of(job) < int(policy.get("limit", 1)) and matches(policy, data)


def instanced(job: Mapping[str, Any]) -> bool:
    """Whether the job's archive path ends in an instancing directory: as its launch
    recorded, or (a job launched before it was recorded) its last directory is its
    session stamped with a time."""
    launch = job.get("launch") or {}
    if "instanced" in launch:
        return bool(launch["instanced"])
    path, session = str(job.get("archive_path") or ""), str(job.get("session") or "")
    last = posixpath.basename(path)
    return bool(session) and last.startswith(f"{session}-") and bool(STAMP.search(last))


def next_archive_path(job: Mapping[str, Any], attempt: int, clock: Clock = system_clock) -> str:
    """Where attempt ``attempt`` writes: a new instancing directory beside the last
    one (``<session>-<attempt>-<stamp>``, distinct even within one second), or the same
    path for a non-instanced launch."""
    path = str(job["archive_path"])
    if not instanced(job):
        return path
    session = str(job.get("session") or archive_paths.new_session())
    directory = archive_paths.instanced_directory(f"{session}-{attempt}", clock)
    return f"{posixpath.dirname(path)}/{directory}"
