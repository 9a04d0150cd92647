"""Slurm jobs through the actors: registered, launched, redelivered, cancelled.

The launcher-proxy and jobs-manager on the stub bus, their slurm backend submitting
to the in-memory Slurm (fake_slurm.py, which runs the real batch script); the
script's status callbacks land in a capture server and are handed on to the
jobs-manager by the test (``forward``), as the gateway would. The same flows on a
real cluster, over HTTP, are tests/integration/test_slurm_jobs.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.access.nonces import Nonces
from pipelinejobs.adapters.launchers.slurm import job_name
from pipelinejobs.errors import PermissionDenied, SchemaValidationError, ValidationError
from pipelinejobs.runtime.dispatch import Runtime
from tests.adapters.launchers.callbacks import Capture
from tests.adapters.launchers.fake_slurm import FakeSlurm
from tests.adapters.launchers.slurm_launches import forward, slurm_runtime, wait_for
from tests.support import stub

APP = "align-0.1"


def pipeline(script: str, **slurm: Any) -> dict[str, Any]:
    command = ["/bin/sh", "-c", script]
    return {
        "name": f"On Slurm: {script}",
        "components": [{"id": APP, "command": command, "slurm": slurm}],
    }


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


def run(rt: Runtime, alias: str, message: Any, role: str = "user") -> dict[str, Any]:
    execution = rt.submit(alias, message, role=role)
    stub(rt).join()
    return rt.executions.get(execution["id"])


def launch(rt: Runtime, script: str, **definition: Any) -> dict[str, Any]:
    registered = run(rt, "pipelines-manager", pipeline(script), role="admin")
    assert registered["status"] == "COMPLETE", registered["error"]
    message = {
        "parameters": {"sample_id": "sample.tacc.abcde"},
        "pipeline_uuid": registered["result"]["uuid"],
        "job_definition": {"appId": APP, **definition},
    }
    done = run(rt, "launcher-proxy", message)
    assert done["status"] == "COMPLETE", done["error"]
    return done


def names(rt: Runtime, uuid: str) -> list[str]:
    return [h["name"] for h in rt.jobs.history(uuid, detailed=True).entries]


def test_a_slurm_job_is_queued_run_finished_and_indexed(rt, fake, capture):
    done = launch(rt, "echo aligned > out.txt; echo done", maxRunTime="00:10:00")
    result = done["result"]
    uuid, job_id = result["uuid"], result["launch"]["slurmJobId"]
    assert result["launch"]["backend"] == "slurm"
    assert result["launch"]["sbatch"][-1] == "--time=10"
    [queued] = [h for h in rt.jobs.history(uuid, detailed=True).entries if h["name"] == "resource"]
    assert queued["data"]["status"] == "QUEUED" and queued["data"]["slurmJobId"] == job_id
    assert queued["data"]["executionSystem"] == "slurm"
    assert queued["data"]["slurmJobName"] == job_name(uuid, 1)
    [nonce] = Nonces(rt.store).list("jobs-manager")
    assert nonce["max_uses"] == rt.config.launcher.callback_nonce_uses  # limited, as local's

    fake.wait(job_id)
    wait_for(lambda: capture.statuses() == ["RUNNING", "FINISHED"], "the script's reports")
    forward(capture, rt)

    job = rt.jobs.get(uuid)
    assert job["state"] == "FINISHED" and job["last_event"] == "indexed"
    assert names(rt, uuid) == ["create", "run", "resource", "run", "finish", "index", "indexed"]
    files = rt.store.find("files", {"generated_by": uuid}).items
    assert [f["name"] for f in files] == ["out.txt"]
    assert (rt.config.log_dir / f"{uuid}.log").read_text() == "done\n"


def test_a_redelivered_slurm_launch_submits_once_and_queues_once(rt, fake, capture):
    first = launch(rt, "sleep 1")
    # The worker died before recording the end: the broker delivers it again.
    died = {"status": "RUNNING"}
    rt.store.update("executions", first["id"], version=first["version"], set=died)
    rt.deliver("launcher-proxy", first["id"])
    stub(rt).join()

    again = rt.executions.get(first["id"])
    assert again["status"] == "COMPLETE" and again["attempts"] == 2
    launched = again["result"]["launch"]
    assert launched["already_started"] is True
    assert launched["slurmJobId"] == first["result"]["launch"]["slurmJobId"]
    assert len(fake.submitted) == 1
    uuid = first["result"]["uuid"]
    assert names(rt, uuid) == ["create", "run", "resource"]  # one run, one QUEUED
    assert len(Nonces(rt.store).list("jobs-manager")) == 1  # the unused one is gone
    fake.wait(launched["slurmJobId"])


def test_cancelling_a_slurm_job_scancels_it_and_records_stopped(rt, fake, capture):
    done = launch(rt, "sleep 60")
    uuid, job_id = done["result"]["uuid"], done["result"]["launch"]["slurmJobId"]
    wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")
    forward(capture, rt)

    cancel = {
        "uuid": uuid,
        "name": "fail",
        "token": done["result"]["token"],
        "data": {"reason": "wrong reference genome"},
    }
    cancelled = run(rt, "jobs-manager", cancel)

    assert cancelled["status"] == "COMPLETE", cancelled["error"]
    assert cancelled["result"]["stopping"] == [f"slurm:{job_id}"]
    assert fake.wait(job_id).state == "CANCELLED"
    assert names(rt, uuid) == ["create", "run", "resource", "run", "fail", "update"]
    stopped = rt.jobs.history(uuid, detailed=True).entries[-1]["data"]
    assert stopped == {
        "status": "STOPPED",
        "executionSystem": "slurm",
        "slurmJobId": job_id,
        "error": "the compute was stopped on request: wrong reference genome (scancel)",
    }
    assert rt.jobs.get(uuid)["state"] == "FAILED"
    assert capture.statuses() == ["RUNNING"]  # Slurm ended it: the script said nothing


def test_a_cancel_while_slurm_is_down_still_fails_the_job_and_says_so(rt, fake, capture):
    done = launch(rt, "sleep 60")
    uuid = done["result"]["uuid"]
    fake.down = True
    cancel = {"uuid": uuid, "name": "fail", "token": done["result"]["token"]}
    cancelled = run(rt, "jobs-manager", cancel)
    assert cancelled["status"] == "COMPLETE" and cancelled["result"]["stopping"] == []
    assert rt.jobs.get(uuid)["state"] == "FAILED"
    assert any("could not be stopped" in line for line in cancelled["logs"])
    fake.down = False


@pytest.mark.parametrize(
    ("slurm", "path"),
    [
        ({"account": "a b"}, "components/0/slurm/account"),
        ({"partition": "--wckey=x"}, "components/0/slurm/partition"),
        ({"parallelism": "MPI"}, "components/0/slurm/parallelism"),
        ({"nodes": 2}, "components/0/slurm"),  # not a field: launches ask for nodes
    ],
)
def test_a_slurm_component_with_a_bad_field_is_refused_naming_it(rt, slurm, path):
    definition = pipeline("true")
    definition["components"][0]["slurm"] = slurm
    with pytest.raises(SchemaValidationError) as info:
        rt.submit("pipelines-manager", definition, role="admin")
    assert info.value.path == path


def test_only_an_admin_registers_a_slurm_component(rt):
    with pytest.raises(PermissionDenied):
        rt.submit("pipelines-manager", pipeline("true"), role="user")


def test_a_launch_naming_an_account_is_refused_before_anything_is_stored(rt):
    registered = run(rt, "pipelines-manager", pipeline("true", account="lab"), role="admin")
    message = {
        "parameters": {"sample_id": "sample.tacc.abcde"},
        "pipeline_uuid": registered["result"]["uuid"],
        "job_definition": {"appId": APP, "account": "other-lab", "nodeCount": 1},
    }
    jobs = rt.store.count("jobs")
    with pytest.raises(ValidationError) as info:
        rt.submit("launcher-proxy", message)
    assert info.value.detail["path"] == "job_definition/account"
    assert rt.store.count("jobs") == jobs
