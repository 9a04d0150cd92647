"""The reconciler: failing jobs that ran out of time, and jobs whose supervisor was lost.

One pass (:meth:`Reconciler.run`) does two things:

* **Overdue jobs** (:mod:`pipelinejobs.domain.deadlines`): one index range query per
  kind finds the jobs past their ``deadline_at`` or ``silent_at``; each is sent a
  ``fail`` through the jobs-manager, under the system's authority (its update token,
  minted here), with the reason (``deadline 00:30:00 passed``, ``no heartbeat for 5 s
  (heartbeat_timeout)``). Going through the jobs-manager rather than writing the job
  here is what stops the compute where PipelineJobs runs it (its ``fail`` path asks a
  local or docker job's supervisor to kill it) and what applies the retry policy.
* **Lost supervisors** (:func:`pipelinejobs.adapters.launchers.supervisor.lost_launches`):
  the jobs of this host whose supervisor died (killed, or the machine restarted) are
  failed, and what is left of their compute is killed. This used to run only when a
  worker started; a supervisor killed while the workers kept running was then found
  only at the next restart.

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
from pipelinejobs.domain import deadlines
from pipelinejobs.domain.clock import iso
from pipelinejobs.errors import PipelineJobsError
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
    """What one pass did: the jobs it sent a ``fail`` (overdue; lost supervisors)."""

    overdue: list[deadlines.Overdue] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


class Reconciler:
    """Fails a runtime's overdue jobs and this host's jobs with a lost supervisor."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def interval(self) -> float:
        """Seconds between passes (``reconciler.interval``; 0: never)."""
        return float(self.runtime.config.reconciler.interval)

    def run(self) -> Pass:
        """One pass: overdue jobs, then lost supervisors."""
        return Pass(self.fail_overdue(), self.reap_lost_launches())

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
            return Pass(
                self.fail_overdue() if overdue else [],
                self.reap_lost_launches() if host else [],
            )
        except PipelineJobsError as exc:
            log.warning("reconciler pass failed (%s); trying again next time", exc.message)
            return None
