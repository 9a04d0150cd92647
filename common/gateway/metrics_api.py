"""``GET /metrics``, and the layer that counts what the gateway answers.

``install(app)`` adds a ``before_request`` that runs before any other (a request
refused by parameter checks or authentication is timed too) and an
``after_request`` that records every answer: ``pipelinejobs_http_requests_total``
and its latency histogram by route *template* (``/jobs/<uuid>``: never the uuid),
method and status, and for a POST to an actor's ``/messages`` route
``pipelinejobs_messages_total`` by actor alias and status (accepted or refused). No
route counts anything itself.

``/metrics`` is open unless ``metrics.require_key`` is set: Prometheus scrapers
rarely carry credentials, and the page holds counts only — its labels are aliases,
event and state names, route templates, status codes and error class names, never
a job's name, data or id, a token or a key. With the setting on, any bearer key
(user or admin) may read it; a nonce may not (it is an actor's credential).
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request

from pipelinejobs.errors import UnknownActor
from pipelinejobs.gateway.auth import requires
from pipelinejobs.observability import exposition, metrics
from pipelinejobs.observability.collectors import SystemCollector

bp = Blueprint("metrics", __name__)

#: Where the app keeps its collector (one per app: its cache is per process).
EXTENSION = "pipelinejobs.metrics"
#: The route label of a request no route matched (a 404 or 405 for an unknown path).
UNMATCHED = "unmatched"
_STARTED = "_metrics_started"


def install(app: Flask) -> None:
    """Serve ``/metrics`` and count every request ``app`` answers."""
    gateway = app.config["PIPELINEJOBS"]
    runtime, settings = gateway.runtime, gateway.config
    app.extensions[EXTENSION] = SystemCollector(
        runtime.store,
        runtime.bus,
        list(runtime.actors),
        ttl=settings.metrics.cache_ttl,
        heartbeat_interval=settings.bus.heartbeat_interval,
        clock=runtime.clock,
    )
    metrics.current()  # made (and listening to the signals) before the first request
    app.register_blueprint(bp)
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_count)


def _start() -> None:
    setattr(g, _STARTED, time.perf_counter())


def _count(response: Response) -> Response:
    started = getattr(g, _STARTED, None)
    seconds = time.perf_counter() - started if started is not None else None
    rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    recorded = metrics.current()
    recorded.http_request(rule, request.method, response.status_code, seconds)
    if request.method == "POST" and rule.endswith("/<actor>/messages"):
        recorded.message(_actor(), response.status_code)
    return response


def _actor() -> str:
    """The alias of the actor the request named (``unknown`` for none)."""
    actor = g.get("actor")
    if actor is not None:
        return str(actor.alias)
    name = (request.view_args or {}).get("actor", "")
    try:
        return str(current_app.config["PIPELINEJOBS"].runtime.actor(name).alias)
    except UnknownActor:
        return "unknown"


@bp.get("/metrics")
def metrics_page() -> Response:
    """The metrics in Prometheus's text format."""
    if current_app.config["PIPELINEJOBS"].config.metrics.require_key:
        return requires()(_page)()
    return _page()


def _page() -> Response:
    body = exposition.render(current_app.extensions[EXTENSION])
    return Response(body, status=200, content_type=exposition.CONTENT_TYPE)
