"""What a worker does besides running tasks: Celery bootsteps for recovery.

Both run on the worker's own timer (its event loop for prefork), not on a thread of
ours, so a pool process is never forked while one of them holds a lock.

* :class:`Sweeps` (a worker step) runs :meth:`CeleryBus.check
  <pipelinejobs.adapters.bus.celery.CeleryBus.check>` every ``bus.check_interval`` s —
  a broker that lost its queues, executions lost in flight — and the backstop
  :meth:`CeleryBus.sweep <pipelinejobs.adapters.bus.celery.CeleryBus.sweep>` every
  ``bus.recover_interval`` s, and records the worker's heartbeat
  (:meth:`CeleryBus.beat <pipelinejobs.adapters.bus.celery.CeleryBus.beat>`) at start,
  every ``bus.heartbeat_interval`` s and as it stops.
* The same step runs the reconciler's pass (:mod:`pipelinejobs.runtime.reconciler`:
  deadlines, heartbeats, lost supervisors) every ``reconciler.interval`` s, each wait
  drawn between 3/4 of it and all of it (:class:`Jittered`), so the workers started
  together by a deployment do not all sweep in the same instant; their overlaps are
  harmless anyway (every effect of a pass is keyed).
* The same step drops cancelled entries from the worker's timer every
  :data:`COMPACT_EVERY` s (:func:`drop_cancelled`): see there why a worker's memory
  would otherwise grow with its task rate for a whole time limit.
* :class:`Reconnected` (a consumer step) runs a check as soon as the worker's broker
  connection is up: at start, and again each time it comes back. Celery restarts the
  consumer's steps after a lost connection, once it has reconnected and declared the
  queues again, so this is the first moment a broker that came back empty can be
  seen — without waiting for the next tick, and whatever the signal (a reset
  connection, a failed poll) that made the consumer reconnect.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

from celery import bootsteps

#: Seconds between two :func:`drop_cancelled` passes over the worker's timer.
COMPACT_EVERY = 30.0


def drop_cancelled(timer: Any) -> int:
    """Remove the cancelled entries from a kombu timer's heap; how many went.

    The prefork pool arms each task's hard time limit as an entry on the worker's
    event-loop timer, and *cancels* it when the task ends — but kombu's timer only
    drops a cancelled entry when its time comes. With ``time_limit`` 1,830 s and 100
    tasks/s that is ~180k dead entries (~100 MiB) held in the worker's main process,
    growing for half an hour: a soak reads it as a leak. Compacting the heap in place
    (the timer's iterator holds the same list) keeps it to the live entries. A timer
    without a heap (the threaded one, no event loop) has nothing to compact.
    """
    queue = getattr(timer, "_queue", None)
    if not isinstance(queue, list):
        return 0
    live = [event for event in queue if not getattr(event[2], "canceled", False)]
    dropped = len(queue) - len(live)
    if dropped:
        heapq.heapify(live)
        queue[:] = live
    return dropped


class Jittered:
    """Runs ``job`` on a kombu ``timer`` again and again, waiting between 3/4 of
    ``interval`` and all of it before each run (the first too); ``cancel`` stops it."""

    def __init__(self, timer: Any, interval: float, job: Any) -> None:
        self.timer, self.interval, self.job = timer, interval, job
        self.entry: Any = None
        self.cancelled = False

    def start(self) -> Jittered:
        self._schedule()
        return self

    def _schedule(self) -> None:
        if not self.cancelled:
            wait = self.interval * random.uniform(0.75, 1.0)
            self.entry = self.timer.call_after(wait, self._run, priority=10)

    def _run(self) -> None:
        try:
            self.job()
        finally:
            self._schedule()

    def cancel(self) -> None:
        self.cancelled = True
        if self.entry is not None:
            self.entry.cancel()


def _bus(app: Any) -> Any:
    """The CeleryBus an app belongs to, if it has one with recovery wired."""
    bus = getattr(app, "pipelinejobs_bus", None)
    return bus if bus is not None and bus.recovery is not None else None


class Sweeps(bootsteps.StartStopStep):
    """A worker step: the periodic checks, the backstop sweep, the timer's compaction."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.timer_refs: list[Any] = []
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        timer = worker.timer
        self.timer_refs.append(
            timer.call_repeatedly(COMPACT_EVERY, drop_cancelled, (timer,), priority=10)
        )
        bus = _bus(worker.app)
        if bus is None:
            return
        if bus.settings.heartbeat_interval > 0:
            bus.beat()  # seen from the start, not one interval later
        for interval, job in (
            (bus.settings.check_interval, bus.check),
            (bus.settings.recover_interval, bus.sweep),
            (bus.settings.heartbeat_interval, bus.beat),
        ):
            if interval > 0:
                self.timer_refs.append(worker.timer.call_repeatedly(interval, job, priority=10))
        reconciler = bus.reconciler
        if reconciler is not None and reconciler.interval > 0:
            self.timer_refs.append(Jittered(timer, reconciler.interval, reconciler.tick).start())

    def stop(self, worker: Any) -> None:
        for ref in self.timer_refs:
            ref.cancel()
        self.timer_refs = []
        bus = _bus(worker.app)
        if bus is not None and bus.settings.heartbeat_interval > 0:
            bus.beat(stopping=True)

    def terminate(self, worker: Any) -> None:
        """A cold shutdown (and the embedded worker's) stops it the same way: a
        StartStopStep's own ``terminate`` would only look for an ``obj`` to stop."""
        self.stop(worker)


class Reconnected(bootsteps.StartStopStep):
    """A consumer step: check the broker as soon as the connection is (back) up."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, consumer: Any) -> None:
        bus = _bus(consumer.app)
        if bus is not None and bus.settings.check_interval > 0:
            consumer.timer.call_after(0.0, bus.check, priority=10)
