"""Where a machine's processes keep their metrics, so that ``/metrics`` adds them up.

A gateway runs as several gunicorn worker processes and a worker as several Celery
pool processes; each counts what *it* did. prometheus_client's multi-process mode
has every process write its values to small memory-mapped files in one directory
(``<type>_<pid>.db``), and whoever answers ``/metrics`` reads them all and sums them
(``MultiProcessCollector``). A counter of a process that has exited stays in its
file, so totals never go down when gunicorn or Celery replaces a process.

**The directory** is ``metrics.dir``, else ``$PROMETHEUS_MULTIPROC_DIR`` (the
library's own variable, so an operator who knows it is obeyed), else
``<data_dir>/metrics``. The data directory is the default because it is already
per deployment and per machine: processes started with the same settings on one
machine find each other's files without a new setting, two deployments (or two test
runs) on one machine never mix, and the embedded server gets one too — harmless for
its single process, and what lets an extra ``pipelinejobs worker`` started beside it
add up. Processes on *other* machines cannot share memory-mapped files: each
machine's gateway sees its own machine's processes (README: Metrics).

**Emptied once per start of the system, not per process.** Stale files from an
earlier run would otherwise be added to the new run's counts, but a process that
empties the directory while others still write to it would lose their counts. So
each top-level process (``serve``, a worker's main process, gunicorn's master)
*claims* the directory: it holds a shared ``flock`` on ``.live`` for as long as it
(or a child it forked, which inherits the descriptor) lives, and empties the
directory only if it could take that lock exclusively — that is, when no process of
an earlier start is still alive. The kernel drops the lock of a process however it
ends (a ``kill -9`` too), so a crash never leaves the directory claimed for ever.

**Dead processes' gauges.** Gauges in "live" modes must leave with their process:
gunicorn's master calls :func:`process_died` for each worker that exits
(``child_exit``, :mod:`pipelinejobs.gateway.gunicorn_hooks`), and a Celery pool
process does so itself as it shuts down (``worker_process_shutdown``). The metrics
defined here have no live gauges — the gauges (jobs per state, queue depth) are read
at scrape time by the gateway alone — so a pool process killed outright (its hard
time limit) leaves nothing wrong behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path
from typing import Any

from pipelinejobs.config import Config
from pipelinejobs.observability import metrics

log = logging.getLogger("pipelinejobs.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The files prometheus_client writes (``counter_123.db``, ``gauge_livesum_123.db``):
#: emptying the directory removes these and nothing else.
FILES = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")
LIVE = ".live"
STARTING = ".starting"

#: Descriptors holding this process's claims (kept open for the process's life).
_claims: dict[Path, int] = {}


def directory(config: Config) -> Path:
    """The metrics directory of ``config`` (see the module docstring)."""
    if config.metrics.dir:
        return Path(config.metrics.dir).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    return config.data_dir / "metrics"


def claim(path: Path) -> bool:
    """Join the processes using ``path``, emptying it first if none is alive; True
    if it was emptied. Safe to call again (a second claim changes nothing)."""
    path.mkdir(parents=True, exist_ok=True)
    path = path.resolve()
    if path in _claims:
        return False
    # One starter at a time, so two processes starting together cannot both find the
    # directory unclaimed, nor one empty it between the other's check and its lock.
    starting = os.open(path / STARTING, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(starting, fcntl.LOCK_EX)
        live = os.open(path / LIVE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(live, fcntl.LOCK_EX | fcntl.LOCK_NB)
            first = True
        except BlockingIOError:
            first = False
        if first:
            removed = empty(path)
            if removed:
                log.info("metrics: removed %d file(s) of an earlier run from %s", removed, path)
        fcntl.flock(live, fcntl.LOCK_SH)  # held (with every fork's copy) until exit
        _claims[path] = live
        return first
    finally:
        fcntl.flock(starting, fcntl.LOCK_UN)
        os.close(starting)


def release(path: Path) -> None:
    """Give up this process's claim on ``path`` (tests; a process's claim otherwise
    ends with it)."""
    fd = _claims.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)


def empty(path: Path) -> int:
    """Remove the metric files in ``path``; how many."""
    removed = 0
    for entry in os.scandir(path):
        if FILES.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
            removed += 1
    return removed


def enable(path: Path) -> None:
    """Switch this process (and the processes it will fork) to multi-process mode
    writing to ``path``. Metrics made earlier in this process are dropped: their
    values were in memory, and new ones are made in the files on next use."""
    from prometheus_client import values

    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    already = os.environ.get(ENV) == str(path)
    os.environ[ENV] = str(path)  # read by prometheus_client, and inherited by children
    if already and getattr(values.ValueClass, "_multiprocess", False):
        return
    # The library picks its value class when it is first imported; a process that
    # imported it before this call (anything may have) is switched here.
    values.ValueClass = values.MultiProcessValue()
    metrics.reset()


def active() -> Path | None:
    """The directory this process writes its metrics to, or None (in memory)."""
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    where = os.environ.get(ENV)
    return Path(where) if where else None


def start(config: Config) -> Path | None:
    """What a top-level process (``serve``, a worker's main process, gunicorn's
    master) does first: claim the metrics directory and write there; returns it.
    A directory that cannot be used (read-only, not a directory) is logged and the
    process keeps its metrics in memory (None): metrics never stop a server starting."""
    path = directory(config)
    try:
        claim(path)
        enable(path)
    except OSError as exc:
        log.warning(
            "metrics: cannot use %s (%s); this process keeps its own metrics, which "
            "/metrics will not add to other processes'",
            path,
            exc.strerror or exc,
        )
        return None
    _watch_pool_processes()
    return path


def join(config: Config) -> Path | None:
    """What a process started by one that :func:`start`-ed does (a gunicorn worker
    building its app): write to the same directory, without claiming it; None (in
    memory, logged) when it cannot be used."""
    path = directory(config)
    try:
        enable(path)
    except OSError as exc:
        log.warning("metrics: cannot use %s (%s)", path, exc.strerror or exc)
        return None
    return path


def process_died(pid: int) -> None:
    """Drop the live gauges of process ``pid`` (it exited)."""
    path = active()
    if path is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(path))


def _watch_pool_processes() -> None:
    """A Celery pool process marks itself dead as it shuts down (a process that
    never starts a Celery worker never receives the signal)."""
    from celery.signals import worker_process_shutdown

    worker_process_shutdown.connect(_pool_process_shutdown, weak=False)


def _pool_process_shutdown(**_: Any) -> None:
    process_died(os.getpid())
