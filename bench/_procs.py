"""Helpers for the benchmarks: processes, deadlines, HTTP clients, rates (not a
benchmark: tests/bench/test_smoke.py skips names starting with ``_``).

Every process is started in a session of its own, with its output in a log file, so
it and its children (gunicorn's and Celery's pool processes) can be measured and
stopped as a group, and nothing outlives the benchmark.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _http
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Deadline:
    """One total time budget for every wait of a run, so nothing waits forever."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise TimeoutError(f"gave up after the {self.seconds:.0f} s deadline: {what}")


def vmhwm_mib(pid: int, field: str = "VmHWM") -> float | None:
    """Peak resident set size of ``pid`` (VmHWM), in MiB; None when it is gone.
    ``field="VmRSS"``: the resident set now (what a soak watches grow)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` (all its threads) has used; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(command: str) -> list[int]:
    """Live processes whose command name is ``command`` (e.g. the Redis server)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == command:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, found by parent pid in /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(parents.get(child, []))
    return sorted(found)


class Procs:
    """Processes started by a benchmark, by name; all stopped by ``stop_all``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        stop_signal: int = signal.SIGTERM,
    ) -> subprocess.Popen[bytes]:
        with open(self.log_path(name), "wb") as out:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[name] = (proc, stop_signal)
        return proc

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def wait(self, name: str, ready: Callable[[], Any], what: str, deadline: Deadline) -> Any:
        """Poll ``ready`` until truthy; fail with the log if the process dies or time runs out."""
        proc = self.procs[name][0]
        while True:
            try:
                value = ready()
            except requests.RequestException:
                value = None
            if value:
                return value
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}"
                )
            try:
                deadline.check(f"{name}: {what}")
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\n{self.log(name)[-3000:]}") from None
            time.sleep(0.1)

    def wait_http(self, name: str, url: str, deadline: Deadline) -> None:
        self.wait(name, lambda: requests.get(url, timeout=2).status_code < 500, url, deadline)

    def peak_rss(self, names: list[str] | None = None) -> dict[str, float]:
        """VmHWM of the named processes (default all) and of each of their children."""
        out: dict[str, float] = {}
        for name in names or list(self.procs):
            pid = self.procs[name][0].pid
            for label, p in [(name, pid)] + [
                (f"{name} child {i}", c) for i, c in enumerate(descendants(pid), 1)
            ]:
                mib = vmhwm_mib(p)
                if mib is not None:
                    out[label] = mib
        return out

    def cpu(self, names: list[str] | None = None) -> dict[str, float]:
        """CPU seconds so far of each named process with its children (default all),
        of the Redis server, and of this process (the benchmark's own clients)."""
        out = {
            name: cpu_seconds(pid) + sum(cpu_seconds(c) for c in descendants(pid))
            for name in names or list(self.procs)
            for pid in [self.procs[name][0].pid]
        }
        out["redis-server"] = sum(cpu_seconds(p) for p in pids_named("redis-server"))
        out["clients (this script)"] = sum(os.times()[:2])
        return out

    def wait_idle(self, name: str, deadline: Deadline, quiet: float = 0.3) -> None:
        """Until ``name`` (with its children) is idle: a backlog from the last round
        would otherwise run into the next one. Idle is under 2% of a CPU for ``quiet``
        s — or, for a process whose idle loop costs more than that (the embedded
        broker polls every few ms, which a slow host makes cost 5-10%), three windows
        in a row under a quarter of a CPU that differ by under 5% (a clock tick is 10
        ms: 3% of a window): its floor, not work draining."""
        spent = self.cpu([name])[name]
        rates: list[float] = []
        while True:
            deadline.check(f"{name} to go idle")
            time.sleep(quiet)
            now = self.cpu([name])[name]
            rate, spent = (now - spent) / quiet, now
            if rate < 0.02:
                return
            rates.append(rate)
            last = rates[-3:]
            if len(last) == 3 and max(last) < 0.25 and max(last) - min(last) < 0.05:
                return

    def signal_group(self, name: str, sig: int) -> None:
        """Send ``sig`` to the process and its children (e.g. SIGSTOP, SIGCONT)."""
        os.killpg(self.procs[name][0].pid, sig)

    def stop(self, name: str, timeout: float = 15) -> None:
        """Signal the process group, wait, then SIGKILL it and any child left behind."""
        proc, sig = self.procs.pop(name)
        children = descendants(proc.pid)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        for child in children:
            try:
                if os.getpgid(child) == proc.pid:  # still ours (not a reused pid)
                    os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def stats(count: int, seconds: float, lags: list[float] | None = None) -> dict[str, Any]:
    """A rate, and the p50/p95/p99 of ``lags`` (seconds) in ms."""
    out = {"count": count, "seconds": round(seconds, 3), "per_second": round(count / seconds, 1)}
    lags = sorted(lags or [])
    for p in (50, 95, 99) if lags else ():
        out[f"p{p}_ms"] = round(lags[min(len(lags) - 1, p * len(lags) // 100)] * 1000, 1)
    return out


class CpuMeter:
    """CPU milliseconds per item that each process spent between ``start`` and ``stop``:
    where a run's time went, process by process (on two cores every process competes
    for the same CPU, so a rate is bounded by the sum)."""

    def __init__(self, procs: Procs, names: list[str] | None = None) -> None:
        self.procs, self.names = procs, names
        self.before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self.before = self.procs.cpu(self.names)
        return self

    def stop(self) -> dict[str, float]:
        after = self.procs.cpu(self.names)
        self.spent = {k: after[k] - self.before.get(k, 0.0) for k in after}
        return self.spent

    def per_item(self, count: int) -> dict[str, float]:
        out = {k: round(1000 * v / count, 3) for k, v in self.spent.items() if v > 0}
        return out | {"total": round(sum(out.values()), 3)}


def send_all(
    url: str,
    bodies: list[dict],
    headers: dict[str, str],
    clients: int,
    dl: Deadline,
    rate: float | None = None,
) -> list[dict]:
    """POST ``bodies`` in order from ``clients`` threads, each taking the next body.

    With ``rate``, body i is due at start + i / rate (an open loop, as independent
    callers would send): its ``sent`` is that due time, so a client that fell behind
    counts the wait against the system instead of hiding it; ``late`` is how far
    behind the actual POST was. Without ``rate``, as fast as the answers come.
    """
    lock, order = threading.Lock(), iter(enumerate(bodies))
    start = time.time() + 0.05

    def client(_: int) -> list[dict]:
        session, out = _http.Client(url), []
        while True:
            with lock:
                i, body = next(order, (-1, None))
            if body is None:
                return out
            dl.check(f"POSTs to {url}")
            due = start + i / rate if rate else time.time()
            if due > time.time():
                time.sleep(due - time.time())
            posted = time.time()
            resp = session.post(url, json=body, headers=headers)
            answered = time.time()
            if resp.status_code != 200:
                raise RuntimeError(f"POST {url}: {resp.status_code} {resp.text[:300]}")
            result = resp.json().get("result") or {}
            out.append(
                {"n": body["data"]["n"], "sent": min(due, posted), "answered": answered}
                | {"late": max(0.0, posted - due), "execution": result.get("executionId")}
            )

    with ThreadPoolExecutor(clients) as pool:
        return [r for rows in pool.map(client, range(clients)) for r in rows]


def accepted(records: list[dict]) -> dict[str, Any]:
    """POSTs answered per second, and their round trips."""
    seconds = max(r["answered"] for r in records) - min(r["sent"] for r in records)
    return stats(len(records), seconds, [r["answered"] - r["sent"] for r in records])
