"""Benchmark: PipelineJobs' events/s against Prefect's server, in the same run (issue 18).

The same workload on both sides: N items each walked through three state changes by
C concurrent clients, in step order (every item's first change, then every item's
second, ...), on the same two cores.

- **Prefect** (the baseline): a Prefect 3.9.1 server on SQLite, started fresh from
  its own venv (``_prefect_venv.py``, made on first use); N flow runs made in
  SCHEDULED (setup), then each driven PENDING → RUNNING → COMPLETED through
  ``POST /api/flow_runs/<id>/set_state``. Each accepted answer is one transition
  persisted. 503s ("database is locked") are retried with back-off and counted
  (``_prefect.py``).
- **PipelineJobs**: ``bench/events.py``'s max-rate phase, with ``--mode embedded``
  (``serve``) and ``--mode redis`` (gunicorn gateway + W workers): N callback jobs
  launched (setup), then each walked run → update → finish, timed until every event
  is in its job's history.

Printed side by side per round: items/s, p50/p99 latency of each request (Prefect:
send → accepted answer; PipelineJobs: POST → visible in the history), CPU ms per
transition/event by process (from /proc), and the ratio PipelineJobs ÷ Prefect.
``--rounds`` rounds (2 by default), each starting every side afresh, the sides' order
reversed every other round, since a shared machine's load drifts.

The benchmark's interpreter never imports Prefect: it speaks HTTP to both servers.

    python bench/peers.py                       # N=500, C=8, 2 rounds, both modes
    python bench/peers.py --setup               # only make the Prefect venv
    python bench/peers.py --runs 200 --modes redis --redis redis://127.0.0.1:6379/9
    python bench/peers.py --smoke --json out.json   # skips when the venv is absent
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _prefect  # noqa: E402
import _prefect_venv  # noqa: E402
import events  # noqa: E402
from _procs import Deadline, Procs, accepted, stats  # noqa: E402
from _system import launch_jobs, start_system  # noqa: E402

TARGET = 10.0  # issue 18: ten times the peer


def pipelinejobs(mode: str, opts: argparse.Namespace, tmp: Path, dl: Deadline) -> dict[str, Any]:
    """One PipelineJobs side: a fresh system, N jobs launched, events.py's max-rate phase."""
    args = argparse.Namespace(
        mode=mode, workers=opts.workers, pool=opts.pool, redis=opts.redis, jobs=opts.runs,
        updates=1, clients=opts.clients, threads=opts.threads,
    )  # fmt: skip
    steps = ["run", "update", "finish"]
    procs = Procs(tmp)
    try:
        url, auth = start_system(args, procs, tmp, dl)
        started = time.time()
        jobs = launch_jobs(url, auth, opts.runs, opts.clients, dl)
        launched = stats(len(jobs), time.time() - started)
        phase = events.Phase(url, auth, args)
        figures, _, records = events.max_rate(phase, procs, jobs, steps, dl)
        figures["answered"] = accepted(records)  # the POSTs' round trips
        if mode == "embedded":  # the shared Redis server is no part of this system
            cpu = figures["cpu_ms"]
            cpu.pop("redis-server", None)
            cpu["total"] = round(sum(v for k, v in cpu.items() if k != "total"), 3)
        figures["peak_rss_mib"] = procs.peak_rss()
        return {"events": figures, "launch_jobs": launched}
    finally:
        procs.stop_all()


def one_round(number: int, opts: argparse.Namespace, prefect: Path, dl: Deadline) -> dict:
    sides = ["prefect", *opts.modes]
    if number % 2 == 0:
        sides.reverse()
    out: dict[str, Any] = {"order": sides}
    for side in sides:
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"bench-peers-{side}-") as tmp_name:
            tmp = Path(tmp_name)
            if side == "prefect":
                out[side] = _prefect.measure(
                    prefect, opts.runs, opts.clients, opts.backoff, tmp, dl
                )
            else:
                out[side] = pipelinejobs(side, opts, tmp, dl)
        out[side]["wall_s"] = round(time.monotonic() - began, 1)
        print(f"  round {number}: {side} done in {out[side]['wall_s']} s", flush=True)
    base = out["prefect"]["transitions"]["per_second"]
    out["ratios"] = {m: round(out[m]["events"]["per_second"] / base, 2) for m in opts.modes}
    return out


