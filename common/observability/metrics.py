"""The Prometheus metrics every process records, and the signals they count.

One :class:`Metrics` per process (:func:`current`), made on first use: the gateway's
request hooks, the runtime's ``Metrics`` middleware and the receivers of
:mod:`pipelinejobs.signals` all record into it. Where the values live is
prometheus_client's business: in this process's memory by default, or — once
:func:`pipelinejobs.observability.multiprocess.enable` has switched the process to
multi-process mode — in per-process files that ``/metrics`` adds up, so that four
gunicorn workers and eight Celery pool processes answer as one.

Labels are bounded by construction: actor aliases, event and state names, HTTP route
*templates* (``/jobs/<uuid>``, never a uuid), status codes, collection names, error
class names. No job name, job data, id, token or key ever becomes a label value: a
label set that grows with the data would grow Prometheus's memory with it.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from pipelinejobs import signals

PREFIX = "pipelinejobs_"

#: Seconds: an HTTP request is answered in milliseconds; a sync wait takes up to 30 s.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds: an event is applied in milliseconds; indexing a large tree takes minutes.
EXECUTION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
)  # fmt: skip
#: HTTP methods counted by name; anything else a client makes up is ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: An execution's status after a delivery -> the ``outcome`` label.
OUTCOMES = {"COMPLETE": "complete", "ERROR": "error", "SUBMITTED": "retry"}


class Metrics:
    """The metrics of one process, each a prometheus_client metric in ``registry``.

    Counters are named without ``_total``: prometheus_client adds it (the names in
    the README and the dashboards are the exposed ones, with ``_total``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            PREFIX + "messages",
            "Messages posted to an actor's /messages route, by HTTP status "
            "(outcome: accepted for 2xx, refused otherwise).",
            ["actor", "code", "outcome"],
            registry=r,
        )
        self.http_requests = Counter(
            PREFIX + "http_requests",
            "HTTP requests answered by the gateway, by route template, method and status.",
            ["route", "method", "code"],
            registry=r,
        )
        self.http_duration = Histogram(
            PREFIX + "http_request_duration_seconds",
            "Time the gateway took to answer a request (until the response was ready).",
            ["route", "method"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.executions = Counter(
            PREFIX + "executions",
            "Deliveries of executions, by actor and outcome (complete, error, retry: "
            "a transient failure re-queued, quarantined, skipped: a redelivery of a "
            "finished execution, expired: its pool process killed at the time limit).",
            ["actor", "outcome"],
            registry=r,
        )
        self.execution_duration = Histogram(
            PREFIX + "execution_duration_seconds",
            "Time from an execution marked RUNNING to its outcome recorded.",
            ["actor", "outcome"],
            buckets=EXECUTION_BUCKETS,
            registry=r,
        )
        self.events_applied = Counter(
            PREFIX + "events_applied",
            "Lifecycle events applied to jobs, by event name.",
            ["event"],
            registry=r,
        )
        self.events_refused = Counter(
            PREFIX + "events_refused",
            "Lifecycle events not applied, by event name and reason (the error: "
            "TransitionRefused, PermissionDenied for a wrong token, NotFound...).",
            ["event", "reason"],
            registry=r,
        )
        self.events_duplicate = Counter(
            PREFIX + "events_duplicate",
            "Redelivered events recognised and not applied twice, by event name.",
            ["event"],
            registry=r,
        )
        self.cas_conflicts = Counter(
            PREFIX + "cas_conflicts",
            "Compare-and-set writes that lost a race to a concurrent writer and were "
            "retried, by collection.",
            ["collection"],
            registry=r,
        )
        self.cas_gave_up = Counter(
            PREFIX + "cas_gave_up",
            "Compare-and-set writes that lost store.cas_retries races in a row and gave "
            "up (answered 503 / retried later), by collection.",
            ["collection"],
            registry=r,
        )
        self.nonce_redemptions = Counter(
            PREFIX + "nonce_redemptions",
            "Requests authenticated by a nonce, by actor and outcome (redeemed, or the "
            "refusal: InvalidCredential, PermissionDenied...).",
            ["actor", "outcome"],
            registry=r,
        )
        self.files_seen = Counter(
            PREFIX + "indexer_files_seen",
            "Files the jobs-indexer listed under archive paths.",
            registry=r,
        )
        self.files_indexed = Counter(
            PREFIX + "indexer_files_indexed",
            "File records the jobs-indexer wrote (rate() of it is files indexed per second).",
            registry=r,
        )
        self.overdue = Counter(
            PREFIX + "reconciler_fails_sent",
            "Fails a reconciler sent to jobs past their deadline or heartbeat_timeout, or "
            "whose supervisor was lost, by kind (overlapping reconcilers may each send one; "
            "each job's history holds one).",
            ["kind"],
            registry=r,
        )

    # -- recording ---------------------------------------------------------------------------

    def message(self, actor: str, code: int) -> None:
        """A POST to ``actor``'s /messages route was answered ``code``."""
        outcome = "accepted" if 200 <= code < 300 else "refused"
        self.messages.labels(actor, str(code), outcome).inc()

    def http_request(self, route: str, method: str, code: int, seconds: float | None) -> None:
        """A request to ``route`` (its template) was answered ``code``."""
        method = method if method in METHODS else "other"
        self.http_requests.labels(route, method, str(code)).inc()
        if seconds is not None:
            self.http_duration.labels(route, method).observe(seconds)

    def execution(self, actor: str, outcome: str, seconds: float | None = None) -> None:
        """A delivery to ``actor`` ended ``outcome`` after ``seconds`` (None: unknown)."""
        self.executions.labels(actor, outcome).inc()
        if seconds is not None:
            self.execution_duration.labels(actor, outcome).observe(seconds)


# -- the signals of the layers below ---------------------------------------------------------
#
# Module-level receivers, each recording into whatever :func:`current` is when the
# signal comes: connected once per process (:func:`listen`, from :func:`current`), they
# survive :func:`reset`, so a process switched to multi-process mode, or a pool process
# forked from a worker, never has a moment when an event goes uncounted.


def _event_applied(event: str, **_: Any) -> None:
    current().events_applied.labels(event).inc()


def _event_refused(event: str, reason: str, **_: Any) -> None:
    current().events_refused.labels(event, reason).inc()


def _event_duplicate(event: str, **_: Any) -> None:
    current().events_duplicate.labels(event).inc()


def _cas_conflict(collection: str, **_: Any) -> None:
    current().cas_conflicts.labels(collection).inc()


def _cas_gave_up(collection: str, **_: Any) -> None:
    current().cas_gave_up.labels(collection).inc()


def _nonce_redeemed(actor: str, outcome: str, **_: Any) -> None:
    current().nonce_redemptions.labels(actor, outcome).inc()


def _files_indexed(seen: int, indexed: int, **_: Any) -> None:
    recorded = current()
    if seen:
        recorded.files_seen.inc(seen)
    if indexed:
        recorded.files_indexed.inc(indexed)


def _job_overdue(kind: str, **_: Any) -> None:
    current().overdue.labels(kind).inc()


RECEIVERS: tuple[tuple[signals.Signal, signals.Receiver], ...] = (
    (signals.event_applied, _event_applied),
    (signals.event_refused, _event_refused),
    (signals.event_duplicate, _event_duplicate),
    (signals.cas_conflict, _cas_conflict),
    (signals.cas_gave_up, _cas_gave_up),
    (signals.nonce_redeemed, _nonce_redeemed),
    (signals.files_indexed, _files_indexed),
    (signals.job_overdue, _job_overdue),
)


def listen() -> None:
    """Count what :mod:`pipelinejobs.signals` announces (connecting twice is once)."""
    for signal, receiver in RECEIVERS:
        signal.connect(receiver)


_current: Metrics | None = None
_lock = threading.Lock()


def current() -> Metrics:
    """This process's metrics, made (and connected to the signals) on first use."""
    global _current
    made = _current
    if made is None:
        with _lock:
            if _current is None:
                listen()
                _current = Metrics()
            made = _current
    return made


def reset() -> None:
    """Forget this process's metrics: the next :func:`current` makes new ones. For a
    process switching to multi-process mode, whose values must be made afresh in the
    files, and for tests."""
    global _current
    with _lock:
        _current = None
