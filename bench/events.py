"""Benchmark: lifecycle events/s end to end, next to bare Celery and bare Flask.

Starts a system — ``pipelinejobs serve`` (``--mode embedded``: gateway and actors on
threads, in-process broker, SQLite) or a gunicorn gateway (one worker process) and W
``pipelinejobs worker --concurrency 1`` processes on Redis sharing one SQLite store
(``--mode redis``) — registers a pipeline and launches callback jobs (setup, not
measured). Each phase then sends N jobs' walks run → update × k → finish, each event
an asynchronous POST to the jobs-manager, from C clients taking events in step order
(every job's ``run``, then every job's first ``update``, ...), and waits until every
event is in its job's history:

1. **max rate**: as fast as the answers come. events/s = events ÷ (first send → the
   date of the last history entry); POST→visible = history ``date`` − send time.
2. **half rate**: an open loop at half the max rate (or ``--rate``): each event is
   due at a fixed time and its latency counts from then, so a late client cannot
   hide a slow system. The p99 here is the latency target's figure.
3. **accept** (redis mode): the workers are paused (SIGSTOP) while N walks are
   POSTed, so the gateway is measured alone, as the echo baseline is; then resumed,
   and the backlog they drain gives the workers' own rate.

Each phase also reports the CPU each process spent per event (from /proc): on two
cores every process — clients, gateway, workers, Redis — shares the same CPU, so
the sum bounds the rate. Baselines in the same run, with the same counts
(``_baselines.py``): a bare Celery no-op task sent one-way from C threads on the same
broker and the same workers (pool included), timed until the last one ran; a bare
Flask echo endpoint behind the same server receiving the same POSTs.

    python bench/events.py                            # embedded: 200 jobs, k=3, 8 clients
    python bench/events.py --mode redis --workers 2   # Redis 127.0.0.1:6379/12, flushed
    python bench/events.py --mode redis --pool solo   # both sides on Celery's solo pool
    python bench/events.py --smoke                    # seconds; run by the test suite
    python bench/events.py --json out.json
    python bench/events.py --webhooks 10              # max rate with 10 subscriptions vs none
                                                      # (one event per POST, and --batch 100)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _baselines  # noqa: E402
from _procs import (  # noqa: E402
    CpuMeter,
    Deadline,
    Procs,
    accepted,
    free_port,
    send_all,
    stats,
    vmhwm_mib,  # noqa: E402
)
from _system import (  # noqa: E402
    base_env,
    launch_jobs,
    start_system,
    wait_finished,
    wait_visible,
    workers,  # noqa: E402
)

from pipelinejobs.config import BusSettings  # noqa: E402

PY = sys.executable


def walks(jobs: list[tuple[str, str]], steps: list[str], first: int) -> list[dict[str, Any]]:
    """Every job's events in step order; ``data.n`` numbers them from ``first``."""
    return [
        {"uuid": uuid, "name": name, "token": token, "data": {"n": first + j * len(steps) + s}}
        for s, name in enumerate(steps)
        for j, (uuid, token) in enumerate(jobs)
    ]


class Phase:
    """One set of jobs walked through the system and waited for until visible."""

    def __init__(self, url: str, auth: dict[str, str], args: argparse.Namespace) -> None:
        self.url, self.auth, self.args = url, auth, args
        self.to = f"{url}/actors/v2/jobs-manager/messages"
        self.finished = 0  # jobs FINISHED by earlier phases

    def send(self, bodies: list[dict], dl: Deadline, rate: float | None = None) -> list[dict]:
        return send_all(self.to, bodies, self.auth, self.args.clients, dl, rate)

    def settle(
        self, bodies: list[dict], records: list[dict], jobs: int, dl: Deadline
    ) -> dict[str, Any]:
        """Wait until the phase's events are visible; their figures and failures."""
        self.finished += jobs
        wait_finished(self.url, self.auth, self.finished, dl)
        return self.settled(bodies, records, dl)

    def settled(self, bodies: list[dict], records: list[dict], dl: Deadline) -> dict[str, Any]:
        expected: dict[str, set[int]] = {}
        for body in bodies:
            expected.setdefault(body["uuid"], set()).add(body["data"]["n"])
        executions = {r["n"]: r["execution"] for r in records}
        seen, failed = wait_visible(
            self.url, self.auth, expected, executions, self.args.clients, dl
        )
        sent = {r["n"]: r["sent"] for r in records}
        seconds = max(seen.values()) - min(sent.values())
        out = stats(len(seen), seconds, [seen[n] - sent[n] for n in seen])
        out |= {"sent": len(records), "failed": len(failed), "last": max(seen.values())}
        return out | {"failed_examples": sorted(set(failed.values()))[:3]}


