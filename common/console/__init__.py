"""The operator console: PipelineJobs in a browser, at ``/ui/``.

Server-rendered pages (Flask and Jinja, autoescaped), a small plain-JavaScript file
that polls for the live parts, and a stylesheet — all vendored in this package
(``templates/``, ``static/``): nothing to build, nothing fetched from elsewhere.

* :mod:`.web` — the blueprint, sign-in and sessions (server-side, in the store), CSRF
  on every form, the security headers (a strict Content-Security-Policy);
* :mod:`.pages` — overview, jobs, a job, pipelines, executions;
* :mod:`.live` — the small JSON endpoints the pages poll;
* :mod:`.actions` — cancel, retire, reset, ready: confirmed, then sent through
  :meth:`~pipelinejobs.runtime.dispatch.Runtime.submit` like any message;
* :mod:`.views` — what the pages read from the store, bounded so each page stays fast;
* :mod:`.diagram` — the lifecycle diagram, drawn from the lifecycle table;
* :mod:`.reference` — the HTTP API's reference page, from the OpenAPI document.

The console sits below the gateway (the gateway's app installs it) and reads what it
shows through the runtime and the store, never through the gateway's modules.
"""

from __future__ import annotations

from flask import Flask, redirect

from pipelinejobs.console import actions, live, pages, reference  # noqa: F401  (routes)
from pipelinejobs.console.web import PREFIX, Console, bp


def install(app: Flask) -> None:
    """Serve the console at ``/ui/`` on ``app`` (the gateway's), with ``/`` leading to it."""
    app.extensions["pipelinejobs.console"] = Console(app.config["PIPELINEJOBS"])
    app.register_blueprint(bp)
    app.add_url_rule("/", "console_root", lambda: redirect(f"{PREFIX}/", code=302))
    app.add_url_rule("/docs", "console_docs", lambda: redirect(f"{PREFIX}/api", code=302))


__all__ = ["install", "bp"]