def label(side: str, opts: argparse.Namespace) -> str:
    if side == "prefect":
        return f"Prefect {_prefect_venv.VERSION} server, SQLite (baseline)"
    if side == "redis":
        return f"PipelineJobs redis: gateway + {opts.workers} workers"
    return "PipelineJobs embedded (serve)"


def report_round(number: int, r: dict[str, Any], opts: argparse.Namespace) -> None:
    """The round's sides in a table. Prefect answers once the transition is committed,
    so its two latencies are one; a PipelineJobs POST is answered once the event is
    queued, and the event is persisted later (POST -> visible in the history)."""
    print(f"round {number} (order: {', '.join(r['order'])})")
    print(f"  {'':<44}{'per s':>7}{'answered p50/p99 ms':>21}{'persisted p50/p99 ms':>22}"
          f"{'CPU ms':>8}{'ratio':>7}")  # fmt: skip
    for side in ["prefect", *opts.modes]:
        row = r[side]["transitions" if side == "prefect" else "events"]
        answered = row if side == "prefect" else row["answered"]
        ratio = "" if side == "prefect" else f"{r['ratios'][side]:>6.2f}x"
        print(f"  {label(side, opts):<44}{row['per_second']:>7.1f}"
              f"{answered['p50_ms']:>12} / {answered['p99_ms']:<6}{row['p50_ms']:>13} / "
              f"{row['p99_ms']:<6}{row['cpu_ms']['total']:>8.2f} {ratio}")  # fmt: skip
    p = r["prefect"]
    t, made = p["transitions"], p["create_runs"]
    refused = f", e.g. {t['not_accepted_examples'][0]}" if t["not_accepted"] else ""
    print(f"  Prefect: {t['count']}/{t['sent']} transitions accepted{refused}; {retried(t)}; "
          f"server ready in {p['server_ready_s']} s")  # fmt: skip
    print(f"  Prefect setup: {made['count']} flow runs made at {made['per_second']}/s; "
          f"{retried(made)}")  # fmt: skip
    for side in opts.modes:
        e, launched = r[side]["events"], r[side]["launch_jobs"]
        failed = f"; {e['failed']} failed, e.g. {e['failed_examples'][0]}" if e["failed"] else ""
        print(f"  {side}: {e['count']}/{e['sent']} events visible{failed}; setup: "
              f"{launched['count']} jobs launched at {launched['per_second']}/s")  # fmt: skip
    print("  CPU ms per transition/event by process:")
    for side in ["prefect", *opts.modes]:
        cpu = r[side]["transitions" if side == "prefect" else "events"]["cpu_ms"]
        print(f"    {side}: " + ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "total"))


def retried(figures: dict[str, Any]) -> str:
    return (
        f"retried 503s {figures['retried_503']} ({figures['database_locked_logged']} "
        f"'database is locked' logged), 429s {figures['retried_429']}, dropped "
        f"connections {figures['retried_connection']}; at most "
        f"{figures['most_retries_of_one_request']} for one request"
    )


