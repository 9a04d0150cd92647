"""Driving a PipelineJobs system over HTTP for the benchmarks: start it, launch jobs,
wait until events are visible (not a benchmark: names starting with ``_`` are skipped).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _http
import requests
from _procs import Deadline, Procs, free_port

from pipelinejobs.domain.clock import parse

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
APP = "bench-events-app"
#: A callback job (recorded ``run``, nothing started); each gets distinct ``data``.
LAUNCH = {
    "parameters": {"sample_id": "sample.bench.events"},
    "job_definition": {"appId": APP, "launcher": "callback"},
    # Events are what is measured: no automatic indexing after each finish (issue 13).
    "index": False,
}


def base_env(args: argparse.Namespace) -> dict[str, str]:
    """The servers' environment: ours without settings, so a shell's PIPELINEJOBS_*
    cannot skew a run — except those named in BENCH_ENV (``A=1 B=2``), for experiments
    that compare one setting on and off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    env.update({"PYTHONPATH": str(ROOT), "PIPELINEJOBS_GATEWAY_THREADS": str(args.threads)})
    extra = os.environ.get("BENCH_ENV", "").split()
    env.update(item.split("=", 1) for item in extra if "=" in item)
    return env


def start_system(args: argparse.Namespace, procs: Procs, tmp: Path, dl: Deadline) -> Any:
    """The system under test; its URL and an admin key's header."""
    port = free_port()
    url, env = f"http://127.0.0.1:{port}", base_env(args)
    cli = [PY, "-m", "pipelinejobs.cli"]
    if args.mode == "embedded":
        argv = [*cli, "serve", "--data-dir", str(tmp / "data"), "--port", str(port)]
        procs.start("serve", argv, env, tmp, signal.SIGINT)
        pattern = re.compile(r"^admin key: (\S+)$", re.MULTILINE)
        key = procs.wait("serve", lambda: pattern.search(procs.log("serve")), "admin key", dl)[1]
        procs.wait_http("serve", f"{url}/healthz", dl)
        return url, {"Authorization": f"Bearer {key}"}
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    env.update(
        {
            "PIPELINEJOBS_SYSTEM_MODE": "production",
            "PIPELINEJOBS_SYSTEM_DATA_DIR": str(tmp / "data"),
            "PIPELINEJOBS_TOKENS_SECRET": "bench-events-secret-0123456789",
            "PIPELINEJOBS_TOKENS_ADMIN_SECRET": "bench-events-admin-0123456789",
            "PIPELINEJOBS_BUS_BROKER_URL": args.redis,
        }
    )
    argv = [*cli, "keys", "create", "--role", "admin"]
    made = subprocess.run(argv, env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        raise RuntimeError(f"keys create failed: {made.stderr}")
    key = made.stdout.strip().splitlines()[-1]
    procs.start("gateway", [*cli, "gateway", "--workers", "1", "--port", str(port)], env, tmp)
    for name in workers(args):
        argv = [*cli, "worker", "--actors", "all", "--concurrency", "1", "--pool", args.pool]
        procs.start(name, argv, env, tmp)
    for name in workers(args):
        procs.wait(name, lambda name=name: " ready." in procs.log(name), "ready", dl)
    procs.wait_http("gateway", f"{url}/healthz", dl)
    return url, {"Authorization": f"Bearer {key}"}


def workers(args: argparse.Namespace) -> list[str]:
    return [f"worker-{i}" for i in range(args.workers)] if args.mode == "redis" else []


def launch_jobs(
    url: str, auth: dict[str, str], n: int, clients: int, dl: Deadline, first: int = 0
) -> list[tuple[str, str]]:
    """A pipeline and ``n`` callback jobs (recorded ``run``, nothing started), numbered
    from ``first`` (a job is known by what it was launched with: a batch after the
    first needs numbers of its own, or its launches find the earlier jobs)."""

    def post(session: Any, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        sync, to = {"_abaco_synchronous": "true"}, f"{url}/actors/v2/{actor}/messages"
        resp = session.post(to, json=body, headers=auth, params=sync, timeout=60)
        if resp.status_code != 200:
            raise RuntimeError(f"{actor}: {resp.status_code} {resp.text[:500]}")
        return dict(resp.json()["result"]["result"])

    components = [{"id": APP, "inputs": {}, "parameters": {}}]
    post(requests, "pipelines-manager", {"name": "bench events", "components": components})

    def client(c: int) -> list[tuple[int, str, str]]:
        session, out = requests.Session(), []
        for i in range(first + c, first + n, clients):
            dl.check("launching the jobs")
            job = post(session, "launcher-proxy", {**LAUNCH, "data": {"bench_job": i}})
            out.append((i, job["uuid"], job["token"]))
        return out

    with ThreadPoolExecutor(clients) as pool:
        rows = sorted(r for rows in pool.map(client, range(clients)) for r in rows)
    return [(uuid, token) for _, uuid, token in rows]


def wait_finished(url: str, auth: dict[str, str], finished: int, dl: Deadline) -> None:
    """Until ``finished`` jobs are FINISHED or the count stops moving for 2 s — one
    small request per 50 ms, so waiting costs the system under test next to nothing."""
    count, moved = -1, time.monotonic()
    while count < finished and time.monotonic() - moved < 2:
        dl.check(f"{finished} jobs FINISHED (seen {count})")
        resp = requests.get(f"{url}/jobs", params={"limit": 1, "counts": "true"}, headers=auth)
        now = int(resp.json()["result"]["counts"]["FINISHED"])
        count, moved = now, time.monotonic() if now != count else moved
        time.sleep(0.05)


def wait_visible(
    url: str, auth: dict[str, str], expected: dict[str, set[int]], executions: dict[int, str],
    clients: int, dl: Deadline,
) -> tuple[dict[int, float], dict[int, str]]:  # fmt: skip
    """Read every job's history until each event is in it: {n: date}, and the events
    whose execution failed (refused, so never visible) with their reasons."""
    seen: dict[int, float] = {}
    failed: dict[int, str] = {}
    sessions = [_http.Client(url) for _ in range(clients)]
    last_progress = time.monotonic()

    def poll(c: int, uuids: list[str]) -> dict[str, dict[int, float]]:
        got = {}
        for uuid in uuids[c::clients]:
            resp = sessions[c].get(f"{url}/jobs/{uuid}", headers=auth)
            if resp.status_code != 200:
                raise RuntimeError(f"GET /jobs/{uuid}: {resp.status_code} {resp.text[:300]}")
            history = resp.json()["result"]["history"]
            got[uuid] = {
                e["data"]["n"]: parse(e["date"]) for e in history if "n" in (e.get("data") or {})
            }
        return got

    with ThreadPoolExecutor(clients) as pool:
        while expected:
            dl.check(f"{sum(map(len, expected.values()))} events still not visible")
            round_start, pending = time.monotonic(), list(expected)
            for got in pool.map(poll, range(clients), [pending] * clients):
                for uuid, dates in got.items():
                    for n in expected[uuid] & dates.keys():
                        seen[n], last_progress = dates[n], time.monotonic()
                        expected[uuid].discard(n)
            if time.monotonic() - last_progress > 2:  # stalled: did those executions fail?
                for missing in expected.values():
                    for n in list(missing):
                        where = f"{url}/actors/v2/jobs-manager/executions/{executions[n]}"
                        execution = sessions[0].get(where, headers=auth).json()["result"]
                        if execution["status"] == "ERROR":
                            failed[n] = str((execution.get("error") or {}).get("message"))
                            missing.discard(n)
                last_progress = time.monotonic()
            for uuid in [u for u, missing in expected.items() if not missing]:
                del expected[uuid]
            time.sleep(max(0.0, 0.1 - (time.monotonic() - round_start)))
    return seen, failed
