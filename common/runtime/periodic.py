"""Periodic work once per period across workers (DESIGN §6).

Every worker runs the periodic passes on its own timer (no beat to deploy, no leader
to elect and fail over); before a pass, it claims the current period — the wall
clock divided into ``interval``-second slots — on one store record per kind of work,
by compare-and-set. The first worker to claim a period does that period's work; the
others find it claimed and skip it. A worker's timer fires at most ``interval`` s
apart, so every period has a claimant while any worker runs, and if the claimant
dies mid-pass the next period's claimant picks the work up. The work itself stays
keyed (a redelivered or overlapping effect is a duplicate), so the claim saves
redundant passes; it is not what makes them correct.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from pipelinejobs.adapters.store.base import Store
from pipelinejobs.domain.clock import iso
from pipelinejobs.errors import DuplicateDocument

COLLECTION = "periodic"


def worker_name() -> str:
    """This process, as a claim records it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(store: Store, name: str, interval: float, clock: Callable[[], float]) -> bool:
    """Whether this caller is the one to do ``name``'s work for the current period
    (True at most once per period across every caller sharing ``store``)."""
    if interval <= 0:
        return False
    moment = clock()
    period = int(moment // interval)
    mark = {"period": period, "by": worker_name(), "at": iso(moment)}
    record = store.get(COLLECTION, name)
    if record is None:
        try:
            store.insert(COLLECTION, {"id": name, **mark})
            return True
        except DuplicateDocument:  # another worker made it first
            record = store.get(COLLECTION, name)
            if record is None:
                return False
    if int(record.get("period", -1)) >= period:
        return False
    return store.update(COLLECTION, name, version=record["version"], set=mark) is not None
