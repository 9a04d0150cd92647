"""The engines underneath, measured bare: a Celery no-op task and a Flask echo endpoint
(not a benchmark: tests/bench/test_smoke.py skips names starting with ``_``).

Each baseline runs with the settings the system runs with — JSON, ``acks_late``,
prefetch 1 and the bus's transport options for Celery; waitress (as ``serve``) or
gunicorn with one worker process (as ``gateway``) for Flask — so a ratio to it is
the cost of what PipelineJobs adds, not of a different configuration.

    python bench/_baselines.py --noop-worker --redis URL --pool prefork
    python bench/_baselines.py --noop-embedded 1000 --clients 8 --threads 8
    python bench/_baselines.py --echo-server PORT --threads 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _procs import vmhwm_mib  # noqa: E402

from pipelinejobs.config import BusSettings  # noqa: E402

QUEUE = "bench.noop"
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


def run_noop_worker(url: str, pool: str) -> None:
    """``--noop-worker``: a worker of concurrency 1 (the system's pool) counting in Redis."""
    import redis

    global COUNT
    client = redis.Redis.from_url(url)

    def count(counter: str, total: int) -> None:
        if client.incr(counter) == total:
            client.set(f"{counter}:done", repr(time.time()))

    COUNT = count
    noop_app(url).Worker(loglevel="INFO", **worker_options(1, pool)).start()


def run_noop_embedded(total: int, clients: int, threads: int) -> None:
    """``--noop-embedded``: memory broker, threads-pool worker and senders in one process.

    Prints one JSON line: the run's seconds, the process's CPU seconds during it and
    its peak RSS (the senders share the process, as the clients share serve's CPU).
    """
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
    start, cpu = 0.0, 0.0
    for counter, n in (("warm", threads * 4), ("run", total)):
        before = sum(os.times()[:2])
        start = send_noops(app, counter, n, clients)
        if not done[counter].wait(120):
            raise TimeoutError(f"no-op tasks: {counts.get(counter, 0)} of {n} ran in 120 s")
        cpu = sum(os.times()[:2]) - before
    seconds = done_at["run"] - start
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss": vmhwm_mib(os.getpid())}))
    sys.stdout.flush()
    os._exit(0)  # the worker thread holds no state worth a clean shutdown


def echo_app() -> Any:
    """The least a Flask JSON endpoint can do: ``POST /echo`` answers with its body."""
    from flask import Flask, jsonify, request

    app = Flask("echo")

    @app.post("/echo")
    def echo() -> Any:
        return jsonify({"status": "success", "result": request.get_json(force=True)})

    return app


def echo_argv(port: int, threads: int, server: str) -> list[str]:
    """The command serving :func:`echo_app` on ``port`` the way ``server`` serves ours:
    ``waitress`` like ``pipelinejobs serve``, ``gunicorn`` like ``pipelinejobs gateway``
    (one worker process, access log on, as the gateway's)."""
    if server == "waitress":
        return [sys.executable, __file__, "--echo-server", str(port), "--threads", str(threads)]
    return [
        *[sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        *["--threads", str(threads), "--access-logfile", "-", "--chdir", str(ROOT / "bench")],
        "_baselines:echo_app()",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop-worker", action="store_true")
    parser.add_argument("--noop-embedded", type=int, metavar="TASKS")
    parser.add_argument("--echo-server", type=int, metavar="PORT")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    if args.noop_worker:
        run_noop_worker(args.redis, args.pool)
    elif args.noop_embedded:
        run_noop_embedded(args.noop_embedded, args.clients, args.threads)
    elif args.echo_server:
        import waitress

        waitress.serve(echo_app(), host="127.0.0.1", port=args.echo_server, threads=args.threads)
    else:
        parser.error("say which baseline to run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
