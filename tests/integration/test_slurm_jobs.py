"""Slurm jobs end to end, as a user runs them: ``pipelinejobs serve`` with the slurm
backend on a real one-node cluster (tests/slurm.py), over HTTP.

The server delivers every launch twice (redelivering_serve.py: the broker's
redelivery after a worker died mid-launch), so each test also shows that a launch
delivered again finds its batch job by name and submits nothing. What it shows, as
issue 19 asks: a job walks CREATED → RUNNING → FINISHED → indexed with its stdout in
its log and its Slurm job in its history; ``maxRunTime`` 00:00:05 on a 60 s sleep
fails naming TIMEOUT; a cancel takes the job off the queue within 2 s and records
STOPPED; a batch script SIGKILLed before it could report is failed from Slurm's own
state within a reconciler period; 20 jobs at once on 2 CPUs are queued by Slurm, not
by PipelineJobs, and all finish, each submitted once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from pipelinejobs.adapters.launchers.slurm import job_name
from tests.slurm import SlurmCluster

from .conftest import _free_port, wait_for
from .server import Server, start_server

#: Seconds between reconciler passes here (the default is 30).
INTERVAL = 2.0


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, slurm_cluster: SlurmCluster
) -> Iterator[Server]:
    settings = {
        "PIPELINEJOBS_LAUNCHER_BACKENDS": "inline, callback, slurm",
        "PIPELINEJOBS_LAUNCHER_SLURM_CONF": str(slurm_cluster.conf),
        "PIPELINEJOBS_RECONCILER_INTERVAL": str(INTERVAL),
    }
    running = start_server(
        tmp_path_factory.mktemp("slurm") / "data",
        _free_port(),
        settings=settings,
        module="tests.integration.redelivering_serve",
    )
    yield running
    running.stop()


def auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}


def register(server: Server, name: str, argv: list[str], **component: Any) -> str:
    """A pipeline whose command component runs ``argv`` on Slurm (admin only)."""
    created = requests.post(
        f"{server.url}/actors/v2/pipelines-manager/messages",
        params={"sync": "true"},
        headers=auth(server),
        timeout=30,
        json={
            "name": name,
            "components": [{"id": f"slurm-{name}", "command": argv, "slurm": {}, **component}],
        },
    )
    assert created.status_code == 200, created.text
    return str(created.json()["result"]["result"]["uuid"])


def launch(server: Server, pipeline: str, sample: str = "sample.tacc.abcde", **definition: Any):
    answer = requests.post(
        f"{server.url}/actors/v2/launcher-proxy/messages",
        params={"sync": "true"},
        headers=auth(server),
        timeout=60,
        json={
            "parameters": {"sample_id": sample},
            "pipeline_uuid": pipeline,
            "job_definition": definition,
        },
    )
    assert answer.status_code == 200, answer.text + server.output()
    body = answer.json()["result"]
    assert body["status"] == "COMPLETE", body
    return body


def job(server: Server, uuid: str) -> dict[str, Any]:
    got = requests.get(f"{server.url}/jobs/{uuid}", headers=auth(server), timeout=10)
    return dict(got.json()["result"])


def job_when(server: Server, uuid: str, predicate: Any, what: str, timeout: float = 60) -> dict:
    found = wait_for(
        lambda: (lambda j: j if predicate(j) else None)(job(server, uuid)),
        timeout,
        what,
        server.output,
    )
    return dict(found)  # type: ignore[call-overload]


def entries(server: Server, uuid: str) -> list[dict[str, Any]]:
    """The job's history with who sent each event and the state it was applied to."""
    paged = requests.get(f"{server.url}/jobs/{uuid}/history", headers=auth(server), timeout=10)
    return list(paged.json()["result"]["history"])


def assert_finished_once(found: dict[str, Any]) -> None:
    """Launched, queued, finished and indexed once each. The batch script's RUNNING
    is recorded too, unless its execution ran after its FINISHED one (the jobs-manager
    takes both at once on several threads, and ignores a RUNNING that comes late)."""
    seen = names(found)
    assert seen[:3] == ["create", "run", "resource"]
    assert seen[-3:] == ["finish", "index", "indexed"]
    assert seen[3:-3] in ([], ["run"])


def shown_when(cluster: SlurmCluster, job_id: str, state: str) -> dict[str, str]:
    """``scontrol show job`` once the job is in ``state`` (its batch script reports
    before it exits: Slurm may see the end a moment after PipelineJobs does)."""

    def check() -> dict[str, str] | None:
        shown = cluster.show(job_id)
        return shown if shown.get("JobState") == state else None

    return dict(wait_for(check, 30, f"Slurm job {job_id} to be {state}"))  # type: ignore[call-overload]


def names(found: dict[str, Any]) -> list[str]:
    return [h["name"] for h in found["history"]]


def reported_running(found: dict[str, Any]) -> bool:
    return any((h.get("data") or {}).get("status") == "RUNNING" for h in found["history"])


