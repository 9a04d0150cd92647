"""The Celery bus: one queue per actor on Redis, RabbitMQ or an in-process broker.

Each actor has a task ``pipelinejobs.<alias>`` routed to queue ``actor.<alias>``, so
``pipelinejobs worker --actors jobs-manager`` consumes only that actor's queue and a
deployment scales an actor by starting more workers for it, on any machine that
reaches the broker. Messages are JSON only (no pickle on the wire) and carry just
the execution id; they are acknowledged late and rejected back to the queue if the
worker dies (``acks_late`` + ``reject_on_worker_lost``), with a prefetch of one, so
a crash loses nothing and delays at most one message per worker process. That makes
delivery at-least-once; the runtime makes every effect idempotent.

The embedded mode uses the same app with kombu's ``memory://`` transport and a
worker running on threads inside the process (:class:`EmbeddedWorker`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery, bootsteps
from kombu import Queue
from kombu.utils.url import maybe_sanitize_url

from pipelinejobs.adapters.bus import redis_transport
from pipelinejobs.adapters.bus.base import Bus, queue_name
from pipelinejobs.config import BusSettings
from pipelinejobs.errors import BusUnavailable, StoreUnavailable, TooManyConflicts

log = logging.getLogger("pipelinejobs.bus")

Deliver = Callable[[str, str], object]
Recover = Callable[[list[str]], object]
#: Errors after which the delivery is retried by Celery with back-off.
TRANSIENT = (StoreUnavailable, TooManyConflicts)


def task_name(alias: str) -> str:
    return f"pipelinejobs.{alias}"


def make_app(settings: BusSettings, broker_url: str, aliases: Iterable[str]) -> Celery:
    """A Celery app configured for at-least-once, JSON-only delivery to actor queues."""
    aliases = list(aliases)
    app = Celery("pipelinejobs", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(queue_name(a), routing_key=queue_name(a)) for a in aliases],
        task_routes={
            task_name(a): {"queue": queue_name(a), "routing_key": queue_name(a)} for a in aliases
        },
        task_default_queue=queue_name(aliases[0]) if aliases else "celery",
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "polling_interval": settings.polling_interval,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.connect_timeout,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    if broker_url.split("://", 1)[0] == "redis":
        app.conf.broker_transport = redis_transport.TRANSPORT
    return app


def run_delivery(task: Any, envelope: dict[str, Any]) -> None:
    """The body of every actor's task: hand the execution to the bus's runtime.

    One module-level function for every task and every app: Celery registers tasks
    on every app created in the process, and it recognises a re-registration by the
    function's identity. The bus (and so the runtime) is found through the task's own
    app, so each app's tasks reach the runtime that app belongs to.
    """
    bus: CeleryBus = task.app.pipelinejobs_bus
    alias = task.name.removeprefix("pipelinejobs.")
    try:
        bus.deliver(alias, str(envelope["execution"]))
    except TRANSIENT as exc:
        # The runtime could not even record the failure: let the broker retry.
        countdown = min(bus.settings.retry_backoff * 2**task.request.retries, 300)
        log.warning("execution %s of %s: %s; retrying in %.1fs", envelope, alias, exc, countdown)
        raise task.retry(
            exc=exc, countdown=countdown, max_retries=bus.settings.max_retries
        ) from exc


class RecoverySweep(bootsteps.StartStopStep):
    """A worker step: every ``bus.recover_interval`` s, re-publish executions whose
    message was lost in flight (:meth:`pipelinejobs.runtime.dispatch.Runtime.recover`).

    kombu's Redis transport pops a message, then records it as unacknowledged; a
    worker killed between the two loses it, and its execution stays SUBMITTED. A
    crash between storing an execution and publishing it does the same. Start-up
    recovery finds those only when a worker starts; this finds them while workers
    run. It runs on the worker's own timer (its event loop for prefork), not on a
    thread of ours, so a pool process is never forked while it holds a lock.
    """

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.timer_ref: Any = None
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        bus = getattr(worker.app, "pipelinejobs_bus", None)
        interval = bus.settings.recover_interval if bus is not None else 0
        if bus is not None and bus.recover is not None and interval > 0:
            self.timer_ref = worker.timer.call_repeatedly(interval, bus.sweep, priority=10)

    def stop(self, worker: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None


class CeleryBus(Bus):
    """Publishes executions as Celery tasks and runs workers for chosen actors."""

    def __init__(
        self,
        settings: BusSettings,
        broker_url: str,
        aliases: Iterable[str],
        deliver: Deliver,
        recover: Recover | None = None,
    ) -> None:
        self.settings = settings
        self.broker_url = broker_url
        self.aliases = list(aliases)
        self.deliver = deliver
        #: recover(aliases): re-publish what was lost in flight (the periodic sweep).
        self.recover = recover
        #: The actors this process's worker consumes, which it sweeps for.
        self.consuming: list[str] = []
        self.app = make_app(settings, broker_url, self.aliases)
        self.app.pipelinejobs_bus = self
        self.app.steps["worker"].add(RecoverySweep)
        for alias in self.aliases:
            self.app.task(
                name=task_name(alias),
                bind=True,
                acks_late=True,
                reject_on_worker_lost=True,
                ignore_result=True,
            )(run_delivery)

    def publish(self, alias: str, execution_id: str, *, delay: float = 0.0) -> None:
        if alias not in self.aliases:
            raise BusUnavailable(f"no queue for actor {alias!r}")
        envelope = {"execution": execution_id, "actor": alias}
        try:
            self.app.send_task(
                task_name(alias),
                args=[envelope],
                # Celery would otherwise build both with its reprlib per message;
                # they are only what a monitoring tool shows, and this is short.
                argsrepr=repr([envelope]),
                kwargsrepr="{}",
                queue=queue_name(alias),
                routing_key=queue_name(alias),
                countdown=delay or None,
                retry=True,
                retry_policy={
                    "max_retries": 3,
                    "interval_start": 0.2,
                    "interval_step": 0.5,
                    "interval_max": 2,
                },
            )
        except Exception as exc:  # kombu raises transport-specific errors
            raise BusUnavailable(
                f"cannot publish to {queue_name(alias)} on {self._safe_url()}: {exc}"
            ) from exc

    def depth(self, alias: str) -> int | None:
        """Messages ready in the actor's queue (a passive declare: nothing is created)."""
        try:
            with self.app.connection_for_write() as conn:
                declared = conn.default_channel.queue_declare(queue_name(alias), passive=True)
                return int(declared.message_count)
        except Exception as exc:  # kombu raises each transport's own errors
            if str(getattr(exc, "reply_code", "")) == "404":  # not declared yet: nothing in it
                return 0
            log.warning("cannot tell the depth of %s: %s", queue_name(alias), exc)
            return None

    def sweep(self) -> None:
        """One recovery sweep over the consumed actors (never raises into Celery)."""
        if self.recover is None or not self.consuming:
            return
        try:
            self.recover(self.consuming)
        except Exception:
            log.exception("recovery sweep of %s failed; trying again later", self.consuming)

    def _safe_url(self) -> str:
        """The broker URL without its password, for messages."""
        return str(maybe_sanitize_url(self.broker_url))

    def ping(self) -> None:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.settings.connect_timeout)
        except Exception as exc:
            raise BusUnavailable(f"broker {self._safe_url()} is not reachable: {exc}") from exc

    def close(self) -> None:
        # Only the app: its connection and producer pools are kombu's process-wide
        # pools, shared with any other app on the same broker, so they are not closed.
        self.app.close()

    def worker_options(
        self, aliases: Iterable[str], concurrency: int, pool: str, hostname: str | None = None
    ) -> dict[str, Any]:
        queues = [queue_name(a) for a in aliases]
        unknown = [a for a in aliases if a not in self.aliases]
        if unknown:
            raise BusUnavailable(f"unknown actors {unknown}; known: {self.aliases}")
        return {
            "queues": queues,
            "concurrency": concurrency,
            "pool": pool,
            "hostname": hostname or f"pipelinejobs-{os.getpid()}@{socket.gethostname()}",
            "without_gossip": True,
            "without_mingle": True,
            "without_heartbeat": True,
            "optimization": "fair",
        }

    def run_worker(
        self, aliases: Iterable[str], *, concurrency: int, pool: str, loglevel: str = "INFO"
    ) -> None:
        """Run a worker in this process until it is told to stop (the CLI's worker)."""
        self.consuming = list(aliases)
        worker = self.app.Worker(
            loglevel=loglevel, **self.worker_options(self.consuming, concurrency, pool)
        )
        worker.start()
        code = getattr(worker, "exitcode", 0)
        if code:
            raise SystemExit(code)


