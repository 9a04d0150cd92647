"""The HTTP gateway (Flask): Abaco's actors API, the read API, health and OpenAPI.

:func:`create_app` builds the app around a :class:`~common.runtime.Runtime` that
already has a bus — the embedded server's, or a production client's whose workers
run elsewhere. Nothing connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from common.config import Config
from common.errors import PipelineJobsError
from common.gateway import actors_api, files_api, read_api
from common.gateway.http import envelope, error_response, failure
from common.gateway.openapi import document as openapi_document
from common.keys import Keys
from common.nonces import Nonces
from common.runtime import Runtime
from common.store import Store


@dataclass
class Gateway:
    """What the routes use, kept on ``app.config["PIPELINEJOBS"]``."""

    runtime: Runtime

    def __post_init__(self) -> None:
        self.store: Store = self.runtime.store
        self.config: Config = self.runtime.config
        self.keys = Keys(self.store, clock=self.runtime.clock)
        self.nonces = Nonces(self.store, clock=self.runtime.clock)


def create_app(runtime: Runtime) -> Flask:
    """The gateway app for ``runtime``."""
    app = Flask("pipelinejobs")
    app.config["PIPELINEJOBS"] = Gateway(runtime)
    app.config["MAX_CONTENT_LENGTH"] = runtime.config.gateway.max_body
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(actors_api.bp)
    app.register_blueprint(read_api.bp)
    app.register_blueprint(files_api.bp)
    app.register_error_handler(Exception, error_response)

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
        return openapi_document(runtime)

    return app