def launched_twice(server: Server, execution: str) -> dict[str, Any]:
    """The launch execution, once its redelivery has run (the sync answer may be the
    first delivery's)."""

    def again() -> dict[str, Any] | None:
        got = requests.get(
            f"{server.url}/actors/v2/launcher-proxy/executions/{execution}",
            headers=auth(server),
            timeout=10,
        ).json()["result"]
        return got if got.get("attempts") == 2 and got["status"] == "COMPLETE" else None

    return dict(wait_for(again, 30, "the launch's redelivery", server.output))  # type: ignore[call-overload]


def test_a_slurm_job_runs_to_finished_and_indexed_with_its_log_and_slurm_job(
    server: Server, slurm_cluster: SlurmCluster
) -> None:
    script = "echo aligned > aligned.txt; echo 'hello from slurm'; echo 'a warning' >&2"
    pipeline = register(server, "align", ["/bin/sh", "-c", script])
    launched = launch(server, pipeline, maxRunTime="00:10:00", memoryPerNode="0.1")
    result = launched["result"]
    uuid, slurm_id = result["uuid"], result["launch"]["slurmJobId"]

    done = job_when(server, uuid, lambda j: j["last_event"] == "indexed", "the job indexed")

    assert done["state"] == "FINISHED"
    assert_finished_once(done)
    # The state each event led to: the next one's previous_state, then the last.
    states = [h["previous_state"] for h in entries(server, uuid)[1:]] + [done["state"]]
    walk = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert walk == ["CREATED", "RUNNING", "FINISHED", "INDEXING", "FINISHED"]
    reports = [h["data"] for h in done["history"] if "status" in (h.get("data") or {})]
    for data in reports:  # QUEUED (the launch), RUNNING and FINISHED (the batch script)
        assert data["executionSystem"] == "slurm" and data["slurmJobId"] == slurm_id
        assert data["slurmJobName"] == job_name(uuid, 1)
    assert reports[0]["status"] == "QUEUED" and reports[-1]["status"] == "FINISHED"
    assert reports[-1]["exitCode"] == 0
    log = requests.get(f"{server.url}/jobs/{uuid}/log", headers=auth(server), timeout=10)
    assert log.text == "hello from slurm\na warning\n"
    files = requests.get(f"{server.url}/jobs/{uuid}/files", headers=auth(server), timeout=10)
    assert [f["relative_path"] for f in files.json()["result"]["files"]] == ["aligned.txt"]
    shown = shown_when(slurm_cluster, slurm_id, "COMPLETED")
    assert shown["TimeLimit"] == "00:10:00"
    assert shown["MinMemoryNode"] == "103M"  # 0.1 GB, rounded up to whole MB
    # Delivered twice, submitted once: the second delivery found it by name.
    again = launched_twice(server, launched["executionId"])
    assert again["result"]["launch"]["already_started"] is True
    assert slurm_cluster.jobs(job_name(uuid, 1)) == {job_name(uuid, 1): [slurm_id]}


def test_a_max_run_time_of_5s_on_a_60s_sleep_fails_naming_timeout(
    server: Server, slurm_cluster: SlurmCluster
) -> None:
    pipeline = register(server, "sleeps", ["/bin/sh", "-c", "echo started; sleep 60"])
    began = time.monotonic()
    result = launch(server, pipeline, maxRunTime="00:00:05")["result"]
    uuid = result["uuid"]

    failed = job_when(server, uuid, lambda j: j["state"] == "FAILED", "the job to fail", 30)
    took = time.monotonic() - began

    print(f"\n[slurm] maxRunTime 00:00:05 on sleep 60 -> FAILED after {took:.1f} s")
    assert took < 15
    fail = failed["history"][-1]
    assert fail["name"] == "fail" and fail["data"]["status"] == "FAILED"
    assert fail["data"]["error"].startswith("TIMEOUT: maxRunTime 00:00:05 exceeded")
    # Slurm's own limit is the minute it counts in, its backstop; the script ended the
    # job (its exit code, 124, as coreutils' timeout says it) long before that.
    shown = shown_when(slurm_cluster, result["launch"]["slurmJobId"], "FAILED")
    assert shown["TimeLimit"] == "00:01:00" and shown["ExitCode"] == "124:0"


