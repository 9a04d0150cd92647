"""Launches for the slurm launcher's tests, on either Slurm: the fake or the real cluster.

Both answer the same questions (the ``slurm`` fixture in conftest.py is parametrized
over them), so one test runs on each: the launcher under test (:meth:`launcher`),
what Slurm shows of a job by default (:meth:`queued`: pending, running, completing),
how it ended (:meth:`wait_ended`), and killing a job's batch script alone
(:meth:`kill_script`). Only the fake can end a job as TIMEOUT, NODE_FAIL, PREEMPTED or
OUT_OF_MEMORY on demand (test_slurm_fake.py).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from pipelinejobs.adapters.launchers.base import Launch
from pipelinejobs.adapters.launchers.slurm import SlurmLauncher
from pipelinejobs.adapters.launchers.slurm_client import Slurm, SlurmCLI, SlurmJob
from pipelinejobs.config import LauncherSettings
from tests.adapters.launchers.callbacks import Capture
from tests.adapters.launchers.fake_slurm import FakeSlurm
from tests.slurm import SlurmCluster

TOKEN = "0dc73dc3ff39b49a"
APP = "align-0.1"


def pipeline(command: list[str], slurm: dict[str, Any] | None = None, **extra: Any) -> dict:
    """A pipeline whose command component runs ``command`` on Slurm."""
    component = {"id": APP, "command": command, "slurm": slurm or {}, **extra}
    return {"components": [component]}


def shell(script: str, *args: str, **extra: Any) -> dict:
    """A pipeline running ``sh -c script sh args...`` (an admin's argv)."""
    return pipeline(["/bin/sh", "-c", script, "sh", *args], **extra)


class Reports:
    """What a launch reports through the bus (its ``report``): the QUEUED status."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, status: str, body: Any) -> str:
        self.sent.append((status, dict(body)))
        return f"exec-{len(self.sent)}"


def launch_of(
    tmp_path: Path,
    capture: Capture,
    pipe: dict[str, Any],
    *,
    attempt: int = 1,
    launch_id: str = "exec-1",
    reports: Reports | None = None,
    uuid: str | None = None,
    **definition: Any,
) -> Launch:
    """A launch of a new job (a fresh uuid, so a real Slurm holds no job of its name
    from an earlier test); launching the same Launch again is its redelivery."""
    uuid = uuid or new_uuid()
    base = f"{capture.url}/actors/v2/jobs-manager/messages?uuid={uuid}&token={TOKEN}&x-nonce=PJ_t"
    return Launch(
        job={"uuid": uuid, "archive_system": "test-system", "attempt": attempt},
        pipeline=pipe,
        job_definition={"appId": APP, **definition},
        archive_path="/products/job",
        archive_dir=tmp_path / "archive" / uuid / str(attempt),
        token=TOKEN,
        report=reports if reports is not None else Reports(),
        callback_base=base,
        log_path=tmp_path / "logs" / f"{uuid}.log",
        launch_id=launch_id,
    )


def new_uuid() -> str:
    """A job uuid (type 107) no other test uses."""
    return "107" + str(uuid4())[3:]


def wait_for(check: Any, what: str, timeout: float = 30.0, poll: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


class FakeUnderTest:
    """The in-memory Slurm (fake_slurm.py)."""

    name = "fake"

    def __init__(self) -> None:
        self.fake = FakeSlurm()
        self.client: Slurm = self.fake

    def launcher(self, tmp_path: Path, **settings: Any) -> SlurmLauncher:
        return SlurmLauncher(LauncherSettings(**settings), tmp_path / "logs", self.fake)

    def queued(self, name: str) -> list[str]:
        return [f"{j.id} {j.state}" for j in self.fake.find([name]) if j.state == "RUNNING"]

    def wait_ended(self, job_id: str) -> SlurmJob:
        return self.fake.wait(job_id)

    def kill_script(self, job_id: str) -> None:
        self.fake.kill_script(job_id)

    def submissions(self, name: str) -> int:
        return sum(1 for s in self.fake.submitted if s.name == name)

    def close(self) -> None:
        self.fake.close()


class RealUnderTest:
    """The session's one-node cluster (tests/slurm.py), through Slurm's commands."""

    name = "real"

    def __init__(self, cluster: SlurmCluster) -> None:
        self.cluster = cluster
        self.client = SlurmCLI(conf=str(cluster.conf))
        self.leftovers: list[int] = []

    def launcher(self, tmp_path: Path, **settings: Any) -> SlurmLauncher:
        settings.setdefault("slurm_conf", str(self.cluster.conf))
        return SlurmLauncher(LauncherSettings(**settings), tmp_path / "logs")

    def queued(self, name: str) -> list[str]:
        return self.cluster.queued(name)

    def wait_ended(self, job_id: str) -> SlurmJob:
        def ended() -> SlurmJob | None:
            shown = self.client.show(job_id)
            return shown if shown is not None and shown.ended else None

        found: SlurmJob = wait_for(ended, f"Slurm job {job_id} to end", poll=0.1)
        return found

    def kill_script(self, job_id: str) -> None:
        script, others = self.cluster.pids(job_id)
        assert script, f"no batch script of job {job_id}"
        # linuxproc loses what a killed script leaves (reparented to init): ours to end.
        self.leftovers.extend(others)
        os.kill(script, signal.SIGKILL)

    def submissions(self, name: str) -> int:
        return len(self.cluster.jobs(name).get(name, []))

    def close(self) -> None:
        self.cluster.run("scancel", "--user=root", check=False)  # what a test left running
        for pid in self.leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def slurm_runtime(
    tmp_path: Path,
    capture: Capture,
    fake: FakeSlurm,
    monkeypatch: Any,
    kind: str = "sqlite",
    clock: Any = None,
    **launcher: Any,
) -> Any:
    """A stub-bus runtime whose slurm backend submits to ``fake``, its jobs' status
    callbacks going to ``capture`` (:func:`forward` hands them on)."""
    from pipelinejobs.adapters import launchers
    from tests.support import make_runtime

    monkeypatch.setattr(
        launchers,
        "make_slurm",
        lambda config: SlurmLauncher(config.launcher, config.log_dir, fake),
    )
    settings = {
        "backend": "auto",
        "backends": "inline, callback, slurm",
        "public_url": capture.url,
        **launcher,
    }
    if clock is not None:
        return make_runtime(tmp_path, kind, clock=clock, launcher=settings)
    return make_runtime(tmp_path, kind, launcher=settings)


def forward(capture: Capture, rt: Any, start: int = 0) -> int:
    """Post the callbacks ``capture`` received (from ``start``) to ``rt``'s
    jobs-manager, as the gateway would; where the next call should start."""
    calls = capture.calls[start:]
    for query, body in calls:  # the nonce is the gateway's to check
        rt.submit("jobs-manager", body, {k: v for k, v in query.items() if k != "x-nonce"})
    rt.bus.join()
    return start + len(calls)
