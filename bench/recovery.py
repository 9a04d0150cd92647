"""Benchmark: seconds until every accepted event is applied after Redis restarts empty.

A Redis of the benchmark's own (``redis-server --save ""``, on a free port), one
``pipelinejobs worker`` for the jobs-manager (prefork, 2 processes), N update events
over M jobs sent through ``Runtime.submit`` while the worker runs, then Redis is
restarted: its queues, and the events still in them, are gone; their executions are
still SUBMITTED in the store. Measured: from Redis answering again to every event
applied (and each exactly once: every job's version counts its events).

The **baseline**, in the same run: the same with the quick checks off
(``bus.check_interval=0``), so only the backstop sweep recovers them — what every
release before the checks did (``bus.recover_after`` 60 s + ``bus.recover_interval``
30 s by default; 3 s + 1 s in ``--smoke``).

    python bench/recovery.py                 # 500 events; the baseline takes ~90 s
    python bench/recovery.py --smoke         # seconds; run by the test suite
    python bench/recovery.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _procs import Deadline, Procs, free_port  # noqa: E402

from pipelinejobs.config import load_config  # noqa: E402
from pipelinejobs.runtime.system import System  # noqa: E402

COMPONENTS = [{"id": "bench-recovery-app", "inputs": {}, "parameters": {}}]


class OwnRedis:
    """A redis-server that comes back empty when restarted."""

    def __init__(self, procs: Procs, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("bench/recovery.py needs redis-server: it restarts a Redis of its own")
        self.procs, self.workdir, self.binary = procs, workdir, binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self, deadline: Deadline) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.procs.start("redis", argv, dict(os.environ), self.workdir)
        self.procs.wait("redis", self.answers, "redis-server to answer", deadline)

    def answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def restart_empty(self, deadline: Deadline) -> float:
        self.procs.stop("redis")
        self.start(deadline)
        return time.monotonic()


def env_for(tmp: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    env.update(
        {
            "PIPELINEJOBS_SYSTEM_MODE": "production",
            "PIPELINEJOBS_SYSTEM_DATA_DIR": str(tmp / "data"),
            "PIPELINEJOBS_TOKENS_SECRET": "bench-recovery-secret-0123456789",
            "PIPELINEJOBS_TOKENS_ADMIN_SECRET": "bench-recovery-admin-0123456789",
            "PIPELINEJOBS_BUS_BROKER_URL": url,
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


def run(args: argparse.Namespace, tmp: Path, extra: dict[str, str]) -> dict[str, Any]:
    """One round: a worker, events, Redis restarted empty; the figures."""
    tmp.mkdir(parents=True)
    procs = Procs(tmp)
    deadline = Deadline(args.deadline)
    redis = OwnRedis(procs, tmp)
    system = None
    try:
        redis.start(deadline)
        env = env_for(tmp, redis.url, **extra)
        worker = [sys.executable, "-m", "pipelinejobs.cli", "worker", "--actors", "jobs-manager"]
        procs.start("worker", [*worker, "--concurrency", "2", "--loglevel", "INFO"], env, tmp)
        procs.wait("worker", lambda: "ready." in procs.log("worker"), "ready", deadline)
        time.sleep(1.0)  # its first broker check
        system = System(load_config(env=env))
        rt = system.runtime
        pipeline = rt.pipelines.create({"name": "bench", "components": COMPONENTS}).pipeline
        jobs = []
        for n in range(args.jobs):
            job = rt.jobs.create(
                pipeline_uuid=pipeline["uuid"], linkage=[f"sample.bench.r{n}"], data={"n": n}
            ).job
            jobs.append((job["uuid"], rt.tokens.update_token(job["uuid"])))
        per_job = args.events // args.jobs
        for k in range(per_job):
            for uuid, token in jobs:
                event = {"uuid": uuid, "name": "update", "token": token, "data": {"n": k}}
                system.send("jobs-manager", event)
        total = per_job * len(jobs)
        applied_before = rt.store.count("executions", {"status": "COMPLETE"})
        restarted = redis.restart_empty(deadline)
        while rt.store.count("executions", {"status": "COMPLETE"}) < total:
            deadline.check(f"every event applied\n{procs.log('worker')[-3000:]}")
            time.sleep(0.05)
        seconds = time.monotonic() - restarted
        once = sum(1 for uuid, _ in jobs if rt.jobs.get(uuid)["version"] == per_job)
        return {
            "events": total,
            "applied_before_restart": applied_before,
            "seconds_to_all_applied": round(seconds, 2),
            "jobs_with_each_event_once": f"{once}/{len(jobs)}",
        }
    finally:
        if system is not None:
            system.stop()
        procs.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--deadline", type=float, default=300.0, help="s, per round")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    backstop = {"PIPELINEJOBS_BUS_CHECK_INTERVAL": "0"}
    if args.smoke:
        args.events, args.jobs, args.deadline = 40, 4, 60.0
        backstop.update(
            {"PIPELINEJOBS_BUS_RECOVER_AFTER": "3", "PIPELINEJOBS_BUS_RECOVER_INTERVAL": "1"}
        )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        results["with_checks"] = run(args, Path(tmp) / "checks", {})
        results["baseline_backstop_only"] = run(args, Path(tmp) / "backstop", backstop)
    print(f"{results['with_checks']['events']} events, Redis restarted empty mid-stream")
    print(f"{'run':<26}{'applied before':>16}{'s to all applied':>18}{'each once':>11}")
    for name in ("baseline_backstop_only", "with_checks"):
        row = results[name]
        print(
            f"{name:<26}{row['applied_before_restart']:>16}"
            f"{row['seconds_to_all_applied']:>18.1f}{row['jobs_with_each_event_once']:>11}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
