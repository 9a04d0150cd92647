"""Abaco v2 discovery and results, and the Tapis v3 paths, for clients that expect them.

agavepy's actors API and tapipy's ``actors`` resource call routes the actors API
(:mod:`pipelinejobs.gateway.actors_api`) does not serve by itself:

* ``GET /actors/v2`` and ``/actors/v2/<actor>`` — the four actors, by Abaco-style id
  and alias, with their description, their status (``READY`` when a worker consuming
  their queue has been seen by its heartbeat, else ``SUBMITTED``: messages wait in the
  queue) and the schemas their messages are checked against;
* ``GET /actors/v2/aliases`` and ``/actors/v2/aliases/<alias>`` — alias to id;
* ``GET /actors/v2/<actor>/workers`` — the worker processes consuming it, from their
  heartbeats (:func:`pipelinejobs.observability.heartbeats.recent_workers`);
* ``GET /actors/v2/<actor>/executions/<id>/results`` — an execution's result as Abaco
  serves one: the bytes alone (here the result's JSON), ``application/octet-stream``,
  empty until the execution is COMPLETE; not enveloped, since Abaco does not envelope it
  and agavepy and tapipy hand the bytes over as they come;
* ``GET /v3/tenants`` and ``/v3/sites`` — what tapipy reads when it is given only a
  ``base_url``: one tenant and one site, at this gateway's public URL.

**Tapis v3** (:func:`install_v3`): every ``/actors/v2/...`` route is served again at
``/v3/actors/...`` by the same view — same parameters, same checks, same answers —
and keys are accepted in ``X-Tapis-Token`` (:mod:`pipelinejobs.gateway.auth`), so
tapipy's ``Tapis(base_url=..., access_token=<a JWT key>)`` works unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request

from pipelinejobs.domain.validation import BASE_URI
from pipelinejobs.errors import NotFound
from pipelinejobs.gateway import abaco
from pipelinejobs.gateway.actors_api import actor_execution
from pipelinejobs.gateway.auth import requires
from pipelinejobs.gateway.http import envelope, redact
from pipelinejobs.observability.collectors import ALIVE_BEATS
from pipelinejobs.observability.heartbeats import recent_workers
from pipelinejobs.runtime.executions import COMPLETE

bp = Blueprint("abaco", __name__)

V2, V3 = "/actors/v2", "/v3/actors"
#: The one tenant and site this gateway is, as Tapis v3's tenants API names them.
TENANT = SITE = "pipelinejobs"


def _gateway() -> Any:
    return current_app.config["PIPELINEJOBS"]


def _window() -> float:
    """How recent a heartbeat must be for its worker to count as alive (the
    ``pipelinejobs_workers`` gauge's window: a few heartbeat intervals)."""
    return max(_gateway().config.bus.heartbeat_interval, 1.0) * ALIVE_BEATS


def _consuming(alias: str) -> list[dict[str, Any]]:
    """The running workers whose heartbeat says they consume ``alias``, newest first."""
    gateway = _gateway()
    seen = recent_workers(gateway.store, _window(), clock=gateway.runtime.clock)
    return [w for w in seen if alias in (w.get("actors") or ()) and not w.get("stopped")]


def _actor(alias: str, workers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One actor in Abaco's fields (``workers``: those consuming it, when known)."""
    runtime = _gateway().runtime
    actor = runtime.actors[alias]
    actor_id = runtime.actor_id(alias)
    workers = _consuming(alias) if workers is None else workers
    queue = f"actor.{alias}"
    if workers:
        status, why = abaco.READY, f"{len(workers)} worker process(es) consume {queue}"
    else:
        status = abaco.WAITING
        why = (
            f"no worker was seen consuming {queue} in the last {_window():.0f} s: "
            f"messages wait in the queue until one starts"
        )
    base = f"{abaco.base()}{V2}/{actor_id}"
    return {
        "id": actor_id,
        "alias": alias,
        "name": alias,
        "description": actor.description,
        "owner": "system",
        "status": status,
        "statusMessage": why,
        "queue": queue,
        "stateless": True,
        "workers": len(workers),
        "accepts": [{"name": name, "$id": f"{BASE_URI}{name}.json"} for name in actor.accepts],
        "_links": {
            "self": base,
            "messages": f"{base}/messages",
            "executions": f"{base}/executions",
            "nonces": f"{base}/nonces",
            "workers": f"{base}/workers",
        },
    }


def _alias(alias: str) -> dict[str, Any]:
    actor_id = _gateway().runtime.actor_id(alias)
    base = abaco.base()
    return {
        "alias": alias,
        "actorId": actor_id,
        "owner": "system",
        "_links": {"self": f"{base}{V2}/aliases/{alias}", "actor": f"{base}{V2}/{actor_id}"},
    }


def _window_of(items: list[Any]) -> list[Any]:
    """``items`` from ``offset``, at most ``limit`` of them (Abaco's list paging)."""
    offset = int(request.args.get("offset", 0))
    limit = int(request.args.get("limit", _gateway().config.gateway.page_size))
    return items[offset : offset + limit]


@bp.get(V2)
@requires("READ")
def list_actors() -> Any:
    gateway = _gateway()
    seen = recent_workers(gateway.store, _window(), clock=gateway.runtime.clock)
    running = [w for w in seen if not w.get("stopped")]
    actors = [
        _actor(alias, [w for w in running if alias in (w.get("actors") or ())])
        for alias in gateway.runtime.actors
    ]
    return envelope(_window_of(actors), "Actors retrieved successfully.")


@bp.get(f"{V2}/<actor>")
@requires("READ")
def get_actor(actor: str) -> Any:
    return envelope(_actor(g.actor.alias), "Actor retrieved successfully.")


@bp.get(f"{V2}/aliases")
@requires("READ")
def list_aliases() -> Any:
    aliases = [_alias(alias) for alias in _gateway().runtime.actors]
    return envelope(_window_of(aliases), "Aliases retrieved successfully.")


@bp.get(f"{V2}/aliases/<alias>")
@requires("READ")
def get_alias(alias: str) -> Any:
    actors = _gateway().runtime.actors
    if alias not in actors:
        raise NotFound(f"no alias {alias!r}; aliases: {', '.join(actors)}", alias=alias)
    return envelope(_alias(alias), "Alias retrieved successfully.")


@bp.get(f"{V2}/<actor>/workers")
@requires("READ")
def list_workers(actor: str) -> Any:
    workers = [
        {
            "id": w["id"],
            "status": abaco.READY,
            "hostId": w.get("hostname"),
            "pid": w.get("pid"),
            "kind": w.get("kind"),
            "node": w.get("node"),
            "actors": w.get("actors") or [],
            "concurrency": w.get("concurrency"),
            "pool": w.get("pool"),
            "createTime": w.get("started"),
            "lastHealthCheckTime": w.get("last_seen"),
        }
        for w in _consuming(g.actor.alias)
    ]
    return envelope(workers, "Workers retrieved successfully.")


@bp.get(f"{V2}/<actor>/executions/<execution_id>/results")
@requires("READ")
def get_results(actor: str, execution_id: str) -> Any:
    """The execution's result as Abaco serves one (see the module docstring); shown
    whole only to whoever sent the message and to admins, as on the execution."""
    execution = actor_execution(g.actor.alias, execution_id)
    body = b""
    if execution.get("status") == COMPLETE:
        result = execution.get("result")
        mine = g.principal.is_admin or execution.get("owner") == g.principal.owner
        body = json.dumps(result if mine else redact(result), separators=(",", ":")).encode()
    return Response(body, 200, content_type="application/octet-stream")


def _tenancy() -> tuple[str, dict[str, Any], dict[str, Any]]:
    base = abaco.base()
    tenant = {
        "tenant_id": TENANT,
        "site_id": SITE,
        "base_url": base,
        "description": "PipelineJobs: its actors at /v3/actors (keys in X-Tapis-Token)",
        "status": "active",
    }
    site = {"site_id": SITE, "base_url": base, "primary": True, "services": ["actors"]}
    return base, tenant, site


@bp.get("/v3/tenants")
def list_tenants() -> Any:
    """What tapipy reads when given only a ``base_url`` (no credential, as Tapis)."""
    return envelope([_tenancy()[1]], "Tenants retrieved successfully.")


@bp.get("/v3/sites")
def list_sites() -> Any:
    """What tapipy reads with the tenants, to pair them with their site."""
    return envelope([_tenancy()[2]], "Sites retrieved successfully.")


def install_v3(app: Flask) -> None:
    """Serve every ``/actors/v2`` route again at ``/v3/actors`` (Tapis v3), by the
    same view and endpoint — so the same parameter declarations, authentication and
    answers apply. Called once the blueprints are registered."""
    for rule in list(app.url_map.iter_rules()):
        if rule.rule != V2 and not rule.rule.startswith(V2 + "/"):
            continue
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        app.add_url_rule(
            V3 + rule.rule[len(V2) :],
            endpoint=rule.endpoint,
            view_func=app.view_functions[rule.endpoint],
            methods=methods,
        )
