"""What the console's pages poll for their live parts (every ~2 s, from console.js).

Short requests only — no stream holds a server thread (the gateway runs on waitress
threads or gunicorn workers): each answer is small JSON whose ``parts`` are page
fragments rendered by the same Jinja macros as the page (so escaped the same way),
and only when something changed:

* ``/ui/live/overview`` — the overview's figures (shared by every viewer for
  ``Console.cache_ttl`` s);
* ``/ui/live/jobs?<the list's filters>&since=<date>`` — the rows of jobs the list
  selects that changed since the last poll (the list inserts or replaces them);
* ``/ui/live/jobs/<uuid>?fp=<fingerprint>`` — a job page's parts, when the job, its
  files, its executions or its log changed since the fingerprint the page holds.
"""

from __future__ import annotations

from typing import Any

from flask import get_template_attribute, request

from pipelinejobs.console import job_list, pages, runs, views
from pipelinejobs.console.web import bp, console
from pipelinejobs.domain.identifiers import require_type

PARTS = "console/_parts.html"


def macro(name: str) -> Any:
    return get_template_attribute(PARTS, name)


@bp.get("/live/overview")
def live_overview() -> Any:
    data = pages.overview_data()
    return {
        "parts": {
            name: str(macro(name)(data))
            for name in ("counts", "activity", "pipelines", "queues", "failures")
        }
    }


@bp.get("/live/jobs")
def live_jobs() -> Any:
    c = console()
    f = job_list.JobFilter.parse(request.args, me=runs.owner_me())
    since = request.args.get("since", "")
    if not since:
        return {"since": views.iso(c.runtime.clock()), "rows": []}
    changed = job_list.changed_jobs(c.store, f, since)
    names = pages.row_names()
    row = macro("job_row")
    newest = max((str(j.get("updated")) for j in changed), default=since)
    return {
        "since": newest,
        "rows": [
            {"uuid": j["uuid"], "version": j.get("version"), "html": str(row(j, names))}
            for j in changed
        ],
    }


@bp.get("/live/jobs/<uuid>")
def live_job(uuid: str) -> Any:
    c = console()
    require_type(uuid, "pipelinejob")
    job = c.runtime.jobs.get(uuid)
    seen = request.args.get("fp")
    if seen and seen == views.fingerprint(c.store, job):
        return {"fingerprint": seen, "state": job.get("state"), "changed": False}
    data = pages.job_page_data(uuid)
    view = data["view"]
    fingerprint = view.fingerprint
    state = view.job.get("state")
    return {
        "fingerprint": fingerprint,
        "state": state,
        "running": data["running"],
        "changed": True,
        "parts": {
            name: str(macro(f"job_{name}")(data))
            for name in (
                "header",
                "fields",
                "diagram",
                "timeline",
                "files",
                "executions",
                "actions",
            )
        },
    }
