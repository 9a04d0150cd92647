"""Posting webhook deliveries over HTTP: one pool of kept-alive connections per
runtime (made on first use, closed with the runtime).

urllib3's pool manager rather than requests' sessions: thread-safe (the notifier runs
on several threads), about a third of the CPU per request, and it takes no proxy or
``.netrc`` credentials from the environment. Redirects are never followed: a 3xx is
an answer like any other, so a receiver cannot send the request on to another host.
Only the status of an answer matters: at most :data:`MAX_ANSWER` bytes of its body are
read (undecoded — no gzip bomb), and a connection whose answer was longer is dropped
rather than reused.

:meth:`WebhookSender.each` runs one function per receiver on a small thread pool: a
notifier execution's deliveries to several subscriptions wait on several receivers
at once instead of one after another — the worker's time per notice is then about
one round trip, not one per subscription (and one slow receiver no longer delays
the others by its timeout).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

import urllib3

#: Most bytes of a receiver's answer read.
MAX_ANSWER = 65536
#: Most deliveries one process makes at once.
PARALLEL = 8

T = TypeVar("T")
R = TypeVar("R")


class WebhookSender:
    """POSTs bodies to receivers; one per runtime."""

    def __init__(self) -> None:
        self._pools: dict[float, urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self._threads_pid = 0

    def each(self, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``work(item)`` for every item, at most :data:`PARALLEL` at once; the results
        in the items' order (the first exception raised, after all have ended)."""
        todo = list(items)
        if len(todo) <= 1:
            return [work(item) for item in todo]
        with self._lock:
            if self._threads is None or self._threads_pid != os.getpid():  # new, or forked
                self._threads = ThreadPoolExecutor(PARALLEL, thread_name_prefix="webhooks")
                self._threads_pid = os.getpid()
            threads = self._threads
        futures = [threads.submit(work, item) for item in todo]
        wait(futures)  # all of them, even when one failed: the caller settles after
        return [future.result() for future in futures]

    def _pool(self, timeout: float) -> urllib3.PoolManager:
        with self._lock:
            pool = self._pools.get(timeout)
            if pool is None:
                pool = urllib3.PoolManager(
                    num_pools=64,
                    maxsize=8,
                    retries=False,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout),
                )
                self._pools[timeout] = pool
            return pool

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int | None, str | None]:
        """(status, None) for a 2xx answer, else (status or None, why it failed)."""
        try:
            response = self._pool(timeout).request(
                "POST", url, body=body, headers=dict(headers), redirect=False, retries=False,
                preload_content=False,
            )  # fmt: skip
            status = response.status
            answer = response.read(MAX_ANSWER + 1, decode_content=False)
            if len(answer) > MAX_ANSWER or response.length_remaining:
                response.close()
            else:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            return None, f"{type(exc).__name__}: {str(exc)[:300]}"
        if 200 <= status < 300:
            return status, None
        if 300 <= status < 400:
            return status, f"HTTP {status} (redirects are not followed)"
        return status, f"HTTP {status}"

    def close(self) -> None:
        """Close every kept-alive connection (and the threads)."""
        with self._lock:
            if self._threads is not None and self._threads_pid == os.getpid():
                self._threads.shutdown(wait=False)
            self._threads = None
            for pool in self._pools.values():
                pool.clear()
            self._pools.clear()
