"""Deadlines and heartbeats end to end on a real ``pipelinejobs serve``: its embedded
worker's reconciler (a pass every second here) fails a callback job that went silent
or ran out of time, and kills a local job's compute past its deadline.

The waits are bounded by the promise under test: failed within the limit plus one
reconciler period (plus a margin for the HTTP round trips and the delivery)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import Workers, _free_port, system_env, wait_for
from .server import Server, start_server
from .test_local_jobs import APP, job_when, launch, register_pipeline, runs

INTERVAL = 1.0
#: What the HTTP calls and the fail's delivery may add to limit + one period.
MARGIN = 2.0

AGAVE = {
    "appId": APP,
    "owner": "tacobot",
    "executionSystem": "hpc-tacc-stampede2",
    "archiveSystem": "data-sd2e-community",
    "inputs": {},
    "parameters": {},
    "_links": {},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("deadlines") / "data",
        _free_port(),
        settings={"PIPELINEJOBS_RECONCILER_INTERVAL": str(INTERVAL)},
    )
    register_pipeline(running)
    yield running
    running.stop()


def failed_within(server: Server, uuid: str, seconds: float) -> dict:
    """The job once FAILED, waiting at most ``seconds``."""

    def check() -> dict | None:
        job = requests.get(
            f"{server.url}/jobs/{uuid}",
            headers={"Authorization": f"Bearer {server.admin_key}"},
            timeout=10,
        ).json()["result"]
        return job if job["state"] == "FAILED" else None

    return wait_for(check, seconds, f"job {uuid} to be FAILED", server.output)  # type: ignore[return-value]


def test_a_silent_callback_job_is_failed_after_its_heartbeat_timeout(server: Server) -> None:
    result = launch(
        server, {"launcher": "callback"}, data={"case": "silent"}, heartbeat_timeout="5s"
    )
    url = result["launch"]["callback_url"]
    answer = requests.post(  # one RUNNING callback, as Agave would post it; then nothing
        url.replace("${JOB_STATUS}", "RUNNING") + "&sync=true",
        json={**AGAVE, "archivePath": result["archive_path"], "status": "RUNNING"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    heard = time.monotonic()
    job = failed_within(server, result["uuid"], 5 + INTERVAL + MARGIN)
    took = time.monotonic() - heard
    assert took >= 4.9, f"failed after {took:.1f}s of silence, before its timeout"
    # The launcher-proxy's run (launched), the backend's RUNNING, then the reconciler.
    assert [h["name"] for h in job["history"]] == ["create", "run", "run", "fail"]
    fail = job["history"][-1]
    assert fail["data"]["reason"] == "no heartbeat for 5 s (heartbeat_timeout)"
    assert job["heartbeat_timeout"] == 5 and job["silent_at"] is None
    print(f"heartbeat_timeout 5 s: FAILED {took:.2f} s after the last callback")


def test_a_callback_job_past_its_deadline_is_failed(server: Server) -> None:
    started = time.monotonic()
    result = launch(server, {"launcher": "callback"}, data={"case": "late"}, deadline=3)
    job = failed_within(server, result["uuid"], 3 + INTERVAL + MARGIN)
    took = time.monotonic() - started
    assert [h["name"] for h in job["history"]] == ["create", "run", "fail"]
    assert job["history"][-1]["data"]["reason"] == "deadline 00:00:03 passed"
    print(f"deadline 3 s: FAILED {took:.2f} s after the launch was sent")


def test_a_local_job_past_its_deadline_has_its_compute_killed(server: Server) -> None:
    pipeline = runs(server, "sleep-600-deadline", "import time; time.sleep(600)")
    result = launch(server, {}, pipeline, deadline="00:00:03")
    pid = result["launch"]["pid"]
    assert Path(f"/proc/{pid}").exists()
    job = failed_within(server, result["uuid"], 3 + INTERVAL + MARGIN)
    assert job["history"][-1]["data"]["reason"] == "deadline 00:00:03 passed"

    def stopped(job: dict) -> bool:  # the supervisor records the kill
        return any((h.get("data") or {}).get("status") == "STOPPED" for h in job["history"])

    job = job_when(server, result["uuid"], stopped, "the compute's stop to be recorded")
    assert "deadline 00:00:03 passed" in job["history"][-1]["data"]["error"]

    def gone() -> bool:
        if not Path(f"/proc/{pid}").exists():
            return True
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"

    wait_for(gone, 10, f"the compute (pid {pid}) to be gone", server.output)


def test_two_prefork_workers_reconciling_at_once_fail_each_job_once(
    tmp_path: Path, redis_url: str, workers: Workers, client_system
) -> None:
    """Two ``pipelinejobs worker`` processes on Redis both send a ``fail`` for each of 30
    jobs past their deadline (they consume only the indexer's queue, so the fails wait
    until both have sent them all: a real overlap, not a lucky one); then a jobs-manager
    worker delivers them all, and each job has one ``fail`` in its history."""
    env = system_env(tmp_path, redis_url, PIPELINEJOBS_RECONCILER_INTERVAL=str(INTERVAL))
    runtime = client_system(env).runtime
    pipeline = runtime.pipelines.create({"name": "limits", "components": [{"repo": "x/y:1"}]})
    uuids = []
    for n in range(30):
        job = runtime.jobs.create(
            pipeline_uuid=pipeline.pipeline["uuid"],
            linkage=[f"sample.{n}"],
            data={"n": n},
            fields={"deadline": 1.0},
        ).job
        runtime.jobs.apply(job["uuid"], "run")
        uuids.append(job["uuid"])
    for _ in range(2):
        workers.start(env, actors="jobs-indexer", concurrency=1)
    line = "deadline 00:00:01 passed; failing it"

    def both_sent_all() -> bool:
        logs = sorted(tmp_path.glob("worker-*.log"))
        return len(logs) == 2 and all(p.read_text().count(line) >= len(uuids) for p in logs)

    wait_for(both_sent_all, 30, "both reconcilers to send every fail", workers.logs)
    assert all(runtime.jobs.get(u)["state"] == "RUNNING" for u in uuids)  # none delivered yet
    workers.start(env, actors="jobs-manager", concurrency=2)

    def all_failed() -> bool:
        return all(runtime.jobs.get(u)["state"] == "FAILED" for u in uuids)

    wait_for(all_failed, 30, "every job to be failed", workers.logs)

    def drained() -> bool:  # every fail sent (and re-sent) has been delivered
        return runtime.bus is not None and runtime.bus.depth("jobs-manager") == 0

    wait_for(drained, 30, "the jobs-manager's queue to drain", workers.logs)
    for uuid in uuids:
        names = [h["name"] for h in runtime.jobs.history(uuid).entries]
        assert names == ["create", "run", "fail"], (uuid, names)
    # One execution per job, however many times it was sent.
    assert runtime.store.count("executions", {"actor": "jobs-manager"}) == len(uuids)
