"""The Celery bus: one queue per actor on Redis, RabbitMQ or an in-process broker.

Each actor has a task ``pipelinejobs.<alias>`` routed to queue ``actor.<alias>``, so
``pipelinejobs worker --actors jobs-manager`` consumes only that actor's queue and a
deployment scales an actor by starting more workers for it, on any machine that
reaches the broker. Messages are JSON only (no pickle on the wire) and carry just
the execution id; they are acknowledged late and rejected back to the queue if the
worker dies (``acks_late`` + ``reject_on_worker_lost``), with a prefetch of one, so
a crash loses nothing and delays at most one message per worker process. That makes
delivery at-least-once; the runtime makes every effect idempotent.

Retries: the runtime's Retries middleware retries an actor's transient failure;
this bus retries only a delivery whose record could not be written at all
(:func:`run_delivery` says why); kombu's publish retry re-connects for one publish
and is not a retry of a delivery. Time limits: the runtime's TimeLimit middleware
interrupts an actor at its limit in every pool; a prefork worker also kills a pool
process still running ``bus.time_limit_grace`` s later (the task's ``time_limit``)
and closes its execution from the main process (:class:`DeliveryRequest`).

Priority (:mod:`pipelinejobs.domain.priority`) is Celery's and kombu's own, per
broker. On RabbitMQ every actor queue is declared with ``x-max-priority``
(:data:`AMQP_MAX_PRIORITY`) and each message carries its level's number, higher
first (:data:`AMQP_PRIORITY`). A queue declared by an earlier version, without
that argument, cannot be re-declared with it (PRECONDITION_FAILED, which would fail
every publish): each bus tries once (:meth:`CeleryBus.fit_queues`) and keeps using
such a queue as it is, without priority, saying so in the log until an operator
replaces it (the README's "Priority" says how). On Redis kombu keeps one list per
step (``priority_steps``), named
``actor.<alias>`` (step 0, the highest) and ``actor.<alias>:<step>``; a worker's
BRPOP names every high list before every medium and low one, so it takes high
first, and its actors in turn within one level (``round_robin``: kombu's
``priority`` order would starve the actors named last). kombu's queue size, its
restore of unacknowledged messages and the unacked hash already span every list.
The in-process memory transport ignores priority.

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

from celery import Celery
from celery.worker.request import Request
from kombu import Queue
from kombu.utils.url import maybe_sanitize_url

from pipelinejobs.adapters.bus import pools, redis_transport
from pipelinejobs.adapters.bus.base import Bus, Heartbeat, Reconciling, Recoverer, queue_name
from pipelinejobs.adapters.bus.celery_steps import Reconnected, Sweeps
from pipelinejobs.adapters.bus.direct_publish import FAST_SCHEMES, DirectPublisher
from pipelinejobs.adapters.bus.redis_watch import RedisWatch
from pipelinejobs.config import BusSettings
from pipelinejobs.domain.priority import DEFAULT_PRIORITY, HIGH, LOW, MEDIUM
from pipelinejobs.errors import TRANSIENT, BusError, BusUnavailable, PipelineJobsError

log = logging.getLogger("pipelinejobs.bus")

Deliver = Callable[[str, str], object]
#: expire(alias, execution id, seconds): close an execution whose process was killed.
Expire = Callable[[str, str, float], object]


#: RabbitMQ: a queue's ``x-max-priority``, and each level's number (higher first).
AMQP_MAX_PRIORITY = 2
AMQP_PRIORITY = {LOW: 0, MEDIUM: 1, HIGH: 2}
#: Redis (kombu's emulation): lower first; each level has its own list.
REDIS_PRIORITY = {HIGH: 0, MEDIUM: 3, LOW: 6}
REDIS_PRIORITY_STEPS = sorted(REDIS_PRIORITY.values())


def broker_priority(broker_url: str, priority: str) -> int:
    """The number kombu publishes ``priority`` with on this broker (unknown: medium)."""
    redis = broker_url.split("://", 1)[0] in ("redis", "rediss")
    table = REDIS_PRIORITY if redis else AMQP_PRIORITY
    return table.get(priority, table[DEFAULT_PRIORITY])


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
        task_queues=[
            Queue(queue_name(a), routing_key=queue_name(a), max_priority=AMQP_MAX_PRIORITY)
            for a in aliases
        ],
        task_routes={
            task_name(a): {"queue": queue_name(a), "routing_key": queue_name(a)} for a in aliases
        },
        task_default_queue=queue_name(aliases[0]) if aliases else "celery",
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            # kombu (5.7) scans only on every 10th of those calls unless told 1, which
            # made a killed worker's message come back 10 x restore_interval late.
            "unacked_restore_throttle": 1,
            # A worker killed mid-scan keeps the scan's lock until it expires (kombu:
            # 300 s), and no worker restores anything meanwhile. Each restore is its
            # own WATCH transaction, so a short lock risks no double restore.
            "unacked_mutex_expire": max(5.0, 3 * settings.restore_interval),
            "polling_interval": settings.polling_interval,
            # Redis: one list per priority level (see the module's docstring).
            "priority_steps": REDIS_PRIORITY_STEPS,
            "sep": ":",
            "queue_order_strategy": "round_robin",
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

    Celery's own retry (``task.retry``) stays, for one case: ``Runtime.deliver``
    raised a transient error (:data:`~pipelinejobs.errors.TRANSIENT`) because it could
    not write the execution record at all — the store was down when it read or
    started the execution, or when it recorded the outcome or a retry. The runtime's
    Retries middleware cannot help then: its attempt count and back-off live in the
    record that cannot be written. So the broker keeps the message: a copy is
    re-published with a countdown and the retry count in its headers, with the same
    back-off (``bus.retry_delay``) and limit (``bus.max_retries``). Past that limit
    the message is dropped, and an execution still SUBMITTED is the recovery sweeps'.
    """
    bus: CeleryBus = task.app.pipelinejobs_bus
    alias = task.name.removeprefix("pipelinejobs.")
    try:
        bus.deliver(alias, str(envelope["execution"]))
    except TRANSIENT as exc:
        countdown = bus.settings.retry_delay(task.request.retries + 1)
        log.warning("execution %s of %s: %s; retrying in %.1fs", envelope, alias, exc, countdown)
        raise task.retry(
            exc=exc, countdown=countdown, max_retries=bus.settings.max_retries
        ) from exc


