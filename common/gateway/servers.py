"""The HTTP servers in front of the gateway app, answering their own errors in JSON.

Some requests never reach Flask: a request line or headers over the server's limits,
a malformed request line, a broken chunked body. waitress (``pipelinejobs serve``)
and gunicorn (``pipelinejobs gateway``) answer those themselves, in plain text or
HTML — a client that reads every answer as the gateway's JSON envelope then fails on
the one answer it most needs to understand. Both servers have a supported seam for
this: waitress's channel names the task class that writes an error
(``HTTPChannel.error_task_class``), gunicorn's worker has ``handle_error``. Here each
writes the same envelope the app does (``common/gateway/http.py``), with the status
the server chose.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.http import errors as gunicorn_errors
from gunicorn.workers.gthread import ThreadWorker
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

from pipelinejobs import __version__

log = logging.getLogger("pipelinejobs.gateway")


def error_body(message: str, error: str) -> bytes:
    """The gateway's error envelope, made without an app (the app never saw this)."""
    body = {
        "status": "error",
        "message": message,
        "result": {"error": error},
        "version": __version__,
    }
    return json.dumps(body).encode()


# -- waitress (pipelinejobs serve) ---------------------------------------------------------


class JsonErrorTask(ErrorTask):
    """waitress's error response (431, 400, 413, 500...) as the JSON envelope."""

    def execute(self) -> None:
        error = self.request.error
        message = f"{error.reason}: {error.body}" if error.body else error.reason
        body = error_body(message, type(error).__name__)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def serve_waitress(app: Any, *, host: str, port: int, threads: int, quiet: bool) -> None:
    """``waitress.serve``, with errors waitress answers itself written as JSON."""
    # X-Forwarded-* are left for the app, which believes them only from the addresses
    # gateway.trusted_proxies lists (pipelinejobs.gateway.public_url): waitress would
    # otherwise drop them all, trusting no proxy, and links behind a TLS front say http.
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="pipelinejobs",
        clear_untrusted_proxy_headers=False,
    )
    # The server makes a channel per connection from this attribute.
    server.channel_class = JsonErrorChannel
    if not quiet:
        logging.basicConfig()
        server.print_listen("Serving on http://{}:{}")
    server.run()  # returns on SIGINT, as waitress.serve does


# -- gunicorn (pipelinejobs gateway) -------------------------------------------------------

#: gunicorn's parse errors whose status is not 400 (the same as gunicorn's own choice).
_STATUS = {
    gunicorn_errors.LimitRequestLine: (414, "URI Too Long"),
    gunicorn_errors.LimitRequestHeaders: (431, "Request Header Fields Too Large"),
    gunicorn_errors.ExpectationFailed: (417, "Expectation Failed"),
    gunicorn_errors.UnsupportedTransferCoding: (501, "Not Implemented"),
    gunicorn_errors.ForbiddenProxyRequest: (403, "Forbidden"),
}


class JsonErrorWorker(ThreadWorker):
    """gunicorn's threaded worker, answering a request it cannot parse in JSON.

    Only the client's errors are answered here; anything else (which the app, catching
    every exception itself, does not raise) goes to gunicorn's own handling.
    """

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if not isinstance(exc, gunicorn_errors.ParseException) or isinstance(
            exc, gunicorn_errors.ConfigurationProblem | gunicorn_errors.InvalidResponseHeader
        ):
            super().handle_error(req, client, addr, exc)
            return
        code, reason = next(
            (status for kind, status in _STATUS.items() if isinstance(exc, kind)),
            (400, "Bad Request"),
        )
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        body = error_body(f"{reason}: {exc}", type(exc).__name__)
        head = (
            f"HTTP/1.1 {code} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            gunicorn_util.write_nonblock(client, head.encode("latin-1") + body)
        except OSError:
            log.debug("could not send the error answer; the client has gone")
