"""An in-memory bus for tests: messages wait in a list until ``join()`` runs them.

Like dramatiq's StubBroker, ``join`` delivers every queued execution in the calling
thread, including the ones the actors send while it runs, until nothing is left —
so a test asserts on the outcome without sleeping. Delays are ignored (ordered
after the messages already waiting).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from pipelinejobs.adapters.bus.base import Bus

Deliver = Callable[[str, str], object]


class StubBus(Bus):
    """Queues (alias, execution id) pairs until :meth:`join`."""

    def __init__(self) -> None:
        self.queue: collections.deque[tuple[str, str]] = collections.deque()
        self.published: list[tuple[str, str]] = []
        self.deliver: Deliver | None = None
        self._lock = threading.Lock()

    def publish(self, alias: str, execution_id: str, *, delay: float = 0.0) -> None:
        with self._lock:
            self.queue.append((alias, execution_id))
            self.published.append((alias, execution_id))

    def depth(self, alias: str) -> int | None:
        with self._lock:
            return sum(1 for queued, _ in self.queue if queued == alias)

    def join(self, limit: int = 10_000) -> int:
        """Deliver until the queue is empty; returns how many were delivered."""
        if self.deliver is None:
            raise RuntimeError("StubBus.deliver is not connected to a runtime")
        count = 0
        while True:
            with self._lock:
                if not self.queue:
                    return count
                alias, execution_id = self.queue.popleft()
            self.deliver(alias, execution_id)
            count += 1
            if count >= limit:
                raise RuntimeError(
                    f"StubBus.join delivered {limit} messages without "
                    f"draining: is an actor sending in a loop?"
                )
