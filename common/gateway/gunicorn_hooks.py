"""gunicorn's server hooks for the production gateway (``gunicorn -c python:<this>``).

``pipelinejobs gateway`` starts gunicorn with this module as its configuration, so
its master process does what only a master can for the metrics of its workers
(:mod:`pipelinejobs.observability.multiprocess`):

* ``on_starting`` — before any worker is forked: claim the metrics directory (emptied
  when no process of an earlier start is alive) and switch to multi-process mode,
  which the workers inherit;
* ``child_exit`` — a worker exited (however: gunicorn reaps it): drop its live gauges.

Running gunicorn directly, add ``-c python:pipelinejobs.gateway.gunicorn_hooks`` to
get the same; without it each worker still writes to the directory, which is then
never emptied.
"""

from __future__ import annotations

import sys
from typing import Any

from pipelinejobs.config import load_config
from pipelinejobs.observability import multiprocess

#: gunicorn would believe X-Forwarded-Proto from 127.0.0.1 by itself and make the
#: request https before the app sees it; the app is the one judge of which proxies to
#: believe (gateway.trusted_proxies, pipelinejobs.gateway.public_url), as under serve.
forwarded_allow_ips = ""


def on_starting(server: Any) -> None:
    multiprocess.start(load_config())


def post_fork(server: Any, worker: Any) -> None:
    """Each worker's thread switch interval, as serve's and worker's (system.switch_interval)."""
    sys.setswitchinterval(load_config().system.switch_interval)


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.process_died(worker.pid)
