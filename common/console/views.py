"""What the console's pages read, each read bounded so a page stays fast at any size.

Every figure comes from the store's indexes: counts per state are one index range
each (``(state, created)``; eleven small counts beat one grouped scan), a list is a
keyset page (``find`` with the API's cursors), events over the last hour are ranges of
the history log's ``date`` index — counted per minute, and a minute that has ended is
counted once per process and remembered. Queue depths and the workers seen come from
the bus and the heartbeat records. Nothing here writes.

Reading a job for its page is: the job, the newest :data:`TIMELINE` records of its
history, its files (a page), its executions (those the ``job`` index finds, newest
first) and whether it has a compute log. The diagram's highlighted path needs every
state the job went through: it reads at most :data:`PATH_RECORDS` records (the first
and last halves of a longer history, and says so).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipelinejobs.adapters.store.base import LAST_RECORD, Document, In, Range, Store
from pipelinejobs.domain import job_log
from pipelinejobs.domain.clock import iso
from pipelinejobs.domain.lifecycle import State

STATES = tuple(s.value for s in State)
#: States in which a job is still moving (its compute, indexing or validation runs).
ACTIVE = (State.CREATED.value, State.RUNNING.value, State.INDEXING.value, State.VALIDATING.value)
#: Stored bookkeeping no reader needs (the read API leaves the same out).
INTERNAL = frozenset({"token_rotation", "version", LAST_RECORD})
#: Fields whose values are credentials: shown masked wherever they appear.
SECRET_FIELDS = frozenset({"token", "x-nonce", "secret", "admin_secret"})
REDACTED = "********"
PAGE = 50
#: History records a job page shows at first (the newest); older ones page back.
TIMELINE = 200
#: Records read for the diagram's path (first and last halves of a longer history).
PATH_RECORDS = 2000
#: Pipelines the overview lists with their counts.
OVERVIEW_PIPELINES = 20
#: Log bytes a job page starts from, from the end: the rest is a link away.
LOG_TAIL = 64 * 1024
#: Most lines of an execution's log shown inline (the newest).
EXECUTION_LINES = 400


def public(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in INTERNAL}


#: A secret given as a URL parameter inside a text (a callback URL's token and nonce).
_SECRET_PARAM = re.compile(
    r"(?i)((?:^|[?&;\s\"'])(?:token|x-nonce|secret|admin_secret)=)([^&;\s\"'<>]+)"
)


def mask_text(text: str) -> str:
    """``text`` with the value of every secret URL parameter in it masked."""
    return _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-named field masked, and secret URL
    parameters inside its texts (a launch's callback URL) too."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if k in SECRET_FIELDS and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_log(data: bytes, secrets: list[str]) -> bytes:
    """A compute log's bytes with the job's own secrets (its update token: the job has
    it in its environment, and may print it) and secret URL parameters masked."""
    for secret in secrets:
        if secret:
            data = data.replace(secret.encode(), REDACTED.encode())
    return _SECRET_PARAM_BYTES.sub(lambda m: m.group(1) + REDACTED.encode(), data)


_SECRET_PARAM_BYTES = re.compile(_SECRET_PARAM.pattern.encode())


def job_name(job: Mapping[str, Any]) -> str:
    """A job's name: its launch's ``job_definition.name`` when it has one."""
    launch = job.get("launch")
    definition = launch.get("job_definition") if isinstance(launch, Mapping) else None
    name = definition.get("name") if isinstance(definition, Mapping) else None
    return name if isinstance(name, str) else ""


# -- the overview -----------------------------------------------------------------------


def count(store: Store, collection: str, where: Mapping[str, Any] | None = None) -> int:
    """How many ``collection`` records match ``where`` (an ungrouped count)."""
    found = store.count(collection, where)
    assert isinstance(found, int)
    return found


def state_counts(store: Store, where: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Jobs per state (every state, zeros included), one index range each."""
    base = dict(where or {})
    return {s: count(store, "jobs", {**base, "state": s}) for s in STATES}


@dataclass
class Activity:
    """Events and failures over the last hour."""

    #: events applied per minute, oldest first (60 minutes, the last one running)
    per_minute: list[int]
    events: int
    failed_jobs: int
    error_executions: int

    @property
    def per_second(self) -> float:
        return self.events / 3600

    def bars(self) -> list[tuple[int, int]]:
        """(count, height class 0-20) per minute, for the bar chart."""
        top = max(self.per_minute, default=0) or 1
        return [(n, round(20 * n / top)) for n in self.per_minute]


