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

from .conftest import _free_port, wait_for
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
