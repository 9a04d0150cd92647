"""Benchmark: messages/s the gateway accepts, next to a bare Flask echo endpoint.

Starts the gateway and, as the **baseline**, a Flask app with one ``POST /echo``
route that parses the JSON body and returns it, served the same way, each in its own
process. C concurrent clients then POST N messages to each: to the gateway,
``update`` events for J jobs in turn on the jobs-manager (authenticated, validated,
stored as an execution, published — "accepted" means the 200 with an executionId).

* ``--mode redis`` (default): ``pipelinejobs gateway`` (gunicorn, one worker
  process) on Redis, and the echo app under the same gunicorn settings. A worker
  starts the jobs, then stops: the gateway is measured alone, as the echo is, and
  what it accepts waits in Redis (on its own machine, in production, the workers
  would be elsewhere).
* ``--mode embedded``: ``pipelinejobs serve`` (waitress; the actors run on threads
  of the same process and process the messages meanwhile) and the echo app under
  waitress. Between rounds the benchmark waits until serve is idle again.

The two are measured in turns, R rounds each (echo, gateway, echo, gateway, ...), so
a slow spell of a shared machine falls on both; the table shows each one's median
round, with the CPU each process spent per request in it.

    python bench/gateway.py                 # full run
    python bench/gateway.py --smoke         # seconds; run by the test suite
    python bench/gateway.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _baselines  # noqa: E402
from _procs import CpuMeter, Deadline, Procs, accepted, free_port, send_all  # noqa: E402
from _system import base_env, launch_jobs, start_system, workers  # noqa: E402


def measure(procs: Procs, name: str, url: str, bodies: list[dict], auth: dict, args: Any) -> dict:
    """One round: every body POSTed by the clients; the rate and CPU per request."""
    dl = Deadline(args.deadline)
    procs.wait_idle(name, dl)
    meter = CpuMeter(procs, [name]).start()
    records = send_all(url, bodies, auth, args.clients, dl)
    meter.stop()
    return accepted(records) | {"cpu_ms": meter.per_item(len(bodies))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["redis", "embedded"], default="redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="flushed first")
    parser.add_argument("--messages", type=int, default=2000, help="POSTs a round")
    parser.add_argument("--jobs", type=int, default=100, help="jobs the updates go to (J)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, in turns")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="server threads (both)")
    parser.add_argument("--deadline", type=float, default=600)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.smoke:
        args.messages, args.clients, args.rounds, args.deadline, args.jobs = 40, 4, 1, 120, 4
    args.workers, args.pool = 1, "prefork"
    server, system = ("gunicorn", "gateway") if args.mode == "redis" else ("waitress", "serve")

    rounds: dict[str, list[dict[str, Any]]] = {"baseline_flask_echo": [], "gateway": []}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_name:
        tmp, procs, dl = Path(tmp_name), Procs(Path(tmp_name)), Deadline(args.deadline)
        try:
            port = free_port()
            argv = _baselines.echo_argv(port, args.threads, server)
            procs.start("flask-echo", argv, base_env(args), tmp)
            echo_url = f"http://127.0.0.1:{port}"
            procs.wait_http("flask-echo", f"{echo_url}/", dl)
            pj_url, auth = start_system(args, procs, tmp, dl)
            jobs = launch_jobs(pj_url, auth, args.jobs, args.clients, dl)
            for name in workers(args):  # the gateway alone from here on
                procs.stop(name)
            bodies = [
                {"uuid": job, "name": "update", "token": token, "data": {"n": n}}
                for n in range(args.messages)
                for job, token in [jobs[n % len(jobs)]]
            ]
            to = f"{pj_url}/actors/v2/jobs-manager/messages"
            for _ in range(args.rounds):
                echo = measure(procs, "flask-echo", f"{echo_url}/echo", bodies, {}, args)
                rounds["baseline_flask_echo"].append(echo)
                rounds["gateway"].append(measure(procs, system, to, bodies, auth, args))
        finally:
            procs.stop_all()

    def middle(runs: list[dict[str, Any]]) -> dict[str, Any]:
        rate = median(r["per_second"] for r in runs)
        return min(runs, key=lambda r: abs(r["per_second"] - rate))

    keys = ("mode", "messages", "rounds", "clients", "threads")
    results: dict[str, Any] = {k: getattr(args, k) for k in keys}
    results |= {name: middle(runs) for name, runs in rounds.items()}
    results["all_rounds_per_second"] = {
        name: [r["per_second"] for r in runs] for name, runs in rounds.items()
    }
    ratio = results["gateway"]["per_second"] / results["baseline_flask_echo"]["per_second"]
    results["ratio_to_baseline"] = round(ratio, 3)
    print(f"{system} ({server}) and echo ({server}): {args.messages} POSTs a round, "
          f"{args.rounds} round(s) each in turns, {args.clients} clients, "
          f"{args.threads} server threads; median rounds:")  # fmt: skip
    print(f"{'server':<22}{'requests':>9}{'per second':>12}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms':>8}")
    for name in ("baseline_flask_echo", "gateway"):
        row = results[name]
        print(
            f"{name:<22}{row['count']:>9}{row['per_second']:>12.1f}{row['p50_ms']:>9}"
            f"{row['p99_ms']:>9}{row['cpu_ms']['total']:>8.2f}"
        )
    print(f"gateway / baseline: {ratio:.2f}; all rounds: {results['all_rounds_per_second']}")
    for name in ("baseline_flask_echo", "gateway"):
        cpu = results[name]["cpu_ms"]
        print(f"  CPU ms per request, {name}: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
