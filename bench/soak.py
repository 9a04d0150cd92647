"""Benchmark: a soak — the production shape under steady load for minutes, watching memory.

Starts what ``bench/events.py --mode redis`` starts — a gunicorn gateway (one worker
process) and two ``pipelinejobs worker --concurrency 1`` processes (prefork) on Redis,
sharing one SQLite store — and launches ``--jobs`` callback jobs. Then, for
``--duration`` s, an open loop (each request due at a fixed time, so a slow system
shows as a backlog, not as a lower rate) sends ``--rate`` ``update`` events/s spread
over those jobs, whose history keeps growing (100/s over 200 jobs for 10 minutes:
300 entries a job), with reads mixed in: ``--reads`` GET /jobs/<uuid> and ``--lists``
GET /jobs pages per second.

Every ``--sample`` s it prints a row: the resident set (VmRSS, MiB) of the gateway
and of each worker, each process of theirs in its own column (gunicorn's worker,
Celery's pool process), the events applied (the jobs' versions, summed over the list
API) and the errors so far. Memory that keeps growing under a steady load is a leak
or an unbounded cache; start-up, imports and first-use caches are not, so the
baseline is each process's RSS at the end of ``--warmup`` (2 minutes), and the growth
from it to the end is printed next to the target (< 10%). The script asserts
nothing else; it exits non-zero if a request failed or an event was not applied.

    python bench/soak.py                        # 10 minutes, Redis 127.0.0.1:6379/13, flushed
    python bench/soak.py --duration 1800 --rate 200
    python bench/soak.py --smoke                # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _procs import Deadline, Procs, descendants, stats, vmhwm_mib  # noqa: E402
from _system import launch_jobs, start_system, workers  # noqa: E402

from pipelinejobs.adapters.store.sqlite import SQLiteStore  # noqa: E402

#: Growth of a process's RSS after warm-up that the soak should stay under.
TARGET = 0.10


class Load:
    """The open loop: one pacing thread per kind of request puts each on a queue at its
    due time; ``clients`` threads send them and count the answers."""

    def __init__(self, url: str, auth: dict[str, str], jobs: list[tuple[str, str]]) -> None:
        self.url, self.auth, self.jobs = url, auth, jobs
        self.todo: queue.Queue[tuple[str, str, str, Any] | None] = queue.Queue()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.examples: list[str] = []
        self.round_trips: list[float] = []  # event POSTs since the last sample
        self.threads: list[threading.Thread] = []
        self.clients = 0

    def event(self, i: int) -> tuple[str, str, Any]:
        uuid, token = self.jobs[i % len(self.jobs)]
        body = {"uuid": uuid, "name": "update", "token": token, "data": {"n": i}}
        return "POST", f"{self.url}/actors/v2/jobs-manager/messages", body

    def read(self, i: int) -> tuple[str, str, Any]:
        uuid, _ = self.jobs[(i * 7919) % len(self.jobs)]  # a stride: every job in turn
        return "GET", f"{self.url}/jobs/{uuid}", None

    def page(self, i: int) -> tuple[str, str, Any]:
        query = ["limit=50", "limit=50&counts=true", "limit=50&state=CREATED&state=RUNNING"]
        return "GET", f"{self.url}/jobs?{query[i % len(query)]}", None

    def start(self, args: argparse.Namespace) -> None:
        for kind, rate, make in (
            ("event", args.rate, self.event),
            ("read", args.reads, self.read),
            ("list", args.lists, self.page),
        ):
            if rate > 0:
                self._thread(self._pace, kind, rate, make)
        self.clients = args.clients
        for _ in range(args.clients):
            self._thread(self._client)

    def _thread(self, target: Any, *targs: Any) -> None:
        thread = threading.Thread(target=target, args=targs, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _pace(self, kind: str, rate: float, make: Any) -> None:
        start, i = time.monotonic(), 0
        while True:
            wait = start + i / rate - time.monotonic()
            if self.stop.wait(max(wait, 0.0)):
                return
            self.todo.put((kind, *make(i)))
            i += 1

    def _client(self) -> None:
        session = requests.Session()
        while (item := self.todo.get()) is not None:
            kind, method, url, body = item
            began = time.monotonic()
            try:
                resp = session.request(method, url, json=body, headers=self.auth, timeout=60)
                failed = (
                    None if resp.status_code == 200 else f"{resp.status_code} {resp.text[:200]}"
                )
            except requests.RequestException as exc:
                failed = f"{type(exc).__name__}: {exc}"
            with self.lock:
                self.done[kind] += 1
                if kind == "event":
                    self.round_trips.append(time.monotonic() - began)
                if failed:
                    self.errors[kind] += 1
                    if len(self.examples) < 5:
                        self.examples.append(f"{method} {url}: {failed}")
        session.close()

    def finish(self) -> None:
        """Stop pacing, let the clients send what is queued, and wait for them."""
        self.stop.set()
        for _ in range(self.clients):
            self.todo.put(None)
        for thread in self.threads:
            thread.join(120)

    def take_round_trips(self) -> list[float]:
        with self.lock:
            taken, self.round_trips = self.round_trips, []
        return taken


class Outcomes:
    """The jobs-manager's executions by status, read from the system's SQLite store
    (the HTTP API has no count of them): COMPLETE ones are events applied, ERROR ones
    events that failed after their POST was accepted."""

    def __init__(self, tmp: Path) -> None:
        self.store = SQLiteStore(tmp / "data" / "pipelinejobs.sqlite3")
        self.base: Counter[str] = Counter()

    def now(self) -> Counter[str]:
        counts = self.store.count("executions", {"actor": "jobs-manager"}, group_by="status")
        assert isinstance(counts, dict)
        return Counter({str(k): v for k, v in counts.items()}) - self.base

    def settle(self, dl: Deadline) -> None:
        """Count from here: once the launches' own events have stopped moving for 1 s."""
        last, since = self.now(), time.monotonic()
        while time.monotonic() - since < 1.0:
            dl.check("the launched jobs to settle")
            time.sleep(0.2)
            if (now := self.now()) != last:
                last, since = now, time.monotonic()
        self.base = last

    def close(self) -> None:
        self.store.close()


