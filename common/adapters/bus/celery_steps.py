"""What a worker does besides running tasks: Celery bootsteps for recovery.

Both run on the worker's own timer (its event loop for prefork), not on a thread of
ours, so a pool process is never forked while one of them holds a lock.

* :class:`Sweeps` (a worker step) runs :meth:`CeleryBus.check
  <pipelinejobs.adapters.bus.celery.CeleryBus.check>` every ``bus.check_interval`` s —
  a broker that lost its queues, executions lost in flight — and the backstop
  :meth:`CeleryBus.sweep <pipelinejobs.adapters.bus.celery.CeleryBus.sweep>` every
  ``bus.recover_interval`` s.
* :class:`Reconnected` (a consumer step) runs a check as soon as the worker's broker
  connection is up: at start, and again each time it comes back. Celery restarts the
  consumer's steps after a lost connection, once it has reconnected and declared the
  queues again, so this is the first moment a broker that came back empty can be
  seen — without waiting for the next tick, and whatever the signal (a reset
  connection, a failed poll) that made the consumer reconnect.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps


def _bus(app: Any) -> Any:
    """The CeleryBus an app belongs to, if it has one with recovery wired."""
    bus = getattr(app, "pipelinejobs_bus", None)
    return bus if bus is not None and bus.recovery is not None else None


class Sweeps(bootsteps.StartStopStep):
    """A worker step: the periodic checks and the backstop sweep."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.timer_refs: list[Any] = []
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        bus = _bus(worker.app)
        if bus is None:
            return
        for interval, job in (
            (bus.settings.check_interval, bus.check),
            (bus.settings.recover_interval, bus.sweep),
        ):
            if interval > 0:
                self.timer_refs.append(worker.timer.call_repeatedly(interval, job, priority=10))

    def stop(self, worker: Any) -> None:
        for ref in self.timer_refs:
            ref.cancel()
        self.timer_refs = []


class Reconnected(bootsteps.StartStopStep):
    """A consumer step: check the broker as soon as the connection is (back) up."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, consumer: Any) -> None:
        bus = _bus(consumer.app)
        if bus is not None and bus.settings.check_interval > 0:
            consumer.timer.call_after(0.0, bus.check, priority=10)
