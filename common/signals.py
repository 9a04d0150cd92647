"""Named signals: what the lower layers announce, for whoever listens (metrics).

The domain, access and store code must not import a metrics library (the layers
test forbids it, and a rule of a job's lifecycle has no business knowing about
Prometheus), yet the interesting counts happen there: an event applied or refused,
a compare-and-set that lost a race, a nonce spent. So each of those places *sends* a
:class:`Signal`, and :mod:`pipelinejobs.observability` connects its counters to them
(Flask's and Celery's ``signals`` modules, blinker-style, without the dependency).

A signal with no receiver costs one empty-list check. Receivers are called in the
sender's thread, synchronously, with keyword arguments only; one that raises is
logged and skipped — observing must never change what is observed (an event whose
counter failed is still applied). Receivers are process-wide, like the metrics they
feed; tests disconnect what they connect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pipelinejobs.signals")

Receiver = Callable[..., object]


class Signal:
    """A named point that receivers can listen to."""

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        self._receivers: tuple[Receiver, ...] = ()
        self._lock = threading.Lock()

    def connect(self, receiver: Receiver) -> Receiver:
        """Call ``receiver(**details)`` on every :meth:`send` (once, however often it
        is connected); returns it, so this can decorate."""
        with self._lock:
            if receiver not in self._receivers:
                self._receivers = (*self._receivers, receiver)
        return receiver

    def disconnect(self, receiver: Receiver) -> None:
        with self._lock:
            self._receivers = tuple(r for r in self._receivers if r != receiver)

    @property
    def receivers(self) -> tuple[Receiver, ...]:
        return self._receivers

    def send(self, **details: Any) -> None:
        """Tell every receiver. The tuple is replaced, never mutated, so a send never
        races a connect."""
        for receiver in self._receivers:
            # The dispatch point of observers: a broken observer is logged, and what
            # it observed goes on (the module docstring says why).
            try:
                receiver(**details)
            except Exception:
                log.exception("receiver %r of signal %s failed", receiver, self.name)

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"


event_applied = Signal(
    "event_applied",
    "A lifecycle event was applied to a job: ``event`` (its name), ``state`` (the "
    "state it led to). Sent by :meth:`pipelinejobs.domain.jobs.Jobs.apply`.",
)
event_refused = Signal(
    "event_refused",
    "A lifecycle event was not applied: ``event``, ``reason`` (the error's class "
    "name: TransitionRefused, PermissionDenied...). Outages are not refusals and are "
    "not sent.",
)
event_duplicate = Signal(
    "event_duplicate",
    "A redelivered event was recognised and not applied again: ``event``.",
)
cas_conflict = Signal(
    "cas_conflict",
    "A compare-and-set lost its race to a concurrent writer and will retry: ``collection``.",
)
cas_gave_up = Signal(
    "cas_gave_up",
    "A compare-and-set lost its race ``store.cas_retries`` times in a row and gave up "
    "(TooManyConflicts): ``collection``.",
)
nonce_redeemed = Signal(
    "nonce_redeemed",
    "A request used a nonce: ``actor`` (its alias), ``outcome`` (``redeemed`` or the "
    "refusal's class name).",
)
files_indexed = Signal(
    "files_indexed",
    "The indexer wrote a batch: ``seen`` files listed and ``indexed`` file records "
    "written since its previous batch.",
)
job_overdue = Signal(
    "job_overdue",
    "A reconciler sent a ``fail`` to a job that ran out of time: ``kind`` (``deadline``, "
    "``heartbeat``) or whose supervisor was lost (``lost``). Overlapping reconcilers "
    "may both send one; the job's history holds one.",
)
