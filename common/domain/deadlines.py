"""Deadlines and heartbeats: when a job has waited too long, as indexed times.

A launch (or ``pipelinejob_create``) may set two limits, each in seconds or as a
duration (:func:`parse_duration`); its pipeline and ``config.yml``'s ``reconciler``
section give defaults, in that order (launch > pipeline > config):

* ``deadline`` — wall time for the job's compute, counted from its creation (from
  ``ready`` for a retried attempt, so a retry gets the whole time again). It covers
  CREATED and RUNNING: a job that reached FINISHED (or any later or failed state) is
  not overdue, whatever its indexing takes.
* ``heartbeat_timeout`` — the longest silence allowed while RUNNING: every event
  applied to the job (a callback, an ``update``, a ``resource``, a repeated ``run``)
  is a heartbeat.

Finding the overdue jobs must cost the same with ten jobs or ten million, so the
limits are kept on the job as **absolute, indexed times**, both ISO dates (which sort
as text): ``deadline_at`` (creation + deadline) and ``silent_at`` (the last event's
date + heartbeat_timeout, rewritten by every event applied while RUNNING). Both are
written by the same compare-and-set that applies the event (:func:`on_event`, called
by :meth:`pipelinejobs.domain.jobs.Jobs.apply`), and set to null when the job leaves
the states they cover, so the index holds only jobs that can still be overdue and
:func:`overdue` is one index range scan from the oldest time to now.

Failing an overdue job is keyed (:class:`Overdue`): the ``fail`` event's key, and the
execution carrying it, are derived from (job, kind, the time that passed), so two
reconcilers failing the same job write one history entry; and the ``fail`` says which
time it acts on (``data.overdue``), which the jobs-manager checks against the job it
writes over (:func:`still_overdue`), so a heartbeat that lands between the reconciler's
query and the write saves the job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelinejobs.adapters.store.base import Range, Store
from pipelinejobs.domain.clock import iso, parse
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.errors import ValidationError

DEADLINE = "deadline"
HEARTBEAT = "heartbeat_timeout"
DEADLINE_AT = "deadline_at"
SILENT_AT = "silent_at"
#: kind -> (the limit's field, the indexed time's field)
KINDS: dict[str, tuple[str, str]] = {
    "deadline": (DEADLINE, DEADLINE_AT),
    "heartbeat": (HEARTBEAT, SILENT_AT),
}
#: Where a deadline runs: the compute's states (a finished job is not overdue).
DEADLINE_STATES = frozenset({State.CREATED.value, State.RUNNING.value})
#: Where silence counts.
HEARTBEAT_STATES = frozenset({State.RUNNING.value})
#: The longest limit accepted: 10,000 days — the most the schema's forms can write
#: (``pipelinejob_duration.json``: at most 4 digits of days, 5 of hours, 6 of minutes,
#: 8 of seconds), so that what the schema allows the service accepts.
MAX_SECONDS = 10000 * 86400.0

_CLOCK = re.compile(r"(\d+):([0-5]\d):([0-5]\d)", re.ASCII)  # Agave's maxRunTime form
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WITH_UNIT = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)", re.ASCII)


def parse_duration(value: Any, path: str) -> float:
    """Seconds in ``value``: a number of seconds, ``"HH:MM:SS"`` (as Agave's
    ``maxRunTime``), or a number with a unit ``s``, ``m``, ``h`` or ``d`` (``"90s"``,
    ``"30m"``). 0 is none (a launch's 0 turns off its pipeline's default); at most
    :data:`MAX_SECONDS`; ValidationError naming ``path`` otherwise."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        clock = _CLOCK.fullmatch(text)
        unit = _WITH_UNIT.fullmatch(text)
        if clock:
            h, m, s = (int(g) for g in clock.groups())
            seconds = float(h * 3600 + m * 60 + s)
        elif unit:
            seconds = float(unit.group(1)) * _UNITS[unit.group(2) or "s"]
    if seconds is None or not math.isfinite(seconds):
        raise ValidationError(
            f"{path} must be seconds (a number) or a duration like '00:30:00', '90s', "
            f"'30m', '2h' or '1d', not {value!r}",
            path=path,
        )
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValidationError(
            f"{path} must be 0 (none) to {MAX_SECONDS:g} s (10,000 days), not {seconds:g}",
            path=path,
        )
    return seconds


def hms(seconds: float) -> str:
    """``HH:MM:SS`` (whole seconds), as a deadline is named in a failure's reason."""
    whole = int(round(seconds))
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def limits(
    launch: Mapping[str, Any],
    pipeline: Mapping[str, Any],
    default_deadline: float = 0.0,
    default_heartbeat: float = 0.0,
) -> dict[str, float]:
    """The job's limits (``deadline``, ``heartbeat_timeout`` in seconds; absent when
    none): the launch's, else its pipeline's, else the configured default — the first
    given wins, and 0 says none (a launch's 0 turns off its pipeline's default). A bad
    value names its field (the pipeline's were checked when it was registered)."""
    out: dict[str, float] = {}
    for name, default in ((DEADLINE, default_deadline), (HEARTBEAT, default_heartbeat)):
        if launch.get(name) is not None:
            seconds = parse_duration(launch[name], name)
        elif pipeline.get(name) is not None:
            seconds = parse_duration(pipeline[name], f"pipeline/{name}")
        else:
            seconds = float(default)
        if seconds > 0:
            out[name] = seconds
    return out


