"""The operator console: PipelineJobs in a browser, at ``/ui/``.

Server-rendered pages (Flask and Jinja, autoescaped), a small plain-JavaScript file
that polls for the live parts, and a stylesheet — all vendored in this package
(``templates/``, ``static/``): nothing to build, nothing fetched from elsewhere.

* :mod:`.web` — the blueprint, sign-in and sessions (server-side, in the store), CSRF
  on every form, the security headers (a strict Content-Security-Policy);
* :mod:`.pages` — overview, jobs, a job, pipelines, executions;
* :mod:`.runs` — runs: a list and a run's page, with their jobs' counts and progress;
* :mod:`.live` — the small JSON endpoints the pages poll;
* :mod:`.actions` — cancel, retire, reset, ready, retry: confirmed, then sent through
  :meth:`~pipelinejobs.runtime.dispatch.Runtime.submit` like any message;
* :mod:`.tag_editor` — setting and removing a job's tags, sent the same way;
* :mod:`.bulk` — bulk actions over the jobs list's or a run's filter: the dry run and
  the confirmed count; :mod:`.bulk_progress` — a bulk action's page, live, and the list;
* :mod:`.views` — what the pages read from the store, bounded so each page stays fast;
* :mod:`.job_list` — the jobs list's filters, its pages and what changed since;
* :mod:`.diagram` — the lifecycle diagram, drawn from the lifecycle table;
* :mod:`.reference` — the HTTP API's reference page, from the OpenAPI document.

The console sits below the gateway (the gateway's app installs it) and reads what it
shows through the runtime and the store, never through the gateway's modules.
"""

from __future__ import annotations

from flask import Flask, redirect

from pipelinejobs.console import (  # noqa: F401  (routes)
    actions,
    bulk,
    bulk_progress,
    live,
    pages,
    reference,
    runs,
    tag_editor,
    webhooks,
)
from pipelinejobs.console.web import PREFIX, Console, bp


def install(app: Flask) -> None:
    """Serve the console at ``/ui/`` on ``app`` (the gateway's), with ``/`` leading to it."""
    app.extensions["pipelinejobs.console"] = Console(app.config["PIPELINEJOBS"])
    app.register_blueprint(bp)
    app.add_url_rule("/", "console_root", lambda: redirect(f"{PREFIX}/", code=302))
    app.add_url_rule("/docs", "console_docs", lambda: redirect(f"{PREFIX}/api", code=302))


__all__ = ["install", "bp"]
