"""Benchmark: the CPU one event costs on each side, in one process, without servers.

The end-to-end benchmarks (``events.py``, ``peers.py``) measure the whole system, and
on two shared cores their figures move with whatever else runs. This one isolates
the code an event travels, so a change to it is measured before and after without
that noise: the gateway's Flask app (auth, parsing, validation, the execution's
insert, the publish) through Flask's test client — no HTTP server, whose cost is the
echo baseline's — and the worker's :meth:`Runtime.deliver` (the execution's reads and
writes, parsing again, the job's transition, middleware) called directly — no Celery
consumer, whose cost is the no-op baseline's. Both run against the real store (a
SQLite file) and, with ``--broker redis://...``, the real publish; ``memory://`` is
the embedded mode's in-process broker.

Setup (not measured) registers a pipeline and launches N callback jobs through the
same app; each round then POSTs every job's ``update`` (process CPU per request)
and delivers them (process CPU per delivery), ``--rounds`` times; the figures are
each side's best round (as timeit's: load on the other core only adds to them).
``--profile`` adds cProfile's heaviest functions (cumulative) for each side.

Baselines, same run, same bodies: the bare Flask echo (``_baselines.echo_app``)
through its test client, the least a JSON endpoint costs; and for the worker, the
least one transition costs the store — the job read and written back by one
compare-and-set (``get`` + ``update``), nothing else.

    python bench/hotpath.py                                  # redis://127.0.0.1:6379/12
    python bench/hotpath.py --broker memory:// --profile
    python bench/hotpath.py --smoke                          # seconds; run by the tests
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _baselines  # noqa: E402
from _system import APP, LAUNCH  # noqa: E402

from pipelinejobs.access.keys import Keys  # noqa: E402
from pipelinejobs.config import load_config  # noqa: E402
from pipelinejobs.gateway import create_app  # noqa: E402
from pipelinejobs.observability import logs  # noqa: E402
from pipelinejobs.runtime.system import System  # noqa: E402


class Recorder:
    """Publishes for real and remembers what was published, to deliver it here."""

    def __init__(self, system: System) -> None:
        self.bus, self.pending = system.bus, []
        self.publish = self.bus.publish
        self.bus.publish = self._publish  # type: ignore[method-assign]

    def _publish(self, alias: str, execution_id: str, **kw: Any) -> None:
        self.publish(alias, execution_id, **kw)
        self.pending.append((alias, execution_id))

    def take(self) -> list[tuple[str, str]]:
        out, self.pending = self.pending, []
        return out


def build(args: argparse.Namespace, tmp: Path) -> tuple[System, Any, dict[str, str], Recorder]:
    if args.broker.startswith("redis"):
        import redis

        redis.Redis.from_url(args.broker).flushdb()
    config = load_config(
        env={},
        overrides={
            "system": {"data_dir": str(tmp / "data"), "mode": "production"},
            "tokens": {"secret": "s" * 32, "admin_secret": "a" * 32},
            "bus": {"broker_url": args.broker},
        },
    )
    # Logged as the servers log (format and level from the settings), to a file as a
    # deployment's captured stderr: the per-request and per-execution lines are cost.
    logs.configure(config.logging, stream=open(tmp / "log", "a", encoding="utf-8"))  # noqa: SIM115
    system = System(config)
    secret, _ = Keys(system.runtime.store).create("admin", description="hotpath")
    return (
        system,
        create_app(system.runtime).test_client(),
        {"Authorization": f"Bearer {secret}"},
        Recorder(system),
    )


def drain(system: System, rec: Recorder) -> list[dict[str, Any]]:
    """Deliver everything published, and whatever that publishes, until quiet."""
    done = []
    while batch := rec.take():
        for alias, execution_id in batch:
            done.append(system.runtime.deliver(alias, execution_id, "hotpath"))
    return done


def post(client: Any, auth: dict[str, str], actor: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"/actors/v2/{actor}/messages", json=body, headers=auth)
    if resp.status_code != 200:
        raise RuntimeError(f"{actor}: {resp.status_code} {resp.get_data(as_text=True)[:300]}")
    return dict(resp.get_json())


def setup(
    system: System, client: Any, auth: dict[str, str], rec: Recorder, n: int
) -> list[tuple[str, str]]:
    components = [{"id": APP, "inputs": {}, "parameters": {}}]
    post(client, auth, "pipelines-manager", {"name": "bench hotpath", "components": components})
    drain(system, rec)
    for i in range(n):
        post(client, auth, "launcher-proxy", {**LAUNCH, "data": {"bench_job": i}})
    jobs = []
    for execution in drain(system, rec):
        result = (execution or {}).get("result") or {}
        if execution and execution["actor"] == "launcher-proxy" and "uuid" in result:
            jobs.append((result["uuid"], result["token"]))
    for uuid, token in jobs:  # callback jobs start at CREATED: run them once
        post(client, auth, "jobs-manager", {"uuid": uuid, "name": "run", "token": token})
    drain(system, rec)
    if len(jobs) != n:
        raise RuntimeError(f"{len(jobs)} of {n} jobs launched")
    return jobs


def measured(fn: Any, count: int, prof: cProfile.Profile | None) -> float:
    """Process CPU µs per item of ``fn()``."""
    if prof:
        prof.enable()
    start = time.process_time()
    fn()
    spent = time.process_time() - start
    if prof:
        prof.disable()
    return spent / count * 1e6


def top(prof: cProfile.Profile, lines: int) -> str:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(lines)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", help="flushed first (default redis://127.0.0.1:6379/12)")
    parser.add_argument("--jobs", type=int, default=500, help="events a round (N)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile's heaviest functions")
    parser.add_argument("--smoke", action="store_true", help="tiny, for the tests")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    if args.smoke:
        args.jobs, args.rounds = 20, 2
    args.broker = args.broker or ("memory://" if args.smoke else "redis://127.0.0.1:6379/12")
    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as tmp:
        system, client, auth, rec = build(args, Path(tmp))
        jobs = setup(system, client, auth, rec, args.jobs)
        gateway, worker, echoes, floors = [], [], [], []
        echo_client, store = _baselines.echo_app().test_client(), system.runtime.store
        profiles = (cProfile.Profile(), cProfile.Profile()) if args.profile else (None, None)
        for r in range(args.rounds):
            bodies = [{"uuid": u, "name": "update", "token": t, "data": {"n": r}} for u, t in jobs]

            def send(bodies: list[dict[str, Any]] = bodies) -> None:
                for body in bodies:
                    post(client, auth, "jobs-manager", body)

            def echo(bodies: list[dict[str, Any]] = bodies) -> None:
                for body in bodies:
                    if echo_client.post("/echo", json=body).status_code != 200:
                        raise RuntimeError("the echo baseline failed")

            def store_floor(r: int = r) -> None:
                for uuid, _ in jobs:
                    job = store.get("jobs", uuid)
                    store.update("jobs", uuid, version=job["version"], set={"bench_n": r})

            gateway.append(measured(send, len(bodies), profiles[0]))
            worker.append(measured(lambda: drain(system, rec), len(bodies), profiles[1]))
            echoes.append(measured(echo, len(bodies), None))
            floors.append(measured(store_floor, len(bodies), None))
        history = system.runtime.jobs.record(jobs[0][0])["history"]
        updates = sum(1 for h in history if h["name"] == "update")
        if updates != args.rounds:
            raise RuntimeError(f"job {jobs[0][0]} has {updates} updates, want {args.rounds}")
        system.runtime.close()
    figures = {
        "broker": args.broker.split("://")[0],
        "events_per_round": args.jobs,
        "rounds": args.rounds,
        "gateway_cpu_us": round(min(gateway), 1),
        "worker_cpu_us": round(min(worker), 1),
        "baseline_echo_cpu_us": round(min(echoes), 1),
        "baseline_store_cas_cpu_us": round(min(floors), 1),
        "gateway_rounds": [round(x, 1) for x in gateway],
        "worker_rounds": [round(x, 1) for x in worker],
    }
    print(f"broker {figures['broker']}, {args.jobs} update events a round, {args.rounds} rounds")
    for side, what, unit in (
        ("gateway", "Flask app, test client", "request"),
        ("worker", "Runtime.deliver", "delivery"),
    ):
        rounds = figures[f"{side}_rounds"]
        print(f"  {side:7} ({what}): {figures[f'{side}_cpu_us']:8.1f} µs CPU per {unit}; {rounds}")
    echo, floor = figures["baseline_echo_cpu_us"], figures["baseline_store_cas_cpu_us"]
    print(f"  baseline flask echo (test client):  {echo:8.1f} µs CPU per request")
    print(f"  baseline store get + CAS of the job: {floor:7.1f} µs CPU per transition")
    print(f"  gateway / echo: {figures['gateway_cpu_us'] / echo:.2f}x the CPU")
    if args.profile:
        for name, prof in zip(("gateway", "worker"), profiles, strict=True):
            print(f"--- {name}: heaviest (cumulative)")
            print(top(prof, 45))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
