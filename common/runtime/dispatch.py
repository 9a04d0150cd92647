"""The runtime: everything an actor needs, and the one place messages are dispatched.

:meth:`Runtime.submit` is how any message enters the system (from the gateway, the
CLI or another actor): it resolves the actor, validates the message with the
actor's own ``parse``, stores the execution, and publishes it. :meth:`Runtime.deliver`
is what a worker calls for each message it receives: it runs the actor and records
the outcome on the execution. It is the only place a broad ``except`` catches an
actor's error — every outcome, expected or not, ends in the execution record, and
an unexpected one is logged with its traceback in the worker's log (never shown to
a caller).

What happens around a delivery — retries of transient failures, time limits, the
delivery's log lines, and later metrics — is middleware
(:mod:`pipelinejobs.runtime.middleware`, the runtime's ordered ``middleware`` list),
not code in ``deliver``. Re-publishing executions whose message was lost is
:mod:`pipelinejobs.runtime.recovery`.

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
from pipelinejobs.adapters.webhook_http import WebhookSender
from pipelinejobs.config import Config
from pipelinejobs.domain import job_log, runs
from pipelinejobs.domain.clock import Clock, iso, system_clock
from pipelinejobs.domain.identifiers import Identifiers
from pipelinejobs.domain.jobs import Jobs
from pipelinejobs.domain.pipelines import Pipelines
from pipelinejobs.domain.priority import DEFAULT_PRIORITY, priority_of
from pipelinejobs.errors import (
    BusUnavailable,
    CorruptDocument,
    PipelineJobsError,
    TimeLimitExceeded,
    UnknownActor,
    ValidationError,
)
from pipelinejobs.runtime.actor import Actor, Context, ExecutionLog, actor_id
from pipelinejobs.runtime.executions import (
    FINISHED_STATUSES,
    RUNNING,
    SUBMITTED,
    Executions,
    job_of,
    stored_message,
)
from pipelinejobs.runtime.middleware import (
    Delivery,
    Middleware,
    MiddlewareStack,
    default_middleware,
)
from pipelinejobs.runtime.notices import Notices
from pipelinejobs.runtime.quarantine import OUTAGES, RECORD_ERRORS, Quarantine
from pipelinejobs.runtime.reconciler import Reconciler
from pipelinejobs.runtime.recovery import Recovery
from pipelinejobs.runtime.watchdog import Interrupted

log = logging.getLogger("pipelinejobs.runtime")

#: alias -> module defining ``ACTOR``. Imported by name, so ``common`` never imports
#: ``actors`` statically and an actor module is loaded only where it runs.
ACTOR_MODULES: dict[str, str] = {
    "pipelines-manager": "pipelinejobs.actors.pipelines_manager",
    "jobs-manager": "pipelinejobs.actors.jobs_manager",
    "jobs-indexer": "pipelinejobs.actors.jobs_indexer",
    "launcher-proxy": "pipelinejobs.actors.launcher_proxy",
    "notifier": "pipelinejobs.actors.notifier",
}


class Runtime:
    """Stores, services and actors of one process, wired from one configuration."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        bus: Bus | None = None,
        clock: Clock = system_clock,
        middleware: list[Middleware] | None = None,
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
        retries = self.config.store.cas_retries  # one compare-and-set budget for all
        self.jobs = Jobs(self.store, self.ids, clock=clock, retries=retries)
        self.pipelines = Pipelines(self.store, self.ids, clock=clock, retries=retries)
        self.executions = Executions(self.store, clock=clock, retries=retries)
        self.quarantine = Quarantine(self.store, self.executions)
        self.storage = LocalStorage(self.config.storage_root, self.config.storage.system)
        self.actors: dict[str, Actor] = {}
        for alias, module in ACTOR_MODULES.items():
            self.actors[alias] = importlib.import_module(module).ACTOR
        self.actor_ids = {actor_id(a, self.ids.domain): a for a in self.actors}
        self.bus: Bus | None = bus
        #: What runs around every delivery, in order (``middleware``, else logging,
        #: retries and time limits): see :mod:`pipelinejobs.runtime.middleware`.
        self.middleware = MiddlewareStack(
            default_middleware(self.config.bus, list(self.actors))
            if middleware is None
            else middleware
        )
        self.recovery = Recovery(self)
        #: Deadlines, heartbeats and lost supervisors, every ``reconciler.interval`` s.
        self.reconciler = Reconciler(self)
        #: Tells the notifier of applied job events that a webhook wants (issue 16).
        self.notices = Notices(self)
        self.jobs.listeners.append(self.notices)
        self.webhook_sender = WebhookSender()  # the notifier's HTTP connections

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
        base_url: str | None = None,
        delay: float = 0.0,
        priority: str | None = None,
    ) -> Document:
        """Validate, store and publish a message for actor ``name``; the execution.

        Nothing is stored if the message is invalid. An ``execution_id`` that already
        exists is not sent twice (it is re-published only while still SUBMITTED).
        ``owner`` is the id of the HTTP credential that sent it: the gateway shows
        the execution's result (which may hold a new document's token) only to it.
        ``role`` is the sender's (``admin`` or ``user``; least privilege unless the
        caller says otherwise): the actor's ``admit`` checks it now, and it is stored
        on the execution so that the worker's ``handle`` checks it again.
        ``base_url`` is the public base URL it came in through (the gateway's, from
        :mod:`pipelinejobs.gateway.public_url`; an actor's send passes its own on):
        stored on the execution, it is what ``Context.agent_url`` / ``task_url`` start
        with in the worker, which has no request. ``delay`` (s): published that late,
        the execution stored SUBMITTED with ``retry_at`` now (a worker restarting
        meanwhile loses nothing: the recovery sweep publishes it once it is due).
        ``priority``: see :meth:`priority_for`; stored on the execution, so that a
        re-publish (recovery, a retry) keeps it.

        A message from outside (no ``parent``) that cannot be published is withdrawn
        before BusUnavailable is raised: its sender is told to send it again (503,
        nothing written), so leaving it for recovery would run it twice. An actor's
        send stays stored for recovery, as after a crash.
        """
        if role not in ROLES:
            raise ValidationError(f"role must be one of {', '.join(ROLES)}", path="role")
        actor = self.actor(name)
        params = {str(k): v for k, v in (params or {}).items()}
        # Whoever builds it (gateway, CLI, another actor), nothing non-JSON is stored.
        depth = self.config.gateway.max_depth
        boundary.check(message, max_depth=depth)
        boundary.check(params, max_depth=depth)
        actor.admit(self, actor.parse(message, params), role, owner)
        execution, created = self.executions.submit(
            actor.alias,
            message,
            params,
            execution_id=execution_id,
            parent=parent,
            sender=sender,
            owner=owner,
            role=role,
            base_url=base_url,
            delay=delay,
            priority=self.priority_for(message, params, priority),
        )
        if created or execution["status"] == SUBMITTED:
            try:
                self.publish(
                    actor.alias,
                    execution["id"],
                    delay=delay if created else 0.0,
                    priority=execution.get("priority"),
                )
            except BusUnavailable:
                if created and parent is None:
                    self._withdraw(execution["id"])
                raise
        return execution

    def priority_for(
        self, message: Any, params: Mapping[str, Any], inherited: str | None = None
    ) -> str:
        """The priority a message is published with: the one it names itself (a
        launch's ``priority``), else that of the run it names (a launch's or create's
        ``run``: one read of the run), else ``inherited`` (an actor's send passes its
        own execution's), else that of the job it is about (its events: one read of
        the job), else ``medium``."""
        body = message if isinstance(message, dict) else {}
        named = (
            priority_of(body.get("priority"))
            or runs.run_priority(self.store, body)
            or priority_of(inherited)
        )
        if named:
            return named
        job = job_of(stored_message(message), params)
        if job is None:
            return DEFAULT_PRIORITY
        try:
            record = self.store.get(self.jobs.collection, job)
        except PipelineJobsError as exc:  # the event's own handling will say what is wrong
            log.warning("priority of job %s unknown (%s); publishing as medium", job, exc.message)
            return DEFAULT_PRIORITY
        return priority_of((record or {}).get("priority")) or DEFAULT_PRIORITY

    def _withdraw(self, execution_id: str) -> None:
        """Delete an execution just stored whose message could not be published."""
        try:
            self.store.delete(self.executions.collection, execution_id)
        except PipelineJobsError as exc:  # left SUBMITTED: recovery will publish it
            log.warning("execution %s could not be withdrawn (%s)", execution_id, exc.message)

    def publish(
        self, alias: str, execution_id: str, *, delay: float = 0.0, priority: Any = None
    ) -> None:
        """Publish an execution already stored; ``priority``: the one stored on it
        (a record from before priorities has none: medium)."""
        if self.bus is None:
            raise RuntimeError("this runtime has no bus; connect one before submitting")
        self.bus.publish(
            alias, execution_id, delay=delay, priority=priority_of(priority) or DEFAULT_PRIORITY
        )

    # -- running a delivery -----------------------------------------------------------------

    def deliver(self, alias: str, execution_id: str, worker: str | None = None) -> Document | None:
        """Run one delivered execution to its end; returns the execution record (None
        when it is unknown, or was quarantined because it cannot be read).

        The dispatch boundary: whatever the actor or a middleware raises ends in the
        record (or, a transient failure, in a retry), never in the caller — except an
        outage that stopped even the record being written (OUTAGES), which the bus
        retries.
        """
        actor = self.actor(alias)
        try:
            execution = self.store.get(self.executions.collection, execution_id)
            if execution is None:
                log.error("delivery of unknown execution %s to %s dropped", execution_id, alias)
                return None
            if execution["status"] in FINISHED_STATUSES:
                self.middleware.after_skip(actor.alias, execution)
                return execution
            if not isinstance(execution["message"], dict):  # stored_message makes objects
                kind = type(execution["message"]).__name__
                raise TypeError(f"its message is a {kind}, not an object")
            # A quick message's start is written with its end, one write fewer per
            # event (Actor.quick); the record as read is what that write replaces.
            stored = execution if actor.quick(execution["message"]) else None
            if stored is not None:
                execution = self.executions.begun(stored, worker)
            else:
                execution = self.executions.start(execution_id, worker, current=execution)
        except OUTAGES:
            raise
        except RECORD_ERRORS as exc:  # a poisoned execution: closed or set aside, not run
            return self.quarantine.execution(execution_id, exc)
        elog = ExecutionLog(execution_id, actor.alias, self.clock)
        ctx = Context(self, actor.alias, execution, elog)
        delivery = Delivery(self, actor, ctx, worker)
        try:
            try:
                self.middleware.before_deliver(delivery)
                message = actor.parse(execution["message"], execution.get("params") or {})
                result = actor.handle(ctx, message)
            finally:
                self.middleware.after_handle(delivery)
        # The dispatch boundary: record and log, never propagate. Interrupted is a time
        # limit's interruption landing after the actor, before TimeLimit disarmed it.
        except (Exception, Interrupted) as caught:
            failure = (
                caught
                if isinstance(caught, Exception)
                else TimeLimitExceeded(f"{actor.alias} ran past its time limit", actor=actor.alias)
            )
            if stored is not None:  # a failure is recorded as ever: after a written start
                try:
                    ctx.execution = self.executions.start(
                        execution_id, worker, started=execution["started"]
                    )
                except OUTAGES:
                    raise
                except RECORD_ERRORS as exc:
                    return self.quarantine.execution(execution_id, exc)
            outcome = self._failed(delivery, failure)
            self.middleware.after_deliver(delivery, outcome, failure)
            return outcome
        # ctx.execution is the latest copy (start's, or the last progress write's).
        # A quick start not written yet (nothing wrote the execution since it was read)
        # is written now, with the end.
        unwritten = stored is not None and ctx.execution["version"] == stored["version"]
        outcome = self.executions.finish(
            execution_id,
            result=result,
            logs=ctx.log.lines,
            current=stored if unwritten else ctx.execution,
            begun=ctx.execution if unwritten else None,
        )
        self.middleware.after_deliver(delivery, outcome, None)
        return outcome

    def _failed(self, delivery: Delivery, exc: Exception) -> Document | None:
        """Record a failed delivery: a middleware that deals with it (a retry) says
        what happened; otherwise it ends ERROR with the error's detail, or — for an
        unexpected exception — an InternalError whose details are only in the log."""
        execution_id, elog = delivery.execution_id, delivery.log
        if not isinstance(exc, PipelineJobsError):
            elog.exception(
                f"internal error ({type(exc).__name__}); the worker log has the details", exc
            )
            if self.bus is not None:
                self.bus.crashed(delivery.alias, execution_id, exc)
        handled = self.middleware.on_error(delivery, exc)
        if handled is not None:
            return handled
        if isinstance(exc, CorruptDocument):
            # A record the actor read (the event's job, its pipeline...) is corrupt: set
            # it aside, so the next message for it is told why instead of failing alike.
            self.quarantine.corrupt(exc)
            if (exc.collection, exc.key) == (self.executions.collection, execution_id):
                return None
            # At WARNING: the store already reported it at ERROR, once.
            elog.warning(f"{exc.collection} record {exc.key} moved to the quarantine: {exc.reason}")
            return self.executions.finish(execution_id, error=exc.to_dict(), logs=elog.lines)
        if isinstance(exc, PipelineJobsError):
            return self.executions.finish(execution_id, error=exc.to_dict(), logs=elog.lines)
        return self.executions.finish(
            execution_id,
            logs=elog.lines,
            error={
                "error": "InternalError",
                "message": f"internal error in {delivery.alias} ({type(exc).__name__}); "
                f"reported in the worker log",
            },
        )

    def expire(self, alias: str, execution_id: str, seconds: float) -> Document | None:
        """Close an execution whose pool process a prefork worker killed at its hard
        time limit (``seconds``): Celery acknowledges that message, so nothing else
        would. Called in the worker's main process; an execution no longer RUNNING
        (it finished meanwhile) is left as it is — unless it is SUBMITTED with a quick
        message, whose start is written only with its end (Actor.quick)."""
        execution = self.store.get(self.executions.collection, execution_id)
        if execution is None:
            return None
        status = execution.get("status")
        quick = (
            status == SUBMITTED
            and isinstance(execution.get("message"), dict)
            and self.actor(alias).quick(execution["message"])
        )
        if status != RUNNING and not quick:
            return execution
        error = TimeLimitExceeded(
            f"{alias} ran past its time limit and its worker process was killed after {seconds:g}s",
            actor=alias,
            limit=seconds,
        )
        elog = ExecutionLog(execution_id, alias, self.clock)
        elog.error(error.message)
        done = self.executions.finish(
            execution_id,
            error=error.to_dict(),
            logs=[*(execution.get("logs") or []), *elog.lines],
            current=execution,
        )
        self.middleware.after_expire(alias, done)
        return done

    # -- recovery -----------------------------------------------------------------------------

    def recover(
        self,
        aliases: Iterable[str] | None = None,
        *,
        older_than: float | None = None,
        include_running: bool = False,
        idle_only: bool = False,
    ) -> list[str]:
        """Re-publish executions orphaned by a crash; returns their ids
        (:meth:`pipelinejobs.runtime.recovery.Recovery.recover`, which says how)."""
        return self.recovery.recover(
            aliases, older_than=older_than, include_running=include_running, idle_only=idle_only
        )

    def start_up(self, aliases: Iterable[str], **recovery: Any) -> list[str]:
        """What a worker does before it consumes ``aliases``' queues: re-publish the
        executions a crash orphaned (``recovery``: :meth:`recover`'s options) and fail
        the jobs whose supervisor was lost on this host. Returns the re-published ids.
        A poisoned record is set aside on the way, so it never stops a worker starting.

        First it converts jobs written before the history log (:meth:`migrate_history`):
        here rather than when the store is opened, because converting replays the
        lifecycle (domain rules the store does not know), and the process that writes
        jobs is the one that should; a gateway alone only reads, and reads either shape.
        """
        self.migrate_history()
        recovered = self.recover(aliases, **recovery)
        if recovered:
            log.warning("re-published %d orphaned execution(s)", len(recovered))
        self.reap_lost_launches()
        return recovered

    def migrate_history(self) -> int:
        """Convert every job that still embeds its history into the history log
        (:mod:`pipelinejobs.domain.job_log`); how many it found to convert. Once a
        scan has been through every job it is noted in the store, and later starts skip
        it. Each job converts on its own (a crash half-way is resumed by the next start,
        two workers starting at once convert each job once); one that cannot be
        converted is set aside, and the others go on."""
        if job_log.migration_done(self.store):
            return 0
        converted = 0
        for job in job_log.legacy_jobs(self.store):
            try:
                self.jobs.upgrade(job)
            except OUTAGES:
                raise
            except RECORD_ERRORS as exc:
                self.quarantine.record("jobs", job.get("uuid"), exc)
                continue
            converted += 1
        job_log.mark_migrated(self.store, iso(self.clock()), converted)
        if converted:
            log.warning("converted %d job(s) to the history log", converted)
        return converted

    def reap_lost_launches(self) -> list[str]:
        """Fail the jobs whose supervisor was lost on this host; the job uuids failed
        (:meth:`pipelinejobs.runtime.reconciler.Reconciler.reap_lost_launches`, which
        every reconciler pass runs too)."""
        return self.reconciler.reap_lost_launches()

    def close(self) -> None:
        self.notices.flush()
        self.webhook_sender.close()
        if self.bus is not None:
            self.bus.close()
        self.store.close()
