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


def queue_name(alias: str) -> str:
    """One queue per actor: ``actor.<alias>``."""
    return f"actor.{alias}"


class Bus(ABC):
    """Publishes executions to actor queues."""

    @abstractmethod
    def publish(self, alias: str, execution_id: str, *, delay: float = 0.0) -> None:
        """Queue execution ``execution_id`` for actor ``alias`` (after ``delay`` s)."""

    def depth(self, alias: str) -> int | None:
        """Messages waiting in ``alias``'s queue (not those a worker holds); None when
        the backend cannot tell."""
        return None

    def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise BusUnavailable if the broker cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
