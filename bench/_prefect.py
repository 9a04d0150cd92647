"""The Prefect side of ``bench/peers.py``: a Prefect server on SQLite, driven over its
REST API from this interpreter (not a benchmark: names starting with ``_`` are skipped).

The server runs from its own venv (``_prefect_venv.py``) as ``prefect server start``
with its defaults — services on, one process — except that the UI and analytics are off
(nothing reaches out of the machine), runs are marked Late after an hour instead of 15
s, and retryable database errors are logged. The late-runs service would otherwise
rewrite every run the setup left waiting, every 5 s, in transactions that fought the
creation for SQLite's lock (500 runs made at 2/s with 1,110 retried 503s, where 100 runs
are made at 11/s) — an artifact of a benchmark's setup, not a workload's cost, and
leaving it out favours Prefect. The log tells the 503s apart: Prefect answers 503 when
SQLite says "database is locked" (or busy), and its client retries them. Ours does the
same, every retry counted: ``--backoff`` seconds (0.1 by default) doubled on each retry,
at most 2 s, with ±20% jitter, until the run's deadline. Prefect's own client waits 2 s,
4 s, ... and gives up after 5 retries: with eight clients that left the server idle
while they slept (run creation fell to 1.4/s on this machine), and one request here lost
11 times in a row, so the shorter, patient client is the one that favours Prefect's
figures.

A flow and N flow runs in SCHEDULED are made first (setup; timed and reported, not
part of the rate). The measured phase then walks every run PENDING → RUNNING →
COMPLETED with ``POST /api/flow_runs/<id>/set_state``, C clients taking requests in
step order (every run's PENDING, then every run's RUNNING, ...), as
``bench/events.py`` sends its events. Prefect answers once the new state is committed,
so an accepted answer is a transition persisted: transitions/s = accepted ÷ (first
send → last answer), latency = send → accepted answer (retries included).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _http
from _procs import CpuMeter, Deadline, Procs, free_port, stats

STEPS = ["PENDING", "RUNNING", "COMPLETED"]
SERVER = "prefect-server"
#: The longest wait between two tries of a request.
MAX_WAIT = 2.0


class Client:
    """A session that retries 503 and 429 answers and dropped connections as Prefect's
    client does, counting each retry by cause; one per client thread."""

    def __init__(self, dl: Deadline, backoff: float, api: str) -> None:
        self.session, self.dl, self.backoff = _http.Client(api), dl, backoff
        self.retried: Counter[str] = Counter()
        self.most = 0  # the most retries one request took

    def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in itertools.count():
            self.dl.check(f"POST {url} (tried {attempt} times)")
            self.most = max(self.most, attempt)
            try:
                resp = self.session.post(url, json=body)
            except ConnectionError:
                # The server closing a keep-alive connection as it is reused (uvicorn's
                # idle timeout is 5 s): the request was not read, so send it again.
                self.retried["connection"] += 1
                continue
            if resp.status_code in (200, 201):
                return dict(resp.json())
            if resp.status_code not in (429, 503):
                raise RuntimeError(f"POST {url}: {resp.status_code} {resp.text[:300]}")
            self.retried[str(resp.status_code)] += 1
            after = resp.headers.get("Retry-After", "")
            wait = float(after) if after.replace(".", "", 1).isdigit() else None
            if wait is None:
                wait = min(self.backoff * 2**attempt, MAX_WAIT) * random.uniform(0.8, 1.2)
            time.sleep(wait)
        raise AssertionError("unreachable")


def start_server(command: Path, procs: Procs, tmp: Path, dl: Deadline) -> str:
    """``prefect server start`` on a fresh SQLite file under ``tmp``; its API URL."""
    port, home = free_port(), tmp / "prefect-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "3600",
    }
    argv = [str(command), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    procs.start(SERVER, [*argv, "--no-ui", "--analytics-off"], env, tmp, signal.SIGINT)
    api = f"http://127.0.0.1:{port}/api"
    procs.wait_http(SERVER, f"{api}/health", dl)
    return api


def in_threads(clients: int, work: Any) -> list[Any]:
    """Run ``work(client_index)`` on ``clients`` threads; their results in order."""
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(work, range(clients)))


def create_runs(
    api: str, n: int, clients: int, dl: Deadline, backoff: float
) -> tuple[list[str], dict[str, Any]]:
    """A flow and ``n`` flow runs in SCHEDULED (setup); their ids and the setup figures."""
    flow = Client(dl, backoff, api).post(f"{api}/flows/", {"name": "bench-peers"})["id"]
    made: list[Client] = []

    def client(c: int) -> list[tuple[int, str]]:
        session, out = Client(dl, backoff, api), []
        made.append(session)
        for i in range(c, n, clients):
            dl.check("creating the flow runs")
            body = {"flow_id": flow, "name": f"bench-{i}", "state": {"type": "SCHEDULED"}}
            out.append((i, session.post(f"{api}/flow_runs/", body)["id"]))
        return out

    start = time.time()
    rows = sorted(r for rows in in_threads(clients, client) for r in rows)
    return [run for _, run in rows], stats(n, time.time() - start) | retries(made)


def drive(api: str, runs: list[str], clients: int, dl: Deadline, backoff: float) -> dict[str, Any]:
    """Every run through STEPS, in step order from ``clients`` threads; the figures."""
    lock = threading.Lock()
    order = iter([(run, step) for step in STEPS for run in runs])
    made: list[Client] = []

    def client(_: int) -> list[tuple[float, float, str, str]]:
        session, out = Client(dl, backoff, api), list[tuple[float, float, str, str]]()
        made.append(session)
        while True:
            with lock:
                run, step = next(order, ("", ""))
            if not run:
                return out
            dl.check("setting flow run states")
            sent = time.time()
            answer = session.post(f"{api}/flow_runs/{run}/set_state", {"state": {"type": step}})
            reason = str((answer.get("details") or {}).get("reason") or "")
            out.append((sent, time.time(), str(answer.get("status")), reason))

    records = [r for rows in in_threads(clients, client) for r in rows]
    accepted = [r for r in records if r[2] == "ACCEPT"]
    refused = Counter(f"{r[2]}: {r[3]}" for r in records if r[2] != "ACCEPT")
    if not accepted:
        raise RuntimeError(f"Prefect accepted none of {len(records)} transitions: {refused}")
    seconds = max(r[1] for r in records) - min(r[0] for r in records)
    out = stats(len(accepted), seconds, [r[1] - r[0] for r in accepted])
    return (
        out
        | {
            "sent": len(records),
            "not_accepted": sum(refused.values()),
            "not_accepted_examples": sorted(refused)[:3],
        }
        | retries(made)
    )


def retries(clients: list[Client]) -> dict[str, int]:
    """The clients' retries by cause (503 and 429 answers, dropped connections), and
    the most one request needed."""
    out = {
        f"retried_{cause}": sum(c.retried[cause] for c in clients)
        for cause in ("503", "429", "connection")
    }
    return out | {"most_retries_of_one_request": max(c.most for c in clients)}


def locked_in_log(procs: Procs) -> int:
    """How many of the retryable errors the server logged so far were SQLite's
    "database is locked" (each record is a traceback that names it several times)."""
    records = procs.log(SERVER).split("Encountered retryable exception in request")[1:]
    return sum("database is locked" in record for record in records)


def measure(
    command: Path, n: int, clients: int, backoff: float, tmp: Path, dl: Deadline
) -> dict[str, Any]:
    """One Prefect side: a fresh server, N runs made, then walked; its figures."""
    procs = Procs(tmp)
    try:
        started = time.monotonic()
        api = start_server(command, procs, tmp, dl)
        ready = round(time.monotonic() - started, 1)
        runs, setup = create_runs(api, n, clients, dl, backoff)
        setup["database_locked_logged"] = locked_in_log(procs)
        meter = CpuMeter(procs, [SERVER]).start()
        phase = drive(api, runs, clients, dl, backoff)
        meter.stop()
        meter.spent.pop("redis-server", None)  # not part of this system
        phase["database_locked_logged"] = locked_in_log(procs) - setup["database_locked_logged"]
        phase["cpu_ms"] = meter.per_item(phase["count"] or 1)
        phase["peak_rss_mib"] = procs.peak_rss([SERVER])
        return {"transitions": phase, "create_runs": setup, "server_ready_s": ready}
    finally:
        procs.stop_all()
