"""The bus interface: how an execution reaches the worker that runs its actor.

The bus carries only *which* execution to run (its id and actor); the message itself
is in the execution record, stored before publishing. A bus needs one thing —
publish — and may say how deep a queue is, answer a ping and close. Backends:
:mod:`pipelinejobs.adapters.bus.celery` (Celery on Redis, RabbitMQ, or kombu's
in-process memory transport) and :mod:`pipelinejobs.adapters.bus.stub` (an in-memory
queue drained by ``join()`` in the test's own thread).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

from pipelinejobs.domain.priority import DEFAULT_PRIORITY


def queue_name(alias: str) -> str:
    """One queue per actor: ``actor.<alias>``."""
    return f"actor.{alias}"


class Bus(ABC):
    """Publishes executions to actor queues."""

    @abstractmethod
    def publish(
        self, alias: str, execution_id: str, *, delay: float = 0.0, priority: str = DEFAULT_PRIORITY
    ) -> None:
        """Queue execution ``execution_id`` for actor ``alias`` (after ``delay`` s),
        ahead of lower-``priority`` messages waiting in the queue where the broker can
        (:mod:`pipelinejobs.domain.priority`; a backend may ignore it)."""

    def depth(self, alias: str) -> int | None:
        """Messages waiting in ``alias``'s queue (not those a worker holds); None when
        the backend cannot tell."""
        return None

    def held(self) -> set[str] | None:
        """Ids of the executions whose message a worker holds — reserved, delayed
        until a retry is due, or running — and has not acknowledged; None when the
        backend cannot tell. With :meth:`depth`, what tells a lost message from one
        still on its way (:mod:`pipelinejobs.runtime.recovery`)."""
        return None

    def crashed(self, alias: str, execution_id: str, exc: Exception) -> None:  # noqa: B027
        """The dispatch boundary caught an unexpected exception delivering
        ``execution_id`` (the execution is ERROR, InternalError, and the worker log has
        the traceback). Nothing to do for a broker; the stub bus keeps it so that its
        ``join`` re-raises it in the test (dramatiq's StubBroker)."""

    def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise BusUnavailable if the broker cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class Recoverer(Protocol):
    """What a worker's bus calls to re-publish lost executions, and when
    (:class:`pipelinejobs.runtime.recovery.Recovery` is the one there is)."""

    def sweep(self, aliases: list[str]) -> object:
        """The backstop, every ``bus.recover_interval`` s."""

    def quick_sweep(self, aliases: list[str]) -> object:
        """Every ``bus.check_interval`` s, and when the broker connection comes back."""

    def after_loss(self, aliases: list[str], since: float) -> object:
        """The broker lost its messages at ``since`` (epoch seconds)."""

    def age(self, aliases: list[str]) -> object:
        """Every ``bus.check_interval`` s: publish long-waiting executions one
        priority level up (``bus.priority_age``)."""


class Reconciling(Protocol):
    """What a worker's timer runs every ``interval`` s, jittered
    (:class:`pipelinejobs.runtime.reconciler.Reconciler` is the one there is)."""

    @property
    def interval(self) -> float:
        """Seconds between passes; 0: never."""

    def tick(self) -> object:
        """One pass; never raises an outage into the timer."""


class Heartbeat(Protocol):
    """What a worker's bus calls every ``bus.heartbeat_interval`` s to say the worker
    is alive (:class:`pipelinejobs.observability.heartbeats.Heartbeat` is the one
    there is). ``worker``: ``node``, ``actors``, ``concurrency``, ``pool``."""

    def beat(self, worker: Mapping[str, Any]) -> object:
        """The worker is alive now."""

    def stop(self, worker: Mapping[str, Any]) -> object:
        """The worker is stopping."""
