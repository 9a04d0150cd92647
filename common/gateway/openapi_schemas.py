"""The OpenAPI document's ``components/schemas``, made from the JSON Schemas in ``schemas/``.

Every schema file becomes one component of the same name, so the document is
self-contained (no external ``$ref``) and says exactly what the validators say.
Bundling rewrites three things and nothing else:

* references: ``pipelinejob_uuid.json`` → ``#/components/schemas/pipelinejob_uuid``,
  a file's ``#/definitions/x`` → its own component ``<file>.x``;
* ``$id``/``$schema`` are dropped (OpenAPI 3.1's dialect is JSON Schema 2020-12, of
  which the draft-07 keywords used here are a subset);
* free-form JSON (a message's ``data``, a job definition, ``{}``) is spelled out as
  :data:`JSON_VALUE`/``JsonObject``: what :mod:`pipelinejobs.access.boundary` lets through. That
  is written down so generated requests stay inside it — integers in the signed
  64-bit range, object keys of at most 1024 characters without NUL. What a schema
  cannot say (nesting depth, duplicate keys, lone surrogates, NaN) the boundary
  still refuses; a generator cannot produce those from a schema either.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pipelinejobs.access.boundary import INT_MAX, INT_MIN, MAX_KEY
from pipelinejobs.domain import dependencies, run_graph, runs, validation

PREFIX = "#/components/schemas/"
#: Keywords whose value is a schema, a list of schemas, or a map of name → schema —
#: the ones that say what a value must be. ``if`` and ``not`` only test a value, so
#: they are left as written: bounding them would change which branch applies.
ONE = ("items", "additionalProperties", "propertyNames", "contains", "then", "else")
MANY = ("allOf", "anyOf", "oneOf")
MAP = ("properties", "patternProperties")
ANNOTATIONS = frozenset({"description", "title", "$comment", "default", "examples"})


def ref(name: str) -> dict[str, str]:
    return {"$ref": PREFIX + name}


#: Free-form JSON as the boundary admits it. An integral value must be a 64-bit
#: integer; any other number is a finite float (JSON has no spelling for NaN). One
#: edge JSON Schema cannot see: a float written with an exponent (``1e20``) is integral
#: to a schema but a float to the boundary, which takes it.
JSON_VALUE: dict[str, Any] = {
    "description": "Any JSON value the gateway accepts (RFC 8259, strictly): integers "
    "in the signed 64-bit range, finite numbers, Unicode strings, arrays, and objects "
    "whose keys are at most 1024 characters without NUL and never repeated; at most "
    "gateway.max_depth (64) containers deep",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "string"},
        {"type": "array", "items": ref("JsonValue")},
        ref("JsonObject"),
    ],
}
JSON_KEY: dict[str, Any] = {"type": "string", "maxLength": MAX_KEY, "pattern": "^[^\\u0000]*$"}
JSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "propertyNames": ref("JsonKey"),
    "additionalProperties": ref("JsonValue"),
}


def _target(reference: str, current: str) -> str:
    """The bundled form of a ``$ref`` written in the schema file ``current``."""
    file, _, pointer = reference.partition("#")
    name = file.removesuffix(".json") if file else current
    if pointer.startswith("/definitions/"):
        head, _, rest = pointer[len("/definitions/") :].partition("/")
        return PREFIX + f"{name}.{head}" + (f"/{rest}" if rest else "")
    return PREFIX + name + pointer


def _rewrite(node: Any, current: str) -> Any:
    if isinstance(node, list):
        return [_rewrite(v, current) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = _target(value, current)
        elif key in ("enum", "const", "default", "examples"):
            out[key] = value
        else:
            out[key] = _rewrite(value, current)
    return out


def harden(node: Any) -> Any:
    """``node`` (a schema) with its free-form parts bounded as the boundary bounds them."""
    if not isinstance(node, dict):
        return node
    if not (set(node) - ANNOTATIONS):  # {} or only a description: any JSON value
        return {**node, **ref("JsonValue")}
    out = dict(node)
    types = out.get("type")
    types = types if isinstance(types, list) else [types]
    if "object" in types:
        out.setdefault("additionalProperties", ref("JsonValue"))
        names = out.get("propertyNames")
        if names is None:
            out["propertyNames"] = ref("JsonKey")
        elif isinstance(names, dict) and "$ref" not in names:
            out["propertyNames"] = {"maxLength": MAX_KEY, **names}
    if "integer" in types:
        out["minimum"] = max(out.get("minimum", INT_MIN), INT_MIN)
        out["maximum"] = min(out.get("maximum", INT_MAX), INT_MAX)
    for key in ONE:
        if isinstance(out.get(key), dict):
            out[key] = harden(out[key])
    for key in MANY:
        if isinstance(out.get(key), list):
            out[key] = [harden(v) for v in out[key]]
    for key in MAP:
        if isinstance(out.get(key), dict):
            out[key] = {k: harden(v) for k, v in out[key].items()}
    return out


@cache
def bundled() -> dict[str, dict[str, Any]]:
    """Every schema file as components: ``<file>`` and ``<file>.<definition>``."""
    out: dict[str, dict[str, Any]] = {}
    for name, doc in sorted(validation.schema_documents().items()):
        body = {k: v for k, v in doc.items() if k not in ("$id", "$schema", "definitions")}
        for sub, schema in (doc.get("definitions") or {}).items():
            out[f"{name}.{sub}"] = harden(_rewrite(schema, name))
        out[name] = harden(_rewrite(body, name))
    return out


def public(name: str, *, drop: tuple[str, ...] = ("token_rotation", "version")) -> dict[str, Any]:
    """The stored-document component ``name`` as the read API shows it: the gateway
    leaves internal fields out (``read_api.INTERNAL``)."""
    schema = copy.deepcopy(bundled()[name])
    for field in drop:
        schema.get("properties", {}).pop(field, None)
    schema["required"] = [r for r in schema.get("required", []) if r not in drop]
    return schema


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


STRING = {"type": "string"}
DATE = {"type": "string", "format": "date-time"}
MAYBE_DATE = {"type": ["string", "null"], "format": "date-time"}
NEXT = {"type": ["string", "null"], "description": "the cursor of the next page; null at the end"}
LINKS = {"type": "object", "additionalProperties": STRING}


RUN_REQUIRED = ["uuid", "pipeline_uuid", "name", "priority", "tags", "created"]


def run_properties() -> dict[str, Any]:
    """A stored run's fields (issue 15), as the read API shows them."""
    return {
        "uuid": ref("pipelinejob_run_uuid"),
        "pipeline_uuid": ref("pipeline_uuid"),
        "name": STRING,
        "priority": {"type": "string", "enum": list(runs.PRIORITIES)},
        "tags": ref("pipelinejob_tags"),
        "tag_pairs": {"type": "array", "items": STRING},
        "domain_context": {"type": "object"},
        "owner": STRING,
        "created": DATE,
        "updated": DATE,
    }


