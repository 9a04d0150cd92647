"""The worker step's timer: cancelled time limits must not pile up; the reconciler's
pass repeats, jittered."""

from __future__ import annotations

import contextlib
import itertools
import time

from celery.utils.timer2 import Timer as ThreadedTimer
from kombu.asynchronous.timer import Timer

from pipelinejobs.adapters.bus.celery_steps import Jittered, drop_cancelled


def test_drop_cancelled_keeps_only_live_entries_in_order() -> None:
    timer = Timer()
    fired: list[int] = []
    entries = [timer.call_after(1000 + i, fired.append, (i,)) for i in range(1000)]
    for entry in entries[::2] + entries[1::4]:  # a task's end cancels its time limit
        entry.cancel()
    live = {i for i, e in enumerate(entries) if not e.canceled}

    assert drop_cancelled(timer) == 1000 - len(live)
    assert len(timer) == len(live)
    assert drop_cancelled(timer) == 0  # nothing left to drop

    # What remains is still a heap: it comes out in due order, every live entry once.
    assert [e[2].args[0] for e in timer.queue] == sorted(live)


def test_drop_cancelled_while_the_timer_iterates_keeps_firing() -> None:
    """Compaction runs as a timer callback: the iterator must go on over the same list."""
    timer = Timer()
    fired: list[int] = []
    for i in range(5):
        timer.call_after(0, fired.append, (i,))
        timer.call_after(0, fired.append, (100 + i,)).cancel()
    timer.call_after(0, drop_cancelled, (timer,), priority=-1)
    for _, entry in itertools.islice(iter(timer), 20):
        if entry is not None:
            timer.apply_entry(entry)
    assert sorted(fired) == [0, 1, 2, 3, 4]
    assert len(timer) == 0


def test_a_threaded_timer_is_left_alone() -> None:
    """Its heap is read by its own thread: nothing is compacted under it."""
    timer = ThreadedTimer()
    try:
        timer.call_after(1000, print).cancel()
        assert drop_cancelled(timer) == 0
    finally:
        timer.stop()


def test_the_reconciler_runs_again_and_again_jittered_until_cancelled() -> None:
    """Each wait is drawn between 3/4 of the interval and all of it; an error in a
    pass does not stop the next one; cancel stops it."""
    timer = Timer()
    ran: list[int] = []

    def job() -> None:
        ran.append(len(ran))
        if len(ran) == 2:
            raise RuntimeError("a bug in one pass")

    repeating = Jittered(timer, 100.0, job).start()
    waits = []
    for _ in range(5):
        [entry] = [e for e in timer.queue if e.entry is repeating.entry]  # the next run
        waits.append(entry.eta - time.monotonic())
        with contextlib.suppress(RuntimeError):
            entry.entry()  # what the timer does when its time comes
    assert ran == [0, 1, 2, 3, 4]
    assert all(74.0 <= w <= 100.0 for w in waits), waits
    assert len({round(w, 3) for w in waits}) > 1  # jittered, not a fixed period
    last = repeating.entry
    repeating.cancel()
    assert last.canceled
