"""The operations of the OpenAPI document: one per route, and one per actor for messages.

:class:`Operations` writes each route's parameters (from
:mod:`pipelinejobs.gateway.parameters`, the declarations the gateway enforces), its request
body (from the bundled schemas of :mod:`pipelinejobs.gateway.openapi_schemas`) and the
answers it really gives: its success envelope with the result's shape, and the error
statuses its code can raise. Kept apart from :mod:`pipelinejobs.gateway.openapi`, which
assembles the document, so each module stays one concept and a readable length.
"""

from __future__ import annotations

import copy
from typing import Any

from pipelinejobs.access.nonces import ID_FORM
from pipelinejobs.gateway import openapi_schemas as oas
from pipelinejobs.gateway.parameters import ABACO_ID, Param, route_params
from pipelinejobs.runtime.idempotency import HEADER as IDEMPOTENCY_HEADER

JSON = "application/json"
#: Security of an actor's routes (a bearer key — or the same key in X-Tapis-Token —
#: or a nonce of the actor), and of the routes that manage nonces (a key only).
ACTOR_ROUTES: list[dict[str, list[str]]] = [{"bearer": []}, {"tapis": []}, {"nonce": []}]
KEYS_ONLY: list[dict[str, list[str]]] = [{"bearer": []}, {"tapis": []}]
#: Abaco v2's prefix, and Tapis v3's (the same routes: pipelinejobs.gateway.abaco_api).
V2, V3 = "/actors/v2", "/v3/actors"
#: A nonce id as the API shows it (12 hex characters, up to the whole 64) or the
#: secret itself (``PJ_`` and 24 URL-safe characters).
NONCE_ID = "^(" + ID_FORM.pattern + ")$"
#: What each status means on every route that can answer it.
REASONS = {
    "400": "malformed: a parameter or the body is not what this route takes (the "
    "message says which, `result.path` names it)",
    "401": "no credential, or one that is unknown, revoked, used up or expired",
    "403": "the credential does not allow this",
    "404": "no such actor, execution, nonce, pipeline, job or file",
    "409": "the request conflicts with the stored state (a refused transition)",
    "413": "the body is over gateway.max_body bytes",
    "415": "the body's content type is not JSON",
    "503": "the store or the broker cannot be reached, or is too contended: nothing was "
    "written, and the same request may be sent again (after Retry-After seconds)",
}
#: A lineage graph (pipelinejobs.domain.lineage): edges go from the record holding the
#: field to what it names.
_STRING = {"type": "string"}
LINEAGE: dict[str, Any] = {
    "type": "object",
    "required": ["root", "direction", "depth", "nodes", "edges", "truncated", "reasons", "limits"],
    "properties": {
        "root": {
            "type": "object",
            "required": ["id", "kind"],
            "properties": {"id": _STRING, "kind": {"type": "string", "enum": ["job", "file"]}},
        },
        "direction": {"type": "string", "enum": ["up", "down", "both"]},
        "depth": {"type": "integer", "minimum": 1},
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "kind", "depth"],
                "properties": {
                    "id": _STRING,
                    "kind": {
                        "type": "string",
                        "enum": ["pipeline", "job", "file", "linkage", "reference"],
                    },
                    "depth": {"type": "integer", "minimum": 0},
                    "direction": {"type": "string", "enum": ["up", "down"]},
                    "more": {
                        "type": "boolean",
                        "description": "it has neighbours a bound left out",
                    },
                    "missing": {
                        "type": "boolean",
                        "description": "named by a record, but not stored here",
                    },
                },
            },
        },
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["from", "to", "type"],
                "properties": {
                    "from": _STRING,
                    "to": _STRING,
                    "type": {
                        "type": "string",
                        "enum": ["generated_by", "child_of", "derived_from", "acted_on"],
                    },
                },
            },
        },
        "truncated": {"type": "boolean"},
        "reasons": {"type": "array", "items": _STRING},
        "limits": {
            "type": "object",
            "properties": {"max_depth": {"type": "integer"}, "max_nodes": {"type": "integer"}},
        },
    },
}
#: The header of a 503: when the same request may be sent again.
RETRY_AFTER = {
    "description": "seconds to wait before sending the same request again",
    "schema": {"type": "integer", "minimum": 0},
}