def test_a_cancelled_slurm_job_leaves_the_queue_within_2s_and_records_stopped(
    server: Server, slurm_cluster: SlurmCluster
) -> None:
    pipeline = register(server, "forever", ["/bin/sh", "-c", "echo working; sleep 60"])
    result = launch(server, pipeline)["result"]
    uuid = result["uuid"]
    job_when(server, uuid, reported_running, "the batch script's RUNNING report")
    # Its log follows it while it runs.
    wait_for(
        lambda: (
            requests.get(f"{server.url}/jobs/{uuid}/log", headers=auth(server), timeout=10).text
            == "working\n"
        ),
        10,
        "the running job's log",
    )
    name = job_name(uuid, 1)
    assert len(slurm_cluster.queued(name)) == 1

    asked = time.monotonic()
    cancelled = requests.post(
        f"{server.url}/actors/v2/jobs-manager/messages",
        headers=auth(server),
        timeout=30,
        json={
            "uuid": uuid,
            "name": "fail",
            "token": result["token"],
            "data": {"reason": "cancelled by the test"},
        },
    )
    assert cancelled.status_code == 200, cancelled.text
    while slurm_cluster.queued(name):
        assert time.monotonic() - asked < 10, "the batch job was not cancelled"
        time.sleep(0.02)
    gone = time.monotonic() - asked
    print(f"\n[slurm] job cancelled -> gone from squeue: {gone:.2f} s")
    assert gone < 2.0

    def stopped(found: dict[str, Any]) -> bool:
        return any((h.get("data") or {}).get("status") == "STOPPED" for h in found["history"])

    done = job_when(server, uuid, stopped, "STOPPED to be recorded")
    assert done["state"] == "FAILED"
    assert names(done) == ["create", "run", "resource", "run", "fail", "update"]
    assert "cancelled by the test" in done["history"][-1]["data"]["error"]
    shown_when(slurm_cluster, result["launch"]["slurmJobId"], "CANCELLED")


def test_a_killed_batch_script_is_failed_from_slurms_state_within_a_reconciler_period(
    server: Server, slurm_cluster: SlurmCluster
) -> None:
    pipeline = register(server, "killed", ["/bin/sh", "-c", "sleep 60"])
    result = launch(server, pipeline)["result"]
    uuid, slurm_id = result["uuid"], result["launch"]["slurmJobId"]
    job_when(server, uuid, reported_running, "the batch script's RUNNING report")
    script, others = slurm_cluster.pids(slurm_id)

    try:
        os.kill(script, signal.SIGKILL)  # before it could report anything more
        killed = time.monotonic()
        failed = job_when(server, uuid, lambda j: j["state"] == "FAILED", "the job to fail", 30)
        took = time.monotonic() - killed
    finally:
        for pid in others:  # proctrack/linuxproc loses what a killed script leaves
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    print(
        f"\n[slurm] batch script killed -> job FAILED after {took:.2f} s "
        f"(reconciler.interval {INTERVAL:g} s)"
    )
    # Slurm is asked at every pass, and passes are at most an interval apart; then the
    # jobs-manager's turn (the embedded queue).
    assert took < INTERVAL + 1
    assert failed["state"] == "FAILED"
    fail = entries(server, uuid)[-1]
    assert fail["name"] == "fail" and fail["sender"] == "reconciler"
    assert fail["data"]["slurmState"] == "FAILED" and fail["data"]["slurmJobId"] == slurm_id
    assert (
        "its batch script was killed by signal 9 before it could report" in (fail["data"]["error"])
    )


def test_twenty_jobs_at_once_are_queued_by_slurm_and_all_finish_each_submitted_once(
    server: Server, slurm_cluster: SlurmCluster
) -> None:
    argv = ["/bin/sh", "-c", 'echo "job $1" > out.txt', "sh", "${N}"]
    pipeline = register(server, "twenty", argv, variables={"N": {"pattern": "[0-9]+"}})
    results: dict[int, dict[str, Any]] = {}
    pending: list[int] = []
    stop = threading.Event()

    def watch_queue() -> None:  # how many Slurm holds back at once
        while not stop.is_set():
            out = slurm_cluster.run(
                "squeue", "--noheader", "--states=PENDING", "--format=%i", check=False
            ).stdout
            pending.append(len(out.split()))
            time.sleep(0.1)

    def send(n: int) -> None:
        results[n] = launch(server, pipeline, f"sample.tacc.twenty{n}", parameters={"N": n})

    watcher = threading.Thread(target=watch_queue)
    watcher.start()
    began = time.monotonic()
    try:
        senders = [threading.Thread(target=send, args=(n,)) for n in range(20)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(120)
        assert sorted(results) == list(range(20))
        uuids = [results[n]["result"]["uuid"] for n in range(20)]
        for uuid in uuids:
            done = job_when(server, uuid, lambda j: j["last_event"] == "indexed", "all 20", 120)
            assert done["state"] == "FINISHED"
            assert_finished_once(done)
    finally:
        stop.set()
        watcher.join(10)
    took = time.monotonic() - began

    print(
        f"\n[slurm] 20 jobs on {os.cpu_count()} CPUs: all indexed in {took:.1f} s; "
        f"Slurm held up to {max(pending)} pending at once"
    )
    assert max(pending) >= 5  # Slurm queued them: PipelineJobs submitted all at once
    held = slurm_cluster.jobs()
    for n, uuid in enumerate(uuids):
        assert held[job_name(uuid, 1)] == [results[n]["result"]["launch"]["slurmJobId"]]
        again = launched_twice(server, results[n]["executionId"])
        assert again["result"]["launch"]["already_started"] is True  # found, not resubmitted
    for uuid in uuids:
        files = requests.get(f"{server.url}/jobs/{uuid}/files", headers=auth(server), timeout=10)
        assert [f["relative_path"] for f in files.json()["result"]["files"]] == ["out.txt"]