def max_rate(
    phase: Phase, procs: Procs, jobs: list[tuple[str, str]], steps: list[str], dl: Deadline
) -> tuple[dict[str, Any], list[dict], list[dict]]:
    """The max-rate phase on ``jobs`` (its own function so ``bench/peers.py`` runs the
    very same measurement): figures with CPU ms per event, the bodies, the records."""
    bodies = walks(jobs, steps, 0)
    meter = CpuMeter(procs).start()
    records = phase.send(bodies, dl)
    events = phase.settle(bodies, records, len(jobs), dl)
    meter.stop()
    return events | {"cpu_ms": meter.per_item(len(bodies))}, bodies, records


def run_phases(
    args: argparse.Namespace, procs: Procs, url: str, auth: dict[str, str], dl: Deadline
) -> dict[str, Any]:
    steps = ["run", *["update"] * args.updates, "finish"]
    paused = args.mode == "redis"
    jobs = launch_jobs(url, auth, args.jobs * (3 if paused else 2), args.clients, dl)
    phase, n, per = Phase(url, auth, args), args.jobs, args.jobs * len(steps)
    out: dict[str, Any] = {}

    out["max"], bodies, records = max_rate(phase, procs, jobs[:n], steps, dl)
    out["accept_with_workers"] = accepted(records)
    out["bodies"] = bodies

    rate = args.rate or round(out["max"]["per_second"] / 2, 1)
    bodies = walks(jobs[n : 2 * n], steps, per)
    meter = CpuMeter(procs).start()
    records = phase.send(bodies, dl, rate)
    paced = phase.settle(bodies, records, n, dl)
    meter.stop()
    late = stats(1, 1, [r["late"] for r in records])["p99_ms"]
    out["paced"] = paced | {"offered_per_second": rate, "late_p99_ms": late}
    out["paced"]["cpu_ms"] = meter.per_item(per)

    if paused:  # the gateway alone, then the workers alone on the backlog it left
        bodies = walks(jobs[2 * n :], steps, 2 * per)
        for name in workers(args):
            procs.signal_group(name, signal.SIGSTOP)
        meter = CpuMeter(procs, ["gateway"]).start()
        records = phase.send(bodies, dl)
        meter.stop()
        out["accept"] = accepted(records) | {"cpu_ms": meter.per_item(per)}
        meter = CpuMeter(procs, workers(args)).start()
        resumed = time.time()
        for name in workers(args):
            procs.signal_group(name, signal.SIGCONT)
        drained = phase.settle(bodies, records, n, dl)
        meter.stop()
        seconds = drained["last"] - resumed
        out["drain"] = stats(drained["count"], seconds) | {"cpu_ms": meter.per_item(per)}
    else:
        out["accept"] = out["accept_with_workers"]
    return out


