"""Benchmark: lifecycle events/s end to end, next to bare Celery and bare Flask.

Starts a system — ``pipelinejobs serve`` (``--mode embedded``: gateway and actors on
threads, in-process broker, SQLite) or a gunicorn gateway (one worker process) and W
``pipelinejobs worker --concurrency 1`` processes on Redis sharing one SQLite store
(``--mode redis``) — registers a pipeline and launches N callback jobs (setup, not
measured). Then C clients send each job's walk run → update × k → finish, each event
an asynchronous POST to the jobs-manager, and the jobs are read back (GET /jobs/<uuid>,
every pending job once per 100 ms round) until every event is in its job's history.

* events/s: events ÷ (first send → the date of the last history entry written);
* POST→visible latency: each event's history ``date`` minus its send time;
* accept rate: POSTs answered per second while sending (with their round trip).

Baselines in the same run: (a) a bare Celery no-op task sent one-way as many times,
from C threads, on the same broker with the same workers (W prefork worker processes
of concurrency 1 on Redis; in embedded mode the in-process memory broker and a
threads-pool worker of serve's size, in one subprocess), timed until the last one ran;
(b) a bare Flask echo endpoint behind the same server (waitress like serve, gunicorn
like the gateway) receiving the same POSTs from the same clients.

    python bench/events.py                            # embedded: 200 jobs, k=3, 8 clients
    python bench/events.py --mode redis --workers 2   # Redis 127.0.0.1:6379/12, flushed
    python bench/events.py --smoke                    # seconds; run by the test suite
    python bench/events.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _procs import Deadline, Procs, accepted, free_port, post_all, stats, vmhwm_mib  # noqa: E402

from common.clock import parse  # noqa: E402
from common.config import BusSettings  # noqa: E402

APP, QUEUE = "bench-events-app", "bench.noop"
#: A callback job (recorded ``run``, nothing started); each gets distinct ``data``.
LAUNCH = {
    "parameters": {"sample_id": "sample.bench.events"},
    "job_definition": {"appId": APP, "launcher": "callback"},
}
PY = sys.executable
COUNT: Callable[[str, int], None] = lambda counter, total: None  # noqa: E731


def noop(counter: str, total: int) -> None:
    """The no-op task: it only counts itself, so the end of a run can be timed."""
    COUNT(counter, total)


def noop_app(broker: str) -> Any:
    """A bare Celery app: JSON, acks_late, prefetch 1, the bus's transport settings."""
    from celery import Celery

    bus = BusSettings()
    app = Celery("bench-noop", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": bus.visibility_timeout,
            "polling_interval": bus.polling_interval,
        },
    )
    app.task(name="bench.noop", ignore_result=True)(noop)
    return app


def worker_options(concurrency: int, pool: str) -> dict[str, Any]:
    return {
        "queues": [QUEUE],
        "concurrency": concurrency,
        "pool": pool,
        "hostname": f"bench-noop-{os.getpid()}@localhost",
        "without_gossip": True,
        "without_mingle": True,
        "without_heartbeat": True,
        "optimization": "fair",
    }


def send_noops(app: Any, counter: str, total: int, clients: int) -> float:
    """Send ``total`` no-op tasks from ``clients`` threads; the time of the first send."""

    def client(c: int) -> float:
        first = time.time()
        for _ in range(c, total, clients):
            app.send_task("bench.noop", args=[counter, total], queue=QUEUE, routing_key=QUEUE)
        return first

    with ThreadPoolExecutor(clients) as pool:
        return min(pool.map(client, range(clients)))


def run_noop_worker(url: str) -> None:
    """``--noop-worker``: a prefork worker of concurrency 1 counting in Redis."""
    import redis

    global COUNT
    client = redis.Redis.from_url(url)

    def count(counter: str, total: int) -> None:
        if client.incr(counter) == total:
            client.set(f"{counter}:done", repr(time.time()))

    COUNT = count
    noop_app(url).Worker(loglevel="INFO", **worker_options(1, "prefork")).start()