class EmbeddedWorker:
    """A Celery worker on threads inside this process (the embedded mode)."""

    def __init__(self, bus: CeleryBus, aliases: Iterable[str], concurrency: int) -> None:
        from celery.worker import WorkController

        self.bus = bus
        bus.consuming = aliases = list(aliases)
        self.controller = WorkController(
            app=bus.app,
            loglevel="WARNING",
            **bus.worker_options(aliases, concurrency, "threads", f"embedded-{os.getpid()}@local"),
        )
        self.thread = threading.Thread(
            target=self.controller.start, name="pipelinejobs-worker", daemon=True
        )

    def start(self, timeout: float = 10.0) -> EmbeddedWorker:
        # The thread pool looks tasks up in Celery's *default* app (pool threads have no
        # current app of their own), so this bus's app must be it while it runs.
        self.bus.app.set_default()
        self.bus.app.set_current()
        self.thread.start()
        ready = self.controller.consumer
        deadline = threading.Event()
        waited = 0.0
        while waited < timeout:
            if ready is not None and getattr(ready, "connection", None) is not None:
                return self
            deadline.wait(0.05)
            waited += 0.05
            ready = self.controller.consumer
        raise BusUnavailable("the embedded worker did not start in time")

    def stop(self, timeout: float = 10.0) -> None:
        from celery.worker import state

        state.should_terminate = 0
        self.thread.join(timeout)
        state.should_terminate = None