def check_metrics(url: str, args: argparse.Namespace, phases: int) -> dict[str, Any]:
    """``/metrics`` after the run: the events applied by name next to those sent (the
    issue's check: counted across every gateway and worker process). Read until they
    agree or 10 s pass: a counter moves just after its event became visible."""
    from prometheus_client.parser import text_string_to_metric_families

    sent = {"update": args.jobs * phases * args.updates, "finish": args.jobs * phases}
    applied: dict[str, float] = {}
    deadline = time.monotonic() + 10
    while True:
        text = requests.get(f"{url}/metrics", timeout=30).text
        applied = {
            s.labels["event"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "pipelinejobs_events_applied_total"
        }
        if all(applied.get(e) == n for e, n in sent.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    ok = all(applied.get(e) == n for e, n in sent.items())
    return {"sent": sent, "applied": {e: applied.get(e, 0) for e in sent}, "equal": ok}


def bench_echo(
    args: argparse.Namespace, procs: Procs, tmp: Path, bodies: list[dict], dl: Deadline
) -> tuple[dict[str, Any], dict[str, float]]:
    port = free_port()
    server = "waitress" if args.mode == "embedded" else "gunicorn"
    procs.start("flask-echo", _baselines.echo_argv(port, args.threads, server), base_env(args), tmp)
    procs.wait_http("flask-echo", f"http://127.0.0.1:{port}/", dl)
    meter = CpuMeter(procs, ["flask-echo"]).start()
    records = send_all(f"http://127.0.0.1:{port}/echo", bodies, {}, args.clients, dl)
    meter.stop()
    result = accepted(records) | {"cpu_ms": meter.per_item(len(bodies))}
    return result, procs.peak_rss(["flask-echo"])


def bench_celery(
    args: argparse.Namespace, procs: Procs, tmp: Path, total: int, dl: Deadline
) -> tuple[dict[str, Any], dict[str, float]]:
    env, me = base_env(args), [PY, _baselines.__file__]
    if args.mode == "embedded":
        threads = BusSettings().embedded_threads
        argv = [*me, "--noop-embedded", str(total), "--clients", str(args.clients)]
        proc = procs.start("celery-noop", [*argv, "--threads", str(threads)], env, tmp)
        procs.wait("celery-noop", lambda: proc.poll() == 0, "no-op run", dl)
        out = json.loads(procs.log("celery-noop").strip().splitlines()[-1])
        cpu = round(1000 * out["cpu"] / total, 3)
        cpu = {"celery-noop (worker and senders)": cpu, "total": cpu}
        return stats(total, out["seconds"]) | {"cpu_ms": cpu}, {"celery-noop": out["rss"]}
    import redis

    client = redis.Redis.from_url(args.redis)
    names = [f"noop-worker-{i}" for i in range(args.workers)]
    for name in names:
        argv = [*me, "--noop-worker", "--redis", args.redis, "--pool", args.pool]
        procs.start(name, argv, env, tmp)
    for name in names:
        procs.wait(name, lambda name=name: " ready." in procs.log(name), "ready", dl)
    app = _baselines.noop_app(args.redis)
    meter = CpuMeter(procs, names)
    for counter, n in (("warm", args.workers * 4), ("run", total)):
        client.delete(counter, f"{counter}:done")
        meter.start()
        start = _baselines.send_noops(app, counter, n, args.clients)
        done = procs.wait(names[0], lambda c=counter: client.get(f"{c}:done"), counter, dl)
        meter.stop()
    result = stats(total, float(done) - start) | {"cpu_ms": meter.per_item(total)}
    return result, procs.peak_rss(names)


ROWS = [  # (label, key in the results, what its CPU is per)
    ("events at max rate, POST -> visible", "events_max"),
    ("events at {rate}/s, POST -> visible", "events_paced"),
    ("baseline celery no-op, one-way", "baseline_celery_noop"),
    ("gateway accept{alone}", "gateway_accept"),
    ("workers draining that backlog", "workers_drain"),
    ("baseline flask echo", "baseline_flask_echo"),
]


def report(results: dict[str, Any], steps: int) -> None:
    r = results
    print(
        f"mode {r['system']}; {r['jobs']} jobs x {steps} events = {r['jobs'] * steps} "
        f"events a phase; {r['clients']} clients; {r['server_threads']} server threads"
    )
    print(f"{'':<42}{'count':>6}{'per second':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'CPU ms':>8}")  # fmt: skip
    alone = ", workers paused" if "workers_drain" in r else ", POST round trip"
    for label, key in ROWS:
        if key not in r:
            continue
        row = r[key]
        label = label.format(rate=r["events_paced"]["offered_per_second"], alone=alone)
        lat = "".join(f"{row.get(k, ''):>9}" for k in ("p50_ms", "p95_ms", "p99_ms"))
        cpu = f"{row['cpu_ms']['total']:>8.2f}" if "cpu_ms" in row else ""
        print(f"{label:<42}{row['count']:>6}{row['per_second']:>11.1f}{lat}{cpu}")
    for key in ("events_max", "events_paced"):
        if r[key]["failed"]:
            print(f"{key}: {r[key]['failed']} event(s) failed, e.g. {r[key]['failed_examples'][0]}")
    print(f"events/s / celery no-op baseline: {r['ratio_events_to_celery']:.2f}")
    print(f"gateway accept / flask echo baseline: {r['ratio_accept_to_echo']:.2f}")
    print(f"p99 POST -> visible at {r['events_paced']['offered_per_second']}/s: "
          f"{r['events_paced']['p99_ms']} ms (clients were at most "
          f"{r['events_paced']['late_p99_ms']} ms late at p99)")  # fmt: skip
    print("CPU ms per event (per task, per request) by process; 'CPU ms' above is the sum:")
    for _, key in ROWS:
        if "cpu_ms" in r.get(key, {}):
            cpu = r[key]["cpu_ms"]
            print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "total"))
    print("peak RSS MiB: " + ", ".join(f"{k} {v}" for k, v in r["peak_rss_mib"].items()))
    m = r["metrics"]
    print(
        "/metrics events applied / sent: "
        + ", ".join(f"{e} {int(m['applied'][e])}/{n}" for e, n in m["sent"].items())
        + (" (equal)" if m["equal"] else " (NOT EQUAL)")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "redis"], default="embedded")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (redis mode)")
    parser.add_argument(
        "--pool", choices=["prefork", "threads", "solo"], default="prefork",
        help="the workers' Celery pool, for the system and the no-op baseline (redis mode)",
    )  # fmt: skip
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="flushed first")
    parser.add_argument("--jobs", type=int, default=200, help="jobs per phase (N)")
    parser.add_argument("--updates", type=int, default=3, help="update events per job (k)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="gateway/echo server threads")
    parser.add_argument("--rate", type=float, help="paced phase's events/s (default: half max)")
    parser.add_argument("--deadline", type=float, default=600, help="seconds for the whole run")
    parser.add_argument("--smoke", action="store_true", help="tiny, for the tests")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--webhooks", type=int, default=0, metavar="N",
        help="only the max-rate phase, with N webhook subscriptions to a local receiver "
        "next to the same run without (bench/_webhooks.py)",
    )  # fmt: skip
    parser.add_argument(
        "--batch", type=int, default=100, metavar="B",
        help="with --webhooks: the batched side's events per POST at most (subscription batch)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="with --webhooks: run the sides this many times, alternating",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.updates, args.clients, args.deadline = 6, 1, 2, 120
    if args.webhooks:
        import _webhooks

        compared = _webhooks.compare(args, walks, Phase)
        if args.json:
            Path(args.json).write_text(json.dumps(compared, indent=2))
        sides = [v for r in compared["rounds"] for k, v in r.items() if k.startswith("batch_")]
        return 0 if all(s["deliveries"] == s["expected"] for s in sides) else 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    dl, steps = Deadline(args.deadline), 2 + args.updates
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp_name:
        tmp, procs = Path(tmp_name), Procs(Path(tmp_name))
        try:
            url, auth = start_system(args, procs, tmp, dl)
            phases = run_phases(args, procs, url, auth, dl)
            metrics = check_metrics(url, args, 3 if args.mode == "redis" else 2)
            rss.update(procs.peak_rss())
            procs.stop_all()
            echo, echo_rss = bench_echo(args, procs, tmp, phases["bodies"], dl)
            procs.stop_all()
            celery, celery_rss = bench_celery(args, procs, tmp, len(phases["bodies"]), dl)
            rss.update(echo_rss | celery_rss)
        finally:
            procs.stop_all()
    rss["events.py (this script)"] = vmhwm_mib(os.getpid()) or 0.0

    redis_mode = args.mode == "redis"
    results: dict[str, Any] = {k: getattr(args, k) for k in ("mode", "jobs", "updates", "clients")}
    results |= {
        "system": f"redis, gateway + {args.workers} worker processes ({args.pool} pool)"
        if redis_mode
        else f"embedded, one process ({BusSettings().embedded_threads} worker threads)",
        "server_threads": args.threads,
        "events_max": phases["max"],
        "events_paced": phases["paced"],
        "baseline_celery_noop": celery,
        "gateway_accept": phases["accept"],
        "gateway_accept_with_workers": phases["accept_with_workers"],
        "baseline_flask_echo": echo,
        "ratio_events_to_celery": round(phases["max"]["per_second"] / celery["per_second"], 3),
        "ratio_accept_to_echo": round(phases["accept"]["per_second"] / echo["per_second"], 3),
        "peak_rss_mib": rss,
        "metrics": metrics,
    }
    if "drain" in phases:
        results["workers_drain"] = phases["drain"]
    report(results, steps)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    failed = sum(results[k]["failed"] for k in ("events_max", "events_paced"))
    return 0 if metrics["equal"] or failed else 1


if __name__ == "__main__":
    sys.exit(main())
