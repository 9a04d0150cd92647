"""Following long work from the command line: ``jobs watch`` and ``executions watch``.

``pipelinejobs jobs watch <uuid>`` prints a job's history as it grows — one line per
event: when, the event, the state it led to, who sent it — by polling
``GET /jobs/<uuid>/history?after=N`` (only what is new is read), until the job is
*done* (:func:`is_done`), then its state alone on the last line. While the job is
INDEXING it shows the indexer's progress (the ``index`` event names its execution).
``pipelinejobs executions watch <actor> <id>`` follows one execution the same way:
its status changes, and the progress of an indexing.

Exit codes: 0 done; 1 the job FAILED or was REJECTED (or the execution ended ERROR,
or ``--until`` can no longer be reached); 2 an error (an unknown job, an unreachable
gateway, ``--timeout``); 130 Ctrl-C.

The progress bar is written to stderr, so stdout stays the lines and the result: on a
terminal one line redrawn in place (``\\r``), elsewhere (a log file, CI) a line every
few seconds. It is a few lines of the standard library, like the rest of the CLI
(which needs nothing beyond the package): ``tqdm`` or ``rich`` would add a
dependency to every server install for one bar whose numbers come from polling.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from pipelinejobs.cli.output import printable
from pipelinejobs.cli.remote import Client, ClientError, _client
from pipelinejobs.domain.lifecycle import TABLE, UNCHANGED, Event, State, next_state
from pipelinejobs.errors import PipelineJobsError, ValidationError


def _terminal_states() -> frozenset[str]:
    """States a job leaves only by ``reset`` or ``retire`` (from the lifecycle table:
    FAILED, REJECTED, FINALIZED, RETIRED)."""
    found = set()
    for state in State:
        onward = [
            event
            for event, sources, dest in TABLE
            if state in sources
            and dest != UNCHANGED
            and dest != state
            and event not in (Event.RESET, Event.RETIRE)
        ]
        if not onward:
            found.add(state.value)
    return frozenset(found)


#: Where nothing more happens to a job without a person (reset, retire).
TERMINAL = _terminal_states()
#: Ends that are failures: a non-zero exit.
FAILURES = frozenset({State.FAILED.value, State.REJECTED.value})
#: Where a job rests once its run (and its indexing, if it asked for one) is over.
RESTING = frozenset({State.FINISHED.value, State.VALIDATED.value})
#: Execution statuses that are final.
FINAL_STATUSES = frozenset({"COMPLETE", "ERROR"})
INDEXER = "jobs-indexer"


def is_done(state: str, last_event: str | None, job: Mapping[str, Any]) -> bool:
    """Whether a watched job is done: in a terminal state, or resting — VALIDATED, or
    FINISHED with no indexing to wait for (the job's record has no ``index`` field —
    the automatic indexing after ``finish`` — or its last event is the ``indexed``
    that ends one). A job indexed automatically passes through FINISHED before it is
    indexed: that FINISHED is not the end."""
    if state in TERMINAL or state == State.VALIDATED.value:
        return True
    if state == State.FINISHED.value:
        return not job.get("index") or last_event == Event.INDEXED.value
    return False


def _detail(data: Any) -> str:
    if not isinstance(data, Mapping):
        return ""
    for key in ("reason", "status", "message", "error"):
        value = data.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return printable(value)
    return ""


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"


def describe(progress: Mapping[str, Any], width: int = 24) -> str:
    """One line for an indexing's progress (the execution's ``progress``)::

    [############............]  50%  5,000/10,000 files, 2,500 indexed  2,431 files/s  ETA 0:02
    """
    seen = progress.get("files_seen") or 0
    indexed = progress.get("files_indexed") or 0
    total = progress.get("files_total")
    elapsed = progress.get("elapsed")
    parts = []
    if isinstance(total, int) and total > 0:
        fraction = min(max(seen / total, 0.0), 1.0)
        filled = round(fraction * width)
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%")
        parts.append(f"{_count(seen)}/{_count(total)} files, {_count(indexed)} indexed")
    elif isinstance(total, int):  # an empty tree
        parts.append(f"[{'#' * width}] 100%  0 files")
    else:
        parts.append(f"{_count(seen)} files seen, {_count(indexed)} indexed (counting the total)")
    rate = None
    if isinstance(elapsed, int | float) and elapsed > 0 and isinstance(seen, int):
        rate = seen / elapsed
        parts.append(f"{rate:,.0f} files/s")
    if progress.get("phase") == "done":
        vanished = progress.get("files_vanished")
        parts.append("done" + (f", {_count(vanished)} vanished" if vanished else ""))
    elif rate and isinstance(total, int) and total > seen:
        eta = int((total - seen) / rate)
        parts.append(f"ETA {eta // 60}:{eta % 60:02d}")
    attempt = progress.get("attempt")
    if isinstance(attempt, int) and attempt > 1:
        parts.append(f"(attempt {attempt})")
    return "  ".join(parts)


class Bar:
    """A progress line on ``stream``: redrawn in place on a terminal, else a plain
    line at most every ``every`` seconds (and the last state when it closes). Also
    the bar of ``bulk`` (:mod:`pipelinejobs.cli.bulk`), with its own ``render``."""

    def __init__(
        self,
        stream: IO[str],
        *,
        tty: bool | None = None,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        render: Callable[[Mapping[str, Any]], str] = describe,
    ) -> None:
        self.stream = stream
        #: The progress as one line (default: an indexing's, :func:`describe`).
        self.render = render
        self.tty = stream.isatty() if tty is None else tty
        self.every = every
        self.clock = clock
        self.text: str | None = None
        self._shown: str | None = None
        self._drawn = False
        self._printed_at: float | None = None

    def update(self, progress: Mapping[str, Any]) -> None:
        self.text = self.render(progress)
        if self.tty:
            self._draw()
            return
        now = self.clock()
        if self.text != self._shown and (
            self._printed_at is None or now - self._printed_at >= self.every
        ):
            self._line(self.text)
            self._printed_at = now

    def _draw(self) -> None:
        if self.text is not None:
            self.stream.write(f"\r{self.text}\x1b[K")
            self.stream.flush()
            self._drawn = True

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._shown = text

    def clear(self) -> None:
        """Take the bar off the terminal's line (before other lines are printed)."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def redraw(self) -> None:
        if self.tty:
            self._draw()

    def close(self) -> None:
        """Leave the last state on its own line."""
        if self.text is None:
            return
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        elif self.text != self._shown:
            self._line(self.text)
        self.text, self._shown, self._drawn, self._printed_at = None, None, False, None


class Printer:
    """stdout lines and the bar on stderr, kept from overwriting each other."""

    def __init__(self, out: IO[str], bar: Bar) -> None:
        self.out = out
        self.bar = bar

    def line(self, text: str) -> None:
        self.bar.clear()
        self.out.write(text + "\n")
        self.out.flush()
        self.bar.redraw()


def _get(client: Client, path: str, params: dict[str, Any] | None, missing: str) -> Any:
    try:
        return client.request("GET", path, params)
    except ClientError as exc:
        if exc.detail.get("status") == 404:
            raise ClientError(f"{missing} (the gateway at {client.url} answered 404)") from exc
        raise


def _state_after(entry: Mapping[str, Any], before: str | None) -> str | None:
    """The state an entry's event led to: from its ``previous_state`` when the
    gateway gives it, else from the state the previous entry led to."""
    previous = entry["previous_state"] if "previous_state" in entry else before
    name = str(entry.get("name"))
    if previous is None:
        return State.CREATED.value if name == Event.CREATE.value else None
    try:
        return next_state(previous, name).value
    except PipelineJobsError:
        return None


class JobWatch:
    """One ``jobs watch``: the history after ``after``, then what is new, until done."""

    def __init__(self, client: Client, uuid: str, args: argparse.Namespace) -> None:
        self.client = client
        self.uuid = uuid
        self.interval = max(float(args.interval), 0.05)
        self.until = (
            {s.strip().upper() for s in args.until.split(",") if s.strip()} if args.until else None
        )
        unknown = sorted((self.until or set()) - {s.value for s in State})
        if unknown:
            raise ValidationError(
                f"--until names unknown states {', '.join(unknown)}; states: "
                f"{', '.join(s.value for s in State)}",
                path="--until",
            )
        self.timeout = float(args.timeout or 0)
        self.tail = args.tail
        self.printer = Printer(sys.stdout, Bar(sys.stderr))
        self.state: str | None = None
        self.last_event: str | None = None
        self.indexing: str | None = None  # the indexer execution being followed
        self.waiting_said = False

    def run(self) -> int:
        job = _get(self.client, f"/jobs/{self.uuid}", None, f"no job {self.uuid}")
        after = 0
        if self.tail is not None:
            after = max(0, int(job.get("event_count") or 0) - self.tail)
            self.state, self.last_event = job.get("state"), job.get("last_event")
        deadline = time.monotonic() + self.timeout if self.timeout > 0 else None
        try:
            while True:
                page = _get(
                    self.client,
                    f"/jobs/{self.uuid}/history",
                    {"after": str(after), "limit": "1000"},
                    f"no job {self.uuid}",
                )
                for entry in page.get("history") or []:
                    self._entry(entry)
                after += len(page.get("history") or [])
                if page.get("next") is not None:
                    continue  # more already there: no pause
                if self.state is None:  # an entry the lifecycle could not replay
                    current = _get(self.client, f"/jobs/{self.uuid}", None, f"no job {self.uuid}")
                    self.state, self.last_event = current["state"], current.get("last_event")
                if self.indexing and self.state == State.INDEXING.value:
                    self._progress()
                ended = self._ended(job)
                if ended is not None:
                    return ended
                if deadline is not None and time.monotonic() > deadline:
                    raise ClientError(
                        f"job {self.uuid} is still {self.state} after {self.timeout:g} s "
                        f"(--timeout)"
                    )
                time.sleep(self.interval)
        finally:
            self.printer.bar.close()

    def _entry(self, entry: Mapping[str, Any]) -> None:
        before = self.state
        self.state = _state_after(entry, self.state)
        self.last_event = str(entry.get("name"))
        data = entry.get("data")
        if self.indexing and before == State.INDEXING.value and self.state != State.INDEXING.value:
            self._progress()  # its last word, before the line that ends it
            self.printer.bar.close()
            self.indexing = None
        if self.last_event == Event.INDEX.value and isinstance(data, Mapping):
            execution = data.get("execution")
            self.indexing = str(execution) if execution else None
        self.printer.line(
            f"{printable(entry.get('date'), 40)}  {printable(self.last_event, 12):<9} "
            f"{self.state or '?':<10} {printable(entry.get('sender') or '-', 40)}"
            + (f"  {detail}" if (detail := _detail(data)) else "")
        )
        self.waiting_said = False

    def _progress(self) -> None:
        try:
            execution = self.client.request(
                "GET", f"/actors/v2/{INDEXER}/executions/{self.indexing}"
            )
        except ClientError:
            return  # progress is a nicety: the history goes on
        progress = execution.get("progress")
        if isinstance(progress, Mapping):
            self.printer.bar.update(progress)

    def _ended(self, job: Mapping[str, Any]) -> int | None:
        """The exit code if the watch is over, else None."""
        state = self.state or ""
        if self.until is not None:
            if state in self.until:
                return self._finish(0)
            if state in TERMINAL:
                print(
                    f"pipelinejobs: job {self.uuid} is {state}, which it leaves only by reset; "
                    f"it will not reach {', '.join(sorted(self.until))}",
                    file=sys.stderr,
                )
                return self._finish(1)
            return None
        if is_done(state, self.last_event, job):
            if state in FAILURES:
                print(f"pipelinejobs: job {self.uuid} is {state}", file=sys.stderr)
                return self._finish(1)
            return self._finish(0)
        if state == State.FINISHED.value and not self.waiting_said:
            self.printer.bar.clear()
            print(
                "  (FINISHED; waiting for the indexing it asked for — --until FINISHED "
                "stops at FINISHED)",
                file=sys.stderr,
            )
            self.waiting_said = True
        return None

    def _finish(self, code: int) -> int:
        self.printer.bar.close()
        print(self.state)
        return code


def cmd_job_watch(args: argparse.Namespace) -> int:
    """Follow a job: each event as it is applied, until it is done."""
    if not args.uuid:
        raise ValidationError("jobs watch needs a job uuid", path="uuid")
    client = _client(args)
    return JobWatch(client, args.uuid, args).run()


def cmd_execution_watch(args: argparse.Namespace, actor: str, execution_id: str) -> int:
    """Follow one execution: its status changes and, for an indexing, its progress."""
    client = _client(args)
    printer = Printer(sys.stdout, Bar(sys.stderr))
    interval = max(float(args.interval), 0.05)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    path = f"/actors/v2/{actor}/executions/{execution_id}"
    status = None
    try:
        while True:
            execution = _get(client, path, None, f"no execution {execution_id} of actor {actor}")
            progress = execution.get("progress")
            if execution["status"] != status:
                status = execution["status"]
                when = {
                    "SUBMITTED": execution.get("createTime"),
                    "RUNNING": execution.get("startTime"),
                }.get(status, execution.get("finishTime"))
                attempt = int(execution.get("attempts") or 0)
                printer.line(
                    f"{printable(when or '-', 40)}  {status}"
                    + (f" (attempt {attempt})" if attempt > 1 else "")
                )
            if isinstance(progress, Mapping) and progress:
                printer.bar.update(progress)
            if status in FINAL_STATUSES:
                printer.bar.close()
                break
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(
                    f"execution {execution_id} is still {status} after {args.timeout:g} s "
                    f"(--timeout)"
                )
            time.sleep(interval)
    finally:
        printer.bar.close()
    if status == "ERROR":
        error = execution.get("error") or {}
        print(
            f"pipelinejobs: execution {execution_id} failed: "
            f"{printable(error.get('message') or error, 500)}",
            file=sys.stderr,
        )
    print(status)
    return 0 if status == "COMPLETE" else 1


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``jobs watch`` and ``executions watch``."""
    parser.add_argument(
        "--interval", type=float, default=1.0, help="watch: seconds between polls (default 1)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=0,
        help="watch: give up (exit 2) after this many seconds (default: never)",
    )
