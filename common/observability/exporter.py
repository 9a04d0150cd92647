"""A worker's own ``/metrics``, for a worker whose machine has no gateway.

Multi-process metrics add up through files, so a gateway's ``/metrics`` shows only
the processes of its own machine (or container). A worker elsewhere — another host,
its own container in the compose file or a Kubernetes pod — is scraped on its own:
``pipelinejobs worker --metrics-port 9100`` starts this exporter beside it, which
serves the worker's metrics directory (its main and pool processes, added up) over
HTTP with prometheus_client's server.

It is a separate process (``python -m pipelinejobs.observability.exporter``), not a
thread of the worker: a Celery worker forks its pool processes from its main
process, and a thread serving HTTP there could hold a lock at the moment of a fork.
It exits with the worker (it checks its parent every second) and shows only the
processes' own counters — the system's gauges (jobs per state, queue depth) are the
gateway's to show, once, not once per worker. It has no key check: bind it to an
address only the scraper reaches (``--metrics-host``, 127.0.0.1 by default).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

#: How often (s) the exporter checks that the worker that started it is alive.
PARENT_CHECK = 1.0


def spawn(directory: Path, port: int, host: str = "127.0.0.1") -> subprocess.Popen[bytes]:
    """Start the exporter of ``directory`` on ``host:port``, tied to this process."""
    argv = [sys.executable, "-m", __name__, str(directory), host, str(port), str(os.getpid())]
    return subprocess.Popen(argv)


def serve(directory: Path, host: str, port: int, parent: int) -> None:
    """Serve ``directory``'s metrics until process ``parent`` is gone."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def main(argv: list[str]) -> int:
    directory, host, port, parent = argv
    serve(Path(directory), host, int(port), int(parent))
    return 0


if __name__ == "__main__":  # pragma: no cover - run by spawn()
    sys.exit(main(sys.argv[1:]))
