"""What ``/metrics`` reads from the store and the broker when it is scraped.

Jobs per state, queue depth per actor, executions waiting or running and workers
seen are facts about the *system*, not about one process: counting them in each
process (a gauge moved up and down by whoever changes a job) would need every
process's files to agree, and would drift with every crash. They are read where
they are kept, at scrape time, by the gateway process answering the scrape — a
custom collector, as the prometheus_client documentation advises.

Cheap at any size: each count is one indexed count per value (``count`` of jobs in
one state walks the ``(state, created)`` index's range, not the documents), the queue
depth one ``LLEN``-like call per actor, and everything read is kept for
``metrics.cache_ttl`` s, so however many scrapers (or visitors of an open
``/metrics``) ask, the store answers one round per interval. A store or broker that
does not answer leaves its gauges out and sets ``pipelinejobs_up{source}`` to 0,
instead of failing the whole page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from pipelinejobs.adapters.bus.base import Bus
from pipelinejobs.adapters.store.base import Store
from pipelinejobs.domain.clock import Clock, system_clock
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.errors import PipelineJobsError
from pipelinejobs.observability.heartbeats import recent_workers
from pipelinejobs.observability.metrics import PREFIX

log = logging.getLogger("pipelinejobs.metrics")

#: The execution statuses that are work still to do (the runtime's SUBMITTED and
#: RUNNING: this layer sits below the runtime and names them itself).
PENDING = ("SUBMITTED", "RUNNING")
#: A worker counts as alive if seen within this many heartbeat intervals.
ALIVE_BEATS = 3


class SystemCollector:
    """Gauges of the whole system, read at scrape time (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        bus: Bus | None,
        actors: Sequence[str],
        *,
        ttl: float = 5.0,
        heartbeat_interval: float = 5.0,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.bus = bus
        self.actors = list(actors)
        self.ttl = ttl
        self.alive_within = max(heartbeat_interval, 1.0) * ALIVE_BEATS
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterable[Metric]:
        """The gauges, read afresh at most once per ``ttl`` seconds."""
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return list(self._cached[1])
            families = self._read()
            self._cached = (now, families)
            return list(families)

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily(
            PREFIX + "up",
            "Whether the store and the broker answered this scrape's reads (1) or not (0).",
            labels=["source"],
        )
        families: list[Metric] = []
        try:
            families += [self._jobs(), self._pending(), self._workers()]
            up.add_metric(["store"], 1)
        except PipelineJobsError as exc:
            log.warning("metrics: the store did not answer (%s)", exc.message)
            up.add_metric(["store"], 0)
        depth, answered = self._depth()
        if depth is not None:
            families.append(depth)
            up.add_metric(["broker"], 1 if answered else 0)
        return [*families, up]

    def _jobs(self) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "jobs", "Jobs in each lifecycle state.", labels=["state"]
        )
        for state in State:
            family.add_metric([state.value], self._count("jobs", {"state": state.value}))
        return family

    def _pending(self) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "executions_pending",
            "Executions not finished, by actor and status (SUBMITTED: waiting for a "
            "worker or a retry, RUNNING: a worker is on it).",
            labels=["actor", "status"],
        )
        for status in PENDING:
            by_actor = self.store.count("executions", {"status": status}, group_by="actor")
            assert isinstance(by_actor, dict)
            for actor in self.actors:
                family.add_metric([actor, status], by_actor.get(actor, 0))
        return family

    def _workers(self) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "workers",
            "Worker processes (and embedded runtimes) consuming each actor, as seen by "
            "their heartbeats in the last few intervals.",
            labels=["actor"],
        )
        seen = {actor: 0 for actor in self.actors}
        for worker in recent_workers(self.store, self.alive_within, clock=self.clock):
            if worker.get("stopped"):
                continue
            for actor in worker.get("actors") or ():
                if actor in seen:
                    seen[actor] += 1
        for actor, n in seen.items():
            family.add_metric([actor], n)
        return family

    def _depth(self) -> tuple[Metric | None, bool]:
        """The queue-depth gauge and whether every depth was known; (None, False)
        without a bus or one that cannot tell at all."""
        if self.bus is None:
            return None, False
        family = GaugeMetricFamily(
            PREFIX + "queue_depth",
            "Messages waiting in each actor's queue on the broker (not those a worker holds).",
            labels=["actor"],
        )
        answered = True
        for actor in self.actors:
            depth = self.bus.depth(actor)
            if depth is None:
                answered = False
                continue
            family.add_metric([actor], depth)
        return family, answered

    def _count(self, collection: str, where: dict[str, Any]) -> int:
        counted = self.store.count(collection, where)
        assert isinstance(counted, int)
        return counted
