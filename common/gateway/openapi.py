"""The OpenAPI 3 description of every gateway route.

Kept next to the routes and checked by a test against the app's URL map, so it
cannot silently fall behind them.
"""

from __future__ import annotations

from typing import Any

from common import __version__

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    summary: str,
    *,
    params: list[dict[str, Any]] | None = None,
    body: bool = False,
    ok: str = "200",
    security: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {
            ok: {"description": "success", "content": {JSON: {"schema": _ref("Envelope")}}},
            "default": {"description": "error", "content": {JSON: {"schema": _ref("Error")}}},
        },
    }
    if body:
        op["requestBody"] = {"required": False, "content": {JSON: {"schema": {"type": "object"}}}}
    if not security:
        op["security"] = []
    return op


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind},
    }


ACTOR = _path("actor", "actor alias (e.g. jobs-manager) or Abaco-style id")
EXECUTION = _path("execution_id", "execution id")
NONCE = _path("nonce_id", "nonce id prefix as listed")
UUID = _path("uuid", "typed UUID")
PAGE = [_query("limit", "page size", "integer"), _query("cursor", "the previous page's next")]
X_NONCE = _query("x-nonce", "a nonce for this actor, instead of a bearer key")


def document(runtime: Any = None) -> dict[str, Any]:
    """The OpenAPI document (``runtime`` adds the actors' ids to the description)."""
    actors = ""
    if runtime is not None:
        actors = "; ".join(f"{a} = {runtime.actor_id(a)}" for a in runtime.actors)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "PipelineJobs",
            "version": __version__,
            "description": "Pipelines and their jobs for a data catalog. Actors: "
            + (actors or "pipelines-manager, jobs-manager, jobs-indexer, launcher-proxy"),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "nonce": {"type": "apiKey", "in": "query", "name": "x-nonce"},
            },
            "schemas": {
                "Envelope": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["success"]},
                        "message": {"type": "string"},
                        "result": {},
                        "version": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["error"]},
                        "message": {"type": "string"},
                        "result": {},
                        "version": {"type": "string"},
                    },
                },
            },
        },
        "security": [{"bearer": []}, {"nonce": []}],
        "paths": {
            "/actors/v2/{actor}/messages": {
                "post": _op(
                    "Send a message (JSON body and/or URL parameters) to an actor",
                    body=True,
                    params=[
                        ACTOR,
                        X_NONCE,
                        _query("_abaco_synchronous", "wait for the execution", "boolean"),
                        _query("sync", "same as _abaco_synchronous", "boolean"),
                    ],
                )
            },
            "/actors/v2/{actor}/executions": {
                "get": _op(
                    "List an actor's executions, newest first",
                    params=[ACTOR, X_NONCE, _query("status", "only this status"), *PAGE],
                )
            },
            "/actors/v2/{actor}/executions/{execution_id}": {
                "get": _op(
                    "One execution: status, message, result, error",
                    params=[ACTOR, EXECUTION, X_NONCE],
                )
            },
            "/actors/v2/{actor}/executions/{execution_id}/logs": {
                "get": _op("An execution's log lines", params=[ACTOR, EXECUTION, X_NONCE])
            },
            "/actors/v2/{actor}/nonces": {
                "post": _op(
                    "Create a nonce (level, maxUses, description, expiresIn); its id is shown once",
                    params=[ACTOR],
                    body=True,
                    ok="201",
                ),
                "get": _op("List your nonces on an actor", params=[ACTOR]),
            },
            "/actors/v2/{actor}/nonces/{nonce_id}": {
                "get": _op("One nonce", params=[ACTOR, NONCE]),
                "delete": _op("Delete a nonce", params=[ACTOR, NONCE]),
            },
            "/pipelines": {
                "get": _op(
                    "List pipelines",
                    params=[_query("status", "active, disabled or retired"), *PAGE],
                )
            },
            "/pipelines/{uuid}": {"get": _op("One pipeline", params=[UUID])},
            "/jobs": {
                "get": _op(
                    "List jobs",
                    params=[
                        _query("state", "a state (repeatable)"),
                        _query("pipeline_uuid", "jobs of this pipeline"),
                        _query("linkage", "jobs linked to this catalog id (repeatable)"),
                        _query(
                            "updated_since", "changed at or after this RFC 3339 time; oldest first"
                        ),
                        _query("counts", "add the number of matching jobs per state", "boolean"),
                        *PAGE,
                    ],
                )
            },
            "/jobs/{uuid}": {"get": _op("One job with its history", params=[UUID])},
            "/jobs/{uuid}/files": {
                "get": _op(
                    "The files indexed for a job",
                    params=[UUID, _query("level", "only this processing level"), *PAGE],
                )
            },
            "/jobs/{uuid}/log": {
                "get": _op(
                    "A local or docker job's stdout and stderr (text/plain) from byte offset on; "
                    "X-Log-Next-Offset says where to continue",
                    params=[UUID, _query("offset", "byte offset to start from", "integer")],
                )
            },
            "/files": {
                "get": _op(
                    "A job's file records, by path",
                    params=[
                        _query("job", "the job (a 107 pipelinejob UUID); required"),
                        _query("level", "only this processing level"),
                        _query("present", "only files found (true) or vanished (false)", "boolean"),
                        *PAGE,
                    ],
                )
            },
            "/files/{uuid}": {"get": _op("One file record (a 105 file UUID)", params=[UUID])},
            "/healthz": {"get": _op("Store and broker reachable", security=False)},
            "/openapi.json": {"get": _op("This document", security=False)},
        },
    }