def activity(store: Store, now: float, minutes: dict[int, int]) -> Activity:
    """The last hour's activity. ``minutes`` remembers the counts of minutes that
    have ended (keyed by their start), so a page counts only the minutes it has not
    seen and the one running."""
    current = int(now // 60) * 60
    starts = [current - 60 * k for k in range(59, -1, -1)]
    for old in [m for m in minutes if m < starts[0]]:
        del minutes[old]
    counts = []
    for start in starts:
        if start in minutes:
            counts.append(minutes[start])
            continue
        n = count(store, "events", {"date": Range(gte=iso(start), lt=iso(start + 60))})
        if start != current:
            minutes[start] = n
        counts.append(n)
    hour_ago = iso(now - 3600)
    failed = count(store, "jobs", {"state": State.FAILED.value, "updated": Range(gte=hour_ago)})
    errors = count(store, "executions", {"status": "ERROR", "updated": Range(gte=hour_ago)})
    return Activity(counts, sum(counts), failed, errors)


def pipeline_rows(
    store: Store, limit: int = OVERVIEW_PIPELINES
) -> tuple[list[dict[str, Any]], bool]:
    """The newest pipelines with their jobs: in all, still moving, failed; and whether
    there are more pipelines than shown."""
    page = store.find("pipelines", order="created", descending=True, limit=limit)
    rows = []
    for p in page.items:
        where = {"pipeline_uuid": p["uuid"]}
        rows.append(
            {
                "pipeline": p,
                "total": count(store, "jobs", where),
                "active": count(store, "jobs", {**where, "state": In(ACTIVE)}),
                "failed": count(store, "jobs", {**where, "state": State.FAILED.value}),
            }
        )
    return rows, page.next is not None


def recent(store: Store, collection: str, where: Mapping[str, Any], n: int = 8) -> list[Document]:
    """The ``n`` newest-changed records matching ``where``."""
    return store.find(collection, where, order="updated", descending=True, limit=n).items


def failure_reason(job: Mapping[str, Any]) -> str:
    """Why a failed job failed, as its newest history record says (error or reason)."""
    last = job.get(LAST_RECORD)
    data = last.get("data") if isinstance(last, Mapping) else None
    if isinstance(data, Mapping):
        for key in ("error", "reason", "message", "status"):
            if data.get(key):
                return mask_text(str(data[key]))
    return ""


#: Fields of an event's data worth a line of their own in the timeline.
SUMMARY_FIELDS = ("status", "exitCode", "reason", "error", "message")


def event_summary(data: Any) -> str:
    """An event's data in one line (its status, exit code, reason or error), the rest
    being folded away on the page."""
    if not isinstance(data, Mapping):
        return ""
    parts = []
    for key in SUMMARY_FIELDS:
        value = data.get(key)
        if value not in (None, ""):
            text = str(value)
            parts.append(f"{key} {text[:200]}{'…' if len(text) > 200 else ''}")
    return mask_text(" · ".join(parts))


# -- names ------------------------------------------------------------------------------


def pipeline_names(store: Store) -> dict[str, str]:
    """Pipeline uuid -> name (the newest 500 pipelines)."""
    page = store.find("pipelines", order="created", descending=True, limit=500)
    return {p["uuid"]: str(p.get("name") or p["uuid"]) for p in page.items}


# -- a job ------------------------------------------------------------------------------


@dataclass
class JobView:
    job: Document
    timeline: list[Document]
    timeline_from: int  #: records before the first shown
    taken: set[tuple[str, str, str]]
    path_note: str
    files: list[Document]
    files_total: int
    files_next: str | None
    executions: list[Document]
    log_size: int | None  #: bytes of its compute log, None when it has none

    fingerprint: str = ""


def records(store: Store, job: Document, after: int, limit: int) -> list[Document]:
    """Records ``after + 1`` … of a job's history, up to ``limit``, read a page
    (:data:`pipelinejobs.domain.job_log.PAGE`) at a time."""
    out: list[Document] = []
    while len(out) < limit:
        got, nxt, _ = job_log.read_records(
            store, job, after + len(out), min(job_log.PAGE, limit - len(out))
        )
        out.extend(got)
        if nxt is None or not got:
            break
    return out


def path_of(store: Store, job: Document) -> tuple[set[tuple[str, str, str]], str]:
    """The moves the job made (for the diagram), and a note when its history is too
    long to read whole for a page."""
    from pipelinejobs.console.diagram import taken_moves

    events = int(job.get("event_count") or 0)
    if events <= PATH_RECORDS:
        return taken_moves(records(store, job, 0, events), job.get("state")), ""
    half = PATH_RECORDS // 2
    first = records(store, job, 0, half)
    last = records(store, job, events - half, half)
    moves = taken_moves(first, str(last[0].get("previous_state")) if last else None)
    moves |= taken_moves(last, job.get("state"))
    note = f"The highlighted path comes from the first and last {half:,} of its {count:,} events."
    return moves, note


def log_path(log_dir: Path, uuid: str) -> Path:
    return log_dir / f"{uuid}.log"


def job_view(
    store: Store, jobs: Any, log_dir: Path, uuid: str, history_after: int | None
) -> JobView:
    """Everything a job's page shows (NotFound, or Quarantined, when there is no job)."""
    job = jobs.get(uuid)
    events = int(job.get("event_count") or len(job.get("history") or []))
    start = max(0, events - TIMELINE) if history_after is None else max(0, history_after)
    timeline = records(store, job, start, TIMELINE) if events else []
    taken, note = path_of(store, job)
    files = store.find("files", {"job_uuid": uuid}, order="path", limit=PAGE)
    files_total = count(store, "files", {"job_uuid": uuid})
    executions = job_executions(store, job)
    path = log_path(log_dir, uuid)
    size = path.stat().st_size if path.is_file() else None
    return JobView(
        job,
        timeline,
        start,
        taken,
        note,
        files.items,
        files_total,
        files.next,
        executions,
        size,
        fingerprint(store, job, files_total),
    )


def fingerprint(store: Store, job: Document, files: int | None = None) -> str:
    """What changes whenever a job's page would (its log is followed on its own): the
    job's version, its file count, and its newest executions' last change. Cheap, so
    a page that polls costs little while nothing happens."""
    if files is None:
        files = count(store, "files", {"job_uuid": job["uuid"]})
    recent = store.find(
        "executions", {"job": job["uuid"]}, order="created", descending=True, limit=5
    ).items
    newest = max((str(e.get("updated") or "") for e in recent), default="")
    return f"{job.get('version')}|{files}|{newest}"


def job_executions(store: Store, job: Document, limit: int = PAGE) -> list[Document]:
    """The executions about a job, newest first: those its uuid indexes, and the one
    that launched it (``task``)."""
    found = store.find(
        "executions", {"job": job["uuid"]}, order="created", descending=True, limit=limit
    ).items
    task = job.get("task")
    if isinstance(task, str) and task and all(e["id"] != task for e in found):
        launched = store.get("executions", task.rsplit("/", 1)[-1])
        if launched is not None:
            found.append(launched)
    return sorted(found, key=lambda e: str(e.get("created") or ""), reverse=True)


def read_log(path: Path, offset: int, limit: int = 1 << 20, *, whole_lines: bool) -> bytes:
    """Bytes of a log from ``offset``. ``whole_lines`` (the job still runs): up to the
    last complete line, so a secret is never shown cut in two, masked in one half
    and not the other (a chunk of ``limit`` bytes without a newline comes whole)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(limit)
    if whole_lines and len(data) < limit:
        end = data.rfind(b"\n")
        data = data[: end + 1] if end >= 0 else b""
    return data


def log_start(path: Path, size: int) -> int:
    """Where a page starts showing a log: the start of the first whole line of its
    last :data:`LOG_TAIL` bytes (or 0)."""
    if size <= LOG_TAIL:
        return 0
    with open(path, "rb") as fh:
        fh.seek(size - LOG_TAIL)
        tail = fh.read(LOG_TAIL)
    first = tail.find(b"\n")
    return size - LOG_TAIL + first + 1 if first >= 0 else size - LOG_TAIL


# -- formatting -------------------------------------------------------------------------


def age(date: Any, now: float | None = None) -> str:
    """How long ago a stored date was, briefly ("12 s", "3 min", "5 h", "2 d")."""
    if not isinstance(date, str) or not date:
        return ""
    try:
        moment = datetime.fromisoformat(date.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return ""
    seconds = max(0.0, (time.time() if now is None else now) - moment)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def size(n: Any) -> str:
    if not isinstance(n, int | float):
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def first_lines(items: Iterable[Any], n: int) -> tuple[list[str], int]:
    """The last ``n`` lines of a log and how many were left out."""
    lines = [str(x) for x in items]
    return lines[-n:], max(0, len(lines) - n)
