"""The ``/metrics`` page: every process's metrics and the system's gauges, as text.

A registry is made per scrape, as prometheus_client advises for multi-process mode:
in that mode the values are read from the files of every process of the machine
(``MultiProcessCollector``, which sums counters and histograms and drops nothing of
a process that exited); otherwise from this process's own metrics. The gauges read
at scrape time (:mod:`~pipelinejobs.observability.collectors`) are added to it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from pipelinejobs.observability import metrics, multiprocess

#: The classic text format, which every Prometheus (and every other scraper) reads;
#: what ``generate_latest`` writes for names like ours (ASCII, no escaping needed).
#: The library's own CONTENT_TYPE_LATEST names 1.0.0 in recent versions, which older
#: servers do not know.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of everything a scrape shows: this machine's processes' metrics
    (or this process's) and ``collectors``."""
    made = CollectorRegistry()
    path = multiprocess.active()
    if path is not None:
        MultiProcessCollector(made, path=str(path))
    else:
        made.register(metrics.current().registry)
    for collector in collectors:
        made.register(collector)
    return made


def render(*collectors: Collector) -> bytes:
    """The page in Prometheus's text format (``CONTENT_TYPE``)."""
    return generate_latest(registry(*collectors))