def after(date: str, seconds: float) -> str:
    """The stored date ``seconds`` after stored date ``date``."""
    return iso(parse(date) + seconds)


def on_create(job: Mapping[str, Any], date: str) -> dict[str, Any]:
    """The indexed times of a job created at ``date``: its deadline runs from now."""
    if job.get(DEADLINE):
        return {DEADLINE_AT: after(date, float(job[DEADLINE]))}
    return {}


def on_event(job: Mapping[str, Any], target: str, date: str) -> dict[str, Any]:
    """The indexed times an event applied at ``date``, taking ``job`` to state
    ``target``, writes in the same compare-and-set (nothing for a job without limits).

    ``deadline_at`` stays while the job stays in CREATED/RUNNING, restarts when it
    comes back there (a retried attempt's ``ready``), and is cleared when it leaves;
    ``silent_at`` moves to ``date`` + heartbeat_timeout with every event that leaves
    the job RUNNING, and is cleared when it leaves RUNNING."""
    changes: dict[str, Any] = {}
    if job.get(DEADLINE):
        if target not in DEADLINE_STATES:
            if job.get(DEADLINE_AT) is not None:
                changes[DEADLINE_AT] = None
        elif job.get("state") not in DEADLINE_STATES or job.get(DEADLINE_AT) is None:
            changes[DEADLINE_AT] = after(date, float(job[DEADLINE]))
    elif job.get(DEADLINE_AT) is not None:
        changes[DEADLINE_AT] = None
    if job.get(HEARTBEAT) and target in HEARTBEAT_STATES:
        changes[SILENT_AT] = after(date, float(job[HEARTBEAT]))
    elif job.get(SILENT_AT) is not None:
        changes[SILENT_AT] = None
    return changes


@dataclass(frozen=True)
class Overdue:
    """A job past one of its times: what failing it says, and the keys that make two
    reconcilers' fails of it one."""

    uuid: str
    kind: str  # "deadline" | "heartbeat"
    at: str  # the deadline_at / silent_at that passed
    limit: float  # the job's deadline / heartbeat_timeout, in seconds

    @property
    def reason(self) -> str:
        if self.kind == "deadline":
            return f"deadline {hms(self.limit)} passed"
        return f"no heartbeat for {self.limit:g} s (heartbeat_timeout)"

    @property
    def key(self) -> str:
        """The ``fail``'s event key: the job is in its history uuid already."""
        return f"reconciler:{self.kind}:{self.at}"

    def data(self) -> dict[str, Any]:
        """The ``fail``'s data: the reason, and the time it acts on (checked by
        :func:`still_overdue` against the job it is written over)."""
        return {
            "reason": self.reason,
            "status": "DEADLINE" if self.kind == "deadline" else "HEARTBEAT_TIMEOUT",
            "overdue": {"kind": self.kind, "at": self.at, "limit": self.limit},
        }


def overdue(store: Store, now: str, limit: int = 500) -> list[Overdue]:
    """Jobs whose ``deadline_at`` or ``silent_at`` is before ``now``, oldest first, at
    most ``limit`` of each kind: two index range scans. A job past both is listed for
    its deadline only (one failure is enough)."""
    found: list[Overdue] = []
    seen: set[str] = set()
    for kind, (field, at_field) in KINDS.items():
        page = store.find("jobs", {at_field: Range(lt=now)}, order=at_field, limit=limit)
        for job in page.items:
            if job["uuid"] in seen or not still_overdue(job, kind, job.get(at_field), now):
                continue
            seen.add(job["uuid"])
            found.append(Overdue(job["uuid"], kind, str(job[at_field]), float(job[field])))
    return found


def still_overdue(job: Mapping[str, Any], kind: str, at: Any, now: str) -> bool:
    """Whether ``job`` (as read for the write) is still past the time ``at`` of
    ``kind``: the same time is still recorded (no heartbeat since, not retried), it
    has passed, and the job is in a state the limit covers."""
    if kind not in KINDS or not isinstance(at, str):
        return False
    states = DEADLINE_STATES if kind == "deadline" else HEARTBEAT_STATES
    return job.get(KINDS[kind][1]) == at and at < now and job.get("state") in states


def overdue_of(data: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The ``overdue`` a reconciler's ``fail`` carries (None for any other fail)."""
    value = (data or {}).get("overdue")
    return value if isinstance(value, Mapping) else None