def run_noop_embedded(total: int, clients: int, threads: int) -> None:
    """``--noop-embedded``: memory broker, threads-pool worker and senders in one process."""
    from celery.worker import WorkController

    global COUNT
    counts: dict[str, int] = {}
    done = {"warm": threading.Event(), "run": threading.Event()}
    done_at: dict[str, float] = {}
    lock = threading.Lock()

    def count(counter: str, n: int) -> None:
        with lock:
            counts[counter] = counts.get(counter, 0) + 1
            if counts[counter] == n:
                done_at[counter] = time.time()
                done[counter].set()

    COUNT = count
    app = noop_app("memory://")
    app.set_default()  # the threads pool looks tasks up in the default app
    app.set_current()
    controller = WorkController(app=app, loglevel="WARNING", **worker_options(threads, "threads"))
    threading.Thread(target=controller.start, daemon=True).start()
    deadline = time.monotonic() + 30
    while getattr(controller.consumer, "connection", None) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the embedded no-op worker did not start")
        time.sleep(0.05)
    start = 0.0
    for counter, n in (("warm", threads * 4), ("run", total)):
        start = send_noops(app, counter, n, clients)
        if not done[counter].wait(120):
            raise TimeoutError(f"no-op tasks: {counts.get(counter, 0)} of {n} ran in 120 s")
    print(json.dumps({"seconds": done_at["run"] - start, "rss": vmhwm_mib(os.getpid())}))
    sys.stdout.flush()
    os._exit(0)  # the worker thread holds no state worth a clean shutdown


def echo_app() -> Any:
    """The echo baseline as a WSGI app for gunicorn (bench/gateway.py's route)."""
    from flask import Flask, jsonify, request

    app = Flask("echo")

    @app.post("/echo")
    def echo() -> Any:
        return jsonify({"status": "success", "result": request.get_json(force=True)})

    return app