def rss(procs: Procs, names: list[str]) -> dict[str, float]:
    """VmRSS (MiB) of each named process and of each of its children."""
    out: dict[str, float] = {}
    for name in names:
        pid = procs.procs[name][0].pid
        for label, p in [(name, pid)] + [
            (f"{name} child {i}", c) for i, c in enumerate(descendants(pid), 1)
        ]:
            mib = vmhwm_mib(p, "VmRSS")
            if mib is not None:
                out[label] = mib
    return out


def soak(
    args: argparse.Namespace,
    procs: Procs,
    url: str,
    auth: dict[str, str],
    jobs: list[tuple[str, str]],
    outcomes: Outcomes,
    dl: Deadline,
) -> dict[str, Any]:
    names = ["gateway", *workers(args)]
    outcomes.settle(dl)
    load = Load(url, auth, jobs)
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    start = time.monotonic()
    load.start(args)

    def sample(elapsed: float) -> None:
        nonlocal columns
        counts = outcomes.now()
        row: dict[str, Any] = {"t": round(elapsed), "rss": rss(procs, names)}
        row["applied"] = counts["COMPLETE"]
        with load.lock:
            row |= {"sent": load.done["event"], "errors": sum(load.errors.values())}
        row["errors"] += counts["ERROR"]
        row["post_p99_ms"] = stats(1, 1, load.take_round_trips() or [0.0]).get("p99_ms")
        if not columns:
            columns = list(row["rss"])
            print(f"{'t (s)':>6}" + "".join(f"{c[:16]:>17}" for c in columns)
                  + f"{'sent':>8}{'applied':>9}{'errors':>7}{'POST p99 ms':>12}")  # fmt: skip
        cells = "".join(f"{row['rss'].get(c, float('nan')):>17.1f}" for c in columns)
        print(f"{row['t']:>6}{cells}{row['sent']:>8}{row['applied']:>9}{row['errors']:>7}"
              f"{row['post_p99_ms']:>12}", flush=True)  # fmt: skip
        rows.append(row)

    sample(0.0)
    for n in range(1, int(args.duration // args.sample) + 1):
        dl.check("the soak")
        time.sleep(max(0.0, start + n * args.sample - time.monotonic()))
        sample(time.monotonic() - start)
    load.finish()
    sent = load.done["event"]
    while (counts := outcomes.now())["COMPLETE"] + counts[
        "ERROR"
    ] < sent and time.monotonic() < dl.end:
        time.sleep(0.5)  # the workers' backlog, if any
    return {
        "rows": rows,
        "columns": columns,
        "events_sent": sent,
        "events_applied": counts["COMPLETE"],
        "requests": dict(load.done),
        "errors": dict(load.errors)
        | ({"failed events": counts["ERROR"]} if counts["ERROR"] else {}),
        "error_examples": load.examples,
        "growth": growth(rows, columns, args.warmup),
    }


def growth(rows: list[dict[str, Any]], columns: list[str], warmup: float) -> dict[str, Any]:
    """Each process's RSS at the first sample at or after ``warmup`` s (the baseline),
    at the last, and the growth between them."""
    after = [r for r in rows if r["t"] >= warmup] or rows[-1:]
    first, last = after[0], after[-1]
    out: dict[str, Any] = {"baseline_t": first["t"], "end_t": last["t"], "processes": {}}
    for c in columns:
        was, now = first["rss"].get(c), last["rss"].get(c)
        if was and now:
            out["processes"][c] = {"baseline": was, "end": now, "growth": round(now / was - 1, 4)}
    return out


def report(result: dict[str, Any]) -> None:
    g = result["growth"]
    print(f"RSS growth from the baseline at {g['baseline_t']} s (after warm-up) to "
          f"{g['end_t']} s; target < {TARGET:.0%} per process:")  # fmt: skip
    for name, p in g["processes"].items():
        verdict = "met" if p["growth"] < TARGET else "NOT met"
        print(f"  {name:<20} {p['baseline']:>8.1f} -> {p['end']:>8.1f} MiB"
              f"  {p['growth']:>+7.1%}  ({verdict})")  # fmt: skip
    print(f"events sent {result['events_sent']}, applied {result['events_applied']}; "
          f"requests {result['requests']}; errors {result['errors'] or 0}")  # fmt: skip
    for example in result["error_examples"]:
        print(f"  e.g. {example}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--rate", type=float, default=100, help="update events/s")
    parser.add_argument("--reads", type=float, default=20, help="GET /jobs/<uuid> per s")
    parser.add_argument("--lists", type=float, default=2, help="GET /jobs pages per s")
    parser.add_argument("--jobs", type=int, default=200, help="jobs the events go to")
    parser.add_argument("--sample", type=float, default=10, help="seconds between rows")
    parser.add_argument("--warmup", type=float, default=120, help="seconds before the baseline")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--threads", type=int, default=8, help="gateway threads")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="flushed first")
    parser.add_argument("--smoke", action="store_true", help="seconds, for the tests")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    args.mode, args.pool = "redis", "prefork"  # what _system.start_system reads
    if args.smoke:
        args.duration, args.sample, args.warmup = 6, 2, 2
        args.rate, args.reads, args.lists, args.jobs, args.clients = 20, 5, 1, 10, 4
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    dl = Deadline(args.duration + 300)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp_name:
        tmp, procs = Path(tmp_name), Procs(Path(tmp_name))
        try:
            url, auth = start_system(args, procs, tmp, dl)
            jobs = launch_jobs(url, auth, args.jobs, args.clients, dl)
            print(f"soak: gateway + {args.workers} workers on {args.redis}; {args.rate:g} "
                  f"events/s over {args.jobs} jobs, {args.reads:g} job reads/s, "
                  f"{args.lists:g} list pages/s, {args.duration:g} s")  # fmt: skip
            outcomes = Outcomes(tmp)
            try:
                result = soak(args, procs, url, auth, jobs, outcomes, dl)
            finally:
                outcomes.close()
        finally:
            procs.stop_all()
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    failed = sum(result["errors"].values()) or result["events_applied"] < result["events_sent"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
