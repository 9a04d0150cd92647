"""The HTTP gateway (Flask): Abaco's actors API, the read API, health and OpenAPI, and
the operator console (:mod:`pipelinejobs.console`) at ``/ui/``.

:func:`create_app` builds the app around a :class:`~pipelinejobs.runtime.dispatch.Runtime` that
already has a bus — the embedded server's, or a production client's whose workers
run elsewhere. Nothing connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, request

from pipelinejobs import console
from pipelinejobs.access.boundary import check_params
from pipelinejobs.access.keys import Keys
from pipelinejobs.access.nonces import Nonces
from pipelinejobs.adapters.store import Store
from pipelinejobs.config import Config
from pipelinejobs.errors import PipelineJobsError
from pipelinejobs.gateway import (
    abaco_api,
    actors_api,
    bulk_api,
    files_api,
    lineage_api,
    metrics_api,
    read_api,
    request_log,
    runs_api,
    webhooks_api,
)
from pipelinejobs.gateway.http import envelope, error_response, failure
from pipelinejobs.gateway.openapi import document as openapi_document
from pipelinejobs.gateway.parameters import check_request
from pipelinejobs.runtime.dispatch import Runtime


@dataclass
class Gateway:
    """What the routes use, kept on ``app.config["PIPELINEJOBS"]``."""

    runtime: Runtime

    def __post_init__(self) -> None:
        self.store: Store = self.runtime.store
        self.config: Config = self.runtime.config
        retries = self.config.store.cas_retries
        # The server's secret signs JWT keys and derives nonce ids (which their owner
        # can then list again, as on Abaco).
        secret = self.config.tokens.secret
        self.keys = Keys(self.store, clock=self.runtime.clock, retries=retries, secret=secret)
        self.nonces = Nonces(self.store, clock=self.runtime.clock, retries=retries, secret=secret)


def create_app(runtime: Runtime) -> Flask:
    """The gateway app for ``runtime``."""
    app = Flask("pipelinejobs")
    app.config["PIPELINEJOBS"] = Gateway(runtime)
    app.config["MAX_CONTENT_LENGTH"] = runtime.config.gateway.max_body
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(actors_api.bp)
    app.register_blueprint(abaco_api.bp)  # Abaco v2 discovery, results; Tapis v3 tenancy
    app.register_blueprint(read_api.bp)
    app.register_blueprint(runs_api.bp)  # runs (issue 15): listed with status, one, its jobs
    app.register_blueprint(files_api.bp)
    app.register_blueprint(lineage_api.bp)
    app.register_blueprint(bulk_api.bp)
    app.register_blueprint(webhooks_api.bp)  # webhooks (issue 16)
    app.register_error_handler(Exception, error_response)
    request_log.install(app)  # a line per request; its timer runs before every other hook
    metrics_api.install(app)  # GET /metrics; every answer counted (route, method, status)
    console.install(app)  # the operator console at /ui/ (and / leading to it)
    abaco_api.install_v3(app)  # every /actors/v2 route again at /v3/actors (Tapis v3)
    # Every route's URL parameters are checked against the same declarations the
    # OpenAPI document is made from, before authentication and before the route.
    app.before_request(check_request)
    spec: dict[str, Any] = {}

    @app.before_request
    def strict_parameters() -> None:
        """No URL parameter of any route may hold NUL or invalid text (before
        authentication: a malformed nonce is a 400 naming ``x-nonce``, not a lookup).
        Which may repeat is each route's business."""
        check_params(request.args, multi=None)

    @app.get("/healthz")
    def healthz() -> Any:
        checks: dict[str, str] = {}
        healthy = True
        for name, ping in (
            ("store", runtime.store.ping),
            ("broker", runtime.bus.ping if runtime.bus else None),
        ):
            try:
                if ping is None:
                    raise PipelineJobsError("not configured")
                ping()
                checks[name] = "ok"
            except PipelineJobsError as exc:
                checks[name] = exc.message
                healthy = False
        if healthy:
            return envelope(checks, "healthy")
        return failure("unhealthy", checks, 503)

    @app.get("/openapi.json")
    def openapi() -> Any:
        if not spec:  # made once: it depends only on the settings and the actors
            spec.update(openapi_document(runtime))
        return spec

    return app
