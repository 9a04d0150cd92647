"""`/metrics` of a real system after a known workload: a gunicorn gateway of two
processes and two `pipelinejobs worker` processes (each with two pool processes) on
Redis, all writing their metrics to one directory — the counts on the page are
exactly the events and messages sent, added up over every process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from prometheus_client.mmap_dict import MmapedDict

from tests.observability.samples import sample, samples

from .conftest import Workers, _free_port, system_env, wait_for
from .server import ROOT

JOBS = 10
UPDATES = 5  # per job, then one finish and one refused event
MANAGER, LAUNCHER = "jobs-manager", "launcher-proxy"
APP = "metrics-test-app"


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_metrics_count_exactly_the_workload_across_processes(
    tmp_path: Path, redis_url: str, workers: Workers
) -> None:
    port = _free_port()
    env = system_env(tmp_path, redis_url, PIPELINEJOBS_GATEWAY_PORT=str(port))
    env["PIPELINEJOBS_BUS_HEARTBEAT_INTERVAL"] = "0.5"
    env["PIPELINEJOBS_METRICS_CACHE_TTL"] = "0"
    key = cli(env, "keys", "create", "--role", "admin")
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(2):
        workers.start(env, concurrency=2)
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115
    gateway = subprocess.Popen(
        [sys.executable, "-m", "pipelinejobs.cli", "gateway", "--workers", "2"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    session = requests.Session()

    def logs() -> str:
        return (tmp_path / "gateway.log").read_text(errors="replace") + workers.logs()

    def scrape() -> str:
        response = session.get(f"{url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    def post(actor: str, body: dict[str, Any], **kwargs: Any) -> requests.Response:
        return session.post(f"{url}/actors/v2/{actor}/messages", json=body, timeout=60, **kwargs)

    try:

        def up() -> bool:
            try:
                return session.get(f"{url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:  # not listening yet, or still booting
                return gateway.poll() is not None

        wait_for(up, 30, "the gateway to serve", logs)
        assert gateway.poll() is None, logs()
        # Both workers are seen (their heartbeats) before any work is sent.
        wait_for(
            lambda: sample(scrape(), "pipelinejobs_workers", actor=MANAGER) == 2,
            60,
            "two workers' heartbeats",
            logs,
        )

        components = [{"id": APP, "inputs": {}, "parameters": {}}]
        sync = {"_abaco_synchronous": "true"}
        made = post("pipelines-manager", {"name": "metrics", "components": components},
                    headers=auth, params=sync)  # fmt: skip
        assert made.status_code == 200, made.text
        jobs = []
        for i in range(JOBS):
            launch = {
                "parameters": {"sample_id": "sample.metrics.test"},
                "job_definition": {"appId": APP, "launcher": "callback"},
                "data": {"n": i},
            }
            answer = post(LAUNCHER, launch, headers=auth, params=sync)
            assert answer.status_code == 200, answer.text
            result = answer.json()["result"]["result"]
            jobs.append((result["uuid"], result["token"]))

        for uuid, token in jobs:
            for n in range(UPDATES):
                event = {"uuid": uuid, "name": "update", "token": token, "data": {"n": n}}
                assert post(MANAGER, event, headers=auth).status_code == 200
            finish = {"uuid": uuid, "name": "finish", "token": token}
            assert post(MANAGER, finish, headers=auth).status_code == 200
            refused = {"uuid": uuid, "name": "validated", "token": token}  # never allowed here
            assert post(MANAGER, refused, headers=auth).status_code == 200
        for _ in range(3):
            assert post(MANAGER, {"uuid": jobs[0][0], "name": "update"}).status_code == 401

        per_job = UPDATES + 2
        total = "pipelinejobs_executions_total"

        def settled() -> bool:
            """Every event sent is counted, and nothing is left to run (a finished job
            may be indexed automatically: its index/indexed run too)."""
            text = scrape()
            pending = sum(
                value
                for (name, _), value in samples(text).items()
                if name in ("pipelinejobs_executions_pending", "pipelinejobs_queue_depth")
            )
            applied = "pipelinejobs_events_applied_total"
            refused = "pipelinejobs_events_refused_total"
            return (
                sample(text, applied, event="update") >= JOBS * UPDATES
                and sample(text, applied, event="finish") >= JOBS
                and sample(text, refused, event="validated", reason="TransitionRefused") >= JOBS
                and pending == 0
            )

        wait_for(settled, 60, "every event delivered", logs)
        text = scrape()
        (tmp_path / "page.txt").write_text(text)  # for a failure's diagnosis
    finally:
        session.close()
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(20)

    # Events: exactly those sent, each once, whichever worker process applied it.
    applied = "pipelinejobs_events_applied_total"
    assert sample(text, applied, event="update") == JOBS * UPDATES
    assert sample(text, applied, event="finish") == JOBS
    assert sample(text, applied, event="create") == JOBS  # by the launcher-proxy
    assert sample(text, applied, event="run") == JOBS
    refused = "pipelinejobs_events_refused_total"
    assert sample(text, refused, event="validated", reason="TransitionRefused") == JOBS
    # Deliveries and their durations; the jobs-manager also ran the indexer's
    # ``indexed`` of each job indexed automatically (if launches index by default).
    indexed = sample(text, applied, event="indexed")
    assert indexed in (0, JOBS)
    assert sample(text, applied, event="index") == indexed
    complete = JOBS * (UPDATES + 1) + indexed
    assert sample(text, total, actor=MANAGER, outcome="complete") == complete
    assert sample(text, total, actor=MANAGER, outcome="error") == JOBS
    assert sample(text, total, actor=LAUNCHER, outcome="complete") == JOBS
    assert sample(text, total, actor="jobs-indexer", outcome="complete") == indexed
    duration = "pipelinejobs_execution_duration_seconds_count"
    assert sample(text, duration, actor=MANAGER, outcome="complete") == complete
    # Messages, counted by the two gunicorn processes.
    messages = "pipelinejobs_messages_total"
    accepted = {"code": "200", "outcome": "accepted"}
    assert sample(text, messages, actor=MANAGER, **accepted) == JOBS * per_job
    assert sample(text, messages, actor=MANAGER, code="401", outcome="refused") == 3
    assert sample(text, messages, actor=LAUNCHER, **accepted) == JOBS
    route = "/actors/v2/<actor>/messages"
    posts = JOBS * per_job + JOBS + 1  # events, launches, the pipeline
    assert sample(text, "pipelinejobs_http_requests_total", route=route, method="POST",
                  code="200") == posts  # fmt: skip
    # Read at scrape time.
    assert sample(text, "pipelinejobs_jobs", state="FINISHED") == JOBS
    assert sample(text, "pipelinejobs_queue_depth", actor=MANAGER) == 0
    assert sample(text, "pipelinejobs_workers", actor=MANAGER) == 2
    # No job's id or token in the page.
    assert not any(uuid in text or token in text for uuid, token in jobs)

    # The work really was spread: pool processes of both workers ran events, each
    # writing its own file to the one directory the gateway read.
    assert delivering_workers(tmp_path / "data" / "metrics", workers) == {
        proc.pid for proc in workers.procs
    }


def delivering_workers(directory: Path, workers: Workers) -> set[int]:
    """The worker processes (main pids) whose pool processes counted executions."""
    mains = {proc.pid for proc in workers.procs}
    found = set()
    for path in directory.glob("counter_*.db"):
        keys = [key for key, *_ in MmapedDict.read_all_values_from_file(str(path))]
        if not any("pipelinejobs_executions" in key for key in keys):
            continue
        pid = int(path.stem.split("_")[1])
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue  # a pool process replaced meanwhile
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent in mains:
            found.add(parent)
    return found


def test_a_worker_without_a_gateway_serves_its_own_metrics(
    tmp_path: Path, redis_url: str, workers: Workers, client_system: Any
) -> None:
    """``pipelinejobs worker --metrics-port``: what a worker on a machine (or in a
    container) of its own is scraped at — its main and pool processes added up."""
    env = system_env(tmp_path, redis_url)
    port = _free_port()
    workers.start(env, concurrency=2, extra=("--metrics-port", str(port)))
    system = client_system(env)
    components = [{"id": APP, "inputs": {}, "parameters": {}}]
    made = system.send("pipelines-manager", {"name": "metrics", "components": components})
    assert system.wait(made["id"])["status"] == "COMPLETE", workers.logs()
    launch = {
        "parameters": {"sample_id": "sample.metrics.test"},
        "job_definition": {"appId": APP, "launcher": "callback"},
    }
    launched = system.wait(system.send(LAUNCHER, launch)["id"])
    assert launched["status"] == "COMPLETE", launched
    job = launched["result"]
    sent = [
        system.send(MANAGER, {"uuid": job["uuid"], "name": "update", "token": job["token"]})
        for _ in range(UPDATES)
    ]
    for execution in sent:
        assert system.wait(execution["id"])["status"] == "COMPLETE"

    def scraped() -> str | None:
        try:
            response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        except requests.RequestException:
            return None
        return response.text if response.status_code == 200 else None

    text = str(wait_for(scraped, 30, "the worker's metrics", workers.logs))
    assert sample(text, "pipelinejobs_events_applied_total", event="update") == UPDATES
    total = "pipelinejobs_executions_total"
    assert sample(text, total, actor=MANAGER, outcome="complete") == UPDATES
    assert sample(text, total, actor=LAUNCHER, outcome="complete") == 1
    assert "pipelinejobs_jobs" not in text  # the system's gauges are the gateway's
