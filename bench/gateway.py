"""Benchmark: messages/s the gateway accepts, next to a bare Flask echo endpoint.

Starts ``pipelinejobs serve`` (the embedded system: gateway, actors on threads,
SQLite) and, as the **baseline**, a Flask app with one ``POST /echo`` route that
parses the JSON body and returns it, served the same way (waitress, same threads),
each in its own process. C concurrent clients then POST N messages to each: to the
gateway, ``update`` events for one job on the jobs-manager (authenticated,
validated, stored as an execution, published — "accepted" means the 200 with an
executionId; the actors process them meanwhile in the same process).

    python bench/gateway.py                 # full run
    python bench/gateway.py --smoke         # seconds; run by the test suite
    python bench/gateway.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def echo_server(port: int, threads: int) -> None:
    """The baseline: the least a Flask JSON endpoint can do, served by waitress."""
    import waitress
    from flask import Flask, jsonify, request

    app = Flask("echo")

    @app.post("/echo")
    def echo() -> Any:
        return jsonify({"status": "success", "result": request.get_json(force=True)})

    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, _quiet=True)


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def hammer(
    url: str, bodies: list[dict[str, Any]], clients: int, headers: dict[str, str]
) -> dict[str, Any]:
    """POST every body from ``clients`` threads; accepted/s and latency percentiles."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    chunks = [bodies[i::clients] for i in range(clients)]

    def client(chunk: list[dict[str, Any]]) -> None:
        session = requests.Session()
        mine, bad = [], []
        for body in chunk:
            start = time.perf_counter()
            resp = session.post(url, json=body, headers=headers, timeout=30)
            mine.append(time.perf_counter() - start)
            if resp.status_code != 200:
                bad.append(f"{resp.status_code} {resp.text[:200]}")
        with lock:
            latencies.extend(mine)
            failures.extend(bad)

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "requests": len(bodies),
        "seconds": round(elapsed, 3),
        "per_second": round(len(bodies) / elapsed, 1),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="server threads (both)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        echo_server(args.echo_server, args.threads)
        return 0
    if args.smoke:
        args.messages, args.clients = 40, 4

    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    env.update({"PYTHONPATH": str(ROOT), "PIPELINEJOBS_GATEWAY_THREADS": str(args.threads)})
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            echo_port, pj_port = free_port(), free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--echo-server",
                        str(echo_port),
                        "--threads",
                        str(args.threads),
                    ],
                    env=env,
                )
            )
            log = Path(tmp) / "serve.log"
            with open(log, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "common.cli",
                            "serve",
                            "--data-dir",
                            f"{tmp}/data",
                            "--port",
                            str(pj_port),
                        ],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=tmp,
                    )
                )
            echo_url, pj_url = f"http://127.0.0.1:{echo_port}", f"http://127.0.0.1:{pj_port}"
            wait_up(f"{echo_url}/", procs[0])
            wait_up(f"{pj_url}/healthz", procs[1])
            key = re.search(r"^admin key: (\S+)$", log.read_text(), re.MULTILINE)
            if key is None:
                raise RuntimeError("serve printed no admin key")
            auth = {"Authorization": f"Bearer {key.group(1)}"}
            job, token = make_job(pj_url, auth)
            bodies = [
                {"uuid": job, "name": "update", "token": token, "data": {"n": n}}
                for n in range(args.messages)
            ]
            baseline = hammer(f"{echo_url}/echo", bodies, args.clients, {})
            gateway = hammer(
                f"{pj_url}/actors/v2/jobs-manager/messages", bodies, args.clients, auth
            )
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    ratio = gateway["per_second"] / baseline["per_second"]
    results = {
        "messages": args.messages,
        "clients": args.clients,
        "threads": args.threads,
        "baseline_flask_echo": baseline,
        "gateway": gateway,
        "ratio_to_baseline": round(ratio, 3),
    }
    print(f"{'server':<22}{'requests':>9}{'per second':>12}{'p50 ms':>9}{'p99 ms':>9}")
    for name in ("baseline_flask_echo", "gateway"):
        row = results[name]
        print(
            f"{name:<22}{row['requests']:>9}{row['per_second']:>12.1f}{row['p50_ms']:>9}"
            f"{row['p99_ms']:>9}"
        )
    print(f"gateway / baseline: {ratio:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def make_job(url: str, auth: dict[str, str]) -> tuple[str, str]:
    """A pipeline and a running job to send events to, through the gateway itself."""

    def post(actor: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = requests.post(
            f"{url}/actors/v2/{actor}/messages",
            json=body,
            headers=auth,
            params={"_abaco_synchronous": "true"},
            timeout=60,
        )
        resp.raise_for_status()
        return dict(resp.json()["result"]["result"])

    post(
        "pipelines-manager",
        {"name": "bench", "components": [{"id": "bench-app", "inputs": {}, "parameters": {}}]},
    )
    launched = post(
        "launcher-proxy",
        {
            "parameters": {"sample_id": "sample.bench.1"},
            "job_definition": {"appId": "bench-app", "report": ["RUNNING"]},
        },
    )
    return launched["uuid"], launched["token"]


if __name__ == "__main__":
    sys.exit(main())
