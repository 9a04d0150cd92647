"""Status callbacks over HTTP: how a backend running a job tells the jobs-manager.

The same request an Agave job notification makes — a POST of the job's status body
to the jobs-manager's messages URL carrying ``uuid``, ``status``, ``token`` and an
``x-nonce`` — retried with back-off, because the gateway may be restarting when a job
ends and a lost FINISHED would strand the job in RUNNING.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("pipelinejobs.launcher")


def post_status(
    url: str,
    body: Mapping[str, Any],
    *,
    attempts: int = 6,
    timeout: float = 10.0,
    backoff: float = 0.5,
    max_delay: float = 60.0,
) -> int:
    """POST ``body`` to ``url``; the HTTP status. Retries network errors and 5xx."""
    data = json.dumps(body).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                log.error("callback refused (%s): %s", exc.code, exc.read()[:500])
                return int(exc.code)
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(exc)
        if attempt == attempts - 1:
            break
        delay = min(backoff * 2**attempt, max_delay)
        log.warning("callback to %s failed (%s); retrying in %.1fs", _safe(url), problem, delay)
        time.sleep(delay)
    log.error("callback to %s failed %d times; giving up", _safe(url), attempts)
    return 0


def _safe(url: str) -> str:
    """The URL without its query (which holds the token and the nonce)."""
    return url.split("?", 1)[0]
