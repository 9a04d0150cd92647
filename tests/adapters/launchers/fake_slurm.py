"""An in-memory Slurm behind the launcher's interface (slurm_client.Slurm), for fast tests.

It does what a one-node cluster with room for everything does, in this process: a
submitted job starts at once — PipelineJobs' real batch script, run by ``/bin/sh``
with the job's arguments, exactly its environment plus ``SLURM_JOB_ID``, in its
working directory, its output appended to its file, in a process group of its own
(as slurmstepd runs it) — and ends COMPLETED or FAILED with its exit code or signal.
What Slurm does to jobs is in :meth:`FakeSlurm.end` (TIMEOUT, NODE_FAIL, PREEMPTED,
OUT_OF_MEMORY: TERM to the job's processes, KILL after ``kill_wait``),
:meth:`cancel` (scancel) and :meth:`kill_script` (the batch script alone killed);
:meth:`forget` is ``MinJobAge`` passing. Every submission is kept (``submitted``)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipelinejobs.adapters.launchers.slurm_client import Slurm, SlurmJob, Submission
from pipelinejobs.errors import LauncherUnavailable


@dataclass
class FakeJob:
    id: str
    submission: Submission
    state: str = "PENDING"
    reason: str = "None"
    exit_code: int | None = None
    signal: int | None = None
    end_time: float | None = None
    proc: subprocess.Popen[bytes] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def view(self) -> SlurmJob:
        return SlurmJob(self.id, self.submission.name, self.state, self.reason,
                        self.exit_code, self.signal, self.end_time)  # fmt: skip


class FakeSlurm(Slurm):
    """Runs every job at once, locally; Slurm's verdicts are the test's to give."""

    kill_wait = 2.0

    def __init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.submitted: list[Submission] = []
        self.lock = threading.Lock()
        self.next_id = 100
        #: Set to make every call fail as an unreachable slurmctld would.
        self.down = False
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise LauncherUnavailable(
                "Slurm's squeue failed: Unable to contact slurm controller (connect failure)"
            )

    # -- the interface ----------------------------------------------------------------------

    def submit(self, submission: Submission) -> str:
        self._call("sbatch")
        with self.lock:
            self.next_id += 1
            job = FakeJob(str(self.next_id), submission)
            self.jobs[job.id] = job
            self.submitted.append(submission)
        env = {**submission.environment, "SLURM_JOB_ID": job.id, "SLURM_JOB_NAME": submission.name}
        submission.output.parent.mkdir(parents=True, exist_ok=True)
        with open(submission.output, "ab") as out:
            job.proc = subprocess.Popen(
                ["/bin/sh", str(submission.script), *submission.args],
                cwd=submission.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        job.state = "RUNNING"
        threading.Thread(target=self._wait, args=(job,), daemon=True).start()
        return job.id

    def find(self, names: Sequence[str]) -> list[SlurmJob]:
        self._call("squeue")
        with self.lock:
            return [j.view() for j in self.jobs.values() if j.submission.name in names]

    def show(self, job_id: str) -> SlurmJob | None:
        self._call("scontrol")
        job = self.jobs.get(job_id)
        return job.view() if job else None

    def cancel(self, job_id: str) -> None:
        self._call("scancel")
        job = self.jobs.get(job_id)
        if job is not None and job.state in ("PENDING", "RUNNING"):
            self._end(job, "CANCELLED", "None")

    # -- what Slurm does to jobs ------------------------------------------------------------

    def end(self, job_id: str, state: str, reason: str = "None") -> None:
        """Slurm ends a running job: ``state`` (TIMEOUT, NODE_FAIL, ...) with ``reason``."""
        self._end(self.jobs[job_id], state, reason)

    def kill_script(self, job_id: str) -> None:
        """SIGKILL the batch script alone (its command is left, as on a real node)."""
        proc = self.jobs[job_id].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)

    def forget(self, job_id: str) -> None:
        """``MinJobAge`` passed: Slurm no longer knows the job."""
        self.jobs.pop(job_id, None)

    def wait(self, job_id: str, timeout: float = 30.0) -> SlurmJob:
        """Block until the job ended; what Slurm says of it."""
        job = self.jobs[job_id]
        assert job.done.wait(timeout), f"job {job_id} did not end"
        return job.view()

    def close(self) -> None:
        for job in list(self.jobs.values()):
            if job.proc is not None and job.proc.poll() is None:
                _signal_group(job.proc, signal.SIGKILL)
            if job.proc is not None:
                job.proc.wait(10)
            job.done.wait(10)

    # -- inside -----------------------------------------------------------------------------

    def _end(self, job: FakeJob, state: str, reason: str) -> None:
        with self.lock:
            job.state, job.reason = state, reason
        proc = job.proc
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc, signal.SIGTERM)

        def kill_later() -> None:
            if not job.done.wait(self.kill_wait):
                _signal_group(proc, signal.SIGKILL)

        threading.Thread(target=kill_later, daemon=True).start()

    def _wait(self, job: FakeJob) -> None:
        assert job.proc is not None
        code = job.proc.wait()
        # As slurmstepd: what the script leaves in its process group ends with it.
        _signal_group(job.proc, signal.SIGKILL)
        with self.lock:
            if code < 0:
                job.exit_code, job.signal = 0, -code
            else:
                job.exit_code, job.signal = code, 0
            if job.state == "RUNNING":
                if code == 0:
                    job.state = "COMPLETED"
                elif code < 0:
                    job.state, job.reason = "FAILED", "JobLaunchFailure"
                else:
                    job.state, job.reason = "FAILED", "NonZeroExitCode"
            job.end_time = time.time()
        job.done.set()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
