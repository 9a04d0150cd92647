"""The request log: one line per HTTP request, written by a Flask layer around every route.

``install(app)`` adds a ``before_request`` that runs before any other (so a request
refused by parameter checking or authentication is timed and logged too), an
``after_request`` that logs the answer, and a ``teardown_request`` for the rare
request that ended without one. Each line is a record of the ``pipelinejobs.http``
logger at INFO (WARNING for a 5xx, ERROR for a 500; DEBUG for a successful health
check or metrics scrape, which a load balancer and Prometheus make every few
seconds), with the fields ``event`` (``request``), ``method``, ``path``, ``status``,
``duration_ms``, ``remote`` and ``who`` (``key:<key id prefix>``, as on a job's
history, ``/nonce`` added for a nonce; once the request authenticated).

What is never logged: the ``Authorization`` header; the value of a secret URL
parameter (``x-nonce``, ``token``...: the parameter is kept, its value masked); a
route parameter that is a secret (a nonce's id in ``/actors/v2/<actor>/nonces/<id>``).
The formatter masks what looks like a secret in any line as well
(:func:`pipelinejobs.observability.logs.scrub`); this module does not count on it.

gunicorn (``pipelinejobs gateway``) is given :class:`GunicornLogger`: its own messages
go through the same handler and format, and its access log is off — this layer is the
access log, so each request is logged once.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, g, request
from gunicorn.glogging import Logger as BaseGunicornLogger

from pipelinejobs.config import load_config
from pipelinejobs.gateway.http import REDACTED, SECRET_FIELDS
from pipelinejobs.observability import logs

log = logging.getLogger("pipelinejobs.http")

#: Route parameters whose value is a secret (a nonce's id is the nonce itself).
SECRET_ROUTE_PARAMETERS = frozenset({"nonce_id"})
#: URL parameters whose value is a secret, beyond the gateway's redaction list.
SECRET_PARAMETERS = SECRET_FIELDS | {"nonce", "key", "api_key", "password"}
#: Paths polled by machines: a successful answer is logged at DEBUG, not INFO.
QUIET_PATHS = ("/healthz", "/metrics")
_STARTED = "_request_log_started"
_LOGGED = "_request_log_done"


def install(app: Flask) -> None:
    """Log every request ``app`` answers (see the module docstring)."""
    # First of all before_request functions: one that refuses the request (parameter
    # checks, authentication) must not leave it untimed.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_after)
    app.teardown_request(_teardown)


def _start() -> None:
    setattr(g, _STARTED, time.perf_counter())


def _after(response: Response) -> Response:
    _log(response.status_code)
    return response


def _teardown(exc: BaseException | None) -> None:
    if not getattr(g, _LOGGED, False):  # ended without a response: an escaped error
        _log(500)


def loggable_path() -> str:
    """The request's path and query, secrets masked: a secret route parameter's
    segment and a secret URL parameter's value are ``********``."""
    path = request.path
    secrets = {
        str(v) for k, v in (request.view_args or {}).items() if k in SECRET_ROUTE_PARAMETERS and v
    }
    if secrets:
        path = "/".join(REDACTED if part in secrets else part for part in path.split("/"))
    query = "&".join(
        f"{quote(name, safe='-_.~')}="
        + (REDACTED if value and secret_parameter(name) else quote(value, safe="-_.~"))
        for name, value in request.args.items(multi=True)
    )
    return f"{path}?{query}" if query else path


def secret_parameter(name: str) -> bool:
    """Whether URL parameter ``name`` holds a secret."""
    return name.lower() in SECRET_PARAMETERS or logs.is_secret_name(name)


def _who() -> str | None:
    """``key:<key id prefix>`` as a job's history names senders (the key that made
    the nonce, for a nonce: ``key:<prefix>/nonce``); None before authentication."""
    principal = g.get("principal")
    owner = getattr(principal, "owner", None)
    if not owner:
        return None
    return f"key:{owner[:12]}" + ("/nonce" if getattr(principal, "kind", None) == "nonce" else "")


def _level(status: int, path: str) -> int:
    if status == 500:
        return logging.ERROR
    if status >= 500:
        return logging.WARNING
    if status < 400 and path in QUIET_PATHS:
        return logging.DEBUG
    return logging.INFO


def _log(status: int) -> None:
    setattr(g, _LOGGED, True)
    level = _level(status, request.path)
    if not log.isEnabledFor(level):
        return
    started = g.get(_STARTED)
    duration = (time.perf_counter() - started) * 1000 if started is not None else None
    path = loggable_path()
    remote = request.remote_addr or "-"
    who = _who()
    took = f"{duration:.1f} ms" if duration is not None else "- ms"
    log.log(
        level,
        "%s %s %d %s %s%s",
        request.method,
        path,
        status,
        took,
        remote,
        f" {who}" if who else "",
        extra={
            "event": "request",
            "method": request.method,
            "path": path,
            "status": status,
            "duration_ms": round(duration, 3) if duration is not None else None,
            "remote": remote,
            "who": who,
        },
    )


class GunicornLogger(BaseGunicornLogger):
    """gunicorn's logger for ``pipelinejobs gateway``: its own lines ("Booting worker",
    a worker timeout, a request it could not parse) go through the process log's
    handler and format; its access log is off (the app logs each request)."""

    def setup(self, cfg: Any) -> None:
        self.cfg = cfg
        self._access_log_enabled = False
        settings = load_config().logging  # the CLI checked it before exec'ing gunicorn
        logs.configure(settings)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
        self.error_log.propagate = True
        self.error_log.setLevel(logging.NOTSET)
        self.access_log.propagate = False
        self.access_log.disabled = True
        self.loglevel = logging.getLogger().level

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Not logged here: :func:`install`'s layer logs each request, once."""

    def reopen_files(self) -> None:
        """Nothing to reopen: the log is stderr."""

    def close_on_exec(self) -> None:
        """Nothing opened: the log is stderr."""
