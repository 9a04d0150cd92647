"""The runtime: everything an actor needs, and the one place messages are dispatched.

:meth:`Runtime.submit` is how any message enters the system (from the gateway, the
CLI or another actor): it resolves the actor, validates the message with the
actor's own ``parse``, stores the execution, and publishes it. :meth:`Runtime.deliver`
is what a worker calls for each message it receives: it runs the actor and records
the outcome on the execution. It is the only place a broad ``except`` catches an
actor's error — every outcome, expected or not, ends in the execution record, and
an unexpected one is logged with its traceback in the worker's log (never shown to
a caller).

Transient failures (store unavailable, a compare-and-set that kept losing) are
retried with exponential back-off by re-publishing the same execution; the actor's
effects are idempotent, so running it again is safe.

A poisoned record costs only itself: recovery, reaping and delivery handle records
one at a time, and one that cannot be read or handled goes to
:class:`~pipelinejobs.runtime.quarantine.Quarantine` (set aside, or its execution closed as ERROR,
logged once) while the others go on.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pipelinejobs.access import boundary
from pipelinejobs.access.keys import ROLES, USER
from pipelinejobs.access.server_secrets import resolve_secrets
from pipelinejobs.access.tokens import TokenAuthority
from pipelinejobs.adapters.bus.base import Bus
from pipelinejobs.adapters.storage import LocalStorage
from pipelinejobs.adapters.store import Store, open_store
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.config import Config
from pipelinejobs.domain.clock import Clock, iso, system_clock
from pipelinejobs.domain.identifiers import Identifiers
from pipelinejobs.domain.jobs import Jobs
from pipelinejobs.domain.pipelines import Pipelines
from pipelinejobs.errors import (
    CorruptDocument,
    PipelineJobsError,
    StoreUnavailable,
    TooManyConflicts,
    UnknownActor,
    ValidationError,
)
from pipelinejobs.runtime.actor import Actor, Context, ExecutionLog, actor_id
from pipelinejobs.runtime.executions import (
    FINISHED_STATUSES,
    RUNNING,
    SUBMITTED,
    Executions,
    derived_id,
)
from pipelinejobs.runtime.quarantine import OUTAGES, RECORD_ERRORS, Quarantine

log = logging.getLogger("pipelinejobs.runtime")

#: alias -> module defining ``ACTOR``. Imported by name, so ``common`` never imports
#: ``actors`` statically and an actor module is loaded only where it runs.
ACTOR_MODULES: dict[str, str] = {
    "pipelines-manager": "pipelinejobs.actors.pipelines_manager",
    "jobs-manager": "pipelinejobs.actors.jobs_manager",
    "jobs-indexer": "pipelinejobs.actors.jobs_indexer",
    "launcher-proxy": "pipelinejobs.actors.launcher_proxy",
}
TRANSIENT = (StoreUnavailable, TooManyConflicts)


class Runtime:
    """Stores, services and actors of one process, wired from one configuration."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        bus: Bus | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.config = resolve_secrets(config)
        self.clock = clock
        self.store = store if store is not None else open_store(self.config)
        self.ids = Identifiers(self.config.identifiers.namespace_domain)
        self.tokens = TokenAuthority(
            self.config.tokens.secret,
            self.config.tokens.admin_secret,
            admin_ttl=float(self.config.tokens.admin_token_ttl),
            clock=clock,
        )
        self.jobs = Jobs(self.store, self.ids, clock=clock, retries=self.config.store.cas_retries)
        self.pipelines = Pipelines(self.store, self.ids, clock=clock)
        self.executions = Executions(self.store, clock=clock)
        self.quarantine = Quarantine(self.store, self.executions)
        self.storage = LocalStorage(self.config.storage_root, self.config.storage.system)
        self.actors: dict[str, Actor] = {}
        for alias, module in ACTOR_MODULES.items():
            self.actors[alias] = importlib.import_module(module).ACTOR
        self.actor_ids = {actor_id(a, self.ids.domain): a for a in self.actors}
        self.bus: Bus | None = bus

    # -- actors ---------------------------------------------------------------------------

    def actor(self, name: str) -> Actor:
        """The actor called ``name`` (alias or Abaco-style id)."""
        alias = name if name in self.actors else self.actor_ids.get(name)
        if alias is None:
            raise UnknownActor(f"no actor {name!r}; actors: {', '.join(self.actors)}", actor=name)
        return self.actors[alias]

    def actor_id(self, alias: str) -> str:
        return actor_id(alias, self.ids.domain)

    # -- entering the system ----------------------------------------------------------------

    def submit(
        self,
        name: str,
        message: Any,
        params: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        parent: str | None = None,
        sender: str | None = None,
        owner: str | None = None,
        role: str = USER,
    ) -> Document:
        """Validate, store and publish a message for actor ``name``; the execution.

        Nothing is stored if the message is invalid. An ``execution_id`` that already
        exists is not sent twice (it is re-published only while still SUBMITTED).
        ``owner`` is the id of the HTTP credential that sent it: the gateway shows
        the execution's result (which may hold a new document's token) only to it.
        ``role`` is the sender's (``admin`` or ``user``; least privilege unless the
        caller says otherwise): the actor's ``admit`` checks it now, and it is stored
        on the execution so that the worker's ``handle`` checks it again.
        """
        if role not in ROLES:
            raise ValidationError(f"role must be one of {', '.join(ROLES)}", path="role")
        actor = self.actor(name)
        params = {str(k): v for k, v in (params or {}).items()}
        # Whoever builds it (gateway, CLI, another actor), nothing non-JSON is stored.
        depth = self.config.gateway.max_depth
        boundary.check(message, max_depth=depth)
        boundary.check(params, max_depth=depth)
        actor.admit(self, actor.parse(message, params), role)
        execution, created = self.executions.submit(
            actor.alias,
            message,
            params,
            execution_id=execution_id,
            parent=parent,
            sender=sender,
            owner=owner,
            role=role,
        )
        if created or execution["status"] == SUBMITTED:
            self.publish(actor.alias, execution["id"])
        return execution

    def publish(self, alias: str, execution_id: str, *, delay: float = 0.0) -> None:
        if self.bus is None:
            raise RuntimeError("this runtime has no bus; connect one before submitting")
        self.bus.publish(alias, execution_id, delay=delay)

    # -- running a delivery -----------------------------------------------------------------

    def deliver(self, alias: str, execution_id: str, worker: str | None = None) -> Document | None:
        """Run one delivered execution to its end; returns the execution record (None
        when it is unknown, or was quarantined because it cannot be read)."""
        actor = self.actor(alias)
        try:
            execution = self.store.get(self.executions.collection, execution_id)
            if execution is None:
                log.error("delivery of unknown execution %s to %s dropped", execution_id, alias)
                return None
            if execution["status"] in FINISHED_STATUSES:
                log.info(
                    "execution %s already %s; redelivery ignored",
                    execution_id,
                    execution["status"],
                )
                return execution
            if not isinstance(execution["message"], dict):  # stored_message makes objects
                kind = type(execution["message"]).__name__
                raise TypeError(f"its message is a {kind}, not an object")
            execution = self.executions.start(execution_id, worker, current=execution)
            attempts = int(execution["attempts"])
        except OUTAGES:
            raise
        except RECORD_ERRORS as exc:  # a poisoned execution: closed or set aside, not run
            return self.quarantine.execution(execution_id, exc)
        elog = ExecutionLog(execution_id, actor.alias, self.clock)
        if attempts > 1:
            elog.info(f"Attempt {attempts} (an earlier delivery did not finish)")
        ctx = Context(self, actor.alias, execution, elog)
        try:
            message = actor.parse(execution["message"], execution.get("params") or {})
            result = actor.handle(ctx, message)
        except TRANSIENT as exc:
            return self._retry_or_fail(execution, exc, elog)
        except CorruptDocument as exc:
            # A record the actor read (the event's job, its pipeline...) is corrupt: set
            # it aside, so the next message for it is told why instead of failing alike.
            self.quarantine.corrupt(exc)
            if (exc.collection, exc.key) == (self.executions.collection, execution_id):
                return None
            # At WARNING: the store already reported it at ERROR, once.
            elog.warning(f"{exc.collection} record {exc.key} moved to the quarantine: {exc.reason}")
            return self.executions.finish(execution_id, error=exc.to_dict(), logs=elog.lines)
        except PipelineJobsError as exc:
            elog.error(exc.message)
            return self.executions.finish(execution_id, error=exc.to_dict(), logs=elog.lines)
        except Exception as exc:  # the dispatch boundary: record and log, never propagate
            elog.exception(
                f"internal error ({type(exc).__name__}); the worker log has the details", exc
            )
            return self.executions.finish(
                execution_id,
                logs=elog.lines,
                error={
                    "error": "InternalError",
                    "message": f"internal error in {actor.alias} ({type(exc).__name__}); "
                    f"reported in the worker log",
                },
            )
        # ctx.execution is the latest copy (start's, or the last progress write's).
        return self.executions.finish(
            execution_id, result=result, logs=elog.lines, current=ctx.execution
        )

    def _retry_or_fail(
        self, execution: Document, exc: PipelineJobsError, elog: ExecutionLog
    ) -> Document:
        attempts = int(execution.get("attempts", 1))
        settings = self.config.bus
        if attempts > settings.max_retries:
            elog.error(f"{exc.message}; gave up after {attempts} attempts")
            return self.executions.finish(execution["id"], error=exc.to_dict(), logs=elog.lines)
        delay = min(settings.retry_backoff * 2 ** (attempts - 1), 300.0)
        elog.warning(f"{exc.message}; retrying in {delay:.1f}s")
        requeued = self.executions.requeue(execution["id"], exc.message, delay)
        self.publish(execution["actor"], execution["id"], delay=delay)
        return requeued

    # -- recovery -----------------------------------------------------------------------------

    def recover(
        self,
        aliases: Iterable[str] | None = None,
        *,
        older_than: float | None = None,
        include_running: bool = False,
        idle_only: bool = False,
    ) -> list[str]:
        """Re-publish executions orphaned by a crash; returns their ids.

        SUBMITTED ones not touched for ``older_than`` s were stored but never published
        (the publisher died in between) or their message was lost in flight (a worker
        killed between taking it from the broker and recording it as unacknowledged).
        RUNNING ones (only with ``include_running``, for a broker that forgets, like the
        in-process one) were taken by a worker that died. With ``idle_only`` (the
        periodic sweep), an actor whose queue still holds messages is skipped: its
        SUBMITTED executions may just be waiting their turn. One waiting out a retry
        back-off is left alone until it is due. Each is claimed with a compare-and-set
        before it is published, so workers sweeping at once publish it once, and it is
        not re-published again before another ``older_than`` s pass.

        Each is handled on its own: one that cannot be read is quarantined, one that
        is readable but cannot be claimed (a field missing or of the wrong type) is
        closed as ERROR, and the others are recovered all the same.
        """
        age = self.config.bus.recover_after if older_than is None else older_than
        statuses = (SUBMITTED, RUNNING) if include_running else (SUBMITTED,)
        wanted = list(aliases) if aliases else list(self.actors)
        if idle_only and self.bus is not None:  # a queue it cannot see into is not idle
            wanted = [a for a in wanted if self.bus.depth(a) == 0]
        if not wanted:
            return []
        due = iso(self.clock() - age)
        recovered = []
        stale = self.executions.stale(older_than=age, statuses=statuses, actors=wanted)
        for corrupt in stale.skipped:
            self.quarantine.corrupt(corrupt)
        for execution in stale.items:
            try:
                if str(execution.get("retry_at") or "") > due:
                    continue  # a retry waiting for its back-off: its message is in a worker
                if self.executions.claim_recovery(execution) is None:
                    continue
                log.warning(
                    "re-publishing orphaned execution %s (%s, %s)",
                    execution["id"],
                    execution["actor"],
                    execution["status"],
                )
                self.publish(execution["actor"], execution["id"])
            except OUTAGES:
                raise
            except RECORD_ERRORS as exc:
                self.quarantine.execution(execution["id"], exc)
                continue
            recovered.append(execution["id"])
        return recovered

    def start_up(self, aliases: Iterable[str], **recovery: Any) -> list[str]:
        """What a worker does before it consumes ``aliases``' queues: re-publish the
        executions a crash orphaned (``recovery``: :meth:`recover`'s options) and fail
        the jobs whose supervisor was lost on this host. Returns the re-published ids.
        A poisoned record is set aside on the way, so it never stops a worker starting."""
        recovered = self.recover(aliases, **recovery)
        if recovered:
            log.warning("re-published %d orphaned execution(s)", len(recovered))
        self.reap_lost_launches()
        return recovered

    def reap_lost_launches(self) -> list[str]:
        """Fail the jobs whose supervisor was lost on this host (the machine restarted,
        or the process was killed): nobody is left to report their end. Any compute
        still running is stopped; a docker container is left (labelled with the job).
        Returns the job uuids failed. A starting worker calls this."""
        from pipelinejobs.adapters.launchers.supervisor import claim_lost, lost_launches

        reason = (
            "the supervisor of this job's compute was lost (its machine restarted or "
            "it was killed), so its end is unknown"
        )
        failed = []
        for uuid, marker, record in lost_launches(self.config.log_dir):
            if not claim_lost(marker, record, reason):
                continue
            try:
                job = self.store.get("jobs", uuid)
                if job is None or job["state"] not in ("CREATED", "RUNNING"):
                    continue  # it ended (or was failed) some other way
                token = self.tokens.update_token(uuid, int(job.get("token_rotation", 0)))
            except OUTAGES:
                raise
            except RECORD_ERRORS as exc:  # a poisoned job: set aside, the others reaped
                self.quarantine.record("jobs", uuid, exc)
                continue
            event = {"uuid": uuid, "name": "fail", "token": token, "data": {"reason": reason}}
            log.warning("job %s: %s; failing it", uuid, reason)
            self.submit("jobs-manager", event, execution_id=derived_id(str(marker), "lost"))
            failed.append(uuid)
        return failed

    def close(self) -> None:
        if self.bus is not None:
            self.bus.close()
        self.store.close()
