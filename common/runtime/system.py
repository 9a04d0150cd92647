"""Assembling a running system from a configuration.

A :class:`System` is a :class:`~pipelinejobs.runtime.dispatch.Runtime` connected to a Celery bus.
The same object serves every way of running PipelineJobs:

* a **worker** process (``pipelinejobs worker``) consumes some actors' queues on the
  configured broker;
* a **client** (the gateway, ``pipelinejobs send``) only submits;
* the **embedded** mode runs a worker on threads inside the same process, on kombu's
  in-process broker, with the SQLite store under the data directory.

Start-up recovery happens here: a worker re-publishes executions left SUBMITTED by a
crash between storing and publishing; the embedded mode, whose in-process broker
forgets everything on exit, also re-publishes the ones left RUNNING. Running workers
keep checking for executions whose message was lost — in flight, or with a broker
that lost its queues (:mod:`pipelinejobs.runtime.recovery`, run by
:mod:`pipelinejobs.adapters.bus.celery_steps`), and record that they are alive
(:mod:`pipelinejobs.observability.heartbeats`), the embedded runtime too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from pipelinejobs.access.keys import ADMIN
from pipelinejobs.adapters.bus.celery import CeleryBus, EmbeddedWorker
from pipelinejobs.adapters.store import Store
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.config import Config
from pipelinejobs.domain.clock import Clock, system_clock
from pipelinejobs.errors import ConfigError
from pipelinejobs.observability.heartbeats import Heartbeat
from pipelinejobs.runtime.dispatch import ACTOR_MODULES, Runtime
from pipelinejobs.runtime.executions import FINISHED_STATUSES

log = logging.getLogger("pipelinejobs.system")


def parse_actors(text: str | Iterable[str] | None) -> list[str]:
    """``"jobs-manager,jobs-indexer"`` (or ``all``/empty) → list of aliases."""
    if text is None:
        return list(ACTOR_MODULES)
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names or names == ["all"]:
        return list(ACTOR_MODULES)
    unknown = [n for n in names if n not in ACTOR_MODULES]
    if unknown:
        raise ConfigError(
            f"unknown actors {', '.join(unknown)}; actors: {', '.join(ACTOR_MODULES)}",
            allowed=list(ACTOR_MODULES),
        )
    return names


class System:
    """A runtime and its Celery bus."""

    def __init__(
        self, config: Config, *, store: Store | None = None, clock: Clock = system_clock
    ) -> None:
        self.runtime = Runtime(config, store=store, clock=clock)
        self.config = self.runtime.config
        self.bus = CeleryBus(
            self.config.bus,
            self.config.broker_url,
            list(ACTOR_MODULES),
            self.runtime.deliver,
            recovery=self.runtime.recovery,
            expire=self.runtime.expire,
        )
        self.runtime.bus = self.bus
        #: Its worker (embedded or not) runs the reconciler's pass on its timer.
        self.bus.reconciler = self.runtime.reconciler
        self._embedded: EmbeddedWorker | None = None

    # -- running ------------------------------------------------------------------------

    def run_worker(
        self,
        actors: list[str],
        *,
        concurrency: int | None = None,
        pool: str = "prefork",
        loglevel: str = "INFO",
    ) -> None:
        """Recover orphaned executions, then consume ``actors``' queues until stopped."""
        self.runtime.start_up(actors)
        self.bus.heartbeat = Heartbeat(self.runtime.store, kind="worker", clock=self.runtime.clock)
        workers = concurrency or self.config.bus.worker_concurrency or os.cpu_count() or 1
        self._flush_notices_on_shutdown()
        self.bus.run_worker(actors, concurrency=workers, pool=pool, loglevel=loglevel)

    def _flush_notices_on_shutdown(self) -> None:
        """Send the webhook notices a process gathered before it exits (a prefork
        child leaves with ``os._exit``: ``atexit`` does not run there)."""
        from celery.signals import worker_process_shutdown, worker_shutdown

        def flush(**_: Any) -> None:
            try:
                self.runtime.notices.flush()
            except Exception:  # noqa: BLE001 - exiting; the jobs' next events deliver them
                log.warning("webhook notices not sent at shutdown", exc_info=True)

        worker_process_shutdown.connect(flush, weak=False)
        worker_shutdown.connect(flush, weak=False)

    def start_embedded(self, actors: list[str] | None = None) -> System:
        """Start worker threads in this process (in-process broker unless configured)."""
        aliases = actors or list(ACTOR_MODULES)
        self.bus.heartbeat = Heartbeat(
            self.runtime.store, kind="embedded", clock=self.runtime.clock
        )
        self._embedded = EmbeddedWorker(self.bus, aliases, self.config.bus.embedded_threads).start()
        in_process = self.config.broker_url.startswith("memory://")
        self.runtime.start_up(
            aliases, older_than=0 if in_process else None, include_running=in_process
        )
        return self

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
        self.runtime.close()

    def __enter__(self) -> System:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- using --------------------------------------------------------------------------

    def send(
        self, actor: str, message: Any, params: dict[str, Any] | None = None, *, role: str = ADMIN
    ) -> Document:
        """Submit a message; the stored execution. As admin unless told otherwise: this
        is the operator's own process (``pipelinejobs send``), holding the store's and
        the broker's credentials — no HTTP credential stands between it and them."""
        return self.runtime.submit(actor, message, params, role=role)

    def wait(self, execution_id: str, timeout: float = 30.0, poll: float = 0.02) -> Document:
        """Poll the store until the execution has finished (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.runtime.executions.get(execution_id)
            if execution["status"] in FINISHED_STATUSES or time.monotonic() >= deadline:
                return execution
            time.sleep(poll)
