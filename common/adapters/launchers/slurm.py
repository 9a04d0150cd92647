"""The slurm launcher: a pipeline's command component as a Slurm batch job.

**What runs.** Only a ``command`` component that declares ``"slurm": {...}`` (an
admin registers it, as for any command component) runs here: its argv, with the
launch's declared variables in place (:mod:`pipelinejobs.domain.components`), is
handed to PipelineJobs' own batch script (``slurm_batch.sh``) as that script's
arguments, and run as ``"$@"`` — never re-read by a shell. The job's environment is
the component's environment and variables, a few settings of the worker
(``INHERITED``), and the job's coordinates (``PIPELINEJOBS_JOB_UUID``,
``..._JOB_TOKEN``, ``..._CALLBACK_URL``, ``..._ARCHIVE_PATH``), given to sbatch on a
file descriptor (:mod:`.slurm_client`). It runs in the job's archive directory and
appends its stdout and stderr to the job's log (``GET /jobs/<uuid>/log`` follows it
while it runs), so ``launcher.log_dir`` and the storage root must be on a file
system the cluster's nodes share. What the job asks for comes from Agave's job
fields (:mod:`.slurm_resources`).

**One batch job per attempt, found by name.** The job is named
``pipelinejobs-<uuid>-<attempt>``. A launch first asks Slurm for a job of that
name (``squeue --states=all``): a launch delivered twice finds the first one's
instead of submitting a second. A record ``<uuid>.a<attempt>.slurm`` in the log
directory, locked while a launch looks and submits (so two deliveries at once do
not both find nothing), keeps the job id for the reconciler and for the time after
Slurm forgets the job (``MinJobAge``). The submission is reported at once as the
Agave status ``QUEUED`` (a ``resource`` event naming the Slurm job id).

**Status both ways.** The batch script reports RUNNING, then FINISHED or FAILED with
the exit code, to the job's nonce'd callback URL. Slurm may end a job the script
cannot report on — its time limit (TIMEOUT), a node lost (NODE_FAIL), preemption,
the kernel's OOM killer (OUT_OF_MEMORY), scancel by someone else (CANCELLED), the
batch script itself killed — so every reconciler pass (:meth:`verdict`, called from
:mod:`pipelinejobs.runtime.reconciler`) asks Slurm about each recorded job, and one
that ended so while its PipelineJobs job is still RUNNING is recorded FAILED with
Slurm's state and reason. A job that ended by itself (its script ran to its end and
reported) is left to that report for ``launcher.slurm_report_grace`` seconds.

**Cancel.** A person's ``fail`` or ``reset`` (and a deadline's) cancels the job with
``scancel`` (:meth:`stop`); the jobs-manager records the end as an ``update``
(STOPPED), as for a local job.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelinejobs.adapters.launchers.base import Launch, Launcher
from pipelinejobs.adapters.launchers.slurm_client import Slurm, SlurmCLI, SlurmJob, Submission
from pipelinejobs.adapters.launchers.slurm_resources import Request, request
from pipelinejobs.config import LauncherSettings
from pipelinejobs.domain import components, retry
from pipelinejobs.domain.components import Compute
from pipelinejobs.errors import PipelineJobsError, ValidationError

log = logging.getLogger("pipelinejobs.launcher")

#: The batch script every job runs (nothing of a job is written in it).
SCRIPT = Path(__file__).with_name("slurm_batch.sh")
#: Passed through from the launching process; everything else is left out.
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")
SYSTEM = "slurm"
#: How Slurm's states that the batch script cannot report read in a job's history.
STATE_TEXT = {
    "TIMEOUT": "Slurm ended it at its time limit",
    "NODE_FAIL": "its node failed",
    "PREEMPTED": "it was preempted",
    "OUT_OF_MEMORY": "it ran out of memory",
    "CANCELLED": "it was cancelled in Slurm (scancel), not through PipelineJobs",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "it passed its Slurm deadline",
}


def job_name(uuid: str, attempt: int) -> str:
    """The Slurm job name of an attempt: what a redelivered launch finds it by."""
    return f"pipelinejobs-{uuid}-{attempt}"


def record_path(log_dir: Path, uuid: str, attempt: int) -> Path:
    return log_dir / f"{uuid}.a{attempt}.slurm"


@dataclass(frozen=True)
class Verdict:
    """What Slurm's state says of an ended job the reconciler should record: the
    Agave status (FINISHED or FAILED) and the callback body to post it with."""

    uuid: str
    attempt: int
    job_id: str
    status: str
    body: dict[str, Any]
    #: Names this outcome, whoever records it (the reconciler's execution id).
    key: str


class SlurmLauncher(Launcher):
    """Submits a pipeline's Slurm command component through ``client``."""

    name = "slurm"

    def __init__(self, settings: LauncherSettings, log_dir: Path, client: Slurm | None = None):
        self.settings, self.log_dir = settings, log_dir
        self.client = client or SlurmCLI(
            settings.slurm_bin, settings.slurm_conf, settings.slurm_timeout
        )

    # -- what runs, and what it asks for ------------------------------------------------------

    def compute(
        self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]
    ) -> tuple[Compute, Request]:
        """What a job runs (its pipeline's Slurm command component) and what it asks
        Slurm for; ValidationError naming the field otherwise."""
        components.refuse_compute_fields(definition)
        component = components.runnable(pipeline, definition)
        declared = component.get(SYSTEM) if component is not None else None
        if component is None or not isinstance(declared, Mapping):
            raise ValidationError(
                "the slurm launcher runs a pipeline's command component that declares "
                '"slurm", and this job\'s pipeline has none (compute is defined by the '
                "pipeline)",
                path="job_definition/launcher",
            )
        position = list(pipeline.get("components") or []).index(component)
        where = f"components/{position}/slurm"
        return components.compute(component, definition), request(
            definition, declared, self.settings, where
        )

    def check(self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> None:
        self.compute(definition, pipeline)

    def admit(self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> None:
        """Agave's fields are read from the message alone: refused before it is queued."""
        self.compute(definition, pipeline)

    # -- launching ------------------------------------------------------------------------------

    def launch(self, launch: Launch) -> dict[str, Any]:
        compute, wanted = self.compute(launch.job_definition, launch.pipeline)
        uuid, attempt = launch.job["uuid"], retry.attempt_of(launch.job)
        name = job_name(uuid, attempt)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        launch.archive_dir.mkdir(parents=True, exist_ok=True)
        base = launch.callback_body("RUNNING", executionSystem=SYSTEM, slurmJobName=name)
        del base["status"]
        with self._locked(record_path(self.log_dir, uuid, attempt)) as record:
            earlier = [j for j in self.client.find([name]) if j.name == name]
            job_id = max((j.id for j in earlier), key=int, default=None) or record.get("job_id")
            already = job_id is not None
            if job_id is None:
                job_id = self.client.submit(
                    Submission(
                        name=name,
                        script=SCRIPT,
                        args=list(compute.argv or []),
                        environment=self._environment(launch, compute, wanted, base),
                        workdir=launch.archive_dir,
                        output=launch.log_path,
                        options=wanted.options(),
                        comment=f"PipelineJobs job {uuid} attempt {attempt}",
                    )
                )
                log.info("job %s: Slurm batch job %s (%s) submitted", uuid, job_id, name)
            record.update(uuid=uuid, attempt=attempt, name=name, job_id=str(job_id),
                          body=base, submitted=record.get("submitted") or time.time())  # fmt: skip
        started = {
            "backend": self.name,
            "callback": launch.callback_url().split("?", 1)[0],
            "maxRunTime": wanted.seconds,
            "slurmJobId": str(job_id),
            "slurmJobName": name,
            "sbatch": wanted.options(),
        }
        if already:
            started["already_started"] = True
        # Agave's QUEUED: the Slurm job id in the history from the start (a redelivered
        # launch sends it with the same id as the first: found, not sent again).
        try:
            launch.report("QUEUED", {**base, "status": "QUEUED", "slurmJobId": str(job_id)})
        except PipelineJobsError as exc:  # a remark: the job is submitted all the same
            log.warning("job %s: its QUEUED report was not sent: %s", uuid, exc.message)
        return started

    @staticmethod
    def _environment(
        launch: Launch, compute: Compute, wanted: Request, base: dict[str, Any]
    ) -> dict[str, str]:
        """The batch job's whole environment: the worker's few inherited settings,
        the component's, the job's coordinates, and what its batch script reads."""
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update(compute.environment)
        env.update({
            "PIPELINEJOBS_JOB_UUID": launch.job["uuid"],
            "PIPELINEJOBS_JOB_TOKEN": launch.token,
            "PIPELINEJOBS_CALLBACK_URL": launch.callback_base or "",
            "PIPELINEJOBS_ARCHIVE_PATH": launch.archive_path,
            # The script appends "status" and the rest: an object without its "}".
            "PIPELINEJOBS_REPORT_BODY": json.dumps(base)[:-1] + ",",
        })  # fmt: skip
        if wanted.seconds is not None:
            text = launch.job_definition.get("maxRunTime")
            env["PIPELINEJOBS_MAX_RUN_SECONDS"] = str(int(wanted.seconds))
            env["PIPELINEJOBS_TIMEOUT_ERROR"] = json.dumps(
                f"TIMEOUT: maxRunTime {text} exceeded; the batch script stopped the command "
                f"(Slurm's own limit, --time={wanted.minutes}, counts whole minutes)"
            )
        return env

    @contextmanager
    def _locked(self, path: Path) -> Iterator[dict[str, Any]]:
        """The launch record at ``path``, held under an exclusive lock for as long as a
        launch looks for its Slurm job and submits it; written back after."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+") as fh:
                try:
                    record = json.loads(fh.read() or "{}")
                except ValueError:
                    record = {}
                yield record
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(record))
                fh.flush()
        finally:
            os.close(fd)  # releases the lock

    # -- cancelling ------------------------------------------------------------------------------

    def stop(self, job: Mapping[str, Any]) -> list[str]:
        """Cancel the batch job of ``job``'s current attempt, if it has one still
        pending or running; the Slurm job ids cancelled."""
        name = job_name(str(job["uuid"]), retry.attempt_of(job))
        cancelled = []
        for found in self.client.find([name]):
            if found.name == name and not found.ended:
                self.client.cancel(found.id)
                cancelled.append(found.id)
        return cancelled

    # -- what the reconciler asks -----------------------------------------------------------

    def records(self) -> list[tuple[Path, dict[str, Any]]]:
        """The batch jobs submitted and not yet known to have ended (record, data)."""
        out = []
        for path in sorted(self.log_dir.glob("*.slurm")):
            try:
                data = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                continue  # gone, or being written
            if isinstance(data, dict) and data.get("job_id") and data.get("name"):
                out.append((path, data))
        return out

    def verdicts(self, now: float) -> list[tuple[Path, Verdict | None]]:
        """Each recorded job Slurm says has ended (or no longer knows): its record
        and what to record of it (None: Slurm's state needs nothing recorded yet —
        its own report is still expected). One squeue for every name, one scontrol per
        ended job. Raises LauncherUnavailable if Slurm cannot be asked."""
        records = self.records()
        if not records:
            return []
        listed: dict[str, SlurmJob] = {}
        for found in self.client.find([data["name"] for _, data in records]):
            if found.name not in listed or int(found.id) > int(listed[found.name].id):
                listed[found.name] = found
        out: list[tuple[Path, Verdict | None]] = []
        for path, data in records:
            seen = listed.get(data["name"])
            if seen is not None and not seen.ended:
                continue
            shown = self.client.show(seen.id if seen else str(data["job_id"]))
            if shown is not None and not shown.ended:
                continue
            out.append((path, self.verdict(data, shown, now)))
        return out

    def verdict(self, data: Mapping[str, Any], job: SlurmJob | None, now: float) -> Verdict | None:
        """What Slurm's final state of a recorded job (None: Slurm no longer knows it)
        says to record; None while the batch script's own report is to be waited for."""
        body = dict(data.get("body") or {})
        job_id = str(job.id if job else data["job_id"])
        extra: dict[str, Any] = {"slurmJobId": job_id}
        if job is None:
            error = (
                f"Slurm no longer knows batch job {job_id} ({data['name']}): it ended without "
                f"reporting more than MinJobAge ago, or slurmctld lost it"
            )
            status, extra["slurmState"] = "FAILED", "UNKNOWN"
        else:
            extra.update(slurmState=job.state, slurmReason=job.reason, exitCode=job.exit_code)
            by_itself = job.state in ("COMPLETED", "FAILED") and not job.signal
            if by_itself and job.end_time is not None:
                if now - job.end_time < self.settings.slurm_report_grace:
                    return None  # the script reported, or is reporting: wait for it
            if job.state == "COMPLETED":
                status, error = "FINISHED", ""
                extra["note"] = "recorded from Slurm's state: the batch script's report was lost"
            elif job.state == "FAILED" and job.signal:
                status = "FAILED"
                error = (
                    f"Slurm batch job {job.id} ended FAILED: its batch script was killed by "
                    f"signal {job.signal} before it could report (reason {job.reason})"
                )
            elif job.state == "FAILED":
                status = "FAILED"
                error = f"Slurm batch job {job.id} ended FAILED with exit code {job.exit_code}"
            else:
                status = "FAILED"
                why = STATE_TEXT.get(job.state, "Slurm ended it")
                error = f"Slurm batch job {job.id} ended {job.state}: {why} (reason {job.reason})"
        if error:
            extra["error"] = error
        return Verdict(
            uuid=str(data["uuid"]),
            attempt=int(data["attempt"]),
            job_id=job_id,
            status=status,
            body={**body, "status": status, **extra},
            key=f"{job_id}:{extra['slurmState']}",
        )

    @staticmethod
    def forget(path: Path) -> None:
        """The job's end is recorded (or its job moved on): stop asking Slurm about it."""
        path.unlink(missing_ok=True)
