"""The reconciler asking Slurm about quiet jobs: an end Slurm made is recorded with its
state and reason, once whoever records it; an end the batch script reported is left
to that report; an unreachable Slurm is asked again next pass.

The slurm backend submits to the in-memory Slurm (fake_slurm.py, the real batch
script run locally); the real cluster's case — a killed batch script failed within
one reconciler period over HTTP — is in tests/integration/test_slurm_jobs.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.launchers.slurm import record_path
from pipelinejobs.runtime.dispatch import Runtime
from pipelinejobs.runtime.reconciler import SENDER
from tests.adapters.launchers.callbacks import Capture
from tests.adapters.launchers.fake_slurm import FakeSlurm
from tests.adapters.launchers.slurm_launches import forward, slurm_runtime, wait_for
from tests.support import FakeClock, stub

APP = "align-0.1"


@pytest.fixture
def fake() -> Iterator[FakeSlurm]:
    slurm = FakeSlurm()
    yield slurm
    slurm.close()


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


@pytest.fixture
def rt(tmp_path: Path, capture: Capture, fake: FakeSlurm, monkeypatch) -> Iterator[Runtime]:
    runtime = slurm_runtime(tmp_path, capture, fake, monkeypatch)
    yield runtime
    runtime.close()


def launch(rt: Runtime, script: str, sample: str = "sample.tacc.abcde") -> tuple[str, str]:
    """Launch a job of a Slurm pipeline running ``script``; (uuid, Slurm job id)."""
    component = {"id": APP, "command": ["/bin/sh", "-c", script], "slurm": {}}
    registered = rt.submit("pipelines-manager", {"name": script, "components": [component]},
                           role="admin")  # fmt: skip
    stub(rt).join()
    pipeline = rt.executions.get(registered["id"])["result"]["uuid"]
    message = {"parameters": {"sample_id": sample}, "pipeline_uuid": pipeline,
               "job_definition": {"appId": APP}}  # fmt: skip
    execution = rt.submit("launcher-proxy", message)
    stub(rt).join()
    result = rt.executions.get(execution["id"])["result"]
    return result["uuid"], result["launch"]["slurmJobId"]


def history(rt: Runtime, uuid: str) -> list[dict[str, Any]]:
    return rt.jobs.history(uuid, detailed=True).entries


def test_a_job_slurm_timed_out_is_failed_with_slurms_reason_once(rt, fake, capture):
    uuid, job_id = launch(rt, "sleep 60")
    wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")
    forward(capture, rt)
    fake.end(job_id, "TIMEOUT", "TimeLimit")
    fake.wait(job_id)

    record = record_path(rt.config.log_dir, uuid, 1)
    kept = record.read_text()
    first = rt.reconciler.run()
    # A second reconciler that read the record before the first forgot it, and sends
    # before the first's fail is even applied: the same execution, one fail.
    record.write_text(kept)
    second = rt.reconciler.run()
    stub(rt).join()

    assert first.slurm == {uuid: "FAILED"} and second.slurm == {uuid: "FAILED"}
    job = rt.jobs.get(uuid)
    assert job["state"] == "FAILED"
    fails = [h for h in history(rt, uuid) if h["name"] == "fail"]
    assert len(fails) == 1 and fails[0]["sender"] == SENDER
    data = fails[0]["data"]
    assert data["error"] == (
        f"Slurm batch job {job_id} ended TIMEOUT: Slurm ended it at its time limit "
        f"(reason TimeLimit)"
    )
    assert (data["status"], data["slurmState"], data["executionSystem"]) == (
        "FAILED", "TIMEOUT", "slurm"
    )  # fmt: skip
    assert not record_path(rt.config.log_dir, uuid, 1).exists()  # no longer asked about
    calls = len(fake.calls)
    assert rt.reconciler.run().slurm == {} and fake.calls[calls:] == []


def test_an_end_its_script_reported_is_not_recorded_again(rt, fake, capture):
    uuid, job_id = launch(rt, "exit 3")
    fake.wait(job_id)
    wait_for(lambda: capture.statuses() == ["RUNNING", "FAILED"], "the script's reports")
    forward(capture, rt)
    assert rt.jobs.get(uuid)["state"] == "FAILED"

    # Within the grace the record is kept; past it, the job has moved on: forgotten.
    assert rt.reconciler.run().slurm == {}
    assert record_path(rt.config.log_dir, uuid, 1).exists()
    rt.clock = lambda: 10**10  # type: ignore[method-assign]  # long after
    assert rt.reconciler.run().slurm == {}
    stub(rt).join()
    assert [h["name"] for h in history(rt, uuid)].count("fail") == 1
    assert not record_path(rt.config.log_dir, uuid, 1).exists()


def test_a_job_cancelled_through_pipelinejobs_is_only_forgotten(rt, fake, capture):
    uuid, job_id = launch(rt, "sleep 60")
    token = rt.tokens.update_token(uuid, 0)
    rt.submit("jobs-manager", {"uuid": uuid, "name": "fail", "token": token})
    stub(rt).join()
    assert fake.wait(job_id).state == "CANCELLED"

    assert rt.reconciler.run().slurm == {}  # CANCELLED, but the job is FAILED already
    stub(rt).join()
    assert [h["name"] for h in history(rt, uuid)] == ["create", "run", "resource", "fail",
                                                       "update"]  # fmt: skip
    assert not record_path(rt.config.log_dir, uuid, 1).exists()


def test_an_unreachable_slurm_is_asked_again_next_pass(rt, fake, capture, caplog):
    uuid, job_id = launch(rt, "sleep 60")
    fake.end(job_id, "NODE_FAIL", "NodeDown")
    fake.wait(job_id)
    fake.down = True
    assert rt.reconciler.run().slurm == {}
    assert "Slurm could not be asked about its jobs" in caplog.text
    fake.down = False
    assert rt.reconciler.run().slurm == {uuid: "FAILED"}
    stub(rt).join()
    assert rt.jobs.get(uuid)["state"] == "FAILED"


def test_a_deployment_without_slurm_never_asks_it(tmp_path, capture, fake, monkeypatch):
    runtime = slurm_runtime(tmp_path, capture, fake, monkeypatch, backends="inline, callback")
    try:
        record_path(runtime.config.log_dir, "107x", 1).parent.mkdir(parents=True, exist_ok=True)
        record_path(runtime.config.log_dir, "107x", 1).write_text('{"job_id": "1", "name": "n"}')
        assert runtime.reconciler.run().slurm == {}
        assert fake.calls == []
    finally:
        runtime.close()


def test_every_pass_of_a_worker_asks_slurm_but_workers_together_twice_an_interval(
    tmp_path, capture, fake, monkeypatch
):
    clock = FakeClock(1_790_000_000.0)
    runtime = slurm_runtime(tmp_path, capture, fake, monkeypatch, clock=clock)
    try:
        launch(runtime, "sleep 60")
        interval = runtime.reconciler.interval

        def asked() -> int:
            before = fake.calls.count("squeue")
            runtime.reconciler.tick()
            return fake.calls.count("squeue") - before

        # One worker: its passes are 3/4 of an interval apart or more, each asks.
        assert asked() == 1
        clock.advance(0.75 * interval)
        assert asked() == 1
        # Another worker's pass in the same half-interval: Slurm was just asked.
        assert asked() == 0
        clock.advance(0.5 * interval)
        assert asked() == 1
    finally:
        runtime.close()