def v3_paths(paths: dict[str, Any]) -> dict[str, Any]:
    """Tapis v3's copy of every ``/actors/v2`` path (the same routes at ``/v3/actors``):
    each operation the same but for its id (``v3_`` first) and its summary."""
    out: dict[str, Any] = {}
    for path, operations in paths.items():
        if path != V2 and not path.startswith(V2 + "/"):
            continue
        copied = copy.deepcopy(operations)
        for operation in copied.values():
            operation["operationId"] = "v3_" + operation["operationId"]
            operation["summary"] += " (Tapis v3)"
        out[V3 + path[len(V2) :]] = copied
    return out


def _schema(node: Any) -> Any:
    """A parameter schema with its ``schemas/`` file references made component refs."""
    if isinstance(node, list):
        return [_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _schema(v) for k, v in node.items()}
    if isinstance(out.get("$ref"), str) and out["$ref"].endswith(".json"):
        out["$ref"] = oas.PREFIX + out["$ref"].removesuffix(".json")
    return out


def _param(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": param.name,
        "in": "query",
        "required": param.required,
        "description": param.description,
        "schema": _schema(param.schema),
    }
    if param.multi:
        out.update(style="form", explode=True)
    if param.deprecated:
        out["deprecated"] = True
    return out


def _path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _envelope(result: str | dict[str, Any]) -> dict[str, Any]:
    return oas.envelope(oas.ref(result) if isinstance(result, str) else result)


def _responses(ok: dict[str, Any], errors: str, ok_code: str = "200") -> dict[str, Any]:
    out: dict[str, Any] = {ok_code: ok}
    for code in errors.split():
        out[code] = {"description": REASONS[code], "content": {JSON: {"schema": oas.ref("Error")}}}
    if "503" in out:
        out["503"]["headers"] = {"Retry-After": RETRY_AFTER}
    out["default"] = {
        "description": "any other error (a 500 is a bug: it is logged)",
        "content": {JSON: {"schema": oas.ref("Error")}},
    }
    return out


def _ok(result: str | dict[str, Any], description: str = "success") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _envelope(result)}}}


def _body(schema: dict[str, Any], required: bool, description: str) -> dict[str, Any]:
    return {"required": required, "description": description, "content": {JSON: {"schema": schema}}}


