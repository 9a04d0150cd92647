"""Seeing what the system does: metrics, worker heartbeats, the process log.

A layer of its own, above the adapters and below the runtime (``tests/test_layers.py``):
it reads the store and the bus (counts at scrape time, heartbeats) but knows nothing of
actors or deliveries; the runtime's ``Metrics`` middleware, the gateway's ``/metrics``
route and the entry points' start-up call into it. The layers below it do not import
it at all: they announce what happens on :mod:`pipelinejobs.signals`, and
:mod:`~pipelinejobs.observability.metrics` listens.

* :mod:`~pipelinejobs.observability.metrics` — the Prometheus metrics every process
  records, and the signals they count;
* :mod:`~pipelinejobs.observability.multiprocess` — where the processes of one machine
  keep them so that ``/metrics`` adds them up (prometheus_client's multi-process mode);
* :mod:`~pipelinejobs.observability.collectors` — what is read from the store and the
  broker when ``/metrics`` is scraped (jobs per state, queue depths, workers seen);
* :mod:`~pipelinejobs.observability.exposition` — the ``/metrics`` page itself;
* :mod:`~pipelinejobs.observability.heartbeats` — each worker's record of being alive,
  and :func:`~pipelinejobs.observability.heartbeats.recent_workers` for the console;
* :mod:`~pipelinejobs.observability.logs` — the process log's format.

Nothing here does any work at import time.
"""