def base_env(args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    env.update({"PYTHONPATH": str(ROOT), "PIPELINEJOBS_GATEWAY_THREADS": str(args.threads)})
    return env


def start_system(args: argparse.Namespace, procs: Procs, tmp: Path, dl: Deadline) -> Any:
    """The system under test; its URL and an admin key's header."""
    port = free_port()
    url, env = f"http://127.0.0.1:{port}", base_env(args)
    cli = [PY, "-m", "common.cli"]
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
    for i in range(args.workers):
        argv = [*cli, "worker", "--actors", "all", "--concurrency", "1"]
        procs.start(f"worker-{i}", argv, env, tmp)
    for i in range(args.workers):
        name = f"worker-{i}"
        procs.wait(name, lambda name=name: " ready." in procs.log(name), "ready", dl)
    procs.wait_http("gateway", f"{url}/healthz", dl)
    return url, {"Authorization": f"Bearer {key}"}


def launch_jobs(
    url: str, auth: dict[str, str], n: int, clients: int, dl: Deadline
) -> list[tuple[str, str]]:
    """A pipeline and ``n`` callback jobs (recorded ``run``, nothing started)."""

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
        for i in range(c, n, clients):
            dl.check("launching the jobs")
            job = post(session, "launcher-proxy", {**LAUNCH, "data": {"bench_job": i}})
            out.append((i, job["uuid"], job["token"]))
        return out

    with ThreadPoolExecutor(clients) as pool:
        rows = sorted(r for rows in pool.map(client, range(clients)) for r in rows)
    return [(uuid, token) for _, uuid, token in rows]


def wait_visible(
    url: str, auth: dict[str, str], expected: dict[str, set[int]], executions: dict[int, str],
    clients: int, dl: Deadline,
) -> tuple[dict[int, float], dict[int, str]]:  # fmt: skip
    """Poll the read API until every event is in its job's history: {n: date}, and the
    events whose execution failed (e.g. a ``run`` that lost the race to its ``finish``)."""
    seen: dict[int, float] = {}
    failed: dict[int, str] = {}
    sessions = [requests.Session() for _ in range(clients)]
    last_progress = time.monotonic()

    def poll(c: int, uuids: list[str]) -> dict[str, dict[int, float]]:
        got = {}
        for uuid in uuids[c::clients]:
            resp = sessions[c].get(f"{url}/jobs/{uuid}", headers=auth, timeout=30)
            resp.raise_for_status()
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
                        execution = (
                            sessions[0].get(where, headers=auth, timeout=30).json()["result"]
                        )
                        if execution["status"] == "ERROR":
                            failed[n] = str((execution.get("error") or {}).get("message"))
                            missing.discard(n)
                last_progress = time.monotonic()
            for uuid in [u for u, missing in expected.items() if not missing]:
                del expected[uuid]
            time.sleep(max(0.0, 0.1 - (time.monotonic() - round_start)))
    return seen, failed


def bench_echo(args: argparse.Namespace, procs: Procs, tmp: Path, chunks: list, dl: Deadline):
    port = free_port()
    if args.mode == "embedded":  # waitress, as serve
        argv = [PY, str(ROOT / "bench" / "gateway.py"), "--echo-server", str(port)]
        argv += ["--threads", str(args.threads)]
    else:  # gunicorn with one worker process, as the gateway
        argv = [PY, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
        argv += ["--threads", str(args.threads), "--access-logfile", "-", "events:echo_app()"]
    env = {**base_env(args), "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}"}
    procs.start("flask-echo", argv, env, tmp, signal.SIGINT)
    procs.wait_http("flask-echo", f"http://127.0.0.1:{port}/", dl)
    result = accepted(post_all(f"http://127.0.0.1:{port}/echo", chunks, {}, dl))
    return result, procs.peak_rss(["flask-echo"])


def bench_celery(args: argparse.Namespace, procs: Procs, tmp: Path, total: int, dl: Deadline):
    env, me = base_env(args), [PY, str(Path(__file__).resolve())]
    if args.mode == "embedded":
        threads = BusSettings().embedded_threads
        argv = [*me, "--noop-embedded", str(total), "--clients", str(args.clients)]
        proc = procs.start("celery-noop", [*argv, "--threads", str(threads)], env, tmp)
        procs.wait("celery-noop", lambda: proc.poll() == 0, "no-op run", dl)
        out = json.loads(procs.log("celery-noop").strip().splitlines()[-1])
        seconds, rss = out["seconds"], {"celery-noop": out["rss"]}
    else:
        import redis

        client = redis.Redis.from_url(args.redis)
        names = [f"noop-worker-{i}" for i in range(args.workers)]
        for name in names:
            procs.start(name, [*me, "--noop-worker", "--redis", args.redis], env, tmp)
        for name in names:
            procs.wait(name, lambda name=name: " ready." in procs.log(name), "ready", dl)
        app = noop_app(args.redis)
        for counter, n in (("warm", args.workers * 4), ("run", total)):
            client.delete(counter, f"{counter}:done")
            start = send_noops(app, counter, n, args.clients)
            done = procs.wait(names[0], lambda c=counter: client.get(f"{c}:done"), counter, dl)
        seconds, rss = float(done) - start, procs.peak_rss(names)
    return stats(total, seconds), rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "redis"], default="embedded")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (redis mode)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="flushed first")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--updates", type=int, default=3, help="update events per job (k)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="gateway/echo server threads")
    parser.add_argument("--deadline", type=float, default=300, help="seconds for the whole run")
    parser.add_argument("--smoke", action="store_true", help="tiny and embedded, for the tests")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--noop-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--noop-embedded", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.noop_worker:
        run_noop_worker(args.redis)
        return 0
    if args.noop_embedded:
        run_noop_embedded(args.noop_embedded, args.clients, args.threads)
        return 0
    if args.smoke:
        args.jobs, args.updates, args.clients, args.mode, args.deadline = 6, 1, 2, "embedded", 120
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    dl, steps = Deadline(args.deadline), ["run", *["update"] * args.updates, "finish"]
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp_name:
        tmp, procs = Path(tmp_name), Procs(Path(tmp_name))
        try:
            url, auth = start_system(args, procs, tmp, dl)
            jobs = launch_jobs(url, auth, args.jobs, args.clients, dl)
            walks = [
                [
                    {"uuid": uuid, "name": name, "token": token, "data": {"n": i * len(steps) + s}}
                    for s, name in enumerate(steps)
                ]
                for i, (uuid, token) in enumerate(jobs)
            ]
            chunks = [
                [body for walk in walks[c :: args.clients] for body in walk]
                for c in range(args.clients)
            ]
            records = post_all(f"{url}/actors/v2/jobs-manager/messages", chunks, auth, dl)
            expected = {w[0]["uuid"]: {b["data"]["n"] for b in w} for w in walks}
            executions = {r["n"]: r["execution"] for r in records}
            seen, failed = wait_visible(url, auth, expected, executions, args.clients, dl)
            rss.update(procs.peak_rss())
            procs.stop_all()
            echo, echo_rss = bench_echo(args, procs, tmp, chunks, dl)
            procs.stop_all()
            celery, celery_rss = bench_celery(args, procs, tmp, len(records), dl)
            rss.update(echo_rss | celery_rss)
        finally:
            procs.stop_all()
    rss["events.py (this script)"] = vmhwm_mib(os.getpid()) or 0.0

    sent = {r["n"]: r["sent"] for r in records}
    seconds = max(seen.values()) - min(sent.values())
    events = stats(len(seen), seconds, [seen[n] - sent[n] for n in seen])
    events |= {"sent": len(records), "failed": len(failed)}
    gateway = accepted(records)
    results: dict[str, Any] = {k: getattr(args, k) for k in ("mode", "jobs", "updates", "clients")}
    results |= {
        "workers": args.workers if args.mode == "redis" else BusSettings().embedded_threads,
        "server_threads": args.threads,
        "events": events,
        "baseline_celery_noop": celery,
        "gateway_accept": gateway,
        "baseline_flask_echo": echo,
        "ratio_events_to_celery": round(events["per_second"] / celery["per_second"], 3),
        "ratio_accept_to_echo": round(gateway["per_second"] / echo["per_second"], 3),
        "peak_rss_mib": rss,
        "failed_examples": sorted(set(failed.values()))[:3],
    }
    where = f"redis, gateway + {args.workers} worker processes" if args.mode == "redis" else (
        f"embedded, one process ({BusSettings().embedded_threads} worker threads)"
    )  # fmt: skip
    print(f"mode {where}; {args.jobs} jobs x {len(steps)} events = {len(records)} events; "
          f"{args.clients} clients; {args.threads} server threads")  # fmt: skip
    print(f"{'':<34}{'count':>7}{'per second':>12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for label, row in [
        ("events, POST -> visible", events),
        ("baseline celery no-op, one-way", celery),
        ("gateway accept, POST round trip", gateway),
        ("baseline flask echo", echo),
    ]:
        lat = "".join(f"{row[k]:>9}" for k in ("p50_ms", "p95_ms", "p99_ms") if k in row)
        print(f"{label:<34}{row['count']:>7}{row['per_second']:>12.1f}{lat}")
    if failed:
        print(f"{len(failed)} event(s) failed (not visible), e.g. {results['failed_examples'][0]}")
    print(f"events/s / celery no-op baseline: {results['ratio_events_to_celery']:.2f}")
    print(f"gateway accept / flask echo baseline: {results['ratio_accept_to_echo']:.2f}")
    print("peak RSS MiB: " + ", ".join(f"{k} {v}" for k, v in rss.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
