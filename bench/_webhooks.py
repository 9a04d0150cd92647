"""``bench/events.py --webhooks N``: the max-rate phase with N webhook subscriptions
active next to the same phase without any (issue 16's target: within 0.8x) — once
with one event per POST (``batch`` 1, the default) and once with ``--batch B``
events per POST at most.

Each side starts a fresh system (the same mode and counts), launches the jobs
(setup), then — on the webhook sides only — starts a receiver on loopback (a
threaded ``http.server`` in a process of its own, answering 204) and subscribes it N times
with an empty filter, so every event of the phase is delivered N times. The phase is
the usual one: N jobs' walks POSTed by C clients, timed until every event is in its
job's history (events/s). The webhook side then waits until the receiver has every
delivery (N x events, de-duplicated by delivery id) and reports how long that took
after the last event became visible.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from _procs import CpuMeter, Deadline, Procs, cpu_seconds
from _system import launch_jobs, start_system


class Receiver:
    """Counts deliveries (distinct delivery ids) on 127.0.0.1, in a process of its own —
    as a receiver is somewhere else, not sharing the benchmark clients' interpreter
    (it still shares the two cores). ``GET /stats`` tells what it got."""

    def __init__(self) -> None:
        parent, child = multiprocessing.Pipe()
        self.process = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        port = parent.recv()
        self.url = f"http://127.0.0.1:{port}/hook"
        self._stats_url = f"http://127.0.0.1:{port}/stats"

    def stats(self) -> dict[str, Any]:
        """``{distinct, posts, last}`` so far."""
        return dict(requests.get(self._stats_url, timeout=30).json())

    def cpu(self) -> float:
        """CPU seconds the receiver process has used."""
        return cpu_seconds(int(self.process.pid or 0))

    def clear(self) -> None:
        requests.delete(self._stats_url, timeout=30).raise_for_status()

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10)


def _serve(conn: Any) -> None:
    """The receiver process: answers 204 to every POST, remembers delivery ids."""
    ids: set[str] = set()
    state = {"posts": 0, "last": 0.0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver is

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got = [self.headers.get("X-PipelineJobs-Delivery") or ""]
            if body.startswith(b'{"batch_id"'):  # a batch: its items' ids
                got = [item["delivery_id"] for item in json.loads(body)["deliveries"]]
            with lock:
                state["posts"] += 1
                ids.update(got)
                state["last"] = time.time()
            self._answer(204, b"")

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                stats = {"distinct": len(ids), "posts": state["posts"], "last": state["last"]}
            self._answer(200, json.dumps(stats).encode())

        def do_DELETE(self) -> None:  # noqa: N802
            with lock:
                ids.clear()
                state["posts"] = 0
            self._answer(204, b"")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    conn.send(server.server_port)
    server.serve_forever(0.1)


def one_side(
    args: argparse.Namespace, subscriptions: int, walks: Any, phase_of: Any, batch: int = 1
) -> dict:
    dl = Deadline(args.deadline)
    steps = ["run", *["update"] * args.updates, "finish"]
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp_name:
        tmp, procs = Path(tmp_name), Procs(Path(tmp_name))
        receiver = Receiver() if subscriptions else None
        try:
            url, auth = start_system(args, procs, tmp, dl)
            jobs = launch_jobs(url, auth, args.jobs, args.clients, dl)
            if receiver is not None:
                for _ in range(subscriptions):
                    body = {"url": receiver.url, "batch": batch}
                    made = requests.post(f"{url}/webhooks", json=body, headers=auth, timeout=30)
                    made.raise_for_status()
                time.sleep(2.5)  # the workers' subscription cache (webhooks.cache_seconds)
                receiver.clear()  # only the measured phase's deliveries count
            phase = phase_of(url, auth, args)
            bodies = walks(jobs, steps, 0)
            meter = CpuMeter(procs).start()
            receiver_cpu = receiver.cpu() if receiver is not None else 0.0
            records = phase.send(bodies, dl)
            events = phase.settle(bodies, records, args.jobs, dl)
            out: dict[str, Any] = {
                "events_per_second": events["per_second"],
                "p50_ms": events["p50_ms"],
                "p99_ms": events["p99_ms"],
            }
            if receiver is not None:
                want = subscriptions * len(bodies)
                while (got := receiver.stats())["distinct"] < want and time.monotonic() < dl.end:
                    time.sleep(0.1)
                meter.stop()
                meter.spent["receiver"] = receiver.cpu() - receiver_cpu
                out |= {
                    "deliveries": got["distinct"],
                    "expected": want,
                    "posts": got["posts"],
                    "drained_after_s": round(max(0.0, got["last"] - events["last"]), 2),
                }
            else:
                meter.stop()
            # Until the last delivery arrived: what webhooks cost, wherever it went.
            out["cpu_ms"] = meter.per_item(len(bodies))
            return out
        finally:
            procs.stop_all()
            if receiver is not None:
                receiver.close()


def compare(args: argparse.Namespace, walks: Any, phase_of: Any) -> dict[str, Any]:
    """The three sides, ``--rounds`` times alternating (a shared machine's load drifts:
    each round's ratio is of sides run next to each other), printed and returned."""
    if args.mode == "redis":  # production mode refuses loopback receivers (SSRF rule)
        os.environ["BENCH_ENV"] = (
            os.environ.get("BENCH_ENV", "") + " PIPELINEJOBS_WEBHOOKS_ALLOW_PRIVATE=true"
        )
    steps = 2 + args.updates
    print(f"mode {args.mode}; {args.jobs} jobs x {steps} events; {args.clients} clients")
    rounds: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        without = one_side(args, 0, walks, phase_of)
        print(f"round {number}: events/s without webhooks (baseline): "
              f"{without['events_per_second']:>8.1f}  (p50 {without['p50_ms']} ms, "
              f"p99 {without['p99_ms']} ms)")  # fmt: skip
        print(f"    CPU ms per event: {_cpu(without['cpu_ms'])}")
        out: dict[str, Any] = {"without": without}
        for batch in dict.fromkeys((1, args.batch)):
            side = one_side(args, args.webhooks, walks, phase_of, batch)
            ratio = round(side["events_per_second"] / without["events_per_second"], 3)
            print(f"  with {args.webhooks} subscriptions, batch {batch:>3}: "
                  f"{side['events_per_second']:>8.1f}  (p50 {side['p50_ms']} ms, "
                  f"p99 {side['p99_ms']} ms)  ratio {ratio:.2f} (target >= 0.8)")  # fmt: skip
            print(f"    CPU ms per event: {_cpu(side['cpu_ms'])}")
            print(f"    deliveries: {side['deliveries']}/{side['expected']} distinct in "
                  f"{side['posts']} POSTs, the last {side['drained_after_s']} s after the "
                  f"last event was visible")  # fmt: skip
            out[f"batch_{batch}"] = side | {"ratio": ratio}
        rounds.append(out)
    for key in [k for k in rounds[0] if k.startswith("batch_")]:
        ratios = sorted(r[key]["ratio"] for r in rounds)
        print(f"{key}: ratio {ratios[0]:.2f}–{ratios[-1]:.2f} over {len(rounds)} round(s)")
    return {"rounds": rounds}


def _cpu(per_event: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.2f}" for name, ms in per_event.items())
