"""The reconciler: failing jobs that ran out of time or lost their supervisor, and
recording the ends Slurm made.

One pass (:meth:`Reconciler.run`) does three things:

* **Overdue jobs** (:mod:`pipelinejobs.domain.deadlines`): one index range query per
  kind finds the jobs past their ``deadline_at`` or ``silent_at``; each is sent a
  ``fail`` through the jobs-manager, under the system's authority (its update token,
  minted here), with the reason (``deadline 00:30:00 passed``, ``no heartbeat for 5 s
  (heartbeat_timeout)``). Going through the jobs-manager rather than writing the job
  here is what stops the compute where PipelineJobs runs it (its ``fail`` path asks a
  local or docker job's supervisor to kill it, cancels a Slurm one) and what applies the
  retry policy.
* **Lost supervisors** (:func:`pipelinejobs.adapters.launchers.supervisor.lost_launches`):
  the jobs of this host whose supervisor died (killed, or the machine restarted) are
  failed, and what is left of their compute is killed. This used to run only when a
  worker started; a supervisor killed while the workers kept running was then found
  only at the next restart.
* **Slurm batch jobs** (when ``launcher.backends`` allows ``slurm``;
  :meth:`pipelinejobs.adapters.launchers.slurm.SlurmLauncher.verdicts`): Slurm is asked
  about every batch job submitted and not known to have ended, and one Slurm ended
  without its batch script reporting (TIMEOUT, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY,
  CANCELLED outside PipelineJobs, the script killed) is recorded with Slurm's state
  and reason, as the status callback its script would have sent (keyed on the Slurm
  job and its state: overlapping reconcilers record it once). Slurm is one for every
  host; it is claimed on periods of half the interval, so every pass of a worker asks
  it (a worker's passes are at least 3/4 of an interval apart) while all the workers
  together ask at most twice per interval: a job Slurm ended is recorded within one
  interval of its end.

**Where it runs, and why there.** Every worker process (and ``pipelinejobs serve``'s
embedded worker) runs a pass on its Celery timer every ``reconciler.interval`` s,
jittered (:mod:`pipelinejobs.adapters.bus.celery_steps`); there is no leader and no
beat. Before it, the worker claims the period (:mod:`pipelinejobs.runtime.periodic`:
a compare-and-set on one store record), so the overdue query runs once per period
across workers and the reaping once per period per host (DESIGN §6). Two reasons for
no leader:

1. Reaping lost supervisors is *per host*: a supervisor's pid and start time say
   something only on the machine that wrote its launch record, so a single
   elected reconciler could not do it for the other hosts. Each host's workers must
   sweep anyway.
2. Overlap is harmless by construction, so there is nothing for a leader to protect.
   A ``fail`` is keyed on (job, kind, the time that passed): its execution id and its
   event key (which the history uuid is derived from) are the same whoever sends it,
   so two reconcilers failing a job at once store one execution and append one
   history entry — as a redelivered message would. The jobs-manager decides on the
   job it writes over (``data.overdue``, checked in the compare-and-set): a heartbeat
   that lands between the query and the write saves the job. A leader would add a
   lease, its renewal and its failover (a dead leader stops every deadline until the
   lease expires) to buy nothing but fewer redundant queries, and those are index
   range scans that find nothing almost always.

Celery beat was not chosen for the same reasons, and because it is one more process
to deploy and keep single (two beats send every tick twice, which keyed effects
survive, but then beat buys nothing either).

A deadline failure is not retried by a retry policy unless its ``on`` names it
(:func:`pipelinejobs.domain.retry.matches`).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelinejobs import signals
from pipelinejobs.domain import deadlines, retry
from pipelinejobs.domain.clock import iso
from pipelinejobs.errors import LauncherError, PipelineJobsError
from pipelinejobs.runtime import periodic
from pipelinejobs.runtime.executions import derived_id
from pipelinejobs.runtime.quarantine import OUTAGES, RECORD_ERRORS

if TYPE_CHECKING:  # pragma: no cover
    from pipelinejobs.runtime.dispatch import Runtime

log = logging.getLogger("pipelinejobs.reconciler")

#: Who the history says sent a reconciler's ``fail``.
SENDER = "reconciler"
LOST_REASON = (
    "the supervisor of this job's compute was lost (its machine restarted or it was "
    "killed), so its end is unknown"
)


@dataclass
class Pass:
    """What one pass did: the jobs it sent a ``fail`` (overdue; lost supervisors) and
    the Slurm outcomes it recorded (``uuid``: status)."""

    overdue: list[deadlines.Overdue] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    slurm: dict[str, str] = field(default_factory=dict)


class Reconciler:
    """Fails a runtime's overdue jobs and this host's jobs with a lost supervisor."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def interval(self) -> float:
        """Seconds between passes (``reconciler.interval``; 0: never)."""
        return float(self.runtime.config.reconciler.interval)

    def run(self) -> Pass:
        """One pass: overdue jobs, lost supervisors, then Slurm's ended jobs."""
        return Pass(self.fail_overdue(), self.reap_lost_launches(), self.follow_slurm())

    def fail_overdue(self) -> list[deadlines.Overdue]:
        """Send a keyed ``fail`` to every job past its deadline or heartbeat time (at
        most ``reconciler.batch`` of each kind); the ones sent. A job whose record
        cannot be read is set aside, and the others are failed all the same."""
        rt = self.runtime
        now = iso(rt.clock())
        sent = []
        for due in deadlines.overdue(rt.store, now, rt.config.reconciler.batch):
            try:
                job = rt.jobs.get(due.uuid)
                token = rt.tokens.update_token(due.uuid, int(job.get("token_rotation", 0)))
            except OUTAGES:
                raise
            except RECORD_ERRORS as exc:  # a poisoned job: set aside, the others failed
                rt.quarantine.record("jobs", due.uuid, exc)
                continue
            event = {
                "uuid": due.uuid,
                "name": "fail",
                "token": token,
                "event_key": due.key,
                "data": due.data(),
            }
            try:
                rt.submit(
                    "jobs-manager",
                    event,
                    execution_id=derived_id(due.uuid, due.kind, due.at),
                    sender=SENDER,
                )
            except OUTAGES:
                raise
            except PipelineJobsError as exc:  # refused at the door: said, and the others go on
                log.error("job %s: %s, but its fail was refused: %s", due.uuid, due.reason, exc)
                continue
            log.warning("job %s: %s; failing it", due.uuid, due.reason)
            signals.job_overdue.send(kind=due.kind)
            sent.append(due)
        return sent

    def reap_lost_launches(self) -> list[str]:
        """Fail the jobs whose supervisor was lost on this host: nobody is left to
        report their end. Any compute still running is killed; a docker container is
        removed, its output kept in the job's log (supervisor.claim_lost). The job
        uuids failed."""
        from pipelinejobs.adapters.launchers.supervisor import claim_lost, lost_launches

        rt = self.runtime
        failed = []
        for uuid, marker, record in lost_launches(rt.config.log_dir):
            if not claim_lost(marker, record, LOST_REASON):
                continue
            try:
                job = rt.store.get("jobs", uuid)
                if job is None or job["state"] not in ("CREATED", "RUNNING"):
                    continue  # it ended (or was failed) some other way
                token = rt.tokens.update_token(uuid, int(job.get("token_rotation", 0)))
            except OUTAGES:
                raise
            except RECORD_ERRORS as exc:  # a poisoned job: set aside, the others reaped
                rt.quarantine.record("jobs", uuid, exc)
                continue
            event = {"uuid": uuid, "name": "fail", "token": token, "data": {"reason": LOST_REASON}}
            log.warning("job %s: %s; failing it", uuid, LOST_REASON)
            rt.submit("jobs-manager", event, execution_id=derived_id(str(marker), "lost"))
            signals.job_overdue.send(kind="lost")
            failed.append(uuid)
        return failed

    def follow_slurm(self) -> dict[str, str]:
        """Record what Slurm's own state says of the batch jobs that ended without
        their script's report (see the module docstring); ``uuid``: the status
        recorded. Nothing is asked of Slurm when this deployment runs no Slurm jobs or
        has none outstanding."""
        rt = self.runtime
        if "slurm" not in rt.config.allowed_backends:
            return {}
        from pipelinejobs.adapters.launchers import make_slurm

        slurm = make_slurm(rt.config)
        try:
            verdicts = slurm.verdicts(rt.clock())
        except LauncherError as exc:  # Slurm unreachable: asked again next pass
            log.warning("Slurm could not be asked about its jobs (%s)", exc.message)
            return {}
        recorded = {}
        for path, verdict in verdicts:
            if verdict is None:
                continue  # its batch script's own report is still expected
            token = None
            try:
                job = rt.store.get("jobs", verdict.uuid)
                # Still waiting for this attempt's end: anything else was told already
                # (its script's report, a person's cancel) or is another attempt's.
                if (
                    job is not None
                    and job["state"] == "RUNNING"
                    and retry.attempt_of(job) == verdict.attempt
                ):
                    token = rt.tokens.update_token(verdict.uuid, int(job.get("token_rotation", 0)))
            except OUTAGES:
                raise
            except RECORD_ERRORS as exc:  # a poisoned job: set aside, the others followed
                rt.quarantine.record("jobs", verdict.uuid, exc)
                continue
            if token is not None:
                params = {"uuid": verdict.uuid, "status": verdict.status, "token": token}
                try:
                    rt.submit(
                        "jobs-manager",
                        verdict.body,
                        params,
                        execution_id=derived_id(verdict.uuid, "slurm", verdict.key),
                        sender=SENDER,
                    )
                except OUTAGES:
                    raise
                except PipelineJobsError as exc:
                    log.error("job %s: Slurm's outcome could not be recorded: %s",
                              verdict.uuid, exc)  # fmt: skip
                    continue
                log.warning("job %s: %s", verdict.uuid, verdict.body.get("error") or "finished")
                recorded[verdict.uuid] = verdict.status
            slurm.forget(path)  # recorded, or its job moved on (reported, cancelled, retried)
        return recorded

    def tick(self) -> Pass | None:
        """A pass for a timer, once per period across workers: the overdue query only
        if this worker claims the period (:mod:`pipelinejobs.runtime.periodic`), the
        lost supervisors only if it claims this host's. An outage is logged and the
        next pass tries again (never raises into Celery's timer)."""
        rt = self.runtime
        try:
            overdue = periodic.claim(rt.store, "reconciler", self.interval, rt.clock)
            host = periodic.claim(
                rt.store, f"reconciler:{socket.gethostname()}", self.interval, rt.clock
            )
            slurm = periodic.claim(rt.store, "reconciler:slurm", self.interval / 2, rt.clock)
            return Pass(
                self.fail_overdue() if overdue else [],
                self.reap_lost_launches() if host else [],
                self.follow_slurm() if slurm else {},
            )
        except PipelineJobsError as exc:
            log.warning("reconciler pass failed (%s); trying again next time", exc.message)
            return None
