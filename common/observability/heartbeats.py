"""Worker heartbeats: which worker processes are alive, what they consume, since when.

The broker cannot say who is consuming (Redis keeps no list of consumers, and the
workers run without Celery's gossip and heartbeats, which cost a message per worker
per second), and an operator's first question is "is anything running my actor?".
So each worker's main process — and the embedded server's in-process runtime —
rewrites one record in the store's ``workers`` collection every
``bus.heartbeat_interval`` s, from the worker's own timer
(:class:`~pipelinejobs.adapters.bus.celery_steps.Sweeps`)::

    {"id": "node1:4242", "hostname": "node1", "pid": 4242, "kind": "worker",
     "node": "pipelinejobs-4242@node1", "actors": ["jobs-manager"],
     "concurrency": 4, "pool": "prefork",
     "started": "2026-11-30T07:00:00.000Z", "last_seen": "2026-11-30T07:20:05.000Z"}

A write is an upsert of the whole record by its key (``<hostname>:<pid>``), so
writing it twice, or from a retried timer tick, changes nothing but ``last_seen``.
A worker stopping cleanly writes ``stopped``; one that died just stops being seen.
:func:`recent_workers` is what the console's overview (and the ``workers_seen``
gauge) reads: the records seen within a window, newest first. Records of workers
gone for a day are removed when a worker starts (:func:`prune`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from pipelinejobs.adapters.store.base import Document, Range, Store
from pipelinejobs.domain.clock import Clock, iso, now, system_clock

log = logging.getLogger("pipelinejobs.workers")

COLLECTION = "workers"
#: Records not seen for this long (s) are removed when a worker starts.
FORGET_AFTER = 86400.0
#: The most records :func:`recent_workers` returns (a deployment has far fewer).
LIMIT = 1000


class Heartbeat:
    """The heartbeat record of this process: ``kind`` is ``worker`` (``pipelinejobs
    worker``) or ``embedded`` (the embedded server's runtime)."""

    def __init__(
        self,
        store: Store,
        *,
        kind: str = "worker",
        clock: Clock = system_clock,
        hostname: str | None = None,
    ) -> None:
        self.store = store
        self.kind = kind
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self.started = now(clock)
        self._pruned = False

    @property
    def id(self) -> str:
        """``<hostname>:<pid>`` of the process beating now (a fork has its own)."""
        return f"{self.hostname}:{os.getpid()}"

    def record(self, worker: Mapping[str, Any], *, stopped: bool = False) -> Document:
        """The record for ``worker`` (``node``, ``actors``, ``concurrency``, ``pool``:
        what the bus knows of the worker it runs)."""
        date = now(self.clock)
        doc: Document = {
            "id": self.id,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "kind": self.kind,
            "node": str(worker.get("node") or self.id),
            "actors": sorted(str(a) for a in worker.get("actors") or ()),
            "concurrency": int(worker.get("concurrency") or 0),
            "pool": str(worker.get("pool") or ""),
            "started": self.started,
            "last_seen": date,
        }
        if stopped:
            doc["stopped"] = date
        return doc

    def beat(self, worker: Mapping[str, Any]) -> Document:
        """Record that the worker is alive now; the record written. The first beat
        also forgets workers long gone."""
        if not self._pruned:
            self._pruned = True
            forgotten = prune(self.store, FORGET_AFTER, clock=self.clock)
            if forgotten:
                log.info("forgot %d worker record(s) not seen for a day", forgotten)
        doc = self.record(worker)
        self.store.put_many(COLLECTION, [doc])
        return doc

    def stop(self, worker: Mapping[str, Any]) -> Document:
        """Record that the worker stopped (cleanly); the record written."""
        doc = self.record(worker, stopped=True)
        self.store.put_many(COLLECTION, [doc])
        return doc


def recent_workers(
    store: Store, within_seconds: float = 30.0, *, clock: Clock = system_clock
) -> list[Document]:
    """The workers whose heartbeat is at most ``within_seconds`` old, most recently
    seen first (stopped ones too, with their ``stopped`` date: the console may show
    a worker that just stopped)."""
    since = iso(clock() - within_seconds)
    page = store.find(
        COLLECTION,
        {"last_seen": Range(gte=since)},
        order="last_seen",
        descending=True,
        limit=LIMIT,
    )
    return page.items


def prune(store: Store, older_than_seconds: float, *, clock: Clock = system_clock) -> int:
    """Remove the records not seen for ``older_than_seconds``; how many."""
    before = iso(clock() - older_than_seconds)
    page = store.find(COLLECTION, {"last_seen": Range(lt=before)}, order="last_seen", limit=LIMIT)
    return sum(store.delete(COLLECTION, doc["id"]) for doc in page.items)