class Operations:
    """The operations of one deployment's document (its settings and actor ids)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.settings = runtime.config.gateway
        names = [*runtime.actors, *(runtime.actor_id(a) for a in runtime.actors)]
        self.actor = _path(
            "actor", "an actor's alias or Abaco-style id", {"type": "string", "enum": names}
        )

    def params(self, endpoint: str, actor: str | None = None) -> list[dict[str, Any]]:
        return [_param(p) for p in route_params(endpoint, self.settings, actor) or ()]

    def op(
        self,
        endpoint: str,
        summary: str,
        responses: dict[str, Any],
        *,
        path: tuple[dict[str, Any], ...] = (),
        security: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        op: dict[str, Any] = {
            "operationId": endpoint.replace(".", "_") + (f"_{actor}" if actor else ""),
            "summary": summary,
            "parameters": [*path, *self.params(endpoint, actor)],
            "responses": responses,
        }
        if body is not None:
            op["requestBody"] = body
        if security is not None:
            op["security"] = security
        return op

    # -- actors ------------------------------------------------------------------------

    def message(self, alias: str) -> dict[str, Any]:
        actor = self.runtime.actors[alias]
        forms = [oas.ref(name) for name in actor.accepts]
        required = True
        if alias == "jobs-manager":
            forms.append(
                {
                    **oas.ref("JsonObject"),
                    "title": "event data",
                    "description": "with uuid and name (or event) as URL parameters: "
                    "any JSON object, attached to the event as its data (with status and "
                    "no name, an agave_job_callback)",
                }
            )
            required = False
        elif alias == "jobs-indexer":
            url_form = copy.deepcopy(oas.bundled()["pipelinejob_index"])
            url_form.update(
                title="index request with URL parameters",
                required=[],
                description="the fields the URL parameters do not give "
                "(filters only in the body: as a URL parameter it is refused); uuid is "
                "then required in the URL",
            )
            forms.append(url_form)
            required = False
        idempotency = {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": False,
            "description": "makes a retry safe: a POST repeated with the same key returns "
            "the execution the first one made",
            "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
        }
        ok = {
            "description": "queued (the execution's id), or with _abaco_synchronous=true "
            "the finished execution",
            "content": {
                JSON: {
                    "schema": _envelope(
                        {"anyOf": [oas.ref("MessageAccepted"), oas.ref("SyncExecution")]}
                    )
                }
            },
        }
        responses = _responses(ok, "400 401 403 404 409 413 415 503")
        responses["202"] = _ok(
            "SyncExecution",
            "with _abaco_synchronous=true: still running after gateway.sync_timeout",
        )
        op = self.op(
            "actors.post_message",
            f"Send a message to the {alias} ({actor.description})",
            responses,
            security=ACTOR_ROUTES,
            body=_body(
                {"anyOf": forms},
                required,
                f"one of the messages the {alias} accepts; Abaco's clients' wrapping of it, "
                'exactly {"message": <it>} (a string: its JSON text), or the form field '
                "message=<its JSON text>, is read as the message itself",
            ),
            actor=alias,
        )
        op["parameters"].append(idempotency)
        return op

    def actor_paths(self) -> dict[str, Any]:
        execution = _path("execution_id", "an execution id", ABACO_ID)
        nonce = _path(
            "nonce_id",
            "a nonce's id as listed (its first 12 characters), or the whole id",
            {"type": "string", "pattern": NONCE_ID},
        )
        actor = (self.actor,)
        paths: dict[str, Any] = {
            f"/actors/v2/{alias}/messages": {"post": self.message(alias)}
            for alias in self.runtime.actors
        }
        paths["/actors/v2/{actor}/executions"] = {
            "get": self.op(
                "actors.list_executions",
                "An actor's executions, newest first",
                _responses(_ok("ExecutionList"), "400 401 403 404 503"),
                path=actor,
                security=ACTOR_ROUTES,
            )
        }
        paths["/actors/v2/{actor}/executions/{execution_id}"] = {
            "get": self.op(
                "actors.get_execution",
                "One execution: status, message, result, error",
                _responses(_ok("Execution"), "400 401 403 404 503"),
                path=(*actor, execution),
                security=ACTOR_ROUTES,
            )
        }
        paths["/actors/v2/{actor}/executions/{execution_id}/logs"] = {
            "get": self.op(
                "actors.get_logs",
                "An execution's log lines",
                _responses(_ok("ExecutionLogs"), "400 401 403 404 503"),
                path=(*actor, execution),
                security=ACTOR_ROUTES,
            )
        }
        paths["/actors/v2/{actor}/nonces"] = {
            "post": self.op(
                "actors.create_nonce",
                "Create a nonce on an actor; its id is shown only in this answer",
                _responses(_ok("Nonce", "created"), "400 401 403 404 413 415 503", "201"),
                path=actor,
                security=KEYS_ONLY,
                body=_body(oas.ref("nonce_request"), False, "what the nonce allows (all optional)"),
            ),
            "get": self.op(
                "actors.list_nonces",
                "Your nonces on an actor",
                _responses(
                    _ok({"type": "array", "items": oas.ref("Nonce")}), "400 401 403 404 503"
                ),
                path=actor,
                security=KEYS_ONLY,
            ),
        }
        paths["/actors/v2/{actor}/nonces/{nonce_id}"] = {
            "get": self.op(
                "actors.get_nonce",
                "One of your nonces",
                _responses(_ok("Nonce"), "400 401 403 404 503"),
                path=(*actor, nonce),
                security=KEYS_ONLY,
            ),
            "delete": self.op(
                "actors.delete_nonce",
                "Delete one of your nonces",
                _responses(_ok({"type": "null"}), "400 401 403 404 503"),
                path=(*actor, nonce),
                security=KEYS_ONLY,
            ),
        }
        return paths

    def abaco_paths(self) -> dict[str, Any]:
        """Abaco v2's discovery and results (:mod:`pipelinejobs.gateway.abaco_api`)."""
        execution = _path("execution_id", "an execution id", ABACO_ID)
        alias = _path(
            "alias", "an actor's alias", {"type": "string", "enum": list(self.runtime.actors)}
        )
        errors = "400 401 403 404 503"

        def listed(name: str) -> dict[str, Any]:
            return _ok({"type": "array", "items": oas.ref(name)})

        results = {
            "description": "the result of a COMPLETE execution as Abaco serves one: its "
            "bytes alone (here its JSON), not enveloped; empty before it is COMPLETE",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
        return {
            V2: {
                "get": self.op(
                    "abaco.list_actors",
                    "The actors: id, alias, description, status, the schemas they accept",
                    _responses(listed("Actor"), "400 401 403 503"),
                    security=KEYS_ONLY,
                )
            },
            f"{V2}/aliases": {
                "get": self.op(
                    "abaco.list_aliases",
                    "The actors' aliases and their ids",
                    _responses(listed("Alias"), "400 401 403 503"),
                    security=KEYS_ONLY,
                )
            },
            f"{V2}/aliases/{{alias}}": {
                "get": self.op(
                    "abaco.get_alias",
                    "One alias and its actor's id",
                    _responses(_ok("Alias"), errors),
                    path=(alias,),
                    security=KEYS_ONLY,
                )
            },
            f"{V2}/{{actor}}": {
                "get": self.op(
                    "abaco.get_actor",
                    "One actor (by alias or id)",
                    _responses(_ok("Actor"), errors),
                    path=(self.actor,),
                    security=ACTOR_ROUTES,
                )
            },
            f"{V2}/{{actor}}/workers": {
                "get": self.op(
                    "abaco.list_workers",
                    "The worker processes consuming an actor's queue, from their heartbeats",
                    _responses(listed("Worker"), errors),
                    path=(self.actor,),
                    security=ACTOR_ROUTES,
                )
            },
            f"{V2}/{{actor}}/executions/{{execution_id}}/results": {
                "get": self.op(
                    "abaco.get_results",
                    "An execution's result, as Abaco serves one",
                    _responses(results, errors),
                    path=(self.actor, execution),
                    security=ACTOR_ROUTES,
                )
            },
        }

    def tapis_paths(self) -> dict[str, Any]:
        """What tapipy reads of Tapis v3's tenants API, given only a base URL."""
        return {
            "/v3/tenants": {
                "get": self.op(
                    "abaco.list_tenants",
                    "This gateway as Tapis v3's one tenant (what tapipy reads at start)",
                    _responses(_ok({"type": "array", "items": oas.ref("Tenant")}), "503"),
                    security=[],
                )
            },
            "/v3/sites": {
                "get": self.op(
                    "abaco.list_sites",
                    "This gateway as Tapis v3's one site (what tapipy reads at start)",
                    _responses(_ok({"type": "array", "items": oas.ref("Site")}), "503"),
                    security=[],
                )
            },
        }

    # -- read API ----------------------------------------------------------------------

    def read_paths(self) -> dict[str, Any]:
        def uuid(kind: str) -> dict[str, Any]:
            return _path("uuid", f"a {kind} UUID", oas.ref(f"{kind}_uuid"))

        log_ok = {
            "description": "the log's bytes from offset on",
            "headers": {
                "X-Log-Next-Offset": {
                    "description": "the offset to continue from",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
        errors = "400 401 403 404 503"
        return {
            "/pipelines": {
                "get": self.op(
                    "read.list_pipelines",
                    "Pipelines, newest first",
                    _responses(_ok("PipelineList"), "400 401 403 503"),
                )
            },
            "/pipelines/{uuid}": {
                "get": self.op(
                    "read.get_pipeline",
                    "One pipeline",
                    _responses(_ok("Pipeline"), errors),
                    path=(uuid("pipeline"),),
                )
            },
            "/jobs": {
                "get": self.op(
                    "read.list_jobs",
                    "Jobs, newest first (with updated_since: oldest change first)",
                    _responses(_ok("JobList"), "400 401 403 503"),
                )
            },
            "/runs": {
                "get": self.op(
                    "runs.list_runs",
                    "Runs, newest first, each with its jobs counted by state and its derived "
                    "status (with status=: runs read until a page matches, or a bounded "
                    "number; follow next to the end for every match)",
                    _responses(_ok("RunList"), "400 401 403 503"),
                )
            },
            "/runs/{uuid}": {
                "get": self.op(
                    "runs.get_run",
                    "One run with its jobs counted by state and its derived status",
                    _responses(_ok("RunStatus"), errors),
                    path=(uuid("pipelinejob_run"),),
                )
            },
            "/runs/{uuid}/graph": {
                "get": self.op(
                    "runs.graph",
                    "A run's jobs and the dependencies between them: nodes with their "
                    "state, edges parent -> child with their condition",
                    _responses(_ok("RunGraph"), errors),
                    path=(uuid("pipelinejob_run"),),
                )
            },
            "/runs/{uuid}/jobs": {
                "get": self.op(
                    "runs.run_jobs",
                    "A page of a run's jobs, newest first",
                    _responses(_ok("JobList"), errors),
                    path=(uuid("pipelinejob_run"),),
                )
            },
            "/jobs/{uuid}": {
                "get": self.op(
                    "read.get_job",
                    "One job with its history (the first 1,000 entries; history_next "
                    "continues it at /jobs/{uuid}/history)",
                    _responses(_ok("Job"), errors),
                    path=(uuid("pipelinejob"),),
                )
            },
            "/jobs/{uuid}/history": {
                "get": self.op(
                    "read.job_history",
                    "A page of a job's history, oldest first, after the `after`-th entry",
                    _responses(_ok("HistoryPage"), errors),
                    path=(uuid("pipelinejob"),),
                )
            },
            "/jobs/{uuid}/files": {
                "get": self.op(
                    "read.job_files",
                    "The files indexed for a job, by path",
                    _responses(_ok("FileList"), errors),
                    path=(uuid("pipelinejob"),),
                )
            },
            "/jobs/{uuid}/log": {
                "get": self.op(
                    "read.job_log",
                    "A local, docker or Slurm job's stdout and stderr from a byte offset on",
                    _responses(log_ok, errors),
                    path=(uuid("pipelinejob"),),
                )
            },
            "/jobs/{uuid}/lineage": {
                "get": self.op(
                    "lineage.job_lineage",
                    "What a job came from (up) and what was made from it (down), as a "
                    "bounded graph of pipelines, jobs, files and linkage ids",
                    _responses(_ok(LINEAGE), errors),
                    path=(uuid("pipelinejob"),),
                )
            },
            "/files/{uuid}/lineage": {
                "get": self.op(
                    "lineage.file_lineage",
                    "What a file came from (up) and what was made from it (down), as a "
                    "bounded graph of pipelines, jobs, files and linkage ids",
                    _responses(_ok(LINEAGE), errors),
                    path=(uuid("file"),),
                )
            },
            "/files": {
                "get": self.op(
                    "files.list_files",
                    "A job's file records, by path",
                    _responses(_ok("FileList"), "400 401 403 503"),
                )
            },
            "/files/{uuid}": {
                "get": self.op(
                    "files.get_file",
                    "One file record",
                    _responses(_ok("File"), errors),
                    path=(uuid("file"),),
                )
            },
            "/healthz": {
                "get": self.op(
                    "healthz",
                    "Store and broker reachable",
                    _responses(_ok("Health"), "503"),
                    security=[],
                )
            },
            "/metrics": {
                "get": self.op(
                    "metrics.metrics_page",
                    "Prometheus metrics (text exposition format; README: Metrics)",
                    _responses(
                        {
                            "description": "the metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401" if self.runtime.config.metrics.require_key else "",
                    ),
                    security=None if self.runtime.config.metrics.require_key else [],
                )
            },
            "/openapi.json": {
                "get": self.op(
                    "openapi",
                    "This document",
                    _responses(
                        {
                            "description": "the OpenAPI document",
                            "content": {
                                JSON: {
                                    "schema": {
                                        "type": "object",
                                        "required": ["openapi", "info", "paths"],
                                    }
                                }
                            },
                        },
                        "",
                    ),
                    security=[],
                )
            },
        }
