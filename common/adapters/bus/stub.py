"""An in-memory bus for tests: messages wait in a list until ``join()`` runs them.

Like dramatiq's StubBroker, ``join`` delivers every queued execution in the calling
thread, including the ones the actors send while it runs, until nothing is left —
so a test asserts on the outcome without sleeping — and re-raises an actor's
unexpected exception in the test (``fail_fast``), so a crash in a child execution
fails the test that caused it instead of hiding in an ERROR record. Delays are
ignored (ordered after the messages already waiting); so are priorities, which are
only recorded (``priorities``): ``join`` delivers in publishing order.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from pipelinejobs.adapters.bus.base import Bus
from pipelinejobs.domain.priority import DEFAULT_PRIORITY

Deliver = Callable[[str, str], object]


class StubBus(Bus):
    """Queues (alias, execution id) pairs until :meth:`join`."""

    def __init__(self) -> None:
        self.queue: collections.deque[tuple[str, str]] = collections.deque()
        self.published: list[tuple[str, str]] = []
        #: execution id -> the delay it was published with (when not 0).
        self.delays: dict[str, float] = {}
        #: execution id -> the priority it was last published with.
        self.priorities: dict[str, str] = {}
        self.deliver: Deliver | None = None
        self._lock = threading.Lock()
        #: execution id -> the unexpected exception its last delivery ended with.
        self._crashes: dict[str, Exception] = {}

    def publish(
        self, alias: str, execution_id: str, *, delay: float = 0.0, priority: str = DEFAULT_PRIORITY
    ) -> None:
        with self._lock:
            self.queue.append((alias, execution_id))
            self.published.append((alias, execution_id))
            self.priorities[execution_id] = priority
            if delay:
                self.delays[execution_id] = delay

    def depth(self, alias: str) -> int | None:
        with self._lock:
            return sum(1 for queued, _ in self.queue if queued == alias)

    def held(self) -> set[str] | None:
        return set()  # join delivers each message as it takes it: none is held

    def crashed(self, alias: str, execution_id: str, exc: Exception) -> None:
        with self._lock:
            self._crashes[execution_id] = exc

    def join(self, limit: int = 10_000, *, fail_fast: bool = True) -> int:
        """Deliver until the queue is empty; returns how many were delivered.

        With ``fail_fast`` (the default), an execution that ends in an unexpected
        exception (ERROR, InternalError) stops the join and that exception is raised
        here, traceback and all; the messages after it stay queued. Errors an actor
        raises on purpose (PipelineJobsError) are outcomes, not crashes: never raised.
        """
        if self.deliver is None:
            raise RuntimeError("StubBus.deliver is not connected to a runtime")
        count = 0
        while True:
            with self._lock:
                if not self.queue:
                    return count
                alias, execution_id = self.queue.popleft()
                self._crashes.pop(execution_id, None)  # an earlier delivery's
            self.deliver(alias, execution_id)
            count += 1
            with self._lock:
                crash = self._crashes.pop(execution_id, None)
            if crash is not None and fail_fast:
                raise crash
            if count >= limit:
                raise RuntimeError(
                    f"StubBus.join delivered {limit} messages without "
                    f"draining: is an actor sending in a loop?"
                )