def results() -> dict[str, dict[str, Any]]:
    """The ``result`` of each route's success envelope, and the envelopes."""
    execution = _object(
        ["id", "actorId", "status", "message", "createTime"],
        id=STRING,
        actorId=STRING,
        status={"type": "string", "enum": ["SUBMITTED", "RUNNING", "COMPLETE", "ERROR"]},
        message=ref("JsonValue"),
        params={"type": "object", "additionalProperties": STRING},
        result=ref("JsonValue"),
        error=ref("JsonValue"),
        progress=ref("JsonValue"),
        attempts={"type": "integer", "minimum": 0},
        parent={"type": ["string", "null"]},
        createTime=DATE,
        startTime=MAYBE_DATE,
        finishTime=MAYBE_DATE,
        executor={"type": ["string", "null"], "description": "who sent it (Abaco's name)"},
        messageReceivedTime=DATE,
        workerId={"type": ["string", "null"], "description": "the worker that ran it"},
        _links=LINKS,
    )
    synchronous = copy.deepcopy(execution)
    synchronous["properties"].update(
        executionId=STRING, _links=LINKS, logs={"type": "array", "items": STRING}
    )
    return {
        "JsonValue": JSON_VALUE,
        "JsonObject": JSON_OBJECT,
        "JsonKey": JSON_KEY,
        "Execution": execution,
        "SyncExecution": synchronous,
        "MessageAccepted": _object(
            ["executionId", "msg", "_links"],
            executionId=STRING,
            msg=ref("JsonValue"),
            _links=LINKS,
        ),
        "ExecutionList": _object(
            ["actorId", "executions", "next"],
            actorId=STRING,
            executions={
                "type": "array",
                "items": _object(
                    ["id", "status", "createTime"],
                    id=STRING,
                    status=execution["properties"]["status"],
                    createTime=DATE,
                    messageReceivedTime=DATE,
                    startTime=MAYBE_DATE,
                    finishTime=MAYBE_DATE,
                ),
            },
            next=NEXT,
            totalExecutions={
                "type": "integer",
                "minimum": 0,
                "description": "the actor's executions (in the status asked for) in all",
            },
            _links=LINKS,
        ),
        "ExecutionLogs": _object(["logs", "_links"], logs=STRING, _links=LINKS),
        "Nonce": _object(
            ["id", "actorId", "level", "maxUses", "remainingUses", "owner", "createTime"],
            id={
                "type": "string",
                "description": "the id, usable as x-nonce, for its owner (as Abaco lists "
                "it); for anyone else (an admin), or a nonce made with a random id, its "
                "hash's first 12 characters",
            },
            actorId=STRING,
            level={"type": "string", "enum": ["READ", "EXECUTE", "UPDATE"]},
            maxUses={"type": "integer", "minimum": -1},
            remainingUses={"type": "integer", "minimum": -1},
            description=STRING,
            owner=STRING,
            createTime=DATE,
            expires=MAYBE_DATE,
            _links=LINKS,
        ),
        **abaco_results(),
        "Pipeline": public("pipeline"),
        "Job": public("pipelinejob_record"),
        "JobSummary": public("pipelinejob", drop=("token_rotation", "version", "last_entry")),
        "HistoryPage": _object(
            ["uuid", "history", "next", "count"],
            uuid=ref("pipelinejob_uuid"),
            history={"type": "array", "items": ref("pipelinejob_event")},
            next={
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "the `after` of the next page; null at the end",
            },
            count={"type": "integer", "minimum": 0, "description": "entries in the whole history"},
        ),
        "File": public("file"),
        "PipelineList": _object(
            ["pipelines", "next"], pipelines={"type": "array", "items": ref("Pipeline")}, next=NEXT
        ),
        "JobList": _object(
            ["jobs", "next"],
            jobs={"type": "array", "items": ref("JobSummary")},
            next=NEXT,
            counts={
                "type": "object",
                "description": "with counts=true: matching jobs in each of the 11 states",
                "propertyNames": ref("pipelinejob_statename"),
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
        ),
        "Run": _object(RUN_REQUIRED, **run_properties()),
        "RunList": _object(
            ["runs", "next"],
            runs={"type": "array", "items": ref("RunStatus")},
            next={
                **NEXT,
                "description": "the cursor of the next page; null at the end. With "
                "status=, it may come with a short or empty page: the runs after it "
                "were not read yet",
            },
            scanned={
                "type": "integer",
                "minimum": 0,
                "description": "with status=: the runs this page read (its budget: "
                f"{runs.SCAN_PER_RUN} per run asked for, at most {runs.MAX_SCAN:,})",
            },
        ),
        "RunStatus": _object(
            [*RUN_REQUIRED, "counts", "jobs", "status"],
            **run_properties(),
            counts={
                "type": "object",
                "description": "the run's jobs in each of the 11 states",
                "propertyNames": ref("pipelinejob_statename"),
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
            jobs={"type": "integer", "minimum": 0, "description": "the run's jobs"},
            status={
                "type": "string",
                "enum": list(runs.STATUSES),
                "description": "derived from counts (README, Runs)",
            },
        ),
        "RunGraph": _object(
            ["nodes", "edges", "truncated"],
            nodes={
                "type": "array",
                "description": f"the run's jobs, oldest first (at most "
                f"{run_graph.MAX_NODES}), and parents outside it (in_run false)",
                "items": _object(
                    ["uuid", "state", "pipeline_uuid", "name", "child_of", "in_run"],
                    uuid=ref("pipelinejob_uuid"),
                    state={"type": ["string", "null"]},
                    pipeline_uuid={"type": ["string", "null"]},
                    name={"type": ["string", "null"]},
                    child_of={"type": "array", "items": {"type": "string"}},
                    in_run={"type": "boolean"},
                ),
            },
            edges={
                "type": "array",
                "items": _object(
                    ["from", "to", "condition"],
                    **{
                        "from": ref("pipelinejob_uuid"),
                        "to": ref("pipelinejob_uuid"),
                        "condition": {"type": "string", "enum": list(dependencies.CONDITIONS)},
                    },
                ),
            },
            truncated={"type": "boolean", "description": "the run has more jobs than shown"},
        ),
        "FileList": _object(
            ["files", "next"], files={"type": "array", "items": ref("File")}, next=NEXT
        ),
        "Health": {"type": "object", "additionalProperties": STRING},
    }


def abaco_results() -> dict[str, dict[str, Any]]:
    """The results of Abaco v2's discovery routes and Tapis v3's tenancy
    (:mod:`pipelinejobs.gateway.abaco_api`)."""
    return {
        "Actor": _object(
            ["id", "alias", "description", "status", "accepts", "_links"],
            id=STRING,
            alias=STRING,
            name=STRING,
            description=STRING,
            owner=STRING,
            status={"type": "string", "enum": ["READY", "SUBMITTED"]},
            statusMessage=STRING,
            queue=STRING,
            stateless={"type": "boolean"},
            workers={"type": "integer", "minimum": 0},
            accepts={
                "type": "array",
                "items": _object(["name", "$id"], name=STRING, **{"$id": STRING}),
            },
            _links=LINKS,
        ),
        "Alias": _object(
            ["alias", "actorId", "_links"], alias=STRING, actorId=STRING, owner=STRING, _links=LINKS
        ),
        "Worker": _object(
            ["id", "status", "lastHealthCheckTime"],
            id=STRING,
            status={"type": "string", "enum": ["READY"]},
            hostId=STRING,
            pid={"type": "integer"},
            kind=STRING,
            node=STRING,
            actors={"type": "array", "items": STRING},
            concurrency={"type": "integer"},
            pool=STRING,
            createTime=DATE,
            lastHealthCheckTime=DATE,
        ),
        "Tenant": _object(
            ["tenant_id", "site_id", "base_url"],
            tenant_id=STRING,
            site_id=STRING,
            base_url=STRING,
            description=STRING,
            status=STRING,
        ),
        "Site": _object(
            ["site_id", "base_url"],
            site_id=STRING,
            base_url=STRING,
            primary={"type": "boolean"},
            services={"type": "array", "items": STRING},
        ),
    }


def envelope(result: dict[str, Any], status: str = "success") -> dict[str, Any]:
    """Abaco's envelope (:func:`pipelinejobs.gateway.http.envelope`) around ``result``."""
    return _object(
        ["status", "message", "result", "version"],
        status={"type": "string", "enum": [status]},
        message=STRING,
        result=result,
        version=STRING,
    )


def components() -> dict[str, dict[str, Any]]:
    """Every component schema of the document."""
    out = {**bundled(), **results()}
    out["Error"] = envelope(
        {
            **ref("JsonValue"),
            "description": "what went wrong, for a program: error (the class), path "
            "(the failing field or parameter), allowed values...; for a synchronous "
            "message, the failed execution",
        },
        "error",
    )
    return out
