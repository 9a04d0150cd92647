"""A watchdog thread that interrupts another thread at a deadline.

CPython can raise an exception in another thread
(``PyThreadState_SetAsyncExc``): it lands at the next bytecode that thread runs, so
it interrupts Python code anywhere — a loop, between two store calls — but not a
call blocked in C until that call returns. dramatiq's TimeLimit middleware works the
same way. The hard part is never letting it land *after* the work it was meant for:
the watchdog fires a deadline and forgets it in one step under its lock, and
:meth:`Watchdog.disarm`, under the same lock, either forgets it first (it can no longer
fire) or finds it fired and cancels the exception if it has not landed yet. Either
way, when ``disarm`` returns nothing is pending, and its answer says whether the
deadline passed.

The exception raised in the thread is :class:`Interrupted`, a ``BaseException`` like
``KeyboardInterrupt``, so the ``except Exception`` of library code (a driver turning
every failure into its own error) does not swallow it; only ``finally`` blocks and
context managers run. It never escapes: ``disarm`` reports it, and the
:class:`~pipelinejobs.runtime.middleware.TimeLimit` middleware raises
:class:`~pipelinejobs.errors.TimeLimitExceeded` in its place.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import os
import threading
import time

log = logging.getLogger("pipelinejobs.delivery")


class Interrupted(BaseException):  # noqa: N818 - a signal between two threads, not an error
    """Raised in a thread by the watchdog at its deadline; reported by ``disarm``."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> int:
    """Raise ``exc`` in thread ``thread_id`` (None: cancel one not yet raised)."""
    what = ctypes.py_object(exc) if exc is not None else None  # None: a NULL pointer
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), what))


class Watchdog:
    """Deadlines for threads; one daemon thread per process fires them."""

    def __init__(self) -> None:
        self._tokens = itertools.count(1)
        self._pid = -1
        self._starting = threading.Lock()
        self._cond = threading.Condition()
        #: token -> (monotonic deadline, thread id)
        self._armed: dict[int, tuple[float, int]] = {}
        #: When the thread wakes next (it may wake early, never late). A deadline
        #: later than that needs no wake-up: the usual case, one limit for every
        #: delivery, costs a lock and a dict entry, and no thread switch.
        self._wake_at = math.inf

    def arm(self, seconds: float) -> int:
        """Interrupt the calling thread in ``seconds`` unless disarmed; a token."""
        self._started()
        token = next(self._tokens)
        deadline = time.monotonic() + seconds
        with self._cond:
            self._armed[token] = (deadline, threading.get_ident())
            if deadline < self._wake_at:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Stop the deadline ``token`` of the calling thread; True if it had fired.

        Called by the thread that armed it. When it returns, no interruption of this
        thread is pending (see the module docstring).
        """
        try:
            with self._cond:
                forgotten = self._armed.pop(token, None) is not None
            if forgotten:
                return False
            _raise_in(threading.get_ident(), None)  # fired: cancel it if still pending
        except Interrupted:  # it landed here, before it could be cancelled
            pass
        return True

    def _started(self) -> None:
        """Start the thread in this process (again in a forked child: threads do not
        survive a fork, and a lock held at the fork would never be released)."""
        if self._pid == os.getpid():
            return
        with self._starting:
            if self._pid == os.getpid():
                return
            self._cond = cond = threading.Condition()
            self._armed = {}
            self._wake_at = math.inf
            thread = threading.Thread(
                target=self._run, args=(cond,), name="pipelinejobs-watchdog", daemon=True
            )
            thread.start()
            self._pid = os.getpid()

    def _run(self, cond: threading.Condition) -> None:
        while True:
            with cond:
                now = time.monotonic()
                for token, (deadline, thread_id) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[token]  # fired and forgotten in one step
                        if _raise_in(thread_id, Interrupted) != 1:
                            log.error("thread %s of a timed-out delivery is gone", thread_id)
                nearest = min((d for d, _ in self._armed.values()), default=math.inf)
                self._wake_at = nearest
                cond.wait(None if nearest == math.inf else max(nearest - now, 0.001))
