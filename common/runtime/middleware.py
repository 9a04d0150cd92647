"""Delivery middleware: what happens around every delivery, outside the actors.

dramatiq's model (its ``middleware/`` package): a :class:`Middleware` has one method
per point of a delivery, each doing nothing by default, and the runtime holds an
ordered list of them (``Runtime.middleware``, a :class:`MiddlewareStack`) that
:meth:`~pipelinejobs.runtime.dispatch.Runtime.deliver` calls. Retries, time limits
and the delivery's own log lines live here, so adding a concern — metrics, a rate
limit — means adding a class to the list, not editing the dispatch point.

A delivery, and the hook called at each point::

    redelivery of a finished execution ......... after_skip(alias, execution)
    execution marked RUNNING ................... before_deliver(delivery)
    the actor parses and handles the message
    it returned or raised ...................... after_handle(delivery)
    it failed .................................. on_error(delivery, exc) -> record | None
    the outcome is recorded .................... after_deliver(delivery, execution, exc)
    a prefork pool process killed at the limit . after_expire(alias, execution)

``before_deliver`` runs first to last; ``after_handle``, ``on_error``,
``after_deliver``, ``after_skip`` and ``after_expire`` run last to first, so the last
middleware in the list is the innermost, nearest the actor (dramatiq emits its
``after_*`` hooks in reverse too). ``before_deliver`` and ``after_handle`` run inside
the dispatch boundary: a :class:`~pipelinejobs.errors.PipelineJobsError` one raises
becomes the delivery's outcome. ``on_error`` stops at the first middleware that
returns a record (it dealt with the failure: Retries re-queued it); None from all
lets the runtime record the error. Metrics belong in ``after_deliver`` (every
outcome, with ``delivery.elapsed()``), ``after_skip`` and ``after_expire``.

The default stack (:func:`default_middleware`) is ``[ExecutionLogging, Retries,
TimeLimit, Metrics]``: the time limit wraps the actor alone, retries see a failure
before the log does (so a retried error is logged as a retry, not as the outcome);
Metrics only counts the outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pipelinejobs.adapters.store.base import Document
from pipelinejobs.config import BusSettings
from pipelinejobs.domain.identifiers import uuid_type
from pipelinejobs.errors import (
    TRANSIENT,
    ConfigError,
    CorruptDocument,
    PipelineJobsError,
    TimeLimitExceeded,
)
from pipelinejobs.observability import metrics
from pipelinejobs.observability.metrics import OUTCOMES
from pipelinejobs.runtime.actor import Actor, Context, ExecutionLog
from pipelinejobs.runtime.watchdog import Watchdog

if TYPE_CHECKING:  # pragma: no cover
    from pipelinejobs.runtime.dispatch import Runtime

log = logging.getLogger("pipelinejobs.delivery")

M = TypeVar("M", bound="Middleware")


@dataclass
class Delivery:
    """One delivery in progress: what every hook is given."""

    runtime: Runtime
    actor: Actor
    #: What the actor's ``handle`` is given; ``ctx.execution`` is the latest copy.
    ctx: Context
    worker: str | None = None
    started: float = field(default_factory=time.monotonic)
    #: Room for middleware to keep what it needs between hooks (a timer, a span),
    #: as dramatiq's ``message.options``; key it by the middleware's own name.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def alias(self) -> str:
        return self.actor.alias

    @property
    def execution_id(self) -> str:
        return self.ctx.execution_id

    @property
    def execution(self) -> Document:
        return self.ctx.execution

    @property
    def log(self) -> ExecutionLog:
        return self.ctx.log

    @property
    def attempts(self) -> int:
        """Which attempt this is (1 for the first delivery)."""
        return int(self.ctx.execution.get("attempts") or 1)

    def elapsed(self) -> float:
        """Seconds since the execution was marked RUNNING."""
        return time.monotonic() - self.started


class Middleware:
    """Hooks around a delivery; each does nothing unless a subclass says otherwise."""

    def before_deliver(self, delivery: Delivery) -> None:
        """The execution is RUNNING and the actor about to run. Raising a
        PipelineJobsError refuses the delivery: the error is its outcome."""

    def after_handle(self, delivery: Delivery) -> None:
        """The actor returned or raised; still inside the dispatch boundary. Raising a
        PipelineJobsError makes that error the outcome, whatever the actor did."""

    def on_error(self, delivery: Delivery, exc: Exception) -> Document | None:
        """The delivery failed with ``exc``. Return the execution record if this
        middleware dealt with the failure (no later one is asked, and the runtime
        records nothing more); None to pass."""
        return None

    def after_deliver(
        self, delivery: Delivery, execution: Document | None, exc: Exception | None
    ) -> None:
        """The outcome is recorded: ``execution`` is COMPLETE, ERROR, or SUBMITTED
        again (a retry); None if the execution was set aside as corrupt. ``exc`` is
        the failure, if any."""

    def after_skip(self, alias: str, execution: Document) -> None:
        """A redelivery of an execution that had already finished was not run."""

    def after_expire(self, alias: str, execution: Document) -> None:
        """A prefork worker killed the pool process running ``execution`` at its hard
        time limit, and closed it as ERROR (called in the worker's main process)."""


class MiddlewareStack(list[Middleware]):
    """The runtime's ordered middleware, and the order each hook is called in."""

    def before_deliver(self, delivery: Delivery) -> None:
        for middleware in self:
            middleware.before_deliver(delivery)

    def after_handle(self, delivery: Delivery) -> None:
        """Every middleware's ``after_handle``, innermost first, each run even when
        one before it raised (a time limit must always be disarmed): if several
        raise, the outermost one's error propagates, the others chained to it."""
        self._after_handle(list(reversed(self)), delivery)

    def _after_handle(self, chain: list[Middleware], delivery: Delivery) -> None:
        if chain:
            try:
                chain[0].after_handle(delivery)
            finally:
                self._after_handle(chain[1:], delivery)

    def on_error(self, delivery: Delivery, exc: Exception) -> Document | None:
        for middleware in reversed(self):
            handled = middleware.on_error(delivery, exc)
            if handled is not None:
                return handled
        return None

    def after_deliver(
        self, delivery: Delivery, execution: Document | None, exc: Exception | None
    ) -> None:
        for middleware in reversed(self):
            middleware.after_deliver(delivery, execution, exc)

    def after_skip(self, alias: str, execution: Document) -> None:
        for middleware in reversed(self):
            middleware.after_skip(alias, execution)

    def after_expire(self, alias: str, execution: Document) -> None:
        for middleware in reversed(self):
            middleware.after_expire(alias, execution)

    def find(self, kind: type[M]) -> M | None:
        """The first middleware of class ``kind`` (to configure or test it)."""
        return next((m for m in self if isinstance(m, kind)), None)


class ExecutionLogging(Middleware):
    """The lines a delivery adds to its execution's log, beyond the actor's own, and
    the process log's one line per outcome (README: Logs).

    That line — ``jobs-manager exec=<id> job=<uuid> COMPLETE in 3.2 ms`` — is a record
    of the ``pipelinejobs.delivery`` logger with the fields ``event`` (``execution``),
    ``actor``, ``execution``, ``job`` (when the message or its result names one),
    ``outcome`` (COMPLETE, ERROR, RETRY, QUARANTINED, SKIPPED, EXPIRED), ``duration_ms``,
    ``attempt`` and, for a failure, ``error`` (its class name): INFO for a completed or
    skipped execution, WARNING for a retry or a record set aside, ERROR for a failure
    (WARNING if it failed on a corrupt record: the store reported that at ERROR, once).
    The error's message is not on the line (it may quote what a caller sent); it is on
    the execution (``pipelinejobs logs ACTOR ID``).

    An unexpected error's line and traceback are not here: the dispatch boundary
    writes those itself, so no stack of middleware can leave an internal error
    unlogged.
    """

    def before_deliver(self, delivery: Delivery) -> None:
        if delivery.attempts > 1:
            delivery.log.info(f"Attempt {delivery.attempts} (an earlier delivery did not finish)")

    def on_error(self, delivery: Delivery, exc: Exception) -> Document | None:
        # A corrupt record's line is the quarantine's (the store logged it already).
        if isinstance(exc, PipelineJobsError) and not isinstance(exc, CorruptDocument):
            delivery.log.error(exc.message)
        return None

    def after_deliver(
        self, delivery: Delivery, execution: Document | None, exc: Exception | None
    ) -> None:
        if execution is None:
            outcome, level = "QUARANTINED", logging.WARNING
        elif execution.get("status") == "SUBMITTED":
            outcome, level = "RETRY", logging.WARNING
        elif execution.get("status") == "ERROR":
            # A corrupt record the actor met was reported at ERROR by the store, once.
            corrupt = isinstance(exc, CorruptDocument)
            outcome, level = "ERROR", logging.WARNING if corrupt else logging.ERROR
        else:
            outcome, level = str(execution.get("status")), logging.INFO
        error = None
        if exc is not None:
            error = type(exc).__name__
        elif execution is not None and isinstance(execution.get("error"), Mapping):
            error = str(execution["error"].get("error") or "") or None
        outcome_line(
            level,
            delivery.alias,
            delivery.execution_id,
            execution or delivery.execution,
            outcome,
            duration_ms=delivery.elapsed() * 1000,
            attempt=delivery.attempts,
            error=error,
        )

    def after_skip(self, alias: str, execution: Document) -> None:
        outcome_line(logging.INFO, alias, str(execution["id"]), execution, "SKIPPED")

    def after_expire(self, alias: str, execution: Document) -> None:
        outcome_line(
            logging.ERROR,
            alias,
            str(execution["id"]),
            execution,
            "EXPIRED",
            attempt=int(execution.get("attempts") or 1),
            error="TimeLimitExceeded",
        )


def job_named(execution: Mapping[str, Any]) -> str | None:
    """The job an execution is about: the job UUID (type 107) its message or URL
    parameters name, else the one its result names (a launch creates one)."""
    result = execution.get("result")
    for holder in (execution.get("message"), execution.get("params"), result):
        value = holder.get("uuid") if isinstance(holder, Mapping) else None
        if isinstance(value, str) and value[:3] == "107":
            try:
                if uuid_type(value) == "pipelinejob":
                    return value
            except PipelineJobsError:
                continue
    return None


def outcome_line(
    level: int,
    alias: str,
    execution_id: str,
    execution: Mapping[str, Any],
    outcome: str,
    *,
    duration_ms: float | None = None,
    attempt: int | None = None,
    error: str | None = None,
) -> None:
    """Log one execution's outcome (see :class:`ExecutionLogging`)."""
    if not log.isEnabledFor(level):
        return
    job = job_named(execution)
    text = f"{alias} exec={execution_id}" + (f" job={job}" if job else "")
    if outcome == "SKIPPED":
        text += f" already {execution.get('status')}; redelivery ignored"
    elif outcome == "RETRY":
        text += " will be retried"
    else:
        text += f" {outcome}"
    if duration_ms is not None:
        text += f" in {duration_ms:.1f} ms"
    if attempt is not None and attempt > 1:
        text += f" (attempt {attempt})"
    if error:
        text += f": {error}"
    log.log(
        level,
        "%s",
        text,
        extra={
            "event": "execution",
            "actor": alias,
            "execution": execution_id,
            "job": job,
            "outcome": outcome,
            "duration_ms": round(duration_ms, 3) if duration_ms is not None else None,
            "attempt": attempt,
            "error": error,
        },
    )


class Retries(Middleware):
    """A transient failure (:data:`~pipelinejobs.errors.TRANSIENT`) puts the execution
    back to SUBMITTED and re-publishes it after ``bus.retry_delay(attempt)`` s, up to
    ``bus.max_retries`` times; then it ends ERROR saying it gave up. The only retry of
    an actor's failure: running it again is safe because its effects are idempotent.

    The retry is recorded on the execution (``retry_reason``, ``retry_at``) so the
    recovery sweeps leave it alone until it is due. The Celery bus retries too, but
    only a delivery whose record could not be written at all (see
    :func:`pipelinejobs.adapters.bus.celery.run_delivery`).
    """

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings

    def on_error(self, delivery: Delivery, exc: Exception) -> Document | None:
        if not isinstance(exc, TRANSIENT):
            return None
        runtime, attempts = delivery.runtime, delivery.attempts
        if attempts > self.settings.max_retries:
            delivery.log.error(f"{exc.message}; gave up after {attempts} attempts")
            return runtime.executions.finish(
                delivery.execution_id, error=exc.to_dict(), logs=delivery.log.lines
            )
        delay = self.settings.retry_delay(attempts)
        delivery.log.warning(f"{exc.message}; retrying in {delay:.1f}s")
        requeued = runtime.executions.requeue(delivery.execution_id, exc.message, delay)
        runtime.publish(
            delivery.alias, delivery.execution_id, delay=delay, priority=requeued.get("priority")
        )
        return requeued


class TimeLimit(Middleware):
    """An actor still running at its limit (``bus.time_limit``, per actor
    ``bus.time_limits``) is interrupted; its execution ends ERROR, TimeLimitExceeded.

    A :class:`~pipelinejobs.runtime.watchdog.Watchdog` thread raises an exception in
    the thread running the actor at the limit (dramatiq's TimeLimit does the same).
    That works in every pool — prefork pool processes, the thread pool, solo — for an
    actor running Python code (a loop over files, store calls), but lands only when
    the thread returns to Python: a call blocked in C (a sleep, a read that never
    returns) is interrupted when it returns, if ever. For that, a prefork worker also
    has Celery's hard ``time_limit`` at limit + ``bus.time_limit_grace``: it kills the
    pool process and the worker's main process closes the execution
    (``Runtime.expire``). A thread cannot be killed, so in the thread pool (the
    embedded mode) such an actor keeps its thread until the call returns; its
    execution then ends TimeLimitExceeded.

    What the actor did before the limit stands, as after a crash: effects are
    idempotent and each store write is all or nothing.
    """

    KEY = "time_limit"

    def __init__(self, limits: Mapping[str, float], watchdog: Watchdog | None = None) -> None:
        #: actor -> seconds; an actor missing or at 0 has no limit.
        self.limits = {alias: float(s) for alias, s in limits.items() if s > 0}
        self.watchdog = watchdog or Watchdog()

    def before_deliver(self, delivery: Delivery) -> None:
        seconds = self.limits.get(delivery.alias)
        if seconds:
            delivery.state[self.KEY] = (self.watchdog.arm(seconds), seconds)

    def after_handle(self, delivery: Delivery) -> None:
        armed = delivery.state.pop(self.KEY, None)
        if armed is None:
            return
        token, seconds = armed
        if self.watchdog.disarm(token):
            raise TimeLimitExceeded(
                f"{delivery.alias} ran past its time limit of {seconds:g}s and was interrupted",
                actor=delivery.alias,
                limit=seconds,
            )


class Metrics(Middleware):
    """Counts every delivery by actor and outcome, with its duration
    (``pipelinejobs_executions_total``, ``pipelinejobs_execution_duration_seconds``).

    The outcome is the execution's status once recorded — ``complete``, ``error``,
    ``retry`` (a transient failure re-queued by Retries), ``quarantined`` (its record
    set aside) — or ``skipped`` (a redelivery of a finished execution) and
    ``expired`` (its pool process killed at the hard time limit; no duration: the
    main process does not know when it started). Its hooks only record, so its place
    in the stack changes nothing it sees; it is last, leaving the others' positions
    as they were. Made with the runtime, it starts the counting of what the layers
    below announce (:func:`pipelinejobs.observability.metrics.listen`) before the
    first delivery, whose events must count too.
    """

    def __init__(self) -> None:
        metrics.listen()

    def after_deliver(
        self, delivery: Delivery, execution: Document | None, exc: Exception | None
    ) -> None:
        status = execution.get("status") if execution is not None else None
        outcome = OUTCOMES.get(str(status), "quarantined" if execution is None else "other")
        metrics.current().execution(delivery.alias, outcome, delivery.elapsed())

    def after_skip(self, alias: str, execution: Document) -> None:
        metrics.current().execution(alias, "skipped")

    def after_expire(self, alias: str, execution: Document) -> None:
        metrics.current().execution(alias, "expired")


def default_middleware(settings: BusSettings, actors: list[str]) -> list[Middleware]:
    """The stack a runtime starts with: logging, retries, per-actor time limits,
    metrics."""
    unknown = sorted(set(settings.limits()) - set(actors))
    if unknown:
        raise ConfigError(
            f"setting bus.time_limits names unknown actors {', '.join(unknown)}; "
            f"actors: {', '.join(actors)}",
            setting="bus.time_limits",
            allowed=actors,
        )
    limits = {alias: settings.time_limit_for(alias) for alias in actors}
    return [ExecutionLogging(), Retries(settings), TimeLimit(limits), Metrics()]