class DeliveryRequest(Request):
    """A delivery as a worker's main process sees it.

    At a task's hard time limit (prefork only: ``time_limit`` is the actor's limit
    plus ``bus.time_limit_grace``) billiard kills the pool process and Celery
    acknowledges the message, so no one else would ever close the execution, left
    RUNNING: this asks the runtime to close it as ERROR, TimeLimitExceeded.
    """

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        bus = getattr(self.task.app, "pipelinejobs_bus", None)
        envelope = self.args[0] if self.args else None
        if soft or bus is None or not isinstance(envelope, dict):
            return
        bus.expired(self.task.name.removeprefix("pipelinejobs."), envelope, timeout)


class CeleryBus(Bus):
    """Publishes executions as Celery tasks and runs workers for chosen actors."""

    def __init__(
        self,
        settings: BusSettings,
        broker_url: str,
        aliases: Iterable[str],
        deliver: Deliver,
        recovery: Recoverer | None = None,
        expire: Expire | None = None,
    ) -> None:
        self.settings = settings
        self.broker_url = broker_url
        self.aliases = list(aliases)
        self.deliver = deliver
        #: What re-publishes lost executions (the runtime's Recovery), and when: see
        #: :mod:`pipelinejobs.adapters.bus.celery_steps`.
        self.recovery = recovery
        #: expire(alias, execution id, seconds): an execution's process was killed.
        self.expire = expire
        #: The actors this process's worker consumes, which it sweeps for.
        self.consuming: list[str] = []
        #: What records this process's worker as alive (set by whoever runs one), and
        #: what it records: see :meth:`beat`.
        self.heartbeat: Heartbeat | None = None
        #: The deadlines/heartbeats/lost-supervisors pass this process's worker runs
        #: every ``reconciler.interval`` s (set by whoever runs one): see
        #: :mod:`pipelinejobs.runtime.reconciler`.
        self.reconciler: Reconciling | None = None
        self.worker_info: dict[str, Any] = {}
        self.app = make_app(settings, broker_url, self.aliases)
        self.app.pipelinejobs_bus = self
        #: RabbitMQ: whether the queues' priority argument was checked (fit_queues).
        self._fitted = broker_url.split("://", 1)[0] not in ("amqp", "amqps", "pyamqp")
        #: Actors whose RabbitMQ queue predates priorities (declared without it).
        self.unprioritised: list[str] = []
        #: This bus's share of kombu's process-wide pools for its broker.
        self._pools: Any = pools.opened(self.app)
        scheme = broker_url.split("://", 1)[0]
        #: Due messages on Redis and the in-process broker skip send_task (its module).
        fast = scheme in FAST_SCHEMES and settings.direct_publish
        self._direct = DirectPublisher(self.app) if fast else None
        redis = scheme in ("redis", "rediss")
        #: Only Redis says what workers hold and whether it lost its queues.
        self.watch = RedisWatch(self.app) if redis else None
        self.app.steps["worker"].add(Sweeps)
        self.app.steps["consumer"].add(Reconnected)
        for alias in self.aliases:
            limit = settings.time_limit_for(alias)
            self.app.task(
                name=task_name(alias),
                bind=True,
                acks_late=True,
                reject_on_worker_lost=True,
                ignore_result=True,
                Request=DeliveryRequest,
                # Enforced by prefork pools only (threads and solo cannot kill).
                time_limit=limit + settings.time_limit_grace if limit > 0 else None,
            )(run_delivery)

    def publish(
        self, alias: str, execution_id: str, *, delay: float = 0.0, priority: str = DEFAULT_PRIORITY
    ) -> None:
        if alias not in self.aliases:
            raise BusError(f"no queue for actor {alias!r}")
        envelope = {"execution": execution_id, "actor": alias}
        number = broker_priority(self.broker_url, priority)
        if self._direct is not None and not delay:
            try:
                self._direct.publish(task_name(alias), queue_name(alias), envelope, number)
                return
            except Exception as exc:  # noqa: BLE001 - send_task below reconnects and retries
                log.warning("publishing %s directly failed (%s); through Celery", execution_id, exc)
                self._direct.reset()
        try:
            self.fit_queues()
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
                priority=number,
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

    def fit_queues(self) -> None:
        """RabbitMQ, once per bus before its first publish or worker: declare each
        actor queue with ``x-max-priority``; one that exists without it (declared by
        a version before priorities) refuses (406 PRECONDITION_FAILED) and is used as
        it is from then on — working, without priority — with an error in the log
        saying how to replace it. Other brokers have nothing to fit."""
        if self._fitted:
            return
        with self.app.connection_for_write() as conn:
            for alias in self.aliases:
                queue = self.app.amqp.queues[queue_name(alias)]
                channel = conn.channel()
                try:
                    queue.bind(channel).declare()
                except Exception as exc:  # kombu raises each transport's own errors
                    if str(getattr(exc, "reply_code", "")) != "406":
                        raise
                    queue.max_priority = None
                    self.unprioritised.append(alias)
                    log.error(
                        "queue %s exists without x-max-priority: its messages are not "
                        "prioritised until it is replaced (README, Priority): %s",
                        queue_name(alias),
                        exc,
                    )
                finally:
                    try:
                        channel.close()
                    except Exception:  # already closed by the broker's refusal
                        pass
        self._fitted = True

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

    def held(self) -> set[str] | None:
        """Executions whose message a worker holds (Redis only: None elsewhere)."""
        if self.watch is None:
            return None
        try:
            return self.watch.held()
        except BusUnavailable as exc:
            log.warning("%s", exc.message)
            return None

    # -- periodic work (run by celery_steps on the worker's timer) ----------------------

    def sweep(self) -> None:
        """The backstop sweep over the consumed actors (never raises into Celery)."""
        if self.recovery is None or not self.consuming:
            return
        try:
            self.recovery.sweep(self.consuming)
        except PipelineJobsError as exc:
            log.warning("recovery sweep of %s failed (%s); trying again later", self.consuming, exc)

    def check(self) -> None:
        """Ask the broker whether it lost its queues, re-publishing at once what was
        SUBMITTED before the loss if it did, then re-publish what was lost in flight
        (``bus.lost_after``), then age what waited too long (``bus.priority_age``).
        Every ``bus.check_interval`` s and whenever the broker connection comes back;
        only outages are caught (a bug surfaces in Celery's "Error in timer" log
        line)."""
        if self.recovery is None or not self.consuming:
            return
        try:
            lost = self.watch.lost_since() if self.watch is not None else None
            if lost is not None:
                log.warning(
                    "broker %s lost its queues (restarted empty or flushed)", self._safe_url()
                )
                self.recovery.after_loss(self.consuming, lost)
            self.recovery.quick_sweep(self.consuming)
            self.recovery.age(self.consuming)
        except PipelineJobsError as exc:
            log.warning("broker check for %s failed (%s); trying again later", self.consuming, exc)

    def beat(self, *, stopping: bool = False) -> None:
        """Record that this process's worker is alive (or stopping), every
        ``bus.heartbeat_interval`` s; a store that cannot be written is logged, and
        the next beat tries again (never raises into Celery's timer)."""
        if self.heartbeat is None or not self.worker_info:
            return
        try:
            if stopping:
                self.heartbeat.stop(self.worker_info)
            else:
                self.heartbeat.beat(self.worker_info)
        except PipelineJobsError as exc:
            log.warning("worker heartbeat not recorded (%s); trying again later", exc.message)

    def expired(self, alias: str, envelope: dict[str, Any], seconds: float) -> None:
        """A pool process was killed at the hard time limit running ``envelope``."""
        if self.expire is None:
            return
        try:
            self.expire(alias, str(envelope.get("execution")), seconds)
        except PipelineJobsError as exc:  # left RUNNING: said in the log
            log.error("execution %s killed at its time limit, not closed: %s", envelope, exc)

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
        """Close the app and, if it is the last bus on its broker in this process,
        kombu's pools for that broker (:mod:`pipelinejobs.adapters.bus.pools`)."""
        if self._direct is not None:
            self._direct.close()
        self.app.close()
        if self._pools is not None:
            pools.closed(self._pools)
            self._pools = None

    def worker_options(
        self, aliases: Iterable[str], concurrency: int, pool: str, hostname: str | None = None
    ) -> dict[str, Any]:
        """The options of the worker this process runs for ``aliases`` (remembered
        as ``worker_info``, what its heartbeat records)."""
        aliases = list(aliases)
        queues = [queue_name(a) for a in aliases]
        unknown = [a for a in aliases if a not in self.aliases]
        if unknown:
            raise BusUnavailable(f"unknown actors {unknown}; known: {self.aliases}")
        try:
            self.fit_queues()
        except Exception as exc:  # the worker's own start-up says more; it retries
            log.warning("queue priorities not checked yet (%s)", exc)
        node = hostname or f"pipelinejobs-{os.getpid()}@{socket.gethostname()}"
        self.worker_info = {
            "node": node,
            "actors": aliases,
            "concurrency": concurrency,
            "pool": pool,
        }
        return {
            "queues": queues,
            "concurrency": concurrency,
            "pool": pool,
            "hostname": node,
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
