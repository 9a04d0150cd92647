"""Posting webhook deliveries over HTTP: one pool of kept-alive connections per
runtime (made on first use, closed with the runtime).

urllib3's pool manager rather than requests' sessions: thread-safe (the notifier runs
on several threads), about a third of the CPU per request, and it takes no proxy or
``.netrc`` credentials from the environment. Redirects are never followed: a 3xx is
an answer like any other, so a receiver cannot send the request on to another host.
Only the status of an answer matters: at most :data:`MAX_ANSWER` bytes of its body are
read (undecoded — no gzip bomb), and a connection whose answer was longer is dropped
rather than reused.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import urllib3

#: Most bytes of a receiver's answer read.
MAX_ANSWER = 65536


class WebhookSender:
    """POSTs bodies to receivers; one per runtime."""

    def __init__(self) -> None:
        self._pools: dict[float, urllib3.PoolManager] = {}
        self._lock = threading.Lock()

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
        """Close every kept-alive connection."""
        with self._lock:
            for pool in self._pools.values():
                pool.clear()
            self._pools.clear()
