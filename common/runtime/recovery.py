"""Recovery: re-publishing executions whose message was lost.

An execution is stored before its message is published, so a message lost anywhere
leaves its execution SUBMITTED: the publisher died in between; kombu's Redis
transport popped it and the worker was killed before recording it as unacknowledged;
the broker restarted without its data. Re-publishing is all recovery needs: delivery
is at least once and effects are idempotent, so an execution published twice runs
once (a redelivery of a finished one is skipped).

Three ways to find them, quickest first (the Celery bus calls them: see
:mod:`pipelinejobs.adapters.bus.celery_steps`):

* :meth:`Recovery.after_loss` — the broker lost its queues (a Redis restarted empty
  or flushed: the bus finds its sentinel key gone). Every SUBMITTED execution last
  touched before the loss is re-published at once, whatever the queues hold now.
* :meth:`Recovery.quick_sweep` — every ``bus.check_interval`` s: SUBMITTED for more
  than ``bus.lost_after`` s, its actor's queue empty, and its message held by no
  worker (reserved, delayed or running: Redis lists them; a broker that cannot say
  is not swept this way — RabbitMQ and the in-process broker keep their messages).
* :meth:`Recovery.sweep` — every ``bus.recover_interval`` s, and at start-up:
  SUBMITTED for more than ``bus.recover_after`` s and its actor's queue empty. The
  backstop: it needs nothing from the broker but a queue's depth.

Each execution is claimed with a compare-and-set before it is published, so workers
sweeping at once publish it once, and it is not taken again before its age passes
anew; one waiting out a retry's back-off is left alone until it is due.

:meth:`Recovery.age` is not about lost messages but about starvation: a broker serves
priorities strictly, so a low-priority message waits as long as higher ones keep
coming. One still SUBMITTED ``bus.priority_age`` s after it was published is published
again one level up (claimed the same way). Its first message stays in the lower
queue; taken later, it finds the execution finished and is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pipelinejobs.domain.clock import iso, now
from pipelinejobs.domain.priority import promoted
from pipelinejobs.runtime.executions import RUNNING, SUBMITTED
from pipelinejobs.runtime.quarantine import OUTAGES, RECORD_ERRORS

if TYPE_CHECKING:  # pragma: no cover
    from pipelinejobs.runtime.dispatch import Runtime

log = logging.getLogger("pipelinejobs.runtime")

#: Redis reports its uptime in whole seconds: an execution touched within this long
#: after the restart may have been lost with it, so it is re-published too.
LOSS_MARGIN = 1.0

Held = Callable[[], "set[str] | None"]


class Recovery:
    """Finding and re-publishing a runtime's orphaned executions."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def sweep(self, aliases: list[str]) -> list[str]:
        """The backstop: SUBMITTED past ``bus.recover_after`` s, queue empty."""
        return self.recover(aliases, idle_only=True)

    def quick_sweep(self, aliases: list[str]) -> list[str]:
        """SUBMITTED past ``bus.lost_after`` s, queue empty, no worker holding its
        message; nothing when the broker cannot say what workers hold."""
        bus = self.runtime.bus
        if bus is None:
            return []
        found = self.recover(
            aliases, older_than=self.runtime.config.bus.lost_after, idle_only=True, held=bus.held
        )
        if found:
            log.warning("re-published %d execution(s) lost in flight", len(found))
        return found

    def age(self, aliases: list[str]) -> list[str]:
        """Publish again one level up every low or medium execution of ``aliases``
        SUBMITTED and untouched for ``bus.priority_age`` s (not one waiting out a
        retry's back-off); returns their ids. Its stored priority moves up with it (a
        re-publish keeps it), and its ``updated`` is the claim's, so medium becomes
        high only after another ``priority_age`` s."""
        rt = self.runtime
        after = rt.config.bus.priority_age
        if after <= 0 or rt.bus is None or not aliases:
            return []
        due = iso(rt.clock() - after)
        aged = []
        for execution in rt.executions.stale(older_than=after, actors=list(aliases)).items:
            up = promoted(execution.get("priority"))
            if up is None or str(execution.get("retry_at") or "") > due:
                continue
            claimed = rt.store.update(
                rt.executions.collection,
                execution["id"],
                version=execution["version"],
                set={"priority": up, "updated": now(rt.clock),
                     "aged": int(execution.get("aged", 0)) + 1},
            )  # fmt: skip
            if claimed is None:
                continue  # another worker aged it, or it started
            rt.publish(execution["actor"], execution["id"], priority=up)
            aged.append(execution["id"])
        if aged:
            log.info("published %d long-waiting execution(s) one priority up", len(aged))
        return aged

    def after_loss(self, aliases: list[str], since: float) -> list[str]:
        """The broker lost its messages at ``since`` (a time on this runtime's clock):
        re-publish every SUBMITTED execution of ``aliases`` last touched before then
        (or within :data:`LOSS_MARGIN` s after)."""
        older_than = max(self.runtime.clock() - since - LOSS_MARGIN, 0.0)
        bus = self.runtime.bus

        def held() -> set[str]:  # after a loss, a broker that cannot tell holds nothing
            return (bus.held() if bus is not None else None) or set()

        found = self.recover(aliases, older_than=older_than, held=held)
        log.warning(
            "the broker lost its queues; re-published %d execution(s) of %s",
            len(found),
            ", ".join(aliases),
        )
        return found

    def recover(
        self,
        aliases: Iterable[str] | None = None,
        *,
        older_than: float | None = None,
        include_running: bool = False,
        idle_only: bool = False,
        held: Held | None = None,
    ) -> list[str]:
        """Re-publish executions orphaned by a crash; returns their ids.

        SUBMITTED ones not touched for ``older_than`` s (default ``bus.recover_after``)
        were stored but never published or their message was lost. RUNNING ones (only
        with ``include_running``, for a broker that forgets, like the in-process one)
        were taken by a worker that died. With ``idle_only``, an actor whose queue
        still holds messages is skipped: its SUBMITTED executions may just be waiting
        their turn. ``held`` (asked only when there are candidates) lists the
        executions whose message a worker holds, which are left alone; when it
        answers None (the broker cannot tell), nothing is recovered.

        Each is handled on its own: one that cannot be read is quarantined, one that
        is readable but cannot be claimed (a field missing or of the wrong type) is
        closed as ERROR, and the others are recovered all the same.
        """
        rt = self.runtime
        age = rt.config.bus.recover_after if older_than is None else older_than
        statuses = (SUBMITTED, RUNNING) if include_running else (SUBMITTED,)
        wanted = list(aliases) if aliases else list(rt.actors)
        if idle_only and rt.bus is not None:  # a queue it cannot see into is not idle
            wanted = [a for a in wanted if rt.bus.depth(a) == 0]
        if not wanted:
            return []
        due = iso(rt.clock() - age)
        stale = rt.executions.stale(older_than=age, statuses=statuses, actors=wanted)
        for corrupt in stale.skipped:
            rt.quarantine.corrupt(corrupt)
        holding: set[str] = set()
        if held is not None and stale.items:
            answer = held()
            if answer is None:
                return []
            holding = answer
        recovered = []
        for execution in stale.items:
            try:
                if execution["id"] in holding:
                    continue  # a worker has its message: reserved, delayed or running
                if str(execution.get("retry_at") or "") > due:
                    continue  # a retry waiting for its back-off: its message is in a worker
                if rt.executions.claim_recovery(execution) is None:
                    continue
                log.warning(
                    "re-publishing orphaned execution %s (%s, %s)",
                    execution["id"],
                    execution["actor"],
                    execution["status"],
                )
                rt.publish(execution["actor"], execution["id"], priority=execution.get("priority"))
            except OUTAGES:
                raise
            except RECORD_ERRORS as exc:
                rt.quarantine.execution(execution["id"], exc)
                continue
            recovered.append(execution["id"])
        return recovered
