"""``bench/events.py --webhooks N``: the max-rate phase with N webhook subscriptions
active next to the same phase without any (issue 16's target: within 0.8x).

Each side starts a fresh system (the same mode and counts), launches the jobs
(setup), then — on the webhook side only — starts a receiver on loopback (a
threaded ``http.server`` in this process, answering 204) and subscribes it N times
with an empty filter, so every event of the phase is delivered N times. The phase is
the usual one: N jobs' walks POSTed by C clients, timed until every event is in its
job's history (events/s). The webhook side then waits until the receiver has every
delivery (N x events, de-duplicated by delivery id) and reports how long that took
after the last event became visible.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from _procs import Deadline, Procs
from _system import launch_jobs, start_system


class Receiver:
    """Counts deliveries (distinct delivery ids) on 127.0.0.1."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.posts = 0
        self.last = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver is

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.posts += 1
                    receiver.ids.add(self.headers.get("X-PipelineJobs-Delivery") or "")
                    receiver.last = time.time()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def one_side(args: argparse.Namespace, subscriptions: int, walks: Any, phase_of: Any) -> dict:
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
                    made = requests.post(f"{url}/webhooks", json={"url": receiver.url},
                                         headers=auth, timeout=30)  # fmt: skip
                    made.raise_for_status()
                time.sleep(2.5)  # the workers' subscription cache (webhooks.cache_seconds)
                receiver.ids.clear()  # only the measured phase's deliveries count
            phase = phase_of(url, auth, args)
            bodies = walks(jobs, steps, 0)
            records = phase.send(bodies, dl)
            events = phase.settle(bodies, records, args.jobs, dl)
            out: dict[str, Any] = {
                "events_per_second": events["per_second"],
                "p50_ms": events["p50_ms"],
                "p99_ms": events["p99_ms"],
            }
            if receiver is not None:
                want = subscriptions * len(bodies)
                while len(receiver.ids) < want and time.monotonic() < dl.end:
                    time.sleep(0.1)
                out |= {
                    "deliveries": len(receiver.ids),
                    "expected": want,
                    "posts": receiver.posts,
                    "drained_after_s": round(max(0.0, receiver.last - events["last"]), 2),
                }
            return out
        finally:
            procs.stop_all()
            if receiver is not None:
                receiver.close()


def compare(args: argparse.Namespace, walks: Any, phase_of: Any) -> dict[str, Any]:
    """Both sides and their ratio, printed and returned."""
    if args.mode == "redis":  # production mode refuses loopback receivers (SSRF rule)
        os.environ["BENCH_ENV"] = (
            os.environ.get("BENCH_ENV", "") + " PIPELINEJOBS_WEBHOOKS_ALLOW_PRIVATE=true"
        )
    without = one_side(args, 0, walks, phase_of)
    with_hooks = one_side(args, args.webhooks, walks, phase_of)
    ratio = round(with_hooks["events_per_second"] / without["events_per_second"], 3)
    steps = 2 + args.updates
    print(f"mode {args.mode}; {args.jobs} jobs x {steps} events; {args.clients} clients")
    print(f"events/s without webhooks:            {without['events_per_second']:>8.1f}  "
          f"(p50 {without['p50_ms']} ms, p99 {without['p99_ms']} ms)")  # fmt: skip
    print(f"events/s with {args.webhooks} subscriptions active: "
          f"{with_hooks['events_per_second']:>8.1f}  (p50 {with_hooks['p50_ms']} ms, "
          f"p99 {with_hooks['p99_ms']} ms)")  # fmt: skip
    print(f"ratio: {ratio:.2f} (target >= 0.8)")
    print(f"deliveries: {with_hooks['deliveries']}/{with_hooks['expected']} distinct "
          f"({with_hooks['posts']} POSTs), the last {with_hooks['drained_after_s']} s after "
          f"the last event was visible")  # fmt: skip
    return {"without": without, "with": with_hooks, "ratio": ratio}