def summary(rounds: list[dict[str, Any]], opts: argparse.Namespace) -> dict[str, Any]:
    """The range of each side's rate and ratio over the rounds, printed and returned."""
    out: dict[str, Any] = {}
    for side in ["prefect", *opts.modes]:
        key = "transitions" if side == "prefect" else "events"
        rates = sorted(r[side][key]["per_second"] for r in rounds)
        p99s = sorted(r[side][key]["p99_ms"] for r in rounds)
        out[side] = {"per_second": [rates[0], rates[-1]], "p99_ms": [p99s[0], p99s[-1]]}
        line = f"{label(side, opts)}: {rates[0]}–{rates[-1]}/s"
        if side == "prefect":
            line += f", p99 {p99s[0]}–{p99s[-1]} ms"
        else:
            answered = sorted(r[side][key]["answered"]["p99_ms"] for r in rounds)
            ratios = sorted(r["ratios"][side] for r in rounds)
            out[side] |= {"answered_p99_ms": [answered[0], answered[-1]]}
            out[side] |= {"ratio": [ratios[0], ratios[-1]]}
            line += (
                f", p99 answered {answered[0]}–{answered[-1]} ms, persisted "
                f"{p99s[0]}–{p99s[-1]} ms, ratio {ratios[0]:.2f}–{ratios[-1]:.2f}x "
                f"(target {TARGET:.0f}x)"
            )
        print(line)
    return out


def skip(reason: str, opts: argparse.Namespace) -> int:
    """No Prefect to measure against: say why, leave figures that say so, succeed."""
    print(f"skipped: no Prefect baseline to measure against: {reason}")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"skipped": True, "reason": reason}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="flow runs / jobs (N)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (C)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, sides alternating")
    parser.add_argument(
        "--modes", default="embedded,redis",
        help="PipelineJobs shapes, comma-separated: embedded, redis",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="worker processes (redis mode)")
    parser.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork")
    parser.add_argument("--threads", type=int, default=8, help="gateway server threads")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="flushed first")
    parser.add_argument(
        "--backoff", type=float, default=0.1,
        help="seconds before retrying a 503, doubled each retry (Prefect's own client "
        "waits 2 s first: a shorter wait keeps the server busy, which favours Prefect)",
    )  # fmt: skip
    parser.add_argument(
        "--venv", type=Path, default=_prefect_venv.default_venv(),
        help="the Prefect venv (made on first use; default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--setup", action="store_true", help="only make the Prefect venv")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds for the run")
    parser.add_argument(
        "--smoke", action="store_true",
        help="tiny, embedded only, for the tests; skipped when the venv is absent",
    )  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    opts = parser.parse_args(argv)
    opts.modes = [m.strip() for m in opts.modes.split(",") if m.strip()]
    if not opts.modes or set(opts.modes) - {"embedded", "redis"}:
        parser.error(f"--modes: embedded and/or redis, not {opts.modes}")
    if opts.smoke:
        opts.runs, opts.clients, opts.rounds, opts.deadline = 6, 2, 1, 120
        opts.modes = ["embedded"]
    try:
        if opts.smoke:  # never installs: the test suite must not fetch Prefect
            prefect = _prefect_venv.executable(opts.venv)
        else:
            prefect = _prefect_venv.make(opts.venv)
    except _prefect_venv.PrefectUnavailable as exc:
        if opts.smoke:
            return skip(str(exc), opts)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if opts.setup:
        print(f"Prefect venv ready: {prefect}")
        return 0

    dl, started = Deadline(opts.deadline), time.monotonic()

    def stop(*_: Any) -> None:
        """Run the clean-up: client threads stop at their next deadline check."""
        dl.end = 0.0
        sys.exit(143)

    signal.signal(signal.SIGTERM, stop)
    print(f"{opts.runs} items x 3 state changes, {opts.clients} clients, {opts.rounds} "
          f"round(s); Prefect: transitions/s, PipelineJobs: events/s")  # fmt: skip
    rounds = []
    for number in range(1, opts.rounds + 1):
        rounds.append(one_round(number, opts, prefect, dl))
        report_round(number, rounds[-1], opts)
    results = {
        "config": {k: getattr(opts, k) for k in ("runs", "clients", "rounds", "modes")}
        | {"workers": opts.workers, "pool": opts.pool, "prefect": _prefect_venv.VERSION},
        "rounds": rounds,
        "summary": summary(rounds, opts),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"whole run: {results['seconds']} s")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2))
    failed = sum(r[m]["events"]["failed"] for r in rounds for m in opts.modes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
